"""`orpheus export RUN_DIR OUT`: a model with its feature settings for serving outside Orpheus (`orpheus.export`)."""

from __future__ import annotations

import argparse
from typing import Sequence

from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.export import FORMATS, MODEL_FILES, export_model

EPILOG = """examples:
  # the pretrained MSD musicnn model as ONNX, with its feature settings
  orpheus export MSD_musicnn exported/musicnn-onnx --format onnx
  # a model trained here, as OpenVINO IR
  orpheus export runs/musicnn exported/musicnn-ov --format openvino
"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("orpheus export", "Export a run directory's model with its feature settings.", EPILOG)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (run.json + model.keras) or a "
                        "pretrained model name (MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg)")
    parser.add_argument("out", metavar="OUT", help="new folder for the model, features.json and tags.txt "
                        "(--overwrite replaces only an export Orpheus wrote)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="savedmodel",
                        help="savedmodel (TensorFlow), onnx (tf2onnx), openvino (IR) or litert (.tflite)")
    add_common_args(parser, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def run(args: argparse.Namespace) -> int:
        out = export_model(args.run_dir, args.out, args.fmt, overwrite=args.overwrite)
        print(out / MODEL_FILES[args.fmt])
        return 0
    return run_main(build_parser(), argv, run)
