"""A run directory's `model.keras` is the best epoch's model, which `test` and `predict` use; `last.keras`
is the last epoch's. The run below learns for two epochs, then a learning-rate jump wrecks its last one."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from orpheus.commands import predict_and_test
from orpheus.formats.rundir import load_model
from orpheus.train.callbacks import BEST_WEIGHTS
from orpheus.commands.train import main
from tests.fixtures_training import write_learnable_shards

# 0.003 for two epochs (8 steps), then the step schedule multiplies the rate by 1000 for the third
WRECKED_LAST_EPOCH = {
    "data": {"window_s": 0.5, "top_n_tags": 3, "shuffle_buffer": 32},
    "model": {"name": "pons_log_mel", "n_filters": 1, "n_dense": 16, "dropout": 0.1},
    "train": {"batch_size": 8, "learning_rate": 0.003, "batch_norm_momentum": 0.8, "seed": 3,
              "schedule": "step", "decay_rate": 1000.0, "decay_epochs": 2.0}}


@pytest.fixture(scope="module")
def wrecked_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("best")
    shards = tmp / "shards"
    write_learnable_shards(shards, {"train": 48, "valid": 24, "test": 8}, n_frames=24)
    config = tmp / "wrecked.json"
    config.write_text(json.dumps(WRECKED_LAST_EPOCH))
    run_dir = tmp / "run"
    assert main(["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--epochs", "3",
                 "--steps-per-epoch", "4", "--run-dir", str(run_dir), "--quiet"]) == 0
    return shards, run_dir


def weights(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights]


def test_model_keras_holds_the_best_epoch_and_last_keras_the_last(wrecked_run):
    _, run_dir = wrecked_run
    with open(run_dir / "history.csv", newline="") as f:
        scores = [float(row["val_crop_pr_auc"]) for row in csv.DictReader(f)]
    assert len(scores) == 3 and scores[-1] < max(scores)          # the premise: the last epoch is worse

    used = weights(load_model(run_dir))                          # what test and predict load
    best = keras.saving.load_model(run_dir / "model.keras", compile=False)
    best.load_weights(run_dir / "checkpoints" / BEST_WEIGHTS)
    last = weights(keras.saving.load_model(run_dir / "last.keras", compile=False))
    assert all(np.array_equal(u, b) for u, b in zip(used, weights(best), strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(used, last, strict=True))


def test_test_scores_the_best_weights(wrecked_run, tmp_path):
    """`test` on the validation split scores model.keras well above the wrecked last epoch."""
    shards, run_dir = wrecked_run
    last_dir = tmp_path / "last"
    shutil.copytree(run_dir, last_dir, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    shutil.copy(run_dir / "last.keras", last_dir / "model.keras")
    macro = {}
    for name, folder in (("best", run_dir), ("last", last_dir)):
        assert predict_and_test.main(["test", "--run-dir", str(folder), "--tfrecords-dir", str(shards), "--split", "valid",
                                "--out", str(tmp_path / f"report-{name}"), "--quiet"]) == 0
        macro[name] = json.loads((tmp_path / f"report-{name}" / "metrics.json").read_text())["roc_auc_macro"]
    assert macro["best"] > macro["last"] + 0.1, macro
