"""Small named building blocks shared by the model builders of `orpheus.models`.

Every block takes a Keras tensor and returns one; every layer it creates is named from the block's
`name`, so the layer names of a model say where each weight sits (`{name}_conv`, `{name}_bn`, ...).
Shapes below omit the batch axis. Only Keras layers are used (no `tf.*`, no `Lambda`), so models stay
backend-neutral and save/load as `.keras` files without custom objects.

The contract every model follows (see `orpheus.models`): an input layer named "audio", a penultimate
representation named "embedding", and a float32 sigmoid `Dense` named "tags" (float32 even under a
mixed-precision policy, so probabilities and the loss are computed in full precision).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import keras
from keras import layers

from orpheus.errors import ConfigError

INPUT_NAME = "audio"
EMBEDDING_NAME = "embedding"
OUTPUT_NAME = "tags"
# He initialisation (truncated normal, fan-in, scale 2): TF1's `variance_scaling_initializer()` that Pons
# et al.'s code uses for every ReLU layer
RELU_INITIALIZER = "he_normal"


def check_input_shape(input_shape: Sequence[int | None], *, kind: str, model: str) -> tuple[int | None, ...]:
    """Validate `input_shape` for a model that takes `kind` input; return it as a tuple.

    Args:
        input_shape: (n_frames, n_bins) for kind "spectrogram" (n_frames may be None), or
            (n_samples,) for kind "waveform" (n_samples may be None).
        kind: "spectrogram" or "waveform".
        model: the model's registry name, for the error message.

    Raises:
        ConfigError: wrong rank, a missing number of bins, or a non-positive size.
    """
    shape = tuple(input_shape)
    if kind == "spectrogram":
        if len(shape) != 2 or shape[1] is None:
            raise ConfigError(f"model {model!r} takes a spectrogram input shape (n_frames, n_bins) with n_bins "
                              f"known, got {shape}; use a waveform model for (n_samples,) input")
    elif kind == "waveform":
        if len(shape) != 1:
            raise ConfigError(f"model {model!r} takes a waveform input shape (n_samples,), got {shape}; "
                              "use a spectrogram model for (n_frames, n_bins) input")
    else:
        raise ValueError(f"unknown input kind {kind!r}")
    for size in shape:
        if size is not None and (not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1):
            raise ConfigError(f"model {model!r}: input shape {shape} must hold positive integers or None")
    return tuple(None if size is None else int(size) for size in shape)


def check_min_length(length: int | None, minimum: int, *, model: str, unit: str) -> None:
    """Raise `ConfigError` when a known input `length` is shorter than the model's `minimum`."""
    if length is not None and length < minimum:
        raise ConfigError(f"model {model!r} needs at least {minimum} {unit} of input, got {length}; "
                          "use a longer window (data.window_s)")


def audio_input(input_shape: tuple[int | None, ...]) -> keras.KerasTensor:
    """The model input named "audio": float32 [n_frames, n_bins] or [n_samples]."""
    return keras.Input(shape=input_shape, name=INPUT_NAME)


