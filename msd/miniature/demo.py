"""The whole pipeline on a built-in synthetic corpus, from raw MSD-format files to tags.

    orpheus demo [--dataset msd|mtt|fma|jamendo|rendered] [--workdir demo_work] [--tracks 300] [--loop fit|custom]

Every stage runs for real, as the same command a user would type (so the demo also checks the
documented commands): generate a miniature MSD in the real formats, clean it (fetcher -> wrangle ->
silence -> lastfm_cleaning), write log-mel TFRecord shards with an artist-separated split, train,
evaluate on the test split, and tag a few tracks with the model just trained and with the
pretrained musicnn models. Finished stages are skipped on a rerun (their outputs are complete
files, written atomically), so an interrupted demo resumes.

With `--dataset mtt`, `fma` or `jamendo` the corpus is a miniature MagnaTagATune, FMA or MTG-Jamendo in
those datasets' real formats, cleaned by `orpheus mtt` / `fma` / `jamendo` and split by the dataset's
own split file. With `--dataset rendered` it is MIDI pieces rendered with FluidSynth (`orpheus rendered`,
instrument families as tags), converted by `orpheus labels`, and the model is MTT_musicnn fine-tuned
(configs/finetune_musicnn.json).

Outputs under WORKDIR: corpus/ (the generated raw files), clean/ (CSV + tag databases), shards/,
runs/demo/, report/ (metrics and plots), predictions/.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from orpheus import cli
from orpheus.data import data_file
from orpheus.errors import EXIT_PARTIAL, OrpheusError
from orpheus.files import mark
from orpheus.ownership import FolderKind, claim

log = logging.getLogger(__name__)

DEMO_CONFIG = data_file("demo.json")     # package data: the demo needs no checkout
FINETUNE_CONFIG = data_file("finetune_musicnn.json")   # musicnn preset, from MTT_musicnn (= configs/finetune_musicnn.json)
PRETRAINED_MODELS = ("MSD_musicnn", "MTT_musicnn")
N_PREDICT_TRACKS = 4
# WORKDIR; written before the ownership marker, it holds the corpus and the cleaned data
DEMO_FOLDER = FolderKind("demo folder",
                         legacy=lambda folder: all((folder / name).is_dir() for name in ("corpus", "clean")))
DEMO_EPOCHS = 12


@dataclass
class Stage:
    """One step of the demo: a command, the file that proves it finished, and what to say."""
    name: str
    argv: list[str]
    done_when: Path
    seconds: float = 0.0
    skipped: bool = False


@dataclass
class DemoPaths:
    work: Path
    raw: Path = field(init=False)          # the generated corpus in its dataset's own formats
    clean: Path = field(init=False)        # master CSV, tag database (and split file)
    shards: Path = field(init=False)
    run: Path = field(init=False)
    report: Path = field(init=False)
    predictions: Path = field(init=False)

    def __post_init__(self) -> None:
        self.raw = self.work / "corpus"
        self.clean = self.work / "clean"
        self.shards = self.work / "shards"
        self.run = self.work / "runs" / "demo"
        self.report = self.work / "report"
        self.predictions = self.work / "predictions"


@dataclass(frozen=True)
class Corpus:
    """A generated dataset cleaned into the files preprocessing reads.

    stages:      generate + clean, ending with `csv` and `tags` written.
    csv / tags:  master CSV (track_id, artist_id, mp3_path) and clean tag database.
    audio_root:  folder the CSV's mp3_path is relative to.
    split_args:  preprocessing's split options (an artist-hash split or the dataset's own split file).
    truth:       track id -> the tags the generator rendered the audio from.
    features / config: preprocessing's feature options and the training config (the rendered corpus
                 fine-tunes MTT_musicnn, so it needs the musicnn preset).
    """
    stages: list[Stage]
    csv: Path
    tags: Path
    audio_root: Path
    split_args: list[str]
    truth: Callable[[], dict[str, list[str]]]
    features: tuple[str, ...] = ()
    config: Path = DEMO_CONFIG


def orpheus_command(name: str, *args: str | Path) -> list[str]:
    """`orpheus NAME args...` with this interpreter (`python -m orpheus NAME ...`)."""
    return [sys.executable, "-m", "orpheus", name, *map(str, args)]


def msd_corpus(p: DemoPaths, tracks: int, seed: int, jobs: int) -> Corpus:
    """A miniature MSD through the four cleaning commands."""
    jobs_args = ["--jobs", str(jobs)]
    audio = p.raw / "audio"
    stages = [
        Stage("generate a miniature MSD", orpheus_command(
            "synthetic", p.raw, "--tracks", tracks, "--seed", seed, *jobs_args), p.raw / "truth.csv"),
        Stage("fetcher: scan the audio tree", orpheus_command(
            "fetcher", p.clean / "fetcher.csv", "--root-dir", audio, *jobs_args), p.clean / "fetcher.csv"),
        Stage("wrangle: join with the MSD summary", orpheus_command(
            "wrangle", p.clean / "fetcher.csv", p.clean / "wrangle.csv",
            "--path-h5", p.raw / "msd_summary_file.h5", "--path-db", p.raw / "lastfm_tags.db",
            "--path-txt-mism", p.raw / "sid_mismatches.txt", "--path-txt-dupl", p.raw / "msd_duplicates.txt",
            "--discard-no-tag", "--discard-dupl"), p.clean / "wrangle.csv"),
        Stage("silence: drop too-silent and too-short tracks", orpheus_command(
            "silence", p.clean / "wrangle.csv", p.clean / "ultimate.csv", "--root-dir", audio,
            "--min-size", "100000", "--filter-trim-length", "15", "--filter-tot-silence", "3",
            "--filter-max-silence", "1", *jobs_args), p.clean / "ultimate.csv"),
        Stage("lastfm_cleaning: build the clean tag vocabulary", orpheus_command(
            "lastfm-cleaning", p.raw / "lastfm_tags.db", p.clean / "clean_lastfm.db"),
            p.clean / "clean_lastfm.db"),
    ]
    return Corpus(stages, p.clean / "ultimate.csv", p.clean / "clean_lastfm.db", audio,
                  ["--split", "70", "10", "20"], lambda: truth_from_csv(p.raw / "truth.csv"))


def mtt_corpus(p: DemoPaths, tracks: int, seed: int, jobs: int) -> Corpus:
    """A miniature MagnaTagATune, synonyms merged, with the standard split by folder."""
    stages = [
        Stage("generate a miniature MagnaTagATune", orpheus_command(
            "synthetic-mtt", p.raw, "--clips", tracks, "--seed", seed, "--jobs", jobs),
            p.raw / "synthetic_manifest.json"),
        Stage("mtt: clean tags, merge synonyms, split by folder", orpheus_command(
            "mtt", p.clean, "--root-dir", p.raw, "--merge-synonyms", "--top", "50", "--discard-no-tag",
            "--jobs", jobs), p.clean / "skipped.csv"),
    ]
    return Corpus(stages, p.clean / "ultimate.csv", p.clean / "clean_tags.db", p.raw,
                  ["--split-file", str(p.clean / "split.csv")], lambda: truth_from_manifest(p.raw, "tags"))


def fma_corpus(p: DemoPaths, tracks: int, seed: int, jobs: int) -> Corpus:
    """A miniature FMA, all genres of each track as its tags, with the official split."""
    stages = [
        Stage("generate a miniature FMA", orpheus_command(
            "synthetic-fma", p.raw, "--tracks", tracks, "--seed", seed, "--jobs", jobs),
            p.raw / "synthetic_manifest.json"),
        Stage("fma: genres as tags, official split", orpheus_command(
            "fma", p.clean, "--metadata-dir", p.raw / "fma_metadata", "--root-dir", p.raw / "fma_large",
            "--subset", "large", "--tags", "all", "--jobs", jobs), p.clean / "skipped.csv"),
    ]
    return Corpus(stages, p.clean / "ultimate.csv", p.clean / "clean_tags.db", p.raw / "fma_large",
                  ["--split-file", str(p.clean / "split.csv")], lambda: truth_from_manifest(p.raw, "genres"))


def jamendo_corpus(p: DemoPaths, tracks: int, seed: int, jobs: int) -> Corpus:
    """A miniature MTG-Jamendo, the top-50 tags subset (without their categories), official split 0."""
    stages = [
        Stage("generate a miniature MTG-Jamendo", orpheus_command(
            "synthetic-jamendo", p.raw, "--tracks", tracks, "--seed", seed, "--jobs", jobs),
            p.raw / "synthetic_manifest.json"),
        Stage("jamendo: top-50 tags, official split 0", orpheus_command(
            "jamendo", p.clean, "--metadata-dir", p.raw / "data", "--root-dir", p.raw / "audio",
            "--subset", "top50tags", "--split", "0", "--jobs", jobs), p.clean / "skipped.csv"),
    ]

    def truth() -> dict[str, list[str]]:  # the manifest's raw genre---rock names, as msd.converters.jamendo names them
        from msd.converters.jamendo import tag_names
        raw = truth_from_manifest(p.raw, "tags")
        names = tag_names(sorted({tag for tags in raw.values() for tag in tags}), "short")
        return {track_id: [names[tag] for tag in tags] for track_id, tags in raw.items()}

    return Corpus(stages, p.clean / "ultimate.csv", p.clean / "clean_tags.db", p.raw / "audio",
                  ["--split-file", str(p.clean / "split.csv")], truth)


def rendered_corpus(p: DemoPaths, tracks: int, seed: int, jobs: int) -> Corpus:
    """MIDI pieces rendered with FluidSynth, instrument families as tags (`msd.miniature.rendered` + `msd.converters.labels`)."""
    labels = p.raw / "labels.csv"
    stages = [
        Stage("render MIDI pieces with FluidSynth", orpheus_command(
            "rendered", p.raw, "--clips", tracks, "--seed", seed, "--jobs", jobs), labels),
        Stage("labels: labels.csv -> the cleaning stage's outputs", orpheus_command(
            "labels", p.clean, "--labels", labels, "--root-dir", p.raw, "--split", "70", "10", "20"),
            p.clean / "split.csv"),
    ]

    def truth() -> dict[str, list[str]]:
        with open(labels, newline="", encoding="utf-8") as f:
            return {row["file"]: row["tags"].split(";") for row in csv.DictReader(f)}
    return Corpus(stages, p.clean / "ultimate.csv", p.clean / "clean_tags.db", p.raw,
                  ["--split-file", str(p.clean / "split.csv")], truth, ("--preset", "musicnn"), FINETUNE_CONFIG)


CORPORA = {"msd": msd_corpus, "mtt": mtt_corpus, "fma": fma_corpus, "jamendo": jamendo_corpus,
           "rendered": rendered_corpus}


def learning_stages(p: DemoPaths, corpus: Corpus, loop: str, epochs: int, seed: int, jobs: int) -> list[Stage]:
    """Shards, training and evaluation on the cleaned corpus."""
    train_args = ["--loop", loop, "--seed", str(seed), "--epochs", str(epochs)]
    return [
        Stage("preprocessing: log-mel TFRecord shards", orpheus_command(
            "preprocess", "log-mel-spectrogram", p.shards, "--csv-path", corpus.csv,
            "--tag-path", corpus.tags, "--root-dir", corpus.audio_root, "--sample-rate", "16000", "--n-mels", "96",
            "--num-files", "10", *corpus.features, *corpus.split_args, "--jobs", str(jobs)), p.shards / "dataset.json"),
        Stage("training", orpheus_command(
            "train", "log-mel-spectrogram", "--tfrecords-dir", p.shards, "--config", corpus.config,
            "--run-dir", p.run, *train_args), p.run / "model.keras"),
        Stage("test: evaluate on the test split", orpheus_command(
            "test", "--run-dir", p.run, "--tfrecords-dir", p.shards, "--split", "test",
            "--out", p.report), p.report / "metrics.json"),
    ]


def log_flags(quiet: bool, verbose: bool) -> list[str]:
    """The demo's own `--quiet` / `--verbose`, passed on to every stage command. Each stage silences
    TensorFlow's log lines itself unless it gets `--verbose` (`orpheus.cli.quiet_tensorflow`)."""
    return ["--quiet"] * quiet + ["--verbose"] * verbose


