"""Preprocessing stage: `ultimate.csv` + `clean_lastfm.db` + audio -> sharded TFRecords + `dataset.json`.

Inputs:
    ultimate.csv      one row per track: track_id, artist_id, mp3_path (relative to --root-dir); when the
                      columns audio_start/audio_end (seconds) exist, only that span is decoded: this is
                      how the original urop2019 Orpheus dropped the leading and trailing silence found by
                      the cleaning stage. An empty value means the start / the end of the file.
    clean_lastfm.db   tables tids(tid), tags(tag), tid_tag(tid, tag, val) joined on ROWIDs, read with
                      `orpheus.formats.tagdb`; every tid_tag row is a positive (val >= 0).
                      Tag output order = ROWID order of the `tags` table.

Outputs in OUT_DIR:
    {split}-{i:05d}-of-{n:05d}.tfrecord   examples per `orpheus.formats.tfrecord` (tid, artist_id, audio, tags)
    dataset.json                         `orpheus.formats.tfrecord.DatasetInfo`: settings, tags, counts, command
    skipped.csv                          track_id,reason for every track left out
    progress/{shard}.json                per-shard sidecar: settings fingerprint, byte size, tracks
                                         written, per-tag positives, tracks skipped in that shard
    .preprocessing.lock                  the lock that keeps two runs from writing the same shards

The stage in modules, in the order it runs:
    tfrecords/plan.py     the split and the shard of every track, from the inputs alone (so
                          `--shard-index` and every runner need no coordination); global shard order
                          is train, then valid, then test: `--shard-index I` indexes that order
    tfrecords/shards.py   per-track features, one shard's file and sidecar, the resume test, and
                          dataset.json + skipped.csv from the sidecars
    tfrecords/runners.py  who writes the shards still to do: `--runner pool` (this machine's process
                          pool) or `--runner beam` (an Apache Beam pipeline: locally, or on Dataflow,
                          Flink or Spark through `--beam-options`), and the folder lock
    this file             `run` (plan, lock, resume, runner, aggregate) and the command line

Resume: a shard is written to a temporary name and renamed when complete, after its sidecar. A shard
counts as done when its file and its sidecar exist, the fingerprint matches and the byte size agrees;
anything else is redone. `dataset.json` and `skipped.csv` aggregate the sidecars and are written by
whichever run finds all shards done (with --shard-index, the last array job; or a plain rerun, which
then only aggregates).

float16 storage (`--dtype float16`) halves the size. Its rounding error, measured on the 50 shared
music clips (16 kHz): log-mel "db" preset at most 0.0156 dB (values within [-58, 36] dB), "musicnn"
preset 0.002, MFCC 0.125 (coefficient 0 reaches +-500), waveform 4.9e-4.
"""

import sys

import argparse
import logging
import shlex
from collections import Counter
from pathlib import Path
from typing import Sequence

from orpheus.audio import features as audio_features
from orpheus.cli import add_common_args, make_parser, run_command, run_main
from orpheus.errors import ConfigError, OutputExistsError, OutputWriteError
from orpheus.audio.settings import FORMATS
from orpheus.files import mark
from orpheus.ownership import claim
from tfrecords.plan import Shard, plan
from tfrecords.runners import RUNNERS, folder_lock, run_beam, run_pool
from tfrecords.shards import (PROGRESS_DIR, SHARD_FOLDER, SKIPPED_CSV, ShardSettings, aggregate,
                              fingerprint, output_errors, remove_leftovers, resolve_settings, shard_state)

log = logging.getLogger(__name__)


def run(fmt: str, out_dir: str | Path, *, csv_path: str | Path, tag_path: str | Path, root_dir: str | Path,
        sample_rate: int = 16000, n_mels: int = 96, preset: str = "db", n_fft: int | None = None,
        hop_length: int | None = None, n_mfcc: int = 20, dtype: str = "float32", min_length_s: float = 15.0,
        num_files: int = 100, split: Sequence[float] = (80, 10, 10), split_file: str | Path | None = None,
        shard_index: int | None = None, jobs: int = 1, overwrite: bool = False, quiet: bool = False,
        command: str = "", runner: str = "pool", beam_options: str = "", verbose: bool = False) -> dict:
    """Write (or resume) the shard folder `out_dir`.

    Args:
        runner: "pool" (this machine's process pool of `jobs` workers) or "beam" (an Apache Beam
            pipeline; `beam_options` are its PipelineOptions flags, the DirectRunner by default).

    Returns:
        A summary: {"shards_written", "shards_done", "shards_total", "counts" (per split, or None
        until all shards are done), "skipped" (list of (track_id, reason), or None likewise)}.

    Raises:
        OutputExistsError: shards of other settings or another plan are there (without `overwrite`),
            or another run is writing to `out_dir`.
        OutputWriteError: `out_dir` cannot be written (full disk, read-only, not a folder).
    """
    if runner not in RUNNERS:
        raise ConfigError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    settings = resolve_settings(fmt, sample_rate=sample_rate, n_mels=n_mels, preset=preset, n_fft=n_fft,
                                hop_length=hop_length, n_mfcc=n_mfcc, dtype=dtype, min_length_s=min_length_s)
    out = Path(out_dir)   # a new folder or a shard folder (resumed), never anything else: checked first
    claimed = claim(out, SHARD_FOLDER, resume=True, inputs=[(csv_path, "master CSV"), (tag_path, "tag database"),
                                                            (root_dir, "audio root")],
                    read_whole=[root_dir], flag="OUT_DIR")
    vocabulary, shards, skipped_before = plan(csv_path, tag_path, root_dir, split=split, split_file=split_file,
                                              num_files=num_files)
    if shard_index is not None and not 0 <= shard_index < len(shards):
        raise ConfigError(f"--shard-index {shard_index} out of range: this input has {len(shards)} shards "
                          f"(0..{len(shards) - 1})")
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        if claimed == "new":
            mark(out, SHARD_FOLDER)
        with folder_lock(out, shard_index):
            return _write(out, shards, settings, vocabulary, skipped_before, shard_index=shard_index, jobs=jobs,
                          overwrite=overwrite, quiet=quiet, command=command, runner=runner,
                          beam_options=beam_options, verbose=verbose)


