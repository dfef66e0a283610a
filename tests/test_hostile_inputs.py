"""Hostile inputs: what a new user's typos and tab completion put where an output goes, and what a music
folder holds (link loops, read-only folders, a damaged cache). Each case plants a victim, runs the real
command, and checks the one-line error (or recorded skip), the exit status and that the victim is
unchanged byte for byte (issue 20)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from orpheus import cli
from orpheus.errors import EXIT_ERROR, EXIT_PARTIAL
from orpheus.ownership import ForeignOutputError
from tests.fixtures_audio import write_clip
from tests.fixtures_disk import mounted
from tests.fixtures_tagging import TINY_TAGS, tiny_run_dir  # noqa: F401  (fixture)


def snapshot(path: Path) -> dict[str, tuple]:
    """Every file, folder and link under `path` (or `path` itself): its content digest, link target, mode."""
    def entry(p: Path) -> tuple:
        if p.is_symlink():
            return ("link", os.readlink(p))
        if p.is_dir():
            return ("dir", p.stat().st_mode)
        return ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    if not path.is_dir() or path.is_symlink():
        return {".": entry(path)}
    found = {".": entry(path)}
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(folder) / name
            found[p.relative_to(path).as_posix()] = entry(p)
    return found


def orpheus(capsys, *argv) -> tuple[int, str, str]:
    """`orpheus ARGV...` in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str, command: str, *names: object) -> str:
    """The single stderr line of a refused command, checked to carry the command's name and `names`."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"orpheus {command}") and ": error: " in lines[0], err   # the command's own name
    for name in names:
        assert str(name) in lines[0], (name, err)
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def flac(tmp_path) -> Path:
    """A user's album track: a real FLAC."""
    return write_clip(tmp_path / "music" / "album.flac", ("jazz",), seed=3, duration_s=2.0)


@pytest.fixture()
def song(tmp_path) -> Path:
    return write_clip(tmp_path / "in" / "song.wav", ("rock",), seed=1, duration_s=3.0)


# ------------------------------------------------------------------------------- the results log
def test_a_flac_given_as_output_is_refused_and_unchanged(capsys, tiny_run_dir, song, flac):  # noqa: F811
    before = snapshot(flac)
    status, out, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", flac, "--quiet")
    line = one_line_error(err, "predict", flac, "an audio file (FLAC)", "--output")
    assert status == EXIT_ERROR and out == "" and "results log" in line
    assert snapshot(flac) == before


def test_a_notes_file_without_final_newline_is_not_cut(capsys, tiny_run_dir, song, tmp_path):  # noqa: F811
    notes = tmp_path / "notes.txt"
    notes.write_text("buy milk\ncall the label about the masters", encoding="utf-8")
    before = snapshot(notes)
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", notes, "--quiet")
    one_line_error(err, "predict", notes, "a text file")
    assert status == EXIT_ERROR and snapshot(notes) == before


def test_dev_null_as_output_gets_the_advice_that_works(capsys, tiny_run_dir, song):  # noqa: F811
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", "/dev/null")
    line = one_line_error(err, "predict", "/dev/null", "a device", "leave its option out")
    assert status == EXIT_ERROR and "space" not in line


def test_output_dash_is_standard_output(capsys, tiny_run_dir, song, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    status, out, _ = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", "-", "--quiet",
                             "--top", "2")
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and not (tmp_path / "-").exists()
    assert [r["path"] for r in records] == [str(song)] and len(records[0]["tags"]) == 2


def test_an_orpheus_log_is_resumed_and_a_torn_line_cut_only_there(capsys, tiny_run_dir, song, tmp_path):  # noqa: F811
    log_path = tmp_path / "tags.jsonl"
    assert orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", log_path, "--quiet")[0] == 0
    header, record = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert header["orpheus_results_log"] == 1 and record["path"] == str(song)
    with open(log_path, "ab") as f:
        f.write(b'{"path": "/torn')   # a run killed while writing
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", log_path)
    assert status == 0 and "cut off an incomplete last line" in err
    assert log_path.read_text().splitlines() == [json.dumps(header), json.dumps(record, ensure_ascii=False)]
    # a log of an earlier version (no header record) is recognised by its records and resumed
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(json.dumps(record) + "\n")
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", legacy)
    assert status == 0 and "already done" in err and legacy.read_text() == json.dumps(record) + "\n"


