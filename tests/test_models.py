"""Tests of the model zoo (`orpheus.models`): registry, builders, shapes, counts, saving, training."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from orpheus.config import ModelConfig
from orpheus.errors import ConfigError
from orpheus.models import MODELS, SPECTROGRAM_FORMATS, WAVEFORM_FORMATS, build_model, count_parameters
from orpheus.spec import FORMATS

N_TAGS = 5
# Small settings per model, so that every test builds quickly: (config, n_bins or None for waveform,
# two input lengths the variable-length model is called on).
SMALL = {
    "pons_log_mel": (ModelConfig(name="pons_log_mel", n_filters=2, n_dense=8), 16, (12, 37)),
    "pons_waveform": (ModelConfig(name="pons_waveform", n_dense=8), None, (19_680, 25_000)),
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
])
def test_input_shapes_a_model_cannot_take_are_config_errors(name, shape, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(name=name), shape, 50)


def test_zero_tags_is_a_config_error():
    with pytest.raises(ConfigError, match="n_tags"):
        build_model(ModelConfig(), (None, 96), 0)


def test_one_training_step_reduces_the_loss_on_a_learnable_batch():
    """Tags that are a function of the input: Adam steps on one batch must lower the loss.

    Dropout is off and the loss is measured in training mode (batch statistics), so the comparison
    is deterministic and not blurred by batch norm's slowly moving averages.
    """
    keras.utils.set_random_seed(0)
    config, n_bins, _ = SMALL["pons_log_mel"]
    config = ModelConfig(name=config.name, n_filters=config.n_filters, n_dense=config.n_dense, dropout=0.0)
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((8, 20, n_bins)).astype("float32")
    labels = np.zeros((8, N_TAGS), dtype="float32")
    for tag in range(N_TAGS):        # tag k is on when mel band k is loud on average
        labels[:, tag] = inputs[:, :, tag].mean(axis=1) > 0
    model = build_model(config, (None, n_bins), N_TAGS)
    loss = keras.losses.BinaryCrossentropy()
    before = float(loss(labels, model(inputs, training=True)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=False)
    model.fit(inputs, labels, epochs=3, batch_size=8, verbose=0)
    after = float(loss(labels, model(inputs, training=True)))
    assert after < 0.9 * before
