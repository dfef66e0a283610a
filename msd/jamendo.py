"""`python -m msd.jamendo`: the MTG-Jamendo converter (it lives in `msd.converters.jamendo`)."""

import sys

from msd.converters.jamendo import *  # noqa: F401,F403
from msd.converters.jamendo import main

if __name__ == "__main__":
    sys.exit(main())
