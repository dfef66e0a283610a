"""Writers of the MSD's files in the real formats: the summary HDF5 (`summary_tables`, `write_summary_h5`), the
Last.fm tags database (`write_lastfm_db`), `sid_mismatches.txt`, `msd_duplicates.txt` and mp3 previews
(`write_mp3`). The one writer of these formats: the miniature MSD (`write_summary`, `write_tags_db`,
`write_audio_job`, one preview per worker call) and the tests' small inputs both write through them.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import soundfile as sf

from msd.miniature import music_synth
from msd.miniature.msd_world import (
    SAMPLE_RATE,
    SHORT_CLIP_S,
    SILENCE_LENGTH_S,
    SILENCE_START_S,
    AudioJob,
    Row,
    raw_tags,
    stable_seed,
)
from orpheus.files import atomic_path


def summary_dtypes() -> dict[str, np.dtype]:
    """The compound dtypes of `metadata/songs`, `analysis/songs` and `musicbrainz/songs`."""
    text = "S256"
    metadata = [("analyzer_version", "S32"), ("artist_7digitalid", "<i4"), ("artist_familiarity", "<f8"),
                ("artist_hotttnesss", "<f8"), ("artist_id", "S18"), ("artist_latitude", "<f8"),
                ("artist_location", text), ("artist_longitude", "<f8"), ("artist_mbid", "S40"),
                ("artist_name", text), ("artist_playmeid", "<i4"), ("genre", "S32"), ("idx_artist_terms", "<i4"),
                ("idx_similar_artists", "<i4"), ("release", text), ("release_7digitalid", "<i4"),
                ("song_hotttnesss", "<f8"), ("song_id", "S18"), ("title", text), ("track_7digitalid", "<i4")]
    analysis = [("analysis_sample_rate", "<i4"), ("audio_md5", "S32"), ("danceability", "<f8"), ("duration", "<f8"),
                ("end_of_fade_in", "<f8"), ("energy", "<f8"), ("idx_bars_confidence", "<i4"),
                ("idx_bars_start", "<i4"), ("idx_beats_confidence", "<i4"), ("idx_beats_start", "<i4"),
                ("idx_sections_confidence", "<i4"), ("idx_sections_start", "<i4"),
                ("idx_segments_confidence", "<i4"), ("idx_segments_loudness_max", "<i4"),
                ("idx_segments_loudness_max_time", "<i4"), ("idx_segments_loudness_start", "<i4"),
                ("idx_segments_pitches", "<i4"), ("idx_segments_start", "<i4"), ("idx_segments_timbre", "<i4"),
                ("idx_tatums_confidence", "<i4"), ("idx_tatums_start", "<i4"), ("key", "<i4"),
                ("key_confidence", "<f8"), ("loudness", "<f8"), ("mode", "<i4"), ("mode_confidence", "<f8"),
                ("start_of_fade_out", "<f8"), ("tempo", "<f8"), ("time_signature", "<i4"),
                ("time_signature_confidence", "<f8"), ("track_id", "S18")]
    musicbrainz = [("idx_artist_mbtags", "<i4"), ("year", "<i4")]
    return {"metadata": np.dtype(metadata), "analysis": np.dtype(analysis), "musicbrainz": np.dtype(musicbrainz)}


def summary_tables(n_tracks: int) -> dict[str, np.ndarray]:
    """The `songs` tables of groups metadata, analysis and musicbrainz, zeroed, with the real compound dtypes."""
    return {group: np.zeros(n_tracks, dtype=dtype) for group, dtype in summary_dtypes().items()}


def write_summary_h5(path: str | os.PathLike, tables: dict[str, np.ndarray]) -> None:
    """Write `summary_tables` as `msd_summary_file.h5` does: GROUP/songs per group, atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as h5:
            for group, table in tables.items():
                h5.create_group(group, track_order=False).create_dataset("songs", data=table, track_times=False)


