"""Tiny MSD inputs for the cleaning-stage tests, written by the one writer of the MSD formats
(`msd.miniature.msd_writers`): the summary HDF5 with the real layout, the Last.fm database with the real schema
(ROWID ids), and mp3s really encoded with soundfile.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from msd.miniature import msd_writers

SAMPLE_RATE = 44100


def track_id(i: int) -> str:
    return f"TR{i:016d}"


def write_summary_h5(path: Path, rows: Sequence[dict]) -> Path:
    """rows: dicts with track_id, song_id, artist_id, track_7digitalid, year (title etc. are filled in)."""
    tables = msd_writers.summary_tables(len(rows))
    meta, analysis, music = tables["metadata"], tables["analysis"], tables["musicbrainz"]
    for i, row in enumerate(rows):
        for field, value in (("artist_id", row["artist_id"]), ("artist_name", "artist"), ("release", "release"),
                             ("song_id", row["song_id"]), ("title", "title"),
                             ("track_7digitalid", row["track_7digitalid"])):
            meta[i][field] = value
        analysis[i]["duration"], analysis[i]["track_id"] = 30.0, row["track_id"]
        music[i]["year"] = row.get("year", 0)
    msd_writers.write_summary_h5(path, tables)
    return path


def write_lastfm_db(path: Path, tids: Sequence[str], tags: Sequence[str],
                    pairs: Sequence[tuple[int, int, float]], tid_rowids: Sequence[int] | None = None) -> Path:
    """A Last.fm database with the real schema, without indexes; pairs are (tid ROWID, tag ROWID, val)."""
    msd_writers.write_lastfm_db(path, tids, tags, pairs, tid_rowids=tid_rowids, indexed=False)
    return path


def read_tag_db(path: Path) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """(track ids, tags, track id -> its tags) of a tag database with the Last.fm schema (`tids`, `tags`,
    `tid_tag`), ids and tags in ROWID order: a converter's clean_tags.db or a cleaned lastfm database."""
    con = sqlite3.connect(path)
    try:
        tids = [r[0] for r in con.execute("SELECT tid FROM tids ORDER BY ROWID")]
        tags = [r[0] for r in con.execute("SELECT tag FROM tags ORDER BY ROWID")]
        pairs: dict[str, set[str]] = {}
        for tid, tag in con.execute("SELECT tids.tid, tags.tag FROM tid_tag JOIN tids ON tid_tag.tid = tids.ROWID "
                                    "JOIN tags ON tid_tag.tag = tags.ROWID"):
            pairs.setdefault(tid, set()).add(tag)
        return tids, tags, pairs
    finally:
        con.close()


def tag_db_values(path: Path) -> set[float]:
    """The distinct `tid_tag.val` of a tag database with the Last.fm schema."""
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT val FROM tid_tag")}
    finally:
        con.close()


def noise(seconds: float, rng: np.random.Generator, level: float = 0.3) -> np.ndarray:
    """float32 [n_samples] white noise at 44.1 kHz."""
    return (level * rng.standard_normal(int(seconds * SAMPLE_RATE))).clip(-1, 1).astype(np.float32)


def write_mp3(path: Path, mono: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Encode float32 [n_samples] as a stereo mp3 (libsndfile's default encoding)."""
    msd_writers.write_mp3(path, np.stack([mono, mono], axis=1), sample_rate, quality=None)
    return path


def file_digests(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path) -> its SHA-1: two generated trees compared byte for byte."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def interrupt_after(monkeypatch, owner, name: str, calls: int = 2):
    """Make the per-item function `owner.name` (one argument) raise KeyboardInterrupt on its call number `calls`
    + 1 (a Ctrl-C mid-run), the earlier calls running the real function.

    Returns (the real function, the list of items it finished), for the test's resumed run.
    """
    real = getattr(owner, name)
    done: list = []

    def interrupted(item):
        if len(done) == calls:
            raise KeyboardInterrupt
        done.append(item)
        return real(item)

    monkeypatch.setattr(owner, name, interrupted)
    return real, done
