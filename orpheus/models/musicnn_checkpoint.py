"""Reading the TF1 checkpoints of the PyPI package `musicnn` 0.1.0 into Orpheus's Keras models.

Input: MUSICNN_DIR/{MSD_musicnn,MTT_musicnn,MSD_vgg,MTT_vgg}/.index + .data-00000-of-00001, inside the
installed `musicnn` package (found with importlib; its own code is never imported, only its files
read). `load_checkpoint_values` assigns every Keras weight its checkpoint variable through a layer ->
variable-scope table (`orpheus.models.musicnn.MUSICNN_SCOPES`, `VGG_SCOPES`), checking coverage in both
directions.
The registry of the four models, their conversion into run directories and the CLI are in
`orpheus.models.pretrained`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from orpheus.errors import DataFormatError, MissingDependencyError

if TYPE_CHECKING:  # finding and hashing a checkpoint needs no TensorFlow (tagging with --precision fast)
    import keras

INSTALL_COMMAND = "pip install --no-deps musicnn==0.1.0"
CONVERTER_VERSION = 1               # part of the cache key: bump when the conversion's output changes

CHECKPOINT_FILES = (".index", ".data-00000-of-00001")  # the checkpoint prefix is the folder itself

def musicnn_package_dir() -> Path | None:
    """The folder of the installed `musicnn` package, found without importing it (None if absent)."""
    spec = importlib.util.find_spec("musicnn")   # a top-level name: the package's code is not run
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def checkpoint_folder(name: str, package_dir: str | os.PathLike | None = None) -> Path:
    """The folder of checkpoint `name` in the musicnn package (its prefix: files `.index`, `.data-*` inside).

    Args:
        name: the checkpoint's folder name in the package (a key of `orpheus.models.pretrained.PRETRAINED`).
        package_dir: the musicnn package folder; default: the installed one, found with importlib.

    Raises:
        MissingDependencyError: the package (or this checkpoint) is not installed; the message
            gives the install command.
    """
    root = Path(package_dir) if package_dir is not None else musicnn_package_dir()
    if root is None:
        raise MissingDependencyError(f"pretrained model {name} needs the musicnn package's checkpoints, which "
                                     f"are not installed; install them with: {INSTALL_COMMAND}")
    folder = root / name
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise MissingDependencyError(f"{folder}: checkpoint of pretrained model {name} not found "
                                     f"(missing {', '.join(missing)}); install it with: {INSTALL_COMMAND}")
    return folder


def checkpoint_digest(checkpoint_dir: Path) -> str:
    """SHA-256 (hex) of the checkpoint files and the converter version: the cache key."""
    digest = hashlib.sha256(f"orpheus-musicnn-converter-{CONVERTER_VERSION}".encode())
    for file_name in CHECKPOINT_FILES:
        digest.update(file_name.encode())
        with open(checkpoint_dir / file_name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def open_checkpoint(checkpoint_dir: Path):
    """A checkpoint reader (what `tf.train.load_checkpoint` returns) for a musicnn checkpoint folder.

    `tf.train.load_checkpoint(folder)` would follow the folder's `checkpoint` file, which names a path
    on the musicnn author's machine; the prefix is the folder itself, so the reader opens it directly.
    """
    import tensorflow as tf
    try:
        return tf.compat.v1.train.NewCheckpointReader(str(checkpoint_dir) + os.sep)
    except (tf.errors.OpError, ValueError) as err:
        raise DataFormatError(f"{checkpoint_dir}: unreadable checkpoint ({err}); reinstall it with: "
                              f"{INSTALL_COMMAND} --force-reinstall") from err


def is_optimizer_state(variable_name: str) -> bool:
    """True for Adam's slots (`.../Adam`, `.../Adam_1`) and its `beta1_power` / `beta2_power`."""
    return variable_name.endswith(("/Adam", "/Adam_1")) or variable_name in ("beta1_power", "beta2_power")


def _fit_shape(value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """`value` reshaped to `shape` when they differ only by unit axes (musicnn's 2-D convs that
    span all channels become Conv1D: [7, 561, 1, 64] -> [7, 561, 64]); otherwise an error."""
    if tuple(value.shape) == tuple(shape):
        return value
    if [d for d in value.shape if d != 1] != [d for d in shape if d != 1]:
        raise DataFormatError(f"checkpoint variable {what} has shape {list(value.shape)} but the model "
                              f"expects {list(shape)}; the checkpoint does not match the architecture")
    return value.reshape(shape)


def load_checkpoint_values(model: keras.Model, reader, scopes: Sequence[tuple[str, str]],
                           source: str) -> tuple[int, int, int]:
    """Assign every model variable its checkpoint value, checking coverage in both directions.

    Every weight of `model` must be mapped exactly once, and every checkpoint variable that is not
    optimizer state must be used exactly once.

    Returns:
        (variables assigned, values assigned, optimizer-state entries left out).
    """
    shapes = reader.get_variable_to_shape_map()
    optimizer_state = {n for n in shapes if is_optimizer_state(n)}
    wanted = set(shapes) - optimizer_state
    assignments: list[tuple[keras.Variable, str]] = []
    for layer_name, scope in scopes:
        for variable in model.get_layer(layer_name).weights:
            assignments.append((variable, f"{scope}/{variable.name}"))

    used = Counter(name for _, name in assignments)
    model_paths = Counter(variable.path for variable, _ in assignments)
    unmapped = sorted({variable.path for variable in model.weights} - set(model_paths))
    duplicated = sorted({n for counts in (used, model_paths) for n, count in counts.items() if count > 1})
    absent = sorted(set(used) - wanted)
    left_over = sorted(wanted - set(used))
    for problem, names in (("model weights without a checkpoint value", unmapped),
                           ("mapped more than once", duplicated),
                           ("expected in the checkpoint but absent", absent),
                           ("checkpoint variables the model does not use", left_over)):
        if names:
            raise DataFormatError(f"{source}: {problem}: {', '.join(names[:5])}"
                                  f"{' ...' if len(names) > 5 else ''}; the checkpoint does not match the "
                                  f"architecture")
    n_values = 0
    for variable, name in assignments:
        value = _fit_shape(reader.get_tensor(name), tuple(variable.shape), name)
        variable.assign(value.astype(np.float32))
        n_values += value.size
    return len(assignments), n_values, len(optimizer_state)
