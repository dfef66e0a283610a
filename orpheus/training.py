"""`python orpheus/training.py ARGS`: the design card's name for `orpheus train ARGS` (`orpheus.commands.train`)."""

import sys

from orpheus.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("orpheus.commands.train", sys.argv[1:], "python orpheus/training.py"))
