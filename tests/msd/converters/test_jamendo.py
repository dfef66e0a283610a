"""MTG-Jamendo conversion (msd.converters.jamendo) and its miniature generator (msd.miniature.synthetic_jamendo).

A hand-built data/ folder in the real format (tab-separated, variable tag fields, splits/split-N/) with
real mp3s and real faults gives exact expectations; the generator is checked against its manifest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from msd.converters import jamendo
from msd.miniature import music_synth, synthetic_jamendo
from orpheus.errors import ConfigError, DataFormatError, MissingInputError, OutputExistsError
from tests.fixtures_audio import plant_track
from tests.fixtures_msd import file_digests, read_tag_db

REPO = Path(__file__).resolve().parents[3]
HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
# track number -> (artist, split part of split-0, tags, fault)
TRACKS = {
    214: (14, "train", ["genre---rock", "instrument---guitar", "mood/theme---happy"], ""),
    215: (14, "train", ["genre---rock", "genre---pop"], ""),
    1301: (21, "validation", ["genre---pop", "mood/theme---happy"], ""),
    1302: (21, "validation", ["genre---rock", "instrument---piano"], "empty"),
    90017: (33, "test", ["genre---jazz", "instrument---piano", "mood/theme---film"], ""),
    90018: (33, "test", ["genre---soundtrack", "mood/theme---soundtrack"], "corrupt"),
    90019: (33, "test", ["genre---soundtrack", "mood/theme---soundtrack", "instrument---piano"], ""),
    77: (40, "train", ["genre---pop"], "missing"),
}
NOT_IN_SPLITS = 5550  # in autotagging_top50tags.tsv only


def row(number: int, artist: int, tags) -> str:
    return "\t".join([f"track_{number:07d}", f"artist_{artist:06d}", f"album_{artist + 100:06d}",
                      jamendo.audio_path(number), "212.4", *tags])


@pytest.fixture()
def jamendo_dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, audio = tmp_path / "repo" / "data", tmp_path / "audio"
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for number, (_, _, _, fault) in TRACKS.items():
        tone = (0.3 * np.sin(2 * np.pi * (100 + number % 500) * t)).astype(np.float32)
        plant_track(audio / jamendo.audio_path(number), fault, rng,
                    lambda path: sf.write(str(path), tone, 16000, format="MP3"))
    split_dir = data / "splits" / "split-0"
    split_dir.mkdir(parents=True)
    for part in ("train", "validation", "test"):
        lines = [row(n, a, tags) for n, (a, p, tags, _) in TRACKS.items() if p == part]
        (split_dir / f"autotagging_top50tags-{part}.tsv").write_text("\n".join([HEADER, *lines]) + "\n")
    everything = [row(n, a, tags) for n, (a, _, tags, _) in TRACKS.items()] + [row(NOT_IN_SPLITS, 50, ["genre---rock"])]
    (data / "autotagging_top50tags.tsv").write_text("\n".join([HEADER, *everything]) + "\n")
    return data, audio


def test_audio_path_layout() -> None:
    assert jamendo.audio_path(214) == "14/214.mp3" and jamendo.audio_path(1405384) == "84/1405384.mp3"
    assert jamendo.audio_path(1195900) == "00/1195900.mp3" and jamendo.audio_path(7) == "07/7.mp3"


def test_kept_skipped_split_and_short_tag_names(jamendo_dirs, tmp_path: Path) -> None:
    data, audio = jamendo_dirs
    result = jamendo.run(tmp_path / "out", data.parent, audio, quiet=True)  # the repository root works too
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    kept = ["track_0000214", "track_0000215", "track_0001301", "track_0090017", "track_0090019"]
    assert list(master["track_id"]) == kept
    assert master.set_index("track_id").loc["track_0090017", "mp3_path"] == "17/90017.mp3"
    assert master.set_index("track_id").loc["track_0000214", "artist_id"] == "artist_000014"
    assert "audio_start" not in master.columns and set(master["duration"]) == {"212.4"}
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    reasons = dict(zip(skipped["track_id"], skipped["reason"]))
    assert reasons["track_0001302"] == "empty file (0 bytes)"
    assert reasons["track_0090018"].startswith("corrupt audio")
    assert reasons["track_0000077"] == "audio missing"
    assert reasons["track_0005550"] == "in autotagging_top50tags.tsv but in none of the split-0 files"
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    assert dict(zip(split["track_id"], split["split"])) == {
        "track_0000214": "train", "track_0000215": "train", "track_0001301": "valid", "track_0090017": "test",
        "track_0090019": "test"}
    tids, tags, pairs = read_tag_db(tmp_path / "out" / "clean_tags.db")
    assert tids == kept
    # "soundtrack" is a genre and a mood/theme: both keep their category; the others lose it
    assert pairs["track_0000214"] == {"rock", "guitar", "happy"}
    assert pairs["track_0090019"] == {"genre---soundtrack", "mood/theme---soundtrack", "piano"}
    assert tags[:3] == ["happy", "piano", "pop"]  # 2 tracks each, then by name
    assert set(tags) == {"happy", "piano", "pop", "rock", "guitar", "jazz", "film", "genre---soundtrack",
                         "mood/theme---soundtrack"}
    assert result["kept"] == 5 and result["skipped"] == 4 and result["splits"] == {"train": 2, "valid": 1, "test": 2}


def test_full_tag_names_and_excerpts(jamendo_dirs, tmp_path: Path) -> None:
    data, audio = jamendo_dirs
    jamendo.run(tmp_path / "out", data, audio, tag_names_mode="full", excerpt_s=0.2, quiet=True)
    _, tags, pairs = read_tag_db(tmp_path / "out" / "clean_tags.db")
    assert pairs["track_0000214"] == {"genre---rock", "instrument---guitar", "mood/theme---happy"}
    assert all("---" in tag for tag in tags)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv").set_index("track_id")
    length = master.loc["track_0000214", "clip_length"]
    assert master.loc["track_0000214", "audio_start"] == pytest.approx((length - 0.2) / 2, abs=1e-3)
    assert master.loc["track_0000214", "audio_end"] - master.loc["track_0000214", "audio_start"] == pytest.approx(0.2)
    assert jamendo.excerpt_span(10.0, 30.0) == (0.0, 10.0) and jamendo.excerpt_span(100.0, 30.0) == (35.0, 65.0)
    assert jamendo.tag_names(["genre---rock", "mood/theme---rock", "genre---pop"], "short") == {
        "genre---rock": "genre---rock", "mood/theme---rock": "mood/theme---rock", "genre---pop": "pop"}


def test_bad_inputs_give_one_line_errors_naming_the_file(jamendo_dirs, tmp_path: Path, capsys) -> None:
    data, audio = jamendo_dirs
    train = data / "splits" / "split-0" / "autotagging_top50tags-train.tsv"
    good = train.read_text()
    cases = [
        (good.replace("\t", ","), r"autotagging_top50tags-train\.tsv:1: expected the tab-separated header"),
        (good.replace("track_0000215", "t215"), r"-train\.tsv:3: TRACK_ID 't215' does not look like track_0000214"),
        (good.replace("genre---pop", "genre:pop"), r"-train\.tsv:3: tag 'genre:pop' is not <category>---<tag>"),
        (good.replace("212.4", "long", 1), r"-train\.tsv:2: DURATION 'long' is not a number"),
        (good + row(214, 14, ["genre---rock"]) + "\n", r"-train\.tsv:5: track_0000214 is already on line 2"),
        (good.replace("14/214.mp3", "/abs/214.mp3"), r"-train\.tsv:2: PATH '/abs/214.mp3' must be relative"),
    ]
    for n, (text, pattern) in enumerate(cases):
        train.write_text(text)
        with pytest.raises(DataFormatError, match=pattern):
            jamendo.run(tmp_path / f"o{n}", data, audio, quiet=True)
    train.write_bytes(good.encode() + b"track_0000999\tartist_000001\talbum_000001\t99/999.mp3\t1.0\tgenre---caf\xe9\n")
    with pytest.raises(DataFormatError, match=r"-train\.tsv:5: not UTF-8"):
        jamendo.run(tmp_path / "latin", data, audio, quiet=True)
    train.write_text(good)
    with pytest.raises(MissingInputError, match=r"split-3.*autotagging_genre-train\.tsv"):
        jamendo.run(tmp_path / "missing", data, audio, subset="genre", split=3, quiet=True)
    with pytest.raises(DataFormatError, match="--split must be one of 0..4"):
        jamendo.run(tmp_path / "s", data, audio, split=5, quiet=True)
    jamendo.run(tmp_path / "ok", data, audio, quiet=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        jamendo.run(tmp_path / "ok", data, audio, quiet=True)
    status = jamendo.main([str(tmp_path / "cli"), "--metadata-dir", str(data), "--root-dir", str(audio),
                           "--subset", "moodtheme", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and err.startswith("orpheus jamendo: error:") and "moodtheme" in err


def test_a_track_in_two_split_files_is_skipped_with_both_names(jamendo_dirs, tmp_path: Path) -> None:
    data, audio = jamendo_dirs
    test_file = data / "splits" / "split-0" / "autotagging_top50tags-test.tsv"
    test_file.write_text(test_file.read_text() + row(214, 14, ["genre---rock"]) + "\n")
    result = jamendo.run(tmp_path / "out", data, audio, quiet=True)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    reason = dict(zip(skipped["track_id"], skipped["reason"]))["track_0000214"]
    assert reason == "in two split files (autotagging_top50tags-train.tsv and autotagging_top50tags-test.tsv)"
    assert result["kept"] == 4


# ----------------------------------------------------------------------------------------------
# The miniature generator.

REASON_OF_FAULT = {"empty": "empty file (0 bytes)", "corrupt": "corrupt audio", "missing": "audio missing"}


@pytest.fixture(scope="module")
def mini_jamendo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mini") / "jamendo"
    manifest = synthetic_jamendo.generate(root, n_tracks=18, seed=3, duration_s=0.5, quiet=True)
    return root, manifest


def test_generator_writes_the_real_layout(mini_jamendo) -> None:
    root, manifest = mini_jamendo
    data = root / "data"
    for subset in jamendo.SUBSETS:
        stem = jamendo.subset_stem(subset)
        assert (data / f"{stem}.tsv").is_file()
        for n in range(5):
            parts = [jamendo.read_tsv(jamendo.split_file(data, subset, n, p)) for p in ("train", "validation", "test")]
            ids = [t.track_id for part in parts for t in part]
            assert len(ids) == len(set(ids)) and all(parts), (subset, n)
            artists = [{t.artist_id for t in part} for part in parts]
            assert not (artists[0] & artists[1] or artists[0] & artists[2] or artists[1] & artists[2])
            tag_sets = [{tag for t in part for tag in t.tags} for part in parts]
            assert tag_sets[0] == tag_sets[1] == tag_sets[2], (subset, n)  # as the real splits guarantee
    first = (data / "autotagging.tsv").read_text().splitlines()
    assert first[0] == HEADER
    fields = first[1].split("\t")
    assert fields[0].startswith("track_") and len(fields[0]) == 13 and fields[3] == jamendo.audio_path(int(fields[0][6:]))
    moods = jamendo.read_tsv(data / "autotagging_moodtheme.tsv")
    assert moods and all(tag.startswith("mood/theme---") for t in moods for tag in t.tags)
    assert sorted(e["fault"] for e in manifest.values() if e["fault"]) == ["corrupt", "empty", "missing"]
    good = next(e for e in manifest.values() if not e["fault"])
    audio, sample_rate = sf.read(root / "audio" / good["mp3_path"], dtype="float32")
    assert sample_rate == 44100 and audio.shape[1] == 2 and np.abs(audio).max() > 0.01
    assert set(synthetic_jamendo.JAMENDO_RECIPES.values()) <= set(music_synth.TAG_RECIPES)
    style_tags = {t for always, optional in synthetic_jamendo.STYLES.values() for t in (*always, *optional)}
    assert set(synthetic_jamendo.JAMENDO_RECIPES) <= style_tags
    assert all(e["recipes"] and music_synth.TAG_RECIPES[e["recipes"][0]].kind == "genre" for e in manifest.values())


def test_converter_on_the_generated_dataset_matches_its_manifest(mini_jamendo, tmp_path: Path) -> None:
    root, manifest = mini_jamendo
    result = jamendo.run(tmp_path / "out", root / "data", root / "audio", subset="all", split=2, quiet=True)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == sorted(tid for tid, e in manifest.items() if not e["fault"])
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    assert {tid: r.split(" (")[0] for tid, r in zip(skipped["track_id"], skipped["reason"])} == {
        tid: REASON_OF_FAULT[e["fault"]].split(" (")[0] for tid, e in manifest.items() if e["fault"]}
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    assert dict(zip(split["track_id"], split["split"])) == {tid: manifest[tid]["splits"][2] for tid in split["track_id"]}
    _, _, pairs = read_tag_db(tmp_path / "out" / "clean_tags.db")
    tid = master["track_id"][0]
    assert pairs[tid] <= {tag.split("---")[1] for tag in manifest[tid]["tags"]}
    assert result["splits"].keys() == {"train", "valid", "test"}


def test_generator_is_deterministic_and_resumes(tmp_path: Path) -> None:
    first = synthetic_jamendo.generate(tmp_path / "a", n_tracks=12, seed=9, duration_s=0.3, quiet=True)
    second = synthetic_jamendo.generate(tmp_path / "b", n_tracks=12, seed=9, duration_s=0.3, quiet=True)
    assert first == second and file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert synthetic_jamendo.plan_tracks(12, 9) != synthetic_jamendo.plan_tracks(12, 10)
    with pytest.raises(OutputExistsError):
        synthetic_jamendo.generate(tmp_path / "a", n_tracks=12, seed=9, duration_s=0.3, quiet=True)
    with pytest.raises(ConfigError, match="at least 12"):
        synthetic_jamendo.generate(tmp_path / "c", n_tracks=5, quiet=True)
    (tmp_path / "b" / "data" / "autotagging.tsv").unlink()  # interrupted before the last file: resumes
    kept = next(p for p in sorted((tmp_path / "b" / "audio").rglob("*.mp3")) if p.stat().st_size > 0)
    mtime = kept.stat().st_mtime_ns
    synthetic_jamendo.generate(tmp_path / "b", n_tracks=12, seed=9, duration_s=0.3, quiet=True)
    assert kept.stat().st_mtime_ns == mtime and file_digests(tmp_path / "a") == file_digests(tmp_path / "b")


def test_cli_runs_as_module(mini_jamendo, tmp_path: Path) -> None:
    root, _ = mini_jamendo
    out = subprocess.run([sys.executable, "-m", "orpheus", "jamendo", str(tmp_path / "out"), "--metadata-dir",
                          str(root / "data"), "--root-dir", str(root / "audio"), "--subset", "genre", "--split", "4",
                          "--jobs", "1", "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MTG-Jamendo genre split-4: kept ")
    assert "examples:" in jamendo.build_parser().format_help()
    assert "examples:" in synthetic_jamendo.build_parser().format_help()


# ----------------------------------------------------------------------------------------------
# End to end: converter outputs feed preprocessing (and training, in the slow test) unchanged.

def _clean_mini_jamendo(tmp_path: Path, duration_s: float) -> tuple[Path, Path]:
    root = tmp_path / "jamendo"
    synthetic_jamendo.generate(root, n_tracks=24, seed=11, duration_s=duration_s, quiet=True)
    jamendo.run(tmp_path / "clean", root / "data", root / "audio", subset="top50tags", split=0, quiet=True)
    return root / "audio", tmp_path / "clean"


@pytest.mark.slow
def test_clean_then_shards_with_the_official_split(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean

    audio, clean = _clean_mini_jamendo(tmp_path, 2.5)
    info = shards_from_clean(clean, audio, tmp_path / "shards")
    _, vocabulary, pairs = read_tag_db(clean / "clean_tags.db")
    split = pd.read_csv(clean / "split.csv", dtype=str)
    assert info["counts"] == split[split["track_id"].isin(pairs)]["split"].value_counts().to_dict()
    assert list(info["tags"]) == vocabulary


@pytest.mark.slow
def test_end_to_end_clean_shards_train_test(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean, train_and_test

    audio, clean = _clean_mini_jamendo(tmp_path, 3.0)
    info = shards_from_clean(clean, audio, tmp_path / "shards")
    metrics = train_and_test(tmp_path / "shards", tmp_path)
    assert metrics["n_tracks"] == info["counts"]["test"] > 0
    assert [row["tag"] for row in metrics["per_tag"]] == list(info["tags"])


def test_demo_truth_uses_the_converters_tag_names(tmp_path: Path) -> None:
    from msd.miniature import demo

    p = demo.DemoPaths(tmp_path)
    p.raw.mkdir(parents=True)
    manifest = {"track_0000042": {"tags": ["genre---rock", "mood/theme---happy"], "fault": ""}}
    (p.raw / "synthetic_manifest.json").write_text(__import__("json").dumps(manifest))
    corpus = demo.CORPORA["jamendo"](p, 12, 0, 1)
    assert corpus.truth() == {"track_0000042": ["rock", "happy"]}
    assert [stage.argv[3] for stage in corpus.stages] == ["synthetic-jamendo", "jamendo"]
