"""`predict --output LOG.jsonl` and `--write-tags` over a generated library: records, resume, torn lines, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orpheus.commands import predict_and_test

from orpheus.tagging.file_tags import writer as tag_writer

from orpheus.tagging import inputs
from orpheus.errors import EXIT_PARTIAL
from orpheus.tagging.library import LogBusyError, ResultsLog
from tests.fixtures_audio import write_clip
from tests.fixtures_tagging import TINY_TAGS, tiny_run_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def library(tmp_path) -> Path:
    """music/a.mp3, music/b/c.ogg, music/b/d.flac, music/e.wav (generated, 3-4 s) and music/broken.mp3."""
    music = tmp_path / "music"
    for i, name in enumerate(["a.mp3", "b/c.ogg", "b/d.flac", "e.wav"]):
        write_clip(music / name, ("rock", "jazz", "ambient", "pop")[i:i + 1], seed=i, duration_s=3.0 + i % 2)
    (music / "broken.mp3").write_bytes(b"ID3" + b"\x00" * 400)
    return music


def predict(capsys, run_dir, *args) -> tuple[int, str, str]:
    status = predict_and_test.main(["predict", "--run-dir", str(run_dir), "--quiet", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def read_log(path: Path) -> list[dict]:
    """The records of a results log, after its header record (checked)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert not lines or lines[0]["orpheus_results_log"] == 1
    return lines[1:]


def test_log_records_every_file_and_rerun_skips_them(capsys, tiny_run_dir, library, tmp_path):  # noqa: F811
    log_path = tmp_path / "tags.jsonl"
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path, "--top", "3")
    records = read_log(log_path)
    assert status == EXIT_PARTIAL and out == ""  # broken.mp3 failed: recorded, the run went on
    assert [r["path"] for r in records] == [str(library / n) for n in ["a.mp3", "b/c.ogg", "b/d.flac", "broken.mp3",
                                                                       "e.wav"]]
    good = [r for r in records if r["error"] is None]
    assert len(good) == 4 and "broken.mp3" in records[3]["error"] and records[3]["tags"] == {}
    from orpheus.api import model_identity, Tagger
    identity = model_identity(tiny_run_dir)
    expected = {r.file: r for r in Tagger(run_dir=tiny_run_dir).tag(library, top=3)}
    for record in good:
        stat = os.stat(record["path"])
        assert (record["size"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
        assert record["model"] == identity.to_json() and len(record["model"]["sha256"]) == 64
        assert record["settings"] == {"window_s": None, "hop_s": None, "aggregate": "mean", "threshold": None,
                                      "top": 3}
        assert record["tags"] == pytest.approx(expected[record["path"]].tags, abs=1e-7) and len(record["tags"]) == 3
        assert list(record["tags"])[0] in TINY_TAGS and record["warnings"] == []
    # a rerun tags only the failed file again (it may have been fixed)
    predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path, "--top", "3")
    assert [r["path"] for r in read_log(log_path)[5:]] == [str(library / "broken.mp3")]
    # a changed file (new mtime), a fixed file and other settings are redone
    os.utime(library / "e.wav", ns=(1_000_000_000, 1_000_000_000))
    write_clip(library / "broken.mp3", ("metal",), duration_s=3.0)
    status, _, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path, "--top", "3")
    assert status == 0 and sorted(r["path"] for r in read_log(log_path)[6:]) == [str(library / "broken.mp3"),
                                                                                 str(library / "e.wav")]
    predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path, "--top", "2")
    assert len(read_log(log_path)) == 8 + 5


def test_torn_last_line_is_cut_off_and_its_file_redone(capsys, tiny_run_dir, library, tmp_path):  # noqa: F811
    log_path = tmp_path / "tags.jsonl"
    predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path)
    header, *lines = log_path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    torn = header + b"".join(lines[:2]) + lines[2][:37]  # as a kill in the middle of the third record leaves it
    log_path.write_bytes(torn)
    _, _, err = predict(capsys, tiny_run_dir, "--mp3", library, "--output", log_path)
    records = read_log(log_path)  # valid JSON lines again
    assert [r["path"] for r in records[:2]] == [json.loads(line)["path"] for line in lines[:2]]
    redone = sorted(r["path"] for r in records[2:])
    assert redone == sorted(json.loads(line)["path"] for line in lines[2:])  # the torn record's file, and the rest
    assert f"{log_path}: cut off an incomplete last line (37 bytes)" in err


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "tags.jsonl"
    with ResultsLog(path) as first:
        first.append({"path": "/x", "size": 1, "mtime_ns": 5, "model": {"sha256": "ab"}, "settings": {"top": 1},
                      "error": None})
        assert first.is_done(("/x", 1, 5), "ab", {"top": 1}) and not first.is_done(("/x", 1, 6), "ab", {"top": 1})
        with pytest.raises(LogBusyError, match="another predict run"):
            ResultsLog(path).__enter__()
    with ResultsLog(path) as again:
        assert list(again.latest) == ["/x"] and again.is_done(("/x", 1, 5), "ab", {"top": 1})