def _write(out: Path, shards: list[Shard], settings: ShardSettings, vocabulary: list[str],
           skipped_before: list[tuple[str, str]], *, shard_index: int | None, jobs: int, overwrite: bool,
           quiet: bool, command: str, runner: str, beam_options: str, verbose: bool) -> dict:
    """`run` once the plan is made and the folder locked: resume test, runner, aggregation."""
    planned = {s.name for s in shards}
    strays = sorted(p for p in out.glob("*-*-of-*.tfrecord") if p.name not in planned)
    if strays and shard_index is None:
        if not overwrite:
            raise OutputExistsError(f"{out}: holds shards of another plan ({strays[0].name}, ...); "
                                    "pass --overwrite to replace them or choose another OUT_DIR")
        for path in strays:
            path.unlink()
            (out / PROGRESS_DIR / f"{path.name}.json").unlink(missing_ok=True)
    fingerprints = {s.name: fingerprint(settings, vocabulary, s) for s in shards}
    selected = shards if shard_index is None else [shards[shard_index]]
    todo: list[Shard] = []
    for shard in selected:
        state = shard_state(out, shard, fingerprints[shard.name])
        if state == "stale" and not overwrite:
            raise OutputExistsError(f"{out / shard.name}: written with other settings or inputs; pass "
                                    "--overwrite to replace it or choose another OUT_DIR")
        if state != "done":
            todo.append(shard)
        else:
            remove_leftovers(out, shard)
    log.info("%d shard(s) in all; %d to write, %d already complete", len(selected), len(todo),
             len(selected) - len(todo))
    if todo and runner == "beam":
        run_beam(out, todo, settings, vocabulary, fingerprints, jobs=jobs, quiet=quiet, verbose=verbose,
                 beam_options=beam_options)
    elif todo:
        run_pool(out, todo, settings, vocabulary, fingerprints, jobs=jobs, quiet=quiet)
    done = [s for s in shards if shard_state(out, s, fingerprints[s.name]) == "done"]
    missing = [s.name for s in todo if s not in done]
    if missing:  # only a runner that lost a worker without reporting it gets here
        raise OutputWriteError(f"{out}: {len(missing)} shard(s) not written ({missing[0]}, ...); see the "
                               "runner's log, then rerun the same command to resume")
    summary = {"shards_written": len(todo), "shards_done": len(done), "shards_total": len(shards),
               "counts": None, "skipped": None}
    if len(done) == len(shards):
        summary["counts"], summary["skipped"] = aggregate(out, shards, settings, vocabulary, skipped_before, command)
    else:
        log.info("%d of %d shards complete; dataset.json and skipped.csv are written when the last one is",
                 len(done), len(shards))
    return summary


