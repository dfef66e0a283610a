"""The zoo's custom layers (`orpheus.models.layers`) against the Keras layers they replace.

`OneChannelConv2D` and `FusedBatchNormalization` only change how training computes musicnn's front end
(issue 24: 8.6 -> under 3 CPU s a step). These tests hold them to the plain `Conv2D` and
`BatchNormalization`: same outputs and gradients to float32 round-off, same weights, and files written
with the plain layers (the musicnn models of earlier versions) load into the new ones and back.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from orpheus.models.layers import FusedBatchNormalization, OneChannelConv2D, copy_model
from orpheus.models.musicnn import MUSICNN_CONFIG, build_musicnn

def gradients(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """[outputs, d loss / d input, d loss / d each trainable weight] of a training-mode call, for a loss
    whose gradient of the outputs is seeded noise."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=True)
        loss = tf.reduce_sum(y * np.random.default_rng(9).normal(size=y.shape).astype("float32"))
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x] + model.trainable_variables)]


def assert_close(actual: list, expected: list, rtol: float) -> None:
    """Each array within `rtol` of the largest magnitude of its expected value."""
    assert len(actual) == len(expected)
    for i, (a, b) in enumerate(zip(actual, expected)):
        scale = max(float(np.abs(b).max()), 1e-6)
        assert np.abs(a - b).max() <= rtol * scale, f"array {i}: {np.abs(a - b).max()} > {rtol} x {scale}"


@pytest.mark.parametrize("kernel, padding, n_frames", [
    ((7, 38), "valid", 30),      # musicnn's timbral filters: frequency taps become channels
    ((5, 11), "same", None),     # "same" pads both axes; unknown time length until run time
    ((32, 1), "same", 40),       # musicnn's temporal filters: 8 time taps become channels
    ((6, 1), "same", None),      # a length 8 does not divide: 6 taps
    ((7, 1), "valid", 12),       # a prime length: all 7 taps
])
def test_one_channel_conv_equals_conv2d(kernel, padding, n_frames):
    rng = np.random.default_rng(0)
    audio = keras.Input((n_frames, 96, 1))
    model = keras.Model(audio, OneChannelConv2D(6, kernel, padding=padding, activation="relu")(audio))
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(3, n_frames or 17, 96, 1)).astype("float32")
    assert_close(gradients(model, x), gradients(copy_model(model, keras_layers=True), x), rtol=1e-5)
    np.testing.assert_array_equal(model(x), copy_model(model, keras_layers=True)(x))   # inference: the same convolution


def test_one_channel_conv_refuses_what_it_does_not_cover():
    with pytest.raises(ValueError, match="stride 1"):
        OneChannelConv2D(4, (3, 3), strides=2)
    with pytest.raises(ValueError, match="one input channel"):
        OneChannelConv2D(4, (3, 3)).build((None, 10, 10, 2))


def batch_norm_pair(x: np.ndarray, rng: np.random.Generator) -> list[keras.Model]:
    """[FusedBatchNormalization, BatchNormalization] models over `x`'s shape, with the same weights."""
    models = []
    for layer_class in (FusedBatchNormalization, keras.layers.BatchNormalization):
        inputs = keras.Input(x.shape[1:])
        models.append(keras.Model(inputs, layer_class(epsilon=1e-3, momentum=0.5, name="bn")(inputs)))
    weights = [rng.uniform(0.5, 2, x.shape[-1]), rng.normal(size=x.shape[-1]), np.zeros(x.shape[-1]),
               np.ones(x.shape[-1])]
    for model in models:
        model.set_weights(weights)
    return models


def test_fused_batch_norm_equals_batch_normalization():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 20, 9, 5)) * rng.uniform(0.5, 4, 5) + rng.uniform(-2, 5, 5)).astype("float32")
    fused, keras_bn = batch_norm_pair(x, rng)
    assert_close(gradients(fused, x), gradients(keras_bn, x), rtol=1e-5)
    # the moving statistics moved alike (Keras keeps the biased batch variance: 1/n = 1.4e-3 here)
    assert_close(fused.get_weights(), keras_bn.get_weights(), rtol=2e-6)
    assert float(np.abs(fused.get_weights()[3] - 1).max()) > 0.1
    keras_bn.set_weights(fused.get_weights())
    np.testing.assert_array_equal(fused(x), keras_bn(x))          # inference: Keras's own path


