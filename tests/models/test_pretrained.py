"""Pretrained musicnn checkpoints: conversion equals the original TF1 graph, caching, errors, tag lists.

The reference is musicnn/models.py's graph written out with plain TensorFlow ops on the checkpoint's
values (musicnn's own code is never imported: it disables eager mode on import and breaks on
today's numpy). Inputs: a seeded random spectrogram and music through the musicnn preset (librosa, as
musicnn's extractor does it): generated clips always, the real ones of ../shared/audio too when present.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from orpheus import files

from orpheus.commands import pretrained as pretrained_command
from orpheus.models import pretrained
from orpheus.errors import DataFormatError, MissingDependencyError, MissingInputError, OutputExistsError
from orpheus.audio.features import compute_features
from orpheus.models import musicnn_checkpoint
from orpheus.models.musicnn_checkpoint import (INSTALL_COMMAND, checkpoint_digest, load_checkpoint_values,
                                               musicnn_package_dir, open_checkpoint)
from orpheus.models.pretrained import PRETRAINED, convert, locate_checkpoint, pretrained_run_dir
from tests.fixtures_tagging import needs_musicnn
from orpheus.ownership import MARKER
from orpheus.formats.rundir import MODEL_FILE, RUN_INFO, read_run_info

REAL_CLIP = "render_mma_basicrock.ogg"
TOLERANCE = 1e-4




# ------------------------------------------------------------------------- reference: musicnn/models.py

class Checkpoint:
    """Checkpoint values as float32 constants, recording which variables the reference read."""

    def __init__(self, name: str):
        self.reader = open_checkpoint(locate_checkpoint(name))
        self.read: set[str] = set()

    def __call__(self, variable: str) -> tf.Tensor:
        self.read.add(variable)
        return tf.constant(self.reader.get_tensor(variable), tf.float32)


def ref_bn(x, ckpt, scope):
    """tf.compat.v1.layers.batch_normalization at inference: moving statistics, epsilon 0.001."""
    return tf.nn.batch_normalization(x, ckpt(f"{scope}/moving_mean"), ckpt(f"{scope}/moving_variance"),
                                     ckpt(f"{scope}/beta"), ckpt(f"{scope}/gamma"), 1e-3)


def ref_conv_relu(x, ckpt, scope, padding):
    return tf.nn.relu(tf.nn.conv2d(x, ckpt(f"{scope}/kernel"), strides=1, padding=padding) + ckpt(f"{scope}/bias"))


def ref_pad_time(x, n=3):
    return tf.pad(x, [[0, 0], [n, n], [0, 0], [0, 0]], "CONSTANT")


def ref_frequency_block(x, ckpt, conv, bn, padding):
    """timbral_block / tempo_block: conv, relu, bn, max pool over all frequency, squeeze."""
    y = ref_bn(ref_conv_relu(x, ckpt, conv, padding), ckpt, bn)
    y = tf.nn.max_pool2d(y, ksize=[1, y.shape[2]], strides=[1, y.shape[2]], padding="VALID")
    return tf.squeeze(y, [2])


def reference_musicnn(x: np.ndarray, ckpt: Checkpoint) -> np.ndarray:
    """musicnn's build_musicnn(..., num_filt_frontend=1.6, num_filt_midend=64, num_units_backend=200)."""
    x = tf.expand_dims(tf.constant(x, tf.float32), 3)
    x = ref_bn(x, ckpt, "batch_normalization")
    pad7 = ref_pad_time(x)
    f74 = ref_frequency_block(pad7, ckpt, "conv2d", "batch_normalization_1", "VALID")
    f77 = ref_frequency_block(pad7, ckpt, "conv2d_1", "batch_normalization_2", "VALID")
    s1 = ref_frequency_block(x, ckpt, "conv2d_2", "batch_normalization_3", "SAME")
    s2 = ref_frequency_block(x, ckpt, "conv2d_3", "batch_normalization_4", "SAME")
    s3 = ref_frequency_block(x, ckpt, "conv2d_4", "batch_normalization_5", "SAME")
    front = tf.expand_dims(tf.concat([f74, f77, s1, s2, s3], 2), 3)
    c1 = tf.transpose(ref_bn(ref_conv_relu(ref_pad_time(front), ckpt, "conv2d_5", "VALID"), ckpt,
                             "batch_normalization_6"), [0, 1, 3, 2])
    c2 = tf.transpose(ref_bn(ref_conv_relu(ref_pad_time(c1), ckpt, "conv2d_6", "VALID"), ckpt,
                             "batch_normalization_7"), [0, 1, 3, 2])
    res2 = c2 + c1
    c3 = tf.transpose(ref_bn(ref_conv_relu(ref_pad_time(res2), ckpt, "conv2d_7", "VALID"), ckpt,
                             "batch_normalization_8"), [0, 1, 3, 2])
    res3 = c3 + res2
    mid = tf.concat([front, c1, res2, res3], 2)
    max_pool = tf.reduce_max(mid, axis=1)
    mean_pool, _ = tf.nn.moments(mid, axes=[1])
    pooled = tf.concat([max_pool, mean_pool], 2)
    flat = ref_bn(tf.reshape(pooled, [pooled.shape[0], -1]), ckpt, "batch_normalization_9")
    dense = tf.nn.relu(tf.matmul(flat, ckpt("dense/kernel")) + ckpt("dense/bias"))
    penultimate = ref_bn(dense, ckpt, "batch_normalization_10")
    logits = tf.matmul(penultimate, ckpt("dense_1/kernel")) + ckpt("dense_1/bias")
    return tf.nn.sigmoid(logits).numpy()


