"""Evaluate a model on a shard folder (`test`) or tag audio files / the microphone (`predict`).

    test:    RUN_DIR (run.json + model.keras) + a shard folder (dataset.json + {split}-*.tfrecord)
             -> REPORT_DIR/metrics.json, per_tag.csv, predictions.npz, roc_pr.png, auc_per_tag.png,
                threshold_per_tag.png, tag_map.png
    predict: RUN_DIR (default: the converted pretrained MSD_musicnn) + audio files, a folder or a
             recording -> tags on stdout (table, JSON lines or CSV), optional taggram PNG and
             embeddings .npy
"""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence, TextIO  # noqa: E402

import numpy as np  # noqa: E402

from orpheus.cli import add_common_args, make_parser, run_main  # noqa: E402
from orpheus.errors import ConfigError, OrpheusError, Tally  # noqa: E402
from orpheus.files import atomic_dir, atomic_path, check_output, require_dir, write_csv_atomic  # noqa: E402
from orpheus.models.pretrained import DEFAULT_MODEL, resolve_model  # noqa: E402
from orpheus.ownership import FileKind, FolderKind, csv_kind, file_with, read_head  # noqa: E402

log = logging.getLogger("orpheus.test_model")

TABLE_TOP = 10  # tags shown per file by the table format when neither --top nor --threshold is given

EPILOG = """examples:
  # tag one file with the pretrained MSD musicnn model (top 10 tags)
  python orpheus/test_model.py predict --mp3 song.mp3
  # a whole folder, all tags as JSON lines, with a model trained here
  python orpheus/test_model.py predict --run-dir runs/musicnn --mp3 music/ --format json > tags.jsonl
  # 10 s of microphone, keep the recording, tags above 0.2
  python orpheus/test_model.py predict --record --record-length 10 --save-recording me.wav --threshold 0.2
  # taggram and per-window embeddings, 50% overlapping windows
  python orpheus/test_model.py predict --mp3 song.mp3 --hop 1.5 --taggram song.png --embeddings song.npy
  # a whole library into a results log; a rerun (e.g. after a kill) skips the files already done
  python orpheus/test_model.py predict --mp3 ~/Music --output tags.jsonl
  # write the top 5 tags (and the genre) into each file's own metadata; first look what would change
  python orpheus/test_model.py predict --mp3 ~/Music --top 5 --write-tags --write-genre --dry-run
  # evaluate on the test split of a shard folder
  python orpheus/test_model.py test --run-dir runs/musicnn --tfrecords-dir shards/ --out reports/musicnn
"""


# ---------------------------------------------------------------- predict

def write_outputs(results: list, tagger, *, fmt: str, threshold: float | None, top: int | None,
                  taggram: str | None, stream: TextIO) -> None:
    """Print the results in `fmt` to `stream`."""
    from orpheus.tagging.outputs import json_record, ranked_tags
    tags = tagger.tags
    if fmt == "json":
        for result in results:
            record = json_record(result, tags, threshold=threshold, top=top, taggram=taggram is not None)
            stream.write(json.dumps(record) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["file", "rank", "tag", "probability", "error"])
        for result in results:
            if result.error is not None:
                writer.writerow([result.file, "", "", "", result.error])
                continue
            for rank, (tag, p) in enumerate(ranked_tags(tags, result.scores, threshold=threshold, top=top), 1):
                writer.writerow([result.file, rank, tag, f"{p:.6f}", ""])
    else:
        if threshold is None and top is None:
            top = TABLE_TOP
        for result in results:
            stream.write(f"{result.file}\n")
            if result.error is not None:
                stream.write(f"  ERROR: {result.error}\n\n")
                continue
            for warning in result.warnings:
                stream.write(f"  warning: {warning}\n")
            pairs = ranked_tags(tags, result.scores, threshold=threshold, top=top)
            width = max([len(t) for t, _ in pairs] + [3])
            for tag, p in pairs:
                stream.write(f"  {tag:<{width}}  {p:.3f}\n")
            if not pairs:
                stream.write("  (no tag above the threshold)\n")
            stream.write("\n")


def taggram_paths(png: str, files: Sequence[str | Path]) -> list[Path]:
    """PNG path per tagged file: `png` itself for one file, else `STEM-NNN-AUDIOSTEM.png` beside it."""
    png_path = Path(png)
    if len(files) == 1:
        return [png_path]
    return [png_path.with_name(f"{png_path.stem}-{i:03d}-{Path(f).stem}{png_path.suffix or '.png'}")
            for i, f in enumerate(files)]


