import h5py
import numpy as np
import pandas as pd
import pytest

from msd import wrangle
from orpheus.errors import DataFormatError
from tests.fixtures_msd import track_id, write_lastfm_db, write_summary_h5

# track number -> 7digital id; 5 and 6 share one 7digital id (ambiguous)
SEVEN = {i: 1000 + i for i in range(1, 14)}
SEVEN[6] = SEVEN[5]
MISMATCHED = [7, 12]
UNTAGGED = [8]
DUPLICATE_GROUPS = [[11, 9, 10], [13, 12]]  # 12 is mismatched, so 13 survives its group
EXPECTED = {1: None, 2: "zero_size", 3: "unreadable", 7: "mismatched",
            8: "untagged", 9: None, 10: "duplicate", 11: "duplicate", 12: "mismatched", 13: None}


def fetch_table() -> pd.DataFrame:
    rows = []
    for i in [11, 1, 2, 3, 5, 7, 8, 10, 9, 12, 13]:  # not sorted by track id on purpose
        rows.append((SEVEN[i], f"a/{SEVEN[i]}.clip.mp3", 0 if i == 2 else 50_000, 2, 44100, 30.0))
    rows.append((9999, "a/9999.clip.mp3", 50_000, 2, 44100, 30.0))  # no summary row
    rows.append((SEVEN[1], "b/1001.clip.mp3", 50_000, 2, 44100, 30.0))  # a second clip of track 1
    table = pd.DataFrame(rows, columns=["track_7digitalid", "file_path", "file_size", "channels", "sample_rate",
                                        "clip_length"])
    table.loc[table["track_7digitalid"] == SEVEN[3], ["channels", "sample_rate", "clip_length"]] = np.nan
    return table


def summary_rows() -> list[dict]:
    return [{"track_id": track_id(i), "song_id": f"SO{i:016d}", "artist_id": f"AR{i % 3:016d}",
             "track_7digitalid": seven, "year": 1990 + i} for i, seven in SEVEN.items()]


@pytest.fixture()
def world(tmp_path):
    write_summary_h5(tmp_path / "summary.h5", summary_rows())
    fetch_table().to_csv(tmp_path / "fetcher.csv", index=False)
    (tmp_path / "mism.txt").write_text("".join(
        f"ERROR: <SO{i:016d} {track_id(i)}> Artist  -  Song != Artist  -  Other\n" for i in MISMATCHED) + "\n")
    (tmp_path / "dupl.txt").write_text("# MILLION SONG DATASET - DUPLICATES\n# header\n" + "".join(
        f"%{g} Artist - Song\n" + "".join(f"{track_id(i)}\n" for i in group)
        for g, group in enumerate(DUPLICATE_GROUPS)))
    tagged = [track_id(i) for i in SEVEN if i not in UNTAGGED]
    write_lastfm_db(tmp_path / "tags.db", tagged + [track_id(8)], ["rock"],
                    [(r, 1, 50.0) for r in range(1, len(tagged) + 1)])  # track 8 in tids but without a pair
    return tmp_path


def cli_args(world, out="wrangle.csv"):
    return ["fetcher.csv", out, "--path-h5", "summary.h5", "--path-db", "tags.db", "--path-txt-mism", "mism.txt",
            "--path-txt-dupl", "dupl.txt", "--discard-no-tag", "--discard-dupl", "--quiet"]


def reasons_by_track(result) -> dict:
    got = {int(t[2:]): None for t in result.kept["track_id"]}
    for tid, reason in zip(result.dropped["track_id"], result.dropped["reason"]):
        if isinstance(tid, str):
            assert int(tid[2:]) not in got or reason == "repeated_7digitalid"
            got.setdefault(int(tid[2:]), reason)
    return got


def test_every_rule(world):
    summary = wrangle.read_summary(world / "summary.h5")
    result = wrangle.apply_rules(fetch_table(), summary, mismatched=wrangle.read_mismatches(world / "mism.txt"),
                                 tagged={track_id(i) for i in SEVEN if i not in UNTAGGED},
                                 duplicates=wrangle.read_duplicates(world / "dupl.txt"))
    assert reasons_by_track(result) == EXPECTED
    assert result.counts == {"zero_size": 1, "unreadable": 1, "repeated_7digitalid": 1, "no_summary": 1,
                             "ambiguous_7digitalid": 1, "mismatched": 2, "untagged": 1, "duplicate": 2}
    assert result.dropped.loc[result.dropped["track_7digitalid"] == 9999, "reason"].item() == "no_summary"
    ambiguous = result.dropped[result.dropped["track_7digitalid"] == SEVEN[5]]
    assert ambiguous["reason"].tolist() == ["ambiguous_7digitalid"] and ambiguous["track_id"].isna().all()
    repeated = result.dropped[result.dropped["reason"] == "repeated_7digitalid"]
    assert repeated["file_path"].tolist() == ["b/1001.clip.mp3"]
    kept = result.kept.set_index("track_id")
    assert kept.loc[track_id(1), "song_id"] == f"SO{1:016d}" and kept.loc[track_id(1), "year"] == 1991
    assert kept.loc[track_id(9), "artist_id"] == f"AR{0:016d}"