def reference_vgg(x: np.ndarray, ckpt: Checkpoint) -> np.ndarray:
    """musicnn's vgg(x, is_training=False, num_classes, 128)."""
    y = ref_bn(tf.expand_dims(tf.constant(x, tf.float32), 3), ckpt, "batch_normalization")
    pools = ([4, 1], [2, 2]), ([2, 2], [2, 2]), ([2, 2], [2, 2]), ([2, 2], [2, 2]), ([4, 4], [4, 4])
    for i, (ksize, strides) in enumerate(pools, start=1):
        y = ref_bn(ref_conv_relu(y, ckpt, f"{i}CNN", "SAME"), ckpt, f"batch_normalization_{i}")
        y = tf.nn.max_pool2d(y, ksize=ksize, strides=strides, padding="VALID")
    flat = tf.reshape(y, [y.shape[0], -1])
    return tf.nn.sigmoid(tf.matmul(flat, ckpt("dense/kernel")) + ckpt("dense/bias")).numpy()


def reference(name: str, x: np.ndarray) -> tuple[np.ndarray, set[str]]:
    """The original graph's probabilities for `x` float32 [batch, n_frames, 96] and the variables it read."""
    ckpt = Checkpoint(name)
    probs = (reference_musicnn if PRETRAINED[name].architecture == "musicnn" else reference_vgg)(x, ckpt)
    return probs, ckpt.read


def musicnn_log_mel(path: Path) -> np.ndarray:
    """The musicnn preset: float32 [n_frames, 96] = log10(10000 x + 1) of librosa's 96-band mel power at 16 kHz.

    Computed in float32: musicnn's extractor casts the mel power to float16 first, so `10000 * x`
    overflows to inf wherever x > 6.55 (loud music), and the network then outputs NaN.
    """
    import librosa
    audio, sr = librosa.load(path, sr=16000)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * mel.astype(np.float32) + 1)


# --------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("orpheus_cache")


@pytest.fixture(scope="module")
def converted(cache_dir):
    """name -> the Keras model loaded back from its converted run directory's model.keras."""
    import keras
    models = {}

    def get(name):
        if name not in models:
            models[name] = keras.models.load_model(pretrained_run_dir(name, cache_dir=cache_dir) / MODEL_FILE)
        return models[name]
    return get


@pytest.fixture(scope="module")
def music_patches(music_dir) -> np.ndarray:
    """float32 [n_frames, 96]: log-mel of a 10 s music clip, generated or real (musicnn preset)."""
    return musicnn_log_mel(music_dir / REAL_CLIP)


def random_patches(seed: int, n_patches: int = 3, n_frames: int = 187) -> np.ndarray:
    """float32 [n_patches, n_frames, 96] in the range of musicnn's log-compressed mel values."""
    rng = np.random.default_rng(seed)
    return rng.gamma(1.5, 0.6, size=(n_patches, n_frames, 96)).astype(np.float32)


