"""End to end: the four cleaning commands, through their `main(argv)`, on a miniature MSD.

`test_own_world` builds its own tiny world in the real formats (always runs). `test_synthetic_world`
uses the project's generator `msd.miniature.synthetic_msd` when it is present and checks the survivors against
its truth.csv.
"""

import sqlite3

import numpy as np
import pandas as pd
import pytest

from msd import fetcher, lastfm_cleaning, silence, wrangle
from msd.lastfm import LastFm
from tests.fixtures_msd import noise, track_id, write_lastfm_db, write_mp3, write_summary_h5

# number -> (audio kind, raw tags)
WORLD = {
    1: ("ok", ["Rock", "Female Vocalists", "seen live"]),
    2: ("ok", ["Hip-Hop", "rapper", "90's"]),
    3: ("empty", ["rock"]),
    4: ("corrupt", ["jazz"]),
    5: ("gap", ["jazz"]),
    6: ("short", ["pop"]),
    7: ("ok", ["electronica"]),        # mismatched
    8: ("ok", ["rock"]),               # duplicate of 1
    9: ("ok", []),                     # untagged
    10: ("ok", ["seen live", "awesome"]),  # survives with no clean tag
    11: ("ok", ["Electronica", "80s", "male vocalists"]),
}
SURVIVORS = {1, 2, 10, 11}


def build_world(root):
    rng = np.random.default_rng(7)
    audio_root = root / "audio"
    rows, tids, tags, pairs = [], [], [], []
    for i, (kind, raw_tags) in WORLD.items():
        seven = 5000 + i
        path = audio_root / str(i % 3) / str(i % 2) / f"{seven}.clip.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "corrupt":
            path.write_bytes(rng.bytes(20_000))
        else:
            layout = {"ok": [(4, True)], "gap": [(1.5, True), (1.5, False), (1.5, True)], "short": [(1.5, True)]}
            write_mp3(path, np.concatenate([noise(s, rng) if loud else np.zeros(int(s * 44100), np.float32)
                                            for s, loud in layout[kind]]))
        rows.append({"track_id": track_id(i), "song_id": f"SO{i:016d}", "artist_id": f"AR{i:016d}",
                     "track_7digitalid": seven, "year": 2000})
        tids.append(track_id(i))
        for tag in raw_tags:
            if tag not in tags:
                tags.append(tag)
            pairs.append((len(tids), tags.index(tag) + 1, float(rng.integers(1, 101))))
    write_summary_h5(root / "msd_summary_file.h5", rows)
    write_lastfm_db(root / "lastfm_tags.db", tids, tags, pairs)
    (root / "sid_mismatches.txt").write_text(f"ERROR: <SO{7:016d} {track_id(7)}> A  -  B != A  -  C\n")
    (root / "msd_duplicates.txt").write_text(f"# duplicates\n%1 A - B\n{track_id(8)}\n{track_id(1)}\n")
    return audio_root


def test_own_world(tmp_path):
    audio_root = build_world(tmp_path)
    d = str(tmp_path)
    assert fetcher.main([f"{d}/fetcher.csv", "--root-dir", str(audio_root), "--quiet"]) == 0
    assert wrangle.main([f"{d}/fetcher.csv", f"{d}/wrangle.csv", "--path-h5", f"{d}/msd_summary_file.h5",
                         "--path-db", f"{d}/lastfm_tags.db", "--path-txt-mism", f"{d}/sid_mismatches.txt",
                         "--path-txt-dupl", f"{d}/msd_duplicates.txt", "--discard-no-tag", "--discard-dupl",
                         "--quiet"]) == 0
    assert silence.main([f"{d}/wrangle.csv", f"{d}/ultimate.csv", "--root-dir", str(audio_root), "--quiet",
                         "--min-size", "1000", "--filter-trim-length", "3", "--filter-tot-silence", "2",
                         "--filter-max-silence", "1"]) == 0
    assert lastfm_cleaning.main([f"{d}/lastfm_tags.db", f"{d}/clean_lastfm.db", "--quiet"]) == 0

    ultimate = pd.read_csv(tmp_path / "ultimate.csv")
    assert set(ultimate["track_id"]) == {track_id(i) for i in SURVIVORS}
    assert (audio_root / ultimate["mp3_path"].iloc[0]).is_file()
    reasons = dict(zip(pd.read_csv(tmp_path / "wrangle.dropped.csv")["track_id"],
                       pd.read_csv(tmp_path / "wrangle.dropped.csv")["reason"]))
    assert reasons == {track_id(3): "zero_size", track_id(4): "unreadable", track_id(7): "mismatched",
                       track_id(8): "duplicate", track_id(9): "untagged"}
    dropped = pd.read_csv(tmp_path / "ultimate.dropped.csv")
    assert dict(zip(dropped["track_id"], dropped["reason"])) == {track_id(5): "long_silence",
                                                                 track_id(6): "too_short"}
    with LastFm(tmp_path / "clean_lastfm.db") as clean:
        assert set(clean.vocabulary()) == {"rock", "female", "hip hop", "rap", "90s", "jazz", "pop", "electronic",
                                           "80s", "male"}
        labels = clean.multi_hot(list(ultimate["track_id"]), ["rock", "rap", "electronic"])
    expected = {track_id(1): [1, 0, 0], track_id(2): [0, 1, 0], track_id(10): [0, 0, 0], track_id(11): [0, 0, 1]}
    np.testing.assert_array_equal(labels, [expected[t] for t in ultimate["track_id"]])
    conn = sqlite3.connect(tmp_path / "clean_lastfm.db")
    assert conn.execute("SELECT COUNT(*) FROM tids").fetchone()[0] == len(WORLD)
    conn.close()