# --------------------------------------------------------------------------------------- export
@pytest.fixture()
def trained_run(tmp_path, tiny_run_dir) -> Path:  # noqa: F811
    """A user's trained run: run.json, model.keras, config.json, checkpoints/."""
    run = tmp_path / "runs" / "myrun"
    shutil.copytree(tiny_run_dir, run)
    (run / "config.json").write_text("{}\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "ckpt-12.index").write_bytes(b"\x00checkpoint")
    return run


def test_export_into_its_own_run_is_refused(capsys, trained_run):
    before = snapshot(trained_run)
    for extra in ((), ("--overwrite",)):
        status, _, err = orpheus(capsys, "export", trained_run, trained_run, "--format", "onnx", *extra)
        line = one_line_error(err, "export", trained_run, "run directory being exported itself")
        assert status == EXIT_ERROR and "pass --overwrite" not in line
        assert snapshot(trained_run) == before
    status, _, err = orpheus(capsys, "export", trained_run, trained_run.parent, "--overwrite")
    one_line_error(err, "export", "holds the run directory being exported")
    assert status == EXIT_ERROR and snapshot(trained_run) == before


def test_export_overwrite_replaces_only_an_export(capsys, tiny_run_dir, tmp_path, flac):  # noqa: F811
    exports = tmp_path / "exports"
    (exports / "other_model").mkdir(parents=True)
    (exports / "notes.txt").write_text("the onnx one goes to the phone app\n")
    before = snapshot(exports)
    status, _, err = orpheus(capsys, "export", tiny_run_dir, exports, "--overwrite")
    one_line_error(err, "export", exports, "a folder of other things (2 entries: notes.txt, other_model)")
    assert status == EXIT_ERROR and snapshot(exports) == before
    before = snapshot(flac)
    status, _, err = orpheus(capsys, "export", tiny_run_dir, flac, "--overwrite")
    one_line_error(err, "export", flac, "an audio file (FLAC), where a folder is expected")
    assert status == EXIT_ERROR and snapshot(flac) == before
    out = exports / "tiny"       # an export Orpheus wrote is replaced, in one rename
    assert orpheus(capsys, "export", tiny_run_dir, out, "--quiet")[0] == 0
    (out / "stale.txt").write_text("left by the first export")
    status, _, err = orpheus(capsys, "export", tiny_run_dir, out, "--quiet")
    assert status == EXIT_ERROR and "pass --overwrite" in one_line_error(err, "export", out)
    assert orpheus(capsys, "export", tiny_run_dir, out, "--quiet", "--overwrite")[0] == 0
    assert not (out / "stale.txt").exists() and (out / "features.json").is_file()


# ---------------------------------------------------------------------------------- folder walks
def plant_loops(root: Path) -> None:
    """root/rock/album/{a.wav, loop -> .., again -> ../..}, root/rock/album/b.wav -> a.wav, root/jazz -> rock,
    root/pop -> ../elsewhere (a folder outside the tree, holding c.wav)."""
    album = root / "rock" / "album"
    write_clip(album / "a.wav", ("rock",), seed=0, duration_s=2.0)
    write_clip(root.parent / "elsewhere" / "c.wav", ("pop",), seed=2, duration_s=2.0)
    (album / "loop").symlink_to("..")
    (album / "again").symlink_to("../..")
    (album / "b.wav").symlink_to("a.wav")
    (root / "jazz").symlink_to("rock")
    (root / "pop").symlink_to("../elsewhere")


def test_labels_walk_never_follows_a_link_into_a_folder_already_seen(capsys, tmp_path):
    from msd.converters import labels
    lib = tmp_path / "lib"
    plant_loops(lib)
    before = snapshot(tmp_path / "elsewhere")
    result = labels.run(tmp_path / "out", from_folders=lib, quiet=True)
    assert result["kept"] == 2 and sum(result["splits"].values()) == 2   # a.wav (b.wav is the same file), c.wav
    rows = (tmp_path / "out" / "ultimate.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[2] for row in rows) == ["pop/c.wav", "rock/album/a.wav"]
    assert snapshot(tmp_path / "elsewhere") == before
    with pytest.raises(ForeignOutputError, match="lies inside .*lib, which this command reads as a whole"):
        labels.run(lib / "clean", from_folders=lib, quiet=True)   # its outputs would become a tag folder
    assert not (lib / "clean").exists()


def test_predict_and_fetcher_walks_do_the_same(tmp_path):
    from msd.fetcher import find_clips
    from orpheus.tagging.inputs import list_audio_files
    lib = tmp_path / "lib"
    plant_loops(lib)
    assert list_audio_files(lib) == [lib / "pop" / "c.wav", lib / "rock" / "album" / "a.wav"]
    album = lib / "rock" / "album"     # the fetcher's walk, on 7digital names
    (album / "a.wav").rename(album / "97.clip.mp3")
    (tmp_path / "elsewhere" / "c.wav").rename(tmp_path / "elsewhere" / "99.clip.mp3")
    (album / "b.wav").unlink()
    (lib / "rock" / "album" / "98.clip.mp3").symlink_to("97.clip.mp3")
    assert find_clips(lib) == ["pop/99.clip.mp3", "rock/album/97.clip.mp3"]


# ---------------------------------------------------------------------- outputs of every command
def write_victims(tmp_path: Path) -> tuple[Path, Path]:
    """A user's FLAC, and a user's folder holding notes and music."""
    flac = write_clip(tmp_path / "victim" / "track.flac", ("jazz",), seed=5, duration_s=1.0)
    folder = tmp_path / "victim" / "mine"
    write_clip(folder / "song.ogg", ("rock",), seed=6, duration_s=1.0)
    (folder / "notes.txt").write_text("setlist\n")
    return flac, folder


def command_cases(tmp_path: Path, tiny_run: Path) -> dict[str, tuple[list, str]]:
    """argv of every command that writes, with its output pointed at a victim (FLAC file or folder), --overwrite
    given wherever the command takes it; the value names the victim "flac" or "folder"."""
    from tests.fixtures_training import write_learnable_shards
    shards = tmp_path / "shards"
    if not shards.is_dir():
        write_learnable_shards(shards, {"train": 4, "valid": 2, "test": 2})
    inputs = tmp_path / "inputs"
    write_clip(inputs / "audio" / "a.wav", ("rock",), seed=7, duration_s=1.0)
    for name in ("in.csv", "tags.db", "meta/x"):
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_text("x\n")
    config = Path(__file__).resolve().parents[1] / "configs" / "urop2019_log_mel.json"
    ow = "--overwrite"
    return {
        "predict --output": (["predict", "--run-dir", tiny_run, "--mp3", inputs / "audio", "--output", "F", ow],
                             "flac"),
        "predict --taggram": (["predict", "--run-dir", tiny_run, "--mp3", inputs / "audio", "--taggram", "F", ow],
                              "flac"),
        "predict --embeddings": (["predict", "--run-dir", tiny_run, "--mp3", inputs / "audio", "--embeddings", "F",
                                  ow], "flac"),
        "export": (["export", tiny_run, "D", ow], "folder"),
        "test": (["test", "--run-dir", tiny_run, "--tfrecords-dir", shards, "--out", "D", ow], "folder"),
        "train": (["train", "log-mel-spectrogram", "--tfrecords-dir", shards, "--config", config, "--epochs", "1",
                   "--run-dir", "D", ow], "folder"),
        "wise-ft": (["wise-ft", tiny_run, "D", ow], "folder"),
        "pretrained": (["pretrained", "convert", "MTT_vgg", "--out", "D", ow], "folder"),
        "preprocess": (["preprocess", "log-mel-spectrogram", "D", "--csv-path", inputs / "in.csv", "--tag-path",
                        inputs / "tags.db", "--root-dir", inputs / "audio", ow], "folder"),
        "fetcher": (["fetcher", "F", "--root-dir", inputs / "audio", ow], "flac"),
        "wrangle": (["wrangle", inputs / "in.csv", "F", "--path-h5", inputs / "x.h5", ow], "flac"),
        "silence": (["silence", inputs / "in.csv", "F", "--root-dir", inputs / "audio", ow], "flac"),
        "lastfm-cleaning": (["lastfm-cleaning", inputs / "tags.db", "F", ow], "flac"),
        "tag-stats": (["tag-stats", inputs / "tags.db", "D", ow], "folder"),
        "mtt": (["mtt", "C", "--root-dir", inputs / "audio", ow], "csv"),
        "fma": (["fma", "C", "--metadata-dir", inputs / "meta", "--root-dir", inputs / "audio", ow], "csv"),
        "jamendo": (["jamendo", "C", "--metadata-dir", inputs / "meta", "--root-dir", inputs / "audio", ow], "csv"),
        "labels": (["labels", "C", "--from-folders", inputs, ow], "csv"),
        "synthetic": (["synthetic", "D", "--tracks", "2", "--no-audio", ow], "folder"),
        "demo": (["demo", "--workdir", "D"], "folder"),
    }


COMMANDS = ["predict --output", "predict --taggram", "predict --embeddings", "export", "test", "train", "wise-ft",
            "pretrained", "preprocess", "fetcher", "wrangle", "silence", "lastfm-cleaning", "tag-stats", "mtt", "fma",
            "jamendo", "labels", "synthetic", "demo"]


@pytest.mark.parametrize("case", COMMANDS)
def test_no_command_replaces_what_orpheus_did_not_write(capsys, tiny_run_dir, tmp_path, case):  # noqa: F811
    """Rule 1 on every command that writes: with --overwrite, an output path holding a user's FLAC or a
    folder of their things is a one-line error naming the path and what is there; nothing changes."""
    flac, folder = write_victims(tmp_path)
    sheet = tmp_path / "victim" / "sheets"     # a converter's OUT_DIR holding the user's own ultimate.csv
    sheet.mkdir()
    (sheet / "ultimate.csv").write_text("song,rating\nintro,5\n")
    argv, victim = command_cases(tmp_path, tiny_run_dir)[case]
    target = {"flac": flac, "folder": folder, "csv": sheet}[victim]
    argv = [target if a in ("F", "D", "C") else a for a in argv]
    before = snapshot(tmp_path / "victim")
    status, _, err = orpheus(capsys, *argv, "--quiet")
    shown = {"flac": "an audio file (FLAC)", "folder": "a folder of other things", "csv": "a text file"}[victim]
    line = one_line_error(err, argv[0], shown, "not ")
    assert status == EXIT_ERROR and str(target) in line
    assert snapshot(tmp_path / "victim") == before


# ------------------------------------------------------------------------------- exit statuses
def test_a_conversion_that_keeps_no_track_is_an_error(capsys, tmp_path):
    lib = tmp_path / "lib"
    (lib / "rock").mkdir(parents=True)
    (lib / "rock" / "broken.mp3").write_bytes(b"ID3" + b"\0" * 300)
    status, _, err = orpheus(capsys, "labels", tmp_path / "out", "--from-folders", lib, "--quiet")
    one_line_error(err, "labels", "kept 0 tracks", "corrupt audio 1", "nothing written")
    assert status == EXIT_ERROR and not (tmp_path / "out").exists()


def test_tag_stats_that_fails_leaves_no_folder(capsys, tmp_path):
    from tests.fixtures_msd import write_lastfm_db
    db = write_lastfm_db(tmp_path / "empty.db", ["TR1"], ["rock"], [])
    status, _, err = orpheus(capsys, "tag-stats", db, tmp_path / "stats", "--quiet")
    one_line_error(err, "tag-stats", db)
    assert status == EXIT_ERROR and not (tmp_path / "stats").exists()


def test_predict_counts_failed_files_in_its_exit_status(capsys, tiny_run_dir, song, tmp_path):  # noqa: F811
    broken = tmp_path / "in" / "broken.mp3"
    broken.write_bytes(b"ID3" + b"\0" * 300)
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song.parent, "--quiet")
    assert status == EXIT_PARTIAL and err.splitlines()[-1] == "orpheus predict: 1 of 2 files failed; 1 done"
    status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", broken, "--quiet")
    assert status == EXIT_ERROR and err.splitlines()[-1] == "orpheus predict: error: 1 of 1 files failed; 0 done"


# ----------------------------------------------------------- read-only and full file systems (root)
def test_write_tags_on_a_read_only_file_system_is_a_skip_and_an_error(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    music = tmp_path / "music"
    write_clip(music / "a.flac", ("rock",), seed=0, duration_s=2.0)
    write_clip(music / "b.ogg", ("pop",), seed=1, duration_s=2.0)
    before = snapshot(music)
    with mounted(music, "--bind", "-o", "ro", str(music)):
        status, out, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", music, "--write-tags",
                                   "--quiet")
    assert status == EXIT_ERROR and err.splitlines()[-1] == "orpheus predict: error: 2 of 2 files skipped; 0 done"
    assert "read-only file system" in out and "chmod" not in out
    assert snapshot(music) == before


def test_a_read_only_cache_names_orpheus_cache(capsys, song, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("ORPHEUS_CACHE", str(cache))
    with mounted(cache, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"):
        status, _, err = orpheus(capsys, "predict", "--model", "MTT_vgg", "--mp3", song, "--quiet")
    line = one_line_error(err, "predict", "ORPHEUS_CACHE", "read-only")
    assert status == EXIT_ERROR and "choose another output folder" not in line


def test_a_full_disk_under_the_log_names_it_and_leaves_no_torn_line(capsys, tiny_run_dir, song, tmp_path):  # noqa: F811
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=8k", "tmpfs"):
        log_path = disk / "tags.jsonl"
        filler = disk / "filler"
        try:
            filler.write_bytes(b"\0" * 8192)
        except OSError:
            pass
        status, _, err = orpheus(capsys, "predict", "--run-dir", tiny_run_dir, "--mp3", song, "--output", log_path,
                                 "--quiet")
        assert status == EXIT_ERROR
        line = one_line_error(err, "predict", log_path, "no space left on device", "rerun the same command")
        assert "output folder" not in line
        text = log_path.read_text() if log_path.exists() else ""
        assert text == "" or text.endswith("\n")


# --------------------------------------------------------------------------- the OpenVINO cache
def test_a_truncated_cached_openvino_model_is_rebuilt(tiny_run_dir, tmp_path, monkeypatch, caplog):  # noqa: F811
    pytest.importorskip("openvino")
    import numpy as np

    from orpheus.tagging.backends import model_digest
    from orpheus.tagging.tagger import TaggingEngine
    audio = np.random.default_rng(0).normal(size=48000).astype(np.float32) * 0.1
    first = TaggingEngine(tiny_run_dir)      # converted once for the whole session (ORPHEUS_CACHE of conftest.py)
    assert first.backend.startswith("exact (OpenVINO")
    expected = first.tag_audio("noise", audio).scores
    shared = Path(os.environ["ORPHEUS_CACHE"]) / "openvino"
    cached = shared / model_digest(tiny_run_dir / "model.keras")
    shutil.copytree(cached, tmp_path / "cache" / "openvino" / cached.name)
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "cache" / "openvino" / cached.name / "model.bin"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])   # a disk that filled while copying
    with caplog.at_level(logging.WARNING, logger="orpheus.tagging.backends"):
        again = TaggingEngine(tiny_run_dir)
    assert again.backend.startswith("exact (OpenVINO")
    assert [m for m in caplog.messages if "cannot be loaded" in m and "converting again" in m]
    assert np.allclose(again.tag_audio("noise", audio).scores, expected, atol=1e-6)
    assert weights.stat().st_size > 0 and len(TINY_TAGS) == len(expected)


@pytest.mark.slow
def test_a_conversion_that_failed_for_a_passing_reason_is_tried_again(tiny_run_dir, tmp_path, monkeypatch,  # noqa: F811
                                                                      caplog):
    """A full /tmp (the child cannot write the IR) is not remembered: the next run converts."""
    pytest.importorskip("openvino")
    import tempfile

    from orpheus.tagging.tagger import TaggingEngine
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "cache"))
    full = tmp_path / "tmp"
    full.mkdir()
    with mounted(full, "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        with contextlib.suppress(OSError):
            (full / "filler").write_bytes(b"\0" * 65536)
        monkeypatch.setattr(tempfile, "tempdir", str(full))
        with caplog.at_level(logging.WARNING, logger="orpheus.tagging.backends"):
            slow = TaggingEngine(tiny_run_dir, precision="fast")
        monkeypatch.setattr(tempfile, "tempdir", None)
    assert slow.backend.startswith("exact (TensorFlow")
    assert [m for m in caplog.messages if "runs in TensorFlow this time" in m and "the next run tries again" in m]
    assert not list((tmp_path / "cache").glob("openvino/*/failed*"))
    assert TaggingEngine(tiny_run_dir, precision="fast").backend.startswith("fast (OpenVINO")
