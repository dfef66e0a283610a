"""`orpheus wise-ft RUN_DIR OUT_DIR`: a fine-tuned run mixed with the model it started from (WiSE-FT,
`orpheus.train.finetune.interpolate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.train.finetune import WISE_ALPHA, interpolate

EPILOG = """examples:
  orpheus wise-ft runs/my_tags runs/my_tags_wise
  orpheus wise-ft runs/my_tags runs/my_tags_wise07 --alpha 0.7
  orpheus predict --run-dir runs/my_tags_wise --mp3 ~/Music --top 5

alpha 1 is the fine-tuned run itself and alpha 0 the model it started from; 0.5 (the default) keeps most
of the fine-tuned gains on music like the training set and more of the source's on other music."""


def build_parser():
    parser = make_parser("orpheus wise-ft", "Mix a fine-tuned run with the model it started from "
                         "(weight-space ensembling, WiSE-FT) into a new run directory.", EPILOG)
    parser.add_argument("run_dir", type=Path, help="a run trained with --init-from")
    parser.add_argument("out_dir", type=Path, help="the new run directory")
    parser.add_argument("--alpha", type=float, default=WISE_ALPHA,
                        help="weight of the fine-tuned run, 0..1 (default %(default)s)")
    parser.add_argument("--source", help="the model the run started from (default: its train.init_from)")
    add_common_args(parser, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def call(args) -> int:
        print(interpolate(args.run_dir, args.out_dir, alpha=args.alpha, source=args.source,
                          overwrite=args.overwrite))
        return 0
    return run_main(build_parser(), argv, call)