# ---- the project's miniature MSD generator ----
HEALTHY = ("", "no_clean_tag")  # faults that survive cleaning


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory):
    """A 40-track world from `msd.miniature.synthetic_msd` (the smallest with every fault) and the four commands' outputs."""
    synthetic = pytest.importorskip("msd.miniature.synthetic_msd")
    root = tmp_path_factory.mktemp("synthetic_msd")
    msd = synthetic.generate(root / "msd", 40, seed=3, duration_s=16, jobs=2, quiet=True)
    out = root / "out"
    audio = str(msd.audio_dir)
    steps = [
        (fetcher.main, [f"{out}/fetcher.csv", "--root-dir", audio]),
        (wrangle.main, [f"{out}/fetcher.csv", f"{out}/wrangle.csv", "--path-h5", str(msd.summary_h5), "--path-db",
                        str(msd.tags_db), "--path-txt-mism", str(msd.mismatches_txt), "--path-txt-dupl",
                        str(msd.duplicates_txt), "--discard-no-tag", "--discard-dupl"]),
        (silence.main, [f"{out}/wrangle.csv", f"{out}/ultimate.csv", "--root-dir", audio, "--min-size", "100000",
                        "--filter-trim-length", "15", "--filter-tot-silence", "3", "--filter-max-silence", "1"]),
        (lastfm_cleaning.main, [str(msd.tags_db), f"{out}/clean_lastfm.db"]),
    ]
    for main, argv in steps:
        assert main(argv + ["--quiet"]) == 0, main.__module__
    truth = pd.read_csv(msd.truth_csv, keep_default_na=False, dtype=str)
    return msd, out, truth


@pytest.mark.slow
def test_synthetic_world_survivors(synthetic_world):
    msd, out, truth = synthetic_world
    ultimate = pd.read_csv(out / "ultimate.csv")
    assert set(ultimate["track_id"]) == set(truth.loc[truth["fault"].isin(HEALTHY), "track_id"])
    assert set(truth["fault"]) - set(HEALTHY)  # the world really has faults to catch
    by_path = truth.set_index("mp3_path")["fault"]
    wrangle_dropped = pd.read_csv(out / "wrangle.dropped.csv")
    expected_reason = {"zero_byte": "zero_size", "corrupt": "unreadable", "no_summary": "no_summary",
                       "ambiguous": "ambiguous_7digitalid", "mismatch": "mismatched", "duplicate": "duplicate",
                       "untagged": "untagged"}
    for path, reason in zip(wrangle_dropped["file_path"], wrangle_dropped["reason"]):
        assert expected_reason[by_path[path]] == reason, path
    silence_dropped = pd.read_csv(out / "ultimate.dropped.csv")
    assert {by_path[p] for p in silence_dropped["file_path"]} == {"silence", "short"}


@pytest.mark.slow
def test_synthetic_world_clean_tags(synthetic_world):
    msd, out, truth = synthetic_world
    msd_world = pytest.importorskip("msd.miniature.msd_world")
    with LastFm(out / "clean_lastfm.db") as clean:
        vocabulary = set(clean.vocabulary())
        assert vocabulary <= set(msd_world.RAW_TAG_VARIANTS)  # no junk tag survives
        kept = truth[truth["fault"].isin(HEALTHY)]
        assert vocabulary >= {t for tags in kept["tags"] for t in tags.split(";") if t}
        for tid, fault, tags in zip(kept["track_id"], kept["fault"], kept["tags"]):
            got = {tag for tag, _ in clean.tags_of(tid)}
            assert got == (set() if fault == "no_clean_tag" else set(tags.split(";"))), tid
