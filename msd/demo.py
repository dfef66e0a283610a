"""`python -m msd.demo`: the demo: every stage on a built-in miniature corpus (it lives in `msd.miniature.demo`; this name is kept for the documented commands)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.miniature.demo import *  # noqa: F401,F403
from msd.miniature.demo import main

if __name__ == "__main__":
    sys.exit(main())
