"""The musicnn and VGG-like builders: shapes, parameter counts, naming contract, pooling order, errors.

Equality with the original checkpoints' graph is tested in tests/models/test_pretrained.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orpheus.config import ModelConfig
from orpheus.errors import ConfigError
from orpheus.models.musicnn import MUSICNN_CONFIG, VGG_CONFIG, build_musicnn, build_vgg


@pytest.fixture(scope="module")
def musicnn():
    return build_musicnn(MUSICNN_CONFIG, (None, 96), 50)


def test_parameter_counts_equal_the_checkpoints():
    # sums of the sizes of the non-optimizer variables of MSD_musicnn and MSD_vgg (musicnn 0.1.0)
    assert build_musicnn(MUSICNN_CONFIG, (None, 96), 50).count_params() == 792_079
    assert build_vgg(VGG_CONFIG, (187, 96), 50).count_params() == 607_030


def test_musicnn_contract_and_any_length(musicnn):
    assert musicnn.input.name == "audio" and musicnn.input_shape == (None, None, 96)
    assert musicnn.output_shape == (None, 50) and musicnn.get_layer("tags").activation.__name__ == "sigmoid"
    assert musicnn.get_layer("embedding").output.shape == (None, 200)
    rng = np.random.default_rng(0)
    for n_frames in (1, 187, 400):
        probs = np.asarray(musicnn(rng.normal(size=(2, n_frames, 96)).astype("float32")))
        assert probs.shape == (2, 50) and np.all((probs > 0) & (probs < 1))


def test_musicnn_config_fields_set_midend_and_dense_width():
    model = build_musicnn(dataclasses.replace(MUSICNN_CONFIG, n_filters=8, n_dense=20), (187, 40), 7)
    assert model.get_layer("midend1_conv").filters == 8
    # front end: 2 x 204 timbral + 3 x 51 temporal filters, then three 8-filter mid-end layers
    assert model.get_layer("midend").output.shape[-1] == 561 + 3 * 8
    assert model.get_layer("embedding").output.shape == (None, 20) and model.output_shape == (None, 7)
    assert model.get_layer("timbral_16_conv").kernel.shape == (7, 16, 1, 204)   # 40% of 40 mel bands
    assert model.get_layer("timbral_28_conv").kernel.shape == (7, 28, 1, 204)   # 70%


def test_musicnn_pools_max_and_mean_interleaved_per_channel(musicnn):
    """musicnn concatenates [max, mean] on a trailing axis and flattens: max_c0, mean_c0, max_c1, ..."""
    import keras
    x = np.random.default_rng(1).normal(size=(2, 50, 96)).astype("float32")
    probe = keras.Model(musicnn.input, [musicnn.get_layer("midend").output, musicnn.get_layer("pool_flatten").output])
    midend, flat = (np.asarray(t) for t in probe(x))
    expected = np.stack([midend.max(axis=1), midend.mean(axis=1)], axis=-1).reshape(2, -1)
    np.testing.assert_allclose(flat, expected, rtol=1e-5, atol=1e-6)


def test_musicnn_midend_has_residual_connections(musicnn):
    import keras
    x = np.random.default_rng(2).normal(size=(1, 30, 96)).astype("float32")
    names = ["midend1_bn", "midend2_bn", "midend2_residual", "midend3_bn", "midend3_residual"]
    probe = keras.Model(musicnn.input, [musicnn.get_layer(n).output for n in names])
    bn1, bn2, res2, bn3, res3 = (np.asarray(t) for t in probe(x))
    np.testing.assert_allclose(res2, bn2 + bn1, rtol=1e-6)
    np.testing.assert_allclose(res3, bn3 + res2, rtol=1e-6)


def test_vgg_contract_and_pooling_sizes():
    model = build_vgg(VGG_CONFIG, (187, 96), 50)
    assert model.input.name == "audio" and model.output_shape == (None, 50)
    # (187, 96) -> pools -> (92, 48) (46, 24) (23, 12) (11, 6) (2, 1): 2 x 1 x 128 = 256 features
    assert [model.get_layer(f"conv{i}_pool").output.shape[1:3] for i in range(1, 6)] == \
        [(92, 48), (46, 24), (23, 12), (11, 6), (2, 1)]
    assert model.get_layer("embedding").output.shape == (None, 256)
    assert np.asarray(model(np.zeros((3, 187, 96), "float32"))).shape == (3, 50)


def test_vgg_filters_follow_config():
    model = build_vgg(ModelConfig(name="vgg", n_filters=16), (66, 63), 5)
    assert model.get_layer("conv3_conv").kernel.shape == (3, 3, 16, 16)
    assert model.get_layer("embedding").output.shape == (None, 16)     # the smallest input: 1 x 1 x 16


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="fixed window"):
        build_vgg(VGG_CONFIG, (None, 96), 50)
    with pytest.raises(ConfigError, match="too small"):
        build_vgg(VGG_CONFIG, (65, 96), 50)
    with pytest.raises(ConfigError, match=r"\(n_frames, n_mels\)"):
        build_musicnn(MUSICNN_CONFIG, (48000,), 50)
    with pytest.raises(ConfigError, match="at least 3 mel bands"):
        build_musicnn(MUSICNN_CONFIG, (None, 2), 50)
