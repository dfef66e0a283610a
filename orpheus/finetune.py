"""Fine-tuning: start training from a pretrained model or an earlier run directory instead of at random.

`orpheus/training.py ... --init-from MODEL_OR_RUN_DIR [--freeze PART ...]` (the config keys
`train.init_from`, `train.freeze`) goes through here:

1. `load_source`: the source run directory (a pretrained name of `orpheus.pretrained`, converted and
   cached on first use, or any run directory): its RunInfo and its weights by layer name.
2. `adapt_run_info`: the new run's feature settings must be the source's (format, preset, sample
   rate, mels, STFT, MFCCs), else a one-line error; the run takes the source's input normalisation
   (the musicnn checkpoints normalise their input themselves: "none").
3. `initialise`: every weighted layer of the new model but the output layer `tags` takes the
   source's weights of the same name (shapes must match: use the source's model settings); `tags`
   is rebuilt for the new tag list, and the columns of tags the source already had keep their weights.
4. Freezing: the named parts (`PARTS`, per architecture; `body` = everything but `tags`, a linear
   probe on the embedding) are set non-trainable, batch norm statistics included.

The source is read once, before the distribution strategy's scope; `initialise` runs inside it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from orpheus.errors import ConfigError, MissingInputError
from orpheus.rundir import MODEL_FILE, RUN_INFO, RunInfo, read_run_info

log = logging.getLogger(__name__)

HEAD = "tags"
# architecture -> part -> fnmatch patterns of layer names (see orpheus/models/*.py).
PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "musicnn": {"frontend": ("input_bn", "timbral_*", "temporal_*"), "midend": ("midend*",),
                "backend": ("pool_bn", "dense", "embedding")},
    "vgg": {"input_bn": ("input_bn",), **{f"conv{i}": (f"conv{i}_*",) for i in range(1, 6)}},
    "pons_log_mel": {"frontend": ("timbral*", "temporal*"), "backend": ("backend*",),
                     "dense": ("head_dense", "embedding")},
    "pons_waveform": {"frontend": ("sample*",), "backend": ("backend*",), "dense": ("head_dense", "embedding")},
}
GENERIC_PARTS = {"body": ("*",)}   # every architecture: all but the output layer
@dataclass(frozen=True)
class Source:
    """A model to start from: where it is, how it reads audio, and its weights by layer name."""
    name: str
    run_dir: Path
    run_info: RunInfo
    weights: dict[str, list[np.ndarray]]


def parts_of(architecture: str) -> dict[str, tuple[str, ...]]:
    """The freezable parts of `architecture`: its own (PARTS) and `body`."""
    return {**PARTS.get(architecture, {}), **GENERIC_PARTS}


def parts_help() -> str:
    """One line per architecture listing its parts, for --help."""
    lines = [f"{name}: {', '.join(parts_of(name))}" for name in PARTS]
    return "; ".join(lines) + "; any other model: body"


def resolve_source(init_from: str) -> tuple[str, Path]:
    """(display name, run directory) of `init_from`: a pretrained model name or a run directory."""
    from orpheus import pretrained
    if init_from in pretrained.PRETRAINED:
        return init_from, pretrained.pretrained_run_dir(init_from)
    run_dir = Path(init_from)
    if not (run_dir / RUN_INFO).is_file() or not (run_dir / MODEL_FILE).is_file():
        raise MissingInputError(f"--init-from {init_from}: neither a pretrained model "
                                f"({', '.join(pretrained.PRETRAINED)}) nor a run directory with {RUN_INFO} "
                                f"and {MODEL_FILE}")
    return str(run_dir), run_dir


def load_source(init_from: str) -> Source:
    """Read the source model's RunInfo and weights (numpy, by layer name)."""
    name, run_dir = resolve_source(init_from)
    info = read_run_info(run_dir)
    try:
        model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    except (OSError, ValueError) as err:
        raise MissingInputError(f"{run_dir / MODEL_FILE}: cannot be loaded ({err}); retrain or reconvert it") from err
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()]
               for layer in model.layers if layer.weights}
    return Source(name, run_dir, info, weights)


