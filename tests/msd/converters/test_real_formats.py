"""Every converter and reader on the real dataset metadata of ../shared/real_formats (see its SOURCES.md).

Each test runs twice: on the real files (skipped when the folder is absent) and on a miniature copy of that
folder written here in the same layouts (CRLF, tabs, quoting, PyTables-style HDF5 groups), with generated
audio placed at the paths the metadata names.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from msd import fetcher, wrangle
from msd.converters import fma, jamendo, mtt
from orpheus.errors import MissingInputError
from tests.fixtures_msd import read_tag_db

REAL_FORMATS = Path(__file__).resolve().parents[3].parent / "shared" / "real_formats"
JAMENDO_SPLITS = ("train", "validation", "test")
KNOWN_BAD_MTT = ("35644", "55753", "57881")


# ------------------------------------------------------------------------------ the two sources
def write_lines(path: Path, lines: list[str], newline: str = "\r\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))


def write_miniature_formats(root: Path) -> Path:
    """A few rows of each real file, in the real layouts (the real values' shapes, our own values)."""
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"

    def row(number: int, tags: list[str]) -> str:
        return "\t".join([f"track_{number:07d}", f"artist_{number % 7:06d}", f"album_{number % 11:06d}",
                          jamendo.audio_path(number), "201.3", *tags])

    top50 = {"train": [(214, ["genre---rock", "instrument---guitar"]), (1215, ["genre---pop"])],
             "validation": [(3301, ["genre---rock", "mood/theme---happy"])],
             "test": [(90017, ["genre---jazz", "instrument---piano"]), (90118, ["genre---pop"])]}
    moods = {"train": [(948, ["mood/theme---background"]), (80500, ["mood/theme---film"])],
             "validation": [(1195900, ["mood/theme---happy", "mood/theme---film"])],
             "test": [(20740, ["mood/theme---sad"])]}
    split_dir = root / "jamendo" / "splits" / "split-0"
    for part in JAMENDO_SPLITS:
        write_lines(split_dir / f"autotagging_top50tags-{part}.tsv", [header, *(row(n, t) for n, t in top50[part])])
        write_lines(split_dir / f"autotagging_moodtheme-{part}.tsv", [header, *(row(n, t) for n, t in moods[part])])
    subset_only = 80501
    mood_rows = [row(n, t) for part in JAMENDO_SPLITS for n, t in moods[part]] + [row(subset_only, ["mood/theme---dark"])]
    write_lines(root / "jamendo" / "autotagging_moodtheme.tsv", [header, *mood_rows])
    numbers = [n for part in JAMENDO_SPLITS for n, _ in moods[part]] + [subset_only]
    write_lines(root / "jamendo" / "download" / "autotagging_moodtheme_audio-low_sha256_tracks.txt",
                [f"{n:064x} {jamendo.low_quality_path(jamendo.audio_path(n))}" for n in sorted(numbers)], "\n")
    write_lines(root / "jamendo_rows" / "header.tsv", [header])
    for part in JAMENDO_SPLITS:
        write_lines(root / "jamendo_rows" / f"split0_{part}.rows", [row(n + 7, t) for n, t in top50[part]])

    labels = ["guitar", "classical", "slow", "techno", "strings"]
    columns = ["no voice", "singer", *labels, "duet"]
    clips = {"0": [2, 6], "6": [35644], "b": [1451], "c": [14, 19], "d": [21], "f": [57, 58]}
    index, gt = [], {"c": [], "def": []}
    rng = np.random.default_rng(0)
    for folder, ids in clips.items():
        for cid in ids:
            index.append(f"{cid}\t{folder}/artist_{cid}-album-01-title-{cid}-{cid + 29}.mp3")
            vector = [float(v) for v in (rng.random(len(labels)) < 0.4)]
            for group in gt:
                if folder in group and folder != "0":
                    gt[group].append(f"{cid}\t{vector}")
    write_lines(root / "mtt" / "index_MAGNA.tsv", index, "\n")
    write_lines(root / "mtt" / "val_gt_mtt.tsv", gt["c"], "\n")
    write_lines(root / "mtt" / "test_gt_mtt.tsv", gt["def"], "\n")
    write_lines(root / "mtt" / "output_labels_mtt.txt", ["# Output labels", f"MTT_LABELS = {labels}"], "\n")
    write_lines(root / "mtt" / "tag_columns_in_file_order.txt", columns, "\n")

    write_lines(root / "fma" / "genres.csv", ["genre_id,#tracks,parent,title,top_level", "12,30,0,Rock,12",
                                              "25,9,12,Punk,12", "21,20,0,Hip-Hop,21", "15,8,0,Electronic,15",
                                              "297,2,15,Chip Music,15"], "\n")
    write_lines(root / "fma" / "tracks_small_columns.csv",
                ["subset,split,track_id,genre_top,genres", "small,training,2,Hip-Hop,[21]",
                 "small,training,574,Rock,[25]", 'small,validation,825,Rock,"[12, 25]"', "small,test,1277,Hip-Hop,[21]"],
                "\n")
    write_lines(root / "fma" / "tracks_medium_columns.csv",
                ["subset,split,track_id,genre_top,genres", 'medium,training,23881,Electronic,"[15, 297]"'], "\n")

    tracks = [("TRAAAAA128F4291234", "SOAAAAA12A8C131234", "ARAAAAA1187FB51234", 3400270, 1969),
              ("TRAAAAB128F4291235", "SOAAAAB12A8C131235", "ARAAAAB1187FB51235", 5703798, 0)]
    summary_dtypes = {"metadata": [("artist_id", "S18"), ("song_id", "S18"), ("track_7digitalid", "<i4")],
                      "analysis": [("duration", "<f8"), ("track_id", "S18")],
                      "musicbrainz": [("idx_artist_mbtags", "<i4"), ("year", "<i4")]}
    for track_id, song_id, artist_id, digital_id, year in tracks:
        path = root / "msd" / "h5" / f"{track_id}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {"metadata": (artist_id.encode(), song_id.encode(), digital_id),
                  "analysis": (200.0, track_id.encode()), "musicbrainz": (0, year)}
        with h5py.File(path, "w") as h5:
            for group, dtype in summary_dtypes.items():
                h5.create_group(group).create_dataset("songs", data=np.array([values[group]], dtype=dtype))
    write_lines(root / "msd" / "sid_mismatches.txt",
                ["ERROR: <SOUMNSI12AB0182807 TRMMMYQ128F932D901> Faster Pussy cat  -  Silent Night  !=  Faster "
                 "Pussycat  -  Silent Night", "ERROR: <SOCIWDW12A8C13D406 TRMMMKD128F425225D> Karkkiautomaatti  -  "
                 "Tanssi vaan  !=  Karkkiautomaatti  -  Tanssi vaan"], "\n")
    return root