def test_write_tags_then_rerun_rewrites_nothing(capsys, tiny_run_dir, library, tmp_path):  # noqa: F811
    samples = {p: sf.read(str(p), always_2d=True)[0] for p in library.rglob("*") if p.is_file()
               and p.name != "broken.mp3"}
    snapshot = {p: p.read_bytes() for p in library.rglob("*") if p.is_file()}
    os.chmod(library / "e.wav", 0o444)
    _, dry, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--top", "2", "--write-genre",
                        "--dry-run")
    assert dry.count("would write") == 3 and all(p.read_bytes() == data for p, data in snapshot.items())
    status, out, err = predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--top", "2", "--write-genre")
    assert status == EXIT_PARTIAL  # broken.mp3 could not be tagged, e.wav not written
    assert err.splitlines()[-1] == "orpheus predict: 1 of 5 files failed and 1 skipped; 3 done"
    assert out.count(": written: ") == 3 and f"{library / 'e.wav'}: skipped: read-only file" in out
    skips = [line for line in out.splitlines() if ": skipped: " in line]
    assert skips == [line for line in dry.splitlines() if ": skipped: " in line]  # the dry run foretold them
    for path, before in samples.items():
        assert np.array_equal(sf.read(str(path), always_2d=True)[0], before)
    from orpheus.api import model_identity
    fields = tag_writer.read_fields(library / "b" / "d.flac")
    assert fields["ORPHEUS_MODEL"] == [f"{model_identity(tiny_run_dir).label}; top 2"]
    tags = tag_writer.split_tags(fields["ORPHEUS_TAGS"])
    assert len(tags) == 2 and fields["ORPHEUS_TAGS"] == ["; ".join(tags)] and fields["GENRE"] == tags[:1]
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in library.rglob("*") if p.is_file()}
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--top", "2", "--write-genre")
    assert out.count(": written: ") == 0 and "read-only file" in out  # only the skipped file is tried again
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stamps} == stamps
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--top", "3")
    assert out.count(": written: ") == 3  # another selection: rewritten


def test_output_and_write_tags_together_resume(capsys, tiny_run_dir, library, tmp_path):  # noqa: F811
    log_path = tmp_path / "tags.jsonl"
    predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--output", log_path)
    records = {r["path"]: r for r in read_log(log_path)}
    flac = records[str(library / "b" / "d.flac")]
    assert flac["tag_write"]["status"] == "written" and len(flac["tags"]) == len(TINY_TAGS)  # top 10 of 6
    assert flac["tag_write"]["fields"]["ORPHEUS_TAGS"] == ["; ".join(flac["tags"])]
    assert flac["mtime_ns"] == (library / "b" / "d.flac").stat().st_mtime_ns  # the file as written
    assert "tag_write" not in records[str(library / "broken.mp3")]
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--write-tags", "--output", log_path)
    assert status == EXIT_PARTIAL and out == "" and len(read_log(log_path)) == 5 + 1  # only broken.mp3 again


