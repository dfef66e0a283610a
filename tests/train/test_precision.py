"""`train.precision`: bf16 training against float32 on a tiny musicnn, its saved models, resume, fine-tuning.

bf16 runs here whatever the CPU: with AVX512-BF16 or AMX it is the fast path, without it TensorFlow
emulates it (slower, same numbers), so the tests hold on every machine.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from orpheus.config import config_from_dict
from orpheus.cpu import has_bf16 as cpu_has_bf16
from orpheus.train.precision import resolve_precision
from orpheus.train.loop import train
from tests.fixtures_training import write_learnable_shards
from tests.fixtures_training import TWO_REPLICAS

ROOT = Path(__file__).resolve().parents[2]
MUSICNN = {"data": {"window_s": 0.5, "top_n_tags": None, "shuffle_buffer": 32},
           "model": {"name": "musicnn", "n_filters": 4, "n_dense": 8, "dropout": 0.1},
           "train": {"batch_size": 8, "learning_rate": 0.003, "seed": 3, "early_stopping_patience": 0,
                     "batch_norm_momentum": 0.8}}
EPOCHS, STEPS = 3, 3
# bf16 keeps 8 bits of mantissa, and its rounding sends training down another path: the per-epoch training
# loss of the tiny run (about 0.73 -> 0.49, front end trained) stays within this of float32's. Measured on an
# AMD EPYC Zen 4: within 0.023 (Keras's own Conv2D and BatchNormalization in bf16: 0.053).
LOSS_TOLERANCE = 0.08


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    shard_dir = tmp_path_factory.mktemp("shards")
    write_learnable_shards(shard_dir, {"train": 32, "valid": 16, "test": 8}, n_frames=24)
    return shard_dir


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory) -> dict[str, Path]:
    """The same run in float32 (model.fit) and in bfloat16 (the custom loop: model.fit reproduces it)."""
    root = tmp_path_factory.mktemp("runs")
    return {precision: train(shards, config_from_dict(MUSICNN).replace(train={"precision": precision, "loop": loop}),
                             epochs=EPOCHS, steps_per_epoch=STEPS, run_dir=root / precision, quiet=True)
            for precision, loop in (("float32", "fit"), ("bfloat16", "custom"))}


def test_bf16_loss_curve_stays_within_tolerance_of_float32(runs):
    exact, bf16 = history(runs["float32"]), history(runs["bfloat16"])
    assert len(exact) == len(bf16) == EPOCHS
    difference = max(abs(a["loss"] - b["loss"]) for a, b in zip(exact, bf16))
    assert difference <= LOSS_TOLERANCE, ([r["loss"] for r in exact], [r["loss"] for r in bf16])
    # it learns (validation loss itself swings between epochs in either precision: 3 steps of batch-norm statistics)
    assert bf16[-1]["loss"] < bf16[0]["loss"] - 0.1 and bf16[-1]["val_crop_roc_auc"] > 0.8
    # it did compute in bf16: the weights moved differently from float32's
    exact_model, bf16_model = (keras.saving.load_model(runs[p] / "last.keras") for p in ("float32", "bfloat16"))
    assert not np.array_equal(exact_model.get_layer("timbral_12_conv").get_weights()[0],
                              bf16_model.get_layer("timbral_12_conv").get_weights()[0])


def test_bf16_run_saves_float32_models(runs):
    """model.keras and last.keras compute in float32, so tagging and export stay exact."""
    window = np.random.default_rng(0).normal(size=(2, 16, 32)).astype("float32")
    for name in ("model.keras", "last.keras"):
        model = keras.saving.load_model(runs["bfloat16"] / name)
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
        assert keras.ops.convert_to_numpy(model(window)).dtype == np.float32
    assert json.loads((runs["bfloat16"] / "config.json").read_text())["train"]["precision"] == "bfloat16"


def test_precision_on_this_machine(caplog):
    """auto is bf16 exactly where /proc/cpuinfo lists bf16 instructions (no GPU here); float16 needs a GPU."""
    if keras.config.backend() != "tensorflow":
        pytest.skip("TensorFlow backend only")
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU: auto is float16")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert cpu_has_bf16() == any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))
    assert resolve_precision("auto") == ("bfloat16" if cpu_has_bf16() else "float32")
    with caplog.at_level(logging.WARNING, logger="orpheus.train.precision"):
        assert resolve_precision("float16") == "float32"
    assert "float16 needs a GPU" in caplog.text
    assert resolve_precision("bfloat16") == "bfloat16" and resolve_precision("float32") == "float32"


def test_a_run_written_with_mixed_precision_resumes(runs, shards, tmp_path):
    """A run directory whose config.json has the old key resumes with that config (and only with it)."""
    import shutil

    from orpheus.config import load_config
    from orpheus.errors import ConfigError
    from orpheus.train.loop import prepare_run_dir
    old = shutil.copytree(runs["float32"], tmp_path / "old")
    saved = json.loads((old / "config.json").read_text())
    del saved["train"]["precision"]
    (old / "config.json").write_text(json.dumps({**saved, "train": {**saved["train"], "mixed_precision": False}}))
    config = load_config(old / "config.json")
    assert prepare_run_dir(old, shards, config, resume=True, overwrite=False).tags == ("tag0", "tag1", "tag2", "tag3")
    with pytest.raises(ConfigError, match="differs from --config"):
        prepare_run_dir(old, shards, config.replace(train={"precision": "bfloat16"}), resume=True, overwrite=False)


@pytest.mark.slow
def test_bf16_resume_ends_identical_to_uninterrupted(shards, tmp_path):
    """model.fit in bf16: 1 epoch, then --resume to 3, equals 3 epochs in one go, bit for bit."""
    config = config_from_dict(MUSICNN).replace(train={"precision": "bfloat16"})
    straight = train(shards, config, epochs=EPOCHS, steps_per_epoch=STEPS, run_dir=tmp_path / "straight", quiet=True)
    interrupted = tmp_path / "interrupted"
    train(shards, config, epochs=1, steps_per_epoch=STEPS, run_dir=interrupted, quiet=True)
    train(shards, config, epochs=EPOCHS, steps_per_epoch=STEPS, run_dir=interrupted, resume=True, quiet=True)
    for a, b in zip(*(keras.saving.load_model(r / "last.keras").get_weights() for r in (straight, interrupted)),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["loss"] for r in history(interrupted)] == [r["loss"] for r in history(straight)]


@pytest.mark.slow
def test_bf16_fine_tuning_on_two_logical_cpus(runs, shards, tmp_path):
    """--init-from a float32 run, front end frozen, in bf16, both loops under MirroredStrategy (2 replicas)."""
    config = {**MUSICNN, "train": {**MUSICNN["train"], "precision": "bfloat16", "init_from": str(runs["float32"]),
                                   "freeze": ["frontend"]}}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(shards), json.dumps(config), str(tmp_path / "r")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    source = keras.saving.load_model(runs["float32"] / "model.keras")
    for loop in ("fit", "custom"):
        tuned = keras.saving.load_model(tmp_path / f"r{loop}" / "model.keras")
        for name in ("timbral_12_conv", "timbral_12_bn", "temporal_64_conv", "input_bn"):   # frozen
            for a, b in zip(source.get_layer(name).get_weights(), tuned.get_layer(name).get_weights(), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{loop}: {name}")
        assert not np.array_equal(source.get_layer("dense").get_weights()[0], tuned.get_layer("dense").get_weights()[0])
        rows = history(tmp_path / f"r{loop}")
        assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
