"""The demo driver: its stage commands follow the documented CLI contracts, and it runs end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from msd.miniature import demo


@pytest.mark.parametrize("dataset", sorted(demo.CORPORA))
def test_stages_are_the_documented_commands(tmp_path, dataset):
    p = demo.DemoPaths(tmp_path)
    corpus = demo.CORPORA[dataset](p, 300, 0, 2)
    stages = corpus.stages + demo.learning_stages(p, corpus, "custom", 3, 0, 2)
    names = [stage.argv[3] for stage in stages]
    assert all(stage.argv[:3] == [sys.executable, "-m", "orpheus"] for stage in stages)
    assert names[-3:] == ["preprocess", "train", "test"]
    training = stages[-2].argv
    assert training[training.index("--loop") + 1] == "custom" and training[training.index("--epochs") + 1] == "3"
    preprocessing = stages[-3].argv
    assert preprocessing[preprocessing.index("--csv-path") + 1] == str(corpus.csv)
    if dataset == "msd":
        assert names[:5] == ["synthetic", "fetcher", "wrangle", "silence", "lastfm-cleaning"]
        wrangle = stages[2].argv
        for flag in ("--path-h5", "--path-db", "--path-txt-mism", "--path-txt-dupl", "--discard-no-tag",
                     "--discard-dupl"):
            assert flag in wrangle
        assert preprocessing[preprocessing.index("--split") + 1:preprocessing.index("--split") + 4] == ["70", "10", "20"]
    else:
        assert "--split-file" in preprocessing


@pytest.mark.parametrize("dataset, key", [("mtt", "tags"), ("fma", "genres")])
def test_truth_comes_from_each_generators_manifest(tmp_path, dataset, key):
    p = demo.DemoPaths(tmp_path)
    p.raw.mkdir(parents=True)
    (p.raw / "synthetic_manifest.json").write_text(json.dumps({"42": {key: ["rock", "pop"], "fault": ""}}))
    assert demo.CORPORA[dataset](p, 10, 0, 1).truth() == {"42": ["rock", "pop"]}


def test_truth_csv_of_the_msd_generator(tmp_path):
    p = demo.DemoPaths(tmp_path)
    p.raw.mkdir(parents=True)
    (p.raw / "truth.csv").write_text("track_id,fault,tags\nTR1,,rock;female\nTR2,untagged,\n")
    assert demo.msd_corpus(p, 10, 0, 1).truth() == {"TR1": ["rock", "female"], "TR2": []}


def test_summary_prints_undefined_metrics_as_na(tmp_path, capsys):
    summary = {"stages": {"training": 1.0, "fetcher": "skipped"}, "seconds_predict": 2.0, "seconds_total": 3.0,
               "test_tracks": 5, "test_macro_roc_auc": 0.91234, "test_macro_pr_auc": None,
               "test_micro_roc_auc": 0.5, "test_micro_pr_auc": 0.25}
    demo.print_summary(demo.DemoPaths(tmp_path), summary)
    out = capsys.readouterr().out
    assert "macro ROC-AUC 0.912   PR-AUC n/a" in out and "skipped" in out


@pytest.mark.slow
def test_miniature_msd_trains_clearly_above_chance(tmp_path):
    """Generate -> clean -> shards -> a short CPU training -> test, as the demo runs it (about 4 minutes).

    The score asserted is the test split's, over every window of each track. Validation during training
    scores one centred window per track, and at this corpus size the artist-separated validation split
    holds about 10 tracks, too few for its ROC-AUC to mean much (the 300-track demo's reaches 0.83).
    The pipeline is deterministic for a seed, so this check does not flake.
    """
    work = tmp_path / "w"
    summary = demo.run(work, tracks=160, seed=0, loop="custom", epochs=8, jobs=2, pretrained=False, quiet=True)
    with open(work / "runs" / "demo" / "history.csv", encoding="utf-8") as f:
        last_epoch = list(csv.DictReader(f))[-1]
    assert float(last_epoch["crop_roc_auc"]) > 0.75            # learned the training split
    assert summary["test_tracks"] > 0 and summary["test_macro_roc_auc"] > 0.75


def test_stages_run_in_the_callers_working_directory(tmp_path, monkeypatch, capsys):
    """Relative paths mean the same to the demo and to its stage commands (it runs them where it runs)."""
    monkeypatch.chdir(tmp_path)
    stage = demo.Stage("write the working directory", [sys.executable, "-c",
                       "import os, pathlib; pathlib.Path('w/cwd.txt').write_text(os.getcwd())"], Path("w/cwd.txt"))
    Path("w").mkdir()
    demo.run_stage(stage, quiet=True)
    assert Path("w/cwd.txt").read_text() == str(tmp_path) and not stage.skipped
    demo.run_stage(stage, quiet=True)
    assert stage.skipped and "already done" in capsys.readouterr().out


def test_demo_config_ships_with_the_package():
    import orpheus
    from orpheus.config import load_config

    assert demo.DEMO_CONFIG.is_relative_to(Path(orpheus.__file__).parent)
    assert load_config(demo.DEMO_CONFIG).train.batch_size > 0


def test_stage_commands_get_the_demos_log_flags():
    assert demo.log_flags(quiet=True, verbose=False) == ["--quiet"]
    assert demo.log_flags(quiet=False, verbose=True) == ["--verbose"]


@pytest.mark.slow
def test_demo_from_another_folder_with_a_relative_workdir(tmp_path):
    """`orpheus demo --workdir rel` started outside the repository: every stage finds its files,
    and neither the demo nor its stage commands print TensorFlow's log lines."""
    from tests.fixtures_commands import NOISE, clean_env

    result = subprocess.run([sys.executable, "-m", "orpheus", "demo", "--workdir", "rel", "--tracks", "40", "--epochs", "1",
                             "--no-pretrained", "--jobs", "2", "--quiet"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "rel" / "summary.json").read_text())
    assert summary["test_tracks"] > 0 and (tmp_path / "rel" / "runs" / "demo" / "last.keras").is_file()
    assert not NOISE.search(result.stderr), result.stderr[-3000:]
