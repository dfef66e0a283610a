"""Fine-tuning on your own labels: zero-shot MTT_musicnn vs MTT_musicnn fine-tuned with its front end frozen
(and its WiSE-FT mix) or trained (float32, and bf16 where the CPU has bf16 instructions) vs musicnn from scratch.

    python bench/finetune.py [--work bench_work/finetune] [--clips 300] [--heldout 110] [--heldout-s 10]
                             [--cpu-budget-s 600] [--wise-alpha 0.5] [--external-dir ../shared/audio]
                             [--bf16 auto|yes|no] [--parallel 2]

One run, the real commands end to end:
1. render the training corpus (`msd.miniature.rendered`, seed 0, main pool, TimGM6mb) and a held-out corpus of other
   pieces (seed 1, heldout pool, the other SoundFont: MuseScore General; 10 s clips by default, as the
   MuseScore SoundFont renders slowly), both resumable;
2. `msd.converters.labels` -> ultimate.csv, clean_tags.db, split.csv (training corpus: 90/10 train/valid by piece;
   held-out: all test), then `orpheus preprocess` with the musicnn preset (16 kHz, 96 mels);
3. train the models on the same shards with the same budget of process CPU time each (the training
   processes' user + system seconds, startup included; the machine is shared, so wall time is longer),
   `--parallel` at a time: `configs/finetune_musicnn.json` (from MTT_musicnn, front end frozen), the same
   with the front end trained (`train.freeze` []), the same in bf16 (`train.precision` "bfloat16"; by default
   only where the CPU has bf16 instructions), and the same config from scratch.
   A budget is spent in three `orpheus/training.py` calls (1 epoch, +2 epochs, then as many epochs as the
   measured cost per epoch leaves room for, with `--resume`);
4. mix the fine-tuned weights with MTT_musicnn's (WiSE-FT, `orpheus wise-ft`, alpha 0.5: no
   training, so no CPU budget);
5. score every held-out clip (mean over its 3 s windows) with the trained models, the mix and MTT_musicnn
   as it ships (its outputs for the same-named MagnaTagATune tags), and print per-tag and macro ROC-AUC;
6. when `../shared/audio` exists (`--external-dir`), score its clips that list their General MIDI instruments
   (MIDI files of other projects rendered with FluidR3_GM, a SoundFont the corpus never uses, and aligned
   recordings) through `orpheus.Tagger`, with the same models: music nobody here wrote or rendered.

Prints the load average, CPU seconds and peak RSS of each step; writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MTT_INSTRUMENTS = ("piano", "harpsichord", "guitar", "violin", "cello", "strings", "harp", "flute", "sitar",
                   "synth", "choir", "drums")
REVIEW_TAGS = ("drums", "guitar", "piano", "strings", "synth", "choir", "flute", "harp")
EXTERNAL_DIR = ROOT.parent / "shared" / "audio"
# General MIDI program names (as the external labels.csv spells them) -> the tag, as `msd.miniature.rendered`'s families
# use the programs (arrangements.FAMILIES); a "Guitar" anywhere in the name is a guitar, "Lead"/"Pad" a synth.
GM_TAGS = {
    "drums": ("Drums",),
    "piano": ("Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano"),
    "strings": ("Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings",
                "String Ensemble 1", "String Ensemble 2"),
    "synth": ("Synth Strings 1", "Synth Strings 2"),
    "choir": ("Choir Aahs", "Voice Oohs"),
    "flute": ("Piccolo", "Flute", "Recorder", "Pan Flute"),
    "harp": ("Orchestral Harp",),
}
STEPS_PER_EPOCH = 10
SAFETY = 0.9          # of the remaining budget planned for the last call (epochs vary a little in cost)


PEAK_RSS_MB: dict[str, float] = {}


def step(name: str, argv: list) -> float:
    """Run one command; returns its CPU seconds (user + system of it and the children it waited for),
    from `os.wait4` on its own process, so commands running side by side are counted apart."""
    start = time.perf_counter()
    print(f"[{name}] {' '.join(map(str, argv))}", flush=True)
    with open(os.devnull, "w") as devnull, subprocess.Popen([str(a) for a in argv], cwd=ROOT, stdout=devnull,
                                                            stderr=subprocess.PIPE, text=True) as process:
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    PEAK_RSS_MB[name.split()[0]] = max(PEAK_RSS_MB.get(name.split()[0], 0.0), usage.ru_maxrss / 1024)
    if process.returncode != 0:
        sys.exit(f"{name} failed ({process.returncode}):\n{stderr[-3000:]}")
    print(f"[{name}] {cpu:.1f} CPU s, {time.perf_counter() - start:.1f} s wall, load {os.getloadavg()}", flush=True)
    return cpu


def orpheus(name: str, *args) -> list:
    """`orpheus NAME args...` with this interpreter."""
    return [sys.executable, "-m", "orpheus", name, *args]


def prepare(work: Path, name: str, clip_count: int, extra: list, split: list, jobs: int) -> Path:
    """Render, convert and preprocess one corpus; returns its shard folder."""
    corpus, clean, shard_dir = work / f"{name}-corpus", work / f"{name}-clean", work / f"{name}-shards"
    step(f"render {name}", orpheus("rendered", corpus, "--clips", clip_count, *extra, "--jobs", jobs, "--quiet"))
    if not (clean / "split.csv").is_file():
        step(f"labels {name}", orpheus("labels", clean, "--labels", corpus / "labels.csv", "--root-dir", corpus,
                                      "--split", *split, "--quiet"))
    if not (shard_dir / "dataset.json").is_file():
        step(f"preprocess {name}", orpheus(
            "preprocess", "log-mel-spectrogram", shard_dir, "--csv-path", clean / "ultimate.csv",
            "--tag-path", clean / "clean_tags.db", "--root-dir", corpus, "--preset", "musicnn", "--sample-rate", "16000",
            "--n-mels", "96", "--split-file", clean / "split.csv", "--num-files", "4", "--min-length-s", "5",
            "--jobs", jobs, "--quiet"))
    return shard_dir


def train_with_budget(name: str, shards: Path, config: Path, run_dir: Path, budget_s: float) -> dict:
    """Train within `budget_s` CPU seconds over three calls (see the module docstring)."""
    record = run_dir.parent / f"{run_dir.name}.budget.json"
    if record.is_file():
        return json.loads(record.read_text())
    base = [sys.executable, "orpheus/training.py", "log-mel-spectrogram", "--tfrecords-dir", shards, "--config", config,
            "--steps-per-epoch", STEPS_PER_EPOCH, "--run-dir", run_dir, "--quiet"]
    first = step(f"{name} epoch 1", base + ["--epochs", "1", "--overwrite"])
    second = step(f"{name} epochs 2..3", base + ["--epochs", "3", "--resume"])
    # first = startup + 1 epoch, second = startup + 2 epochs (a noisy difference is bounded from below)
    per_epoch = max(second - first, 0.25 * second)
    startup = max(0.0, second - 2 * per_epoch)
    left = budget_s - first - second - startup
    extra = max(0, int(SAFETY * left / per_epoch))
    used = first + second
    if extra:
        used += step(f"{name} epochs 4..{3 + extra}", base + ["--epochs", str(3 + extra), "--resume"])
    out = {"epochs": 3 + extra, "steps": (3 + extra) * STEPS_PER_EPOCH, "cpu_s": used,
           "cpu_per_epoch_s": per_epoch, "startup_cpu_s": startup}
    record.write_text(json.dumps(out))
    print(f"[{name}] {out}", flush=True)
    return out


def score_heldout(run_dir: Path, shards: Path, tags: tuple[str, ...]) -> tuple:
    """(labels [n_tracks, n_tags], scores [n_tracks, n_tags]) of the held-out test split, by tag name."""
    import numpy as np

    from orpheus.train.input_pipeline import make_track_windows
    from orpheus.formats.rundir import read_run_info
    from orpheus.formats.rundir import load_model
    info = read_run_info(run_dir)
    model = load_model(run_dir)
    columns = [info.tags.index(t) for t in tags]
    view = dataclasses.replace(info, tags=tags)      # windows and labels of the held-out tags
    labels, scores = [], []
    for _, windows, label in make_track_windows(shards, "test", view):
        probabilities = model.predict_on_batch(windows)
        scores.append(np.asarray(probabilities)[:, columns].mean(axis=0))
        labels.append(label.numpy())
    return np.array(labels), np.array(scores)


def instrument_tags(names: list[str]) -> set[str]:
    """The tags (`REVIEW_TAGS`) of a clip that plays the General MIDI instruments `names`."""
    tags = {tag for tag, programs in GM_TAGS.items() for name in names if name in programs}
    tags |= {"guitar" for name in names if "Guitar" in name}
    tags |= {"synth" for name in names if name.startswith(("Lead ", "Pad "))}
    return tags


def external_clips(audio_dir: Path) -> list[tuple[Path, set[str]]]:
    """(audio file, tags) of the clips of `audio_dir/labels.csv` that list their instruments (`families` set:
    MIDI renders and aligned recordings), sorted by file; clips without a list are not labelled and left out."""
    import csv
    with open(audio_dir / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("families") and r.get("instruments")]
    return sorted((audio_dir / "clips" / r["file"], instrument_tags(r["instruments"].split(";")))
                  for r in rows if (audio_dir / "clips" / r["file"]).is_file())


def score_files(run_dir: Path, files: list[Path], tags: tuple[str, ...]):
    """scores [n_files, n_tags] of `files` by the model in `run_dir` (`orpheus.Tagger`, mean over windows)."""
    import numpy as np

    from orpheus.api import Tagger
    results = Tagger(run_dir=run_dir).tag(files)
    failed = [r.error for r in results if not r.ok]
    if failed:
        sys.exit(f"external clips could not be tagged: {failed[0]}")
    return np.array([[r.tags[t] for t in tags] for r in results])


def roc_table(title: str, tags: tuple[str, ...], labels, scores: dict) -> dict:
    """Print per-tag, macro and review-tag macro ROC-AUC of each model's `scores`; returns them."""
    from orpheus.evaluate import per_tag_scores
    results = {}
    for name, model_scores in scores.items():
        per_tag = {s.tag: s.roc_auc for s in per_tag_scores(labels, model_scores, tags)}
        valid = [v for v in per_tag.values() if not math.isnan(v)]
        review = [per_tag[t] for t in REVIEW_TAGS if t in per_tag and not math.isnan(per_tag[t])]
        results[name] = {"per_tag": per_tag, "macro": sum(valid) / len(valid),
                         "macro_review_tags": sum(review) / len(review), "positives": labels.sum(axis=0).tolist()}
    width = max(map(len, scores))
    print(f"\n{title}")
    print(f"{'tag':12s} {'positives':>9s} " + " ".join(f"{n:>{width}s}" for n in scores))
    for i, tag in enumerate(tags):
        print(f"{tag:12s} {int(labels[:, i].sum()):9d} " + " ".join(
            f"{results[n]['per_tag'][tag]:>{width}.3f}" for n in scores))
    print(f"{'macro':12s} {'':9s} " + " ".join(f"{results[n]['macro']:>{width}.3f}" for n in scores))
    print(f"{'macro (8)':12s} {'':9s} " + " ".join(f"{results[n]['macro_review_tags']:>{width}.3f}" for n in scores))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "bench_work" / "finetune")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=110)
    parser.add_argument("--heldout-s", type=float, default=10.0, help="length of the held-out clips")
    parser.add_argument("--cpu-budget-s", type=float, default=600.0, help="process CPU seconds per trained model")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--train-only", action="store_true", help="stop after training (rerun to evaluate)")
    parser.add_argument("--wise-alpha", type=float, default=0.5,
                        help="weight of the fine-tuned model in the WiSE-FT row (orpheus wise-ft)")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="train the bf16 row: auto where the CPU has bf16 instructions (AVX512-BF16, AMX)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings run side by side")
    parser.add_argument("--external-dir", type=Path, default=EXTERNAL_DIR,
                        help="clips of other music with labels.csv (skipped when absent; default ../shared/audio)")
    args = parser.parse_args(argv)
    from orpheus.cli import quiet_tensorflow
    quiet_tensorflow([])  # scoring imports TensorFlow in this process: no start-up lines
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    from orpheus import cpu
    print(f"{cpu.describe()}; load average at start: {os.getloadavg()}", flush=True)
    shards = {"train": prepare(work, "train", args.clips, ["--seed", "0", "--pool", "main", "--soundfont", "timgm6mb"],
                               ["90", "10", "0"], args.jobs)}
    # converted once and cached (as every use of a pretrained model does), outside the training budget
    step("convert MTT_musicnn", orpheus("pretrained", "convert", "MTT_musicnn", "--quiet"))

    shipped = json.loads((ROOT / "configs" / "finetune_musicnn.json").read_text())
    variants = {"fine-tuned-frontend": {"freeze": []}, "scratch": {"init_from": None, "freeze": []}}
    if args.bf16 == "yes" or (args.bf16 == "auto" and cpu.has_bf16()):
        variants["fine-tuned-frontend-bf16"] = {"freeze": [], "precision": "bfloat16"}
    configs = {"fine-tuned": ROOT / "configs" / "finetune_musicnn.json"}
    for name, train_keys in variants.items():
        configs[name] = work / f"{name}.json"
        configs[name].write_text(json.dumps({**shipped, "train": {**shipped["train"], **train_keys}}, indent=2))
    # The trainings run side by side: each one's CPU time is its own process's (os.wait4).
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {name: pool.submit(train_with_budget, name, shards["train"], path, work / "runs" / name,
                                     args.cpu_budget_s) for name, path in configs.items()}
        budgets = {name: future.result() for name, future in futures.items()}
    if args.train_only:
        return 0

    shards["heldout"] = prepare(work, "heldout", args.heldout, ["--seed", "1", "--pool", "heldout", "--soundfont",
                                                                "musescore", "--length-s", args.heldout_s],
                                ["0", "0", "100"], args.jobs)
    from orpheus.models.pretrained import pretrained_run_dir
    from orpheus.formats.dataset import read_dataset_info
    held_tags = read_dataset_info(shards["heldout"]).tags
    train_tags = read_dataset_info(shards["train"]).tags
    tags = tuple(t for t in MTT_INSTRUMENTS if t in held_tags and t in train_tags)
    # WiSE-FT: the fine-tuned weights averaged with MTT_musicnn's (no training; `orpheus.train.finetune.interpolate`)
    step("WiSE-FT", orpheus("wise-ft", work / "runs" / "fine-tuned", work / "runs" / "fine-tuned-wise",
                           "--alpha", str(args.wise_alpha), "--overwrite", "--quiet"))
    models = {"zero-shot MTT_musicnn": pretrained_run_dir("MTT_musicnn"),
              "MTT_musicnn fine-tuned": work / "runs" / "fine-tuned",
              f"fine-tuned, WiSE-FT {args.wise_alpha:g}": work / "runs" / "fine-tuned-wise",
              "fine-tuned, front end trained": work / "runs" / "fine-tuned-frontend",
              "fine-tuned, front end trained, bf16": work / "runs" / "fine-tuned-frontend-bf16",
              "musicnn from scratch": work / "runs" / "scratch"}
    models = {name: run_dir for name, run_dir in models.items() if (run_dir / "model.keras").is_file()
              or name.startswith("zero-shot")}
    import numpy as np
    held = {name: score_heldout(run_dir, shards["heldout"], tags) for name, run_dir in models.items()}
    labels = next(iter(held.values()))[0]
    results = roc_table(f"held-out ROC-AUC ({labels.shape[0]} clips of {args.heldout_s:g} s, other pieces, MuseScore "
                        f"General SoundFont; trained on {args.clips} clips of 30 s)", tags, labels,
                        {name: scores for name, (_, scores) in held.items()})
    external = {}
    if (args.external_dir / "labels.csv").is_file():
        clips = external_clips(args.external_dir)
        ext_tags = tuple(t for t in REVIEW_TAGS if t in tags)
        ext_labels = np.array([[t in clip_tags for t in ext_tags] for _, clip_tags in clips], dtype=np.float32)
        external = roc_table(f"external ROC-AUC ({len(clips)} clips of {args.external_dir} that list their General MIDI "
                             "instruments; a tag without positives or negatives is nan)", ext_tags, ext_labels,
                             {name: score_files(run_dir, [c for c, _ in clips], ext_tags)
                              for name, run_dir in models.items()})
    for name, budget in budgets.items():
        print(f"{name}: {budget['steps']} steps ({budget['epochs']} epochs of {STEPS_PER_EPOCH}) in "
              f"{budget['cpu_s']:.0f} CPU s (budget {args.cpu_budget_s:.0f})")
    print(f"peak RSS per command: {', '.join(f'{k} {v:.0f} MB' for k, v in PEAK_RSS_MB.items())}; this process "
          f"(scoring) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load {os.getloadavg()}")
    (work / "results.json").write_text(json.dumps({"tags": tags, "models": results, "external": external, "budgets": budgets}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
