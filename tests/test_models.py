"""Tests of the model zoo (`orpheus.models`): registry, builders, shapes, counts, saving, training."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from orpheus.config import ModelConfig
from orpheus.errors import ConfigError
from orpheus.models import MODELS, SPECTROGRAM_FORMATS, WAVEFORM_FORMATS, build_model, count_parameters
from orpheus.models.__main__ import main as models_main
from orpheus.models.choi import adapted_frequency_pools
from orpheus.spec import FORMATS

N_TAGS = 5
# Small settings per model, so that every test builds quickly: (config, n_bins or None for waveform,
# two input lengths the variable-length model is called on).
SMALL = {
    "pons_log_mel": (ModelConfig(name="pons_log_mel", n_filters=2, n_dense=8), 16, (12, 37)),
    "pons_waveform": (ModelConfig(name="pons_waveform", n_dense=8), None, (19_680, 25_000)),
    "fcn": (ModelConfig(name="fcn", n_filters=2), 24, (320, 411)),
    "crnn": (ModelConfig(name="crnn", n_filters=2), 20, (96, 150)),
    "multiscale": (ModelConfig(name="multiscale", n_filters=2, n_dense=8), 16, (16, 45)),
}


def small_shape(name: str, n_frames: int | None) -> tuple[int | None, ...]:
    _, n_bins, _ = SMALL[name]
    return (n_frames,) if n_bins is None else (n_frames, n_bins)


def random_batch(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32") * 0.5


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_every_registered_model_has_a_small_test_setting_and_valid_formats():
    assert set(SMALL) == set(MODELS)
    for entry in MODELS.values():
        assert entry.formats and set(entry.formats) <= set(FORMATS)
        assert entry.formats in (SPECTROGRAM_FORMATS, WAVEFORM_FORMATS)
        assert entry.description


@pytest.mark.parametrize("name, expected", [("pons_log_mel", 5_927_110), ("pons_waveform", 5_380_774)])
def test_pons_parameter_counts_match_the_paper_configuration(name, expected):
    """n_filters=16, n_dense=500, 96 mels, 50 tags: the counts of Pons et al.'s and urop2019's models."""
    shape = (None, 96) if name == "pons_log_mel" else (None,)
    model = build_model(ModelConfig(name=name, n_filters=16, n_dense=500), shape, 50)
    assert count_parameters(model) == expected


# Hand counts at the default widths (n_filters=16, n_dense=500), 96 mels and 50 tags. Conv: k*k*in*out + out;
# batch norm: 4 per channel (scale, offset, moving mean, moving variance); GRU (Keras 3, reset_after):
# 3 * (in*u + u*u + 2u); tags: in*50 + 50.
# fcn:  input bn 4*96=384; conv1 9*1*32+32=320, bn 128; conv2 9*32*128+128=36,992, bn 512;
#       conv3 9*128*128+128=147,584, bn 512; conv4 9*128*192+192=221,376, bn 768;
#       conv5 9*192*256+256=442,624, bn 1,024; tags 256*50+50=12,850            -> 865,074
# crnn: input bn 384; conv1 9*1*64+64=640, bn 256; conv2 9*64*128+128=73,856, bn 512;
#       conv3 and conv4 147,584 + bn 512 each; gru1 3*(128*32+32*32+64)=15,552;
#       gru2 3*(32*32+32*32+64)=6,336; tags 32*50+50=1,650                       -> 395,378
# multiscale: per stream 9*1*32+32=320, bn 128, 9*32*64+64=18,496, bn 256 = 19,200, x3 = 57,600;
#       merged1 9*192*128+128=221,312, bn 512; merged2 9*128*256+256=295,168, bn 1,024;
#       embedding (max+mean 512) 512*500+500=256,500; tags 500*50+50=25,050     -> 857,166
@pytest.mark.parametrize("name, expected", [("fcn", 865_074), ("crnn", 395_378), ("multiscale", 857_166)])
def test_parameter_counts_of_the_other_models(name, expected):
    assert count_parameters(build_model(ModelConfig(name=name), (None, 96), 50)) == expected


def test_fcn_pools_a_29_second_input_to_one_by_one_before_the_global_pool():
    """96 mels x 1366 frames (29.1 s at 12 kHz, hop 256): the last block sees 4 x 4, Choi's final 4x4 pool."""
    model = build_model(ModelConfig(name="fcn", n_filters=2), (1366, 96), 50)
    assert model.get_layer("conv5_conv").output.shape[1:3] == (4, 4)
    assert model.get_layer("conv1_pool").output.shape[1:3] == (341, 48)


def test_crnn_feeds_the_grus_one_vector_per_remaining_frame():
    model = build_model(ModelConfig(name="crnn", n_filters=2), (1366, 96), 50)
    assert model.get_layer("conv4_pool").output.shape[1:3] == (14, 1)    # 1366/2/3/4/4, 96/2/3/4/4
    assert model.get_layer("gru1").output.shape[1:] == (14, 4)


def test_multiscale_streams_line_up_for_odd_lengths():
    """The three scales reach the same map size for any length, so the depthwise concatenation works."""
    model = build_model(ModelConfig(name="multiscale", n_filters=2), (None, 20), 3)
    for n_frames in (16, 47, 103):
        outputs = model(random_batch((1, n_frames, 20)), training=False)
        assert outputs.shape == (1, 3)
    concat = model.get_layer("scales_concat")
    assert concat.output.shape[-1] == 3 * 4 * 2


