"""Tests of the miniature-MSD generator: real formats, faults, determinism, decodable audio, CLI."""

from __future__ import annotations

import csv
import re
import sqlite3
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

from msd.miniature import music_synth
from msd.miniature import msd_world, msd_writers
from msd.miniature import synthetic_msd as synthetic
from tests.fixtures_audio import longest_silence_s

N_TRACKS = 40
DURATION_S = 10.0  # the shortest allowed: keeps the test fast
MISMATCH_LINE = re.compile(r"^ERROR: <(SO[A-Z0-9]{16}) (TR[A-Z0-9]{16})> (.+)  -  (.+)  !=  (.+)  -  (.+)$")
TRACK_ID = re.compile(r"^TR[A-Z0-9]{16}$")
# Common-sense synonyms the cleaning lists merge; every other raw variant must normalise by rule.
SYNONYMS = {"electronica": "electronic", "electronic music": "electronic", "dance music": "dance",
            "classical music": "classical", "ambient music": "ambient", "folk music": "folk", "pop music": "pop",
            "female vocalists": "female", "female vocalist": "female", "female vocals": "female",
            "male vocalists": "male", "male vocalist": "male", "male vocals": "male",
            "1980s": "80s", "eighties": "80s", "1990s": "90s", "nineties": "90s"}


def _rule_normalise(tag: str) -> str:
    """The cleaning's rules: lower-case, strip non-alphanumerics and a trailing "s"."""
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())
    return tag[:-1] if tag.endswith("s") else tag


def _to_clean(raw: str) -> str | None:
    for clean in music_synth.TAGS:
        if _rule_normalise(raw) == _rule_normalise(clean) or SYNONYMS.get(raw.lower()) == clean:
            return clean
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> msd_world.SyntheticMSD:
    out = tmp_path_factory.mktemp("msd") / "world"
    return synthetic.generate(out, N_TRACKS, seed=7, duration_s=DURATION_S, jobs=2, quiet=True)


@pytest.fixture(scope="module")
def truth(world) -> list[dict]:
    with open(world.truth_csv, newline="") as f:
        return list(csv.DictReader(f))


def test_every_fault_kind_is_present_and_faults_scale(truth):
    assert len(truth) == N_TRACKS
    assert {r["fault"] for r in truth} == set(msd_world.FAULT_KINDS) | {""}
    assert list(truth[0]) == list(msd_world.TRUTH_COLUMNS)
    assert sum(r["fault"] == "" for r in truth) >= N_TRACKS // 2
    plan = msd_world.fault_plan(400)
    assert all(plan.count(kind) == 10 for kind in msd_world.FAULT_KINDS) and len(plan) == 400
    assert msd_world.fault_plan(8) == ["zero_byte", "corrupt"] + [""] * 6


def test_summary_h5_has_the_real_layout(world, truth):
    with h5py.File(world.summary_h5, "r") as h5:
        assert set(h5) == {"metadata", "analysis", "musicbrainz"}
        meta, ana, mb = (h5[g]["songs"] for g in ("metadata", "analysis", "musicbrainz"))
        assert meta.dtype["track_7digitalid"] == np.int32 and mb.dtype["year"] == np.int32
        assert ana.dtype["duration"] == np.float64 and meta.dtype["artist_familiarity"] == np.float64
        for field in ("song_id", "artist_id"):
            assert meta.dtype[field] == np.dtype("S18")
        assert ana.dtype["track_id"] == np.dtype("S18") and meta.dtype["artist_mbid"] == np.dtype("S40")
        for field in ("artist_name", "title", "release"):
            assert meta.dtype[field].kind == "S"
        assert meta.shape == ana.shape == mb.shape and meta.shape[0] > 2 * N_TRACKS  # many rows without audio
        # Read field by field, as the cleaning stage does at full scale.
        track_ids = ana["track_id"].astype(str)
        digital_ids = meta["track_7digitalid"]
        artist_ids = meta["artist_id"].astype(str)
        years = mb["year"]
    assert len(set(track_ids)) == len(track_ids) and all(TRACK_ID.match(t) for t in track_ids)
    for row in truth:
        rows = np.flatnonzero(digital_ids == int(row["track_7digitalid"]))
        if row["fault"] == "no_summary":
            assert rows.size == 0 and row["track_id"] == ""
            continue
        assert rows.size == (2 if row["fault"] == "ambiguous" else 1), row
        own = rows[track_ids[rows] == row["track_id"]]
        assert own.size == 1 and artist_ids[own[0]] == row["artist_id"]
        if "80s" in row["tags"].split(";"):
            assert 1980 <= years[own[0]] <= 1989


