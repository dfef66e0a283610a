"""Shared command-line plumbing: argument groups, logging setup and the error boundary.

Every command builds an `argparse` parser, then calls `run_main(parser, argv)`, which parses,
configures logging and turns an expected `OrpheusError` into a one-line message with exit status 1,
as it does a full disk or a read-only output folder met by any writer (`orpheus.files.output_write_error`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from orpheus.errors import OrpheusError
from orpheus.files import output_write_error


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's examples as written."""


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An `ArgumentParser` with Orpheus's formatter; `epilog` holds usage examples."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=HelpFormatter)


def add_common_args(parser: argparse.ArgumentParser, *, jobs: bool = False, overwrite: bool = False) -> None:
    """Add `--quiet`/`--verbose` and, when asked, `--jobs` and `--overwrite`."""
    if jobs:
        parser.add_argument("--jobs", type=int, default=default_jobs(),
                            help="worker processes for per-track work; the default is all cores")
    if overwrite:
        parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="hide progress bars and info messages")
    parser.add_argument("--verbose", action="store_true", help="show debug messages")


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Log to stderr: warnings only with `quiet`, debug with `verbose`, else info."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # TensorFlow's logger has a handler of its own: without this each of its lines appears twice
    logging.getLogger("tensorflow").propagate = False


def _environment_errors() -> tuple[type[BaseException], ...]:
    """OSError, and TensorFlow's file-writer errors when TensorFlow is loaded (never imported here)."""
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    if errors is None:
        return (OSError,)
    return OSError, errors.ResourceExhaustedError, errors.PermissionDeniedError


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             func: Callable[[argparse.Namespace], int | None]) -> int:
    """Parse `argv`, set up logging and call `func(args)`; expected errors become one line and status 1."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        status = func(args)
    except OrpheusError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    except _environment_errors() as err:  # a full disk or a read-only folder met by any writer
        converted = output_write_error(err)
        if converted is None:
            raise
        print(f"{parser.prog}: error: {converted}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(status or 0)