def test_write_tags_reports_like_predict_json_warnings_and_leftovers(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    """--write-tags prints plain predict's input warnings, JSON records with what was written under --format json,
    and removes the temporary copy a killed run left (a dry run only says it would)."""
    music = tmp_path / "music"
    write_clip(music / "fine.flac", ("jazz",), duration_s=3.0)
    sf.write(str(music / "silence.wav"), np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    whole = write_clip(tmp_path / "whole.mp3", ("rock",), duration_s=12.0)
    (music / "truncated.mp3").write_bytes(whole.read_bytes()[:whole.stat().st_size // 3])
    stale = music / ".fine.flac.a1b2c3d4.orpheus-tmp"
    stale.write_bytes(b"a copy a killed run left")
    _, out, err = predict(capsys, tiny_run_dir, "--mp3", music, "--write-tags", "--write-genre", "--dry-run")
    assert out.count("would write") == 3 and stale.exists()
    assert f"{stale}: would remove the temporary copy an interrupted run left" in err
    assert f"{music / 'silence.wav'}: near-silent (digital silence" in err
    assert f"{music / 'truncated.mp3'}: truncated: decoded " in err
    status, out, err = predict(capsys, tiny_run_dir, "--mp3", music, "--write-tags", "--write-genre", "--top", "2",
                               "--format", "json")
    assert status == 0 and not stale.exists() and f"{stale}: remove the temporary copy" in err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert sorted(records) == ["fine.flac", "silence.wav", "truncated.mp3"]
    assert f"{music / 'silence.wav'}: near-silent (digital silence" in err
    assert records["truncated.mp3"]["warnings"][0].startswith("truncated: decoded ")
    for name, record in records.items():
        written = record["tag_write"]
        tags = list(record["tags"])
        assert written["status"] == "written" and written["method"] == "replace"
        assert written["fields"] == tag_writer.read_fields(music / name) == {
            "ORPHEUS_TAGS": ["; ".join(tags)], "ORPHEUS_MODEL": written["fields"]["ORPHEUS_MODEL"],
            "GENRE": tags[:1]}
        assert written["previous"] == {"GENRE": [], "ORPHEUS_MODEL": [], "ORPHEUS_TAGS": []}
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", music, "--write-tags", "--format", "csv")
    assert status == 1 and "use --format table or json" in err


def test_flag_errors_are_one_line(capsys, tiny_run_dir, library, tmp_path):  # noqa: F811
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", library, "--write-genre")
    assert status == 1 and "--write-genre needs --write-tags" in err
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", library, "--output", tmp_path / "x.jsonl",
                             "--embeddings", tmp_path / "e.npy")
    assert status == 1 and "drop --record, --taggram and --embeddings" in err
    (tmp_path / "a_file").write_text("")
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", library, "--output", tmp_path / "a_file" / "x.jsonl")
    assert status == 1 and "a_file is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", library, "--output", tmp_path / "dry.jsonl", "--dry-run")
    assert status == EXIT_PARTIAL and out.count("would append") == 5 and not (tmp_path / "dry.jsonl").exists()


@pytest.mark.slow
def test_killed_run_leaves_valid_lines_and_resumes(tiny_run_dir, tmp_path):  # noqa: F811
    """SIGKILL a real `predict --output` run midway, then resume it: every file recorded exactly once."""
    music = tmp_path / "music"
    names = [f"{i:02d}.wav" for i in range(24)]
    for i, name in enumerate(names):
        write_clip(music / name, ("rock", "jazz", "pop")[i % 3:i % 3 + 1], seed=i, duration_s=6.0)
    log_path = tmp_path / "tags.jsonl"
    command = [sys.executable, "orpheus/test_model.py", "predict", "--run-dir", str(tiny_run_dir), "--mp3",
               str(music), "--output", str(log_path), "--quiet", "--batch-size", "1"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if log_path.is_file() and log_path.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    assert run.poll() is None, run.stderr.read().decode()
    run.send_signal(signal.SIGKILL)
    run.wait()
    data = log_path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    header, *first = [json.loads(line) for line in complete.splitlines()]
    assert header["orpheus_results_log"] == 1 and 2 <= len(first) < len(names)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    records = read_log(log_path)
    assert records[:len(first)] == first
    assert sorted(r["path"] for r in records) == [str(music / n) for n in names]  # each once: nothing redone


def test_opus_file_in_a_folder_is_tagged(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    path = write_clip(tmp_path / "music" / "song.opus", ("folk",), duration_s=3.0)
    assert inputs.list_audio_files(tmp_path / "music") == [path]
    samples = sf.read(str(path), always_2d=True)[0]
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", path.parent, "--write-tags", "--top", "2")
    assert status == 0 and out.startswith(f"{path}: written: ")
    assert len(tag_writer.split_tags(tag_writer.read_fields(path)["ORPHEUS_TAGS"])) == 2
    assert np.array_equal(sf.read(str(path), always_2d=True)[0], samples)
