"""Preprocessing stage: `ultimate.csv` + `clean_lastfm.db` + audio -> sharded TFRecords + `dataset.json`.

Inputs:
    ultimate.csv      one row per track: track_id, artist_id, mp3_path (relative to --root-dir); when the
                      columns audio_start/audio_end (seconds) exist, only that span is decoded: this is
                      how the original urop2019 Orpheus dropped the leading and trailing silence found by
                      the cleaning stage. An empty value means the start / the end of the file.
    clean_lastfm.db   tables tids(tid), tags(tag), tid_tag(tid, tag, val) joined on ROWIDs, read with
                      `msd.lastfm.LastFm`; every tid_tag row is a positive (`multi_hot`, min_val 0).
                      Tag output order = ROWID order of the `tags` table.

Outputs in OUT_DIR:
    {split}-{i:05d}-of-{n:05d}.tfrecord   examples per `orpheus.spec` (tid, artist_id, audio, tags)
    dataset.json                         `orpheus.spec.DatasetInfo`: settings, tags, counts, command
    skipped.csv                          track_id,reason for every track left out
    progress/{shard}.json                per-shard sidecar: settings fingerprint, byte size, tracks
                                         written, per-tag positives, tracks skipped in that shard

How the work is split, from the inputs alone (so `--shard-index` needs no coordination):
    - split per track: from --split-file, else a SHA-256 of the artist id (of the track id when the
      artist is unknown) mapped to [0, 100) and cut at the --split percentages: no artist is in two splits;
    - tracks with no clean tag (or absent from --split-file) are skipped before any decoding;
    - --num-files shards are shared among the splits in proportion to their track counts (largest
      remainder; at least one per non-empty split, never more than its tracks); global shard order is
      train shards, then valid, then test: `--shard-index I` indexes that order;
    - within a split, tracks sorted by track id go round-robin to its shards (track k -> shard k mod n).

Resume: a shard is written to a temporary name by the main process (workers only decode and compute
features, in numpy) and renamed when complete, after its sidecar. A shard counts as done when its file
and its sidecar exist, the fingerprint matches and the byte size agrees; anything else is redone.
`dataset.json` and `skipped.csv` aggregate the sidecars and are written by whichever run finds all
shards done (with --shard-index, the last array job; or a plain rerun, which then only aggregates).

float16 storage (`--dtype float16`) halves the size. Its rounding error, measured on the 50 shared
music clips (16 kHz): log-mel "db" preset at most 0.0156 dB (values within [-58, 36] dB), "musicnn"
preset 0.002, MFCC 0.125 (coefficient 0 reaches +-500), waveform 4.9e-4.
"""

import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import csv
import hashlib
import itertools
import json
import logging
import math
import shlex
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from orpheus import audio
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import AudioDecodeError, ConfigError, DataFormatError, MissingInputError, OutputExistsError
from orpheus.files import atomic_path, require_dir, require_file, write_csv_atomic, write_json_atomic
from orpheus.parallel import parallel_map

# orpheus.spec imports TensorFlow; it is imported only where shards are written (the main process), so
# the worker processes, which import this module, stay numpy-only and start fast.

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")  # == orpheus.spec.SPLITS, checked in `run`
PROGRESS_DIR = "progress"
SKIPPED_CSV = "skipped.csv"
# Tracks whose features the workers may compute ahead of the writer (the main process), in one
# process pool for the whole run: bounds the features held in memory when the writer is slower.
TRACKS_IN_FLIGHT_PER_JOB = 128
IN_FLIGHT_MEMORY_BYTES = 1 << 30
ESTIMATE_TRACK_S = 60.0  # MSD previews are 30 s; allow for longer tracks


@dataclass(frozen=True)
class Track:
    """One row of ultimate.csv that will be decoded.

    mp3_path: as in ultimate.csv, relative to --root-dir; path: the same, resolved (not part of the
    shard fingerprint, so moving the audio tree does not invalidate finished shards);
    start_s/end_s: the span to decode in seconds (end None = to the end);
    tags: indices into the vocabulary of the positive tags, sorted.
    """
    track_id: str
    artist_id: str
    mp3_path: str
    path: str
    start_s: float = 0.0
    end_s: float | None = None
    tags: tuple[int, ...] = ()