def run_stage(stage: Stage, quiet: bool, verbose: bool = False) -> None:
    """Run one stage unless its output already exists; raise OrpheusError if it fails.

    The stage runs in this process's working directory, so relative paths mean the same to both."""
    print(f"==> {stage.name}", flush=True)
    if stage.done_when.exists():
        stage.skipped = True
        print(f"    already done ({stage.done_when}); skipping", flush=True)
        return
    print("    $ " + shlex.join(stage.argv), flush=True)
    argv = stage.argv + log_flags(quiet, verbose)
    start = time.perf_counter()
    result = subprocess.run(argv)
    stage.seconds = time.perf_counter() - start
    if result.returncode == EXIT_PARTIAL:
        print("    some inputs were skipped (see above); going on with the others", flush=True)
    elif result.returncode != 0:
        raise OrpheusError(f"stage '{stage.name}' failed with exit status {result.returncode}; "
                           "fix the error above and rerun the demo to resume from this stage")
    print(f"    done in {stage.seconds:.1f} s", flush=True)


def truth_from_manifest(raw: Path, key: str) -> dict[str, list[str]]:
    """Track id -> its `key` list (MTT "tags", FMA "genres") from a generator's synthetic_manifest.json."""
    manifest = json.loads((raw / "synthetic_manifest.json").read_text(encoding="utf-8"))
    return {track_id: entry[key] for track_id, entry in manifest.items()}


