"""Pretrained models: the four checkpoints of the PyPI package `musicnn` 0.1.0 as Orpheus run directories.

Input:  the TF1 checkpoints shipped inside the installed `musicnn` package (installed with
        `pip install --no-deps musicnn==0.1.0`; its own code is never imported, only its files read):
        MUSICNN_DIR/{MSD_musicnn,MTT_musicnn,MSD_vgg,MTT_vgg}/.index + .data-00000-of-00001
Output: a run directory (see `orpheus.rundir`) per model, identical in layout to a training run:
        RUN_DIR/run.json     RunInfo: the 50 tags in output order and the musicnn input preset
        RUN_DIR/model.keras  the Keras model of `orpheus.models.musicnn` holding the checkpoint's values

`pretrained_run_dir(name)` converts once and caches the result in the user cache folder
(`$ORPHEUS_CACHE`, else `$XDG_CACHE_HOME/orpheus`, else `~/.cache/orpheus`) under
`pretrained/NAME-DIGEST`, where DIGEST is a SHA-256 of the checkpoint files, so tagging and
evaluation treat pretrained and self-trained models alike. Tag lists are data files in `configs/`.

The musicnn input preset: audio at 16 kHz, STFT n_fft 512 / hop 256, 96 mel bands (librosa's
slaney mel scale, power spectrogram), log10(10000 x + 1); the models were trained on 3 s patches
of 187 frames. The models normalise their input themselves (a batch norm layer), so normalise is "none".

Command line:
    python -m orpheus.pretrained list
    python -m orpheus.pretrained convert [NAME] [--out DIR]
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: import the package, not its folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import hashlib
import importlib.util
import logging
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from orpheus.cli import HelpFormatter, add_common_args, make_parser, run_main
from orpheus.config import ModelConfig
from orpheus.errors import DataFormatError, MissingDependencyError, MissingInputError, OutputExistsError
from orpheus.models.musicnn import MUSICNN_CONFIG, VGG_CONFIG, build_musicnn, build_vgg
from orpheus.rundir import MODEL_FILE, RUN_INFO, RunInfo, write_run_info

logger = logging.getLogger(__name__)

INSTALL_COMMAND = "pip install --no-deps musicnn==0.1.0"
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
CONVERTER_VERSION = 1               # part of the cache key: bump when the conversion's output changes

# The musicnn input preset (musicnn/configuration.py and the checkpoints' config.json).
PRESET = "musicnn"
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
WINDOW_FRAMES = 187                 # 3 s patches: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1
WINDOW_S = WINDOW_FRAMES * HOP_LENGTH / SAMPLE_RATE   # 2.992 s

CHECKPOINT_FILES = (".index", ".data-00000-of-00001")  # the checkpoint prefix is the folder itself

# Keras layer of `orpheus.models.musicnn` -> TF1 variable scope of the checkpoint, in the order
# musicnn's graph creates them. Each Keras weight `LAYER/x` takes the checkpoint variable `SCOPE/x`
# (kernel, bias, gamma, beta, moving_mean, moving_variance).
MUSICNN_SCOPES: tuple[tuple[str, str], ...] = (
    ("input_bn", "batch_normalization"),
    ("timbral_38_conv", "conv2d"), ("timbral_38_bn", "batch_normalization_1"),
    ("timbral_67_conv", "conv2d_1"), ("timbral_67_bn", "batch_normalization_2"),
    ("temporal_128_conv", "conv2d_2"), ("temporal_128_bn", "batch_normalization_3"),
    ("temporal_64_conv", "conv2d_3"), ("temporal_64_bn", "batch_normalization_4"),
    ("temporal_32_conv", "conv2d_4"), ("temporal_32_bn", "batch_normalization_5"),
    ("midend1_conv", "conv2d_5"), ("midend1_bn", "batch_normalization_6"),
    ("midend2_conv", "conv2d_6"), ("midend2_bn", "batch_normalization_7"),
    ("midend3_conv", "conv2d_7"), ("midend3_bn", "batch_normalization_8"),
    ("pool_bn", "batch_normalization_9"),
    ("dense", "dense"), ("embedding", "batch_normalization_10"),
    ("tags", "dense_1"),
)
VGG_SCOPES: tuple[tuple[str, str], ...] = (
    ("input_bn", "batch_normalization"),
    *((layer, scope) for i in range(1, 6)
      for layer, scope in ((f"conv{i}_conv", f"{i}CNN"), (f"conv{i}_bn", f"batch_normalization_{i}"))),
    ("tags", "dense"),
)


@dataclass(frozen=True)
class PretrainedModel:
    """One checkpoint of the musicnn package.

    name:         the checkpoint folder inside the package, also the `--model` name.
    architecture: registry key of the Keras builder ("musicnn" or "vgg").
    tags_file:    file name in `configs/` listing the output tags, one per line, in output order.
    description:  one line for `list`.
    """
    name: str
    architecture: str
    tags_file: str
    description: str

    @property
    def config(self) -> ModelConfig:
        """The model settings the checkpoint was trained with."""
        return MUSICNN_CONFIG if self.architecture == "musicnn" else VGG_CONFIG

    @property
    def builder(self) -> Callable[[ModelConfig, tuple, int], keras.Model]:
        return build_musicnn if self.architecture == "musicnn" else build_vgg

    @property
    def scopes(self) -> tuple[tuple[str, str], ...]:
        return MUSICNN_SCOPES if self.architecture == "musicnn" else VGG_SCOPES

    @property
    def input_shape(self) -> tuple[int | None, int]:
        """musicnn takes any number of frames; vgg flattens its last pooling, so it needs 187."""
        return (None if self.architecture == "musicnn" else WINDOW_FRAMES, N_MELS)

    def tags(self) -> tuple[str, ...]:
        """The output tags in output order, read from `configs/`."""
        return read_tag_list(CONFIGS_DIR / self.tags_file)


PRETRAINED: dict[str, PretrainedModel] = {
    "MSD_musicnn": PretrainedModel("MSD_musicnn", "musicnn", "msd_musicnn_tags.txt",
                                   "musicnn trained on the Million Song Dataset, top 50 Last.fm tags"),
    "MTT_musicnn": PretrainedModel("MTT_musicnn", "musicnn", "mtt_musicnn_tags.txt",
                                   "musicnn trained on MagnaTagATune, top 50 tags"),
    "MSD_vgg": PretrainedModel("MSD_vgg", "vgg", "msd_musicnn_tags.txt",
                               "VGG-like baseline trained on the Million Song Dataset, top 50 Last.fm tags"),
    "MTT_vgg": PretrainedModel("MTT_vgg", "vgg", "mtt_musicnn_tags.txt",
                               "VGG-like baseline trained on MagnaTagATune, top 50 tags"),
}


@dataclass(frozen=True)
class ConversionSummary:
    """What `convert` did: n_variables checkpoint variables (n_values numbers) went into the model;
    n_optimizer_state Adam slots and power accumulators were left out (training state, not weights)."""
    name: str
    run_dir: Path
    n_variables: int
    n_values: int
    n_optimizer_state: int
    seconds: float


def read_tag_list(path: Path) -> tuple[str, ...]:
    """Tags of a tag-list file (one per line, blank lines ignored), checked for duplicates."""
    if not path.is_file():
        raise MissingInputError(f"{path}: tag list not found; it ships with Orpheus in configs/, "
                                "restore it from the repository")
    tags = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(set(tags)) != len(tags):
        raise DataFormatError(f"{path}: the tag list has duplicate tags")
    return tags


def get_pretrained(name: str) -> PretrainedModel:
    """The entry of `PRETRAINED` called `name`, or a clear error listing the names."""
    if name not in PRETRAINED:
        raise MissingInputError(f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}")
    return PRETRAINED[name]


def default_cache_dir() -> Path:
    """`$ORPHEUS_CACHE` if set, else `$XDG_CACHE_HOME/orpheus`, else `~/.cache/orpheus`."""
    if os.environ.get("ORPHEUS_CACHE"):
        return Path(os.environ["ORPHEUS_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "orpheus"
    return Path.home() / ".cache" / "orpheus"


def musicnn_package_dir() -> Path | None:
    """The folder of the installed `musicnn` package, found without importing it (None if absent)."""
    spec = importlib.util.find_spec("musicnn")   # a top-level name: the package's code is not run
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate_checkpoint(name: str, package_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder of pretrained model `name` (its prefix: files `.index`, `.data-*` inside).

    Args:
        name: a key of `PRETRAINED`.
        package_dir: the musicnn package folder; default: the installed one, found with importlib.

    Raises:
        MissingDependencyError: the package (or this checkpoint) is not installed; the message
            gives the install command.
    """
    get_pretrained(name)
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