def test_lastfm_db_has_the_real_schema_and_mess(world, truth):
    con = sqlite3.connect(world.tags_db)
    try:
        columns = {t: [(c[1], c[2]) for c in con.execute(f"PRAGMA table_info({t})")]
                   for t in ("tids", "tags", "tid_tag")}
        assert columns == {"tids": [("tid", "TEXT")], "tags": [("tag", "TEXT")],
                           "tid_tag": [("tid", "INT"), ("tag", "INT"), ("val", "FLOAT")]}
        pairs = con.execute("SELECT tids.tid, tags.tag, tid_tag.val FROM tid_tag "
                            "JOIN tids ON tid_tag.tid = tids.ROWID JOIN tags ON tid_tag.tag = tags.ROWID").fetchall()
        n_pairs = con.execute("SELECT COUNT(*) FROM tid_tag").fetchone()[0]
        vocabulary = [t for (t,) in con.execute("SELECT tag FROM tags ORDER BY ROWID")]
    finally:
        con.close()
    assert len(pairs) == n_pairs  # every id is a valid ROWID
    assert all(0 <= val <= 100 for _, _, val in pairs) and any(val == 0 for _, _, val in pairs)
    by_track: dict[str, list[tuple[str, float]]] = {}
    for tid, tag, val in pairs:
        by_track.setdefault(tid, []).append((tag, val))
    assert len(by_track) > N_TRACKS  # tracks without previews are tagged too
    assert set(vocabulary) & set(msd_world.JUNK_TAGS)  # non-genre junk
    assert len({t for t in vocabulary if _to_clean(t)}) > len({_to_clean(t) for t in vocabulary if _to_clean(t)})
    for row in truth:
        tags = by_track.get(row["track_id"], [])
        if row["fault"] in ("untagged", "no_summary"):
            assert tags == []
        elif row["fault"] == "no_clean_tag":
            assert tags and all(t in msd_world.JUNK_TAGS for t, _ in tags)
        else:
            clean = {_to_clean(t) for t, val in tags if val > 0} - {None}
            assert clean == set(row["tags"].split(";")), (row, tags)


def test_every_raw_variant_maps_to_its_clean_tag_by_rule_or_synonym():
    for clean, variants in msd_world.RAW_TAG_VARIANTS.items():
        assert clean in music_synth.TAGS
        for raw in variants:
            assert _to_clean(raw) == clean, raw
    assert all(_to_clean(junk) is None for junk in msd_world.JUNK_TAGS)


def test_mismatch_and_duplicate_files_have_the_real_shape(world, truth):
    lines = world.mismatches_txt.read_text().splitlines()
    matches = [MISMATCH_LINE.match(line) for line in lines]
    assert lines and all(matches), lines
    mismatched = {m.group(2) for m in matches}
    for row in truth:
        assert (row["track_id"] in mismatched) == (row["fault"] == "mismatch")

    text = world.duplicates_txt.read_text().splitlines()
    n_header = next(i for i, line in enumerate(text) if not line.startswith("#"))
    assert n_header >= 1 and text[n_header].startswith("%")
    groups: list[list[str]] = []
    for line in text[n_header:]:
        if line.startswith("%"):
            assert re.match(r"^%\d+ .+ - .+$", line), line
            groups.append([])
        else:
            assert TRACK_ID.match(line), line
            groups[-1].append(line)
    assert all(len(g) >= 2 for g in groups)
    fault_of = {r["track_id"]: r["fault"] for r in truth}
    duplicates = {r["track_id"] for r in truth if r["fault"] == "duplicate"}
    for group in groups:
        with_audio = sorted(t for t in group if t in fault_of)
        if set(group) & duplicates:
            assert fault_of[with_audio[0]] == ""  # the kept (smallest) member is healthy
            assert all(fault_of[t] == "duplicate" for t in with_audio[1:])
    assert duplicates <= {t for g in groups for t in g}


