"""`orpheus train` (also `python orpheus/training.py`): a shard folder -> a run directory, by `orpheus.train.loop`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from orpheus.audio.settings import FORMATS
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.config import load_config
from orpheus.formats.rundir import MODEL_FILE
from orpheus.train import finetune
from orpheus.train.loop import train

EPILOG = """examples:
  python orpheus/training.py log-mel-spectrogram --tfrecords-dir data/tfrecords-log-mel \\
      --config configs/urop2019_log_mel.json --epochs 20 --run-dir runs/pons-log-mel
  python orpheus/training.py log-mel-spectrogram --tfrecords-dir data/tfrecords-log-mel \\
      --config configs/urop2019_log_mel.json --epochs 40 --run-dir runs/pons-log-mel --resume
  orpheus train waveform --tfrecords-dir data/tfrecords-waveform \\
      --config configs/urop2019_waveform.json --epochs 20 --loop custom --cuda 0 1
  orpheus train log-mel-spectrogram --tfrecords-dir data/tfrecords-musicnn \\
      --config configs/finetune_musicnn.json --epochs 10 --init-from MTT_musicnn --freeze frontend \\
      --run-dir runs/my_tags
  orpheus wise-ft runs/my_tags runs/my_tags_wise    # WiSE-FT: mix it with MTT_musicnn
multi-worker: set TF_CONFIG in each worker's environment and run the same command on each."""


def build_parser():
    parser = make_parser("orpheus train", "Train a tagging model on a TFRecord shard folder.", EPILOG)
    parser.add_argument("format", choices=FORMATS, help="feature format of the shards")
    parser.add_argument("--tfrecords-dir", required=True, type=Path, help="shard folder with dataset.json")
    parser.add_argument("--config", required=True, type=Path, help="JSON config (see configs/)")
    parser.add_argument("--epochs", required=True, type=int, help="epochs to reach")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="global steps per epoch (default: one pass over the training split)")
    parser.add_argument("--loop", choices=("fit", "custom"), default=None,
                        help="training loop (default: train.loop of the config)")
    parser.add_argument("--run-dir", type=Path, default=None, help="output run directory (default: runs/CONFIG)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --run-dir")
    parser.add_argument("--cuda", type=int, nargs="+", default=None, help="GPU indices (default: all GPUs)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: train.seed of the config)")
    parser.add_argument("--init-from", default=None, metavar="MODEL_OR_RUN_DIR",
                        help="fine-tune: start from a pretrained model (MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg) "
                             "or a run directory; the output layer is rebuilt for the new tags "
                             "(default: train.init_from of the config)")
    parser.add_argument("--freeze", nargs="+", default=None, metavar="PART",
                        help="fine-tune: parts kept fixed (default: train.freeze of the config); "
                             f"{finetune.parts_help()}")
    add_common_args(parser, overwrite=True)
    return parser


def run(args) -> int:
    config = load_config(args.config)
    overrides = {k: v for k, v in (("loop", args.loop), ("seed", args.seed), ("init_from", args.init_from),
                                   ("freeze", args.freeze and tuple(args.freeze))) if v is not None}
    if overrides:
        config = config.replace(train=overrides)
    run_dir = args.run_dir or Path("runs") / args.config.stem
    out = train(args.tfrecords_dir, config, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                run_dir=run_dir, resume=args.resume, overwrite=args.overwrite, feature_format=args.format,
                cuda=args.cuda, quiet=args.quiet)
    print(out / MODEL_FILE)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, run)