@pytest.fixture(scope="module", params=["miniature", "real"])
def formats(request, tmp_path_factory) -> Path:
    """The folder of real dataset metadata, or its miniature copy."""
    if request.param == "real":
        if not REAL_FORMATS.is_dir():
            pytest.skip("../shared/real_formats is not present on this machine")
        return REAL_FORMATS
    return write_miniature_formats(tmp_path_factory.mktemp("real_formats_miniature"))


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    """One tiny real mp3 (0.3 s of a tone at 16 kHz), encoded once and copied to every path that needs audio."""
    path = tmp_path_factory.mktemp("clip") / "tone.mp3"
    t = np.arange(4800) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000, format="MP3")
    return path.read_bytes()


def place_audio(root: Path, rel_paths, clip: bytes) -> None:
    for rel in rel_paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(clip)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ------------------------------------------------------------------------------------ MTG-Jamendo
def split_rows(metadata: Path, subset: str) -> dict[str, list[jamendo.JamendoTrack]]:
    return {part: jamendo.read_tsv(jamendo.split_file(metadata, subset, 0, part)) for part in JAMENDO_SPLITS}


def check_jamendo_outputs(out: Path, rows: dict[str, list[jamendo.JamendoTrack]]) -> pd.DataFrame:
    """split.csv follows the split files, and every track keeps the split file's tags (short names; the real
    subset file has more tags for a few tracks, which the split files drop as the benchmark does)."""
    splits = dict(read_csv(out / "split.csv").itertuples(index=False))
    expected = {t.track_id: jamendo.OFFICIAL_SPLITS[part] for part, tracks in rows.items() for t in tracks}
    assert splits == expected
    names = jamendo.tag_names(sorted({tag for tracks in rows.values() for t in tracks for tag in t.tags}), "short")
    assert read_tag_db(out / "clean_tags.db")[2] == {t.track_id: {names[tag] for tag in t.tags}
                                                 for tracks in rows.values() for t in tracks if t.tags}
    ultimate = read_csv(out / "ultimate.csv")
    assert sorted(ultimate["track_id"]) == sorted(expected)
    return ultimate


