"""Per-track features and per-shard files: what every runner runs, in whichever process it runs.

`extract` decodes one track and computes its features; `encode_track` also serialises them into
its TFRecord (`orpheus.formats.tfrecord.encode_example` + `tfrecord_frame`: numpy only, no TensorFlow, so pool
workers start fast and the writer has only bytes left to write). `write_shard` writes one shard's
records, in track order, to a temporary name, then its sidecar `progress/{shard}.json` (settings
fingerprint, byte size, tracks written, per-tag positives, tracks skipped), then renames it into place. `shard_state` is the resume test: a shard is
done when its file and its sidecar exist, the fingerprint matches and the byte size agrees.
`aggregate` turns the sidecars into `dataset.json` and `skipped.csv`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from orpheus.formats import dataset as datasets
from orpheus.formats import tfrecord as spec

from orpheus.audio import decode as audio
from orpheus.audio import features as audio_features
from orpheus.errors import AudioDecodeError, ConfigError, MissingInputError, OutputWriteError
from orpheus.audio.features import compute_features
from orpheus.audio.settings import FORMATS, FeatureSettings
from orpheus.files import atomic_path, output_write_error, write_csv_atomic, write_json_atomic
from orpheus.ownership import FolderKind
from tfrecords.plan import Shard, Track

log = logging.getLogger(__name__)

PROGRESS_DIR = "progress"
# OUT_DIR, resumed by every run; written before the ownership marker, it holds dataset.json, progress/ or the lock
SHARD_FOLDER = FolderKind("shard folder", legacy=lambda folder: any(
    (folder / name).exists() for name in ("dataset.json", PROGRESS_DIR, ".preprocessing.lock")))
SKIPPED_CSV = "skipped.csv"


@contextlib.contextmanager
def output_errors(folder: str | Path) -> Iterator[None]:
    """Turn what the environment causes while writing into `folder` into one `OutputWriteError` line.

    `orpheus.files.output_write_error` words a full disk, a quota, a read-only or forbidden folder (also
    from TensorFlow's writer, which reports a full disk as `ResourceExhaustedError`); any other `OSError`
    met here (a path through a file, a folder that vanished) is named too. Partial files are removed
    by `atomic_path`, so nothing is left that a rerun would trust.
    """
    try:
        yield
    except Exception as err:
        tf = sys.modules.get("tensorflow")
        if not isinstance(err, OSError) and not (tf is not None and isinstance(err, tf.errors.OpError)):
            raise
        converted = output_write_error(err, folder)
        if converted is None and isinstance(err, OSError):
            where = f" ({err.filename})" if err.filename else ""
            converted = OutputWriteError(f"{folder}: cannot write the output{where}: {err.strerror or err}; "
                                         "choose a folder you can write to, then rerun to resume")
        if converted is None:
            raise
        raise converted from err


@dataclass(frozen=True)
class ShardSettings:
    """What is computed and stored per track: the feature settings, their storage and a length floor."""
    features: FeatureSettings
    storage: str
    min_length_s: float


def extract(track: Track, settings: ShardSettings) -> tuple[np.ndarray | None, str]:
    """Decode one track's span, resample, and compute its features.

    Returns:
        (features, reason): float32 [n_frames, n_bins] or [n_samples] (or float16 when stored so),
        and "" on success; (None, reason) when the track is skipped.
    """
    duration_s = None if track.end_s is None else max(track.end_s - track.start_s, 0.0)
    try:
        samples, rate = audio.load_audio(track.path, settings.features.sample_rate, offset_s=track.start_s,
                                         duration_s=duration_s)
    except (AudioDecodeError, MissingInputError, OSError) as err:  # unreadable: skipped, reported
        return None, f"decode failed: {err}"
    length_s = samples.shape[0] / rate
    if length_s < settings.min_length_s:
        return None, f"too short: {length_s:.2f} s < {settings.min_length_s:g} s"
    values = compute_features(samples, settings.features)
    return (values.astype(np.float16) if settings.storage == "float16" else values), ""


def encode_track(job: tuple[Track, ShardSettings, int]) -> tuple[bytes | None, str]:
    """`extract` one track, then serialise it: what a pool worker does for the writer.

    `job` is (track, settings, tags in the vocabulary). Returns (record, reason): the track's framed
    TFRecord (`orpheus.formats.tfrecord` example: tid, artist_id, features, multi-hot tags) and ""; or (None,
    reason) when the track is skipped.
    """
    track, settings, n_tags = job
    values, reason = extract(track, settings)
    if values is None:
        return None, reason
    multi_hot = np.zeros(n_tags, dtype=np.int64)
    multi_hot[list(track.tags)] = 1
    schema = spec.example_spec(settings.features.format, settings.features.n_bins, n_tags, settings.storage)
    example = {"tid": track.track_id, "artist_id": track.artist_id, "audio": values, "tags": multi_hot}
    return spec.tfrecord_frame(spec.encode_example(example, schema)), ""


@dataclass(frozen=True)
class RecordFile:
    """The framed records of consecutive tracks of one shard, in a temporary file of the shard folder
    (`record_file_path`): how a pool worker hands its tracks to the writer without sending their bytes
    through a pipe. `reasons[i]` is "" when the i-th track was written, else why it was skipped."""
    path: Path
    reasons: tuple[str, ...]


def record_file_path(out_dir: str | Path, shard_name: str, first_track: int) -> Path:
    """Where the records of a shard's tracks from `first_track` on are handed over; `remove_leftovers` finds it."""
    return Path(out_dir) / f".{shard_name}.from{first_track:06d}.tmp"


def encode_to_file(job: tuple[str, str, int, Sequence[Track], ShardSettings, int]) -> RecordFile:
    """Encode consecutive tracks of a shard (`encode_track`) into their `record_file_path`: a pool worker's task,
    and the first step of the Beam pipeline.

    `job` is (out_dir, shard name, index of the first track in the shard, the tracks, settings, tags in the
    vocabulary): only the task's own tracks travel to the worker, not the whole shard. The file is written
    under a name of its own, then renamed into place, so that a task Beam runs twice (a retried bundle) leaves
    one whole file.
    """
    out_dir, shard_name, first, tracks, settings, n_tags = job
    path = record_file_path(out_dir, shard_name, first)
    reasons = []
    with atomic_path(path) as partial, open(partial, "wb") as f:
        for track in tracks:
            record, reason = encode_track((track, settings, n_tags))
            if record is not None:
                f.write(record)
            reasons.append(reason)
    return RecordFile(path, tuple(reasons))


def _write_all(out, data: bytes) -> None:
    """Write all of `data` to the unbuffered binary file `out` (a raw write may take less)."""
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


def _append_file(out, path: Path) -> None:
    """Append the file `path` to the unbuffered binary file `out` (in the kernel where it can), then delete it."""
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                step = os.copy_file_range(src.fileno(), out.fileno(), size - copied)
                if step == 0:
                    break
                copied += step
        except OSError as err:  # another file system, or a kernel without it: copy through this process
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
        if copied < size:
            src.seek(copied)
            out.seek(0, os.SEEK_END)
            while block := src.read(1 << 20):
                _write_all(out, block)
    path.unlink()


def fingerprint(settings: ShardSettings, vocabulary: Sequence[str], shard: Shard) -> str:
    """A hash of everything that determines a shard's content: settings, vocabulary and its tracks."""
    payload = json.dumps({"settings": asdict(settings), "tags": list(vocabulary),
                          "tracks": [{k: v for k, v in asdict(t).items() if k != "path"} for t in shard.tracks]},
                         sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _sidecar_path(out_dir: Path, shard: Shard) -> Path:
    return out_dir / PROGRESS_DIR / f"{shard.name}.json"


def read_sidecar(out_dir: Path, shard: Shard) -> dict | None:
    path = _sidecar_path(out_dir, shard)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def shard_state(out_dir: Path, shard: Shard, expected_fingerprint: str) -> str:
    """"done" (complete and current), "stale" (complete, other settings or inputs) or "todo"."""
    sidecar = read_sidecar(out_dir, shard)
    path = out_dir / shard.name
    if sidecar is None or not path.is_file() or path.stat().st_size != sidecar.get("bytes"):
        return "todo"
    return "done" if sidecar.get("fingerprint") == expected_fingerprint else "stale"


def remove_leftovers(out_dir: Path, shard: Shard) -> None:
    """Delete temporary files a killed run left for `shard` (only one process ever writes a given shard): its
    own, its record files and theirs, being written (`record_file_path`, `orpheus.files.atomic_path`)."""
    for pattern in (f".{shard.name}.*.tmp", f"..{shard.name}.*.tmp"):
        for leftover in out_dir.glob(pattern):
            leftover.unlink(missing_ok=True)


def write_shard(out_dir: Path, shard: Shard, records: Iterable[tuple[bytes | None, str] | RecordFile],
                vocabulary: Sequence[str], shard_fingerprint: str, *, clean: bool = True) -> dict:
    """Write one shard from its tracks' encoded records, in track order, then its sidecar; rename.

    `records` holds, track after track, `encode_track` results or `RecordFile`s of consecutive
    tracks (appended, then deleted). `clean` first deletes what a killed run left; a caller whose
    workers are already writing this shard's record files cleans before it starts them.
    Returns the sidecar dict.
    """
    if clean:
        remove_leftovers(out_dir, shard)
    positives = np.zeros(len(vocabulary), dtype=np.int64)
    written: list[str] = []
    skipped: list[tuple[str, str]] = []
    tracks = iter(shard.tracks)

    def account(reason: str) -> None:
        track = next(tracks)
        if reason:
            skipped.append((track.track_id, reason))
        else:
            positives[list(track.tags)] += 1
            written.append(track.track_id)

    with atomic_path(out_dir / shard.name) as tmp:
        with open(tmp, "wb", buffering=0) as f:
            for item in records:
                if isinstance(item, RecordFile):
                    _append_file(f, item.path)
                    for reason in item.reasons:
                        account(reason)
                else:
                    record, reason = item
                    if record is not None:
                        _write_all(f, record)
                    account("" if record is not None else reason)
                if len(written) + len(skipped) == len(shard.tracks):
                    break
        sidecar = {"shard": shard.name, "split": shard.split, "fingerprint": shard_fingerprint,
                   "bytes": tmp.stat().st_size, "tracks": written, "positives": positives.tolist(),
                   "skipped": skipped}
        write_json_atomic(_sidecar_path(out_dir, shard), sidecar)
    log.debug("wrote %s: %d tracks, %d skipped", shard.name, len(written), len(skipped))
    return sidecar


def aggregate(out_dir: Path, shards: Sequence[Shard], settings: ShardSettings, vocabulary: Sequence[str],
              skipped_before: Sequence[tuple[str, str]], command: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Write dataset.json and skipped.csv from all shards' sidecars; returns (counts, skipped)."""
    counts = {s: 0 for s in datasets.SPLITS}
    positives = {s: np.zeros(len(vocabulary), dtype=np.int64) for s in datasets.SPLITS}
    skipped = list(skipped_before)
    for shard in shards:
        sidecar = read_sidecar(out_dir, shard)
        counts[shard.split] += len(sidecar["tracks"])
        positives[shard.split] += np.asarray(sidecar["positives"], dtype=np.int64)
        skipped.extend((tid, reason) for tid, reason in sidecar["skipped"])
    skipped.sort()
    write_csv_atomic(out_dir / SKIPPED_CSV, ("track_id", "reason"), skipped)
    info = datasets.DatasetInfo(
        features=settings.features, tags=tuple(vocabulary), storage=settings.storage, counts=counts, positives={s: p.tolist() for s, p in positives.items()}, command=command)
    datasets.write_dataset_info(out_dir, info)
    return counts, skipped


def resolve_settings(fmt: str, *, sample_rate: int, n_mels: int, preset: str, n_fft: int | None,
                     hop_length: int | None, n_mfcc: int, dtype: str, min_length_s: float) -> ShardSettings:
    """Fill preset defaults and validate; waveform carries no spectral settings, MFCC uses the dB log-mel."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if sample_rate <= 0 or min_length_s < 0:
        raise ConfigError(f"--sample-rate must be positive and --min-length-s non-negative, got {sample_rate}, "
                          f"{min_length_s}")
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"--dtype must be float32 or float16, got {dtype!r}")
    if fmt == "waveform":
        return ShardSettings(FeatureSettings(fmt, sample_rate), dtype, min_length_s)
    if fmt == "mfcc":
        preset = "db"
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"--n-mfcc must be between 1 and --n-mels ({n_mels}), got {n_mfcc}")
    if preset not in audio_features.PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; expected one of {', '.join(audio_features.PRESETS)}")
    chosen = audio_features.PRESETS[preset]
    n_fft = chosen.n_fft if n_fft is None else n_fft
    hop_length = chosen.hop_length if hop_length is None else hop_length
    if n_mels <= 0 or n_fft <= 0 or hop_length <= 0:
        raise ConfigError(f"--n-mels, --n-fft and --hop-length must be positive, got {n_mels}, {n_fft}, {hop_length}")
    features = FeatureSettings(fmt, sample_rate, n_mels, n_fft, hop_length, preset, n_mfcc if fmt == "mfcc" else None)
    return ShardSettings(features, dtype, min_length_s)

