"""Your own labelled audio (msd.converters.labels): labels.csv or tag folders -> the converter outputs -> shards.

Tiny real audio files (mp3, ogg, wav written with soundfile) and real faults give exact expectations.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from msd.converters import common, labels
from orpheus.errors import DataFormatError, MissingInputError, OutputExistsError
from tests.fixtures_msd import read_tag_db

REPO = Path(__file__).resolve().parents[3]
SHARED_CLIPS = Path("/work/shared/audio/clips")


def tone(path: Path, freq_hz: float, duration_s: float = 0.5, sample_rate: int = 16000) -> None:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".mp3": "MP3", ".ogg": "OGG", ".wav": "WAV", ".flac": "FLAC"}[path.suffix]
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), sample_rate, format=fmt)


def reasons_of(out: Path) -> dict[str, str]:
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    return dict(zip(skipped["track_id"], skipped["reason"]))


LABELS_CSV = """file,tags,artist,notes
songs/a.mp3,rock; guitar,Iron Trio,loud
songs/b.ogg,rock,Iron Trio,
songs/c.wav,"piano;calm",Jade Foxes,"a, b"
songs/d.mp3,piano,Jade Foxes,
songs/untagged.mp3, ;,Jade Foxes,
songs/missing.mp3,rock,Nobody,
songs/empty.mp3,rock,Nobody,
songs/corrupt.mp3,piano,Nobody,
songs/a.mp3,jazz,Iron Trio,
songs/e.mp3,kazoo,Solo,
"""


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    for i, name in enumerate(["a.mp3", "b.ogg", "c.wav", "d.mp3", "untagged.mp3", "e.mp3"]):
        tone(root / "songs" / name, 220 + 40 * i)
    (root / "songs" / "empty.mp3").write_bytes(b"")
    (root / "songs" / "corrupt.mp3").write_bytes(np.random.default_rng(0).bytes(2048))
    (root / "labels.csv").write_text(LABELS_CSV, encoding="utf-8")
    return root


def test_labels_csv_kept_skipped_and_tags(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = labels.run(out, labels=labelled / "labels.csv", quiet=True)  # --root-dir defaults to the CSV's folder
    master = pd.read_csv(out / "ultimate.csv", dtype=str, keep_default_na=False)
    assert list(master["track_id"]) == ["songs/a.mp3", "songs/b.ogg", "songs/c.wav", "songs/d.mp3", "songs/e.mp3"]
    assert list(master.columns[:3]) == ["track_id", "artist_id", "mp3_path"]
    assert list(master["mp3_path"]) == list(master["track_id"])
    assert set(master["sample_rate"]) == {"16000"}
    by_id = master.set_index("track_id")
    assert by_id.loc["songs/a.mp3", "artist_id"] == by_id.loc["songs/b.ogg", "artist_id"] \
        == common.artist_id_from_name("Iron Trio") != by_id.loc["songs/c.wav", "artist_id"]
    reasons = reasons_of(out)
    assert reasons["songs/untagged.mp3"] == "no tags"
    assert reasons["songs/missing.mp3"] == "audio missing"
    assert reasons["songs/empty.mp3"] == "empty file (0 bytes)"
    assert reasons["songs/corrupt.mp3"].startswith("corrupt audio")
    assert reasons["songs/a.mp3"].startswith("duplicate row (first at ") and reasons["songs/a.mp3"].endswith(":2)")
    assert result["kept"] == 5 and result["skipped"] == 5
    tids, tags, pairs = read_tag_db(out / "clean_tags.db")
    assert tids == list(master["track_id"])
    assert tags == ["piano", "rock", "calm", "guitar", "kazoo"]  # by count, then name; "jazz" was on the duplicate
    assert pairs["songs/a.mp3"] == {"rock", "guitar"} and pairs["songs/c.wav"] == {"piano", "calm"}


def test_min_count_drops_tags_and_tracks_with_reasons(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = labels.run(out, labels=labelled / "labels.csv", root_dir=labelled, min_count=2, quiet=True)
    _, tags, pairs = read_tag_db(out / "clean_tags.db")
    assert tags == ["piano", "rock"]
    assert pairs["songs/a.mp3"] == {"rock"} and pairs["songs/c.wav"] == {"piano"}
    dropped = pd.read_csv(out / "clean_tags.dropped.csv", dtype=str)
    assert dict(zip(dropped["tag"], dropped["tracks"])) == {"calm": "1", "guitar": "1", "kazoo": "1"}
    assert all("--min-count 2" in reason for reason in dropped["reason"])
    assert reasons_of(out)["songs/e.mp3"].startswith("no tag on at least 2 tracks (--min-count; had kazoo)")
    assert "songs/e.mp3" not in pd.read_csv(out / "split.csv", dtype=str)["track_id"].tolist()
    assert result["dropped_tags"] == {"calm": 1, "guitar": 1, "kazoo": 1}
    assert "dropped 3 tag(s) below --min-count" in result["summary"]


def test_splits_are_hashed_by_artist_and_an_explicit_split_wins(tmp_path: Path) -> None:
    root = tmp_path / "music"
    rows = ["file,tags,artist,split"]
    for i in range(40):
        if i:  # t00.wav is missing: its explicit split still holds for its artist's other rows
            tone(root / f"t{i:02d}.wav", 200 + 10 * i, duration_s=0.1)
        artist = f"artist {i % 8}"
        split = "validation" if i == 0 else "test" if i == 9 else ""  # artist 0 -> valid; artist 1: rows 1, 17, ...
        rows.append(f"t{i:02d}.wav,tag{i % 3},{artist},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    labels.run(tmp_path / "a", labels=root / "labels.csv", quiet=True)
    labels.run(tmp_path / "b", labels=root / "labels.csv", quiet=True, split=(50, 25, 25))
    first = pd.read_csv(tmp_path / "a" / "split.csv", dtype=str)
    split_of = dict(zip(first["track_id"], first["split"]))
    for k in range(8):  # one split per artist
        assert len({split_of[f"t{i:02d}.wav"] for i in range(k, 40, 8) if i}) == 1, k
    assert "t00.wav" not in split_of and split_of["t08.wav"] == split_of["t16.wav"] == "valid"
    assert split_of["t09.wav"] == "test" and split_of["t01.wav"] == "test"
    # the hash is stable (a fixed expectation, not just equal across two runs) and independent of the process
    for k in range(2, 8):
        fraction = int.from_bytes(hashlib.sha1(f"artist:artist {k}".encode()).digest()[:8], "big") / 2 ** 64
        assert split_of[f"t{k:02d}.wav"] == ("train" if fraction < 0.8 else "valid" if fraction < 0.9 else "test")
    second = pd.read_csv(tmp_path / "b" / "split.csv", dtype=str)
    split_b = dict(zip(second["track_id"], second["split"]))
    assert all(len({split_b[f"t{i:02d}.wav"] for i in range(k, 40, 8) if i}) == 1 for k in range(8))
    again = subprocess.run([sys.executable, "-c", "from msd.converters import common; "
                            "print(common.salted_sha1_split('artist:artist 5', (50, 25, 25)))"],
                           capture_output=True, text=True, cwd=REPO)
    assert again.stdout.strip() == common.salted_sha1_split("artist:artist 5", (50, 25, 25))
    assert [common.salted_sha1_split(f"k{i}", (0, 0, 1)) for i in range(5)] == ["test"] * 5
    shares = pd.Series([common.salted_sha1_split(f"k{i}", (80, 10, 10)) for i in range(3000)]).value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["valid"] - 0.1) < 0.02


def test_tag_folders_merge_the_same_file_under_several_tags(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    tone(root / "rock" / "x.mp3", 300)
    tone(root / "guitar" / "x.mp3", 300)
    tone(root / "rock" / "live" / "y.ogg", 350)
    tone(root / "piano" / "y.ogg", 400)  # not the same track: a different path below its tag folder
    (root / "rock" / "cover.jpg").write_bytes(b"\xff\xd8")
    (root / "rock" / ".DS_Store").write_bytes(b"x")
    (root / ".hidden").mkdir()
    tone(root / ".hidden" / "z.mp3", 500)
    tone(root / "loose.mp3", 500)
    out = tmp_path / "out"
    result = labels.run(out, from_folders=root, quiet=True)
    master = pd.read_csv(out / "ultimate.csv", dtype=str, keep_default_na=False).set_index("track_id")
    assert list(master.index) == ["live/y.ogg", "x.mp3", "y.ogg"]
    assert master.loc["x.mp3", "mp3_path"] == "guitar/x.mp3" and master.loc["live/y.ogg", "mp3_path"] == "rock/live/y.ogg"
    _, tags, pairs = read_tag_db(out / "clean_tags.db")
    assert pairs == {"x.mp3": {"guitar", "rock"}, "live/y.ogg": {"rock"}, "y.ogg": {"piano"}}
    assert tags == ["rock", "guitar", "piano"]
    reasons = reasons_of(out)
    assert set(reasons) == {"loose.mp3", "rock/cover.jpg"}
    assert reasons["loose.mp3"].startswith("not in a tag folder") and reasons["rock/cover.jpg"].startswith("not an audio")
    assert result["kept"] == 3


def test_bad_rows_give_one_line_errors_naming_file_and_line(labelled: Path, tmp_path: Path, capsys) -> None:
    def write(name: str, data: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    cases = {
        write("columns.csv", "path,labels\na.mp3,rock\n"): r"columns\.csv:1: missing column\(s\) file, tags",
        write("fields.csv", "file,tags\nsongs/b.ogg,rock\nsongs/d.mp3,rock,extra\n"): r"fields\.csv:3: 3 fields",
        write("split.csv", "file,tags,split\nsongs/b.ogg,rock,dev\n"): r"split\.csv:2: split 'dev' is not one of",
        write("latin1.csv", "file,tags\nsongs/b.ogg,rock\nsongs/d.mp3,caf\xe9\n".encode("latin-1")):
            r"latin1\.csv:3: not UTF-8",
        write("abs.csv", "file,tags\n/etc/passwd,rock\n"): r"abs\.csv:2: file '/etc/passwd' must be a path relative",
        write("up.csv", "file,tags\n../x.mp3,rock\n"): r"up\.csv:2: .*relative",
        write("empty.csv", ""): r"empty\.csv:1: missing column",
    }
    for path, pattern in cases.items():
        with pytest.raises(DataFormatError, match=pattern):
            labels.run(tmp_path / path.stem, labels=path, root_dir=labelled, quiet=True)
    with pytest.raises(MissingInputError, match="nowhere.csv"):
        labels.run(tmp_path / "n", labels=tmp_path / "nowhere.csv", root_dir=labelled, quiet=True)
    with pytest.raises(DataFormatError, match="--split"):
        labels.run(tmp_path / "s", labels=labelled / "labels.csv", split=(0, 0, 0), quiet=True)
    with pytest.raises(DataFormatError, match="either --labels"):
        labels.run(tmp_path / "s", quiet=True)
    status = labels.main([str(tmp_path / "cli"), "--labels", str(tmp_path / "fields.csv"), "--root-dir",
                          str(labelled), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and err.startswith("orpheus labels: error:") and "fields.csv:3" in err


def test_refuses_overwrite_and_runs_as_module(labelled: Path, tmp_path: Path) -> None:
    labels.run(tmp_path / "out", labels=labelled / "labels.csv", quiet=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        labels.run(tmp_path / "out", labels=labelled / "labels.csv", quiet=True)
    out = subprocess.run([sys.executable, "-m", "orpheus", "labels", str(tmp_path / "out"), "--labels",
                          str(labelled / "labels.csv"), "--root-dir", str(labelled), "--min-count", "2",
                          "--verify", "decode", "--overwrite", "--jobs", "1", "--quiet"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("labels.csv: kept 4 tracks") and "2 tags, skipped 6" in out.stdout
    upper = labelled / "upper.csv"
    upper.write_text("File,Tags\nsongs/b.ogg,rock\n")  # header names are case-insensitive
    assert labels.run(tmp_path / "upper", labels=upper, quiet=True)["tags"] == ["rock"]
    assert "examples:" in labels.build_parser().format_help()


def _labelled_tones(tmp_path: Path, n: int) -> Path:
    """n tone clips in two kinds (drone / whistle, every third also loud), with an explicit split column."""
    from tests.fixtures_datasets import WINDOW_S

    root = tmp_path / "music"
    rows = ["file,tags,artist,split"]
    plan = {"low": ("drone", 110.0), "high": ("whistle", 1760.0)}
    for i in range(n):
        kind = "low" if i % 2 else "high"
        tone(root / kind / f"{i:02d}.mp3", plan[kind][1] * (1 + 0.01 * i), duration_s=WINDOW_S + 0.5)
        extra = ";loud" if i % 3 == 0 else ""
        rows.append(f"{kind}/{i:02d}.mp3,{plan[kind][0]}{extra},artist {i % 4},{['train', 'valid', 'test'][i % 3]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    labels.run(tmp_path / "clean", labels=root / "labels.csv", quiet=True)
    return root


def test_labels_then_shards_carry_the_right_tags(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean
    from orpheus.formats import dataset as datasets
    from orpheus.formats import tfrecord as spec

    root = _labelled_tones(tmp_path, 6)
    info = shards_from_clean(tmp_path / "clean", root, tmp_path / "shards")
    assert info["counts"] == {"train": 2, "valid": 2, "test": 2}
    assert sorted(info["tags"]) == ["drone", "loud", "whistle"]
    import tensorflow as tf

    expected = {f"{'low' if i % 2 else 'high'}/{i:02d}.mp3": ({"drone" if i % 2 else "whistle"}
                                                            | ({"loud"} if i % 3 == 0 else set())) for i in range(6)}
    dataset = datasets.read_dataset_info(tmp_path / "shards")
    parse = spec.parse_fn(dataset.spec())
    seen, split_of = {}, {}
    for split in datasets.SPLITS:
        for path in datasets.shard_paths(tmp_path / "shards", split):
            for record in tf.data.TFRecordDataset(path):
                example = parse(record)
                tid = example["tid"].numpy().decode()
                seen[tid] = {tag for tag, v in zip(dataset.tags, example["tags"].numpy()) if v}
                split_of[tid] = split
    assert seen == expected
    assert split_of == {tid: ["train", "valid", "test"][int(tid[-6:-4]) % 3] for tid in expected}


@pytest.mark.slow
def test_end_to_end_labels_shards_train_test(tmp_path: Path) -> None:
    from tests.fixtures_datasets import shards_from_clean, train_and_test

    root = _labelled_tones(tmp_path, 12)
    info = shards_from_clean(tmp_path / "clean", root, tmp_path / "shards")
    metrics = train_and_test(tmp_path / "shards", tmp_path)
    assert metrics["n_tracks"] == info["counts"]["test"] == 4
    assert [row["tag"] for row in metrics["per_tag"]] == list(info["tags"])


@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="the real clips are not beside this checkout")
def test_real_clips_from_tag_folders(tmp_path: Path) -> None:
    clips = sorted(SHARED_CLIPS.glob("*.ogg"))[:6]
    root = tmp_path / "folders"
    for i, clip in enumerate(clips):
        for tag in (["game", "odd"] if i % 2 else ["game"]):
            (root / tag).mkdir(parents=True, exist_ok=True)
            (root / tag / clip.name).symlink_to(clip)
    result = labels.run(tmp_path / "out", from_folders=root, verify="decode", quiet=True)
    assert result["kept"] == len(clips) and result["tags"] == ["game", "odd"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_tag_folder_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    tone(root / "rock" / "x.mp3", 300)
    tone(root / "jazz" / "y.mp3", 300)
    (root / "jazz").chmod(0)
    try:
        labels.run(tmp_path / "out", from_folders=root, quiet=True)
    finally:
        (root / "jazz").chmod(0o755)
    assert reasons_of(tmp_path / "out")["jazz"].startswith("folder unreadable")


def test_tag_folders_may_be_symlinks_and_unreadable_csv_is_one_line(tmp_path: Path, labelled: Path) -> None:
    root = tmp_path / "folders"
    tone(tmp_path / "elsewhere" / "x.mp3", 300)
    root.mkdir()
    (root / "rock").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert labels.run(tmp_path / "out", from_folders=root, quiet=True)["kept"] == 1
    with pytest.raises(MissingInputError, match=r"songs: labels CSV not found"):
        labels.run(tmp_path / "dir", labels=labelled / "songs", root_dir=labelled, quiet=True)


def test_salted_sha1_split_keeps_every_key_where_it_was():
    """Users' splits must not move: the split of 300 keys, unsalted and salted, pinned (r train, v valid, t test)."""
    def letters(keys, percentages, salt=""):
        names = {"train": "r", "valid": "v", "test": "t"}
        return "".join(names[common.salted_sha1_split(k, percentages, salt)] for k in keys).encode()

    assert hashlib.sha256(letters([f"artist:a{i}" for i in range(300)], (50, 25, 25))).hexdigest() == \
        "56cf8e7b82113972f5756c1b5803cd7ad2ad5abe5e5008a981295273c153f3c9"
    assert hashlib.sha256(letters([f"k{i}" for i in range(300)], (80, 10, 10), "fold1")).hexdigest() == \
        "8dcab65e355b2931b3041d8807720877594ee753673efeacf2dc2a90bd69cba8"