def split_patches(spectrogram: np.ndarray, n_frames: int = 187) -> np.ndarray:
    """musicnn's batch_data without overlap: [n_patches, n_frames, 96]."""
    n = spectrogram.shape[0] // n_frames
    return spectrogram[:n * n_frames].reshape(n, n_frames, spectrogram.shape[1])


# ------------------------------------------------------------------------------------------- tests

def test_tag_lists_equal_musicnn_configuration():
    """The packaged tag files (orpheus/data/) hold musicnn's MSD_LABELS and MTT_LABELS, same order (read as text, not imported)."""
    package = musicnn_package_dir()
    if package is None:
        pytest.skip(f"musicnn not installed: {INSTALL_COMMAND}")
    tree = ast.parse((package / "configuration.py").read_text())
    labels = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and node.targets[0].id.endswith("_LABELS")}
    for name, entry in PRETRAINED.items():
        expected = labels["MSD_LABELS" if name.startswith("MSD") else "MTT_LABELS"]
        assert len(entry.tags()) == 50
        assert entry.tags() == tuple(expected)


@needs_musicnn
def test_locate_checkpoint_does_not_import_musicnn():
    for name in PRETRAINED:
        folder = locate_checkpoint(name)
        assert folder.name == name and (folder / ".index").is_file()
    assert not any(module == "musicnn" or module.startswith("musicnn.") for module in sys.modules)


