"""`python -m msd.mtt`: the MagnaTagATune converter (it lives in `msd.converters.mtt`; this name is kept for the documented commands)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.converters.mtt import *  # noqa: F401,F403
from msd.converters.mtt import main

if __name__ == "__main__":
    sys.exit(main())
