"""`python -m msd.labels`: your own labelled audio -> the cleaning stage's outputs (it lives in `msd.converters.labels`)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.converters.labels import *  # noqa: F401,F403
from msd.converters.labels import main

if __name__ == "__main__":
    sys.exit(main())
