"""FMA conversion (msd.converters.fma) and the miniature generator (msd.miniature.synthetic_fma).

A hand-built FMA in the real formats (tracks.csv with its two header rows written by pandas from
MultiIndex columns, genres.csv, real mp3s at <000>/<000002>.mp3, real faults) gives exact expectations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from msd.converters import fma
from orpheus.errors import DataFormatError, MissingInputError
from tests.fixtures_audio import plant_track
from tests.fixtures_msd import file_digests, read_tag_db, tag_db_values

REPO = Path(__file__).resolve().parents[3]
GENRES = [(12, 0, "Rock", 12), (25, 12, "Punk", 12), (15, 0, "Electronic", 15), (181, 15, "Techno", 15),
          (21, 0, "Hip-Hop", 21), (5, 0, "Classical", 5)]
# track_id -> (subset, split, genre_top, genres_all, artist_id, fault)
TRACKS = {
    2: ("small", "training", "Hip-Hop", [21], 1, ""),
    5: ("small", "validation", "Rock", [12, 25], 2, ""),
    140: ("small", "test", "Electronic", [15, 181], 3, ""),
    1001: ("medium", "training", "Rock", [12], 2, ""),
    1002: ("medium", "training", "Electronic", [15], 4, "missing"),
    20000: ("large", "training", None, [5, 12], 5, ""),
    20001: ("large", "test", "Classical", [5], 6, "empty"),
    123456: ("large", "validation", "Rock", [12, 25], 7, "corrupt"),
}


def write_fma(root: Path, tracks: dict = TRACKS, literal_of=lambda genres: str(genres)) -> tuple[Path, Path]:
    """Write fma_metadata/{tracks,genres}.csv and fma_audio/<000>/<000002>.mp3; return (metadata, audio)."""
    metadata, audio = root / "fma_metadata", root / "fma_audio"
    metadata.mkdir(parents=True)
    rows = {}
    for tid, (subset, split, top, genres_all, artist, _) in tracks.items():
        rows[tid] = {("artist", "id"): artist, ("artist", "name"): f"Artist {artist}", ("set", "split"): split,
                     ("set", "subset"): subset, ("track", "genre_top"): top if top else np.nan,
                     ("track", "genres"): str(genres_all[-1:]), ("track", "genres_all"): literal_of(genres_all),
                     ("track", "title"): f"Song {tid}"}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index.name = "track_id"
    frame.to_csv(metadata / "tracks.csv")
    pd.DataFrame([(g, 1, p, t, top) for g, p, t, top in GENRES],
                 columns=["genre_id", "#tracks", "parent", "title", "top_level"]).to_csv(metadata / "genres.csv",
                                                                                        index=False)
    rng = np.random.default_rng(0)
    t = np.arange(22050) / 44100
    for tid, (*_, fault) in tracks.items():
        tone = (0.2 * np.sin(2 * np.pi * (100 + tid % 500) * t)).astype(np.float32)
        plant_track(audio / fma.audio_path(tid), fault, rng,
                    lambda path: sf.write(str(path), np.stack([tone, tone], 1), 44100, format="MP3"))
    return metadata, audio


@pytest.fixture()
def fma_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return write_fma(tmp_path / "fma")


def test_audio_path_layout() -> None:
    assert fma.audio_path(2) == "000/000002.mp3"
    assert fma.audio_path(123456) == "123/123456.mp3"


@pytest.mark.parametrize("subset, kept, skipped", [
    ("small", ["2", "5", "140"], {}),
    ("medium", ["2", "5", "140", "1001"], {"1002": "audio missing"}),
    ("large", ["2", "5", "140", "1001", "20000"],
     {"1002": "audio missing", "20001": "empty file (0 bytes)", "123456": "corrupt audio"}),
])
def test_subsets_nest_and_faults_are_reported(fma_dirs, tmp_path: Path, subset, kept, skipped) -> None:
    metadata, audio = fma_dirs
    result = fma.run(tmp_path / "out", metadata, audio, subset=subset, quiet=True)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == kept
    assert list(master.columns[:3]) == ["track_id", "artist_id", "mp3_path"]
    assert set(master["sample_rate"]) == {"44100"} and set(master["channels"]) == {"2"}
    report = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    reasons = dict(zip(report["track_id"], report["reason"]))
    assert set(reasons) == set(skipped)
    assert all(reasons[tid].startswith(reason) for tid, reason in skipped.items())
    assert result["kept"] == len(kept)


def test_official_split_and_artist_ids(fma_dirs, tmp_path: Path) -> None:
    metadata, audio = fma_dirs
    fma.run(tmp_path / "out", metadata, audio, subset="large", quiet=True)
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    assert dict(zip(split["track_id"], split["split"])) == {
        "2": "train", "5": "valid", "140": "test", "1001": "train", "20000": "train"}
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str).set_index("track_id")
    assert master["artist_id"].to_dict() == {"2": "1", "5": "2", "140": "3", "1001": "2", "20000": "5"}
    assert master.loc["140", "mp3_path"] == "000/000140.mp3"


def test_tags_top_versus_all(fma_dirs, tmp_path: Path) -> None:
    metadata, audio = fma_dirs
    fma.run(tmp_path / "top", metadata, audio, subset="large", tags="top", quiet=True)
    tids, tags, pairs = read_tag_db(tmp_path / "top" / "clean_tags.db")
    assert tids == ["2", "5", "140", "1001", "20000"]
    assert tags == ["Rock", "Electronic", "Hip-Hop"]  # Rock 2; then ties by name
    assert pairs == {"2": {"Hip-Hop"}, "5": {"Rock"}, "140": {"Electronic"}, "1001": {"Rock"}}  # 20000: no genre_top
    assert tag_db_values(tmp_path / "top" / "clean_tags.db") <= {100.0}
    fma.run(tmp_path / "all", metadata, audio, subset="large", tags="all", quiet=True)
    _, tags, pairs = read_tag_db(tmp_path / "all" / "clean_tags.db")
    assert tags == ["Rock", "Classical", "Electronic", "Hip-Hop", "Punk", "Techno"]
    assert pairs["5"] == {"Rock", "Punk"} and pairs["140"] == {"Electronic", "Techno"}
    assert pairs["20000"] == {"Classical", "Rock"}
    assert tag_db_values(tmp_path / "all" / "clean_tags.db") <= {100.0}
    fma.run(tmp_path / "top1", metadata, audio, subset="large", tags="all", top=1, quiet=True)
    assert read_tag_db(tmp_path / "top1" / "clean_tags.db")[1] == ["Rock"]
    assert tag_db_values(tmp_path / "top1" / "clean_tags.db") <= {100.0}


def test_malformed_literal_names_file_and_column(tmp_path: Path, capsys) -> None:
    broken = dict(TRACKS)
    metadata, audio = write_fma(tmp_path / "fma", broken,
                                literal_of=lambda g: "[12, 25" if g == [12, 25] else str(g))
    with pytest.raises(DataFormatError, match=r"tracks\.csv: column \('track', 'genres_all'\), track 5: malformed"):
        fma.run(tmp_path / "out", metadata, audio, subset="large", tags="all", quiet=True)
    status = fma.main([str(tmp_path / "out"), "--metadata-dir", str(metadata), "--root-dir", str(audio),
                       "--subset", "large", "--tags", "all", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and "tracks.csv" in err and "genres_all" in err


def test_bad_inputs_give_one_line_errors_naming_the_file(fma_dirs, tmp_path: Path) -> None:
    metadata, audio = fma_dirs
    with pytest.raises(MissingInputError, match="tracks.csv"):
        fma.run(tmp_path / "a", tmp_path, audio, quiet=True)
    tracks = pd.read_csv(metadata / "tracks.csv", index_col=0, header=[0, 1])
    tracks.drop(columns=[("set", "split")]).to_csv(metadata / "tracks.csv")
    with pytest.raises(DataFormatError, match=r"tracks\.csv: missing column\(s\) \('set', 'split'\)"):
        fma.run(tmp_path / "b", metadata, audio, quiet=True)
    tracks.droplevel(0, axis=1).to_csv(metadata / "tracks.csv")  # one header row only
    with pytest.raises(DataFormatError, match=r"tracks\.csv"):
        fma.run(tmp_path / "c", metadata, audio, quiet=True)
    tracks.to_csv(metadata / "tracks.csv")
    pd.DataFrame({"genre_id": [12], "name": ["Rock"]}).to_csv(metadata / "genres.csv", index=False)
    with pytest.raises(DataFormatError, match=r"genres\.csv: missing column\(s\) title"):
        fma.run(tmp_path / "d", metadata, audio, quiet=True)


def test_command_runs_from_anywhere(fma_dirs, tmp_path: Path) -> None:
    """`orpheus fma` (as `python -m orpheus fma`) from a folder outside the repository."""
    metadata, audio = fma_dirs
    out = subprocess.run([sys.executable, "-m", "orpheus", "fma", str(tmp_path / "out"), "--metadata-dir",
                          str(metadata), "--root-dir", str(audio), "--subset", "medium", "--tags", "all",
                          "--jobs", "1", "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "FMA medium: kept 4 tracks (train 2, valid 1, test 1), 5 tags, skipped 1" in out.stdout
    assert "examples:" in fma.build_parser().format_help()


# ----------------------------------------------------------------------------------------------
# The miniature generator.

from msd.miniature import music_synth, synthetic_fma  # noqa: E402

REASON_OF_FAULT = {"empty": "empty file (0 bytes)", "corrupt": "corrupt audio", "missing": "audio missing"}


@pytest.fixture(scope="module")
def mini_fma(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mini") / "fma"
    return root, synthetic_fma.generate(root, n_tracks=16, seed=4, duration_s=0.5, quiet=True)


def test_generator_writes_the_real_formats(mini_fma) -> None:
    root, manifest = mini_fma
    lines = (root / "fma_metadata" / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",album,album,artist") and lines[1].startswith(",id,title,id,name")
    assert lines[2].startswith("track_id,")
    tracks = fma.read_tracks(root / "fma_metadata" / "tracks.csv")
    for column in [*fma.REQUIRED_TRACK_COLUMNS, ("artist", "name"), ("track", "title"), ("track", "genres")]:
        assert column in tracks.columns
    assert [str(t) for t in tracks.index] == list(manifest)
    genres = pd.read_csv(root / "fma_metadata" / "genres.csv")
    assert list(genres.columns) == list(fma.GENRES_COLUMNS)
    assert (genres["parent"] == 0).sum() == 16 and (genres["top_level"] == genres["genre_id"]).sum() == 16
    assert set(tracks[("set", "subset")]) <= set(fma.SUBSETS)
    small = tracks[tracks[("set", "subset")] == "small"]
    assert set(small[("track", "genre_top")]) <= set(synthetic_fma.SMALL_GENRES)
    for tid, entry in manifest.items():  # genres_all holds every ancestor of every genre
        assert set(fma.parse_id_lists(Path("x"), tracks.loc[[int(tid)], ("track", "genres")], "g")[int(tid)]) \
            <= set(fma.parse_id_lists(Path("x"), tracks.loc[[int(tid)], ("track", "genres_all")], "g")[int(tid)])
    split_of_artist = tracks[("set", "split")].groupby(tracks[("artist", "id")]).nunique()
    assert (split_of_artist == 1).all()  # the official split keeps artists apart
    assert sorted(e["fault"] for e in manifest.values() if e["fault"]) == ["corrupt", "empty", "missing"]
    good = next(e for e in manifest.values() if not e["fault"])
    audio, sample_rate = sf.read(root / "fma_large" / good["mp3_path"], dtype="float32")
    assert sample_rate == 44100 and audio.shape[1] == 2 and abs(len(audio) - 22050) < 2400
    assert good["recipes"] and set(good["recipes"]) <= set(music_synth.TAG_RECIPES)


def test_converter_on_the_generated_dataset_matches_its_manifest(mini_fma, tmp_path: Path) -> None:
    root, manifest = mini_fma
    fma.run(tmp_path / "out", root / "fma_metadata", root / "fma_large", subset="large", tags="all", quiet=True)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == [tid for tid, e in manifest.items() if not e["fault"]]
    assert dict(zip(master["track_id"], master["artist_id"])) == {
        tid: e["artist_id"] for tid, e in manifest.items() if not e["fault"]}
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    assert len(skipped) == 3
    for tid, reason in zip(skipped["track_id"], skipped["reason"]):
        assert reason.startswith(REASON_OF_FAULT[manifest[tid]["fault"]])
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    official = {"training": "train", "validation": "valid", "test": "test"}
    assert dict(zip(split["track_id"], split["split"])) == {
        tid: official[e["split"]] for tid, e in manifest.items() if not e["fault"]}


def test_generator_is_deterministic(tmp_path: Path) -> None:
    first = synthetic_fma.generate(tmp_path / "a", n_tracks=12, seed=2, duration_s=0.3, quiet=True)
    second = synthetic_fma.generate(tmp_path / "b", n_tracks=12, seed=2, duration_s=0.3, quiet=True)
    assert first == second and file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert synthetic_fma.plan_tracks(12, 2).equals(synthetic_fma.plan_tracks(12, 2))
    assert not synthetic_fma.plan_tracks(12, 2).equals(synthetic_fma.plan_tracks(12, 3))


def test_fma_genres_map_to_recipes() -> None:
    titles = set(synthetic_fma.genre_table()["title"])
    assert set(synthetic_fma.FMA_RECIPES) == titles
    assert {r for rs in synthetic_fma.FMA_RECIPES.values() for r in rs} <= set(music_synth.TAG_RECIPES)


# ----------------------------------------------------------------------------------------------
# End to end: converter outputs feed preprocessing and training unchanged.

@pytest.mark.slow
def test_end_to_end_clean_shards_train_test(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean, train_and_test

    root = tmp_path / "fma"
    manifest = synthetic_fma.generate(root, n_tracks=24, seed=6, duration_s=3.0, quiet=True)
    fma.run(tmp_path / "clean", root / "fma_metadata", root / "fma_large", subset="large", tags="all", quiet=True)
    info = shards_from_clean(tmp_path / "clean", root / "fma_large", tmp_path / "shards")
    official = {"training": "train", "validation": "valid", "test": "test"}
    expected = pd.Series([official[e["split"]] for e in manifest.values() if not e["fault"] and e["genres"]])
    assert info["counts"] == expected.value_counts().to_dict()
    metrics = train_and_test(tmp_path / "shards", tmp_path)
    assert metrics["n_tracks"] == info["counts"]["test"] > 0
    assert [row["tag"] for row in metrics["per_tag"]] == list(info["tags"])
