import csv
import json
import logging
import logging.handlers
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from orpheus.config import config_from_dict, load_config
from orpheus.data import data_file
from orpheus.errors import ConfigError
from orpheus.models.registry import MODELS
from orpheus.formats.rundir import read_run_info
from orpheus.train.strategy import choose_strategy
from orpheus.commands.train import main
from orpheus.train.loop import train
from tests.fixtures_training import TWO_REPLICAS, write_learnable_shards

ROOT = Path(__file__).resolve().parents[2]
TINY = {"data": {"window_s": 0.5, "top_n_tags": 3, "shuffle_buffer": 32},
        "model": {"name": "pons_log_mel", "n_filters": 1, "n_dense": 16, "dropout": 0.1},
        "train": {"batch_size": 8, "learning_rate": 0.003, "batch_norm_momentum": 0.8, "seed": 3,
                  "schedule": "cyclic", "min_learning_rate": 0.001, "decay_epochs": 1.0}}
EPOCHS, STEPS = 3, 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    shard_dir = tmp_path_factory.mktemp("shards")
    write_learnable_shards(shard_dir, {"train": 48, "valid": 24, "test": 8}, n_frames=24)
    return shard_dir


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def final_weights(run_dir: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.saving.load_model(run_dir / "model.keras").weights]


