"""Reader of the tag-database file format shared by the cleaning and preprocessing stages.

A tag database (Last.fm's `lastfm_tags.db`, or the cleaning stage's `clean_lastfm.db`) is an SQLite
file with three tables joined on ROWIDs: `tids(tid TEXT)`, `tags(tag TEXT)` and
`tid_tag(tid INTEGER, tag INTEGER, val FLOAT)`, where `tid_tag.tid` is a `tids.ROWID`, `tid_tag.tag`
a `tags.ROWID` and `val` Last.fm's 0..100 weight. This module checks the format and reads what the
preprocessing stage needs (the vocabulary and each track's positive tags), the way `orpheus.formats.tfrecord`
describes the TFRecords: the stages meet through this file format, never through each other's code.
`msd.lastfm` builds its query layer on the same checks.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from orpheus.errors import DataFormatError
from orpheus.files import require_file

SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA = {"tids": {"tid"}, "tags": {"tag"}, "tid_tag": {"tid", "tag", "val"}}
_CHUNK_ROWS = 1 << 20


def check_sqlite(path: str | Path, what: str) -> Path:
    """Return `path` if it is an existing SQLite file, else raise a one-line error naming it.

    Raises:
        MissingInputError: the file does not exist.
        DataFormatError: the file is not an SQLite database.
    """
    path = require_file(path, what)
    with open(path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise DataFormatError(f"{path}: not an SQLite database; pass the {what} (e.g. lastfm_tags.db)")
    return path


def check_schema(conn: sqlite3.Connection, path: str | Path) -> None:
    """Raise `DataFormatError` naming `path` unless it has the tids/tags/tid_tag tables and columns."""
    for table, columns in SCHEMA.items():
        try:
            found = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        except sqlite3.DatabaseError as err:
            raise DataFormatError(f"{path}: unreadable SQLite database ({err}); re-download it") from err
        if not columns <= found:
            raise DataFormatError(
                f"{path}: table {table!r} with columns {sorted(columns)} not found (has {sorted(found) or 'none'}); "
                "expected the Last.fm schema tids(tid), tags(tag), tid_tag(tid, tag, val)")


def connect_readonly(path: str | Path, what: str = "Last.fm tags database") -> tuple[Path, sqlite3.Connection]:
    """Open a tag database read-only after checking that it is SQLite with the three-table schema.

    Returns:
        (path, connection); the caller closes the connection.
    """
    path = check_sqlite(path, what)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        check_schema(conn, path)
    except Exception:
        conn.close()
        raise
    return path, conn


def read_positive_tags(path: str | Path, track_ids: Sequence[str],
                       min_val: float = 0) -> tuple[list[str], dict[str, list[int]]]:
    """The vocabulary of a clean tag database and the positive tags of the given tracks.

    A track has a tag when a `tid_tag` row links them with `val >= min_val`. A track id listed twice
    in `tids` keeps its first ROWID (as `msd.lastfm.LastFm` does).

    Args:
        path: the SQLite file (a clean database: every tag name once).
        track_ids: the tracks of interest, unique.
        min_val: the smallest weight that counts.

    Returns:
        (vocabulary, tags_of): tag names in ROWID order, and for each of `track_ids` with at least
        one tag the sorted indices of its tags in that vocabulary.

    Raises:
        MissingInputError / DataFormatError: the file is absent, not SQLite, lacks the schema, or
        names a tag twice (a raw database).
    """
    path, conn = connect_readonly(path, "tag database (clean_lastfm.db)")
    try:
        tag_rows = conn.execute("SELECT ROWID, tag FROM tags ORDER BY ROWID").fetchall()
        vocabulary = [str(tag) for _, tag in tag_rows]
        duplicated = sorted(tag for tag, n in Counter(vocabulary).items() if n > 1)
        if duplicated:
            raise DataFormatError(f"{path}: tag(s) {duplicated[:3]} appear twice in the tags table; pass the "
                                  "clean database from msd/lastfm_cleaning.py, not the raw one")
        if not tag_rows or not track_ids:
            return vocabulary, {}
        col_of_rid = np.full(max(rid for rid, _ in tag_rows) + 1, -1, dtype=np.int64)
        col_of_rid[[rid for rid, _ in tag_rows]] = np.arange(len(tag_rows))
        wanted = {tid: row for row, tid in enumerate(track_ids)}
        first_rid: dict[str, int] = {}
        for rid, tid in conn.execute("SELECT ROWID, tid FROM tids ORDER BY ROWID"):
            if tid in wanted and tid not in first_rid:
                first_rid[tid] = rid
        if not first_rid:
            return vocabulary, {}
        row_of_rid = np.full(max(first_rid.values()) + 1, -1, dtype=np.int64)
        for tid, rid in first_rid.items():
            row_of_rid[rid] = wanted[tid]
        cursor = conn.execute("SELECT tid, tag FROM tid_tag WHERE val >= ? AND typeof(tid) = 'integer' "
                              "AND typeof(tag) = 'integer'", (float(min_val),))
        n_cols = len(tag_rows)
        found = []
        while rows := cursor.fetchmany(_CHUNK_ROWS):
            pairs = np.asarray(rows, dtype=np.int64)
            tid_rid, tag_rid = pairs[:, 0], pairs[:, 1]
            known = (tid_rid >= 0) & (tid_rid < row_of_rid.size) & (tag_rid >= 0) & (tag_rid < col_of_rid.size)
            row, col = row_of_rid[tid_rid[known]], col_of_rid[tag_rid[known]]
            hit = (row >= 0) & (col >= 0)
            found.append(np.unique(row[hit] * n_cols + col[hit]))
    finally:
        conn.close()
    tags_of: dict[str, list[int]] = {}
    for packed in np.unique(np.concatenate(found)) if found else ():
        row, col = divmod(int(packed), n_cols)
        tags_of.setdefault(track_ids[row], []).append(col)
    return vocabulary, tags_of
