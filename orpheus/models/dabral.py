"""The multi-scale CNN of Dabral et al. 2018 ("A multi-scale convolutional neural network architecture for
music auto-tagging", T. S. Dabral, A. S. Deshmukh, A. Malapati; Soft Computing for Problem Solving,
AISC 817, Springer).

Layer configuration from the paper and the authors' PyTorch code (amalad/Multi-Scale-Music-Tagger,
`mscnn.py`; 128 mels x 628 frames, 29 s at 11,025 Hz): three versions of the log-mel spectrogram
(the full one; an average-pooled one, /4 in time and /2 in frequency; a max-pooled copy of that, /16 and
/4 overall) each go through their own stack of convolutions (3, 2 and 1 layers with ReLU and max-pooling)
chosen so that all three end at 1/32 of the frame rate and 1/8 of the bands. The three maps are
concatenated depthwise (on channels), followed by two more 3x3 convolutions and a 2x2 max-pooling, then
batch norm, dropout, Dense(500, ReLU) and the output layer.

Shapes omit the batch axis; the layout is [n_frames, n_bins] (time first), so the authors' (frequency,
time) kernels and pools appear transposed here. Deviations from the authors' code:
- The authors flatten the last map (8 x 9 x 70 = 5,040 values), which ties the model to 628 frames. Here
  the time axis is pooled globally instead (max and mean over time, for each band and channel), so any
  window of at least 64 frames works; the band axis is kept, as the flatten kept it.
- Widths scale with `config.n_filters`: 16 gives the authors' widths (50/100/70, 100/70, 70, then 70, 70);
  `config.n_dense` is the Dense layer (500 in the paper), which is the "embedding"; `config.dropout` the
  dropout before it (0.6 in the authors' code).
- The sigmoid is part of the "tags" layer (the authors apply it in their loss).

Input "audio": float32 [n_frames, n_bins], n_frames may be None (at least 64 frames), n_bins >= 16.
Output "tags": float32 [n_tags].
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import ModelConfig
from orpheus.models import blocks

REFERENCE_FILTERS = 16     # the n_filters at which the widths below are the authors'
# per scale: (filters, (time, frequency) kernel, (time, frequency) max-pool) of each convolution
SCALE_STACKS = (
    ((50, (7, 3), (4, 2)), (100, (5, 3), (4, 2)), (70, (3, 3), (2, 2))),    # full resolution
    ((100, (5, 3), (4, 2)), (70, (3, 3), (2, 2))),                          # /4 time, /2 frequency
    ((70, (3, 3), (2, 2)),),                                                # /16 time, /4 frequency
)
SUBSAMPLING = (4, 2)       # (time, frequency) pool between consecutive scales
MERGED_FILTERS = (70, 70)  # the two 3x3 convolutions after the concatenation; the second is max-pooled 2x2
MIN_FRAMES = 64            # 32 in the scale stacks, 2 after the merge
MIN_BINS = 16              # 8 in the scale stacks, 2 after the merge


def scaled(filters: int, n_filters: int) -> int:
    """The authors' width `filters` scaled by n_filters / 16 (at least 1)."""
    return max(1, round(filters * n_filters / REFERENCE_FILTERS))


def scale_stack(x: keras.KerasTensor, stack: tuple, n_filters: int, *, name: str) -> keras.KerasTensor:
    """One scale's convolutions: [t, f, c] -> [t / 32 overall, f / 8 overall, channels]."""
    for index, (filters, kernel, pool) in enumerate(stack, start=1):
        x = blocks.conv_relu_bn(x, scaled(filters, n_filters), kernel, padding="same", pool_size=pool,
                                batch_norm=False, name=f"{name}_conv{index}")
    return x


def build_multiscale(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Dabral et al. 2018 multi-scale CNN.

    Args:
        config: `n_filters` (16: the authors' widths), `n_dense` (the "embedding" Dense, 500 in the paper),
            `dropout` (before it).
        input_shape: (n_frames, n_bins); n_frames may be None (any window of at least 64 frames), n_bins >= 16.
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_frames, n_bins] -> "tags" float32 [batch, n_tags].
    """
    n_frames, n_bins = blocks.check_input_shape(input_shape, kind="spectrogram", model="multiscale")
    blocks.check_min_length(n_frames, MIN_FRAMES, model="multiscale", unit="frames")
    blocks.check_min_length(n_bins, MIN_BINS, model="multiscale", unit="bins")
    audio = blocks.audio_input((n_frames, n_bins))
    full = blocks.add_channel_axis(audio, name="input_expand")           # [t, f, 1]
    half = layers.AveragePooling2D(SUBSAMPLING, name="subsample1")(full)  # [t / 4, f / 2, 1]
    quarter = layers.MaxPooling2D(SUBSAMPLING, name="subsample2")(half)   # [t / 16, f / 4, 1]
    streams = [scale_stack(image, stack, config.n_filters, name=f"scale{index}")
               for index, (image, stack) in enumerate(zip((full, half, quarter), SCALE_STACKS), start=1)]
    x = layers.Concatenate(axis=-1, name="scales_concat")(streams)         # [t / 32, f / 8, 3 * 70]
    for index, filters in enumerate(MERGED_FILTERS, start=1):
        pool = (2, 2) if index == len(MERGED_FILTERS) else None
        x = blocks.conv_relu_bn(x, scaled(filters, config.n_filters), (3, 3), padding="same", pool_size=pool,
                                batch_norm=False, name=f"merged_conv{index}")
    n_bands, n_channels = x.shape[2], x.shape[3]
    x = layers.Reshape((-1, n_bands * n_channels), name="bands_flatten")(x)  # [t / 64, f / 16 * 70]
    x = blocks.max_mean_pool(x, name="time_pool")                          # [2 * f / 16 * 70]
    x = layers.BatchNormalization(name="time_pool_bn")(x)
    x = layers.Dropout(config.dropout, name="time_pool_dropout")(x)
    x = layers.Dense(config.n_dense, activation="relu", name=blocks.EMBEDDING_NAME)(x)
    tags = blocks.tag_output(x, n_tags)
    return keras.Model(audio, tags, name="multiscale")
