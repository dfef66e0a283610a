"""`python orpheus/test_model.py test|predict ARGS`: the design card's name for `orpheus test|predict ARGS`
(`orpheus.commands.predict_and_test`)."""

import sys

from orpheus.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("orpheus.commands.predict_and_test", sys.argv[1:], "python orpheus/test_model.py"))
