"""`python -m msd.fma`: the FMA converter (it lives in `msd.converters.fma`; this name is kept for the documented commands)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.converters.fma import *  # noqa: F401,F403
from msd.converters.fma import main

if __name__ == "__main__":
    sys.exit(main())
