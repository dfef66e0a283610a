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
from orpheus.models.registry import (MODELS, SPECTROGRAM_FORMATS, WAVEFORM_FORMATS, build_model, check_format,
                            count_parameters)
from orpheus.commands.models import main as models_main
from orpheus.models import pons
from orpheus.models.choi import adapted_frequency_pools
from orpheus.audio.settings import FORMATS

N_TAGS = 5
# Small settings per model, so that every test builds quickly: (config, n_bins or None for waveform,
# two input lengths the model is called on).
SMALL = {
    "musicnn": (ModelConfig(name="musicnn", n_filters=4, n_dense=8), 16, (5, 23)),
    "vgg": (ModelConfig(name="vgg", n_filters=2), 64, (66, 80)),
    "pons_log_mel": (ModelConfig(name="pons_log_mel", n_filters=2, n_dense=8), 16, (12, 37)),
    "pons_waveform": (ModelConfig(name="pons_waveform", n_dense=8), None, (19_680, 25_000)),
    "fcn": (ModelConfig(name="fcn", n_filters=2), 24, (320, 411)),
    "crnn": (ModelConfig(name="crnn", n_filters=2), 20, (96, 150)),
    "multiscale": (ModelConfig(name="multiscale", n_filters=2, n_dense=8), 16, (64, 99)),
}


# Models whose architecture needs a fixed window (vgg flattens its last pooling); all others take None.
FIXED_WINDOW = {"vgg"}


def small_shape(name: str, n_frames: int | None) -> tuple[int | None, ...]:
    _, n_bins, _ = SMALL[name]
    return (n_frames,) if n_bins is None else (n_frames, n_bins)


def build_shape(name: str) -> tuple[int | None, ...]:
    """The shape to build with: a None time axis where the architecture allows it."""
    _, _, lengths = SMALL[name]
    return small_shape(name, lengths[0] if name in FIXED_WINDOW else None)


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
    assert set(MODELS) == {"pons_log_mel", "pons_waveform", "musicnn", "vgg", "fcn", "crnn", "multiscale"}
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
# multiscale (no conv batch norms; kernels time x frequency):
#       scale1 7*3*1*50+50=1,100, 5*3*50*100+100=75,100, 9*100*70+70=63,070;
#       scale2 5*3*1*100+100=1,600, 63,070; scale3 9*1*70+70=700;
#       merged 9*210*70+70=132,370, 9*70*70+70=44,170; 96 bands -> 6 after /16, so max+mean over time
#       of 6*70 = 840 values, bn 4*840=3,360; embedding 840*500+500=420,500; tags 500*50+50=25,050 -> 830,090
@pytest.mark.parametrize("name, expected", [("fcn", 865_074), ("crnn", 395_378), ("multiscale", 830_090)])
def test_parameter_counts_of_the_other_models(name, expected):
    assert count_parameters(build_model(ModelConfig(name=name), (None, 96), 50)) == expected


# musicnn's checkpoint widths (n_filters=64, n_dense=200), 96 mels, 50 tags, by hand:
#   input bn 4; timbral 7x38 and 7x67 convs of 204 filters: 54,468 + 95,880, bns 816 + 816;
#   temporal 128/64/32 x 1 convs of 51 filters: 6,579 + 3,315 + 1,683, bns 3 * 204 = 612 (561 channels);
#   mid end Conv1D(64, 7): 7*561*64+64 = 251,392, then 2 x (7*64*64+64 = 28,736), bns 3 * 256;
#   max+mean of 561 + 3*64 = 753 channels = 1,506, bn 6,024; dense 1,506*200+200 = 301,400, bn 800;
#   tags 200*50+50 = 10,050                                                      -> 792,079
# vgg (n_filters=128) on 187 frames x 96 mels, 50 tags: input bn 4; conv1 9*1*128+128 = 1,280;
#   conv2..5 4 x (9*128*128+128 = 147,584); bns 5 * 512; pools leave 2 x 1 x 128 = 256 features;
#   tags 256*50+50 = 12,850                                                      -> 607,030
@pytest.mark.parametrize("name, shape, expected", [("musicnn", (None, 96), 792_079), ("vgg", (187, 96), 607_030)])
def test_parameter_counts_of_the_musicnn_models_at_their_checkpoint_widths(name, shape, expected):
    reference = MODELS[name].reference_config
    assert reference is not None and reference.name == name
    assert count_parameters(build_model(reference, shape, 50)) == expected


def test_waveform_minimum_length_is_exact():
    assert pons.waveform_frames(pons.min_waveform_samples()) == pons.BACKEND_KERNEL + 1
    assert pons.waveform_frames(pons.min_waveform_samples() - 1) == pons.BACKEND_KERNEL
    model = build_model(ModelConfig(name="pons_waveform", n_dense=8), (48_000,), 3)
    # 48000 // 3 = 16000 -> 5332 -> 1776 -> 591 -> 196 -> 64 -> 20  ((n - 2) // 3 per block)
    assert model.get_layer("sample6_pool").output.shape[1] == pons.waveform_frames(48_000) == 20


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
    for n_frames in (64, 99, 131):
        outputs = model(random_batch((1, n_frames, 20)), training=False)
        assert outputs.shape == (1, 3)
    assert model.get_layer("scales_concat").output.shape[-1] == 3 * 9     # round(70 * 2 / 16) = 9 each


