"""`python -m msd.labels`: your own labelled audio -> the cleaning stage's outputs (it lives in `msd.converters.labels`)."""

import sys

from msd.converters.labels import *  # noqa: F401,F403
from msd.converters.labels import main

if __name__ == "__main__":
    sys.exit(main())