def test_jamendo_converts_the_official_split_files(formats, clip_bytes, tmp_path):
    metadata = formats / "jamendo"
    rows = split_rows(metadata, "top50tags")
    place_audio(tmp_path / "audio", [t.path for tracks in rows.values() for t in tracks], clip_bytes)
    result = jamendo.run(tmp_path / "out", metadata, tmp_path / "audio", subset="top50tags", quiet=True)
    ultimate = check_jamendo_outputs(tmp_path / "out", rows)
    assert result["skipped"] == 0 and result["layout"]["NN/ID.mp3"] == len(ultimate)
    short = {t.track_id: sorted(tag.partition("---")[2] for tag in t.tags) for tracks in rows.values() for t in tracks}
    assert set(result["tags"]) == {tag for tags in short.values() for tag in tags}


def test_jamendo_finds_the_low_quality_download_without_a_flag(formats, clip_bytes, tmp_path):
    """The official audio-low download names its files NN/ID.low.mp3 where the metadata says NN/ID.mp3."""
    metadata = formats / "jamendo"
    download = metadata / "download" / "autotagging_moodtheme_audio-low_sha256_tracks.txt"
    names = [line.split()[1] for line in download.read_text().splitlines() if line.strip()]
    assert all(name.endswith(".low.mp3") for name in names)
    place_audio(tmp_path / "audio_low", names, clip_bytes)
    rows = split_rows(metadata, "moodtheme")
    result = jamendo.run(tmp_path / "out", metadata, tmp_path / "audio_low", subset="moodtheme", quiet=True)
    ultimate = check_jamendo_outputs(tmp_path / "out", rows)
    n_tracks = sum(map(len, rows.values()))
    assert result["kept"] == n_tracks > 0 and result["layout"]["NN/ID.low.mp3"] == n_tracks
    assert f"audio found as NN/ID.low.mp3 (the low-quality download): {n_tracks}" in result["summary"]
    assert all((tmp_path / "audio_low" / p).is_file() and p.endswith(".low.mp3") for p in ultimate["mp3_path"])
    subset_only = {t.track_id for t in jamendo.read_tsv(metadata / "autotagging_moodtheme.tsv")} - set(ultimate.track_id)
    assert result["reasons"] == {"in autotagging_moodtheme.tsv but in none of the split-0 files": len(subset_only)}
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(MissingInputError, match="holds the audio of none of the .* check --root-dir"):
        jamendo.run(tmp_path / "out2", metadata, tmp_path / "elsewhere", subset="moodtheme", quiet=True)


def test_jamendo_rows_byte_for_byte(formats, clip_bytes, tmp_path):
    """Split-0 rows copied byte for byte (CRLF kept), reassembled into split files under their real names."""
    source = formats / "jamendo_rows"
    metadata = tmp_path / "data"
    for part in JAMENDO_SPLITS:
        path = jamendo.split_file(metadata, "top50tags", 0, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((source / "header.tsv").read_bytes() + (source / f"split0_{part}.rows").read_bytes())
    rows = split_rows(metadata, "top50tags")
    place_audio(tmp_path / "audio", [t.path for tracks in rows.values() for t in tracks], clip_bytes)
    result = jamendo.run(tmp_path / "out", metadata, tmp_path / "audio", quiet=True)
    check_jamendo_outputs(tmp_path / "out", rows)
    assert result["kept"] == sum(map(len, rows.values())) and result["skipped"] == 0


# ---------------------------------------------------------------------------------- MagnaTagATune
def mtt_sources(formats: Path) -> tuple[list[tuple[str, str]], list[str], dict[str, list[str]], dict[str, str]]:
    """(clip id, mp3_path) of every clip; the tag columns in file order; the official top-50 tags of each valid and
    test clip; and the official split (valid / test) of those clips."""
    folder = formats / "mtt"
    index = [tuple(line.split("\t")) for line in (folder / "index_MAGNA.tsv").read_text().splitlines() if line]
    columns = [c for c in (folder / "tag_columns_in_file_order.txt").read_text().splitlines() if c]
    labels = ast.literal_eval((folder / "output_labels_mtt.txt").read_text().split("=", 1)[1].strip())
    tags, official = {}, {}
    for name, split in (("val_gt_mtt.tsv", "valid"), ("test_gt_mtt.tsv", "test")):
        for line in (folder / name).read_text().splitlines():
            clip_id, vector = line.split("\t")
            tags[clip_id] = [labels[i] for i, v in enumerate(ast.literal_eval(vector)) if v]
            official[clip_id] = split
    return index, columns, tags, official


def write_annotations(path: Path, index, columns, tags, keep=None) -> None:
    """annotations_final.csv as the real file is laid out: every field in double quotes, tabs, CRLF, 190 columns
    (clip_id, the tags in file order, mp3_path); tags outside the official top 50 are left 0."""
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *columns, "mp3_path"])]
    for clip_id, mp3_path in index:
        if keep is None or clip_id in keep:
            present = set(tags.get(clip_id, ()))
            lines.append("\t".join([f'"{clip_id}"', *(f'"{int(c in present)}"' for c in columns), f'"{mp3_path}"']))
    write_lines(path, lines)