@dataclass(frozen=True)
class FeatureSettings(audio.FeatureSettings):
    """What is computed per track: the `orpheus.audio.features` arguments + storage + length floor."""
    storage: str
    min_length_s: float


@dataclass
class Shard:
    """One output file: its split, its index within the split, the split's shard count, its tracks."""
    split: str
    index: int
    count: int
    tracks: list[Track] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.tfrecord"  # == orpheus.spec.shard_name


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def read_tracks_csv(csv_path: str | Path) -> list[dict[str, str]]:
    """Rows of ultimate.csv as dicts, sorted by track id; checks the required columns and unique ids."""
    path = require_file(csv_path, "track table (ultimate.csv)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"track_id", "artist_id", "mp3_path"} - set(reader.fieldnames or ())
        if missing:
            raise DataFormatError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected the "
                                  "ultimate.csv written by the cleaning stage (msd/silence.py)")
        rows = list(reader)
    seen: set[str] = set()
    for row in rows:
        if row["track_id"] in seen:
            raise DataFormatError(f"{path}: track {row['track_id']} appears twice; deduplicate the table")
        seen.add(row["track_id"])
    return sorted(rows, key=lambda row: row["track_id"])


def _optional_seconds(value: str | None, column: str, track_id: str, path: Path) -> float | None:
    if value is None or value.strip() == "" or value.strip().lower() == "nan":
        return None
    try:
        return float(value)
    except ValueError as err:
        raise DataFormatError(f"{path}: {column}={value!r} of track {track_id} is not a number of seconds") from err


