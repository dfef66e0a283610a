"""Fine-tuning (`orpheus.train.finetune`, `training.py --init-from/--freeze`) on tiny musicnn runs.

The source is a tiny musicnn trained here on learnable shards with tags tag0..tag3; the target shards
have tags tag0..tag4 of which the config drops tag0, so the new head has three shared tags and a new one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from orpheus.commands import wise_ft
from orpheus.train import finetune
from orpheus.config import config_from_dict, load_config
from orpheus.errors import ConfigError
from orpheus.models.registry import build_model
from orpheus.formats.rundir import read_run_info
from orpheus.commands.train import main
from orpheus.train.loop import train
from tests.fixtures_disk import make_disk_full
from tests.fixtures_training import TWO_REPLICAS, write_learnable_shards

ROOT = Path(__file__).resolve().parents[2]
SOURCE = {"data": {"window_s": 0.5, "top_n_tags": None, "shuffle_buffer": 32},
          "model": {"name": "musicnn", "n_filters": 4, "n_dense": 8, "dropout": 0.1},
          "train": {"batch_size": 8, "learning_rate": 0.003, "seed": 3, "early_stopping_patience": 0}}
TARGET = {**SOURCE, "data": {**SOURCE["data"], "without_tags": ["tag0"]},
          "train": {**SOURCE["train"], "seed": 4}}
FRONTEND = ("input_bn", "timbral_12_conv", "timbral_12_bn", "timbral_22_conv", "timbral_22_bn",
            "temporal_128_conv", "temporal_128_bn", "temporal_64_conv", "temporal_64_bn", "temporal_32_conv",
            "temporal_32_bn")


def layer_weights(run_dir: Path) -> dict[str, list[np.ndarray]]:
    model = keras.saving.load_model(run_dir / "model.keras")
    return {layer.name: [np.asarray(w) for w in layer.weights] for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    shards = tmp_path_factory.mktemp("source_shards")
    write_learnable_shards(shards, {"train": 24, "valid": 8, "test": 8}, n_frames=24, seed=0)
    return train(shards, config_from_dict(SOURCE), epochs=1, steps_per_epoch=2,
                 run_dir=tmp_path_factory.mktemp("runs") / "source", quiet=True)


@pytest.fixture(scope="module")
def target_shards(tmp_path_factory) -> Path:
    shards = tmp_path_factory.mktemp("target_shards")
    write_learnable_shards(shards, {"train": 24, "valid": 8, "test": 8}, n_tags=5, n_frames=24, seed=1)
    return shards


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "target.json"
    path.write_text(json.dumps(TARGET))
    return path


def test_head_rebuilt_and_shared_tags_keep_their_weights(source_run):
    source = finetune.load_source(str(source_run))
    assert source.run_info.tags == ("tag0", "tag1", "tag2", "tag3") or set(source.run_info.tags) == {
        "tag0", "tag1", "tag2", "tag3"}
    tags = ("tag3", "tag4", "tag1")
    model = build_model(config_from_dict(SOURCE).model, (16, 32), len(tags))
    fresh = [np.array(w) for w in model.get_layer("tags").get_weights()]
    counts = finetune.initialise(model, source, tags, "musicnn", ["frontend"])
    assert counts["shared_tags"] == 2 and counts["frozen"] == len(FRONTEND)
    kernel, bias = model.get_layer("tags").get_weights()
    old_kernel, old_bias = source.weights["tags"]
    for new, tag in ((0, "tag3"), (2, "tag1")):
        old = source.run_info.tags.index(tag)
        np.testing.assert_array_equal(kernel[:, new], old_kernel[:, old])
        assert bias[new] == old_bias[old]
    np.testing.assert_array_equal(kernel[:, 1], fresh[0][:, 1])    # tag4 is new: its fresh initialisation
    for name in ("midend2_conv", "embedding", "timbral_12_conv"):
        for value, expected in zip(model.get_layer(name).get_weights(), source.weights[name], strict=True):
            np.testing.assert_array_equal(value, expected)
    assert {layer.name for layer in model.layers if layer.weights and not layer.trainable} == set(FRONTEND)


@pytest.fixture(scope="module", params=["fit", "custom"])
def tuned(request, source_run, target_shards, config_file, tmp_path_factory) -> tuple[str, Path]:
    run_dir = tmp_path_factory.mktemp("runs") / f"tuned-{request.param}"
    assert main(["log-mel-spectrogram", "--tfrecords-dir", str(target_shards), "--config", str(config_file),
                 "--epochs", "2", "--steps-per-epoch", "2", "--loop", request.param, "--run-dir", str(run_dir),
                 "--init-from", str(source_run), "--freeze", "frontend", "--quiet"]) == 0
    return request.param, run_dir


def test_frozen_parts_stay_fixed_and_the_rest_trains(source_run, tuned):
    loop, run_dir = tuned
    before, after = layer_weights(source_run), layer_weights(run_dir)
    for name in FRONTEND:  # kernels, biases and batch-norm statistics alike
        for a, b in zip(before[name], after[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{loop}: {name}")
    assert not np.array_equal(before["midend1_conv"][0], after["midend1_conv"][0])
    assert not np.array_equal(before["dense"][0], after["dense"][0])
    info = read_run_info(run_dir)
    assert sorted(info.tags) == ["tag1", "tag2", "tag3", "tag4"] and after["tags"][0].shape == (8, 4)
    assert info.normalise == read_run_info(source_run).normalise and "fine-tuned from" in info.source
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["init_from"] == str(source_run) and saved["freeze"] == ["frontend"]


def test_resume_of_a_fine_tuning_run_ends_as_uninterrupted(source_run, target_shards, tuned, tmp_path):
    loop, straight = tuned
    config = config_from_dict(TARGET).replace(train={"loop": loop, "init_from": str(source_run),
                                                     "freeze": ("frontend",)})
    run_dir = tmp_path / "interrupted"
    train(target_shards, config, epochs=1, steps_per_epoch=2, run_dir=run_dir, quiet=True)
    train(target_shards, config, epochs=2, steps_per_epoch=2, run_dir=run_dir, resume=True, quiet=True)
    expected, got = layer_weights(straight), layer_weights(run_dir)
    for name in expected:
        for a, b in zip(expected[name], got[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def outputs(run_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """tag -> the model's probabilities for the windows `x`."""
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    scores = np.asarray(model.predict_on_batch(x))
    return {tag: scores[:, i] for i, tag in enumerate(read_run_info(run_dir).tags)}


