"""`orpheus predict` (tag audio files, a folder or a recording: `orpheus.tagging.predict`) and `orpheus test`
(evaluate a run on a shard split: `orpheus.evaluate`), one parser with the two as subcommands; also
`python orpheus/test_model.py predict|test`.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from orpheus.cli import HelpFormatter, add_common_args, make_parser, run_main
from orpheus.models.pretrained import DEFAULT_MODEL
from orpheus.tagging.backends import use_system_allocator
from orpheus.tagging.predict import TABLE_TOP, run_predict
from orpheus.tagging.tagger import BATCH_SIZES

EPILOG = """examples:
  # tag one file with the pretrained MSD musicnn model (top 10 tags)
  orpheus predict --mp3 song.mp3
  # a whole folder, all tags as JSON lines, with a model trained here
  orpheus predict --run-dir runs/musicnn --mp3 music/ --format json > tags.jsonl
  # 10 s of microphone, keep the recording, tags above 0.2
  orpheus predict --record --record-length 10 --save-recording me.wav --threshold 0.2
  # taggram and per-window embeddings, 50% overlapping windows
  orpheus predict --mp3 song.mp3 --hop 1.5 --taggram song.png --embeddings song.npy
  # a whole library into a results log; a rerun (e.g. after a kill) skips the files already done
  orpheus predict --mp3 ~/Music --output tags.jsonl
  # write the top 5 tags (and the genre) into each file's own metadata; first look what would change
  orpheus predict --mp3 ~/Music --top 5 --write-tags --write-genre --dry-run
  # evaluate on the test split of a shard folder
  orpheus test --run-dir runs/musicnn --tfrecords-dir shards/ --out reports/musicnn
