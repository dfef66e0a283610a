"""`python -m msd.rendered`: the rendered corpus (it lives in `msd.miniature.rendered`; this name is the documented command)."""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

from msd.miniature.rendered import *  # noqa: F401,F403
from msd.miniature.rendered import main

if __name__ == "__main__":
    sys.exit(main())
