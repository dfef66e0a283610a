"""Run configuration: frozen dataclasses loaded from JSON, validated, saved with every run.

A config file has up to three sections, each optional, each a dataclass below:

    {"data": {...DataConfig...}, "model": {...ModelConfig...}, "train": {...TrainConfig...}}

Unknown keys and wrong types are `ConfigError`s naming the key path (e.g. `train.batch_size`).
The resolved config (defaults filled in) is written into the run directory when training starts.

Renamed keys: `train.mixed_precision` (the earlier name; true meant float16 compute on a GPU) is read as
`train.precision` "float16" (true) or "float32" (false), with a warning naming the new key. Given beside
`train.precision`, it must agree with it (true: "float16"; false: anything else).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orpheus.errors import ConfigError
from orpheus.audio.settings import NORMALISATIONS

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "step", "cyclic", "one_cycle")
# the float type training computes in; "auto": float16 on a GPU, bfloat16 on a CPU with bf16 instructions
# (AVX512-BF16 or AMX), else float32 (`orpheus.train.precision`)
PRECISIONS = ("float32", "bfloat16", "float16", "auto")
# Trained models normalise per example or with the training split's statistics; "none" is for pretrained
# models, which normalise inside.
TRAINING_NORMALISATIONS = tuple(n for n in NORMALISATIONS if n != "none")


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline settings (see `orpheus.train.input_pipeline.make_dataset`)."""
    window_s: float = 15.0              # crop length in seconds
    shuffle_buffer: int = 1000          # examples in the shuffle buffer (training only)
    top_n_tags: int | None = 50         # keep the N most popular training-split tags; None keeps all
    with_tags: tuple[str, ...] = ()     # always keep these tags (in addition to the top N)
    without_tags: tuple[str, ...] = ()  # never keep these tags
    merge_tags: tuple[tuple[str, ...], ...] = ()  # each group becomes one tag named by its first member
    exclude_tids: tuple[str, ...] = ()  # track ids left out of every split
    normalise: str = "per_example"      # "per_example" standardisation or fixed "dataset" statistics

    def __post_init__(self) -> None:
        _check_finite(self, "data")
        _check(self.window_s > 0, "data.window_s", "must be positive")
        _check(self.shuffle_buffer >= 1, "data.shuffle_buffer", "must be at least 1")
        _check(self.top_n_tags is None or self.top_n_tags >= 1, "data.top_n_tags", "must be at least 1 or null")
        _check(self.normalise in TRAINING_NORMALISATIONS, "data.normalise", f"must be one of {TRAINING_NORMALISATIONS}")


@dataclass(frozen=True)
class ModelConfig:
    """Which model of the registry (`orpheus models` lists them) and its width."""
    name: str = "pons_log_mel"
    n_filters: int = 16                 # base number of filters of the front end
    n_dense: int = 500                  # units of the penultimate dense layer
    dropout: float = 0.5

    def __post_init__(self) -> None:
        _check_finite(self, "model")
        _check(self.n_filters >= 1, "model.n_filters", "must be at least 1")
        _check(self.n_dense >= 1, "model.n_dense", "must be at least 1")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both loops."""
    batch_size: int = 64                # global batch; each replica gets batch_size // replicas
    loop: str = "fit"                   # "fit" (model.fit) | "custom" (GradientTape loop)
    learning_rate: float = 1e-3         # base (or peak) learning rate of the Adam optimizer
    schedule: str = "constant"          # "constant" | "step" | "cyclic" | "one_cycle"
    min_learning_rate: float = 1e-5     # lower rate of the cyclic and one-cycle schedules
    decay_rate: float = 0.5             # step decay factor
    decay_epochs: float = 10.0          # step decay period, or half-cycle length for "cyclic"
    early_stopping_patience: int = 10   # epochs without validation PR-AUC gain before stopping; 0 = off
    reduce_lr_patience: int = 0         # epochs before ReduceLROnPlateau halves the rate; 0 = off
    seed: int = 0
    precision: str = "float32"          # "float32" | "bfloat16" | "float16" | "auto" (see PRECISIONS)
    xla: bool = False                   # jit_compile the training step (GPU)
    batch_norm_momentum: float | None = None  # override the model's batch-norm momentum (short runs); None keeps it
    init_from: str | None = None        # fine-tune: a pretrained model name or a run directory (orpheus.train.finetune)
    freeze: tuple[str, ...] = ()        # fine-tune: parts kept fixed, e.g. ["frontend"] or ["body"]

    def __post_init__(self) -> None:
        _check_finite(self, "train")
        _check(self.batch_size >= 1, "train.batch_size", "must be at least 1")
        _check(self.loop in ("fit", "custom"), "train.loop", 'must be "fit" or "custom"')
        _check(self.precision in PRECISIONS, "train.precision", f"must be one of {PRECISIONS}")
        _check(self.learning_rate > 0, "train.learning_rate", "must be positive")
        _check(self.schedule in SCHEDULES, "train.schedule", f"must be one of {SCHEDULES}")
        _check(0 < self.min_learning_rate <= self.learning_rate, "train.min_learning_rate",
               "must be positive and at most train.learning_rate")
        _check(self.batch_norm_momentum is None or 0.0 <= self.batch_norm_momentum < 1.0,
               "train.batch_norm_momentum", "must be in [0, 1) or null")
        _check(self.decay_epochs > 0, "train.decay_epochs", "must be positive")
        _check(self.decay_rate > 0, "train.decay_rate", "must be positive")
        _check(self.early_stopping_patience >= 0, "train.early_stopping_patience", "must be at least 0")
        _check(self.reduce_lr_patience >= 0, "train.reduce_lr_patience", "must be at least 0")
        _check(not self.freeze or self.init_from is not None, "train.freeze", "needs train.init_from (--init-from)")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some keys of some sections changed, e.g. `replace(train={"loop": "custom"})`."""
        updated = {name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()}
        return dataclasses.replace(self, **updated)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key} {message}")


def _check_finite(section: object, prefix: str) -> None:
    """Reject Infinity, -Infinity and NaN (which JSON parsers accept) in any number of a section."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{f.name} must be a finite number, got {value}")


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check `value` (from JSON) against the type `hint`, converting lists to tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_convert(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{key} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix} must be an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key {prefix}.{unknown[0]}; known keys: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], value, f"{prefix}.{name}" if prefix else name)
        else:
            values[name] = _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Validate a parsed JSON object into a `Config`; missing keys take their defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a JSON object, got {type(raw).__name__}")
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; expected data, model, train")
    if isinstance(raw.get("train"), dict) and "mixed_precision" in raw["train"]:
        raw = {**raw, "train": _renamed_mixed_precision(raw["train"])}
    return Config(**{name: _build(hints[name], value, name) for name, value in raw.items()})


def _renamed_mixed_precision(train: dict[str, Any]) -> dict[str, Any]:
    """The train section with `mixed_precision` read as `precision` (module docstring)."""
    train = dict(train)
    mixed = _convert(train.pop("mixed_precision"), bool, "train.mixed_precision")
    precision = train.setdefault("precision", "float16" if mixed else "float32")
    if mixed != (precision == "float16"):
        raise ConfigError(f"train.mixed_precision {str(mixed).lower()} contradicts train.precision "
                          f"{precision!r}; drop train.mixed_precision (it was renamed train.precision)")
    log.warning('train.mixed_precision is deprecated: write "precision": "%s" in the train section instead '
                '(or "auto": bf16 on CPUs with bf16 instructions, float16 on a GPU)', precision)
    return train


def load_config(path: str | Path) -> Config:
    """Read and validate a JSON config file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; see configs/ for examples")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
