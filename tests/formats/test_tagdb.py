"""orpheus.formats.tagdb: the tag-database reader of the core, on SQLite files with the real three-table schema."""

import sqlite3

import pytest

from msd.lastfm import LastFm
from orpheus.formats import tagdb
from orpheus.errors import DataFormatError, MissingInputError
from tests.fixtures_msd import write_lastfm_db

TIDS = ["TRA", "TRB", "TRC", "TRD"]
TAGS = ["rock", "pop", "jazz", "unused"]  # ROWID order, not alphabetical
PAIRS = [(1, 1, 100.0), (1, 2, 20.0), (2, 1, 0.0), (2, 3, 50.0), (3, 2, 60.0), (3, 1, 10.0), (3, 1, 30.0),
         (4, 2, -1.0), (9, 1, 50.0), (1, 9, 50.0)]  # TRD only below 0; a tid and a tag that are no ROWID


def test_positive_tags_match_the_query_layer(tmp_path):
    path = write_lastfm_db(tmp_path / "clean.db", TIDS, TAGS, PAIRS)
    wanted = ["TRC", "TRA", "TRD", "TRB", "TRUNKNOWN"]
    vocabulary, tags_of = tagdb.read_positive_tags(path, wanted)
    assert vocabulary == TAGS
    assert tags_of == {"TRA": [0, 1], "TRB": [0, 2], "TRC": [0, 1]}  # sorted indices; TRD (val < 0) absent
    with LastFm(path) as db:  # the same answer as the cleaning stage's query layer gives
        labels = db.multi_hot(wanted, vocabulary)
    assert {tid: list(row.nonzero()[0]) for tid, row in zip(wanted, labels) if row.any()} == tags_of
    assert tagdb.read_positive_tags(path, ["TRA"], min_val=50) == (TAGS, {"TRA": [0]})
    assert tagdb.read_positive_tags(path, []) == (TAGS, {})


def test_a_repeated_tid_keeps_its_first_rowid(tmp_path):
    path = write_lastfm_db(tmp_path / "dup.db", ["TRA", "TRA"], ["rock", "pop"], [(1, 1, 10.0), (2, 2, 10.0)])
    assert tagdb.read_positive_tags(path, ["TRA"]) == (["rock", "pop"], {"TRA": [0]})
    with LastFm(path) as db:
        assert db.multi_hot(["TRA"], ["rock", "pop"]).tolist() == [[1, 0]]


def test_bad_databases_are_one_line_errors(tmp_path):
    with pytest.raises(MissingInputError, match="missing.db"):
        tagdb.read_positive_tags(tmp_path / "missing.db", ["TRA"])
    (tmp_path / "text.db").write_text("not sqlite")
    with pytest.raises(DataFormatError, match="text.db: not an SQLite database"):
        tagdb.read_positive_tags(tmp_path / "text.db", ["TRA"])
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE tids (tid TEXT)")
    conn.close()
    with pytest.raises(DataFormatError, match="other.db: table 'tags'"):
        tagdb.read_positive_tags(tmp_path / "other.db", ["TRA"])
    raw = write_lastfm_db(tmp_path / "raw.db", TIDS, ["rock", "pop", "rock"], [(1, 1, 10.0)])
    with pytest.raises(DataFormatError, match="raw.db: tag.*'rock'.*appear twice"):
        tagdb.read_positive_tags(raw, ["TRA"])
