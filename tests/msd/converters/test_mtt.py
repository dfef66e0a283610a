"""MagnaTagATune conversion (msd.converters.mtt) and the miniature generator (msd.miniature.synthetic_mtt).

A hand-built MTT in the real formats (quoted tab-separated CSVs, real mp3s in folders 0..f, real
faults) gives exact expectations; the generator is checked against its own manifest.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from msd.converters import mtt
from orpheus.errors import DataFormatError, MissingInputError, OutputExistsError
from tests.fixtures_audio import plant_track
from tests.fixtures_msd import file_digests, read_tag_db, tag_db_values

REPO = Path(__file__).resolve().parents[3]
TAGS = ["female", "woman", "female vocal", "classical", "clasical", "rock", "guitar", "no vocals", "instrumental",
        "piano"]
# clip_id -> (mp3_path, tags, fault)
CLIPS = {
    2: ("0/jade_foxes-first_light-01-dawn-0-29.mp3", ["classical", "piano", "no vocals"], ""),
    6: ("0/jade_foxes-first_light-01-dawn-30-59.mp3", ["clasical", "instrumental"], ""),
    10: ("5/iron_trio-loud_hours-02-storm-0-29.mp3", ["rock", "guitar", "female vocal"], ""),
    14: ("c/iron_trio-loud_hours-03-gale-0-29.mp3", ["rock", "woman"], ""),
    20: ("d/j_s__bach_consort-cantatas-01-aria-0-29.mp3", ["classical", "female"], ""),
    25: ("f/j_s__bach_consort-cantatas-02-chorale-0-29.mp3", [], ""),
    31: ("b/iron_trio-loud_hours-04-calm-0-29.mp3", ["guitar"], "empty"),
    40: ("e/jade_foxes-first_light-02-noon-0-29.mp3", ["rock"], "corrupt"),
    45: ("a/jade_foxes-first_light-03-dusk-0-29.mp3", ["piano"], "missing"),
    35644: ("3/known_bad-album-01-x-0-29.mp3", ["rock"], "empty"),
}
ARTISTS = {2: "Jade Foxes", 6: "Jade Foxes", 10: "Iron Trio", 14: "Iron Trio", 20: "J.S. Bach Consort",
           25: "J.S. Bach Consort", 31: "Iron Trio", 40: "Jade Foxes", 45: "Jade Foxes", 35644: "Known Bad"}
KEPT = ["2", "6", "10", "14", "20", "25"]


def write_tsv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def tone_mp3(path: Path, freq_hz: float, duration_s: float = 0.5, sample_rate: int = 16000) -> None:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), sample_rate, format="MP3")


@pytest.fixture()
def mtt_root(tmp_path: Path) -> Path:
    root = tmp_path / "mtt"
    rng = np.random.default_rng(0)
    for clip_id, (rel, _, fault) in CLIPS.items():
        plant_track(root / rel, fault, rng, lambda path: tone_mp3(path, 200 + clip_id))
    write_tsv(root / "annotations_final.csv", ["clip_id", *TAGS, "mp3_path"],
              [[cid, *[int(t in tags) for t in TAGS], rel] for cid, (rel, tags, _) in CLIPS.items()])
    write_tsv(root / "clip_info_final.csv", mtt.CLIP_INFO_COLUMNS,
              [[cid, 1, "title", ARTISTS[cid], "album", "url", 0, 29, "orig", rel]
               for cid, (rel, _, _) in CLIPS.items()])
    return root


def test_kept_and_skipped_clips_with_reasons(mtt_root: Path, tmp_path: Path) -> None:
    result = mtt.run(tmp_path / "out", mtt_root, quiet=True)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == KEPT
    assert list(master.columns[:3]) == ["track_id", "artist_id", "mp3_path"]
    assert master.set_index("track_id").loc["10", "mp3_path"] == CLIPS[10][0]
    assert set(master["sample_rate"]) == {"16000"} and set(master["channels"]) == {"1"}
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    reasons = dict(zip(skipped["track_id"], skipped["reason"]))
    assert set(reasons) == {"31", "40", "45", "35644"}
    assert reasons["31"] == "empty file (0 bytes)"
    assert reasons["40"].startswith("corrupt audio")
    assert reasons["45"] == "audio missing"
    assert reasons["35644"].startswith("known-bad clip")
    assert result["kept"] == 6 and result["skipped"] == 4


def test_standard_split_by_folder(mtt_root: Path, tmp_path: Path) -> None:
    mtt.run(tmp_path / "out", mtt_root, quiet=True)
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    assert dict(zip(split["track_id"], split["split"])) == {
        "2": "train", "6": "train", "10": "train", "14": "valid", "20": "test", "25": "test"}


def test_tag_database_shape_order_and_values(mtt_root: Path, tmp_path: Path) -> None:
    mtt.run(tmp_path / "out", mtt_root, quiet=True)
    tids, tags, pairs = read_tag_db(tmp_path / "out" / "clean_tags.db")
    vals = tag_db_values(tmp_path / "out" / "clean_tags.db")
    assert tids == KEPT
    # raw tags on kept clips: classical 2, rock 2, piano 1, no vocals 1, clasical 1, instrumental 1, guitar 1,
    # female vocal 1, woman 1, female 1 -> by count desc, then name
    assert tags == ["classical", "rock", "clasical", "female", "female vocal", "guitar", "instrumental",
                    "no vocals", "piano", "woman"]
    assert vals == {100.0}
    assert pairs["10"] == {"rock", "guitar", "female vocal"}
    assert "25" not in pairs  # kept, but untagged


def test_merge_synonyms_and_top(mtt_root: Path, tmp_path: Path) -> None:
    result = mtt.run(tmp_path / "merged", mtt_root, merge_synonyms=True, quiet=True)
    _, tags, pairs = read_tag_db(tmp_path / "merged" / "clean_tags.db")
    # female <- female, woman, female vocal (3 clips); classical <- classical, clasical (3);
    # no singer <- no vocals, instrumental (2); rock 2; guitar 1; piano 1
    assert tags == ["classical", "female", "no singer", "rock", "guitar", "piano"]
    assert pairs["14"] == {"rock", "female"} and pairs["6"] == {"classical", "no singer"}
    assert result["tags"] == tags
    mtt.run(tmp_path / "top2", mtt_root, merge_synonyms=True, top=2, discard_no_tag=True, quiet=True)
    tids, tags, pairs = read_tag_db(tmp_path / "top2" / "clean_tags.db")
    assert tags == ["classical", "female"]
    assert tids == ["2", "6", "10", "14", "20"]  # 25 has no tag at all now
    skipped = pd.read_csv(tmp_path / "top2" / "skipped.csv", dtype=str)
    assert dict(zip(skipped["track_id"], skipped["reason"]))["25"] == "no tag among the kept tags"


def test_artist_ids_from_clip_info_or_file_name(mtt_root: Path, tmp_path: Path) -> None:
    mtt.run(tmp_path / "with_info", mtt_root, quiet=True)
    (mtt_root / "clip_info_final.csv").unlink()
    mtt.run(tmp_path / "no_info", mtt_root, quiet=True)
    with_info = pd.read_csv(tmp_path / "with_info" / "ultimate.csv", dtype=str).set_index("track_id")
    no_info = pd.read_csv(tmp_path / "no_info" / "ultimate.csv", dtype=str).set_index("track_id")
    assert with_info["artist_id"].to_dict() == no_info["artist_id"].to_dict()
    assert with_info.loc["20", "artist_id"] == mtt.artist_id_from_name("j_s__bach_consort")
    assert with_info.loc["2", "artist_id"] == with_info.loc["6", "artist_id"] != with_info.loc["10", "artist_id"]
    assert with_info.loc["2", "artist_id"] == hashlib.sha1(b"jade foxes").hexdigest()[:16]


def test_full_decode_mode_and_refuses_overwrite(mtt_root: Path, tmp_path: Path) -> None:
    result = mtt.run(tmp_path / "out", mtt_root, verify="decode", quiet=True)
    assert result["kept"] == 6
    with pytest.raises(OutputExistsError, match="--overwrite"):
        mtt.run(tmp_path / "out", mtt_root, quiet=True)
    assert mtt.run(tmp_path / "out", mtt_root, overwrite=True, quiet=True)["kept"] == 6


def test_bad_inputs_give_one_line_errors_naming_the_file(mtt_root: Path, tmp_path: Path, capsys) -> None:
    annotations = mtt_root / "annotations_final.csv"
    with pytest.raises(MissingInputError, match="nowhere.csv"):
        mtt.run(tmp_path / "a", mtt_root, annotations=tmp_path / "nowhere.csv", quiet=True)
    comma = tmp_path / "comma.csv"
    pd.read_csv(annotations, sep="\t").to_csv(comma, index=False)  # re-saved comma-separated: wrong columns
    with pytest.raises(DataFormatError, match=r"comma\.csv.*clip_id"):
        mtt.run(tmp_path / "b", mtt_root, annotations=comma, quiet=True)
    bad_value = tmp_path / "bad_value.csv"
    bad_value.write_text(annotations.read_text().replace('"35644"\t"0"', '"35644"\t"yes"'))
    with pytest.raises(DataFormatError, match=r"bad_value\.csv: tag column 'female'.*'yes'"):
        mtt.run(tmp_path / "c", mtt_root, annotations=bad_value, quiet=True)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.csv: not a tab-separated annotations file"):
        mtt.run(tmp_path / "e", mtt_root, annotations=empty, quiet=True)
    status = mtt.main([str(tmp_path / "d"), "--root-dir", str(mtt_root), "--annotations", str(comma), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and err.startswith("orpheus mtt: error:") and "comma.csv" in err


def test_command_runs_from_anywhere(mtt_root: Path, tmp_path: Path) -> None:
    """`orpheus mtt` (as `python -m orpheus mtt`) from a folder outside the repository."""
    out = subprocess.run([sys.executable, "-m", "orpheus", "mtt", str(tmp_path / "out"), "--root-dir",
                          str(mtt_root), "--merge-synonyms", "--top", "3", "--jobs", "1", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "kept 6 tracks (train 3, valid 1, test 2), 3 tags, skipped 4" in out.stdout
    assert "examples:" in mtt.build_parser().format_help()


def test_data_files_are_consistent() -> None:
    tags = mtt.read_list_txt(mtt.MTT_TAGS_TXT)
    assert len(tags) == 188 == len(set(tags))
    synonyms = mtt.read_synonyms()
    assert set(synonyms) <= set(tags)
    assert synonyms["woman singing"] == "female" and synonyms["men"] == "male" and synonyms["clasical"] == "classical"
    assert synonyms["instrumental"] == synonyms["no voice"] == synonyms["no vocals"]
    assert {"35644", "55753", "57881"} <= set(mtt.read_list_txt(mtt.MTT_KNOWN_BAD_TXT))


# ----------------------------------------------------------------------------------------------
# The miniature generator.

from msd.miniature import music_synth, synthetic_mtt  # noqa: E402

REASON_OF_FAULT = {"empty": "empty file (0 bytes)", "corrupt": "corrupt audio", "missing": "audio missing",
                   "known-bad": "known-bad clip"}


@pytest.fixture(scope="module")
def mini_mtt(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mini") / "mtt"
    manifest = synthetic_mtt.generate(root, n_clips=20, seed=5, duration_s=0.5, quiet=True)
    return root, manifest


def test_generator_writes_the_real_formats(mini_mtt) -> None:
    root, manifest = mini_mtt
    header = (root / "annotations_final.csv").read_text().splitlines()[0].split("\t")
    assert header[0] == '"clip_id"' and header[-1] == '"mp3_path"' and len(header) == 190
    annotations = mtt.read_annotations(root / "annotations_final.csv")
    assert list(annotations.columns[1:-1]) == mtt.read_list_txt(mtt.MTT_TAGS_TXT)
    info = pd.read_csv(root / "clip_info_final.csv", sep="\t", dtype=str)
    assert tuple(info.columns) == mtt.CLIP_INFO_COLUMNS
    assert list(info["mp3_path"]) == list(annotations["mp3_path"])
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == list(mtt.FOLDERS)
    assert {"35644", "55753", "57881"} <= set(manifest)
    assert sorted(e["fault"] for e in manifest.values() if e["fault"]) == ["corrupt", "empty", "known-bad",
                                                                            "known-bad", "known-bad", "missing"]
    assert any(not e["tags"] for e in manifest.values())  # untagged clips, as in the real annotations
    good = next(e for e in manifest.values() if not e["fault"])
    assert good["mp3_path"].count("-") >= 5 and good["mp3_path"].endswith("-29.mp3") or "-59.mp3" in good["mp3_path"]
    audio, sample_rate = sf.read(root / good["mp3_path"], dtype="float32")
    assert sample_rate == 16000 and audio.ndim == 1 and abs(len(audio) - 8000) < 1200 and np.abs(audio).max() > 0.01
    assert (root / manifest["35644"]["mp3_path"]).stat().st_size == 0


def test_converter_on_the_generated_dataset_matches_its_manifest(mini_mtt, tmp_path: Path) -> None:
    root, manifest = mini_mtt
    mtt.run(tmp_path / "out", root, merge_synonyms=True, top=50, quiet=True)
    master = pd.read_csv(tmp_path / "out" / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == sorted((cid for cid, e in manifest.items() if not e["fault"]), key=int)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    for clip_id, reason in zip(skipped["track_id"], skipped["reason"]):
        assert reason.startswith(REASON_OF_FAULT[manifest[clip_id]["fault"]])
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str)
    assert {cid: mtt.FOLDER_SPLITS[manifest[cid]["folder"]] for cid in split["track_id"]} \
        == dict(zip(split["track_id"], split["split"]))
    assert set(split["split"]) == {"train", "valid", "test"}
    artists = master.set_index("track_id")["artist_id"]
    assert all(artists[cid] == mtt.artist_id_from_name(manifest[cid]["artist"]) for cid in artists.index)


def test_generator_is_deterministic_and_resumes(tmp_path: Path) -> None:
    first = synthetic_mtt.generate(tmp_path / "a", n_clips=16, seed=9, duration_s=0.3, quiet=True)
    second = synthetic_mtt.generate(tmp_path / "b", n_clips=16, seed=9, duration_s=0.3, quiet=True)
    assert first == second and file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert synthetic_mtt.plan_clips(16, 9) == synthetic_mtt.plan_clips(16, 9) != synthetic_mtt.plan_clips(16, 10)
    with pytest.raises(OutputExistsError):
        synthetic_mtt.generate(tmp_path / "a", n_clips=16, seed=9, duration_s=0.3, quiet=True)
    # an interrupted run (no metadata yet) resumes: the mp3s present are kept, the rest rendered
    (tmp_path / "b" / "annotations_final.csv").unlink()
    kept = next(p for p in sorted((tmp_path / "b").rglob("*.mp3")) if p.stat().st_size > 0)
    kept_mtime = kept.stat().st_mtime_ns
    synthetic_mtt.generate(tmp_path / "b", n_clips=16, seed=9, duration_s=0.3, quiet=True)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")


def test_every_style_renders_its_genre() -> None:
    assert set(synthetic_mtt.MTT_RECIPES.values()) <= set(music_synth.TAG_RECIPES)
    assert set(synthetic_mtt.MTT_RECIPES) <= set(mtt.read_list_txt(mtt.MTT_TAGS_TXT))
    for style, (always, _) in synthetic_mtt.STYLES.items():
        recipes = synthetic_mtt.recipes_for(always, synthetic_mtt.MTT_RECIPES, list(music_synth.TAG_RECIPES))
        assert recipes and music_synth.TAG_RECIPES[recipes[0]].kind == "genre", style


# ----------------------------------------------------------------------------------------------
# End to end: converter outputs feed preprocessing (and training, in the slow test) unchanged.

def _clean_mini_mtt(tmp_path: Path, duration_s: float) -> tuple[Path, Path, dict]:
    root = tmp_path / "mtt"
    manifest = synthetic_mtt.generate(root, n_clips=24, seed=11, duration_s=duration_s, quiet=True)
    mtt.run(tmp_path / "clean", root, merge_synonyms=True, top=50, quiet=True)
    return root, tmp_path / "clean", manifest


def test_clean_then_shards_with_the_standard_split(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean

    root, clean, _ = _clean_mini_mtt(tmp_path, 2.5)
    info = shards_from_clean(clean, root, tmp_path / "shards")
    _, vocabulary, pairs = read_tag_db(clean / "clean_tags.db")
    split = pd.read_csv(clean / "split.csv", dtype=str)
    tagged = split[split["track_id"].isin(pairs)]
    assert info["counts"] == tagged["split"].value_counts().to_dict()
    assert set(info["tags"]) <= set(vocabulary)
    skipped = pd.read_csv(tmp_path / "shards" / "skipped.csv", dtype=str)
    assert set(skipped["track_id"]) == set(split["track_id"]) - set(pairs)  # only the untagged clips


@pytest.mark.slow
def test_end_to_end_clean_shards_train_test(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean, train_and_test

    root, clean, _ = _clean_mini_mtt(tmp_path, 3.0)
    info = shards_from_clean(clean, root, tmp_path / "shards")
    metrics = train_and_test(tmp_path / "shards", tmp_path)
    assert metrics["n_tracks"] == info["counts"]["test"] > 0
    assert [row["tag"] for row in metrics["per_tag"]] == list(info["tags"])
