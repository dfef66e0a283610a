"""Pretrained models: the four checkpoints of the PyPI package `musicnn` 0.1.0 as Orpheus run directories.

Input:  the TF1 checkpoints shipped inside the installed `musicnn` package (installed with
        `pip install --no-deps musicnn==0.1.0`; its own code is never imported, only its files read):
        MUSICNN_DIR/{MSD_musicnn,MTT_musicnn,MSD_vgg,MTT_vgg}/.index + .data-00000-of-00001
Output: a run directory (see `orpheus.formats.rundir`) per model, identical in layout to a training run:
        RUN_DIR/run.json     RunInfo: the 50 tags in output order and the musicnn input preset
        RUN_DIR/model.keras  the Keras model of `orpheus.models.musicnn` holding the checkpoint's values

`pretrained_run_dir(name)` converts once and caches the result in the user cache folder
(`$ORPHEUS_CACHE`, else `$XDG_CACHE_HOME/orpheus`, else `~/.cache/orpheus`) under
`pretrained/NAME-DIGEST`, where DIGEST is a SHA-256 of the checkpoint files, so tagging and
evaluation treat pretrained and self-trained models alike. Tag lists are package data (`orpheus/data/`).

The musicnn input preset: audio at 16 kHz, STFT n_fft 512 / hop 256, 96 mel bands (librosa's
slaney mel scale, power spectrogram), log10(10000 x + 1); the models were trained on 3 s patches
of 187 frames. The models normalise their input themselves (a batch norm layer), so normalise is "none".

Reading the checkpoints into the Keras models is `orpheus.models.musicnn_checkpoint`. The command that lists and
converts them is `orpheus pretrained` (`orpheus.commands.pretrained`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from orpheus.data import data_file
from orpheus.audio.settings import FeatureSettings
from orpheus.errors import (DataFormatError, MissingInputError, OutputExistsError,
                            OutputWriteError)
from orpheus.files import atomic_dir, check_output, default_cache_dir
from orpheus.models.musicnn_checkpoint import (checkpoint_digest, checkpoint_folder,
                                               load_checkpoint_values, open_checkpoint)
from orpheus.formats.rundir import MODEL_FILE, RUN_DIRECTORY, RUN_INFO, RunInfo, write_run_info

if TYPE_CHECKING:  # finding a cached conversion needs no TensorFlow (tagging with --precision fast)
    import keras

    from orpheus.config import ModelConfig

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "MSD_musicnn"   # what tagging uses when no model is named

# The musicnn input preset (musicnn/configuration.py and the checkpoints' config.json).
PRESET = "musicnn"
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
WINDOW_FRAMES = 187                 # 3 s patches: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1
WINDOW_S = WINDOW_FRAMES * HOP_LENGTH / SAMPLE_RATE   # 2.992 s
FEATURES = FeatureSettings("log-mel-spectrogram", SAMPLE_RATE, n_mels=N_MELS, n_fft=N_FFT, hop_length=HOP_LENGTH,
                           preset=PRESET)


@dataclass(frozen=True)
class PretrainedModel:
    """One checkpoint of the musicnn package.

    name:         the checkpoint folder inside the package, also the `--model` name.
    architecture: registry key of the Keras builder ("musicnn" or "vgg").
    tags_file:    file name in `orpheus/data/` listing the output tags, one per line, in output order.
    description:  one line for `list`.
    """
    name: str
    architecture: str
    tags_file: str
    description: str

    @property
    def config(self) -> ModelConfig:
        """The model settings the checkpoint was trained with."""
        from orpheus.models.musicnn import MUSICNN_CONFIG, VGG_CONFIG
        return MUSICNN_CONFIG if self.architecture == "musicnn" else VGG_CONFIG

    @property
    def builder(self) -> Callable[[ModelConfig, tuple, int], keras.Model]:
        from orpheus.models.musicnn import build_musicnn, build_vgg
        return build_musicnn if self.architecture == "musicnn" else build_vgg

    @property
    def scopes(self) -> tuple[tuple[str, str], ...]:
        from orpheus.models.musicnn import MUSICNN_SCOPES, VGG_SCOPES
        return MUSICNN_SCOPES if self.architecture == "musicnn" else VGG_SCOPES

    @property
    def input_shape(self) -> tuple[int | None, int]:
        """musicnn takes any number of frames; vgg flattens its last pooling, so it needs 187."""
        return (None if self.architecture == "musicnn" else WINDOW_FRAMES, N_MELS)

    def tags(self) -> tuple[str, ...]:
        """The output tags in output order, read from the package data."""
        return read_tag_list(data_file(self.tags_file))


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
        raise MissingInputError(f"{path}: tag list not found; it ships with Orpheus (orpheus/data/), "
                                "reinstall Orpheus")
    tags = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(set(tags)) != len(tags):
        raise DataFormatError(f"{path}: the tag list has duplicate tags")
    return tags


def get_pretrained(name: str) -> PretrainedModel:
    """The entry of `PRETRAINED` called `name`, or a clear error listing the names."""
    if name not in PRETRAINED:
        raise MissingInputError(f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}")
    return PRETRAINED[name]


def locate_checkpoint(name: str, package_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder of pretrained model `name` (see `musicnn_checkpoint.checkpoint_folder`).

    Raises:
        MissingInputError: `name` is not a pretrained model.
        MissingDependencyError: the musicnn package (or this checkpoint) is not installed.
    """
    get_pretrained(name)
    return checkpoint_folder(name, package_dir)


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
    return RunInfo(tags=entry.tags(), features=FEATURES, window_s=WINDOW_S, normalise="none",
                   model_name=entry.architecture, source=source)