def test_multiscale_at_the_authors_input_ends_on_their_flattened_map():
    """128 mels x 628 frames: the last map is 9 x 8 x 70 = 5,040 values, as in the authors' code."""
    model = build_model(ModelConfig(name="multiscale"), (628, 128), 50)
    assert model.get_layer("scales_concat").output.shape[1:] == (19, 16, 210)
    assert model.get_layer("merged_conv2_pool").output.shape[1:] == (9, 8, 70)


def test_frequency_pools_adapt_to_few_bins():
    assert adapted_frequency_pools(96, (2, 2, 2, 3)) == (2, 2, 2, 3)
    assert adapted_frequency_pools(20, (2, 2, 2, 3)) == (2, 2, 2, 1)
    assert adapted_frequency_pools(96, (2, 3, 4, 4)) == (2, 3, 4, 4)
    assert adapted_frequency_pools(20, (2, 3, 4, 4)) == (2, 3, 1, 1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_shape_dtype_names_and_variable_length(name):
    """Built once with a None time axis and called on two lengths (fixed-window models: built per length)."""
    config, _, lengths = SMALL[name]
    if name in FIXED_WINDOW:
        with pytest.raises(ConfigError):
            build_model(config, small_shape(name, None), N_TAGS)
    model = build_model(config, build_shape(name), N_TAGS)
    for seed, n_frames in enumerate(lengths):
        if name in FIXED_WINDOW:
            model = build_model(config, small_shape(name, n_frames), N_TAGS)
        assert model.get_layer("audio").output.shape[1:] == model.input_shape[1:]
        assert model.input_shape[1:] == small_shape(name, n_frames if name in FIXED_WINDOW else None)
        assert model.get_layer("tags").units == N_TAGS
        embedder = keras.Model(model.input, model.get_layer("embedding").output)
        batch = random_batch((3, *small_shape(name, n_frames)), seed)
        probabilities = keras.ops.convert_to_numpy(model(batch, training=False))
        assert probabilities.shape == (3, N_TAGS)
        assert probabilities.dtype == np.float32
        assert np.all((probabilities > 0) & (probabilities < 1))
        embedding = keras.ops.convert_to_numpy(embedder(batch, training=False))
        assert embedding.shape[0] == 3 and embedding.ndim == 2
        # the embedding is what the "tags" layer reads, through at most a dropout layer
        assert embedding.shape[1] == model.get_layer("tags").kernel.shape[0]
        reader = model.get_layer("tags").input._keras_history.operation
        read = reader.input if isinstance(reader, keras.layers.Dropout) else model.get_layer("tags").input
        assert read is model.get_layer("embedding").output


@pytest.mark.parametrize("name", sorted(SMALL))
def test_mixed_precision_keeps_a_float32_output(name, mixed_precision):
    config, _, lengths = SMALL[name]
    model = build_model(config, small_shape(name, lengths[0]), N_TAGS)
    assert any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers
               if layer.name != "tags" and layer.weights)
    outputs = model(random_batch((2, *small_shape(name, lengths[0]))), training=False)
    assert keras.ops.convert_to_numpy(outputs).dtype == np.float32
    assert model.get_layer("tags").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    config, _, lengths = SMALL[name]
    model = build_model(config, build_shape(name), N_TAGS)
    batch = random_batch((2, *small_shape(name, lengths[0] if name in FIXED_WINDOW else lengths[1])), seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(batch, training=False)),
                                  keras.ops.convert_to_numpy(model(batch, training=False)))
    assert count_parameters(loaded) == count_parameters(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


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
    ("multiscale", (63, 96), "at least 64 frames"),
    ("multiscale", (100, 15), "at least 16 bins"),
    ("crnn", (None,), "spectrogram input shape"),
])
def test_input_shapes_a_model_cannot_take_are_config_errors(name, shape, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(name=name), shape, 50)


def test_format_check_names_the_models_that_fit():
    check_format("pons_waveform", "waveform")
    check_format("crnn", "mfcc")
    with pytest.raises(ConfigError, match="model 'fcn' takes log-mel-spectrogram or mfcc input, not waveform; "
                                          "models for waveform: pons_waveform"):
        check_format("fcn", "waveform")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        check_format("nope", "mfcc")


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
    """5 s windows: every model listed with its count (Pons' do not depend on the length), FCN refused."""
    assert models_main(["--input-seconds", "5", "--n-tags", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "5 s at 16000 Hz" in out
    for name in MODELS:
        assert f"\n{name} " in out
    assert "5,927,110" in out and "5,380,774" in out and "(157, 96)" in out and "(80000,)" in out
    assert "792,079  64/200" in out           # musicnn listed at its checkpoints' widths
    assert "model 'fcn' needs at least 320 frames" in out


def test_listing_command_rejects_bad_options(capsys):
    assert models_main(["--n-tags", "0", "--quiet"]) == 1
    assert "error: " in capsys.readouterr().err
