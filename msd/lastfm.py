"""Read-only query layer over a Last.fm tags database, raw (`lastfm_tags.db`) or clean (`clean_lastfm.db`).

Both share one schema: `tids(tid TEXT)`, `tags(tag TEXT)`, `tid_tag(tid INTEGER, tag INTEGER, val FLOAT)`
where `tid_tag.tid` is a `tids.ROWID` and `tid_tag.tag` a `tags.ROWID`; `val` is Last.fm's 0..100
weight. Every query is parameterised. Bulk queries (`multi_hot`, `tagged_tids`, `popularity`) use
temporary tables and vectorised numpy/pandas instead of one query per track, so they stay fast on the
full 505k-track, 522k-tag, 8.6M-pair database.

Example:
    with LastFm("clean_lastfm.db") as db:
        labels = db.multi_hot(["TRAAAAK128F9318786"], ["rock", "pop"])   # uint8 [1, 2]
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from orpheus.formats.tagdb import connect_readonly


class LastFm:
    """A read-only Last.fm tags database (raw or clean). Use as a context manager.

    Args:
        path: the SQLite file.

    Raises:
        MissingInputError: `path` does not exist.
        DataFormatError: `path` is not SQLite or lacks the tids/tags/tid_tag schema.
    """

    def __init__(self, path: str | Path):
        self.path, self.conn = connect_readonly(path)
        self._tid_table: pd.Series | None = None

    def __enter__(self) -> "LastFm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def has_index(self, table: str, column: str) -> bool:
        """Whether an index of `table` starts with `column` (the clean database has them; raw ones may not)."""
        for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                                     (table,)).fetchall():
            first = self.conn.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (row[0],)).fetchone()
            if first is not None and first[0] == column:
                return True
        return False

    # ---- small queries ----
    def vocabulary(self) -> list[str]:
        """All tags, in ROWID order (for the clean database: by popularity, descending)."""
        return [row[0] for row in self.conn.execute("SELECT tag FROM tags ORDER BY ROWID")]

    def tags_of(self, tid: str) -> list[tuple[str, float]]:
        """(tag, val) pairs of one track, by val descending then tag name; [] for an unknown track."""
        rows = self.conn.execute(
            "SELECT tags.tag, tid_tag.val FROM tid_tag JOIN tags ON tags.ROWID = tid_tag.tag "
            "WHERE tid_tag.tid IN (SELECT ROWID FROM tids WHERE tid = ?)", (tid,)).fetchall()
        return sorted(((tag, float(val)) for tag, val in rows), key=lambda r: (-r[1], r[0]))

    def tids_of(self, tag: str) -> list[str]:
        """Track ids carrying `tag` (any val), sorted; [] for an unknown tag."""
        rows = self.conn.execute(
            "SELECT DISTINCT tids.tid FROM tid_tag JOIN tids ON tids.ROWID = tid_tag.tid "
            "WHERE tid_tag.tag IN (SELECT ROWID FROM tags WHERE tag = ?)", (tag,)).fetchall()
        return sorted(row[0] for row in rows)

    # ---- bulk queries ----
    def popularity(self) -> list[tuple[str, int]]:
        """(tag, number of distinct tracks) for every tag with at least one track; descending, ties by name."""
        tags = pd.read_sql_query("SELECT ROWID AS rid, tag FROM tags", self.conn)
        shift = max(int(tags["rid"].max() if len(tags) else 1).bit_length(), 1)
        # one streamed scan; (tid << shift) | tag packs a pair so repeated pairs count once
        cursor = self.conn.execute(f"SELECT (tid << {shift}) | tag FROM tid_tag")
        chunks = []
        while rows := cursor.fetchmany(1 << 20):
            chunks.append(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows)))
        packed = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
        counts = np.bincount(packed & ((1 << shift) - 1), minlength=int(tags["rid"].max() or 0) + 1
                             if len(tags) else 1)
        table = tags.assign(n=counts[tags["rid"].to_numpy()])
        table = table[table["n"] > 0].sort_values(["n", "tag"], ascending=[False, True], kind="stable")
        return [(str(t), int(n)) for t, n in zip(table["tag"], table["n"])]

    def tid_table(self) -> pd.Series:
        """Series mapping tid (str) -> ROWID (int64), cached; tids in ROWID order."""
        if self._tid_table is None:
            frame = pd.read_sql_query("SELECT ROWID AS rid, tid FROM tids", self.conn)
            frame = frame.drop_duplicates("tid", keep="first")  # a repeated tid keeps its first ROWID
            self._tid_table = pd.Series(frame["rid"].to_numpy(np.int64), index=frame["tid"].astype(str))
        return self._tid_table

    def tagged_tids(self, min_val: float | None = None) -> set[str]:
        """Track ids with at least one tid_tag row (with val >= `min_val` when given)."""
        if min_val is None and self.has_index("tid_tag", "tid"):  # walk the index, all in SQLite
            rowids = np.fromiter((r[0] for r in self.conn.execute("SELECT DISTINCT tid FROM tid_tag")), np.int64)
            table = self.tid_table()
            return set(table.index[np.isin(table.to_numpy(), rowids)])
        # without an index, streaming the column and deduplicating in numpy beats SQLite's DISTINCT b-tree
        sql = "SELECT tid FROM tid_tag" + (" WHERE val >= ?" if min_val is not None else "")
        params = () if min_val is None else (float(min_val),)
        cursor = self.conn.execute(sql, params)
        chunks = []
        while rows := cursor.fetchmany(1 << 20):
            chunks.append(np.unique(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)))
        rowids = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
        table = self.tid_table()
        return set(table.index[np.isin(table.to_numpy(), rowids)])

    def multi_hot(self, tids: Sequence[str], tags: Sequence[str], min_val: float = 0) -> np.ndarray:
        """Label matrix of `tids` x `tags`: 1 where the track has the tag with val >= `min_val`.

        Unknown tracks get an all-zero row; unknown tags an all-zero column.

        Returns:
            uint8 [len(tids), len(tags)] in {0, 1}.
        """
        out = np.zeros((len(tids), len(tags)), dtype=np.uint8)
        if not len(tids) or not len(tags):
            return out
        tag_rows = pd.read_sql_query("SELECT ROWID AS rid, tag FROM tags", self.conn)
        tag_index = pd.Index(tag_rows["tag"].astype(str))
        tag_rid = tag_rows["rid"].to_numpy(np.int64)
        # a tag name appearing twice in the table (raw db) contributes every ROWID it has
        wanted = pd.DataFrame({"tag": list(tags), "col": np.arange(len(tags))})
        matches = wanted.merge(pd.DataFrame({"tag": tag_index, "rid": tag_rid}), on="tag")
        if matches.empty:
            return out
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_tags (rid INTEGER PRIMARY KEY)")
        self.conn.execute("DELETE FROM temp.wanted_tags")
        self.conn.executemany("INSERT OR IGNORE INTO temp.wanted_tags VALUES (?)",
                              ((int(r),) for r in matches["rid"].unique()))
        pairs = pd.read_sql_query(
            "SELECT tid, tag FROM tid_tag WHERE tag IN (SELECT rid FROM temp.wanted_tags) AND val >= ?",
            self.conn, params=(float(min_val),))
        if pairs.empty:
            return out
        pairs = pairs.merge(matches[["rid", "col"]], left_on="tag", right_on="rid")
        table = self.tid_table()
        wanted_rowids = table.reindex(pd.Index(list(tids))).to_numpy(dtype=np.float64)  # NaN: unknown
        rows_of = pd.DataFrame({"tid_rid": wanted_rowids, "row": np.arange(len(tids))}).dropna()
        rows_of["tid_rid"] = rows_of["tid_rid"].astype(np.int64)
        hits = pairs.merge(rows_of, left_on="tid", right_on="tid_rid")
        out[hits["row"].to_numpy(), hits["col"].to_numpy()] = 1
        return out
