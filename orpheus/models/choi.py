"""Choi et al.'s fully convolutional network (FCN, 2016) and convolutional recurrent network (CRNN, 2017).

Sources: K. Choi, G. Fazekas, M. Sandler, "Automatic tagging using deep convolutional neural networks"
(ISMIR 2016) and "Convolutional recurrent neural networks for music classification" (ICASSP 2017), with the
layer configuration of Choi's released Keras models (keunwoochoi/music-auto_tagging-keras,
`music_tagger_cnn.py` and `music_tagger_crnn.py`): 96 mels x 1366 frames (29.1 s at 12 kHz, hop 256),
3x3 'same' convolutions, batch norm, ELU and max-pooling.

Shapes omit the batch axis; the layout is [n_frames, n_bins] (time first), so the repository's
(frequency, time) pool sizes appear transposed here. Deviations, all so that any window length and
any number of bins works:
- The input batch norm normalises each mel band (the repository's `bn_0_freq` normalised along the
  time axis, which ties the model to 1366 frames).
- Frequency pooling adapts to `n_bins`: a pool that would leave no band is skipped; for 96 mels the
  pools are exactly the repository's. Time pooling is fixed, which sets the minimum window.
- FCN: the last pooling is a global max over time and frequency. For a 96 x 1366 input it is the
  repository's final 4 x 4 pool exactly (the map is 4 x 4 there); for other lengths it still collapses
  the map to one vector.
- CRNN: the band axis left after the convolutions is max-pooled away (it is already 1 for 96 mels), and
  the repository's zero-padding of 1366 to 1440 frames is left out (the GRUs read any number of frames).
- Widths scale with `config.n_filters`; the default 16 gives the repository's widths (FCN 32/128/128/192/256,
  CRNN 64/128/128/128 and GRU 32). The paper's FCN-4 used 128/384/768/2048 filters over four layers; its
  MSD experiments scaled FCN-5 widths to a parameter budget. Neither model has a hidden dense layer, so
  `config.n_dense` does not apply; `config.dropout` is the dropout before the "tags" layer (the CRNN
  repository used 0.3 there, the FCN none).
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import ModelConfig
from orpheus.models import blocks

# (time pool, frequency pool, width as a multiple of n_filters) of each convolution block
FCN_BLOCKS = ((4, 2, 2), (4, 2, 8), (4, 2, 8), (5, 3, 12), (None, None, 16))   # last: global max pool
CRNN_BLOCKS = ((2, 2, 4), (3, 3, 8), (4, 4, 8), (4, 4, 8))
CRNN_BLOCK_DROPOUT = 0.1      # dropout after each CRNN convolution block, as in Choi's repository
CRNN_GRU_MULTIPLE = 2         # GRU units = 2 * n_filters (32 at the default 16)


def adapted_frequency_pools(n_bins: int, pools: tuple[int, ...]) -> tuple[int, ...]:
    """The frequency pools to use for `n_bins` bands: each pool of `pools` unless it would leave no band.

    >>> adapted_frequency_pools(96, (2, 2, 2, 3))
    (2, 2, 2, 3)
    >>> adapted_frequency_pools(20, (2, 2, 2, 3))
    (2, 2, 2, 1)
    """
    adapted, remaining = [], n_bins
    for pool in pools:
        used = pool if remaining >= pool else 1
        adapted.append(used)
        remaining //= used
    return tuple(adapted)


def min_frames(time_pools: tuple[int, ...]) -> int:
    """The fewest frames that survive the time pools with at least one frame left."""
    product = 1
    for pool in time_pools:
        product *= pool
    return product


def _input_stage(input_shape: tuple[int | None, ...], *, model: str, time_pools: tuple[int, ...],
                 ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Checked "audio" input [t, bins] and its per-band normalised image [t, bins, 1]."""
    n_frames, n_bins = blocks.check_input_shape(input_shape, kind="spectrogram", model=model)
    blocks.check_min_length(n_frames, min_frames(time_pools), model=model, unit="frames")
    audio = blocks.audio_input((n_frames, n_bins))
    x = layers.BatchNormalization(name="input_bn")(audio)               # one mean/variance per band
    return audio, blocks.add_channel_axis(x, name="input_expand")


def build_fcn(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Choi et al. 2016 FCN: five 3x3 conv blocks, pooled to a single vector, then the "tags" layer.

    Args:
        config: `n_filters` (width multiple; 16 gives 32/128/128/192/256), `dropout` (before "tags").
        input_shape: (n_frames, n_bins); n_frames may be None (any window of at least 320 frames).
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_frames, n_bins] -> "tags" float32 [batch, n_tags]; the
        "embedding" is the globally max-pooled last block, [16 * n_filters].
    """
    time_pools = tuple(pool for pool, _, _ in FCN_BLOCKS if pool is not None)
    audio, x = _input_stage(input_shape, model="fcn", time_pools=time_pools)
    frequency_pools = adapted_frequency_pools(audio.shape[2], tuple(p for _, p, _ in FCN_BLOCKS if p))
    for index, (time_pool, _, multiple) in enumerate(FCN_BLOCKS, start=1):
        pool = (time_pool, frequency_pools[index - 1]) if time_pool is not None else None
        x = blocks.conv_bn_act(x, config.n_filters * multiple, (3, 3), pool_size=pool, name=f"conv{index}")
    x = layers.GlobalMaxPooling2D(name="global_max")(x)
    tags = blocks.dropout_head(x, n_tags, dropout=config.dropout)
    return keras.Model(audio, tags, name="fcn")


def build_crnn(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Choi et al. 2017 CRNN: four 3x3 conv blocks, then two GRU layers summarise the frames.

    Args:
        config: `n_filters` (16 gives conv widths 64/128/128/128 and 32 GRU units), `dropout` (before "tags").
        input_shape: (n_frames, n_bins); n_frames may be None (any window of at least 96 frames).
        n_tags: output size.

    Returns:
        Keras model: "audio" float32 [batch, n_frames, n_bins] -> "tags" float32 [batch, n_tags]; the
        "embedding" is the last state of the second GRU, [2 * n_filters].
    """
    time_pools = tuple(pool for pool, _, _ in CRNN_BLOCKS)
    audio, x = _input_stage(input_shape, model="crnn", time_pools=time_pools)
    frequency_pools = adapted_frequency_pools(audio.shape[2], tuple(p for _, p, _ in CRNN_BLOCKS))
    for index, ((time_pool, _, multiple), frequency_pool) in enumerate(zip(CRNN_BLOCKS, frequency_pools), 1):
        x = blocks.conv_bn_act(x, config.n_filters * multiple, (3, 3), pool_size=(time_pool, frequency_pool),
                               dropout=CRNN_BLOCK_DROPOUT, name=f"conv{index}")
    x = layers.MaxPooling2D((1, x.shape[2]), name="band_max")(x)        # [t', 1, c]
    x = blocks.drop_axis(x, name="band_squeeze")                        # [t', c]
    units = CRNN_GRU_MULTIPLE * config.n_filters
    x = layers.GRU(units, return_sequences=True, name="gru1")(x)
    x = layers.GRU(units, name="gru2")(x)
    tags = blocks.dropout_head(x, n_tags, dropout=config.dropout)
    return keras.Model(audio, tags, name="crnn")