def build_pretrained_model(name: str, package_dir: str | os.PathLike | None = None
                           ) -> tuple[keras.Model, tuple[int, int, int], Path]:
    """Build the Keras model of pretrained model `name` and load its checkpoint values.

    Returns:
        (model, (variables, values, optimizer-state entries left out), checkpoint folder).
    """
    entry = get_pretrained(name)
    checkpoint_dir = locate_checkpoint(name, package_dir)
    reader = open_checkpoint(checkpoint_dir)
    model = entry.builder(entry.config, entry.input_shape, len(entry.tags()))
    counts = load_checkpoint_values(model, reader, entry.scopes, str(checkpoint_dir))
    return model, counts, checkpoint_dir


def run_info(name: str, source: str = "") -> RunInfo:
    """The RunInfo of pretrained model `name`: its tags and the musicnn input preset."""
    entry = get_pretrained(name)
    return RunInfo(tags=entry.tags(), format="log-mel-spectrogram", sample_rate=SAMPLE_RATE, window_s=WINDOW_S,
                   n_mels=N_MELS, n_fft=N_FFT, hop_length=HOP_LENGTH, preset=PRESET, normalise="none",
                   model_name=entry.architecture, source=source)


def _replace_dir(tmp_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished `tmp_dir` onto `out_dir`; an existing `out_dir` is replaced only if `overwrite`."""
    if out_dir.exists():
        if not overwrite:
            raise OutputExistsError(f"{out_dir}: output already exists; pass --overwrite to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, out_dir)


def convert(name: str, out_dir: str | os.PathLike, *, overwrite: bool = False,
            package_dir: str | os.PathLike | None = None) -> ConversionSummary:
    """Convert pretrained model `name` into the run directory `out_dir` (written atomically).

    Args:
        name: a key of `PRETRAINED`.
        out_dir: the run directory to write (`run.json` + `model.keras`).
        overwrite: replace an existing `out_dir`; otherwise an existing one is an `OutputExistsError`.
        package_dir: the musicnn package folder; default: the installed one.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"{out_dir}: output already exists; pass --overwrite to replace it")
    model, (n_variables, n_values, n_optimizer), checkpoint_dir = build_pretrained_model(name, package_dir)
    source = f"musicnn 0.1.0 checkpoint {name} ({checkpoint_dir}, sha256 {checkpoint_digest(checkpoint_dir)})"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(tmp_dir, 0o755)        # mkdtemp makes it private; a run directory is an ordinary folder
        model.save(tmp_dir / MODEL_FILE)
        write_run_info(tmp_dir, run_info(name, source))
        os.chmod(tmp_dir / RUN_INFO, 0o644)  # atomic writes create private files; keep it readable like the model
        _replace_dir(tmp_dir, out_dir, overwrite)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    summary = ConversionSummary(name, out_dir, n_variables, n_values, n_optimizer, time.perf_counter() - start)
    logger.info("%s: %d checkpoint variables (%d values) -> %s in %.1f s (%d optimizer-state entries left out)",
                name, n_variables, n_values, out_dir, summary.seconds, n_optimizer)
    return summary


