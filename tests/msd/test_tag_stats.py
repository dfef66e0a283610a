"""msd.tag_stats on small Last.fm databases in the real schema, checked against a dense count by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sparse

from msd import tag_stats
from tests.fixtures_msd import write_lastfm_db

TAGS = ["rock", "hip hop", "hiphop", "jazz", "unused", "pop"]  # ROWIDs 1..6; "unused" has no track


def world(tmp_path):
    """12 tracks: hip hop and hiphop together on tracks 1-10 (hiphop alone nowhere), rock on 1-6 and 11-12,
    jazz on 7-9, pop once (track 12); (3, rock) is repeated and the orphan tag ROWID 9 is ignored."""
    pairs = [(t, 2, 50.0) for t in range(1, 11)] + [(t, 3, 10.0) for t in range(1, 11)]
    pairs += [(t, 1, 100.0) for t in (1, 2, 3, 4, 5, 6, 11, 12)] + [(3, 1, 20.0), (5, 9, 1.0)]
    pairs += [(t, 4, 0.0) for t in (7, 8, 9)] + [(12, 6, 30.0)]
    tids = [f"TR{i:016d}" for i in range(1, 13)]
    return write_lastfm_db(tmp_path / "raw.db", tids, TAGS, pairs), pairs


def dense_counts(pairs, tags):
    """tags x tags: tracks with both, by brute force over (track, tag) sets."""
    sets = {rid: {t for t, r, _ in pairs if r == rid} for rid in range(1, len(TAGS) + 1)}
    rid_of = {name: TAGS.index(name) + 1 for name in tags}
    return np.array([[len(sets[rid_of[a]] & sets[rid_of[b]]) for b in tags] for a in tags])


def test_outputs_match_a_count_by_hand(tmp_path, capsys):
    db, pairs = world(tmp_path)
    out = tmp_path / "stats"
    assert tag_stats.main([str(db), str(out), "--min-count", "1", "--merge-min-count", "5", "--quiet"]) == 0
    assert "5 tags on 12 tracks" in capsys.readouterr().out
    tags = pd.read_csv(out / "tags.csv")
    assert tags.to_dict("list") == {"index": [0, 1, 2, 3, 4], "tag": ["hip hop", "hiphop", "rock", "jazz", "pop"],
                                    "count": [10, 10, 8, 3, 1]}
    matrix = sparse.load_npz(out / "cooccurrence.npz")
    assert isinstance(matrix, sparse.COO) and matrix.dtype == np.int32
    np.testing.assert_array_equal(matrix.todense(), dense_counts(pairs, tags["tag"].tolist()))

    top = pd.read_csv(out / "pairs.csv")
    by_count = top[top["by"] == "count"]
    assert by_count[["tag_a", "tag_b", "count"]].values.tolist()[:2] == [["hip hop", "hiphop", 10], ["hip hop", "rock", 6]]
    rock_pop = top[(top["by"] == "pmi") & (top["tag_a"] == "rock") & (top["tag_b"] == "pop")].iloc[0]
    assert rock_pop["rank"] == 1 and rock_pop["pmi"] == pytest.approx(math.log(12 * 1 / (8 * 1)), rel=1e-5)
    hip_rock = by_count.iloc[1]
    assert hip_rock["jaccard"] == pytest.approx(6 / (10 + 8 - 6), rel=1e-5)
    assert hip_rock["min_conditional"] == pytest.approx(6 / 10, rel=1e-5)
    assert set(top["by"]) == {"count", "jaccard", "pmi"}

    merges = pd.read_csv(out / "merges.csv")
    assert merges[["tag_a", "tag_b", "count", "min_conditional"]].values.tolist() == [["hip hop", "hiphop", 10, 1.0]]
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert tag_stats.main([str(db), str(out), "--quiet"]) == 1  # outputs exist
    assert "--overwrite" in capsys.readouterr().err


def test_min_count_drops_rare_pairs_but_keeps_the_diagonal(tmp_path):
    db, pairs = world(tmp_path)
    stats = tag_stats.tag_stats(db, min_count=4)
    full = dense_counts(pairs, stats.tags["tag"].tolist())
    expected = np.where(full >= 4, full, 0)
    np.fill_diagonal(expected, np.diag(full))
    np.testing.assert_array_equal(stats.cooccurrence.todense(), expected)


def test_blocks_of_columns_give_the_same_matrix(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tids = [f"TR{i:016d}" for i in range(1, 201)]
    names = [f"tag {i}" for i in range(40)]
    pairs = [(int(t), int(g), 1.0) for t, g in zip(rng.integers(1, 201, 1500), rng.zipf(1.5, 1500) % 40 + 1)]
    db = write_lastfm_db(tmp_path / "raw.db", tids, names, pairs)
    whole = tag_stats.tag_stats(db, min_count=1).cooccurrence
    monkeypatch.setattr(tag_stats, "BLOCK_ENTRIES", 50)  # many blocks
    blocked = tag_stats.tag_stats(db, min_count=1).cooccurrence
    np.testing.assert_array_equal(blocked.todense(), whole.todense())


def test_clustered_order_puts_similar_tags_side_by_side():
    similarity = np.eye(4)
    similarity[0, 2] = similarity[2, 0] = 0.9
    similarity[1, 3] = similarity[3, 1] = 0.8
    order = list(tag_stats.clustered_order(similarity))
    assert abs(order.index(0) - order.index(2)) == 1 and abs(order.index(1) - order.index(3)) == 1


def test_min_val_and_empty_database_errors(tmp_path, capsys):
    db, _ = world(tmp_path)
    stats = tag_stats.tag_stats(db, min_val=40)
    assert stats.tags["tag"].tolist() == ["hip hop", "rock"]  # hiphop (10), jazz (0) and pop (30) fall below
    empty = write_lastfm_db(tmp_path / "empty.db", ["TRA"], ["rock"], [])
    assert tag_stats.main([str(empty), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty.db: an empty tags database" in err[0]
    assert tag_stats.main([str(db), str(tmp_path / "out"), "--merge-threshold", "0", "--quiet"]) == 1
    assert "--merge-threshold must be in (0, 1]" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        tag_stats.main(["--help"])
    assert "orpheus tag-stats" in capsys.readouterr().out