EMBEDDINGS_COLUMNS = ("file", "first_window", "n_windows")
EMBEDDINGS_INDEX = csv_kind("embeddings index", EMBEDDINGS_COLUMNS)


def _is_embeddings(path: Path) -> bool:
    """An .npy file with an embeddings index written by Orpheus beside it."""
    return read_head(path, 6) == b"\x93NUMPY" and EMBEDDINGS_INDEX.recognise(embeddings_index_path(path))


EMBEDDINGS = FileKind("embeddings file", _is_embeddings)


def write_embeddings(path: Path, results: list) -> None:
    """float32 [total_windows, dim] in file order to `path`, + `path.index.csv` (file, first_window, n_windows)."""
    good = [r for r in results if r.error is None]
    if not good:
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate([r.embeddings for r in good]).astype(np.float32))
    rows, first = [], 0
    for r in good:
        rows.append([r.file, first, r.embeddings.shape[0]])
        first += r.embeddings.shape[0]
    write_csv_atomic(embeddings_index_path(path), EMBEDDINGS_COLUMNS, rows)


def embeddings_index_path(path: Path) -> Path:
    return path.with_name(path.name + ".index.csv")


def check_predict_outputs(files: Sequence[Path], *, taggram: str | None, embeddings: str | None,
                          save_recording: str | None, overwrite: bool) -> None:
    """The ownership rule on predict's file outputs, before any work: each taggram PNG, the embeddings
    and their index, the saved recording."""
    from orpheus.tagging.recording import RECORDING
    from orpheus.tagging.outputs import TAGGRAM
    outputs = []
    if taggram is not None:
        outputs += [(png, TAGGRAM, "--taggram") for png in taggram_paths(taggram, files or ["<microphone>"])]
    if embeddings is not None:
        outputs += [(Path(embeddings), EMBEDDINGS, "--embeddings"),
                    (embeddings_index_path(Path(embeddings)), EMBEDDINGS_INDEX, "--embeddings")]
    if save_recording is not None:
        outputs.append((Path(save_recording), RECORDING, "--save-recording"))
    for path, kind, flag in outputs:
        check_output(path, kind, overwrite=overwrite, flag=flag)


def run_predict(*, run_dir: str | None = None, model: str = DEFAULT_MODEL, mp3: str | None = None,
                record: bool = False, record_length: float = 30.0, countdown_s: int = 3,
                save_recording: str | None = None,
                window_s: float | None = None, hop_s: float | None = None, threshold: float | None = None,
                top: int | None = None, fmt: str = "table", aggregate: str = "mean", taggram: str | None = None,
                embeddings: str | None = None, jobs: int = 1, batch_size: int | None = None, overwrite: bool = False,
                quiet: bool = False, stream: TextIO | None = None, stream_threshold_s: float | None = None,
                precision: str = "exact", output: str | None = None, write_tags: bool = False,
                write_genre: bool = False, dry_run: bool = False) -> Tally:
    """Tag files or a recording and print the results; returns how many files were tagged and failed.

    With `output` (a JSON-lines log) or `write_tags`, runs `orpheus.tagging.library` instead (resumable).
    """
    from orpheus.tagging.inputs import STREAM_THRESHOLD_S, list_audio_files
    from orpheus.tagging.outputs import plot_taggram
    from orpheus.tagging.tagger import Tagger
    stream = stream or sys.stdout
    if (mp3 is None) == (not record):
        raise ConfigError("give exactly one of --mp3 FILE_OR_DIR and --record")
    if save_recording is not None and not record:
        raise ConfigError("--save-recording needs --record")
    if top is not None and top <= 0:
        raise ConfigError(f"--top must be positive, got {top}")
    files = list_audio_files(mp3) if mp3 is not None else []
    check_predict_outputs(files, taggram=taggram, embeddings=embeddings, save_recording=save_recording,
                          overwrite=overwrite)
    if output is not None or write_tags or write_genre or dry_run:  # library-scale run (orpheus.tagging.library)
        return _predict_library(files, run_dir=run_dir, model=model, window_s=window_s, hop_s=hop_s,
                                aggregate=aggregate, batch_size=batch_size, jobs=jobs, quiet=quiet,
                                precision=precision, threshold=threshold, top=top, output=output, write_tags=write_tags,
                                write_genre=write_genre, dry_run=dry_run, fmt=fmt, record=record, taggram=taggram,
                                embeddings=embeddings, stream_threshold_s=stream_threshold_s or STREAM_THRESHOLD_S)
    if record:  # fail fast, before loading the model, when there is nothing to record from
        from orpheus.tagging.recording import input_device
        input_device()
    tagger = Tagger(resolve_model(run_dir, "--run-dir")[0] if run_dir is not None else resolve_model(model)[0], window_s=window_s, hop_s=hop_s, aggregate=aggregate,
                    batch_size=batch_size, embeddings=embeddings is not None,
                    precision=precision)
    if record:
        from orpheus.tagging.recording import record as record_audio
        from orpheus.tagging.recording import save_recording as save_wav
        samples = record_audio(record_length, tagger.info.features.sample_rate, countdown_s=countdown_s, quiet=quiet)
        if save_recording is not None:
            save_wav(save_recording, samples, tagger.info.features.sample_rate)
        results = [tagger.tag_audio(save_recording or "<microphone>", samples)]
    else:
        results = list(tagger.tag_files(files, jobs=jobs, quiet=quiet,
                                        stream_threshold_s=stream_threshold_s or STREAM_THRESHOLD_S))
    failed = [r for r in results if r.error is not None]
    for r in failed:
        log.error("%s", r.error)
    for r in results:
        for warning in r.warnings:
            log.warning("%s: %s", r.file, warning)
    write_outputs(results, tagger, fmt=fmt, threshold=threshold, top=top, taggram=taggram, stream=stream)
    if taggram is not None:
        window_s_used = tagger.window_frames / tagger.frames_per_second
        for result, png in zip(results, taggram_paths(taggram, [r.file for r in results])):
            if result.error is None:
                plot_taggram(png, result, tagger.tags, window_s_used)
    if embeddings is not None:
        write_embeddings(Path(embeddings), results)
    return Tally(len(results), failed=len(failed))


