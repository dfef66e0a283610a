"""`python -m msd.jamendo`: the MTG-Jamendo converter (it lives in `msd.converters.jamendo`)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.converters.jamendo import *  # noqa: F401,F403
from msd.converters.jamendo import main

if __name__ == "__main__":
    sys.exit(main())
