"""The `orpheus` subcommands of the core (`orpheus.cli.COMMANDS` names every one, the stages' too): each module is
a thin argparse front end, `build_parser()` + `main(argv)`, that calls the library; a heavy import that one of a
module's subcommands does not need stays inside the function that needs it."""