def _predict_library(files: list, *, output: str | None, write_tags: bool, write_genre: bool, dry_run: bool,
                     fmt: str, record: bool, taggram: str | None, embeddings: str | None, threshold: float | None,
                     top: int | None, **kwargs) -> Tally:
    """Check the library-run flags, then `orpheus.tagging.library.run_predict_library`."""
    from orpheus.tagging.library import LibraryOptions, run_predict_library
    if record or taggram is not None or embeddings is not None:
        raise ConfigError("--output and --write-tags tag files: drop --record, --taggram and --embeddings")
    if write_genre and not write_tags:
        raise ConfigError("--write-genre needs --write-tags")
    if dry_run and not write_tags and output is None:
        raise ConfigError("--dry-run needs --write-tags or --output")
    if fmt == "csv":
        raise ConfigError("--output and --write-tags report one line per file: use --format table or json")
    if write_tags and threshold is None and top is None:
        top = TABLE_TOP  # the same default selection as the table
    if output not in (None, "-") and not dry_run:   # before the model loads: the log must be new or one of ours
        from orpheus.tagging.library import RESULTS_LOG
        check_output(output, RESULTS_LOG, resume=True, flag="--output")
    options = LibraryOptions(output=output, write_tags=write_tags, write_genre=write_genre, dry_run=dry_run,
                             fmt=fmt, threshold=threshold, top=top)
    return run_predict_library(files, options, **kwargs)


# ---------------------------------------------------------------- test

def run_data_config(run_dir: Path):
    """The run's `data` settings from its config.json (the defaults for converted pretrained models): its
    `merge_tags` and `exclude_tids` apply to what `test` scores."""
    from orpheus.config import DataConfig, load_config
    path = run_dir / "config.json"
    return load_config(path).data if path.is_file() else DataConfig()


REPORT = FolderKind("evaluation report", legacy=file_with("metrics.json", "per_tag.csv"))
TEST_FAST_BATCH_SIZE = 4  # windows per call of fast's OpenVINO model in `test`, beside TensorFlow (see run_test)


