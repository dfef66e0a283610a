"""Shared command-line plumbing, and the `orpheus` command that fronts every stage.

Every command builds an `argparse` parser, then calls `run_main(parser, argv)`, which parses,
configures logging and turns an expected `OrpheusError` into a one-line message with exit status 1,
as it does a full disk or a read-only output folder met by any writer (`orpheus.files.output_write_error`).
Every command starts in `run_command`, which calls `quiet_tensorflow()` before the command's module is
imported, so no TensorFlow or absl log line is printed unless `--verbose` is given.

`main` is the `orpheus` console script (and `python -m orpheus`): `orpheus SUBCOMMAND ARGS...` imports the
subcommand's module and calls its `main(ARGS)`, so each subcommand has the flags and `--help` of that module's
command. The design card's `python orpheus/training.py` and `python orpheus/test_model.py` are two files that
call `run_command` for `orpheus train` and `orpheus test|predict`.
`COMMANDS` below is the single place where the front door names the stages: it names their modules
as strings, and only the chosen one is imported, on demand. The core package never imports a
stage (`msd`, `tfrecords`) at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from orpheus import __version__
from orpheus.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, OrpheusError, Tally
from orpheus.files import output_write_error


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's examples as written."""


_prog_override: str | None = None   # set by `main`: the subcommand's parser says `orpheus NAME`


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An `ArgumentParser` with Orpheus's formatter; `epilog` holds usage examples.

    Under the `orpheus` command the program name is the subcommand's (`orpheus predict`)."""
    return argparse.ArgumentParser(prog=_prog_override or prog, description=description, epilog=epilog,
                                   formatter_class=HelpFormatter)