def convert(name: str, out_dir: str | os.PathLike, *, overwrite: bool = False,
            package_dir: str | os.PathLike | None = None) -> ConversionSummary:
    """Convert pretrained model `name` into the run directory `out_dir` (written atomically).

    Args:
        name: a key of `PRETRAINED`.
        out_dir: the run directory to write (`run.json` + `model.keras`).
        overwrite: replace an existing `out_dir` (only a run directory Orpheus wrote); otherwise an existing
            one is an `OutputExistsError`.
        package_dir: the musicnn package folder; default: the installed one.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir, RUN_DIRECTORY, overwrite=overwrite, flag="--out")
    model, (n_variables, n_values, n_optimizer), checkpoint_dir = build_pretrained_model(name, package_dir)
    source = f"musicnn 0.1.0 checkpoint {name} ({checkpoint_dir}, sha256 {checkpoint_digest(checkpoint_dir)})"
    with atomic_dir(out_dir, RUN_DIRECTORY, overwrite=overwrite, inputs=[(checkpoint_dir, "musicnn checkpoint")],
                    flag="--out") as tmp_dir:
        model.save(tmp_dir / MODEL_FILE)
        write_run_info(tmp_dir, run_info(name, source))
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
        A run directory holding `run.json` and `model.keras` (see `orpheus.formats.rundir`).
    """
    run_dir = cached_run_dir(name, package_dir=package_dir, cache_dir=cache_dir)
    if is_complete_run_dir(run_dir):
        return run_dir
    logger.info("converting pretrained model %s into %s (once)", name, run_dir)
    try:
        convert(name, run_dir, package_dir=package_dir)
    except OutputWriteError as err:   # "choose another output folder" would not help: the cache is ours to pick
        reason = str(err).split(": ", 1)[-1].split(";")[0]   # "read-only file system", "no space left on device"
        raise OutputWriteError(f"{run_dir.parent}: the model cache cannot be written ({reason}); set ORPHEUS_CACHE "
                               "to a folder you can write to") from err
    except OutputExistsError:
        if not is_complete_run_dir(run_dir):   # not a concurrent conversion that finished first
            raise OutputExistsError(f"{run_dir}: incomplete cached conversion; delete that folder and retry")
    return run_dir


def resolve_model(model: str | os.PathLike, what: str = "--model") -> tuple[Path, str]:
    """(run directory, display name) of `model`: the one rule for "a pretrained model or a run directory".

    A name of `PRETRAINED` (MSD_musicnn, ...) is that pretrained model, converted on first use and cached; anything
    else is a run directory holding run.json and model.keras (a folder that bears a pretrained model's name is
    reached as ./MSD_musicnn). `what` names the option in the error (--run-dir, --init-from, run_dir=).
    Every command and the Python API resolve models here, and load them with `orpheus.formats.rundir.load_model`.
    """
    text = os.fspath(model)
    if text in PRETRAINED:
        return pretrained_run_dir(text), text
    run_dir = Path(text)
    if not is_complete_run_dir(run_dir):
        raise MissingInputError(f"{what} {text}: neither a pretrained model ({', '.join(PRETRAINED)}) nor a run "
                                f"directory with {RUN_INFO} and {MODEL_FILE}")
    return run_dir, text