def run_test(*, run_dir: str, tfrecords_dir: str, split: str = "test", out: str | None = None,
             threshold: float = 0.5, map_method: str = "pca", batch_size: int | None = None, overwrite: bool = False,
             quiet: bool = False, precision: str = "exact") -> dict:
    """Evaluate every window of every track of `split`; write the report; return the metrics dict."""
    from tqdm import tqdm

    from orpheus.train.input_pipeline import make_track_windows
    from orpheus.evaluate import tag_kernel, write_report
    from orpheus.formats.dataset import read_dataset_info
    from orpheus.tagging.tagger import Tagger
    run_path = require_dir(run_dir, "--run-dir run")
    shard_dir = require_dir(tfrecords_dir, "--tfrecords-dir shard")
    out_dir = Path(out) if out is not None else run_path / f"report-{split}"
    rule = dict(overwrite=overwrite, inputs=[(run_path, "run directory"), (shard_dir, "shard folder")], flag="--out")
    check_output(out_dir, REPORT, **rule)
    dataset_info = read_dataset_info(shard_dir)
    # The shards are read with TensorFlow (tf.data), so it is loaded here anyway (0.70 GB): exact runs the Keras
    # model itself, and fast's OpenVINO model gets smaller batches, which keeps the peak under 1 GB
    # (measured with MSD_musicnn on 200 tracks: exact 0.84 GB; fast 0.90 GB at 4 windows, 1.08 GB at 16).
    tagger = Tagger(run_path, batch_size=batch_size or (TEST_FAST_BATCH_SIZE if precision == "fast" else None),
                    precision=precision, engine="tensorflow" if precision == "exact" else "auto")
    batch_size = tagger.batch_size
    data = run_data_config(run_path)
    tracks = make_track_windows(shard_dir, split, tagger.info, merge_tags=data.merge_tags,
                                exclude_tids=data.exclude_tids)
    tids, labels, scores = [], [], []
    pending: list[np.ndarray] = []  # windows of tracks not yet run, batched across tracks

    def flush() -> None:
        if pending:
            probs, _ = tagger.predict_windows(np.concatenate(pending), normalised=True)
            bounds = np.cumsum([w.shape[0] for w in pending])[:-1]
            scores.extend(part.mean(axis=0) for part in np.split(probs, bounds))
            pending.clear()

    total = None if data.exclude_tids else dataset_info.counts.get(split)   # excluded tracks: counted as they come
    for tid, windows, track_labels in tqdm(tracks.as_numpy_iterator(), total=total, desc=f"evaluating {split}",
                                           unit="track", disable=quiet, dynamic_ncols=True):
        tids.append(tid.decode("utf-8"))
        labels.append(track_labels.astype(np.int8))
        pending.append(windows)
        if sum(w.shape[0] for w in pending) >= batch_size:
            flush()
    flush()
    if not tids:
        raise OrpheusError(f"{shard_dir}: no {split} tracks; check --split or rerun preprocessing")
    with atomic_dir(out_dir, REPORT, **rule) as tmp:
        metrics = write_report(tmp, tids, tagger.tags, np.stack(labels), np.stack(scores), threshold=threshold,
                               kernel=tag_kernel(tagger.model), map_method=map_method)
    log.info("%s: per-track ROC-AUC macro %.4f micro %.4f, PR-AUC (average precision) macro %.4f micro %.4f "
             "over %d tracks -> %s", split,
             metrics["roc_auc_macro"] or float("nan"), metrics["roc_auc_micro"] or float("nan"),
             metrics["pr_auc_macro"] or float("nan"), metrics["pr_auc_micro"] or float("nan"), len(tids), out_dir)
    return metrics


def format_summary(metrics: dict) -> str:
    """A short human-readable summary of a metrics dict."""
    def num(value):
        return "n/a" if value is None else f"{value:.4f}"
    lines = [f"tracks {metrics['n_tracks']}, tags evaluated {metrics['n_tags_evaluated']}/{metrics['n_tags']}",
             f"ROC-AUC macro {num(metrics['roc_auc_macro'])}  micro {num(metrics['roc_auc_micro'])}",
             f"PR-AUC  macro {num(metrics['pr_auc_macro'])}  micro {num(metrics['pr_auc_micro'])}  "
             "(per track over every window; PR-AUC is average precision)"]
    if metrics["absent_tags"]:
        lines.append(f"tags with no positive in the split (left out of the macro average): "
                     f"{', '.join(metrics['absent_tags'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    from orpheus.cli import HelpFormatter
    parser = make_parser("test_model.py", "Evaluate a model on a shard folder, or tag audio files.", EPILOG)
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
    library = predict.add_argument_group("library runs (resumable; see orpheus/library_run.py)")
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
    from orpheus.tagging.tagger import BATCH_SIZES
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
    metrics = run_test(run_dir=args.run_dir, tfrecords_dir=args.tfrecords_dir, split=args.split, out=args.out,
                       threshold=args.threshold, map_method=args.map_method, batch_size=args.batch_size,
                       overwrite=args.overwrite, quiet=args.quiet, precision=args.precision)
    print(format_summary(metrics))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, lambda args: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