def add_common_args(parser: argparse.ArgumentParser, *, jobs: bool = False, overwrite: bool = False) -> None:
    """Add `--quiet`/`--verbose` and, when asked, `--jobs` and `--overwrite`."""
    if jobs:
        parser.add_argument("--jobs", type=int, default=default_jobs(),
                            help="worker processes for per-track work; the default is all cores")
    if overwrite:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an existing output of the same kind that Orpheus wrote (never anything else)")
    parser.add_argument("--quiet", action="store_true", help="hide progress bars and info messages")
    parser.add_argument("--verbose", action="store_true", help="show debug messages")


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _StderrHandler(logging.StreamHandler):
    """A `StreamHandler` on whatever `sys.stderr` is when a record is written, not when the handler was made:
    a command run in-process (the API, a notebook, pytest's capture, `redirect_stderr`) leaves no handler on
    a stream that may be closed after it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:   # StreamHandler.__init__ sets it; the property always answers sys.stderr
        pass


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Log to stderr: warnings only with `quiet`, debug with `verbose`, else info."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[_StderrHandler()],
                        force=True)
    # TensorFlow's logger has a handler of its own: without this each of its lines appears twice
    logging.getLogger("tensorflow").propagate = False
    for name in ("tensorflow", "absl"):    # their Python-side notices: only with --verbose
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)


# ------------------------------------------------------------------------------ TensorFlow's logs
# Lines TensorFlow's C++ side prints while it loads, before it reads TF_CPP_MIN_LOG_LEVEL: absl's
# notice and its INFO/WARNING records ("I0000 00:00:1796170073.786879  8868 port.cc:153] oneDNN ...").
_START_UP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"
                             r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] ")
# Level 3 also hides C++ ERROR records: those printed at run time are notices too ("E0000 ... oneDNN
# supports DT_INT32 only on platforms with AVX-512. Falling back to ..."); real errors reach Python as exceptions.
_QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2"}


def quiet_tensorflow(argv: Sequence[str] | None = None) -> None:
    """Silence TensorFlow's and absl's log lines unless `argv` (default `sys.argv`) has `--verbose`.

    Call it before anything imports TensorFlow. It sets TF_CPP_MIN_LOG_LEVEL and GLOG_minloglevel
    (unless already set; child processes inherit them) and makes the first `import tensorflow`
    drop the start-up lines TensorFlow prints before it reads them; anything else TensorFlow writes
    to stderr while it loads is passed through as it comes (a fatal message too, even when the import then
    aborts the process). TensorFlow is not imported here.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--verbose" in argv:
        return
    for key, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport:
    """A meta-path finder that runs the first `import tensorflow` under `_start_up_lines_dropped`."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def quiet_exec_module(module) -> None:
                with _start_up_lines_dropped():
                    exec_module(module)

            spec.loader.exec_module = quiet_exec_module
        return spec


# The filter of `_start_up_lines_dropped`: a separate process, so that what TensorFlow prints just before it
# aborts the import (on a CPU without AVX, a broken CUDA install) still reaches the terminal.
_NOISE_FILTER = """
import re, sys
noise = re.compile(sys.argv[1].encode())
for line in sys.stdin.buffer:
    if not noise.match(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


@contextlib.contextmanager
def _start_up_lines_dropped() -> Iterator[None]:
    """Send file descriptor 2 through a filter process that drops `_START_UP_NOISE` lines and passes every
    other line on at once. The filter outlives this process: if the import aborts it, the line that says
    why is still printed. Where no filter can start, stderr is left as it is."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:      # no stderr to redirect
        yield
        return
    try:
        read_end, write_end = os.pipe()
    except OSError:
        os.close(saved)
        yield
        return
    try:
        noise_filter = subprocess.Popen([sys.executable, "-I", "-S", "-c", _NOISE_FILTER, _START_UP_NOISE.pattern],
                                        stdin=read_end, stdout=saved, stderr=saved)
    except (OSError, ValueError):      # no interpreter to start (an embedded Python): no filter
        for fd in (read_end, write_end, saved):
            os.close(fd)
        yield
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)      # the pipe's last write end closes: the filter passes on the rest and ends
        os.close(saved)
        noise_filter.wait()


def _environment_errors() -> tuple[type[BaseException], ...]:
    """OSError, and TensorFlow's file-writer errors when TensorFlow is loaded (never imported here)."""
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    if errors is None:
        return (OSError,)
    return OSError, errors.ResourceExhaustedError, errors.PermissionDeniedError


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             func: Callable[[argparse.Namespace], int | Tally | None]) -> int:
    """Parse `argv`, set up logging and call `func(args)`; return the exit status (`orpheus.errors`).

    Expected errors become one line `PROG: error: ...` and status 1, PROG being the command's own name
    (a subcommand's: `orpheus predict`). A `Tally` returned by `func` gives status 0, 3 (some inputs
    skipped or failed) or 1 (none done), with its counts as the last line on stderr unless 0.
    """
    args = parser.parse_args(argv)
    prog = command_prog(parser, args)
    setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        status = func(args)
    except OrpheusError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except _environment_errors() as err:  # a full disk or a read-only folder met by any writer
        converted = output_write_error(err)
        if converted is None:
            raise
        print(f"{prog}: error: {converted}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(status, Tally):
        if status.status == EXIT_ERROR:
            print(f"{prog}: error: {status.line()}", file=sys.stderr)
        elif status.status == EXIT_PARTIAL:
            print(f"{prog}: {status.line()}", file=sys.stderr)
        return status.status
    return int(status or 0)


def command_prog(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The name of the (sub)command `args` were parsed for: `orpheus predict`, not `orpheus`."""
    for action in parser._actions:   # argparse keeps its subparsers only there
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return command_prog(chosen, args)
    return parser.prog


# -------------------------------------------------------------------------------- the front door
@dataclass(frozen=True)
class Command:
    """A subcommand of `orpheus`: the module whose `main(argv)` runs it (imported only when chosen),
    arguments put before the user's (`predict` is `orpheus.commands.predict_and_test predict ...`), one line of help."""
    module: str
    summary: str
    prefix: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    # the pipeline, in order
    "fetcher": Command("msd.fetcher", "scan an audio tree into fetcher.csv (cleaning, step 1)"),
    "wrangle": Command("msd.wrangle", "join with the MSD summary, drop faulty tracks (cleaning, step 2)"),
    "silence": Command("msd.silence", "drop too-silent and too-short tracks (cleaning, step 3)"),
    "lastfm-cleaning": Command("msd.lastfm_cleaning", "merge Last.fm tags into a clean vocabulary (cleaning)"),
    "tag-stats": Command("msd.tag_stats", "statistics of a tag database"),
    "preprocess": Command("tfrecords.preprocessing", "write sharded TFRecords of waveform, log-mel or MFCC"),
    "train": Command("orpheus.commands.train", "train a tagging model on a shard folder"),
    "wise-ft": Command("orpheus.commands.wise_ft", "mix a fine-tuned run with the model it started from (WiSE-FT)"),
    "test": Command("orpheus.commands.predict_and_test", "evaluate a run directory on a shard split", ("test",)),
    "predict": Command("orpheus.commands.predict_and_test", "tag audio files or a recording", ("predict",)),
    "export": Command("orpheus.commands.export", "export a run directory for serving"),
    "models": Command("orpheus.commands.models", "list the model zoo with parameter counts"),
    "pretrained": Command("orpheus.commands.pretrained", "list or convert the pretrained musicnn models"),
    # other datasets into the cleaning stage's outputs
    "mtt": Command("msd.converters.mtt", "convert MagnaTagATune"),
    "fma": Command("msd.converters.fma", "convert the Free Music Archive"),
    "jamendo": Command("msd.converters.jamendo", "convert MTG-Jamendo"),
    "labels": Command("msd.converters.labels", "convert your own labelled audio"),
    # miniature datasets and the demo
    "synthetic": Command("msd.miniature.synthetic_msd", "generate a miniature MSD in the real formats"),
    "synthetic-mtt": Command("msd.miniature.synthetic_mtt", "generate a miniature MagnaTagATune"),
    "synthetic-fma": Command("msd.miniature.synthetic_fma", "generate a miniature FMA"),
    "synthetic-jamendo": Command("msd.miniature.synthetic_jamendo", "generate a miniature MTG-Jamendo"),
    "rendered": Command("msd.miniature.rendered", "render a miniature dataset from MIDI"),
    "demo": Command("msd.miniature.demo", "run every stage on a built-in miniature corpus"),
}

FRONT_DOOR_EPILOG = """examples:
  orpheus predict --mp3 ~/Music --top 10            # tag your music with the pretrained MSD_musicnn
  orpheus demo --workdir /tmp/orpheus_demo          # every stage on a generated miniature MSD
  orpheus train log-mel-spectrogram --tfrecords-dir shards --config my.json --epochs 20 --run-dir runs/a
  orpheus predict --help                            # a subcommand's own flags and examples

`python -m orpheus NAME ARGS` runs the same as `orpheus NAME ARGS`. Three stages also run as the design's scripts:
`python tfrecords/preprocessing.py`, `python orpheus/training.py`, `python orpheus/test_model.py test|predict`."""


def build_parser() -> argparse.ArgumentParser:
    """The `orpheus` parser: only for `orpheus --help`; each subcommand parses its own arguments."""
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())
    parser = make_parser("orpheus", "Orpheus: music auto-tagging, from cleaning the MSD to tagging your songs.\n\n"
                         f"subcommands:\n{listing}", FRONT_DOOR_EPILOG)
    parser.add_argument("command", metavar="SUBCOMMAND", choices=sorted(COMMANDS), help="what to run (above)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (orpheus SUBCOMMAND --help)")
    parser.add_argument("--version", action="version", version=f"orpheus {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`orpheus SUBCOMMAND ARGS...`: run the subcommand's module's `main(ARGS)`; returns its status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        args = build_parser().parse_args(argv)   # --help, --version, or a usage error (exit 2)
        argv = [args.command, *args.args]
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        build_parser().error(f"unknown subcommand {name!r}; choose from {', '.join(COMMANDS)}")
    try:
        return run_command(command.module, [*command.prefix, *rest], "orpheus" if command.prefix else f"orpheus {name}")
    except ModuleNotFoundError as err:
        if err.name is None or not (command.module == err.name or command.module.startswith(err.name + ".")):
            raise                                 # the module exists but lacks one of its dependencies
        print(f"orpheus: error: subcommand {name!r} is not available: module {command.module} is not "
              "installed with this copy of Orpheus", file=sys.stderr)
        return 1


def run_command(module: str, argv: Sequence[str], prog: str) -> int:
    """Import the command module `module` (TensorFlow's log lines silenced first, unless `argv` has --verbose) and
    return its `main(argv)`, its parsers named `prog`. `main` above and the design card's scripts
    (`python orpheus/training.py`, `python orpheus/test_model.py`) start every command here."""
    global _prog_override
    quiet_tensorflow(argv)
    command = importlib.import_module(module)
    _prog_override = prog
    try:
        return int(command.main(list(argv)) or 0)
    finally:
        _prog_override = None
