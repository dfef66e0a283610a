"""The multi-scale CNN of Dabral et al. 2018 ("A multi-scale convolutional neural network architecture for
music auto-tagging", Soft Computing for Problem Solving, AISC 817, Springer).

The paper runs convolution streams over several subsampled versions of the spectrogram and concatenates
them to predict the tags. It does not publish every width and pool, so where it is silent the choices
below are ours (documented, not the authors'):
- Three scales along time: the full spectrogram and its 2x and 4x average-pooled versions.
- Each stream: two conv blocks (3x3 'same' convolution, batch norm, ReLU, max-pooling) of 2 and 4 times
  `n_filters` filters. The streams' time pools are chosen so all three reach 1/8 of the input frame rate
  (full: 2 then 4; /2: 2 then 2; /4: 2 then 1) and all pool frequency by 2 twice, so their maps line up
  for any window length (floor(floor(t / a) / b) = floor(t / ab)).
- The streams are concatenated depthwise (on channels), then two further conv blocks of 8 and 16 times
  `n_filters` filters (the first pooling 2x2), a global max+mean pooling over time and frequency, and
  Dense(`n_dense`, ReLU) = "embedding", dropout, and the sigmoid "tags" layer.

Shapes omit the batch axis. Input "audio": float32 [n_frames, n_bins] (n_frames may be None; at least 16
frames and 8 bins). Output "tags": float32 [n_tags].
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import ModelConfig
from orpheus.models import blocks

# (time subsampling of the input, time pools of the stream's two blocks): every stream ends at 1/8
SCALES = ((1, (2, 4)), (2, (2, 2)), (4, (2, 1)))
STREAM_MULTIPLES = (2, 4)          # widths of each stream's blocks, as multiples of n_filters
STREAM_FREQUENCY_POOL = 2
MERGED_MULTIPLES = (8, 16)         # widths of the blocks after the concatenation
MIN_FRAMES = 16                    # 8x in the streams, then 2x in the first merged block
MIN_BINS = 8                       # 4x in the streams, then 2x in the first merged block


def stream(image: keras.KerasTensor, n_filters: int, subsampling: int, time_pools: tuple[int, int], *,
           name: str) -> keras.KerasTensor:
    """One scale: [t, f, 1] -> [t // 8, f // 4, 4 * n_filters]."""
    x = image
    if subsampling > 1:
        x = layers.AveragePooling2D((subsampling, 1), name=f"{name}_subsample")(x)
    for index, (multiple, time_pool) in enumerate(zip(STREAM_MULTIPLES, time_pools), start=1):
        x = blocks.conv_bn_act(x, n_filters * multiple, (3, 3), activation="relu",
                               pool_size=(time_pool, STREAM_FREQUENCY_POOL), name=f"{name}_block{index}")
    return x


def build_multiscale(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Dabral et al. 2018 multi-scale CNN.

    Args:
        config: `n_filters` (width multiple), `n_dense` (embedding size), `dropout` (before "tags").
        input_shape: (n_frames, n_bins); n_frames may be None (any window of at least 16 frames), n_bins >= 8.
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_frames, n_bins] -> "tags" float32 [batch, n_tags].
    """
    n_frames, n_bins = blocks.check_input_shape(input_shape, kind="spectrogram", model="multiscale")
    blocks.check_min_length(n_frames, MIN_FRAMES, model="multiscale", unit="frames")
    blocks.check_min_length(n_bins, MIN_BINS, model="multiscale", unit="bins")
    audio = blocks.audio_input((n_frames, n_bins))
    image = blocks.add_channel_axis(audio, name="input_expand")          # [t, f, 1]
    streams = [stream(image, config.n_filters, subsampling, time_pools, name=f"scale{subsampling}")
               for subsampling, time_pools in SCALES]
    x = layers.Concatenate(axis=-1, name="scales_concat")(streams)        # [t // 8, f // 4, 12 * n_filters]
    for index, multiple in enumerate(MERGED_MULTIPLES, start=1):
        pool = (2, 2) if index == 1 else None
        x = blocks.conv_bn_act(x, config.n_filters * multiple, (3, 3), activation="relu", pool_size=pool,
                               name=f"merged_block{index}")
    maximum = layers.GlobalMaxPooling2D(name="global_max")(x)
    mean = layers.GlobalAveragePooling2D(name="global_mean")(x)
    x = layers.Concatenate(name="global_pool")([maximum, mean])          # [32 * n_filters]
    x = layers.Dense(config.n_dense, activation="relu", name=blocks.EMBEDDING_NAME)(x)
    x = layers.Dropout(config.dropout, name="embedding_dropout")(x)
    tags = blocks.tag_output(x, n_tags)
    return keras.Model(audio, tags, name="multiscale")