def add_channel_axis(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """[t, ...] -> [t, ..., 1]: a trailing channel axis of size 1 (t may be None)."""
    return layers.Reshape((-1, *x.shape[2:], 1), name=name)(x)


def drop_axis(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """[t, 1, c] -> [t, c]: drop a size-1 middle axis (frequency after pooling it away)."""
    if x.shape[2] != 1:
        raise ValueError(f"{name}: expected a size-1 axis 2, got shape {x.shape}")
    return layers.Reshape((-1, x.shape[3]), name=name)(x)


def conv_relu_bn(x: keras.KerasTensor, filters: int, kernel_size: int | tuple[int, int], *, name: str,
                 strides: int = 1, padding: str = "valid", pool_size: int | tuple[int, int] | None = None,
                 batch_norm: bool = True) -> keras.KerasTensor:
    """Convolution with ReLU, then batch norm (unless `batch_norm` is False), then an optional max-pooling.

    Pons et al.'s order. A 1-D convolution when `kernel_size` is an int (x: [t, c]), else 2-D
    (x: [t, f, c]). Layers: `{name}_conv`, `{name}_bn`, `{name}_pool`.
    """
    conv = layers.Conv1D if isinstance(kernel_size, int) else layers.Conv2D
    pool = layers.MaxPooling1D if isinstance(kernel_size, int) else layers.MaxPooling2D
    x = conv(filters, kernel_size, strides=strides, padding=padding, activation="relu",
             kernel_initializer=RELU_INITIALIZER, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if pool_size is not None:
        x = pool(pool_size, name=f"{name}_pool")(x)
    return x


def conv_bn_act(x: keras.KerasTensor, filters: int, kernel_size: int | tuple[int, int], *, name: str,
                activation: str = "elu", pool_size: int | tuple[int, int] | None = None,
                dropout: float = 0.0) -> keras.KerasTensor:
    """'Same' convolution, batch norm, activation, optional max-pooling and dropout (Choi et al.'s order).

    A 1-D convolution when `kernel_size` is an int (x: [t, c]), else 2-D (x: [t, f, c]); pooling uses
    floor division and therefore requires each pooled axis to be at least the pool size.
    Layers: `{name}_conv`, `{name}_bn`, `{name}_act`, `{name}_pool`, `{name}_dropout`.
    """
    conv = layers.Conv1D if isinstance(kernel_size, int) else layers.Conv2D
    pool = layers.MaxPooling1D if isinstance(kernel_size, int) else layers.MaxPooling2D
    x = conv(filters, kernel_size, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation(activation, name=f"{name}_act")(x)
    if pool_size is not None:
        x = pool(pool_size, name=f"{name}_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def scalar_batch_norm(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """Batch norm with ONE mean, variance, scale and offset for the whole [t, c] feature map (4 weights).

    Pons et al.'s back end normalises its residual convolutions after transposing them to
    [t, c, 1], so the normalised axis has size 1; reproducing it keeps their parameter count.
    Layers: `{name}_expand`, `{name}` (the BatchNormalization), `{name}_squeeze`.
    """
    channels = x.shape[-1]
    x = layers.Reshape((-1, channels, 1), name=f"{name}_expand")(x)
    x = layers.BatchNormalization(name=name)(x)
    return layers.Reshape((-1, channels), name=f"{name}_squeeze")(x)


def max_mean_pool(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """[t, c] -> [2c]: the maximum over time concatenated with the mean over time."""
    maximum = layers.GlobalMaxPooling1D(name=f"{name}_max")(x)
    mean = layers.GlobalAveragePooling1D(name=f"{name}_mean")(x)
    return layers.Concatenate(name=name)([maximum, mean])


def tag_output(x: keras.KerasTensor, n_tags: int) -> keras.KerasTensor:
    """[d] -> float32 [n_tags] sigmoid probabilities from the Dense layer named "tags"."""
    if n_tags < 1:
        raise ConfigError(f"a model needs at least one tag to predict, got n_tags={n_tags}")
    return layers.Dense(n_tags, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)


def dense_bn_head(x: keras.KerasTensor, n_tags: int, *, n_dense: int, dropout: float) -> keras.KerasTensor:
    """Dropout, Dense(n_dense, ReLU), batch norm = "embedding", dropout, then the "tags" output.

    x: [d] pooled features. Layers: `head_dropout`, `head_dense`, `embedding`, `embedding_dropout`, `tags`.
    """
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(n_dense, activation="relu", kernel_initializer=RELU_INITIALIZER, name="head_dense")(x)
    x = layers.BatchNormalization(name=EMBEDDING_NAME)(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    return tag_output(x, n_tags)


def dropout_head(x: keras.KerasTensor, n_tags: int, *, dropout: float) -> keras.KerasTensor:
    """The representation x becomes the "embedding" (an identity layer), then dropout and "tags"."""
    x = layers.Identity(name=EMBEDDING_NAME)(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="embedding_dropout")(x)
    return tag_output(x, n_tags)
