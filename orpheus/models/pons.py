"""Pons et al. 2018, "End-to-end learning for music audio tagging at scale" (ISMIR 2018).

The model of the original urop2019 Orpheus: a log-mel front end (musically motivated vertical and
temporal filters) or a waveform front end (sample-level convolutions), and a shared back end.
Written from the paper, Pons' reference code (jordipons/music-audio-tagging-at-scale-models,
`models.py`) and urop2019's Keras port (`orpheus_model.py`); the layer configuration below follows them
exactly, which gives, for n_filters=16, n_dense=500, 96 mels and 50 tags, 5,927,110 parameters for the
log-mel model and 5,380,774 for the waveform model (tested in tests/models/test_models.py).

Shapes omit the batch axis. Input "audio": float32 [n_frames, n_mels] log-mel (n_frames may be None;
at least 8 frames) or float32 [n_samples] waveform in [-1, 1] (n_samples may be None; at least 19,680
samples, 1.23 s at 16 kHz). Output "tags": float32 [n_tags] sigmoid probabilities.
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import ModelConfig
from orpheus.models import blocks

BACKEND_FILTERS = 512      # filters of the three back-end convolutions (fixed in the paper)
BACKEND_KERNEL = 7         # frames spanned by each back-end convolution
# (fraction of the mel axis spanned, width in frames, multiple of n_filters) of the six timbral branches
TIMBRAL_BRANCHES = ((0.9, 7, 1), (0.9, 3, 2), (0.9, 1, 4), (0.4, 7, 1), (0.4, 3, 2), (0.4, 1, 4))
# (length in frames, multiple of n_filters) of the four temporal branches
TEMPORAL_BRANCHES = ((165, 1), (128, 2), (64, 4), (32, 8))
# filters of the waveform front end: the stride-3 first layer, then six 3-sample layers with pooling
WAVEFORM_FILTERS = (64, 64, 64, 128, 128, 128, 256)
WAVEFORM_POOL = 3
# The freezable parts of each model (`orpheus.train.finetune`): part -> fnmatch patterns of its layer names.
LOG_MEL_PARTS = {"frontend": ("timbral*", "temporal*"), "backend": ("backend*",), "dense": ("head_dense", "embedding")}
WAVEFORM_PARTS = {"frontend": ("sample*",), "backend": ("backend*",), "dense": ("head_dense", "embedding")}


def log_mel_frontend(x: keras.KerasTensor, n_filters: int) -> keras.KerasTensor:
    """Timbral and temporal branches over a log-mel spectrogram.

    Args:
        x: float [n_frames, n_mels] log-mel spectrogram.
        n_filters: filters of the narrowest branches; the others use 2, 4 or 8 times as many.

    Returns:
        float [n_frames, 28 * n_filters]: the ten branches' feature maps, concatenated on the channels.
    """
    n_mels = x.shape[-1]
    image = blocks.add_channel_axis(x, name="front_expand")           # [t, mels, 1]
    branches = []
    for index, (fraction, width, multiple) in enumerate(TIMBRAL_BRANCHES, start=1):
        name = f"timbral{index}"
        # pad time only: 'same' along time, while the frequency axis is pooled away entirely below
        padded = layers.ZeroPadding2D(((width // 2, width // 2), (0, 0)), name=f"{name}_pad")(image)
        height = int(fraction * n_mels)
        feature = blocks.conv_relu_bn(padded, n_filters * multiple, (width, height), name=name,
                                      pool_size=(1, n_mels - height + 1))  # max over frequency
        branches.append(blocks.drop_axis(feature, name=f"{name}_squeeze"))
    averaged = layers.AveragePooling2D((1, n_mels), name="temporal_mean")(image)   # [t, 1, 1]
    averaged = blocks.drop_axis(averaged, name="temporal_squeeze")                  # [t, 1]
    for index, (length, multiple) in enumerate(TEMPORAL_BRANCHES, start=1):
        branches.append(blocks.conv_relu_bn(averaged, n_filters * multiple, length, padding="same",
                                            name=f"temporal{index}"))
    return layers.Concatenate(name="front_concat")(branches)


def waveform_frontend(x: keras.KerasTensor) -> keras.KerasTensor:
    """Sample-level front end (Lee et al. 2017) as used by Pons et al.

    Args:
        x: float [n_samples] waveform.

    Returns:
        float [n_frames, 256], n_frames = waveform_frames(n_samples) (about n_samples / 2187).
    """
    x = blocks.add_channel_axis(x, name="front_expand")                # [samples, 1]
    x = blocks.conv_relu_bn(x, WAVEFORM_FILTERS[0], 3, strides=3, name="sample0")
    for index, filters in enumerate(WAVEFORM_FILTERS[1:], start=1):
        x = blocks.conv_relu_bn(x, filters, 3, pool_size=WAVEFORM_POOL, name=f"sample{index}")
    return x


def waveform_frames(n_samples: int) -> int:
    """Frames out of the waveform front end for `n_samples` input samples (valid convs, floor pooling)."""
    length = n_samples // 3                       # kernel 3, stride 3, 'valid'
    for _ in WAVEFORM_FILTERS[1:]:
        length = max(length - 2, 0) // WAVEFORM_POOL
    return length


def backend(x: keras.KerasTensor, n_tags: int, *, n_dense: int, dropout: float) -> keras.KerasTensor:
    """Three 7-frame convolutions (the last two residual), max+mean pooling over time, dense head.

    Args:
        x: float [n_frames, channels] front-end features; n_frames >= 8.

    Returns:
        float32 [n_tags] sigmoid probabilities; the Dense(n_dense) output after batch norm is "embedding".
    """
    # the first convolution spans all front-end channels ('valid' in time: n_frames - 6 frames)
    x = blocks.conv_relu_bn(x, BACKEND_FILTERS, BACKEND_KERNEL, name="backend1")
    for index in (2, 3):
        name = f"backend{index}"
        residual = layers.Conv1D(BACKEND_FILTERS, BACKEND_KERNEL, padding="same", activation="relu",
                                 kernel_initializer=blocks.RELU_INITIALIZER, name=f"{name}_conv")(x)
        residual = blocks.scalar_batch_norm(residual, name=f"{name}_bn")
        x = layers.Add(name=f"{name}_add")([residual, x])
        if index == 2:
            x = layers.MaxPooling1D(2, name=f"{name}_pool")(x)
    x = blocks.max_mean_pool(x, name="backend_pool")                  # [2 * 512]
    return blocks.dense_bn_head(x, n_tags, n_dense=n_dense, dropout=dropout)


def build_pons_log_mel(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Pons et al. 2018 log-mel model.

    Args:
        config: `n_filters` (narrowest front-end branch), `n_dense`, `dropout`.
        input_shape: (n_frames, n_mels); n_frames may be None (any window of at least 8 frames), n_mels >= 3.
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_frames, n_mels] -> "tags" float32 [batch, n_tags].

    Raises:
        ConfigError: a shape the model cannot take.
    """
    n_frames, n_mels = blocks.check_input_shape(input_shape, kind="spectrogram", model="pons_log_mel")
    blocks.check_min_length(n_mels, 3, model="pons_log_mel", unit="mel bands")
    blocks.check_min_length(n_frames, BACKEND_KERNEL + 1, model="pons_log_mel", unit="frames")
    audio = blocks.audio_input((n_frames, n_mels))
    features = log_mel_frontend(audio, config.n_filters)
    tags = backend(features, n_tags, n_dense=config.n_dense, dropout=config.dropout)
    return keras.Model(audio, tags, name="pons_log_mel")


def build_pons_waveform(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Pons et al. 2018 waveform model (sample-level front end; its filter counts are fixed, so
    `config.n_filters` does not apply, as in the paper and urop2019).

    Args:
        config: `n_dense`, `dropout`.
        input_shape: (n_samples,); n_samples may be None (any window of at least 19,680 samples).
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_samples] -> "tags" float32 [batch, n_tags].

    Raises:
        ConfigError: a shape the model cannot take.
    """
    (n_samples,) = blocks.check_input_shape(input_shape, kind="waveform", model="pons_waveform")
    blocks.check_min_length(n_samples, min_waveform_samples(), model="pons_waveform", unit="samples")
    audio = blocks.audio_input((n_samples,))
    features = waveform_frontend(audio)
    tags = backend(features, n_tags, n_dense=config.n_dense, dropout=config.dropout)
    return keras.Model(audio, tags, name="pons_waveform")


def min_waveform_samples() -> int:
    """The fewest samples the waveform model takes: its front end must give the back end 8 frames."""
    n_frames = BACKEND_KERNEL + 1
    for _ in WAVEFORM_FILTERS[1:]:
        n_frames = n_frames * WAVEFORM_POOL + 2
    return n_frames * 3