@pytest.fixture(scope="module")
def fit_run(shards, tmp_path_factory) -> Path:
    """Three epochs of model.fit through the CLI."""
    config = tmp_path_factory.mktemp("cfg") / "tiny.json"
    config.write_text(json.dumps(TINY))
    run_dir = tmp_path_factory.mktemp("runs") / "fit"
    assert main(["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--epochs",
                 str(EPOCHS), "--steps-per-epoch", str(STEPS), "--loop", "fit", "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_fit_run_directory_and_learning(shards, fit_run):
    rows = history(fit_run)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    # Keras's AUCs over one crop per track, named apart from `test`'s per-track roc_auc / pr_auc
    assert set(rows[0]) == {"epoch", "learning_rate", "loss", "crop_roc_auc", "crop_pr_auc", "val_loss",
                            "val_crop_roc_auc", "val_crop_pr_auc"}
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_crop_roc_auc"] > 0.75  # well above chance on the learnable tags
    run_info = read_run_info(fit_run)
    info = json.loads((shards / "dataset.json").read_text())
    by_popularity = sorted(info["tags"], key=lambda t: (-info["positives"]["train"][info["tags"].index(t)], t))
    assert run_info.tags == tuple(by_popularity[:3]) and run_info.window_frames == 16
    assert run_info.model_name == "pons_log_mel" and run_info.normalise == "per_example"
    assert json.loads((fit_run / "config.json").read_text())["train"]["loop"] == "fit"
    assert (fit_run / "checkpoints" / "best.weights.h5").is_file()
    assert tf.train.latest_checkpoint(fit_run / "checkpoints").endswith("epoch-3")
    assert list((fit_run / "logs" / "validation").glob("events.out.tfevents.*"))
    model = keras.saving.load_model(fit_run / "model.keras")
    assert model.output_shape == (None, 3)


CUSTOM = config_from_dict(TINY).replace(train={"loop": "custom", "precision": "float16"})


@pytest.fixture(scope="module")
def custom_run(shards, tmp_path_factory) -> tuple[Path, str]:
    """The same run with the custom loop, asking for float16 (a GPU feature: float32 without a GPU)."""
    handler = logging.handlers.MemoryHandler(1000)
    logging.getLogger("orpheus").addHandler(handler)
    try:
        run_dir = train(shards, CUSTOM, epochs=EPOCHS, steps_per_epoch=STEPS,
                        run_dir=tmp_path_factory.mktemp("runs") / "custom", quiet=True)
    finally:
        logging.getLogger("orpheus").removeHandler(handler)
    return run_dir, " ".join(record.getMessage() for record in handler.buffer)


def test_custom_loop_matches_fit(fit_run, custom_run):
    """Same seed, same data, same loss scaling: the GradientTape loop reproduces model.fit."""
    run_dir, messages = custom_run
    if not tf.config.list_logical_devices("GPU"):
        assert "float16 needs a GPU: training in float32" in messages
    fit_rows, custom_rows = history(fit_run), history(run_dir)
    for key in ("loss", "val_loss", "val_crop_roc_auc", "val_crop_pr_auc"):
        np.testing.assert_allclose([r[key] for r in custom_rows], [r[key] for r in fit_rows], rtol=1e-3, err_msg=key)
    assert custom_rows[1]["loss"] < custom_rows[0]["loss"]
    for a, b in zip(final_weights(run_dir), final_weights(fit_run)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_resume_ends_identical_to_uninterrupted(shards, custom_run, tmp_path):
    """1 epoch, then --resume to 3: the same weights and history as 3 epochs in one go (cyclic schedule)."""
    _resume_check(shards, CUSTOM, custom_run[0], tmp_path)


@pytest.mark.slow
def test_resume_with_fit(shards, fit_run, tmp_path):
    _resume_check(shards, config_from_dict(TINY).replace(train={"loop": "fit"}), fit_run, tmp_path)


def _resume_check(shards, config, straight, tmp_path):
    interrupted = tmp_path / "interrupted"
    train(shards, config, epochs=1, steps_per_epoch=STEPS, run_dir=interrupted, quiet=True)
    assert len(history(interrupted)) == 1
    train(shards, config, epochs=EPOCHS, steps_per_epoch=STEPS, run_dir=interrupted, resume=True, quiet=True)
    for a, b in zip(final_weights(straight), final_weights(interrupted), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["loss"] for r in history(interrupted)] == [r["loss"] for r in history(straight)]
    lines = (interrupted / "history.csv").read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + EPOCHS and all(line.endswith(b"\r\n") for line in lines)  # trimmed rows as appended


def test_cli_refusals(shards, fit_run, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    common = ["--tfrecords-dir", str(shards), "--config", str(config), "--epochs", "1", "--quiet"]
    assert main(["log-mel-spectrogram", *common, "--run-dir", str(fit_run)]) == 1
    assert "pass --resume" in capsys.readouterr().err
    assert main(["waveform", *common, "--run-dir", str(tmp_path / "w")]) == 1
    assert "not waveform" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY, "train": {**TINY["train"], "batch_size": 4}}))
    assert main(["log-mel-spectrogram", *common[:2], "--config", str(other), "--epochs", "4", "--run-dir",
                 str(fit_run), "--resume"]) == 1
    assert "differs from --config" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY, "train": {**TINY["train"], "schedule": "step", "reduce_lr_patience": 2}}))
    assert main(["log-mel-spectrogram", *common[:2], "--config", str(bad), "--epochs", "1", "--run-dir",
                 str(tmp_path / "b")]) == 1
    assert "reduce_lr_patience" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_config_errors_leave_no_run_folder(shards, tmp_path, capsys):
    """An unknown model name (or one for another format) is refused before the run folder exists."""
    for name, message in (("no_such_model", "unknown model 'no_such_model'"),
                          ("pons_waveform", "does not take log-mel-spectrogram input")):
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({**TINY, "model": {**TINY["model"], "name": name}}))
        run_dir = tmp_path / "runs" / name
        assert main(["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--epochs", "1",
                     "--run-dir", str(run_dir), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not run_dir.exists()


def test_batch_norm_momentum_reaches_every_batch_norm_layer(shards):
    from orpheus.train.input_pipeline import make_run_info
    from orpheus.train.loop import build_training_model
    config = config_from_dict(TINY)
    model, _ = build_training_model(config, make_run_info(shards, config), 4, 1)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(momenta) == sum(w.path.endswith("moving_mean") for w in model.weights) > 0
    assert set(momenta) == {0.8}


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--resume" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["urop2019_log_mel", "urop2019_waveform", "demo"])
def test_shipped_configs(name):
    config = load_config(data_file("demo.json") if name == "demo" else ROOT / "configs" / f"{name}.json")
    assert config.model.name in MODELS
    if name.startswith("urop2019"):
        assert (config.train.batch_size, config.train.learning_rate, config.data.window_s,
                config.data.top_n_tags) == (64, 1e-3, 15.0, 50)


def test_strategy_choice_on_cpu():
    strategy = choose_strategy()
    assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == 1
    with pytest.raises(ConfigError, match="--cuda"):
        choose_strategy([0])


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


STRATEGY_OF_TF_CONFIG = textwrap.dedent("""
    import tensorflow as tf
    from orpheus.train.strategy import choose_strategy, is_chief
    strategy = choose_strategy()
    print(isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), is_chief(strategy))
""")


def test_tf_config_selects_multi_worker():
    tf_config = {"cluster": {"worker": [f"localhost:{_free_ports(1)[0]}"]}, "task": {"type": "worker", "index": 0}}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", STRATEGY_OF_TF_CONFIG], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True", "True"]


def _run_two_workers(args: list[str], tmp_path: Path) -> None:
    """`orpheus/training.py ARGS` in two processes joined by TF_CONFIG on localhost ports; both must succeed."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        processes.append(subprocess.Popen([sys.executable, "orpheus/training.py", *args, "--quiet"], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_two_local_workers_train_together(shards, tmp_path, loop):
    """MultiWorkerMirroredStrategy with two processes on localhost ports; the chief writes the run."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    _run_two_workers(["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--epochs", "2",
                      "--steps-per-epoch", "2", "--loop", loop, "--run-dir", str(tmp_path / "run")], tmp_path)
    assert len(history(tmp_path / "run")) == 2
    assert (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_two_local_workers_fine_tune_resume_and_tag(shards, fit_run, tmp_path, loop):
    """--init-from under MultiWorkerMirroredStrategy: the source loads after the strategy exists (collective ops
    are configured at start-up), both workers train, resume, and the run tags audio."""
    import orpheus
    from tests.fixtures_audio import write_clip
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    run_dir = tmp_path / "run"
    common = ["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--steps-per-epoch",
              "2", "--loop", loop, "--run-dir", str(run_dir), "--init-from", str(fit_run)]
    _run_two_workers([*common, "--epochs", "1"], tmp_path)
    assert len(history(run_dir)) == 1
    _run_two_workers([*common, "--epochs", "2", "--resume"], tmp_path)
    assert [row["epoch"] for row in history(run_dir)] == [0, 1]
    assert read_run_info(run_dir).source.startswith(f"fine-tuned from {fit_run}")
    (result,) = orpheus.tag([write_clip(tmp_path / "song.wav", ("rock",), seed=3)], run_dir=run_dir)
    assert result.ok and len(result.tags) == 3


FINE_TUNE_ON_TWO_LOGICAL_CPUS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from orpheus.config import config_from_dict
    from orpheus.train.loop import train

    def two_logical_cpus():
        # as --cuda's set_visible_devices: device settings that TensorFlow takes only before its runtime starts
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    config = config_from_dict(json.loads(sys.argv[2])).replace(train={"init_from": sys.argv[4]})
    for loop in ("fit", "custom"):
        train(sys.argv[1], config.replace(train={"loop": loop}), epochs=1, steps_per_epoch=2,
              run_dir=sys.argv[3] + loop, strategy=two_logical_cpus, quiet=True)
    print("OK")
""")


@pytest.mark.slow
def test_init_from_with_devices_set_when_the_strategy_is_made(shards, fit_run, tmp_path):
    """The --cuda path on logical CPU devices: the strategy (and its device settings) comes before the source
    model is loaded, so --init-from combines with --cuda."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", FINE_TUNE_ON_TWO_LOGICAL_CPUS, str(shards), json.dumps(TINY),
                             str(tmp_path / "r"), str(fit_run)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(history(tmp_path / "rfit")) == 1 and len(history(tmp_path / "rcustom")) == 1


@pytest.mark.slow
def test_both_loops_on_two_logical_cpus(shards, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(shards), json.dumps(TINY), str(tmp_path / "r")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for loop in ("fit", "custom"):
        rows = history(tmp_path / f"r{loop}")
        assert len(rows) == 2 and rows[1]["loss"] < rows[0]["loss"]