def test_fused_batch_norm_is_as_accurate_where_the_mean_dominates():
    """A channel of mean 28 and deviation 0.26 loses bits to the mean's subtraction in any float32 kernel:
    against float64, the fused one is no worse than Keras's."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 20, 9, 5)) * rng.uniform(0.1, 4, 5) + rng.uniform(-2, 30, 5)).astype("float32")
    upstream = rng.normal(size=x.shape)
    x64 = x.astype(np.float64)
    models = batch_norm_pair(x, rng)
    gamma, beta = (w.astype(np.float64) for w in models[0].get_weights()[:2])
    deviation = np.sqrt(x64.var(axis=(0, 1, 2)) + 1e-3)
    normalised = (x64 - x64.mean(axis=(0, 1, 2))) / deviation
    expected_y = gamma * normalised + beta
    expected_dx = gamma / deviation * (upstream - upstream.mean(axis=(0, 1, 2))
                                       - normalised * (upstream * normalised).mean(axis=(0, 1, 2)))
    errors = []
    for model in models:
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = model(inputs, training=True)
            loss = tf.reduce_sum(y * upstream.astype("float32"))
        dx = tape.gradient(loss, inputs).numpy()
        errors.append((np.abs(y.numpy() - expected_y).max(), np.abs(dx - expected_dx).max()))
    (fused_y, fused_dx), (keras_y, keras_dx) = errors
    assert fused_y <= 2 * keras_y + 1e-6 and fused_dx <= 2 * keras_dx + 1e-6, errors
    assert keras_dx > 1e-6   # the case does lose precision


@pytest.fixture(scope="module")
def small_musicnn() -> keras.Model:
    """musicnn over 24 mel bands, narrow mid end, no dropout (so that training calls are deterministic)."""
    config = dataclasses.replace(MUSICNN_CONFIG, n_filters=8, n_dense=16, dropout=0.0)
    model = build_musicnn(config, (None, 24), 5)
    rng = np.random.default_rng(2)
    model.set_weights([w + 0.1 * rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_musicnn_trains_like_todays_layers(small_musicnn):
    """Outputs and every gradient of a training step are about as close to exact (the plain layers in
    float64) as the plain layers' are in float32.

    Each array's error may be 4 times today's, plus 0.2% of its size, plus 1e-6 of the largest gradient:
    some gradients are sums that cancel (input_bn's offset shifts every filter's output, which the batch
    norms after them take away again; midend3_bn's offset is removed by pool_bn entirely, so its gradient
    is exactly zero), and there any float32 kernel leaves round-off of the size of the terms.
    """
    today = copy_model(small_musicnn, keras_layers=True)
    assert [type(layer) for layer in today.layers].count(keras.layers.Conv2D) == 5
    x = np.random.default_rng(3).normal(size=(4, 40, 24)).astype("float32")
    new, old = gradients(small_musicnn, x), gradients(today, x)
    exact = gradients(copy_model(small_musicnn, dtype="float64", keras_layers=True), x.astype("float64"))
    largest = max(np.abs(truth).max() for truth in exact)
    names = ["outputs", "input"] + [v.path for v in small_musicnn.trainable_variables]
    for name, a, b, truth in zip(names, new, old, exact, strict=True):
        error, today_error = np.abs(a - truth).max(), np.abs(b - truth).max()
        assert error <= 4 * today_error + 2e-3 * np.abs(truth).max() + 1e-6 * largest, (name, error, today_error)
    assert_close(small_musicnn.get_weights(), today.get_weights(), rtol=1e-4)   # moving statistics


def test_files_of_todays_layers_load_into_musicnn_and_back(small_musicnn, tmp_path):
    """.keras, .weights.h5 and tf.train.Checkpoint written with the plain layers load into the new model."""
    today = copy_model(small_musicnn, keras_layers=True)
    assert [(w.path, w.shape) for w in today.weights] == [(w.path, w.shape) for w in small_musicnn.weights]
    x = np.random.default_rng(4).normal(size=(2, 30, 24)).astype("float32")
    expected = np.asarray(today(x))
    today.save(tmp_path / "today.keras")
    today.save_weights(tmp_path / "today.weights.h5")
    checkpoint = tf.train.Checkpoint(model=today).write(str(tmp_path / "ckpt" / "epoch-1"))

    fresh = build_musicnn(dataclasses.replace(MUSICNN_CONFIG, n_filters=8, n_dense=16, dropout=0.0), (None, 24), 5)
    fresh.load_weights(tmp_path / "today.weights.h5")
    np.testing.assert_allclose(fresh(x), expected, rtol=1e-6, atol=1e-7)
    fresh = build_musicnn(dataclasses.replace(MUSICNN_CONFIG, n_filters=8, n_dense=16, dropout=0.0), (None, 24), 5)
    tf.train.Checkpoint(model=fresh).read(checkpoint).assert_existing_objects_matched()
    np.testing.assert_allclose(fresh(x), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "today.keras")(x), expected, rtol=1e-6, atol=1e-7)

    # and back: the new layers' files load (orpheus.models registers them), into the plain layers too
    small_musicnn.save(tmp_path / "new.keras")
    small_musicnn.save_weights(tmp_path / "new.weights.h5")
    loaded = keras.saving.load_model(tmp_path / "new.keras")
    assert isinstance(loaded.get_layer("timbral_9_conv"), OneChannelConv2D)
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6, atol=1e-7)
    today.set_weights([np.zeros_like(w) for w in today.get_weights()])
    today.load_weights(tmp_path / "new.weights.h5")
    np.testing.assert_allclose(today(x), expected, rtol=1e-6, atol=1e-7)