def test_mtt_converts_annotations_in_the_real_layout(formats, clip_bytes, tmp_path):
    index, columns, tags, official = mtt_sources(formats)
    keep = {clip_id for clip_id, _ in index[::300]} | {clip_id for clip_id, _ in index if clip_id in KNOWN_BAD_MTT}
    root = tmp_path / "mtt"
    write_annotations(root / mtt.ANNOTATIONS, index, columns, tags, keep)
    for clip_id, mp3_path in index:
        if clip_id in keep:
            place_audio(root, [mp3_path], b"" if clip_id in KNOWN_BAD_MTT else clip_bytes)
    result = mtt.run(tmp_path / "out", root, quiet=True)
    bad = keep & set(KNOWN_BAD_MTT)
    assert result["kept"] == len(keep) - len(bad) and result["reasons"] == ({"known-bad clip": len(bad)} if bad else {})
    splits = dict(read_csv(tmp_path / "out" / "split.csv").itertuples(index=False))
    assert splits == {clip_id: official.get(clip_id, "train") for clip_id in keep - bad}   # the official lists
    ultimate = read_csv(tmp_path / "out" / "ultimate.csv")
    per_clip = dict(zip(ultimate["track_id"], ultimate["mp3_path"]))
    assert per_clip == {clip_id: path for clip_id, path in index if clip_id in keep - bad}
    found = read_tag_db(tmp_path / "out" / "clean_tags.db")[2]
    assert {c: found.get(c, set()) for c in keep - bad if c in tags} == {c: set(tags[c]) for c in keep - bad if c in tags}


@pytest.mark.slow
def test_mtt_reads_every_clip_and_splits_as_the_official_lists(formats, tmp_path):
    """All 25,863 rows: folder c is the official valid list and d-f the official test list, clip for clip."""
    index, columns, tags, official = mtt_sources(formats)
    write_annotations(tmp_path / mtt.ANNOTATIONS, index, columns, tags)
    frame = mtt.read_annotations(tmp_path / mtt.ANNOTATIONS)
    assert frame.shape == (len(index), len(columns) + 2) and list(frame.columns[1:-1]) == columns
    folders = frame["mp3_path"].map(mtt.folder_of).map(mtt.FOLDER_SPLITS)
    by_folder = {clip_id: split for clip_id, split in zip(frame["clip_id"], folders) if split != "train"}
    assert by_folder == official


