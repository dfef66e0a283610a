"""`orpheus pretrained list|convert`: the pretrained musicnn models (`orpheus.models.pretrained`), listed or
converted into run directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from orpheus.cli import HelpFormatter, add_common_args, make_parser, run_main
from orpheus.errors import MissingDependencyError
from orpheus.models.musicnn_checkpoint import INSTALL_COMMAND
from orpheus.models.pretrained import PRETRAINED, cached_run_dir, convert, is_complete_run_dir

EPILOG = """examples:
  orpheus pretrained list
  orpheus pretrained convert                 # all four into the cache folder
  orpheus pretrained convert MSD_musicnn     # one, into the cache folder; prints its path
  orpheus pretrained convert MTT_musicnn --out runs/mtt_musicnn --overwrite

The cache folder is $ORPHEUS_CACHE, else $XDG_CACHE_HOME/orpheus, else ~/.cache/orpheus.
The checkpoints come from the musicnn package: """ + INSTALL_COMMAND


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("orpheus pretrained",
                         "List the pretrained musicnn models or convert them into Orpheus run directories.", EPILOG)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--musicnn-dir", type=Path, default=None,
                        help="folder of the musicnn package holding the checkpoints; None: the installed one")
    common.add_argument("--cache-dir", type=Path, default=None,
                        help="cache root; None: $ORPHEUS_CACHE, $XDG_CACHE_HOME/orpheus or ~/.cache/orpheus")
    add_common_args(common)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], formatter_class=HelpFormatter, epilog=EPILOG,
                        help="list the pretrained models and whether they are installed and converted")
    convert_parser = commands.add_parser("convert", parents=[common], formatter_class=HelpFormatter,
                                         epilog=EPILOG, help="convert pretrained models into run directories")
    convert_parser.add_argument("name", nargs="?", choices=sorted(PRETRAINED), default=None,
                                help="the model to convert; None: all four")
    convert_parser.add_argument("--out", type=Path, default=None,
                                help="run directory to write (with no NAME: a folder receiving one run "
                                     "directory per model); None: the cache folder")
    convert_parser.add_argument("--overwrite", action="store_true",
                                help="replace a run directory that Orpheus wrote (never anything else)")
    return parser


def run_list(package_dir: Path | None, cache_dir: Path | None) -> list[str]:
    """One line per pretrained model: name, architecture, tag count, status (cached path)."""
    lines = []
    for name, entry in PRETRAINED.items():
        try:
            run_dir = cached_run_dir(name, package_dir=package_dir, cache_dir=cache_dir)
            status = f"converted: {run_dir}" if is_complete_run_dir(run_dir) else "installed, not converted yet"
        except MissingDependencyError:
            status = f"not installed ({INSTALL_COMMAND})"
        lines.append(f"{name:12s} {entry.architecture:8s} {len(entry.tags()):3d} tags  {entry.description}\n"
                     f"{'':12s} {status}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.command == "list":
        print("\n".join(run_list(args.musicnn_dir, args.cache_dir)))
        return 0
    names = [args.name] if args.name else list(PRETRAINED)
    for name in names:
        if args.out is None:
            run_dir = cached_run_dir(name, package_dir=args.musicnn_dir, cache_dir=args.cache_dir)
            if args.overwrite or not is_complete_run_dir(run_dir):
                convert(name, run_dir, overwrite=True, package_dir=args.musicnn_dir)
        else:
            run_dir = args.out if args.name else args.out / name
            convert(name, run_dir, overwrite=args.overwrite, package_dir=args.musicnn_dir)
        print(f"{name}\t{run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, run)
