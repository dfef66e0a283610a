"""What preprocessing will write, decided from the inputs alone before any decoding.

Input: ultimate.csv (track_id, artist_id, mp3_path[, audio_start, audio_end]), the clean tag database
(read with `orpheus.formats.tagdb`), an optional split file (track_id,split). Output: the vocabulary, every
shard in global order (train, then valid, then test) with its tracks, and the tracks left out.

    - split per track: from --split-file, else a SHA-256 of the artist id (of the track id when the
      artist is unknown) mapped to [0, 100) and cut at the --split percentages: no artist is in two splits;
    - tracks with no clean tag (or absent from --split-file) are skipped before any decoding;
    - --num-files shards are shared among the splits in proportion to their track counts (largest
      remainder; at least one per non-empty split, never more than its tracks);
    - within a split, tracks sorted by track id go round-robin to its shards (track k -> shard k mod n).

Every runner (and every --shard-index job) computes the same plan, so no coordination is needed.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from orpheus.errors import ConfigError, DataFormatError
from orpheus.files import require_dir, require_file
from orpheus.formats.dataset import SPLITS, shard_name
from orpheus.formats.tagdb import read_positive_tags



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


@dataclass
class Shard:
    """One output file: its split, its index within the split, the split's shard count, its tracks."""
    split: str
    index: int
    count: int
    tracks: list[Track] = field(default_factory=list)

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)


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

def read_split_file(split_path: str | Path) -> dict[str, str]:
    """track_id -> split from a CSV with columns track_id,split (split in train/valid/test)."""
    path = require_file(split_path, "split file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"track_id", "split"} <= set(reader.fieldnames or ()):
            raise DataFormatError(f"{path}: expected columns track_id,split")
        splits = {}
        for row in reader:
            if row["split"] not in SPLITS:
                raise DataFormatError(f"{path}: split {row['split']!r} of track {row['track_id']} is not one "
                                      f"of {', '.join(SPLITS)}")
            splits[row["track_id"]] = row["split"]
    return splits


def sha256_split(key: str, percentages: Sequence[float]) -> str:
    """The split of a stable key (an artist id): SHA-256 mapped to [0, 100), cut at the cumulative percentages.

    Preprocessing's splitter; the converters' (`msd.converters.common.salted_sha1_split`) is another algorithm, kept
    because each decides where users' tracks already are."""
    position = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64 * 100.0
    cumulative = 0.0
    for name, share in zip(SPLITS, percentages):
        cumulative += share
        if position < cumulative:
            return name
    return next(name for name, share in reversed(list(zip(SPLITS, percentages))) if share > 0)


def shards_per_split(track_counts: dict[str, int], num_files: int) -> dict[str, int]:
    """Share `num_files` among the splits in proportion to their track counts (largest remainder).

    Every split with tracks gets at least one shard and never more shards than tracks.
    """
    nonempty = [s for s in SPLITS if track_counts.get(s, 0) > 0]
    total = sum(track_counts.get(s, 0) for s in nonempty)
    if not nonempty:
        return {s: 0 for s in SPLITS}
    budget = max(num_files, len(nonempty))
    exact = {s: budget * track_counts[s] / total for s in nonempty}
    counts = {s: max(1, math.floor(exact[s])) for s in nonempty}
    by_remainder = sorted(nonempty, key=lambda s: (-(exact[s] - math.floor(exact[s])), SPLITS.index(s)))
    for s in by_remainder:
        if sum(counts.values()) >= budget:
            break
        counts[s] += 1
    while sum(counts.values()) > budget:  # the max(1, .) floors overshot: take from the largest
        largest = max((s for s in nonempty if counts[s] > 1), key=lambda s: counts[s])
        counts[largest] -= 1
    return {s: min(counts.get(s, 0), track_counts.get(s, 0)) for s in SPLITS}


def plan_shards(tracks_by_split: dict[str, list[Track]], num_files: int) -> list[Shard]:
    """All shards in global order (train, valid, test), each with its tracks (round-robin by track id)."""
    counts = shards_per_split({s: len(t) for s, t in tracks_by_split.items()}, num_files)
    shards: list[Shard] = []
    for split in SPLITS:
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
    vocabulary, tags_of = read_positive_tags(tag_path, [row["track_id"] for row in rows])
    if not vocabulary:
        raise DataFormatError(f"{tag_path}: the tags table is empty; rerun the tag cleaning")
    assigned = read_split_file(split_file) if split_file else None
    tracks_by_split: dict[str, list[Track]] = {s: [] for s in SPLITS}
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
            split_name = sha256_split(row["artist_id"] or tid, split)
        start = _optional_seconds(row.get("audio_start"), "audio_start", tid, csv_file) or 0.0
        end = _optional_seconds(row.get("audio_end"), "audio_end", tid, csv_file)
        tracks_by_split[split_name].append(Track(tid, row["artist_id"], row["mp3_path"], str(root / row["mp3_path"]),
                                                 start, end, tuple(tags_of[tid])))
    return vocabulary, plan_shards(tracks_by_split, num_files), skipped