def test_wise_ft_mixes_the_weights_with_the_source(source_run, tuned, tmp_path):
    loop, run_dir = tuned
    out = finetune.interpolate(run_dir, tmp_path / "wise", alpha=0.25)
    source, tuned_weights, mixed = layer_weights(source_run), layer_weights(run_dir), layer_weights(out)
    for name in ("midend1_conv", "dense", "embedding", "pool_bn"):     # batch-norm statistics too
        for a, b, m in zip(source[name], tuned_weights[name], mixed[name], strict=True):
            np.testing.assert_allclose(m, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-6, err_msg=f"{loop}: {name}")
    new_tags, old_tags = read_run_info(run_dir).tags, read_run_info(source_run).tags
    for i, tag in enumerate(new_tags):
        column = tuned_weights["tags"][0][:, i]
        expected = 0.75 * source["tags"][0][:, old_tags.index(tag)] + 0.25 * column if tag in old_tags else column
        np.testing.assert_allclose(mixed["tags"][0][:, i], expected, rtol=1e-5, atol=1e-6, err_msg=tag)
    info = read_run_info(out)
    assert info.tags == new_tags and info.normalise == read_run_info(run_dir).normalise
    assert info.source.startswith("WiSE-FT alpha 0.25") and (out / "config.json").is_file()

    # the ends of the line: alpha 1 is the fine-tuned run, alpha 0 the source on the tags they share
    shape = [n or 24 for n in keras.saving.load_model(run_dir / "model.keras", compile=False).input.shape[1:]]
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    ends = {alpha: outputs(finetune.interpolate(run_dir, tmp_path / f"a{alpha}", alpha=alpha), x) for alpha in (0.0, 1.0)}
    fine, start = outputs(run_dir, x), outputs(source_run, x)
    for tag in new_tags:
        np.testing.assert_allclose(ends[1.0][tag], fine[tag], rtol=1e-5, atol=1e-6)
        if tag in old_tags:
            np.testing.assert_allclose(ends[0.0][tag], start[tag], rtol=1e-5, atol=1e-6)
    assert not np.allclose(fine["tag1"], start["tag1"], atol=1e-4)     # so the two ends differ


