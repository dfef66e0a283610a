"""A shard folder's contract, without TensorFlow: split names, shard file names and `dataset.json`.

A shard folder describes itself with `dataset.json` (`DatasetInfo`): the feature settings (format, sample rate,
spectrogram settings: `orpheus.audio.settings.FeatureSettings`), the tag names in output order and the counts per
split. Training, evaluation and tagging read only that folder, so the label order can never drift from the weights.
Preprocessing (`tfrecords/`) names its shards and splits with this module; the examples inside the shards are
`orpheus.formats.tfrecord`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orpheus.audio.settings import FORMATS, FeatureSettings, nest_features
from orpheus.errors import DataFormatError
from orpheus.files import read_json_record, write_json_atomic
from orpheus.formats.tfrecord import Feature, example_spec

SPLITS = ("train", "valid", "test")
DATASET_INFO = "dataset.json"


def shard_name(split: str, index: int, count: int) -> str:
    """`{split}-{index:05d}-of-{count:05d}.tfrecord`, the shard naming convention."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def shard_paths(shard_dir: str | Path, split: str) -> list[str]:
    """The sorted shard files of `split` in `shard_dir`."""
    if split not in SPLITS:
        raise DataFormatError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return sorted(str(p) for p in Path(shard_dir).glob(f"{split}-*-of-*.tfrecord"))


@dataclass(frozen=True)
class DatasetInfo:
    """What a shard folder holds, stored as its `dataset.json`.

    features:      how the audio became the stored values (`orpheus.audio.settings.FeatureSettings`).
    tags:          tag names in the order of the `tags` multi-hot vector.
    storage:       "float32" or "float16".
    counts:        tracks per split.
    positives:     per split, positive count of each tag (aligned with `tags`).
    command:       the command line that wrote the folder.
    """
    features: FeatureSettings
    tags: tuple[str, ...]
    storage: str = "float32"
    counts: dict[str, int] = field(default_factory=dict)
    positives: dict[str, list[int]] = field(default_factory=dict)
    command: str = ""

    def spec(self) -> dict[str, Feature]:
        """The example schema of this folder's shards."""
        return example_spec(self.features.format, self.features.n_bins, len(self.tags), self.storage)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["features"] = self.features.to_json()
        out["tags"] = list(self.tags)
        return out


def write_dataset_info(shard_dir: str | Path, info: DatasetInfo) -> Path:
    """Write `info` as `shard_dir/dataset.json` atomically; returns the path."""
    path = Path(shard_dir) / DATASET_INFO
    write_json_atomic(path, info.to_json())
    return path


def read_dataset_info(shard_dir: str | Path) -> DatasetInfo:
    """Read `shard_dir/dataset.json`, with a clear error when missing or malformed."""
    path = Path(shard_dir) / DATASET_INFO
    info = read_json_record(path, DatasetInfo, what="dataset description", tuple_keys=("tags",),
                            missing="point --tfrecords-dir at a folder written by tfrecords/preprocessing.py",
                            malformed="rerun preprocessing", prepare=nest_features)
    if info.features.format not in FORMATS:
        raise DataFormatError(f"{path}: unknown format {info.features.format!r}; rerun preprocessing")
    return info