EPILOG = """examples:
  # log-mel in dB (the urop2019 recipe), 100 shards, 80/10/10 artist-separated split, all cores
  python tfrecords/preprocessing.py log-mel-spectrogram shards/ --csv-path ultimate.csv \\
      --tag-path clean_lastfm.db --root-dir /data/msd/audio

  # musicnn log-mel stored as float16, a published split
  orpheus preprocess log-mel-spectrogram shards_mn/ --preset musicnn --dtype float16 \\
      --csv-path ultimate.csv --tag-path clean_lastfm.db --root-dir audio --split-file split.csv

  # one shard per array job (Slurm: --shard-index $SLURM_ARRAY_TASK_ID), 20 MFCCs
  python tfrecords/preprocessing.py mfcc shards_mfcc/ --n-mfcc 20 --num-files 64 --shard-index 7 \\
      --csv-path ultimate.csv --tag-path clean_lastfm.db --root-dir audio

  # the same shards from an Apache Beam pipeline (pip install -e ".[beam]"): here the local
  # DirectRunner on all cores; on a cluster add e.g. --beam-options="--runner=FlinkRunner ..."
  python tfrecords/preprocessing.py log-mel-spectrogram shards/ --runner beam --csv-path ultimate.csv \\
      --tag-path clean_lastfm.db --root-dir /data/msd/audio

Shards are numbered train first, then valid, then test (--shard-index indexes that order).
A rerun resumes: complete shards are kept, incomplete ones redone. Both runners write the same
bytes. float16 error (measured on music): log-mel db <= 0.0156 dB, musicnn <= 0.002, MFCC <= 0.125,
waveform <= 4.9e-4."""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("orpheus preprocess", "Decode, resample and compute features of the tracks of ultimate.csv "
                         "and write them with their clean tags as sharded TFRecords + dataset.json.", EPILOG)
    parser.add_argument("format", choices=FORMATS, help="feature to store")
    parser.add_argument("out_dir", help="output folder of shards, dataset.json, skipped.csv")
    parser.add_argument("--csv-path", required=True, help="ultimate.csv from the cleaning stage")
    parser.add_argument("--tag-path", required=True, help="clean_lastfm.db from the cleaning stage")
    parser.add_argument("--root-dir", required=True, help="folder the mp3_path column is relative to")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int, default=16000,
                        help="sample rate of the decoded audio, Hz")
    parser.add_argument("--n-mels", dest="n_mels", type=int, default=96,
                        help="mel bands (log-mel, and under the MFCC)")
    parser.add_argument("--preset", choices=tuple(audio_features.PRESETS), default="db",
                        help="log-mel recipe: db = power_to_db, n_fft 2048, hop 512; musicnn = log10(10000x+1), "
                             "n_fft 512, hop 256 (MFCC always uses db)")
    parser.add_argument("--n-fft", type=int, default=None, help="STFT size in samples; None = the preset's")
    parser.add_argument("--hop-length", type=int, default=None, help="STFT hop in samples; None = the preset's")
    parser.add_argument("--n-mfcc", type=int, default=20, help="MFCC coefficients (mfcc format)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage of the feature; float16 halves the size (error: see below)")
    parser.add_argument("--min-length-s", type=float, default=15.0,
                        help="skip tracks shorter than this (one model window), seconds")
    parser.add_argument("--num-files", type=int, default=100, help="shards in all, shared among the splits")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split", type=float, nargs=3, default=(80.0, 10.0, 10.0), metavar=("TRAIN", "VALID", "TEST"),
                       help="percentages, assigned by a stable hash of the artist id")
    group.add_argument("--split-file", default=None, help="CSV track_id,split deciding each track's split")
    parser.add_argument("--shard-index", type=int, default=None,
                        help="write only this shard (0-based, train then valid then test), for job arrays")
    parser.add_argument("--runner", choices=RUNNERS, default="pool",
                        help="pool: this machine's process pool; beam: an Apache Beam pipeline (the [beam] extra), "
                             "the DirectRunner on --jobs cores unless --beam-options names another runner")
    parser.add_argument("--beam-options", default="", metavar="FLAGS",
                        help="with --runner beam: flags for Beam's PipelineOptions, one quoted string after '=', "
                             "e.g. --beam-options=\"--runner=DataflowRunner --project=P --region=R "
                             "--temp_location=gs://B/tmp\"")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def command_line(argv: Sequence[str]) -> str:
    """The command as recorded in dataset.json: the same for every --shard-index job."""
    kept: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg == "--shard-index":
            skip_next = True
        elif not arg.startswith("--shard-index="):
            kept.append(arg)
    return shlex.join(["python", "tfrecords/preprocessing.py", *kept])


def _main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    summary = run(args.format, args.out_dir, csv_path=args.csv_path, tag_path=args.tag_path, root_dir=args.root_dir,
                  sample_rate=args.sample_rate, n_mels=args.n_mels, preset=args.preset, n_fft=args.n_fft,
                  hop_length=args.hop_length, n_mfcc=args.n_mfcc, dtype=args.dtype, min_length_s=args.min_length_s,
                  num_files=args.num_files, split=args.split, split_file=args.split_file,
                  shard_index=args.shard_index, jobs=args.jobs, overwrite=args.overwrite, quiet=args.quiet,
                  command=command_line(argv), runner=args.runner, beam_options=args.beam_options,
                  verbose=args.verbose)
    print(f"shards: {summary['shards_written']} written, "
          f"{summary['shards_done']} of {summary['shards_total']} complete")
    if summary["counts"] is not None:
        counts = ", ".join(f"{split} {n}" for split, n in summary["counts"].items())
        reasons = Counter(reason.split(":")[0] for _, reason in summary["skipped"])
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) or "none"
        print(f"tracks written: {sum(summary['counts'].values())} ({counts}); skipped: "
              f"{len(summary['skipped'])} ({detail}), listed in {Path(args.out_dir) / SKIPPED_CSV}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(build_parser(), argv, lambda args: _main(args, argv))


if __name__ == "__main__":   # the design card's `python tfrecords/preprocessing.py`, which is `orpheus preprocess`
    sys.exit(run_command("tfrecords.preprocessing", sys.argv[1:], "python tfrecords/preprocessing.py"))