def read_track_tags(tag_path: str | Path, track_ids: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    """Read the clean tag database through the cleaning stage's query layer (`msd.lastfm.LastFm`).

    Args:
        tag_path: clean_lastfm.db (tables tids, tags, tid_tag joined on ROWIDs).
        track_ids: the tracks of interest.

    Returns:
        (vocabulary, tags_of): tag names in ROWID order, and for each track id with at least one
        tag the sorted indices of its tags in that vocabulary.

    Raises:
        MissingInputError / DataFormatError: the file is absent, not SQLite, or lacks the schema.
    """
    from msd.lastfm import LastFm  # pandas: needed by the main process only, not by the workers

    with LastFm(tag_path) as db:
        vocabulary = db.vocabulary()
        duplicated = sorted(tag for tag, n in Counter(vocabulary).items() if n > 1)
        if duplicated:
            raise DataFormatError(f"{tag_path}: tag(s) {duplicated[:3]} appear twice in the tags table; pass the "
                                  "clean database from msd/lastfm_cleaning.py, not the raw one")
        labels = db.multi_hot(list(track_ids), vocabulary)  # uint8 [n_tracks, n_tags]
    tags_of: dict[str, list[int]] = {}
    for row, col in zip(*np.nonzero(labels)):
        tags_of.setdefault(track_ids[row], []).append(int(col))
    return vocabulary, tags_of


def read_split_file(split_path: str | Path) -> dict[str, str]:
    """track_id -> split from a CSV with columns track_id,split (split in train/valid/test)."""
    path = require_file(split_path, "split file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"track_id", "split"} <= set(reader.fieldnames or ()):
            raise DataFormatError(f"{path}: expected columns track_id,split")
        splits = {}
        for row in reader:
            if row["split"] not in SPLIT_NAMES:
                raise DataFormatError(f"{path}: split {row['split']!r} of track {row['track_id']} is not one "
                                      f"of {', '.join(SPLIT_NAMES)}")
            splits[row["track_id"]] = row["split"]
    return splits


# ---------------------------------------------------------------------------------------------
# Deterministic planning
# ---------------------------------------------------------------------------------------------

def hash_split(key: str, percentages: Sequence[float]) -> str:
    """The split of a stable key (an artist id): SHA-256 mapped to [0, 100), cut at the cumulative percentages."""
    position = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64 * 100.0
    cumulative = 0.0
    for name, share in zip(SPLIT_NAMES, percentages):
        cumulative += share
        if position < cumulative:
            return name
    return next(name for name, share in reversed(list(zip(SPLIT_NAMES, percentages))) if share > 0)


def shards_per_split(track_counts: dict[str, int], num_files: int) -> dict[str, int]:
    """Share `num_files` among the splits in proportion to their track counts (largest remainder).

    Every split with tracks gets at least one shard and never more shards than tracks.
    """
    nonempty = [s for s in SPLIT_NAMES if track_counts.get(s, 0) > 0]
    total = sum(track_counts.get(s, 0) for s in nonempty)
    if not nonempty:
        return {s: 0 for s in SPLIT_NAMES}
    budget = max(num_files, len(nonempty))
    exact = {s: budget * track_counts[s] / total for s in nonempty}
    counts = {s: max(1, math.floor(exact[s])) for s in nonempty}
    by_remainder = sorted(nonempty, key=lambda s: (-(exact[s] - math.floor(exact[s])), SPLIT_NAMES.index(s)))
    for s in by_remainder:
        if sum(counts.values()) >= budget:
            break
        counts[s] += 1
    while sum(counts.values()) > budget:  # the max(1, .) floors overshot: take from the largest
        largest = max((s for s in nonempty if counts[s] > 1), key=lambda s: counts[s])
        counts[largest] -= 1
    return {s: min(counts.get(s, 0), track_counts.get(s, 0)) for s in SPLIT_NAMES}


def plan_shards(tracks_by_split: dict[str, list[Track]], num_files: int) -> list[Shard]:
    """All shards in global order (train, valid, test), each with its tracks (round-robin by track id)."""
    counts = shards_per_split({s: len(t) for s, t in tracks_by_split.items()}, num_files)
    shards: list[Shard] = []
    for split in SPLIT_NAMES:
        n = counts[split]
        split_shards = [Shard(split, i, n) for i in range(n)]
        for k, track in enumerate(sorted(tracks_by_split.get(split, []), key=lambda t: t.track_id)):
            split_shards[k % n].tracks.append(track)
        shards.extend(split_shards)
    return shards


def plan(csv_path: str | Path, tag_path: str | Path, root_dir: str | Path, *, split: Sequence[float],
         split_file: str | Path | None, num_files: int) -> tuple[list[str], list[Shard], list[tuple[str, str]]]:
    """Read the inputs and decide everything that does not need decoding.

    Returns:
        (vocabulary, shards, skipped): tag names in output order; all shards in global order; and
        (track_id, reason) of the tracks left out before decoding (no clean tag, not in the split file).
    """
    if len(split) != 3 or any(p < 0 for p in split) or abs(sum(split) - 100.0) > 1e-6:
        raise ConfigError(f"--split must be three non-negative percentages summing to 100, got {list(split)}")
    if num_files < 1:
        raise ConfigError(f"--num-files must be at least 1, got {num_files}")
    rows = read_tracks_csv(csv_path)
    root = require_dir(root_dir, "audio root (--root-dir)")
    vocabulary, tags_of = read_track_tags(tag_path, [row["track_id"] for row in rows])
    if not vocabulary:
        raise DataFormatError(f"{tag_path}: the tags table is empty; rerun the tag cleaning")
    assigned = read_split_file(split_file) if split_file else None
    tracks_by_split: dict[str, list[Track]] = {s: [] for s in SPLIT_NAMES}
    skipped: list[tuple[str, str]] = []
    csv_file = Path(csv_path)
    for row in rows:
        tid = row["track_id"]
        if tid not in tags_of:
            skipped.append((tid, "no clean tag"))
            continue
        if assigned is not None:
            if tid not in assigned:
                skipped.append((tid, "not in --split-file"))
                continue
            split_name = assigned[tid]
        else:
            split_name = hash_split(row["artist_id"] or tid, split)
        start = _optional_seconds(row.get("audio_start"), "audio_start", tid, csv_file) or 0.0
        end = _optional_seconds(row.get("audio_end"), "audio_end", tid, csv_file)
        tracks_by_split[split_name].append(Track(tid, row["artist_id"], row["mp3_path"], str(root / row["mp3_path"]),
                                                 start, end, tuple(tags_of[tid])))
    return vocabulary, plan_shards(tracks_by_split, num_files), skipped


# ---------------------------------------------------------------------------------------------
# Per-track work (worker processes: numpy only)
# ---------------------------------------------------------------------------------------------

def extract(job: tuple[Track, FeatureSettings]) -> tuple[np.ndarray | None, str]:
    """Decode one track's span, resample, and compute its features.

    Returns:
        (features, reason): float32 [n_frames, n_bins] or [n_samples] (or float16 when stored so),
        and "" on success; (None, reason) when the track is skipped.
    """
    track, settings = job
    duration_s = None if track.end_s is None else max(track.end_s - track.start_s, 0.0)
    try:
        samples, rate = audio.load_audio(track.path, settings.sample_rate, offset_s=track.start_s,
                                         duration_s=duration_s)
    except (AudioDecodeError, MissingInputError) as err:
        return None, f"decode failed: {err}"
    length_s = samples.shape[0] / rate
    if length_s < settings.min_length_s:
        return None, f"too short: {length_s:.2f} s < {settings.min_length_s:g} s"
    values = settings.compute(samples)
    # float16 conversion here halves what travels back from the worker; the spec stores the same bytes.
    return (values.astype(np.float16) if settings.storage == "float16" else values), ""


# ---------------------------------------------------------------------------------------------
# Shards, sidecars, aggregation (main process)
# ---------------------------------------------------------------------------------------------

def fingerprint(settings: FeatureSettings, vocabulary: Sequence[str], shard: Shard) -> str:
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
    """Delete temporary files a killed run left for `shard` (only one process ever writes a given shard)."""
    for leftover in out_dir.glob(f".{shard.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def write_shard(out_dir: Path, shard: Shard, results: Iterable[tuple[np.ndarray | None, str]],
                settings: FeatureSettings, vocabulary: Sequence[str], shard_fingerprint: str) -> dict:
    """Write one shard from its tracks' `extract` results (in track order), then its sidecar; rename.

    Returns the sidecar dict.
    """
    # TensorFlow is imported after the first result is in: with a process pool, its import (seconds)
    # overlaps the workers' decoding instead of delaying their start.
    results = iter(results)
    first = list(itertools.islice(results, 1))
    import tensorflow as tf

    from orpheus import spec

    if SPLIT_NAMES != tuple(spec.SPLITS) or shard.name != spec.shard_name(shard.split, shard.index, shard.count):
        raise DataFormatError("orpheus.spec changed its splits or shard names; update tfrecords/preprocessing.py")
    schema = spec.example_spec(settings.format, settings.n_mfcc if settings.format == "mfcc" else settings.n_mels,
                               len(vocabulary), settings.storage)
    remove_leftovers(out_dir, shard)
    positives = np.zeros(len(vocabulary), dtype=np.int64)
    written: list[str] = []
    skipped: list[tuple[str, str]] = []
    with atomic_path(out_dir / shard.name) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for track, (values, reason) in zip(shard.tracks, itertools.chain(first, results)):
                if values is None:
                    skipped.append((track.track_id, reason))
                    continue
                multi_hot = np.zeros(len(vocabulary), dtype=np.int64)
                multi_hot[list(track.tags)] = 1
                example = {"tid": track.track_id, "artist_id": track.artist_id, "audio": values, "tags": multi_hot}
                # deterministic=True sorts the feature map: the same bytes from every process (upb seeds its hash)
                writer.write(spec.serialize(spec.to_example(example, schema)))
                positives += multi_hot
                written.append(track.track_id)
        sidecar = {"shard": shard.name, "split": shard.split, "fingerprint": shard_fingerprint,
                   "bytes": tmp.stat().st_size, "tracks": written, "positives": positives.tolist(),
                   "skipped": skipped}
        write_json_atomic(_sidecar_path(out_dir, shard), sidecar)
    log.debug("wrote %s: %d tracks, %d skipped", shard.name, len(written), len(skipped))
    return sidecar


def aggregate(out_dir: Path, shards: Sequence[Shard], settings: FeatureSettings, vocabulary: Sequence[str],
              skipped_before: Sequence[tuple[str, str]], command: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Write dataset.json and skipped.csv from all shards' sidecars; returns (counts, skipped)."""
    from orpheus import spec

    counts = {s: 0 for s in SPLIT_NAMES}
    positives = {s: np.zeros(len(vocabulary), dtype=np.int64) for s in SPLIT_NAMES}
    skipped = list(skipped_before)
    for shard in shards:
        sidecar = read_sidecar(out_dir, shard)
        counts[shard.split] += len(sidecar["tracks"])
        positives[shard.split] += np.asarray(sidecar["positives"], dtype=np.int64)
        skipped.extend((tid, reason) for tid, reason in sidecar["skipped"])
    skipped.sort()
    write_csv_atomic(out_dir / SKIPPED_CSV, ("track_id", "reason"), skipped)
    spectral = settings.format != "waveform"
    info = spec.DatasetInfo(
        format=settings.format, sample_rate=settings.sample_rate, tags=tuple(vocabulary),
        n_mels=settings.n_mels if spectral else None, n_fft=settings.n_fft if spectral else None,
        hop_length=settings.hop_length if spectral else None, preset=settings.preset if spectral else None,
        n_mfcc=settings.n_mfcc if settings.format == "mfcc" else None, storage=settings.storage,
        counts=counts, positives={s: p.tolist() for s, p in positives.items()}, command=command)
    spec.write_dataset_info(out_dir, info)
    return counts, skipped


def resolve_settings(fmt: str, *, sample_rate: int, n_mels: int, preset: str, n_fft: int | None,
                     hop_length: int | None, n_mfcc: int, dtype: str, min_length_s: float) -> FeatureSettings:
    """Fill preset defaults and validate; waveform carries no spectral settings, MFCC uses the dB log-mel."""
    if fmt not in ("waveform", "log-mel-spectrogram", "mfcc"):
        raise ConfigError(f"unknown format {fmt!r}; expected waveform, log-mel-spectrogram or mfcc")
    if sample_rate <= 0 or min_length_s < 0:
        raise ConfigError(f"--sr must be positive and --min-length-s non-negative, got {sample_rate}, {min_length_s}")
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"--dtype must be float32 or float16, got {dtype!r}")
    if fmt == "waveform":
        return FeatureSettings(fmt, sample_rate, None, None, None, None, None, dtype, min_length_s)
    if fmt == "mfcc":
        preset = "db"
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"--n-mfcc must be between 1 and --mels ({n_mels}), got {n_mfcc}")
    if preset not in audio.PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; expected one of {', '.join(audio.PRESETS)}")
    chosen = audio.PRESETS[preset]
    n_fft = chosen.n_fft if n_fft is None else n_fft
    hop_length = chosen.hop_length if hop_length is None else hop_length
    if n_mels <= 0 or n_fft <= 0 or hop_length <= 0:
        raise ConfigError(f"--mels, --n-fft and --hop-length must be positive, got {n_mels}, {n_fft}, {hop_length}")
    return FeatureSettings(fmt, sample_rate, n_mels, n_fft, hop_length, preset,
                           n_mfcc if fmt == "mfcc" else None, dtype, min_length_s)


def tracks_in_flight(settings: FeatureSettings, jobs: int) -> int:
    """Tracks whose features may be computed ahead of the writer: `TRACKS_IN_FLIGHT_PER_JOB` per job,
    fewer when their features (estimated for `ESTIMATE_TRACK_S`-second tracks) would exceed
    `IN_FLIGHT_MEMORY_BYTES`."""
    values_per_s = settings.sample_rate if settings.format == "waveform" else (
        settings.sample_rate / settings.hop_length * (settings.n_mfcc or settings.n_mels))
    track_bytes = values_per_s * ESTIMATE_TRACK_S * (2 if settings.storage == "float16" else 4)
    by_memory = int(IN_FLIGHT_MEMORY_BYTES // max(track_bytes, 1))
    return max(max(1, jobs) * 4, min(max(1, jobs) * TRACKS_IN_FLIGHT_PER_JOB, by_memory))


def run(fmt: str, out_dir: str | Path, *, csv_path: str | Path, tag_path: str | Path, root_dir: str | Path,
        sample_rate: int = 16000, n_mels: int = 96, preset: str = "db", n_fft: int | None = None,
        hop_length: int | None = None, n_mfcc: int = 20, dtype: str = "float32", min_length_s: float = 15.0,
        num_files: int = 100, split: Sequence[float] = (80, 10, 10), split_file: str | Path | None = None,
        shard_index: int | None = None, jobs: int = 1, overwrite: bool = False, quiet: bool = False,
        command: str = "") -> dict:
    """Write (or resume) the shard folder `out_dir`.

    Returns:
        A summary: {"shards_written", "shards_done", "shards_total", "counts" (per split, or None
        until all shards are done), "skipped" (list of (track_id, reason), or None likewise)}.
    """
    settings = resolve_settings(fmt, sample_rate=sample_rate, n_mels=n_mels, preset=preset, n_fft=n_fft,
                                hop_length=hop_length, n_mfcc=n_mfcc, dtype=dtype, min_length_s=min_length_s)
    vocabulary, shards, skipped_before = plan(csv_path, tag_path, root_dir, split=split, split_file=split_file,
                                              num_files=num_files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if shard_index is not None and not 0 <= shard_index < len(shards):
        raise ConfigError(f"--shard-index {shard_index} out of range: this input has {len(shards)} shards "
                          f"(0..{len(shards) - 1})")
    planned = {s.name for s in shards}
    strays = sorted(p for p in out.glob("*-*-of-*.tfrecord") if p.name not in planned)
    if strays and shard_index is None:
        if not overwrite:
            raise OutputExistsError(f"{out}: holds shards of another plan ({strays[0].name}, ...); "
                                    "pass --overwrite to replace them or choose another OUT_DIR")
        for path in strays:
            path.unlink()
            (out / PROGRESS_DIR / f"{path.name}.json").unlink(missing_ok=True)
    fingerprints = {s.name: fingerprint(settings, vocabulary, s) for s in shards}
    selected = shards if shard_index is None else [shards[shard_index]]
    todo: list[Shard] = []
    for shard in selected:
        state = shard_state(out, shard, fingerprints[shard.name])
        if state == "stale" and not overwrite:
            raise OutputExistsError(f"{out / shard.name}: written with other settings or inputs; pass "
                                    "--overwrite to replace it or choose another OUT_DIR")
        if state != "done":
            todo.append(shard)
        else:
            remove_leftovers(out, shard)
    log.info("%d shard(s) in all; %d to write, %d already complete", len(selected), len(todo),
             len(selected) - len(todo))
    items = [(track, settings) for shard in todo for track in shard.tracks]
    stream = parallel_map(extract, items, jobs=jobs, desc="tracks", quiet=quiet,
                          max_pending=tracks_in_flight(settings, jobs))
    for shard in todo:
        write_shard(out, shard, (next(stream) for _ in shard.tracks), settings, vocabulary, fingerprints[shard.name])
    done = [s for s in shards if shard_state(out, s, fingerprints[s.name]) == "done"]
    summary = {"shards_written": len(todo), "shards_done": len(done), "shards_total": len(shards),
               "counts": None, "skipped": None}
    if len(done) == len(shards):
        summary["counts"], summary["skipped"] = aggregate(out, shards, settings, vocabulary, skipped_before, command)
    else:
        log.info("%d of %d shards complete; dataset.json and skipped.csv are written when the last one is",
                 len(done), len(shards))
    return summary


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

EPILOG = """examples:
  # log-mel in dB (the urop2019 recipe), 100 shards, 80/10/10 artist-separated split, all cores
  python tfrecords/preprocessing.py log-mel-spectrogram shards/ --csv-path ultimate.csv \\
      --tag-path clean_lastfm.db --root-dir /data/msd/audio

  # musicnn log-mel stored as float16, a published split
  python -m tfrecords.preprocessing log-mel-spectrogram shards_mn/ --preset musicnn --dtype float16 \\
      --csv-path ultimate.csv --tag-path clean_lastfm.db --root-dir audio --split-file split.csv

  # one shard per array job (Slurm: --shard-index $SLURM_ARRAY_TASK_ID), 20 MFCCs
  python tfrecords/preprocessing.py mfcc shards_mfcc/ --n-mfcc 20 --num-files 64 --shard-index 7 \\
      --csv-path ultimate.csv --tag-path clean_lastfm.db --root-dir audio

Shards are numbered train first, then valid, then test (--shard-index indexes that order).
A rerun resumes: complete shards are kept, incomplete ones redone. float16 error (measured on
music): log-mel db <= 0.0156 dB, musicnn <= 0.002, MFCC <= 0.125, waveform <= 4.9e-4."""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("preprocessing.py", "Decode, resample and compute features of the tracks of ultimate.csv "
                         "and write them with their clean tags as sharded TFRecords + dataset.json.", EPILOG)
    parser.add_argument("format", choices=("waveform", "log-mel-spectrogram", "mfcc"), help="feature to store")
    parser.add_argument("out_dir", help="output folder of shards, dataset.json, skipped.csv")
    parser.add_argument("--csv-path", required=True, help="ultimate.csv from the cleaning stage")
    parser.add_argument("--tag-path", required=True, help="clean_lastfm.db from the cleaning stage")
    parser.add_argument("--root-dir", required=True, help="folder the mp3_path column is relative to")
    parser.add_argument("--sr", type=int, default=16000, help="sample rate of the decoded audio, Hz")
    parser.add_argument("--mels", type=int, default=96, help="mel bands (log-mel, and under the MFCC)")
    parser.add_argument("--preset", choices=tuple(audio.PRESETS), default="db",
                        help="log-mel recipe: db = power_to_db, n_fft 2048, hop 512; musicnn = log10(10000x+1), "
                             "n_fft 512, hop 256 (MFCC always uses db)")
    parser.add_argument("--n-fft", type=int, default=None, help="STFT size in samples; None = the preset's")
    parser.add_argument("--hop-length", type=int, default=None, help="STFT hop in samples; None = the preset's")
    parser.add_argument("--n-mfcc", type=int, default=20, help="MFCC coefficients (mfcc format)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage of the feature; float16 halves the size (error: see below)")
    parser.add_argument("--min-length-s", type=float, default=15.0,
                        help="skip tracks shorter than this (one model window), seconds")
    parser.add_argument("--num-files", type=int, default=100, help="shards in all, shared among the splits")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split", type=float, nargs=3, default=(80.0, 10.0, 10.0), metavar=("TRAIN", "VALID", "TEST"),
                       help="percentages, assigned by a stable hash of the artist id")
    group.add_argument("--split-file", default=None, help="CSV track_id,split deciding each track's split")
    parser.add_argument("--shard-index", type=int, default=None,
                        help="write only this shard (0-based, train then valid then test), for job arrays")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def command_line(argv: Sequence[str]) -> str:
    """The command as recorded in dataset.json: the same for every --shard-index job."""
    kept: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg == "--shard-index":
            skip_next = True
        elif not arg.startswith("--shard-index="):
            kept.append(arg)
    return shlex.join(["python", "tfrecords/preprocessing.py", *kept])


def _main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    summary = run(args.format, args.out_dir, csv_path=args.csv_path, tag_path=args.tag_path, root_dir=args.root_dir,
                  sample_rate=args.sr, n_mels=args.mels, preset=args.preset, n_fft=args.n_fft,
                  hop_length=args.hop_length, n_mfcc=args.n_mfcc, dtype=args.dtype, min_length_s=args.min_length_s,
                  num_files=args.num_files, split=args.split, split_file=args.split_file,
                  shard_index=args.shard_index, jobs=args.jobs, overwrite=args.overwrite, quiet=args.quiet,
                  command=command_line(argv))
    print(f"shards: {summary['shards_written']} written, "
          f"{summary['shards_done']} of {summary['shards_total']} complete")
    if summary["counts"] is not None:
        counts = ", ".join(f"{split} {n}" for split, n in summary["counts"].items())
        reasons = Counter(reason.split(":")[0] for _, reason in summary["skipped"])
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) or "none"
        print(f"tracks written: {sum(summary['counts'].values())} ({counts}); skipped: "
              f"{len(summary['skipped'])} ({detail}), listed in {Path(args.out_dir) / SKIPPED_CSV}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(build_parser(), argv, lambda args: _main(args, argv))


if __name__ == "__main__":
    sys.exit(main())