# -------------------------------------------------------------------------------------------- FMA
def write_tracks_csv(formats: Path, out: Path) -> pd.DataFrame:
    """tracks.csv as FMA wrote it (creation.ipynb: two-level columns sorted, index track_id, to_csv) with the real
    extract's values; genres_all is genres with their ancestors in genres.csv (as FMA computes it); other columns
    empty. Returns the extract."""
    genres = pd.read_csv(formats / "fma" / "genres.csv")
    parent = dict(zip(genres["genre_id"], genres["parent"]))

    def with_ancestors(ids: list[int]) -> list[int]:
        out: set[int] = set()
        for gid in ids:
            while gid and gid not in out:
                out.add(gid)
                gid = parent.get(gid, 0)
        return sorted(out)

    extract = pd.concat([pd.read_csv(formats / "fma" / f"tracks_{s}_columns.csv") for s in ("small", "medium")])
    frame = pd.DataFrame({("set", "subset"): extract["subset"].values, ("set", "split"): extract["split"].values,
                          ("track", "genre_top"): extract["genre_top"].values,
                          ("track", "genres"): extract["genres"].values,
                          ("track", "genres_all"): [str(with_ancestors(ast.literal_eval(g))) for g in extract["genres"]],
                          ("track", "title"): np.nan, ("artist", "id"): np.nan, ("artist", "name"): np.nan},
                         index=pd.Index(extract["track_id"].values, name="track_id"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    out.mkdir(parents=True, exist_ok=True)
    frame.sort_index(axis=1).to_csv(out / fma.TRACKS_CSV)
    shutil.copyfile(formats / "fma" / "genres.csv", out / fma.GENRES_CSV)
    return extract


def test_fma_converts_tracks_csv_with_the_real_values(formats, clip_bytes, tmp_path):
    extract = write_tracks_csv(formats, tmp_path / "fma_metadata")
    place_audio(tmp_path / "audio", [fma.audio_path(t) for t in extract["track_id"]], clip_bytes)
    titles = dict(zip(*pd.read_csv(formats / "fma" / "genres.csv")[["genre_id", "title"]].T.values))
    for subset, tags in (("small", "top"), ("medium", "all")):
        out = tmp_path / f"out_{subset}"
        result = fma.run(out, tmp_path / "fma_metadata", tmp_path / "audio", subset=subset, tags=tags, quiet=True)
        chosen = extract[extract["subset"] == "small"] if subset == "small" else extract
        assert result["kept"] == len(chosen) and result["skipped"] == 0
        splits = dict(read_csv(out / "split.csv").itertuples(index=False))
        assert splits == {str(t): fma.OFFICIAL_SPLITS[s] for t, s in zip(chosen["track_id"], chosen["split"])}
        ultimate = read_csv(out / "ultimate.csv")
        assert sorted(ultimate["mp3_path"]) == sorted(fma.audio_path(t) for t in chosen["track_id"])
        if tags == "top":
            assert set(result["tags"]) == set(chosen["genre_top"])
        else:   # every genre of a track, and its ancestors, by title
            leaf_titles = {titles[g] for genres in chosen["genres"] for g in ast.literal_eval(genres)}
            assert leaf_titles <= set(result["tags"]) <= set(titles.values())


# -------------------------------------------------------------------------------------------- MSD
def test_msd_track_files_and_sid_mismatches(formats, clip_bytes, tmp_path):
    text = (formats / "msd" / "sid_mismatches.txt").read_text(encoding="utf-8", errors="replace")
    mismatched = wrangle.read_mismatches(formats / "msd" / "sid_mismatches.txt")
    assert mismatched == set(re.findall(r"^ERROR: <SO[A-Z0-9]{16} (TR[A-Z0-9]{16})>", text, re.M))
    lines = text.split("\n")[:-1]   # not splitlines(): real titles hold control characters such as \x1c
    assert len(lines) == len(re.findall(r"^ERROR: ", text, re.M))   # every line is a mismatch line
    files = sorted((formats / "msd" / "h5").glob("TR*.h5"))
    summaries = [wrangle.read_summary(path) for path in files]
    for path, summary in zip(files, summaries):
        assert len(summary) == 1 and summary["track_id"][0] == path.stem
        assert re.fullmatch(r"SO[A-Z0-9]{16}", summary["song_id"][0]) and summary["track_7digitalid"][0] > 0
        assert summary["artist_id"][0].startswith("AR") and 0 <= summary["year"][0] <= 2011
    # fetcher -> wrangle on the first file: its clip is kept, a clip it does not know is dropped
    digital_id = int(summaries[0]["track_7digitalid"][0])
    unknown = digital_id + 1
    place_audio(tmp_path / "audio", [f"{i % 10}/{i // 10 % 10}/{i}{fetcher.CLIP_SUFFIX}" for i in (digital_id, unknown)],
                clip_bytes)
    fetcher.run(tmp_path / "fetcher.csv", tmp_path / "audio", quiet=True)
    result = wrangle.run(tmp_path / "fetcher.csv", tmp_path / "wrangle.csv", path_h5=files[0],
                         path_txt_mism=formats / "msd" / "sid_mismatches.txt", quiet=True)
    assert list(result.kept["track_id"]) == [files[0].stem]
    assert list(result.dropped["track_7digitalid"]) == [unknown] and {k: n for k, n in result.counts.items() if n} == {"no_summary": 1}