def adapt_run_info(run_info: RunInfo, source: Source, model_name: str) -> RunInfo:
    """The new run's RunInfo with the source's normalisation, after checking features and architecture."""
    mine, theirs = source.run_info, run_info
    ours, source_features = theirs.features.to_json(), mine.features.to_json()
    differ = [f"{key} {value} (source: {source_features[key]})" for key, value in ours.items()
              if value != source_features[key]]
    if differ:
        raise ConfigError(f"--init-from {source.name}: the shards' features differ from the source model's: "
                          f"{', '.join(differ)}; rerun tfrecords/preprocessing.py with the source's settings")
    if mine.model_name and mine.model_name != model_name:
        raise ConfigError(f"--init-from {source.name}: is a {mine.model_name} model but model.name is "
                          f"{model_name!r}; set model.name to {mine.model_name!r}")
    return dataclasses.replace(run_info, normalise=mine.normalise, feature_mean=mine.feature_mean,
                               feature_std=mine.feature_std, source=f"fine-tuned from {source.name}: {run_info.source}")


def frozen_layers(model: keras.Model, architecture: str, freeze: Sequence[str]) -> list[str]:
    """Names of the weighted layers of `model` in the parts `freeze`; a one-line error on an unknown part."""
    known = parts_of(architecture)
    unknown = [part for part in freeze if part not in known]
    if unknown:
        raise ConfigError(f"--freeze {unknown[0]}: not a part of {architecture}; its parts are "
                          f"{', '.join(known)}")
    names = [layer.name for layer in model.layers if layer.weights and layer.name != HEAD]
    return sorted({n for part in freeze for n in names if any(fnmatch.fnmatchcase(n, p) for p in known[part])})


def initialise(model: keras.Model, source: Source, tags: Sequence[str], architecture: str,
               freeze: Sequence[str] = ()) -> dict[str, int]:
    """Load the source's weights into `model` by layer name, rebuild the head, freeze `freeze`.

    Call inside the strategy's scope, before the optimizer is built (it tracks trainable weights only).

    Args:
        model: the freshly built model of the new run (output layer `tags` with len(tags) units).
        source: from `load_source`.
        tags: the new run's tags in output order.
        architecture: model.name (the key of `PARTS`).
        freeze: parts to keep fixed.

    Returns:
        Counts: layers loaded, shared tags whose head columns were kept, layers frozen.
    """
    loaded = 0
    for layer in model.layers:
        if not layer.weights or layer.name == HEAD:
            continue
        values = source.weights.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if values is None or [v.shape for v in values] != shapes:
            found = "absent" if values is None else f"shaped {[list(v.shape) for v in values]}"
            raise ConfigError(f"--init-from {source.name}: layer {layer.name!r} is {found} there but shaped "
                              f"{[list(s) for s in shapes]} here; use the source's model settings "
                              f"(its config.json) and model.name")
        layer.set_weights(values)
        loaded += 1
    head, old = model.get_layer(HEAD), source.weights.get(HEAD)
    old_index = {tag: i for i, tag in enumerate(source.run_info.tags)}
    shared = [(i, old_index[tag]) for i, tag in enumerate(tags) if tag in old_index]
    if old is not None and shared and old[0].shape[0] == head.weights[0].shape[0]:
        kernel, bias = (np.array(w) for w in head.get_weights())
        for new, previous in shared:
            kernel[:, new], bias[new] = old[0][:, previous], old[1][previous]
        head.set_weights([kernel, bias])
    else:
        shared = []
    frozen = frozen_layers(model, architecture, freeze)
    for name in frozen:
        model.get_layer(name).trainable = False
    log.info("initialised from %s: %d layers loaded, head rebuilt for %d tags (%d kept from the source), "
             "%d layers frozen (%s)", source.name, loaded, len(tags), len(shared), len(frozen),
             ", ".join(freeze) or "none")
    return {"loaded": loaded, "shared_tags": len(shared), "frozen": len(frozen)}