def truth_from_csv(truth_csv: Path) -> dict[str, list[str]]:
    """Track id -> true clean tags, from the MSD generator's truth.csv."""
    with open(truth_csv, newline="", encoding="utf-8") as f:
        return {row["track_id"]: [t for t in row["tags"].split(";") if t] for row in csv.DictReader(f)}


def test_tracks(p: DemoPaths, corpus: Corpus, n: int) -> list[tuple[str, Path]]:
    """The first `n` tracks (by track id) of the test shards, as (track id, mp3 path)."""
    import tensorflow as tf  # only here: the rest of the demo runs the stages as subprocesses

    from orpheus.formats import dataset as datasets
    from orpheus.formats import tfrecord as spec

    info = datasets.read_dataset_info(p.shards)
    parse = spec.parse_fn(info.spec())
    test_ids = {parse(record)["tid"].numpy().decode() for record in
                tf.data.TFRecordDataset(datasets.shard_paths(p.shards, "test"))}
    with open(corpus.csv, newline="", encoding="utf-8") as f:
        rows = sorted((row for row in csv.DictReader(f) if row["track_id"] in test_ids), key=lambda r: r["track_id"])
    return [(row["track_id"], corpus.audio_root / row["mp3_path"]) for row in rows[:n]]


def predict(p: DemoPaths, model_args: list[str], label: str, files: list[Path],
            verbose: bool = False) -> dict[str, dict[str, float]]:
    """Tag `files` with `orpheus predict`; returns file -> {tag: probability}."""
    folder = p.predictions / "input"
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    out = p.predictions / f"{label}.json"
    if not out.exists():
        argv = orpheus_command("predict", *model_args, "--mp3", folder, "--format", "json",
                              *log_flags(False, verbose))
        print("    $ " + shlex.join(argv), flush=True)
        result = subprocess.run(argv, capture_output=True, text=True)
        if verbose:
            sys.stderr.write(result.stderr)
        if result.returncode != 0:
            raise OrpheusError(f"tagging with {label} failed: {result.stderr.strip().splitlines()[-1:]}")
        out.write_text(result.stdout, encoding="utf-8")
    tags: dict[str, dict[str, float]] = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            tags[Path(record["file"]).name] = record["tags"]
    return tags


