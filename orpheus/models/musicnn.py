"""musicnn (Pons & Serra 2019) and its VGG-like baseline, as the `musicnn` 0.1.0 checkpoints define them.

Keras 3 functional re-implementations of `define_model` in the PyPI package `musicnn` 0.1.0
(musicnn/models.py), layer for layer, so that `orpheus.models.pretrained` can load the four checkpoints it
ships (MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg) and reproduce their outputs. The same builders
train from scratch through the model registry.

Input: log-mel spectrogram float32 [batch, n_frames, n_mels] (the musicnn preset: 16 kHz, hop 256,
96 mels, log10(10000 x + 1); the checkpoints were trained on 187-frame = 3 s patches). Both models
start with a batch normalisation of the single input channel, so the input needs no normalisation.

How the `ModelConfig` fields are read (defaults of the checkpoints in `MUSICNN_CONFIG`, `VGG_CONFIG`):

    musicnn  n_filters: mid-end filters (64; 512 in the unreleased "big" model)
             n_dense:   units of the penultimate dense layer, the "embedding" (200; 500 "big")
             dropout:   rate before the penultimate and before the output layer (0.5)
             The front end is fixed by the paper: 1.6 x 128 = 204 timbral and 1.6 x 32 = 51
             temporal filters per branch.
    vgg      n_filters: filters of each of the five 3x3 conv layers (128)
             n_dense:   unused (the output layer follows the last pooling directly)
             dropout:   rate before the output layer (0.5); half of it after each pooling (0.25)

Training speed: musicnn's front-end filters and their batch norms are `OneChannelConv2D` and
`FusedBatchNormalization` (`orpheus.models.layers`), Keras's Conv2D and BatchNormalization with the same
weights and outputs, whose training pass is computed faster (a step of the whole model on batch 16: 8.6 ->
under 3 CPU s on a 2-core AMD EPYC Zen 4; bench/training.py).

TF1 conventions reproduced here: batch norm epsilon 0.001 with moving statistics at inference
(Keras's defaults), "valid" convolutions after explicit zero padding of the time axis where the
original pads by hand, TF "SAME" padding (extra zero at the end for even kernels) where it asks for
"same", and pooling windows without padding.
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import ModelConfig
from orpheus.errors import ConfigError
from orpheus.models.blocks import tag_output
from orpheus.models.layers import FusedBatchNormalization, OneChannelConv2D

FRONTEND_FILTER_SCALE = 1.6     # num_filt_frontend of musicnn's build_musicnn
TIMBRAL_WIDTH = 7               # frames spanned by the timbral (vertical) filters
TIMBRAL_HEIGHTS = (0.4, 0.7)    # fraction of the mel axis spanned by the two timbral branches
TEMPORAL_LENGTHS = (128, 64, 32)  # frames spanned by the temporal (horizontal) filters
MIDEND_WIDTH = 7                # frames spanned by the mid-end 1-D convolutions
MIDEND_LAYERS = 3

MUSICNN_CONFIG = ModelConfig(name="musicnn", n_filters=64, n_dense=200, dropout=0.5)
VGG_CONFIG = ModelConfig(name="vgg", n_filters=128, n_dense=200, dropout=0.5)

# (pool size, strides) over (time, frequency) after each of the five VGG conv layers.
VGG_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

# The freezable parts of each model (`orpheus.train.finetune`): part -> fnmatch patterns of its layer names.
MUSICNN_PARTS = {"frontend": ("input_bn", "timbral_*", "temporal_*"), "midend": ("midend*",),
                 "backend": ("pool_bn", "dense", "embedding")}
VGG_PARTS = {"input_bn": ("input_bn",), **{f"conv{i}": (f"conv{i}_*",) for i in range(1, 6)}}

# Keras layer -> TF1 variable scope of musicnn 0.1.0's checkpoints (`orpheus.models.musicnn_checkpoint`), in the order
# musicnn's graph creates them. Each Keras weight `LAYER/x` takes the checkpoint variable `SCOPE/x`
# (kernel, bias, gamma, beta, moving_mean, moving_variance).
MUSICNN_SCOPES: tuple[tuple[str, str], ...] = (
    ("input_bn", "batch_normalization"),
    ("timbral_38_conv", "conv2d"), ("timbral_38_bn", "batch_normalization_1"),
    ("timbral_67_conv", "conv2d_1"), ("timbral_67_bn", "batch_normalization_2"),
    ("temporal_128_conv", "conv2d_2"), ("temporal_128_bn", "batch_normalization_3"),
    ("temporal_64_conv", "conv2d_3"), ("temporal_64_bn", "batch_normalization_4"),
    ("temporal_32_conv", "conv2d_4"), ("temporal_32_bn", "batch_normalization_5"),
    ("midend1_conv", "conv2d_5"), ("midend1_bn", "batch_normalization_6"),
    ("midend2_conv", "conv2d_6"), ("midend2_bn", "batch_normalization_7"),
    ("midend3_conv", "conv2d_7"), ("midend3_bn", "batch_normalization_8"),
    ("pool_bn", "batch_normalization_9"),
    ("dense", "dense"), ("embedding", "batch_normalization_10"),
    ("tags", "dense_1"),
)
VGG_SCOPES: tuple[tuple[str, str], ...] = (
    ("input_bn", "batch_normalization"),
    *((layer, scope) for i in range(1, 6)
      for layer, scope in ((f"conv{i}_conv", f"{i}CNN"), (f"conv{i}_bn", f"batch_normalization_{i}"))),
    ("tags", "dense"),
)


def _spectrogram_input(input_shape: tuple[int | None, ...]) -> tuple[keras.KerasTensor, int]:
    """The "audio" input [batch, n_frames, n_mels] and its mel count, checked."""
    if len(input_shape) != 2 or input_shape[1] is None:
        raise ConfigError(f"musicnn models take (n_frames, n_mels) spectrogram input, got {tuple(input_shape)}")
    n_frames, n_mels = input_shape
    if n_frames is not None and n_frames < 1:
        raise ConfigError(f"n_frames must be positive or None, got {n_frames}")
    return keras.Input(shape=(n_frames, n_mels), name="audio"), int(n_mels)


def _pooled_branch(x, filters: int, kernel: tuple[int, int], *, padding: str, name: str):
    """conv (ReLU) -> batch norm -> max over the whole frequency axis: [batch, n_frames, filters].

    `x` is [batch, n_frames, n_bins, 1]; musicnn's timbral_block / tempo_block.
    """
    x = OneChannelConv2D(filters, kernel, padding=padding, activation="relu", name=f"{name}_conv")(x)
    x = FusedBatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    x = layers.MaxPooling2D(pool_size=(1, x.shape[2]), name=f"{name}_pool")(x)
    return layers.Reshape((-1, filters), name=f"{name}_squeeze")(x)


def build_musicnn(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """musicnn: musically motivated front end, dense mid end, temporal pooling back end.

    Args:
        config: `n_filters` mid-end filters, `n_dense` embedding units, `dropout` rate (module docstring).
        input_shape: (n_frames, n_mels); n_frames may be None (any length >= 1 works).
        n_tags: output units.

    Returns:
        A model mapping "audio" float32 [batch, n_frames, n_mels] (log-mel) to "tags" float32
        sigmoid probabilities [batch, n_tags]; its layer "embedding" is the batch-normalised
        penultimate dense layer [batch, n_dense] (musicnn's "penultimate" feature).
    """
    audio, n_mels = _spectrogram_input(input_shape)
    x = layers.Reshape((-1, n_mels, 1), name="add_channel")(audio)
    x = layers.BatchNormalization(epsilon=1e-3, name="input_bn")(x)

    # Front end. Timbral branches: time padded by hand then "valid", so the frequency axis is not padded.
    padded = layers.ZeroPadding2D(((TIMBRAL_WIDTH // 2, TIMBRAL_WIDTH // 2), (0, 0)), name="timbral_pad")(x)
    timbral_filters = int(FRONTEND_FILTER_SCALE * 128)
    branches = []
    for height in TIMBRAL_HEIGHTS:
        n_bins = int(height * n_mels)
        if n_bins < 1:
            raise ConfigError(f"musicnn needs at least 3 mel bands, got {n_mels}")
        branches.append(_pooled_branch(padded, timbral_filters, (TIMBRAL_WIDTH, n_bins), padding="valid",
                                       name=f"timbral_{n_bins}"))
    temporal_filters = int(FRONTEND_FILTER_SCALE * 32)
    for length in TEMPORAL_LENGTHS:
        branches.append(_pooled_branch(x, temporal_filters, (length, 1), padding="same",
                                       name=f"temporal_{length}"))
    frontend = layers.Concatenate(axis=-1, name="frontend")(branches)   # [batch, n_frames, 561]

    # Mid end: 1-D convolutions over time (musicnn writes them as 2-D convs spanning all channels),
    # with residual connections from the second layer on; all outputs are concatenated (dense connection).
    features = [frontend]
    y = frontend
    for i in range(1, MIDEND_LAYERS + 1):
        conv = layers.Conv1D(config.n_filters, MIDEND_WIDTH, padding="same", activation="relu",
                             name=f"midend{i}_conv")(y)
        conv = layers.BatchNormalization(epsilon=1e-3, name=f"midend{i}_bn")(conv)
        y = conv if i == 1 else layers.Add(name=f"midend{i}_residual")([conv, y])
        features.append(y)
    midend = layers.Concatenate(axis=-1, name="midend")(features)      # [batch, n_frames, 561 + 3 n_filters]

    # Back end: max and mean over time, interleaved per channel as musicnn's concat(axis=2) + flatten does.
    n_channels = midend.shape[-1]
    max_pool = layers.Reshape((n_channels, 1), name="max_pool")(layers.GlobalMaxPooling1D(name="time_max")(midend))
    mean_pool = layers.Reshape((n_channels, 1), name="mean_pool")(
        layers.GlobalAveragePooling1D(name="time_mean")(midend))
    pooled = layers.Flatten(name="pool_flatten")(layers.Concatenate(axis=-1, name="pool")([max_pool, mean_pool]))
    pooled = layers.BatchNormalization(epsilon=1e-3, name="pool_bn")(pooled)
    pooled = layers.Dropout(config.dropout, name="pool_dropout")(pooled)
    dense = layers.Dense(config.n_dense, activation="relu", name="dense")(pooled)
    embedding = layers.BatchNormalization(epsilon=1e-3, name="embedding")(dense)
    dropped = layers.Dropout(config.dropout, name="embedding_dropout")(embedding)
    tags = tag_output(dropped, n_tags)
    return keras.Model(audio, tags, name="musicnn")


def build_vgg(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """musicnn's VGG-like baseline: five 3x3 conv layers with max pooling, then the output layer.

    The last pooling is flattened, so the input length is fixed (187 frames for the checkpoints).

    Args:
        config: `n_filters` per conv layer, `dropout` rate (module docstring); `n_dense` is unused.
        input_shape: (n_frames, n_mels), both known and large enough to survive the five poolings
            (at least 66 frames and 63 mel bands).
        n_tags: output units.

    Returns:
        A model mapping "audio" float32 [batch, n_frames, n_mels] (log-mel) to "tags" float32
        sigmoid probabilities [batch, n_tags]; its layer "embedding" is the flattened last pooling
        [batch, time' * freq' * n_filters] (musicnn's "pool5" feature).
    """
    audio, n_mels = _spectrogram_input(input_shape)
    n_frames = input_shape[0]
    if n_frames is None:
        raise ConfigError("the vgg model flattens its last pooling, so it needs a fixed window: "
                          "give n_frames (187 for the musicnn checkpoints)")
    time_len, freq_len = n_frames, n_mels
    for (pool_t, pool_f), (stride_t, stride_f) in VGG_POOLS:
        time_len, freq_len = (time_len - pool_t) // stride_t + 1, (freq_len - pool_f) // stride_f + 1
    if time_len < 1 or freq_len < 1:
        raise ConfigError(f"vgg input {n_frames} frames x {n_mels} mel bands is too small for its five "
                          "poolings (needs at least 66 frames and 63 bands)")

    x = layers.Reshape((n_frames, n_mels, 1), name="add_channel")(audio)
    x = layers.BatchNormalization(epsilon=1e-3, name="input_bn")(x)
    for i, (pool, strides) in enumerate(VGG_POOLS, start=1):
        if i > 1:
            x = layers.Dropout(config.dropout / 2, name=f"conv{i}_dropout")(x)
        x = layers.Conv2D(config.n_filters, (3, 3), padding="same", activation="relu", name=f"conv{i}_conv")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"conv{i}_bn")(x)
        x = layers.MaxPooling2D(pool_size=pool, strides=strides, padding="valid", name=f"conv{i}_pool")(x)
    embedding = layers.Flatten(name="embedding")(x)
    dropped = layers.Dropout(config.dropout, name="embedding_dropout")(embedding)
    tags = tag_output(dropped, n_tags)
    return keras.Model(audio, tags, name="vgg")
