"""Fine-tuning: start training from a pretrained model or an earlier run directory instead of at random.

`orpheus/training.py ... --init-from MODEL_OR_RUN_DIR [--freeze PART ...]` (the config keys
`train.init_from`, `train.freeze`) goes through here:

1. `load_source`: the source run directory (a pretrained name of `orpheus.models.pretrained`, converted and
   cached on first use, or any run directory): its RunInfo and its weights by layer name.
2. `adapt_run_info`: the new run's feature settings must be the source's (format, preset, sample
   rate, mels, STFT, MFCCs), else a one-line error; the run takes the source's input normalisation
   (the musicnn checkpoints normalise their input themselves: "none").
3. `initialise`: every weighted layer of the new model but the output layer `tags` takes the
   source's weights of the same name (shapes must match: use the source's model settings); `tags`
   is rebuilt for the new tag list, and the columns of tags the source already had keep their weights.
4. Freezing: the named parts (per architecture, declared beside its builder; `body` = everything but `tags`, a linear
   probe on the embedding) are set non-trainable, batch norm statistics included.

The source is read once, before the distribution strategy's scope; `initialise` runs inside it.

5. `interpolate` (`orpheus wise-ft RUN_DIR OUT_DIR [--alpha 0.5]`): weight-space ensembling of a
   fine-tuned run with the model it started from (WiSE-FT, Wortsman et al. 2022, "Robust fine-tuning of
   zero-shot models"): every weight becomes (1 - alpha) x source + alpha x fine-tuned, batch-norm statistics
   included; a head column of a tag the source had is mixed with the source's column, a new tag's column
   stays as fine-tuned. alpha 1 is the fine-tuned run, alpha 0 the source (on the shared tags). One model,
   so tagging costs the same; it keeps more of what the source knew about music unlike the training set.
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

from orpheus.config import load_config
from orpheus.errors import ConfigError
from orpheus.files import atomic_dir, check_output, write_json_atomic
from orpheus.formats.rundir import (MODEL_FILE, RUN_DIRECTORY, RunInfo, load_model, read_run_info,
                                   write_run_info)
from orpheus.models.pretrained import resolve_model
from orpheus.models.registry import MODELS

log = logging.getLogger(__name__)

HEAD = "tags"
GENERIC_PARTS = {"body": ("*",)}   # every architecture: all but the output layer
@dataclass(frozen=True)
class Source:
    """A model to start from: where it is, how it reads audio, and its weights by layer name."""
    name: str
    run_dir: Path
    run_info: RunInfo
    weights: dict[str, list[np.ndarray]]


def parts_of(architecture: str) -> dict[str, tuple[str, ...]]:
    """The freezable parts of `architecture`: its own (declared in its family's module, see
    `orpheus.models.registry.ModelEntry.parts`) and `body`."""
    entry = MODELS.get(architecture)
    return {**(entry.parts if entry is not None else {}), **GENERIC_PARTS}


def parts_help() -> str:
    """One line per architecture listing its parts, for --help."""
    lines = [f"{name}: {', '.join(parts_of(name))}" for name, entry in MODELS.items() if entry.parts]
    return "; ".join(lines) + "; any other model: body"


def load_source(init_from: str) -> Source:
    """Read the source model's RunInfo and weights (numpy, by layer name); `init_from` is resolved by the one rule
    of `orpheus.models.pretrained.resolve_model` (a pretrained name, else a run directory)."""
    run_dir, name = resolve_model(init_from, "--init-from")
    model = load_model(run_dir)
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()]
               for layer in model.layers if layer.weights}
    return Source(name, run_dir, read_run_info(run_dir), weights)


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
    names = [layer.name for layer in body_layers(model)]
    return sorted({n for part in freeze for n in names if any(fnmatch.fnmatchcase(n, p) for p in known[part])})


def body_layers(model: keras.Model) -> list:
    """The weighted layers of `model` but the output layer."""
    return [layer for layer in model.layers if layer.weights and layer.name != HEAD]


def source_values(layer, source: Source, what: str, fix: str) -> list[np.ndarray]:
    """The source's weights of the layer named as `layer`, shaped as its; else a one-line `ConfigError`
    starting with `what` and ending with `fix`."""
    values = source.weights.get(layer.name)
    shapes = [tuple(w.shape) for w in layer.weights]
    if values is None or [v.shape for v in values] != shapes:
        found = "absent" if values is None else f"shaped {[list(v.shape) for v in values]}"
        raise ConfigError(f"{what}: layer {layer.name!r} is {found} there but shaped {[list(s) for s in shapes]} "
                          f"here; {fix}")
    return values


def shared_columns(tags: Sequence[str], source: Source, n_inputs: int) -> list[tuple[int, int]]:
    """(column in `tags`, column in the source's head) of each tag the source's output layer also has;
    none when the source has no output layer or its input width is not `n_inputs`."""
    old = source.weights.get(HEAD)
    if old is None or old[0].shape[0] != n_inputs:
        return []
    old_index = {tag: i for i, tag in enumerate(source.run_info.tags)}
    return [(i, old_index[tag]) for i, tag in enumerate(tags) if tag in old_index]


def initialise(model: keras.Model, source: Source, tags: Sequence[str], architecture: str,
               freeze: Sequence[str] = ()) -> dict[str, int]:
    """Load the source's weights into `model` by layer name, rebuild the head, freeze `freeze`.

    Call inside the strategy's scope, before the optimizer is built (it tracks trainable weights only).

    Args:
        model: the freshly built model of the new run (output layer `tags` with len(tags) units).
        source: from `load_source`.
        tags: the new run's tags in output order.
        architecture: model.name (a key of `orpheus.models.registry.MODELS`).
        freeze: parts to keep fixed.

    Returns:
        Counts: layers loaded, shared tags whose head columns were kept, layers frozen.
    """
    loaded = 0
    for layer in body_layers(model):
        layer.set_weights(source_values(layer, source, f"--init-from {source.name}",
                                        "use the source's model settings (its config.json) and model.name"))
        loaded += 1
    head = model.get_layer(HEAD)
    shared = shared_columns(tags, source, head.weights[0].shape[0])
    if shared:
        old = source.weights[HEAD]
        kernel, bias = (np.array(w) for w in head.get_weights())
        for new, previous in shared:
            kernel[:, new], bias[new] = old[0][:, previous], old[1][previous]
        head.set_weights([kernel, bias])
    frozen = frozen_layers(model, architecture, freeze)
    for name in frozen:
        model.get_layer(name).trainable = False
    log.info("initialised from %s: %d layers loaded, head rebuilt for %d tags (%d kept from the source), "
             "%d layers frozen (%s)", source.name, loaded, len(tags), len(shared), len(frozen),
             ", ".join(freeze) or "none")
    return {"loaded": loaded, "shared_tags": len(shared), "frozen": len(frozen)}


WISE_ALPHA = 0.5     # WiSE-FT's default mixing weight (the paper's recommendation without tuning)


def mixed_weights(model: keras.Model, tags: Sequence[str], source: Source, alpha: float) -> int:
    """Set every weighted layer of fine-tuned `model` to (1 - alpha) x `source` + alpha x its own weights;
    the head's columns of `tags` the source also has are mixed with the source's columns, the others kept.
    Returns how many head columns were mixed."""
    for layer in body_layers(model):
        theirs = source_values(layer, source, f"--source {source.name}",
                               "mix a run with the model it was fine-tuned from")
        layer.set_weights([(1.0 - alpha) * t + alpha * np.asarray(m)
                           for t, m in zip(theirs, layer.get_weights(), strict=True)])
    head, old = model.get_layer(HEAD), source.weights.get(HEAD)
    kernel, bias = (np.array(w) for w in head.get_weights())
    shared = shared_columns(tags, source, kernel.shape[0])
    for new, previous in shared:
        kernel[:, new] = (1.0 - alpha) * old[0][:, previous] + alpha * kernel[:, new]
        bias[new] = (1.0 - alpha) * old[1][previous] + alpha * bias[new]
    head.set_weights([kernel, bias])
    return len(shared)


def interpolate(run_dir: str | Path, out_dir: str | Path, *, alpha: float = WISE_ALPHA, source: str | None = None,
                overwrite: bool = False) -> Path:
    """Write `out_dir`, a run directory whose model mixes fine-tuned `run_dir` with its source (WiSE-FT).

    Args:
        run_dir: a run trained with --init-from (its config.json names the source).
        out_dir: the new run directory (run.json, config.json, model.keras), written atomically.
        alpha: weight of the fine-tuned model, in [0, 1].
        source: the model `run_dir` started from, when its config.json does not say.
        overwrite: replace an existing `out_dir` (only a run directory Orpheus wrote).

    Raises:
        ConfigError: alpha outside [0, 1], a run that was not fine-tuned, a source of another shape.
        MissingInputError: `run_dir` or the source is not a run directory. DataFormatError: its model cannot
        be loaded. OutputExistsError: `out_dir` exists (ForeignOutputError: it is not a run directory).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha {alpha}: must be between 0 (the source) and 1 (the fine-tuned run)")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    rule = dict(overwrite=overwrite, inputs=[(run_dir, "fine-tuned run directory")], flag="OUT_DIR")
    check_output(out_dir, RUN_DIRECTORY, **rule)   # before the work
    info = read_run_info(run_dir)
    config = load_config(run_dir / "config.json") if (run_dir / "config.json").is_file() else None
    source = source or (config.train.init_from if config else None)
    if not source:
        raise ConfigError(f"{run_dir}: was not fine-tuned (its config.json has no train.init_from); "
                          "name the model it started from with --source")
    origin = load_source(source)
    model = load_model(run_dir)
    mixed = mixed_weights(model, info.tags, origin, alpha)
    mixed_info = dataclasses.replace(info, source=f"WiSE-FT alpha {alpha:g}: {alpha:g} x {run_dir} + "
                                                  f"{1 - alpha:g} x {origin.name}; {info.source}")
    with atomic_dir(out_dir, RUN_DIRECTORY, **rule) as tmp:
        model.save(tmp / MODEL_FILE)
        write_run_info(tmp, mixed_info)
        if config is not None:
            write_json_atomic(tmp / "config.json", config.to_json())
    log.info("%s: %g x %s + %g x %s (%d head columns mixed, %d tags)", out_dir, alpha, run_dir, 1 - alpha,
             origin.name, mixed, len(info.tags))
    return out_dir
