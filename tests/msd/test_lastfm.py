import sqlite3

import numpy as np
import pytest

from msd.lastfm import LastFm
from orpheus.errors import DataFormatError, MissingInputError
from tests.fixtures_msd import write_lastfm_db

TIDS = ["TRA", "TRB", "TRC", "TRD"]
TAGS = ["rock", "pop", "jazz", "unused"]
PAIRS = [(1, 1, 100.0), (1, 2, 20.0), (2, 1, 0.0), (2, 3, 50.0), (3, 2, 60.0), (3, 1, 10.0), (3, 1, 30.0)]


@pytest.fixture()
def db(tmp_path):
    path = write_lastfm_db(tmp_path / "tags.db", TIDS, TAGS, PAIRS)
    with LastFm(path) as lastfm:
        yield lastfm


def test_small_queries(db):
    assert db.vocabulary() == TAGS
    assert db.tags_of("TRA") == [("rock", 100.0), ("pop", 20.0)]
    assert db.tags_of("TRD") == [] and db.tags_of("nope") == []
    assert db.tids_of("rock") == ["TRA", "TRB", "TRC"]
    assert db.tids_of("unused") == [] and db.tids_of("'; DROP TABLE tags; --") == []
    assert db.vocabulary() == TAGS  # parameterised: the injection attempt did nothing


def test_popularity_counts_distinct_tracks_ties_by_name(db):
    assert db.popularity() == [("rock", 3), ("pop", 2), ("jazz", 1)]


def test_multi_hot(db):
    labels = db.multi_hot(["TRC", "TRA", "unknown", "TRB", "TRA"], ["rock", "jazz", "nope", "pop"])
    assert labels.dtype == np.uint8 and labels.shape == (5, 4)
    np.testing.assert_array_equal(labels, [[1, 0, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]])
    strict = db.multi_hot(["TRA", "TRB", "TRC"], ["rock", "pop"], min_val=25)
    np.testing.assert_array_equal(strict, [[1, 0], [0, 0], [1, 1]])  # TRC rock: the larger of 10 and 30
    assert db.multi_hot([], ["rock"]).shape == (0, 1) and db.multi_hot(["TRA"], []).shape == (1, 0)


def test_tagged_tids(db):
    assert db.tagged_tids() == {"TRA", "TRB", "TRC"}
    assert db.tagged_tids(min_val=55) == {"TRA", "TRC"}


def test_read_only(db):
    with pytest.raises(sqlite3.OperationalError):
        db.conn.execute("DELETE FROM tags")


def test_bad_files(tmp_path):
    (tmp_path / "text.db").write_text("this is not sqlite at all")
    with pytest.raises(DataFormatError, match="text.db: not an SQLite database"):
        LastFm(tmp_path / "text.db")
    with pytest.raises(MissingInputError, match="missing.db"):
        LastFm(tmp_path / "missing.db")
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE tids (tid TEXT)")
    conn.execute("CREATE TABLE tags (name TEXT)")
    conn.close()
    with pytest.raises(DataFormatError, match="other.db: table 'tags'"):
        LastFm(tmp_path / "other.db")


def test_tagged_tids_with_and_without_index(tmp_path):
    path = write_lastfm_db(tmp_path / "tags.db", TIDS, TAGS, PAIRS)
    with LastFm(path) as db:
        assert not db.has_index("tid_tag", "tid")
        plain = db.tagged_tids()
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX idx_tid_tag_tid ON tid_tag (tid)")
    conn.close()
    with LastFm(path) as db:
        assert db.has_index("tid_tag", "tid") and not db.has_index("tid_tag", "tag")
        assert db.tagged_tids() == plain == {"TRA", "TRB", "TRC"}
