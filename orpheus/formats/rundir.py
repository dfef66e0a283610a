"""The run directory: what a trained (or converted pretrained) model needs to tag audio.

Layout, written by training and by the pretrained-model conversion alike:

    RUN_DIR/run.json       RunInfo: output tag order, feature settings (the shards' record), window, normalisation
    RUN_DIR/config.json    the resolved Config of the run (training only)
    RUN_DIR/model.keras    the Keras model: training's best epoch by val_crop_pr_auc
    RUN_DIR/last.keras     training only: the model of the last epoch
    RUN_DIR/checkpoints/   training checkpoints (resume)
    RUN_DIR/logs/          TensorBoard event files
    RUN_DIR/history.csv    per-epoch metrics

Tagging and evaluation read only `run.json` and `model.keras`, so pretrained and self-trained
models are treated alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orpheus.errors import DataFormatError, MissingInputError
from orpheus.files import read_json_record, write_json_atomic
from orpheus.audio.settings import FORMATS, NORMALISATIONS, FeatureSettings, nest_features
from orpheus.ownership import FolderKind

if TYPE_CHECKING:  # the TFRecord spec imports TensorFlow, which tagging with --precision fast never loads
    from orpheus.formats.dataset import DatasetInfo

RUN_INFO = "run.json"
MODEL_FILE = "model.keras"
LAST_MODEL_FILE = "last.keras"


def _is_run_dir(folder: Path) -> bool:
    """A run directory written before the ownership marker: run.json beside model.keras or config.json."""
    return (folder / RUN_INFO).is_file() and ((folder / MODEL_FILE).is_file() or (folder / "config.json").is_file())


RUN_DIRECTORY = FolderKind("run directory", legacy=_is_run_dir)   # training, WiSE-FT, pretrained conversion


@dataclass(frozen=True)
class RunInfo:
    """How to turn audio into the model's input, and what its outputs mean.

    tags:         model output names, in output order.
    features:     how audio becomes the model input (`orpheus.audio.settings.FeatureSettings`,
                  the same record as a shard folder's `DatasetInfo.features`).
    window_s:     seconds of audio per model input window.
    normalise:    one of `NORMALISATIONS`: "per_example" (standardise each window), "dataset"
                  (subtract `feature_mean`, divide by `feature_std`, one value per bin) or "none".
    model_name:   registry key of the architecture.
    source:       where the weights come from (a shard folder, a pretrained checkpoint).
    """
    tags: tuple[str, ...]
    features: FeatureSettings
    window_s: float
    normalise: str = "per_example"
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    model_name: str = ""
    source: str = ""

    @property
    def window_frames(self) -> int:
        """Length of one input window on the time axis (samples or frames)."""
        return self.features.frames(self.window_s)

    @classmethod
    def from_dataset(cls, info: DatasetInfo, tags: tuple[str, ...], window_s: float, **extra: Any) -> "RunInfo":
        """The RunInfo of a model trained on the shard folder described by `info`."""
        return cls(tags=tuple(tags), features=info.features, window_s=window_s, **extra)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["features"] = self.features.to_json()
        for key in ("tags", "feature_mean", "feature_std"):
            out[key] = list(out[key])
        return out


def write_run_info(run_dir: str | Path, info: RunInfo) -> Path:
    """Write `run_dir/run.json` atomically; returns its path."""
    path = Path(run_dir) / RUN_INFO
    write_json_atomic(path, info.to_json())
    return path


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read `run_dir/run.json` with a clear error when missing or malformed."""
    path = Path(run_dir) / RUN_INFO
    info = read_json_record(path, RunInfo, what="run description",
                            tuple_keys=("tags", "feature_mean", "feature_std"),
                            missing="--run-dir must be a folder written by orpheus/training.py "
                                    "(or a converted pretrained model)",
                            malformed="retrain or reconvert", prepare=nest_features)
    if info.features.format not in FORMATS or info.normalise not in NORMALISATIONS:
        raise DataFormatError(f"{path}: unknown format {info.features.format!r} or normalisation {info.normalise!r}")
    return info


def load_model(run_dir: str | Path):
    """Load `run_dir/model.keras` (the one loader of a run's model: tagging, evaluation, export, fine-tuning).

    Importing `orpheus.models` registers the custom layers before deserialising; it is imported here, not at the
    top, because it imports Keras and TensorFlow, which reading a run's `run.json` never needs."""
    import keras

    import orpheus.models.layers  # noqa: F401  (registers the custom layers)
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise MissingInputError(f"{path}: model not found; --run-dir must hold a trained or converted model")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError) as err:
        raise DataFormatError(f"{path}: cannot load the model ({str(err).splitlines()[0]}); retrain or "
                              "reconvert it") from err
