"""`python -m orpheus`: the `orpheus` command (see `orpheus.cli`)."""

import sys

from orpheus.cli import main

if __name__ == "__main__":
    sys.exit(main())
