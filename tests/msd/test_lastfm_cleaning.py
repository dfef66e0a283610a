import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from msd import lastfm_cleaning as lc
from msd.lastfm import LastFm
from orpheus.errors import DataFormatError
from tests.fixtures_msd import write_lastfm_db

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_CLEAN = ["rock", "metal", "electronic", "dance", "jazz", "classical", "ambient", "hip hop", "folk", "pop",
                   "female", "male", "rap", "instrumental", "80s", "90s"]


@pytest.fixture(scope="module")
def vocabulary():
    return lc.load_vocabulary()


def mapped(vocabulary, raw):
    return [None if pd.isna(c) else c for c in vocabulary.map_tags(raw)]


def test_vocabulary_covers_the_synthetic_tags_and_is_large(vocabulary):
    assert set(SYNTHETIC_CLEAN) <= set(vocabulary.clean_tags)
    genres = [t for t in vocabulary.clean_tags if t not in {"female", "male", "rap", "instrumental"}]
    assert 150 <= len(genres) <= 200
    assert all(t == " ".join(t.split()) and t == t.lower() for t in vocabulary.clean_tags)


def test_case_whitespace_and_punctuation(vocabulary):
    assert mapped(vocabulary, ["ROCK", " Rock  ", "Hip-Hop", "hip  hop", "HipHop", "hip_hop!", "Trip-Hop"]) == \
        ["rock", "rock", "hip hop", "hip hop", "hip hop", "hip hop", "trip hop"]


def test_trailing_s(vocabulary):
    assert mapped(vocabulary, ["Female Vocalists", "female vocalist", "Punks", "soundtracks"]) == \
        ["female", "female", "punk", "soundtrack"]
    assert lc.tag_key("blues") == lc.tag_key("blue") == "blue"  # only one trailing s goes


def test_and_variants(vocabulary):
    raw = ["Drum and Bass", "drum & bass", "Drum n Bass", "drum'n'bass", "drum 'n' bass", "Drum N' Bass", "dnb",
           "D&B", "R&B", "r n b", "Rhythm and Blues", "rock'n'roll", "Rock & Roll"]
    assert mapped(vocabulary, raw) == ["drum and bass"] * 8 + ["rnb"] * 3 + ["rock and roll"] * 2
    assert lc.tag_key("random") == "random"  # an n inside a word is not "and"


def test_decades(vocabulary):
    raw = ["80s", "80's", "'80s", "1980s", "1980's", "Eighties", "80 s", "90S", "nineties", "2000s", "00s",
           "noughties", "2010s", "60s"]
    assert mapped(vocabulary, raw) == ["80s"] * 7 + ["90s", "90s", "00s", "00s", "00s", "10s", "60s"]
    assert mapped(vocabulary, ["1980", "1985", "80s pop"]) == [None, None, None]  # years are not decades


def test_combine_and_vocal_variants(vocabulary):
    assert mapped(vocabulary, ["Electronica", "electronic music", "hiphop music", "OST", "prog rock"]) == \
        ["electronic", "electronic", "hip hop", "soundtrack", "progressive rock"]
    assert mapped(vocabulary, ["male vocalists", "Male Vocals", "female voice", "No Vocals", "instrumentals",
                               "Rapper", "rap"]) == ["male", "male", "female", "instrumental", "instrumental",
                                                     "rap", "rap"]


def test_drop_list_and_junk(vocabulary):
    assert mapped(vocabulary, ["Blue", "folks", "seen live", "Favorites", "awesome", "my favourite",
                               "", "!!!", "日本"]) == [None] * 9
    assert mapped(vocabulary, ["Blues", "folk", "Rocks"]) == ["blues", "folk", "rock"]  # only the exact raw tag


def test_conflicting_lists_are_rejected(tmp_path):
    for name in lc.LIST_FILES + lc.MAPPING_FILES + (lc.DROP_FILE,):
        (tmp_path / name).write_text("")
    (tmp_path / "genres.txt").write_text("rock\npop\n")
    (tmp_path / "combine.txt").write_text("pop: rocks\n")
    with pytest.raises(DataFormatError, match="combine.txt:1: 'rocks' maps to 'pop'"):
        lc.load_vocabulary(tmp_path)
    (tmp_path / "combine.txt").write_text("no colon here\n")
    with pytest.raises(DataFormatError, match="combine.txt:1: expected 'clean tag: variant"):
        lc.load_vocabulary(tmp_path)


RAW_TAGS = ["Rock", "rock", "Hip-Hop", "seen live", "Female Vocalists", "female vocalist", "80's", "jazz",
            "electronica", "electronic"]
# tid ROWIDs 1, 2, 5, 7 (gaps preserved); (tid, raw tag, val)
RAW_PAIRS = [(1, 1, 40.0), (1, 2, 90.0), (1, 4, 100.0), (1, 5, 10.0), (1, 6, 55.0), (2, 2, 100.0), (2, 3, 0.0),
             (2, 7, 30.0), (5, 8, 5.0), (5, 9, 70.0), (5, 10, 20.0), (5, 3, 80.0), (7, 4, 100.0), (7, 2, 0.0)]