"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("orpheus", "Evaluate a model on a shard folder, or tag audio files.", EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    predict = sub.add_parser("predict", help="tag audio files, a folder or a recording", epilog=EPILOG,
                             formatter_class=HelpFormatter)
    model = predict.add_mutually_exclusive_group()
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="pretrained model: MSD_musicnn, MTT_musicnn, MSD_vgg or MTT_vgg")
    model.add_argument("--run-dir", help="a run directory (run.json + model.keras) instead of --model")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--mp3", metavar="FILE_OR_DIR", help="an audio file, or a folder walked recursively "
                        "for mp3/ogg/opus/flac/wav (sorted)")
    source.add_argument("--record", action="store_true", help="record from the default input device, then tag")
    predict.add_argument("--record-length", type=float, default=30.0, help="seconds to record")
    predict.add_argument("--countdown", type=int, default=3, help="seconds of countdown before recording")
    predict.add_argument("--save-recording", metavar="OUT.wav", help="keep the recording as a wav file")
    predict.add_argument("--window", dest="window_s", type=float, default=None,
                         help="seconds per window, e.g. 3 or 15; None: the model's window")
    predict.add_argument("--hop", dest="hop_s", type=float, default=None,
                         help="seconds between window starts; None: the window length (no overlap)")
    select = predict.add_mutually_exclusive_group()
    select.add_argument("--threshold", type=float, default=None, help="show tags with probability >= this")
    select.add_argument("--top", type=int, default=None,
                        help=f"show the N most probable tags; None: {TABLE_TOP} for table, all for json/csv")
    predict.add_argument("--format", dest="fmt", choices=("table", "json", "csv"), default="table",
                         help="output on stdout; json: one object per line and file")
    predict.add_argument("--aggregate", choices=("mean", "max"), default="mean",
                         help="track score from its windows' probabilities")
    predict.add_argument("--taggram", metavar="PNG", help="heat map of tags over time (one PNG per file, "
                         "numbered beside PNG for several files); adds the taggram to json output")
    predict.add_argument("--embeddings", metavar="OUT.npy", help='the "embedding" layer per window, float32 '
                         "[n_windows, dim] in file order (+ OUT.npy.index.csv)")
    add_model_args(predict)
    library = predict.add_argument_group("library runs (resumable; see orpheus.tagging.library)")
    library.add_argument("--output", metavar="OUT.jsonl", help="append one JSON record per file (all tags "
                         "unless --top/--threshold) to this log instead of printing: a new file or a log written by "
                         "predict (nothing else is touched); a rerun skips files recorded with the same path, size, "
                         "mtime, model and settings; - : the records on standard output")
    library.add_argument("--write-tags", action="store_true", help="write the selected tags (--top/--threshold; "
                         f"default top {TABLE_TOP}) into each file as one value joined by '; ': ID3 "
                         "TXXX:ORPHEUS_TAGS (mp3, wav; the tag keeps its version) or Vorbis comment ORPHEUS_TAGS "
                         "(ogg, opus, flac), + ORPHEUS_MODEL; nothing else in the file changes (owner, mode, "
                         "xattrs, hard links kept); files already tagged by this model and selection are left "
                         "alone; stdout lists each file written or skipped, and why (--format json: a JSON "
                         "record per file, with the fields written)")
    library.add_argument("--write-genre", action="store_true", help="with --write-tags, also set the genre "
                         "field (and a wav's RIFF INFO genre) to the most probable selected tag")
    library.add_argument("--dry-run", action="store_true", help="print what --write-tags (or --output) would "
                         "change, skips included, and change nothing")
    add_common_args(predict, jobs=True, overwrite=True)
    predict.set_defaults(func=_predict_command)

    test = sub.add_parser("test", help="evaluate a run on a split of a shard folder", epilog=EPILOG,
                          formatter_class=HelpFormatter)
    test.add_argument("--run-dir", required=True, help="run directory (run.json + model.keras)")
    test.add_argument("--tfrecords-dir", required=True, help="shard folder (dataset.json + *.tfrecord)")
    test.add_argument("--split", default="test", choices=("train", "valid", "test"))
    test.add_argument("--out", help="report folder; None: RUN_DIR/report-SPLIT")
    test.add_argument("--threshold", type=float, default=0.5, help="for per-tag accuracy and recall")
    test.add_argument("--tag-map", dest="map_method", choices=("pca", "tsne"), default="pca",
                      help="projection of the output layer's tag vectors")
    add_model_args(test)
    add_common_args(test, overwrite=True)
    test.set_defaults(func=_test_command)
    return parser


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--batch-size and --precision, shared by predict and test."""
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"windows per model call (default {BATCH_SIZES['openvino']} in OpenVINO, split over "
                             "fast's streams, "
                             f"{BATCH_SIZES['tensorflow']} in TensorFlow); larger is a little faster but peaks "
                             "higher (MSD_musicnn in TensorFlow: 8 -> under 1 GB, 64 -> about 2.2 GB)")
    parser.add_argument("--precision", choices=("exact", "fast"), default="exact",
                        help="exact: float32, in OpenVINO where installed and checked to reproduce TensorFlow "
                             "(to 1e-4; no TensorFlow loaded: less memory and start-up), else TensorFlow; fast: "
                             "OpenVINO in the fastest arithmetic this CPU has that stays within 0.015 of float32 "
                             "on generated music, timed and checked once per CPU and model (about 15 CPU s) and cached: "
                             "int8 spectrogram convolutions + bf16 or bf16 where the CPU has bf16 instructions "
                             "(AVX512-BF16, AMX), int8 + float32 or float32 elsewhere (promise: scores within 0.03 "
                             "of exact, top-3 tags equal on 90%% of files); exact without OpenVINO. `test` reads "
                             "its shards with TensorFlow, so there exact is TensorFlow itself")


def _predict_command(args: argparse.Namespace) -> int:
    return run_predict(run_dir=args.run_dir, model=args.model, mp3=args.mp3, record=args.record,
                       record_length=args.record_length, countdown_s=args.countdown, save_recording=args.save_recording,
                       window_s=args.window_s, hop_s=args.hop_s, threshold=args.threshold, top=args.top,
                       fmt=args.fmt, aggregate=args.aggregate, taggram=args.taggram, embeddings=args.embeddings,
                       jobs=args.jobs, batch_size=args.batch_size, overwrite=args.overwrite, quiet=args.quiet,
                       precision=args.precision, output=args.output, write_tags=args.write_tags,
                       write_genre=args.write_genre, dry_run=args.dry_run)


def _test_command(args: argparse.Namespace) -> int:
    from orpheus.evaluate import format_summary, run_test   # TensorFlow reads the shards: kept out of predict

    metrics = run_test(run_dir=args.run_dir, tfrecords_dir=args.tfrecords_dir, split=args.split, out=args.out,
                       threshold=args.threshold, map_method=args.map_method, batch_size=args.batch_size,
                       overwrite=args.overwrite, quiet=args.quiet, precision=args.precision)
    print(format_summary(metrics))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    use_system_allocator()   # before TensorFlow loads (it may not: OpenVINO runs predict without it)
    return run_main(build_parser(), argv, lambda args: args.func(args))