def test_wise_ft_command_and_its_one_line_errors(source_run, tuned, tmp_path, capsys):
    _, run_dir = tuned
    assert wise_ft.main([str(run_dir), str(tmp_path / "w"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "w")
    for argv, expected in (([str(run_dir), str(tmp_path / "w")], "already there; pass --overwrite"),
                           ([str(run_dir), str(tmp_path / "x"), "--alpha", "1.5"], "--alpha 1.5: must be between"),
                           ([str(source_run), str(tmp_path / "x")], "was not fine-tuned"),
                           ([str(tmp_path / "nowhere"), str(tmp_path / "x")], "run.json: not found")):
        assert wise_ft.main([*argv, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    assert wise_ft.main([str(source_run), str(tmp_path / "x"), "--source", str(source_run), "--quiet"]) == 0


def test_wise_ft_on_a_full_disk_is_one_line_and_leaves_nothing(tuned, tmp_path, capsys, monkeypatch):
    _, run_dir = tuned
    make_disk_full(monkeypatch)
    assert wise_ft.main([str(run_dir), str(tmp_path / "w"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: no space left on device" in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_one_line_errors(source_run, target_shards, config_file, tmp_path, capsys):
    common = ["log-mel-spectrogram", "--config", str(config_file), "--epochs", "1", "--quiet"]
    other_mels = tmp_path / "mels24"
    info = write_learnable_shards(other_mels, {"train": 8, "valid": 4}, n_frames=24)
    with open(other_mels / "dataset.json") as f:   # the same shards, described with another mel count
        record = json.load(f)
    record["features"]["n_mels"] = 24
    (other_mels / "dataset.json").write_text(json.dumps(record))
    assert info.features.n_mels == 32
    for shards, extra, expected in (
            (other_mels, ["--init-from", str(source_run)], "n_mels 24 (source: 32)"),
            (target_shards, ["--init-from", str(source_run), "--freeze", "wings"], "--freeze wings: not a part of musicnn"),
            (target_shards, ["--freeze", "frontend"], "train.freeze needs train.init_from"),
            (target_shards, ["--init-from", str(tmp_path / "nowhere")], "neither a pretrained model")):
        assert main([*common, "--tfrecords-dir", str(shards), "--run-dir", str(tmp_path / "r"), *extra]) == 1
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err


def test_wrong_widths_are_one_line_errors(source_run):
    source = finetune.load_source(str(source_run))
    model = build_model(config_from_dict({**SOURCE, "model": {**SOURCE["model"], "n_filters": 6}}).model, (16, 32), 2)
    with pytest.raises(ConfigError, match="layer 'midend1_conv' is shaped .* use the source's model settings"):
        finetune.initialise(model, source, ("tag1", "tag9"), "musicnn")


def test_parts_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--init-from" in out and "musicnn: frontend, midend, backend, body" in out


def test_shipped_finetune_config():
    config = load_config(ROOT / "configs" / "finetune_musicnn.json")
    assert (config.model.name, config.model.n_filters, config.model.n_dense) == ("musicnn", 64, 200)
    assert config.data.window_s == 3.0 and config.train.init_from == "MTT_musicnn"
    assert set(config.train.freeze) <= set(finetune.parts_of("musicnn"))
    # the demo reads the packaged copy (no checkout when installed): it must be the same file
    from orpheus.data import data_file
    assert data_file("finetune_musicnn.json").read_bytes() == (ROOT / "configs" / "finetune_musicnn.json").read_bytes()


@pytest.mark.slow
def test_fine_tuning_on_two_logical_cpus(source_run, target_shards, tmp_path):
    config = {**TARGET, "train": {**TARGET["train"], "init_from": str(source_run), "freeze": ["frontend"]}}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(target_shards), json.dumps(config),
                             str(tmp_path / "r"), "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    before = layer_weights(source_run)
    for loop in ("fit", "custom"):
        after = layer_weights(tmp_path / f"r{loop}")
        np.testing.assert_array_equal(before["timbral_12_conv"][0], after["timbral_12_conv"][0])
        assert not np.array_equal(before["midend1_conv"][0], after["midend1_conv"][0])