@pytest.fixture()
def raw_db(tmp_path):
    return write_lastfm_db(tmp_path / "lastfm_tags.db", ["TRA", "TRB", "TRC", "TRD"], RAW_TAGS, RAW_PAIRS,
                           tid_rowids=[1, 2, 5, 7])


def test_clean_database(raw_db, tmp_path, capsys):
    out = tmp_path / "clean_lastfm.db"
    assert lc.main([str(raw_db), str(out), "--quiet"]) == 0
    assert "clean tags" in capsys.readouterr().out
    with LastFm(out) as clean:
        # rock: TRA, TRB; then ties of 1 track by name; hip hop of TRB had val 0 (dropped), kept for TRC
        assert clean.vocabulary() == ["rock", "80s", "electronic", "female", "hip hop", "jazz"]
        assert clean.tags_of("TRA") == [("rock", 90.0), ("female", 55.0)]  # max of merged pairs
        assert clean.tags_of("TRC") == [("hip hop", 80.0), ("electronic", 70.0), ("jazz", 5.0)]
        assert clean.tags_of("TRD") == []
        assert clean.popularity()[0] == ("rock", 2)
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT ROWID, tid FROM tids ORDER BY ROWID").fetchall() == \
        [(1, "TRA"), (2, "TRB"), (5, "TRC"), (7, "TRD")]
    pairs = conn.execute("SELECT tid, tag, val FROM tid_tag").fetchall()
    assert len(pairs) == len({(t, g) for t, g, _ in pairs}) == 7
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")} >= \
        {"idx_tid_tag_tid", "idx_tid_tag_tag"}
    conn.close()
    sources = pd.read_csv(tmp_path / "clean_lastfm.tags.csv")
    assert list(sources.columns) == ["clean_tag", "raw_tag", "count"]
    rock = sources[sources["clean_tag"] == "rock"].set_index("raw_tag")["count"].to_dict()
    assert rock == {"rock": 2, "Rock": 1}  # the (TRD, rock) pair had val 0
    assert sources[sources["clean_tag"] == "female"]["raw_tag"].tolist() == ["Female Vocalists", "female vocalist"]
    assert "seen live" not in set(sources["raw_tag"])


def test_clean_database_after_tensorflow_and_at_a_path_with_uri_characters(raw_db, tmp_path):
    """TensorFlow carries its own SQLite, with URI file names off, and once it is imported this process's sqlite3
    module runs it: the read-only ATTACH of the raw database failed there ("unable to open database")."""
    out = tmp_path / "clean #1?.db"  # characters a file: URI must escape
    script = ("import sys, tensorflow\nfrom msd import lastfm_cleaning\n"
              "sys.exit(lastfm_cleaning.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, str(raw_db), str(out), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with LastFm(out) as clean:
        assert clean.vocabulary() == ["rock", "80s", "electronic", "female", "hip hop", "jazz"]


def test_val_threshold_and_overwrite(raw_db, tmp_path, capsys):
    out = tmp_path / "clean.db"
    result = lc.run(raw_db, out, val=50, quiet=True)
    assert result.tags["clean_tag"].tolist() == ["rock", "electronic", "female", "hip hop"]
    assert lc.main([str(raw_db), str(out), "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert lc.main([str(raw_db), str(out), "--quiet", "--overwrite", "--val", "-1"]) == 0
    with LastFm(out) as clean:
        assert ("hip hop", 0.0) in clean.tags_of("TRB")  # --val -1 keeps zero-weight pairs


def test_not_sqlite_is_one_line(tmp_path, capsys):
    (tmp_path / "raw.db").write_bytes(b"\x00" * 100)
    assert lc.main([str(tmp_path / "raw.db"), str(tmp_path / "clean.db")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "raw.db" in err[0] and "not an SQLite database" in err[0]
    assert not (tmp_path / "clean.db").exists()


@pytest.mark.parametrize("tags, pairs, what", [([], [], "no tags"), (["rock", "pop"], [], "no (track, tag) pairs")])
def test_empty_database_is_an_error(tmp_path, capsys, tags, pairs, what):
    """A database with the schema but no rows used to exit 0 with empty outputs."""
    raw = write_lastfm_db(tmp_path / "raw.db", ["TRA", "TRB"], tags, pairs)
    assert lc.main([str(raw), str(tmp_path / "clean.db"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(raw) in err[0] and f"empty tags database ({what}" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.db"]


def test_jobs_is_not_offered(capsys):
    """The stage is one vectorised scan: it takes no --jobs rather than one it would ignore."""
    with pytest.raises(SystemExit):
        lc.main(["--help"])
    assert "--jobs" not in capsys.readouterr().out
