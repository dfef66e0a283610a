"""The Python API: tag files or arrays from a notebook or a script in a few lines.

    import orpheus
    for r in orpheus.tag(["song.mp3", "other.flac"], model="MSD_musicnn"):
        print(r.file, list(r.tags.items())[:5])     # tags: tag -> probability, most probable first

    tagger = orpheus.Tagger(run_dir="runs/musicnn")  # load a model once, tag many files or arrays
    results = tagger.tag(["a.mp3", "b.ogg"])
    result = tagger.tag_array(samples, sample_rate=44100)

Input: audio files (mp3/ogg/opus/flac/wav; a folder is walked recursively, sorted) or arrays of samples, and a
model: a pretrained one by name (`orpheus.models.pretrained`) or a run directory (`orpheus.formats.rundir`).
Output: one `TagResult` per file, in input order; an input that cannot be tagged (a missing or broken file,
a folder without audio, an item that is not a path) gets a result with `error` set instead of raising, so
one bad item never stops a batch. `warnings` carries what `predict` prints about odd input (near-silent,
shorter than a window, truncated).

Arrays (`Tagger.tag_array`), as the field's libraries return them:
    dtype   float in [-1, 1] (librosa, soundfile's default, torchaudio); integer PCM scaled by its type:
            int8/16/32/64 divided by 2**(bits - 1) (scipy.io.wavfile, soundfile.read(dtype="int16")),
            unsigned (8-bit wav) centred first, (x - 2**(bits - 1)) / 2**(bits - 1)
    shape   [n_samples] mono, or 2-D with the channels on the shorter axis: [n_samples, n_channels]
            (soundfile, scipy) or [n_channels, n_samples] (librosa.load(mono=False), torchaudio), at most
            MAX_CHANNELS channels; a square array is ambiguous and refused
Anything else (empty, NaN or infinite samples, 0-D or 3-D, bytes, a sample rate that is not a positive whole
number of Hz) is an `OrpheusError` naming the input and what was expected.

This is a thin layer over `orpheus.tagging.tagger.TaggingEngine` (the same code that `orpheus predict`
runs), so the API and `predict --format json` give the same numbers. TensorFlow is imported only
when a `Tagger` is built.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from orpheus.audio.decode import resample, to_mono
from orpheus.errors import ConfigError, OrpheusError
from orpheus.formats.rundir import MODEL_FILE, RUN_INFO
from orpheus.models.pretrained import DEFAULT_MODEL
from orpheus.models.pretrained import resolve_model as resolve
from orpheus.tagging import tagger as tagging
from orpheus.tagging.inputs import list_audio_files
from orpheus.tagging.outputs import ranked_tags

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TagResult:
    """Tags of one file (or array).

    file:           the path as given (or the array's name).
    tags:           tag -> probability (aggregated over windows), most probable first, ties by tag;
                    filtered by `threshold` / `top` when given. Empty when `error` is set.
    taggram:        float32 [n_windows, n_tags] per-window probabilities, in `tag_names` order.
    window_start_s: float64 [n_windows] start of each window, seconds.
    embeddings:     float32 [n_windows, dim] of the model's "embedding" layer, or None when not asked.
    error:          why the file could not be tagged, naming the file; None on success.
    tag_names:      the model's tags in output order (the columns of `taggram`).
    warnings:       what is odd about the input, as `predict` prints it (near-silent, shorter than one
                    window, truncated, float samples beyond [-1, 1]); empty when nothing is.
    """
    file: str
    tags: dict[str, float]
    taggram: np.ndarray | None
    window_start_s: np.ndarray | None
    embeddings: np.ndarray | None
    error: str | None
    tag_names: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ModelIdentity:
    """What produced a tag: the model's name (pretrained name, or run folder) and a digest of its files.

    sha256: hex SHA-256 over run.json then model.keras, so a retrained model in the same folder differs.
    """
    name: str
    run_dir: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "run_dir": self.run_dir, "sha256": self.sha256}

    @property
    def label(self) -> str:
        """Short human-readable form written into files' metadata: `NAME sha256:0123456789ab`."""
        return f"{self.name} sha256:{self.sha256[:12]}"


def model_identity(run_dir: PathLike, name: str | None = None) -> ModelIdentity:
    """The identity of the model in `run_dir` (run.json + model.keras hashed in 1 MiB blocks)."""
    run_dir = Path(run_dir)
    digest = hashlib.sha256()
    for part in (RUN_INFO, MODEL_FILE):
        with open(run_dir / part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return ModelIdentity(name=name or str(run_dir), run_dir=str(run_dir), sha256=digest.hexdigest())


def resolve_model(model: str | None, run_dir: PathLike | None) -> tuple[Path, str]:
    """(run directory, display name) of the API's `model` or `run_dir` (one of them; default `DEFAULT_MODEL`),
    by the one rule of `orpheus.models.pretrained.resolve_model`."""
    if run_dir is not None:
        if model is not None:
            raise ConfigError("give a pretrained model name or a run_dir, not both")
        return resolve(run_dir, "run_dir")
    return resolve(model or DEFAULT_MODEL, "model")


def expand_paths(paths: PathLike | Iterable[PathLike]) -> list[tuple[str, str | None]]:
    """(file, error) for a path or paths, in order: a folder becomes its audio files (recursive, sorted).

    Nothing here raises for one bad item: a folder without audio, or an item that is not a path (bytes, a
    number), comes back with its error; a missing path comes back as it is, for tagging to report.
    """
    if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Iterable):
        paths = [paths]
    out: list[tuple[str, str | None]] = []
    for item in paths:
        path = os.fspath(item) if isinstance(item, os.PathLike) else item
        if isinstance(path, bytes):
            out.append((repr(item), f"{item!r}: a bytes path; expected a str or os.PathLike path (decode it with "
                                    "os.fsdecode), or an array of samples for Tagger.tag_array"))
        elif not isinstance(path, str):
            out.append((repr(item), f"{item!r}: not a path; expected a str or os.PathLike path to an audio file "
                                    "or a folder"))
        elif Path(path).is_dir():
            try:
                out.extend((str(p), None) for p in list_audio_files(path))
            except OrpheusError as err:
                out.append((path, str(err)))
        else:
            out.append((path, None))
    return out


class Tagger:
    """A model loaded once, to tag many files or arrays.

    Args:
        model: a pretrained model name (`MSD_musicnn`, `MTT_musicnn`, `MSD_vgg`, `MTT_vgg`); the default
            when `run_dir` is not given.
        run_dir: a run directory written by training (run.json + model.keras) instead of `model`.
        window_s, hop_s: seconds per window and between window starts; default the model's window, no overlap.
        aggregate: "mean" or "max" of the window probabilities per tag.
        embeddings: also return the "embedding" layer's output per window.
        batch_size: windows per model call (default `orpheus.tagging.tagger.BATCH_SIZES` of the engine that runs the
            model, sized for memory).
        precision: "exact" (float32) or "fast" (int8/bf16, chosen per CPU); see `orpheus.tagging.backends`.
        jobs: worker processes that decode files (1: decode in this process).
        free_memory: where TensorFlow runs the model, hand freed batch memory back to the OS at once (glibc's
            malloc setting for the whole process, as `orpheus predict` chooses; see `orpheus.tagging.tagger.TaggingEngine`).

    Raises:
        OrpheusError: the model is missing or malformed, or an option is invalid.
    """

    def __init__(self, model: str | None = None, *, run_dir: PathLike | None = None, window_s: float | None = None,
                 hop_s: float | None = None, aggregate: str = "mean", embeddings: bool = False,
                 batch_size: int | None = None, jobs: int = 1, precision: str = "exact",
                 free_memory: bool = False) -> None:
        self.run_dir, self.name = resolve_model(model, run_dir)
        self.jobs = jobs
        self.core = tagging.TaggingEngine(self.run_dir, window_s=window_s, hop_s=hop_s, aggregate=aggregate,
                                   batch_size=batch_size, embeddings=embeddings,
                                   precision=precision, free_memory=free_memory)
        self._identity: ModelIdentity | None = None

    @property
    def tag_names(self) -> tuple[str, ...]:
        """The model's tags in output order."""
        return self.core.tags

    @property
    def sample_rate(self) -> int:
        """Hz the model's input audio is resampled to."""
        return self.core.info.features.sample_rate

    @property
    def identity(self) -> ModelIdentity:
        """Name and SHA-256 of the model's files (computed once, on first use)."""
        if self._identity is None:
            self._identity = model_identity(self.run_dir, self.name)
        return self._identity

    def tag(self, paths: PathLike | Iterable[PathLike], *, threshold: float | None = None, top: int | None = None,
            quiet: bool = True) -> list[TagResult]:
        """Tag files (a folder: its audio files, sorted); one `TagResult` per file, in input order."""
        return list(self.iter_tag(paths, threshold=threshold, top=top, quiet=quiet))

    def iter_tag(self, paths: PathLike | Iterable[PathLike], *, threshold: float | None = None,
                 top: int | None = None, quiet: bool = True) -> Iterator[TagResult]:
        """As `tag`, yielding each result as soon as it is ready (for long lists of files)."""
        entries = expand_paths(paths)
        tagged = self.core.tag_files([f for f, error in entries if error is None], jobs=self.jobs, quiet=quiet)
        for file, error in entries:
            if error is not None:
                yield TagResult(file=file, tags={}, taggram=None, window_start_s=None, embeddings=None, error=error,
                                tag_names=self.tag_names)
            else:
                yield self.to_result(next(tagged), threshold=threshold, top=top)

    def tag_array(self, samples: np.ndarray, sample_rate: float, *, name: str = "<array>",
                  threshold: float | None = None, top: int | None = None) -> TagResult:
        """Tag audio given as an array of samples at `sample_rate` Hz (mixed to mono and resampled to the
        model's rate as a file would be).

        Args:
            samples: [n_samples] mono, or [n_samples, n_channels] / [n_channels, n_samples] (the channels on
                the shorter axis); float in [-1, 1] or integer PCM (scaled by its type), see the module docstring.
            sample_rate: Hz, a positive whole number.
            name: the result's `file`, and how errors name the array.

        Raises:
            OrpheusError: the array or rate is not one of those (the message says what was expected).
        """
        mono, rate, warnings = samples_to_mono(samples, sample_rate, name)
        result = self.core.tag_audio(name, resample(mono, rate, self.sample_rate))
        result.warnings[:0] = warnings
        return self.to_result(result, threshold=threshold, top=top)

    def to_result(self, result, *, threshold: float | None = None, top: int | None = None) -> TagResult:
        """A `TagResult` from an `orpheus.tagging.tagger.TrackTags`."""
        tags = {} if result.error is not None else dict(
            ranked_tags(self.tag_names, result.scores, threshold=threshold, top=top))
        return TagResult(file=result.file, tags=tags, taggram=result.window_scores,
                         window_start_s=result.window_start_s, embeddings=result.embeddings, error=result.error,
                         tag_names=self.tag_names, warnings=tuple(result.warnings))


MAX_CHANNELS = 8      # 7.1 surround; more is taken for a stack of clips, which tag_array does not take
EXPECTED_ARRAY = ("expected samples as [n_samples] mono or 2-D with the channels on the shorter axis "
                  f"([n_samples, n_channels] or [n_channels, n_samples], at most {MAX_CHANNELS} channels), "
                  "float in [-1, 1] or integer PCM")


def samples_to_mono(samples, sample_rate: float, name: str = "<array>") -> tuple[np.ndarray, int, list[str]]:
    """An array of samples as the field's libraries return it -> (float32 [n_samples] mono in [-1, 1], the
    sample rate as an int, warnings); the rules are the module docstring's.

    Raises:
        OrpheusError: naming `name` and what was expected.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not np.isfinite(sample_rate) or sample_rate <= 0 or sample_rate != int(sample_rate):
        raise ConfigError(f"{name}: sample_rate {sample_rate!r}; expected a positive whole number of Hz, e.g. 44100")
    if isinstance(samples, (bytes, bytearray, memoryview, str)):
        raise ConfigError(f"{name}: got {type(samples).__name__}; {EXPECTED_ARRAY} (decode a file by passing its "
                          "path to Tagger.tag)")
    try:
        array = np.asarray(samples)
    except ValueError as err:     # ragged nested lists
        raise ConfigError(f"{name}: not an array of samples ({err}); {EXPECTED_ARRAY}") from err
    if array.dtype.kind not in "fiu":
        raise ConfigError(f"{name}: dtype {array.dtype} is not real numbers; {EXPECTED_ARRAY}")
    if array.ndim not in (1, 2):
        raise ConfigError(f"{name}: a {array.ndim}-D array of shape {array.shape}; {EXPECTED_ARRAY}")
    if array.size == 0:
        raise ConfigError(f"{name}: empty array of shape {array.shape}; {EXPECTED_ARRAY}")
    if array.ndim == 2:
        if array.shape[0] == array.shape[1]:
            raise ConfigError(f"{name}: shape {array.shape} does not say which axis holds the channels; "
                              f"{EXPECTED_ARRAY}")
        if array.shape[0] < array.shape[1]:
            array = array.T
        if array.shape[1] > MAX_CHANNELS:
            raise ConfigError(f"{name}: shape {array.shape} would be {array.shape[1]} channels; {EXPECTED_ARRAY} "
                              "(tag several clips with one call each)")
    warnings = []
    if array.dtype.kind == "f":
        audio = array.astype(np.float32)
        if not np.isfinite(audio).all():
            raise ConfigError(f"{name}: holds NaN or infinite samples; {EXPECTED_ARRAY}")
        peak = float(np.abs(audio).max())
        if peak > 1.0 + 1e-6:
            warnings.append(f"float samples reach {peak:.4g}, beyond [-1, 1]: integer PCM cast to float? pass the "
                            "integer array itself (it is scaled by its type) or divide it by its full scale")
    else:
        full_scale = float(2 ** (array.dtype.itemsize * 8 - 1))
        centre = full_scale if array.dtype.kind == "u" else 0.0
        audio = ((array.astype(np.float64) - centre) / full_scale).astype(np.float32)
    return to_mono(audio), int(sample_rate), warnings


def tag(paths: PathLike | Sequence[PathLike], model: str | None = None, *, run_dir: PathLike | None = None,
        threshold: float | None = None, top: int | None = None, **options) -> list[TagResult]:
    """Tag audio files with a pretrained model (default `MSD_musicnn`) or a run directory.

    `options` are those of `Tagger` (window_s, hop_s, aggregate, embeddings, batch_size, jobs, precision).
    Returns one `TagResult` per file, in input order (a folder: its audio files, sorted).
    """
    return Tagger(model, run_dir=run_dir, **options).tag(paths, threshold=threshold, top=top)
