"""`python -m msd.synthetic`: generate a miniature Million Song Dataset (it lives in `msd.miniature.synthetic_msd`; this name is kept for the documented commands)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.miniature.synthetic_msd import *  # noqa: F401,F403
from msd.miniature.synthetic_msd import main

if __name__ == "__main__":
    sys.exit(main())
