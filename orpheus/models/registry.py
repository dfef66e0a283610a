"""The registry of the model zoo: each name's builder, accepted formats and freezable parts.

Contract (shared with training, pretrained conversion and tagging): a builder is
`build_x(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model` where
`input_shape` is (n_frames, n_bins) for log-mel/MFCC input (n_frames may be None where the architecture
allows) or (n_samples,) for waveform input; the model adds the channel axis itself. Its input layer is
named "audio", its output is float32 sigmoid probabilities [batch, n_tags] from a Dense layer named
"tags" (whose kernel columns are the tag vectors), and its penultimate representation is a layer named
"embedding". Every model also builds under a "mixed_float16" policy, with a float32 output.

`orpheus models` lists every model with its parameter count and accepted formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import keras

from orpheus.config import ModelConfig
from orpheus.errors import ConfigError
from orpheus.audio.settings import FORMATS, SPECTRAL_FORMATS
from orpheus.models.choi import build_crnn, build_fcn
from orpheus.models.dabral import build_multiscale
from orpheus.models.musicnn import MUSICNN_CONFIG, MUSICNN_PARTS, VGG_CONFIG, VGG_PARTS, build_musicnn, build_vgg
from orpheus.models.pons import LOG_MEL_PARTS, WAVEFORM_PARTS, build_pons_log_mel, build_pons_waveform

Builder = Callable[[ModelConfig, tuple, int], keras.Model]
SPECTROGRAM_FORMATS = SPECTRAL_FORMATS
WAVEFORM_FORMATS = tuple(f for f in FORMATS if f not in SPECTRAL_FORMATS)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        builder: `build_x(config, input_shape, n_tags) -> keras.Model`.
        formats: the `orpheus.formats.tfrecord.FORMATS` the model accepts as input.
        description: one line: the paper and what the architecture does.
        reference_config: the widths of the published model when they differ from `ModelConfig`'s
            defaults (musicnn's checkpoints); None when the defaults are the reference. Used by the
            listing; training always uses the run's own config.
        parts: the parts fine-tuning can freeze by name: part -> fnmatch patterns of layer names, declared
            in the family's module beside its builder (`body`, all but the output, is every model's).
    """
    builder: Builder
    formats: tuple[str, ...]
    description: str
    reference_config: ModelConfig | None = None
    parts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


MODELS: dict[str, ModelEntry] = {
    "pons_log_mel": ModelEntry(
        build_pons_log_mel, SPECTROGRAM_FORMATS,
        "Pons et al. 2018: timbral + temporal log-mel front end, residual 512-filter back end", parts=LOG_MEL_PARTS),
    "pons_waveform": ModelEntry(
        build_pons_waveform, WAVEFORM_FORMATS,
        "Pons et al. 2018: sample-level waveform front end, residual 512-filter back end", parts=WAVEFORM_PARTS),
    "musicnn": ModelEntry(
        build_musicnn, SPECTROGRAM_FORMATS,
        "Pons & Serra 2019 musicnn, as the musicnn 0.1.0 checkpoints define it (loads them)",
        MUSICNN_CONFIG, MUSICNN_PARTS),
    "vgg": ModelEntry(
        build_vgg, SPECTROGRAM_FORMATS,
        "musicnn 0.1.0's VGG-like baseline: five 3x3 conv layers, fixed window (loads its checkpoints)",
        VGG_CONFIG, VGG_PARTS),
    "fcn": ModelEntry(
        build_fcn, SPECTROGRAM_FORMATS,
        "Choi et al. 2016 FCN: five 3x3 conv blocks pooled to one vector (29 s / 1366 frames -> 1x1)"),
    "crnn": ModelEntry(
        build_crnn, SPECTROGRAM_FORMATS,
        "Choi et al. 2017 CRNN: four 3x3 conv blocks, then two GRU layers over time"),
    "multiscale": ModelEntry(
        build_multiscale, SPECTROGRAM_FORMATS,
        "Dabral et al. 2018: conv stacks over three subsampled spectrograms, concatenated depthwise"),
}


def model_entry(name: str) -> ModelEntry:
    """The registry entry of model `name`; `ConfigError` listing the known names when there is none."""
    entry = MODELS.get(name)
    if entry is None:
        raise ConfigError(f"unknown model {name!r} (model.name); known models: {', '.join(sorted(MODELS))}")
    return entry


def build_model(config: ModelConfig, input_shape: tuple[int | None, ...], n_tags: int) -> keras.Model:
    """Build the registered model `config.name` for inputs of `input_shape` and `n_tags` outputs.

    Args:
        config: model section of the run configuration (`name`, `n_filters`, `n_dense`, `dropout`).
        input_shape: (n_frames, n_bins) for log-mel/MFCC (n_frames may be None) or (n_samples,) for waveform.
        n_tags: number of output tags (>= 1).

    Returns:
        An uncompiled Keras model: "audio" float32 [batch, *input_shape] -> "tags" float32 [batch, n_tags].

    Raises:
        ConfigError: an unknown model name (the message lists the known ones) or an input shape or tag
            count the model cannot take.
    """
    entry = model_entry(config.name)
    if not isinstance(n_tags, int) or n_tags < 1:
        raise ConfigError(f"model {config.name!r} needs n_tags >= 1, got {n_tags!r}")
    return entry.builder(config, tuple(input_shape), n_tags)


def check_format(name: str, fmt: str) -> None:
    """Raise `ConfigError` unless registered model `name` accepts input features of format `fmt`.

    Args:
        name: a key of `MODELS` (model.name).
        fmt: one of `orpheus.formats.tfrecord.FORMATS`, e.g. the `format` of a shard folder's dataset.json.
    """
    entry = model_entry(name)
    if fmt not in entry.formats:
        fitting = sorted(key for key, other in MODELS.items() if fmt in other.formats)
        raise ConfigError(f"model {name!r} takes {' or '.join(entry.formats)} input, not {fmt}; "
                          f"models for {fmt}: {', '.join(fitting) or 'none'}")


def count_parameters(model: keras.Model) -> int:
    """All weights of `model`, trainable or not (batch-norm moving statistics included)."""
    return int(sum(int(keras.ops.size(weight)) for weight in model.weights))