def top(tags: dict[str, float], n: int = 5) -> str:
    return ", ".join(f"{tag} {prob:.2f}" for tag, prob in sorted(tags.items(), key=lambda kv: -kv[1])[:n])


def run(work: Path, tracks: int, seed: int, loop: str, epochs: int, jobs: int, pretrained: bool,
        quiet: bool, dataset: str = "msd", verbose: bool = False) -> dict:
    """Run the whole demo on a generated `dataset` in `work`; returns the summary (also `work/summary.json`)."""
    p = DemoPaths(work)
    if claim(work, DEMO_FOLDER, resume=True, flag="--workdir") == "new":   # a rerun resumes; nothing else is used
        work.mkdir(parents=True, exist_ok=True)
        mark(work, DEMO_FOLDER)
    corpus = CORPORA[dataset](p, tracks, seed, jobs)
    stages = corpus.stages + learning_stages(p, corpus, loop, epochs, seed, jobs)
    started = time.perf_counter()
    for stage in stages:
        run_stage(stage, quiet, verbose)

    metrics = json.loads((p.report / "metrics.json").read_text(encoding="utf-8"))
    print("==> predict: tags for a few test tracks", flush=True)
    truth = corpus.truth()
    chosen = test_tracks(p, corpus, N_PREDICT_TRACKS)
    models = [("trained", ["--run-dir", str(p.run)])]
    if pretrained:
        models += [(name, ["--model", name]) for name in PRETRAINED_MODELS]
    predict_start = time.perf_counter()
    predictions = {label: predict(p, args, label, [path for _, path in chosen], verbose) for label, args in models}
    predict_seconds = time.perf_counter() - predict_start
    for tid, path in chosen:
        print(f"\n  {tid} ({path.name})\n    true tags:   {', '.join(truth.get(tid, [])) or '-'}")
        for label, _ in models:
            print(f"    {label + ':':<13}{top(predictions[label].get(path.name, {}))}")

    total = time.perf_counter() - started
    summary = {
        "dataset": dataset,
        "seconds_total": round(total, 1),
        "stages": {s.name: ("skipped" if s.skipped else round(s.seconds, 1)) for s in stages},
        "seconds_predict": round(predict_seconds, 1),
        "test_tracks": metrics["n_tracks"],
        "test_macro_roc_auc": metrics["roc_auc_macro"],
        "test_macro_pr_auc": metrics["pr_auc_macro"],
        "test_micro_roc_auc": metrics["roc_auc_micro"],
        "test_micro_pr_auc": metrics["pr_auc_micro"],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(p, summary)
    return summary


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(p: DemoPaths, summary: dict) -> None:
    print("\n==> summary")
    for name, seconds in summary["stages"].items():
        print(f"    {name:<52} {seconds if seconds == 'skipped' else f'{seconds:7.1f} s'}")
    print(f"    {'tagging with each model':<52} {summary['seconds_predict']:7.1f} s")
    print(f"    {'total':<52} {summary['seconds_total']:7.1f} s")
    print(f"\n    test split ({summary['test_tracks']} tracks): macro ROC-AUC {_score(summary['test_macro_roc_auc'])}"
          f"   PR-AUC {_score(summary['test_macro_pr_auc'])}   (micro ROC-AUC {_score(summary['test_micro_roc_auc'])}"
          f"   PR-AUC {_score(summary['test_micro_pr_auc'])})")
    print(f"""
    artifacts: corpus {p.raw}, cleaned data {p.clean}, shards {p.shards},
               model {p.run}, report and plots {p.report}, predictions {p.predictions}
    next: tag your own music   orpheus predict --mp3 ~/Music --top 10
          on the real MSD      orpheus fetcher fetcher.csv --root-dir /data/msd/7digital
          (then wrangle, silence, lastfm-cleaning: see docs/cleaning.md)""")


def build_parser():
    parser = cli.make_parser(
        "orpheus demo",
        "Run every Orpheus stage on a built-in synthetic MSD: generate, clean, preprocess, train, evaluate, tag.",
        "examples:\n"
        "  orpheus demo                       # ~300 tracks, about 10 minutes on 2 cores\n"
        "  orpheus demo --tracks 120 --workdir /tmp/orpheus_demo --loop custom\n"
        "  orpheus demo --no-pretrained      # skip the musicnn comparison\n"
        "  orpheus demo --dataset mtt --workdir demo_mtt   # a miniature MagnaTagATune instead\n"
        "  orpheus demo --dataset rendered --tracks 100 --workdir demo_rendered   # FluidSynth renders,\n"
        "                                           # instrument tags, fine-tuned from MTT_musicnn")
    parser.add_argument("--dataset", choices=sorted(CORPORA), default="msd",
                        help="which dataset's formats the generated corpus takes")
    parser.add_argument("--workdir", type=Path, default=Path("demo_work"), help="folder for every output")
    parser.add_argument("--tracks", type=int, default=300, help="tracks (clips) in the generated corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus, split and training")
    parser.add_argument("--loop", choices=("fit", "custom"), default="fit", help="training loop")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                        help="also tag with the pretrained musicnn models")
    cli.add_common_args(parser, jobs=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return cli.run_main(parser, argv, lambda a: run(a.workdir, a.tracks, a.seed, a.loop, a.epochs, a.jobs,
                                                     a.pretrained, a.quiet, a.dataset, a.verbose) and 0)