def test_optional_rules_only_when_asked(world):
    summary = wrangle.read_summary(world / "summary.h5")
    result = wrangle.apply_rules(fetch_table(), summary)
    kept = {int(t[2:]) for t in result.kept["track_id"]}
    assert kept == {1, 7, 8, 9, 10, 11, 12, 13}
    assert result.counts["untagged"] == result.counts["duplicate"] == result.counts["mismatched"] == 0


def test_duplicate_choice_is_the_smallest_survivor_whatever_the_order(world):
    summary = wrangle.read_summary(world / "summary.h5")
    dupl = wrangle.read_duplicates(world / "dupl.txt")
    a = wrangle.apply_rules(fetch_table(), summary, duplicates=dupl)
    b = wrangle.apply_rules(fetch_table().iloc[::-1], summary, duplicates=dupl)
    assert set(a.kept["track_id"]) == set(b.kept["track_id"])
    assert track_id(9) in set(a.kept["track_id"]) and track_id(12) in set(a.kept["track_id"])
    assert track_id(13) not in set(a.kept["track_id"])  # without the mismatch rule, 12 < 13 wins


def test_cli_writes_outputs_and_summary(world, monkeypatch, capsys):
    monkeypatch.chdir(world)
    assert wrangle.main(cli_args(world)) == 0
    out = capsys.readouterr().out
    assert "3 kept" in out and "duplicate" in out and "wrangle.dropped.csv" in out
    kept = pd.read_csv(world / "wrangle.csv")
    assert list(kept.columns) == wrangle.FETCHER_COLUMNS + ["track_id", "song_id", "artist_id", "year"]
    assert sorted(kept["track_id"]) == [track_id(1), track_id(9), track_id(13)]
    dropped = pd.read_csv(world / "wrangle.dropped.csv")
    assert len(dropped) == 10 and dropped["reason"].value_counts()["mismatched"] == 2
    assert wrangle.main(cli_args(world)) == 1  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_wrong_hdf5_layout(world, capsys, monkeypatch):
    with h5py.File(world / "bad.h5", "w") as h5:
        h5.create_group("metadata").create_dataset("songs", data=np.zeros(3, dtype=[("song_id", "S18")]))
    with pytest.raises(DataFormatError, match="bad.h5.*musicbrainz|bad.h5.*analysis"):
        wrangle.read_summary(world / "bad.h5")
    monkeypatch.chdir(world)
    args = cli_args(world)
    args[args.index("summary.h5")] = "bad.h5"
    assert wrangle.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.h5" in err[0]


def test_missing_field_and_not_hdf5(world):
    rows = np.zeros(2, dtype=[("track_id", "S18")])
    with h5py.File(world / "nofield.h5", "w") as h5:
        for group in wrangle.SUMMARY_GROUPS:
            h5.create_group(group).create_dataset("songs", data=rows)
    with pytest.raises(DataFormatError, match="nofield.h5.*'track_7digitalid'"):
        wrangle.read_summary(world / "nofield.h5")
    (world / "text.h5").write_text("hello")
    with pytest.raises(DataFormatError, match="text.h5: not an HDF5 file"):
        wrangle.read_summary(world / "text.h5")


def test_malformed_mismatch_line(world, capsys, monkeypatch):
    (world / "mism.txt").write_text(f"ERROR: <SO{1:016d} {track_id(1)}> a - b != a - c\nWARNING: something else\n")
    with pytest.raises(DataFormatError, match=r"mism.txt:2: malformed mismatch line"):
        wrangle.read_mismatches(world / "mism.txt")
    monkeypatch.chdir(world)
    assert wrangle.main(cli_args(world)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mism.txt:2" in err[0]


def test_malformed_duplicates(world):
    (world / "dupl.txt").write_text(f"# header\n{track_id(1)}\n")
    with pytest.raises(DataFormatError, match=r"dupl.txt:2"):
        wrangle.read_duplicates(world / "dupl.txt")


def test_non_sqlite_and_missing_file(world, capsys, monkeypatch):
    monkeypatch.chdir(world)
    (world / "tags.db").write_text("not a database")
    assert wrangle.main(cli_args(world)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tags.db" in err[0] and "not an SQLite database" in err[0]
    (world / "tags.db").unlink()
    assert wrangle.main(cli_args(world)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tags.db" in err[0] and "not found" in err[0]
    assert not (world / "wrangle.csv").exists()


def test_header_error_reaches_the_dropped_rows_only(world):
    """fetcher's reason for an unreadable header is kept in wrangle.dropped.csv; wrangle.csv is unchanged."""
    fetch = fetch_table().assign(header_error=pd.NA)
    fetch.loc[fetch["track_7digitalid"] == SEVEN[3], "header_error"] = "unreadable: Permission denied"
    result = wrangle.apply_rules(fetch, wrangle.read_summary(world / "summary.h5"))
    row = result.dropped[result.dropped["track_7digitalid"] == SEVEN[3]]
    assert row[["reason", "header_error"]].values.tolist() == [["unreadable", "unreadable: Permission denied"]]
    assert "header_error" not in result.kept.columns


def test_jobs_is_not_offered(capsys):
    with pytest.raises(SystemExit):
        wrangle.main(["--help"])
    assert "--jobs" not in capsys.readouterr().out
