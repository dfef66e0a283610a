"""Writers of tiny MSD inputs in the real formats, shared by the cleaning-stage tests.

The summary HDF5 has the real layout (groups metadata/analysis/musicbrainz, compound `songs` tables
with fixed-length byte strings), the Last.fm database the real schema (ROWID ids), and mp3s are
really encoded with soundfile.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100


def track_id(i: int) -> str:
    return f"TR{i:016d}"


def write_summary_h5(path: Path, rows: Sequence[dict]) -> Path:
    """rows: dicts with track_id, song_id, artist_id, track_7digitalid, year (title etc. are filled in)."""
    n = len(rows)
    meta = np.zeros(n, dtype=[("artist_id", "S18"), ("artist_name", "S32"), ("release", "S32"), ("song_id", "S18"),
                              ("title", "S32"), ("track_7digitalid", "<i4")])
    analysis = np.zeros(n, dtype=[("duration", "<f8"), ("track_id", "S18")])
    music = np.zeros(n, dtype=[("year", "<i4")])
    for i, row in enumerate(rows):
        meta[i] = (row["artist_id"], "artist", "release", row["song_id"], "title", row["track_7digitalid"])
        analysis[i] = (30.0, row["track_id"])
        music[i] = (row.get("year", 0),)
    with h5py.File(path, "w") as h5:
        for group, table in (("metadata", meta), ("analysis", analysis), ("musicbrainz", music)):
            h5.create_group(group).create_dataset("songs", data=table)
    return path


def write_lastfm_db(path: Path, tids: Sequence[str], tags: Sequence[str],
                    pairs: Sequence[tuple[int, int, float]], tid_rowids: Sequence[int] | None = None) -> Path:
    """A Last.fm database with the real schema; pairs are (tid ROWID, tag ROWID, val)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tids (tid TEXT)")
    conn.execute("CREATE TABLE tags (tag TEXT)")
    conn.execute("CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT)")
    rowids = tid_rowids or range(1, len(tids) + 1)
    conn.executemany("INSERT INTO tids (ROWID, tid) VALUES (?, ?)", zip(rowids, tids))
    conn.executemany("INSERT INTO tags (tag) VALUES (?)", ((t,) for t in tags))
    conn.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", pairs)
    conn.commit()
    conn.close()
    return path


def noise(seconds: float, rng: np.random.Generator, level: float = 0.3) -> np.ndarray:
    """float32 [n_samples] white noise at 44.1 kHz."""
    return (level * rng.standard_normal(int(seconds * SAMPLE_RATE))).clip(-1, 1).astype(np.float32)


def write_mp3(path: Path, mono: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Encode float32 [n_samples] as a stereo mp3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([mono, mono], axis=1), sample_rate, format="MP3")
    return path