def test_audio_tree_holds_decodable_stereo_mp3_previews(world, truth):
    files = sorted(world.audio_dir.rglob("*.clip.mp3"))
    assert len(files) == N_TRACKS
    for row in truth:
        path = world.audio_dir / row["mp3_path"]
        digits = row["track_7digitalid"]
        assert row["mp3_path"] == f"{digits[0]}/{digits[1]}/{digits}.clip.mp3"
        size = path.stat().st_size
        if row["fault"] == "zero_byte":
            assert size == 0
            continue
        if row["fault"] == "corrupt":
            with pytest.raises(sf.LibsndfileError):
                sf.read(path)
            continue
        audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
        assert sample_rate == 44100 and audio.shape[1] == 2
        length_s = audio.shape[0] / sample_rate
        if row["fault"] == "short":
            assert abs(length_s - msd_world.SHORT_CLIP_S) < 0.1 and size > 100_000
        else:
            assert abs(length_s - DURATION_S) < 0.1
        if row["fault"] == "silence":
            assert longest_silence_s(audio, sample_rate) > 5.0
        elif row["fault"] == "":
            assert size > 100_000 and longest_silence_s(audio, sample_rate) < 1.0


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        msd = synthetic.generate(tmp_path / name, 60, seed=seed, audio=False, quiet=True)
        outputs[name] = [p.read_bytes() for p in (msd.summary_h5, msd.tags_db, msd.mismatches_txt,
                                                  msd.duplicates_txt, msd.truth_csv)]
    assert outputs["a"] == outputs["b"]
    assert all(x != y for x, y in zip(outputs["a"], outputs["c"]))


def test_audio_is_deterministic(tmp_path):
    job = msd_world.AudioJob(str(tmp_path / "a.clip.mp3"), ("folk", "female"), 5, 10.0, "")
    msd_writers.write_audio_job(job)
    msd_writers.write_audio_job(msd_world.AudioJob(str(tmp_path / "b.clip.mp3"), *list(job.__dict__.values())[1:]))
    first, _ = sf.read(tmp_path / "a.clip.mp3", dtype="float32")
    second, _ = sf.read(tmp_path / "b.clip.mp3", dtype="float32")
    assert np.array_equal(first, second)


def test_cli_refuses_a_non_empty_folder_without_overwrite(tmp_path, capsys):
    out = tmp_path / "world"
    assert synthetic.main([str(out), "--tracks", "10", "--no-audio", "--quiet"]) == 0
    assert synthetic.main([str(out), "--tracks", "10", "--no-audio", "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert synthetic.main([str(out), "--tracks", "10", "--no-audio", "--quiet", "--overwrite"]) == 0
    assert (out / "msd_summary_file.h5").is_file()
    mine = tmp_path / "mine"      # a folder Orpheus did not write: refused, even with --overwrite, and left alone
    (mine / "audio").mkdir(parents=True)
    (mine / "audio" / "take1.wav").write_bytes(b"RIFF")
    assert synthetic.main([str(mine), "--tracks", "10", "--no-audio", "--quiet", "--overwrite"]) == 1
    assert "holds a folder of other things" in capsys.readouterr().err and (mine / "audio" / "take1.wav").is_file()
    assert synthetic.main([str(tmp_path / "other"), "--tracks", "0", "--no-audio", "--quiet"]) == 1
    assert synthetic.main([str(tmp_path / "other"), "--tracks", "5", "--duration-s", "9", "--no-audio"]) == 1
    assert "--duration-s" in capsys.readouterr().err


def test_command_runs_from_anywhere(tmp_path):
    """`orpheus synthetic` (as `python -m orpheus synthetic`) from a folder outside the repository."""
    result = subprocess.run([sys.executable, "-m", "orpheus", "synthetic", str(tmp_path / "w"), "--tracks", "12",
                             "--seed", "2", "--no-audio", "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w" / "lastfm_tags.db").is_file()