LASTFM_SCHEMA = ("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                 "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")


def write_lastfm_db(path: str | os.PathLike, tids: Sequence[str], tags: Sequence[str],
                    pairs: Sequence[tuple[int, int, float]], *, tid_rowids: Sequence[int] | None = None,
                    indexed: bool = True) -> None:
    """The Last.fm tags database (`lastfm_tags.db`) with its real schema, atomically.

    Args:
        tids: track ids, given ROWIDs `tid_rowids` (default 1, 2, ...).
        tags: tag names, given ROWIDs 1, 2, ... in order.
        pairs: tid_tag rows, (tid ROWID, tag ROWID, val).
        indexed: add the indexes on tid_tag's tid and tag columns.
    """
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.executescript(LASTFM_SCHEMA)
            rowids = tid_rowids or range(1, len(tids) + 1)
            con.executemany("INSERT INTO tids (ROWID, tid) VALUES (?, ?)", list(zip(rowids, tids)))
            con.executemany("INSERT INTO tags (ROWID, tag) VALUES (?, ?)", list(enumerate(tags, start=1)))
            con.executemany("INSERT INTO tid_tag (tid, tag, val) VALUES (?, ?, ?)", pairs)
            if indexed:
                con.execute("CREATE INDEX idx_tid_tag_tid ON tid_tag (tid)")
                con.execute("CREATE INDEX idx_tid_tag_tag ON tid_tag (tag)")
            con.commit()
        finally:
            con.close()


def write_summary(path: Path, rows: Sequence[Row], artists: Sequence[dict], rng: np.random.Generator) -> None:
    tables = summary_tables(len(rows))
    meta, ana, mb = tables["metadata"], tables["analysis"], tables["musicbrainz"]
    for i, row in enumerate(rows):
        artist = artists[row.artist]
        located = rng.random() < 0.4
        meta[i] = (b"", artist["digital_id"], artist["familiarity"], artist["hotttnesss"], artist["artist_id"],
                   rng.uniform(-60, 70) if located else np.nan, artist["location"].encode(),
                   rng.uniform(-150, 150) if located else np.nan, artist["mbid"], artist["name"].encode(), -1, b"",
                   0, 0, row.release.encode(), stable_seed(row.release) % 900000 + 1000,
                   rng.random() if rng.random() < 0.6 else np.nan, row.song_id, row.title.encode(), row.digital_id)
        duration = float(rng.uniform(120, 420))
        ana[i]["analysis_sample_rate"] = 22050
        ana[i]["audio_md5"] = hashlib.md5(row.track_id.encode()).hexdigest()
        ana[i]["duration"] = duration
        ana[i]["end_of_fade_in"] = rng.uniform(0, 2)
        ana[i]["key"], ana[i]["key_confidence"] = int(rng.integers(12)), rng.random()
        ana[i]["loudness"] = rng.uniform(-25, -3)
        ana[i]["mode"], ana[i]["mode_confidence"] = int(rng.integers(2)), rng.random()
        ana[i]["start_of_fade_out"] = duration - rng.uniform(0, 10)
        ana[i]["tempo"] = rng.uniform(60, 200)
        ana[i]["time_signature"], ana[i]["time_signature_confidence"] = 4, rng.random()
        ana[i]["track_id"] = row.track_id
        mb[i] = (0, row.year)
    write_summary_h5(path, tables)


def write_tags_db(path: Path, rows: Sequence[Row], rng: np.random.Generator) -> None:
    tagged = [rows[int(i)] for i in rng.permutation(len(rows)) if rows[int(i)].tagged and rows[int(i)].in_summary]
    tag_ids: dict[str, int] = {}
    pairs = []
    for tid_rowid, row in enumerate(tagged, start=1):
        for tag, val in raw_tags(rng, row):
            if tag not in tag_ids:
                tag_ids[tag] = len(tag_ids) + 1
            pairs.append((tid_rowid, tag_ids[tag], val))
    write_lastfm_db(path, [r.track_id for r in tagged], list(tag_ids), pairs)


def mismatch_text(mismatches: Sequence[tuple[Row, str, str]], artists: Sequence[dict]) -> str:
    lines = [f"ERROR: <{row.song_id} {row.track_id}> {artists[row.artist]['name']}  -  {row.title}  !=  "
             f"{other_artist}  -  {other_title}" for row, other_artist, other_title in mismatches]
    return "\n".join(sorted(lines)) + "\n"


def duplicates_text(groups: Sequence[list[Row]], artists: Sequence[dict], seed: int) -> str:
    lines = ["# MSD duplicates: songs found several times under different track ids",
             f"# synthetic miniature MSD (msd.synthetic, seed {seed})",
             "# format: a line '%<group id> <artist> - <title>' opens each group, then one track id per line"]
    for number, group in enumerate(groups, start=1):
        first = group[0]
        lines.append(f"%{stable_seed(seed, 'dup', number) % 100000} {artists[first.artist]['name']} - {first.title}")
        lines += sorted(r.track_id for r in group)
    return "\n".join(lines) + "\n"


def write_mp3(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *, quality: float | None = 0.9) -> int:
    """Encode float32 [n_samples, n_channels] audio in [-1, 1] as a VBR mp3, atomically.

    Args:
        quality: libsndfile's compression level for VBR, 0 (best, largest) .. 1 (smallest, fastest); None:
            libsndfile's default encoding.
    Returns:
        the file size in bytes.
    """
    buffer = io.BytesIO()
    encoding = {} if quality is None else {"bitrate_mode": "VARIABLE", "compression_level": quality}
    sf.write(buffer, audio, sample_rate, format="MP3", **encoding)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def write_audio_job(job: AudioJob) -> int:
    """Render, apply the fault and write one preview; returns its size in bytes (worker function)."""
    path = Path(job.path)
    if job.fault == "zero_byte":
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"")
        return 0
    if job.fault == "corrupt":
        data = np.random.default_rng(job.seed).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return len(data)
    duration_s = SHORT_CLIP_S if job.fault == "short" else job.duration_s
    audio = music_synth.render_track(job.tags, job.seed, duration_s=duration_s, sample_rate=SAMPLE_RATE)
    if job.fault == "silence":
        start = int(min(SILENCE_START_S, duration_s / 3) * SAMPLE_RATE)
        audio[start:start + int(SILENCE_LENGTH_S * SAMPLE_RATE)] = 0.0
    return write_mp3(path, audio, SAMPLE_RATE, quality=mp3_quality(duration_s))


def mp3_quality(duration_s: float) -> float:
    """VBR compression level that keeps a preview of `duration_s` above 100,000 bytes.

    0.9 (the fastest to encode) gives about 70 kbit/s of this music: enough from 20 s on. Shorter
    previews, and the 8 s short-clip fault (which only its length may give away), get more bits.
    """
    return 0.9 if duration_s >= 20 else 0.5 if duration_s >= 10 else 0.0