def cached_run_dir(name: str, *, package_dir: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `pretrained_run_dir` keeps model `name`: CACHE/pretrained/NAME-DIGEST16 (may not exist yet)."""
    checkpoint_dir = locate_checkpoint(name, package_dir)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "pretrained" / f"{name}-{checkpoint_digest(checkpoint_dir)[:16]}"


def is_complete_run_dir(run_dir: Path) -> bool:
    return (run_dir / RUN_INFO).is_file() and (run_dir / MODEL_FILE).is_file()


def pretrained_run_dir(name: str, *, package_dir: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """The run directory of pretrained model `name`, converted on first use and cached.

    Args:
        name: a key of `PRETRAINED`.
        package_dir: the musicnn package folder; default: the installed one.
        cache_dir: the cache root; default `default_cache_dir()`.

    Returns:
        A run directory holding `run.json` and `model.keras` (see `orpheus.rundir`).
    """
    run_dir = cached_run_dir(name, package_dir=package_dir, cache_dir=cache_dir)
    if is_complete_run_dir(run_dir):
        return run_dir
    logger.info("converting pretrained model %s into %s (once)", name, run_dir)
    try:
        convert(name, run_dir, package_dir=package_dir)
    except OutputExistsError:
        if not is_complete_run_dir(run_dir):   # not a concurrent conversion that finished first
            raise OutputExistsError(f"{run_dir}: incomplete cached conversion; delete that folder and retry")
    return run_dir


# ----------------------------------------------------------------------------------------------- CLI

EPILOG = """examples:
  python -m orpheus.pretrained list
  python -m orpheus.pretrained convert                 # all four into the cache folder
  python -m orpheus.pretrained convert MSD_musicnn     # one, into the cache folder; prints its path
  python -m orpheus.pretrained convert MTT_musicnn --out runs/mtt_musicnn --overwrite

The cache folder is $ORPHEUS_CACHE, else $XDG_CACHE_HOME/orpheus, else ~/.cache/orpheus.
The checkpoints come from the musicnn package: """ + INSTALL_COMMAND


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m orpheus.pretrained",
                         "List the pretrained musicnn models or convert them into Orpheus run directories.", EPILOG)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--musicnn-dir", type=Path, default=None,
                        help="folder of the musicnn package holding the checkpoints; None: the installed one")
    common.add_argument("--cache-dir", type=Path, default=None,
                        help="cache root; None: $ORPHEUS_CACHE, $XDG_CACHE_HOME/orpheus or ~/.cache/orpheus")
    add_common_args(common)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], formatter_class=HelpFormatter, epilog=EPILOG,
                        help="list the pretrained models and whether they are installed and converted")
    convert_parser = commands.add_parser("convert", parents=[common], formatter_class=HelpFormatter,
                                         epilog=EPILOG, help="convert pretrained models into run directories")
    convert_parser.add_argument("name", nargs="?", choices=sorted(PRETRAINED), default=None,
                                help="the model to convert; None: all four")
    convert_parser.add_argument("--out", type=Path, default=None,
                                help="run directory to write (with no NAME: a folder receiving one run "
                                     "directory per model); None: the cache folder")
    convert_parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def run_list(package_dir: Path | None, cache_dir: Path | None) -> list[str]:
    """One line per pretrained model: name, architecture, tag count, status (cached path)."""
    lines = []
    for name, entry in PRETRAINED.items():
        try:
            run_dir = cached_run_dir(name, package_dir=package_dir, cache_dir=cache_dir)
            status = f"converted: {run_dir}" if is_complete_run_dir(run_dir) else "installed, not converted yet"
        except MissingDependencyError:
            status = f"not installed ({INSTALL_COMMAND})"
        lines.append(f"{name:12s} {entry.architecture:8s} {len(entry.tags()):3d} tags  {entry.description}\n"
                     f"{'':12s} {status}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.command == "list":
        print("\n".join(run_list(args.musicnn_dir, args.cache_dir)))
        return 0
    names = [args.name] if args.name else list(PRETRAINED)
    for name in names:
        if args.out is None:
            run_dir = cached_run_dir(name, package_dir=args.musicnn_dir, cache_dir=args.cache_dir)
            if args.overwrite or not is_complete_run_dir(run_dir):
                convert(name, run_dir, overwrite=True, package_dir=args.musicnn_dir)
        else:
            run_dir = args.out if args.name else args.out / name
            convert(name, run_dir, overwrite=args.overwrite, package_dir=args.musicnn_dir)
        print(f"{name}\t{run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