def test_missing_package_gives_install_command(tmp_path, capsys):
    empty = tmp_path / "site-packages" / "musicnn"
    empty.mkdir(parents=True)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps musicnn==0.1.0"):
        locate_checkpoint("MSD_musicnn", package_dir=empty)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps musicnn==0.1.0"):
        pretrained_run_dir("MTT_vgg", package_dir=empty, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    status = pretrained_command.main(["convert", "MSD_musicnn", "--musicnn-dir", str(empty),
                              "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1 and err.endswith(INSTALL_COMMAND) and "error:" in err


@needs_musicnn
@pytest.mark.parametrize("name, n_variables, n_values", [("MSD_musicnn", 64, 792_079), ("MTT_musicnn", 64, 792_079),
                                                         ("MSD_vgg", 36, 607_030), ("MTT_vgg", 36, 607_030)])
def test_every_checkpoint_variable_mapped_exactly_once(name, n_variables, n_values):
    entry = PRETRAINED[name]
    reader = open_checkpoint(locate_checkpoint(name))
    model = entry.builder(entry.config, entry.input_shape, 50)
    assert load_checkpoint_values(model, reader, entry.scopes, name) == (n_variables, n_values, 86 if n_variables == 64
                                                                         else 50)
    assert model.count_params() == n_values
    shapes = reader.get_variable_to_shape_map()
    weights = [name for name in shapes if not musicnn_checkpoint.is_optimizer_state(name)]
    assert len(weights) == n_variables
    # the scope table maps distinct layers to distinct scopes
    assert len({layer for layer, _ in entry.scopes}) == len({scope for _, scope in entry.scopes}) == len(entry.scopes)
    # every weight holds its checkpoint value (up to the documented unit-axis squeeze)
    for layer, scope in entry.scopes:
        for variable in model.get_layer(layer).weights:
            value = reader.get_tensor(f"{scope}/{variable.name}")
            np.testing.assert_array_equal(np.asarray(variable).ravel(), value.ravel())


@needs_musicnn
def test_coverage_is_checked_in_both_directions():
    entry = PRETRAINED["MSD_musicnn"]
    reader = open_checkpoint(locate_checkpoint("MSD_musicnn"))
    model = entry.builder(entry.config, entry.input_shape, 50)
    without_dense = tuple(pair for pair in entry.scopes if pair[0] != "dense")
    with pytest.raises(DataFormatError, match="model weights without a checkpoint value: dense/"):
        load_checkpoint_values(model, reader, without_dense, "MSD_musicnn")
    vgg_reader = open_checkpoint(locate_checkpoint("MSD_vgg"))
    with pytest.raises(DataFormatError, match="expected in the checkpoint but absent"):
        load_checkpoint_values(model, vgg_reader, entry.scopes, "MSD_vgg")
    with pytest.raises(DataFormatError, match="mapped more than once: dense/bias, dense/kernel"):
        load_checkpoint_values(model, reader, entry.scopes + (("dense", "dense"),), "MSD_musicnn")
    # a model whose every weight is mapped, but which leaves checkpoint variables unused
    import keras
    audio = keras.Input((None, 96, 1), name="audio")
    only_bn = keras.Model(audio, keras.layers.BatchNormalization(name="input_bn")(audio))
    with pytest.raises(DataFormatError, match="checkpoint variables the model does not use: batch_normalization_1/"):
        load_checkpoint_values(only_bn, reader, entry.scopes[:1], "MSD_musicnn")


@needs_musicnn
@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_conversion_reproduces_original_graph_on_random_input(name, converted):
    x = random_patches(seed=sorted(PRETRAINED).index(name))
    expected, read = reference(name, x)
    got = np.asarray(converted(name)(x, training=False))
    assert got.shape == expected.shape == (3, 50)
    assert np.abs(got - expected).max() < TOLERANCE
    assert read == {n for n in open_checkpoint(locate_checkpoint(name)).get_variable_to_shape_map()
                    if not musicnn_checkpoint.is_optimizer_state(n)}   # the reference really used every weight


@needs_musicnn
@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_conversion_reproduces_original_graph_on_music(name, converted, music_patches):
    patches = split_patches(music_patches)
    expected, _ = reference(name, patches)
    got = np.asarray(converted(name)(patches, training=False))
    assert np.abs(got - expected).max() < TOLERANCE
    assert expected.std() > 0.01          # a real signal, not a saturated or constant output


@needs_musicnn
@pytest.mark.parametrize("name", ["MSD_musicnn", "MTT_musicnn"])
def test_musicnn_takes_any_length_like_the_original(name, converted, music_patches):
    whole = music_patches[None]       # the whole clip (625 frames) as one input, as musicnn allows
    short = music_patches[None, :100]
    for x in (whole, short):
        expected, _ = reference(name, x)
        assert np.abs(np.asarray(converted(name)(x, training=False)) - expected).max() < TOLERANCE


@needs_musicnn
def test_run_directory_describes_the_preset(cache_dir):
    run_dir = pretrained_run_dir("MSD_musicnn", cache_dir=cache_dir)
    info = read_run_info(run_dir)
    assert info.tags == PRETRAINED["MSD_musicnn"].tags() and info.tags[:3] == ("rock", "pop", "alternative")
    assert (info.features.format, info.features.sample_rate, info.features.n_mels, info.features.n_fft, info.features.hop_length) == \
        ("log-mel-spectrogram", 16000, 96, 512, 256)
    assert (info.features.preset, info.normalise, info.model_name) == ("musicnn", "none", "musicnn")
    assert info.window_frames == 187 and info.window_s == pytest.approx(2.992)
    assert "MSD_musicnn" in info.source and checkpoint_digest(locate_checkpoint("MSD_musicnn")) in info.source
    assert read_run_info(pretrained_run_dir("MTT_vgg", cache_dir=cache_dir)).model_name == "vgg"


@needs_musicnn
def test_cache_converts_once_and_keys_on_checkpoint_content(tmp_path, cache_dir):
    first = pretrained_run_dir("MTT_musicnn", cache_dir=cache_dir)
    stamps = {f: (first / f).stat().st_mtime_ns for f in (MODEL_FILE, RUN_INFO)}
    second = pretrained_run_dir("MTT_musicnn", cache_dir=cache_dir)
    assert second == first and first.parent == cache_dir / "pretrained"
    assert {f: (second / f).stat().st_mtime_ns for f in stamps} == stamps
    assert first.name.startswith("MTT_musicnn-") and len(first.name) == len("MTT_musicnn-") + 16
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]   # no temporary folders left

    # a different checkpoint file (same name) gets its own cache entry
    package = tmp_path / "musicnn"
    (package / "MTT_musicnn").mkdir(parents=True)
    for f in musicnn_checkpoint.CHECKPOINT_FILES:
        data = (locate_checkpoint("MTT_musicnn") / f).read_bytes()
        (package / "MTT_musicnn" / f).write_bytes(data + (b"\0" if f == ".index" else b""))
    assert pretrained.cached_run_dir("MTT_musicnn", package_dir=package, cache_dir=cache_dir) != first


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert files.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ORPHEUS_CACHE")
    assert files.default_cache_dir() == tmp_path / "b" / "orpheus"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert files.default_cache_dir() == tmp_path / "home" / ".cache" / "orpheus"


@needs_musicnn
def test_convert_refuses_to_overwrite_and_cli_writes_run_dir(tmp_path, capsys):
    out = tmp_path / "runs" / "mtt_vgg"
    assert pretrained_command.main(["convert", "MTT_vgg", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"MTT_vgg\t{out}"
    assert read_run_info(out).tags == PRETRAINED["MTT_vgg"].tags()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert("MTT_vgg", out)
    assert pretrained_command.main(["convert", "MTT_vgg", "--out", str(out), "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    before = (out / MODEL_FILE).stat().st_mtime_ns
    summary = convert("MTT_vgg", out, overwrite=True)
    assert (out / MODEL_FILE).stat().st_mtime_ns != before
    assert (summary.n_variables, summary.n_values, summary.n_optimizer_state) == (36, 607_030, 50)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mtt_vgg"]   # temporaries renamed or removed
    assert sorted(p.name for p in out.iterdir()) == [MARKER, MODEL_FILE, RUN_INFO]   # marked as Orpheus's


@needs_musicnn
def test_cli_list_shows_conversion_state(tmp_path, capsys):
    assert pretrained_command.main(["list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("installed, not converted yet") == 4 and "MSD_musicnn" in out
    pretrained_run_dir("MSD_vgg", cache_dir=tmp_path)
    assert pretrained_command.main(["list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("installed, not converted yet") == 3 and "converted: " + str(tmp_path) in out
    assert pretrained_command.main(["list", "--musicnn-dir", str(tmp_path / "nowhere")]) == 0
    assert capsys.readouterr().out.count(INSTALL_COMMAND) == 4


@needs_musicnn
def test_orpheus_features_from_run_json_tag_like_the_musicnn_recipe(cache_dir, converted, music_dir,
                                                                     music_patches):
    """End to end as tagging does it: audio and features from run.json's settings, then model.keras,
    against musicnn's recipe (librosa features, original graph); measured 3e-7, tagging tolerance 0.01."""
    from orpheus.audio.decode import load_audio
    info = read_run_info(pretrained_run_dir("MSD_musicnn", cache_dir=cache_dir))
    audio, sample_rate = load_audio(music_dir / REAL_CLIP, info.features.sample_rate)
    spectrogram = compute_features(audio, info.features)
    assert abs(spectrogram.shape[0] - music_patches.shape[0]) <= 1
    ours = np.asarray(converted("MSD_musicnn")(split_patches(spectrogram, info.window_frames), training=False))
    expected, _ = reference("MSD_musicnn", split_patches(music_patches))
    assert np.abs(ours - expected).max() < 1e-3


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrained_command.main(["convert", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "orpheus pretrained convert MSD_musicnn" in out and INSTALL_COMMAND in out


def test_one_rule_resolves_a_model_name_or_a_run_directory(tmp_path, monkeypatch):
    """A pretrained name is that model, whatever folder bears the name; anything else must be a run directory."""
    pytest.importorskip("musicnn")
    from orpheus.models.pretrained import resolve_model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MSD_musicnn").mkdir()                      # a folder that bears a pretrained model's name
    assert resolve_model("MSD_musicnn") == (pretrained.pretrained_run_dir("MSD_musicnn"), "MSD_musicnn")
    with pytest.raises(MissingInputError, match=r"--init-from ./MSD_musicnn: neither a pretrained model .* nor a run"):
        resolve_model("./MSD_musicnn", "--init-from")      # reached by its path: not a run directory (no run.json)
    run = tmp_path / "MSD_musicnn"
    (run / "run.json").write_text("{}")
    (run / "model.keras").write_bytes(b"")
    assert resolve_model("./MSD_musicnn") == (Path("MSD_musicnn"), "./MSD_musicnn")