def test_frequency_pools_adapt_to_few_bins():
    assert adapted_frequency_pools(96, (2, 2, 2, 3)) == (2, 2, 2, 3)
    assert adapted_frequency_pools(20, (2, 2, 2, 3)) == (2, 2, 2, 1)
    assert adapted_frequency_pools(96, (2, 3, 4, 4)) == (2, 3, 4, 4)
    assert adapted_frequency_pools(20, (2, 3, 4, 4)) == (2, 3, 1, 1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_shape_dtype_names_and_variable_length(name):
    config, _, lengths = SMALL[name]
    model = build_model(config, small_shape(name, None), N_TAGS)
    assert model.get_layer("audio").output.shape[1:] == small_shape(name, None)
    assert model.get_layer("tags").units == N_TAGS
    model.get_layer("embedding")  # raises ValueError when missing
    embedder = keras.Model(model.input, model.get_layer("embedding").output)
    for seed, n_frames in enumerate(lengths):
        batch = random_batch((3, *small_shape(name, n_frames)), seed)
        probabilities = keras.ops.convert_to_numpy(model(batch, training=False))
        assert probabilities.shape == (3, N_TAGS)
        assert probabilities.dtype == np.float32
        assert np.all((probabilities > 0) & (probabilities < 1))
        embedding = keras.ops.convert_to_numpy(embedder(batch, training=False))
        assert embedding.shape[0] == 3 and embedding.ndim == 2
        # the embedding is what the "tags" layer reads (after dropout, inactive here)
        assert embedding.shape[1] == model.get_layer("tags").kernel.shape[0]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_mixed_precision_keeps_a_float32_output(name, mixed_precision):
    config, _, lengths = SMALL[name]
    model = build_model(config, small_shape(name, lengths[0]), N_TAGS)
    assert model.get_layer("tags").dtype_policy.compute_dtype == "float32"
    assert any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers
               if layer.name != "tags" and layer.weights)
    outputs = model(random_batch((2, *small_shape(name, lengths[0]))), training=False)
    assert keras.ops.convert_to_numpy(outputs).dtype == np.float32


@pytest.mark.parametrize("name", sorted(SMALL))
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    config, _, lengths = SMALL[name]
    model = build_model(config, small_shape(name, None), N_TAGS)
    batch = random_batch((2, *small_shape(name, lengths[1])), seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(batch, training=False)),
                                  keras.ops.convert_to_numpy(model(batch, training=False)))
    assert count_parameters(loaded) == count_parameters(model)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'.*pons_log_mel"):
        build_model(ModelConfig(name="resnet9000"), (None, 96), 50)


@pytest.mark.parametrize("name, shape, message", [
    ("pons_log_mel", (None,), "spectrogram input shape"),
    ("pons_log_mel", (None, None), "n_bins known"),
    ("pons_log_mel", (7, 96), "at least 8 frames"),
    ("pons_log_mel", (100, 2), "at least 3 mel bands"),
    ("pons_waveform", (None, 96), "waveform input shape"),
    ("pons_waveform", (19_679,), "at least 19680 samples"),
    ("fcn", (319, 96), "at least 320 frames"),
    ("crnn", (95, 96), "at least 96 frames"),
    ("multiscale", (15, 96), "at least 16 frames"),
    ("multiscale", (100, 7), "at least 8 bins"),
    ("crnn", (None,), "spectrogram input shape"),
])
def test_input_shapes_a_model_cannot_take_are_config_errors(name, shape, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(name=name), shape, 50)


def test_zero_tags_is_a_config_error():
    with pytest.raises(ConfigError, match="n_tags"):
        build_model(ModelConfig(), (None, 96), 0)


def test_training_steps_reduce_the_loss_on_a_learnable_batch():
    """Tags that are a function of the input: three Adam steps on one batch must lower the loss.

    Dropout is off and the loss is measured in training mode (batch statistics), so the comparison
    is deterministic and not blurred by batch norm's slowly moving averages. Eager steps: on this
    tiny batch, tracing a graph would cost more than it saves.
    """
    keras.utils.set_random_seed(0)
    config, n_bins, (n_frames, _) = SMALL["fcn"]
    config = dataclasses.replace(config, dropout=0.0)
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((8, n_frames, n_bins)).astype("float32")
    labels = (inputs[:, :, :N_TAGS].mean(axis=1) > 0).astype("float32")  # tag k: mel band k loud on average
    model = build_model(config, (None, n_bins), N_TAGS)
    loss = keras.losses.BinaryCrossentropy()
    before = float(loss(labels, model(inputs, training=True)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, run_eagerly=True)
    model.fit(inputs, labels, epochs=3, batch_size=8, verbose=0)
    after = float(loss(labels, model(inputs, training=True)))
    assert after < 0.8 * before


def test_listing_command_prints_every_model_with_its_count(capsys):
    assert models_main(["--input-seconds", "15", "--n-tags", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "15 s at 16000 Hz" in out
    for name in MODELS:
        assert name in out
    assert "5,927,110" in out and "5,380,774" in out and "(469, 96)" in out


def test_listing_command_explains_a_window_a_model_cannot_take(capsys):
    assert models_main(["--input-seconds", "5", "--n-filters", "2", "--n-dense", "8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "model 'fcn' needs at least 320 frames" in out


def test_listing_command_rejects_bad_options(capsys):
    assert models_main(["--n-tags", "0", "--quiet"]) == 1
    assert "error: " in capsys.readouterr().err
