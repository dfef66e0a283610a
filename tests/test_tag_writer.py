"""Tag writing into real mp3/ogg/opus/flac/wav files: fields, untouched audio, atomic replace, skips."""

from __future__ import annotations

import os
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.id3 import ID3

from orpheus import tag_writer
from orpheus.tag_writer import SKIPPED, UNCHANGED, WOULD_WRITE, WRITTEN, TagUpdate, write_tags
from tests.fixtures_audio import write_clip

FORMATS = ["mp3", "ogg", "opus", "flac", "wav"]
UPDATE = TagUpdate(tags=("rock", "hard rock", "80s"), model="MSD_musicnn sha256:0123456789ab; top 3", genre="rock")


def decode_all(path: Path) -> np.ndarray:
    """Every sample of the file, as libsndfile decodes it."""
    samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return samples


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".orpheus-tmp"))


@pytest.mark.parametrize("ext", FORMATS)
def test_fields_written_audio_untouched_mode_kept(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", ("rock", "male"), seed=4, duration_s=3.0)
    os.chmod(path, 0o640)
    before_samples, inode = decode_all(path), path.stat().st_ino
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN, outcome.reason
    assert np.array_equal(decode_all(path), before_samples)  # every sample, bit for bit
    assert path.stat().st_mode & 0o777 == 0o640 and path.stat().st_ino != inode  # a renamed copy
    assert leftovers(tmp_path) == []
    if ext in ("mp3", "wav"):
        tags = mutagen.File(str(path)).tags
        assert isinstance(tags, ID3) and tags.version[:2] == (2, 4)
        assert tags["TXXX:ORPHEUS_TAGS"].text == ["rock", "hard rock", "80s"]  # one text value per tag
        assert tags["TXXX:ORPHEUS_MODEL"].text == [UPDATE.model] and tags["TCON"].text == ["rock"]
        if ext == "mp3":  # the file reread from disk by a fresh ID3 parser
            assert ID3(str(path))["TXXX:ORPHEUS_TAGS"].text == ["rock", "hard rock", "80s"]
    else:
        comments = mutagen.File(str(path)).tags
        assert comments["ORPHEUS_TAGS"] == ["rock", "hard rock", "80s"]
        assert comments["ORPHEUS_MODEL"] == [UPDATE.model] and comments["GENRE"] == ["rock"]
    assert tag_writer.read_fields(path) == {"ORPHEUS_TAGS": ["rock", "hard rock", "80s"],
                                            "ORPHEUS_MODEL": [UPDATE.model], "GENRE": ["rock"]}
    again = write_tags(path, UPDATE)
    assert again.status == UNCHANGED and path.stat().st_ino != inode
    # a new selection replaces the values; no genre asked: the genre field is left as it is
    changed = write_tags(path, TagUpdate(tags=("pop",), model="other"))
    assert changed.status == WRITTEN and np.array_equal(decode_all(path), before_samples)
    assert tag_writer.read_fields(path) == {"ORPHEUS_TAGS": ["pop"], "ORPHEUS_MODEL": ["other"], "GENRE": ["rock"]}


@pytest.mark.parametrize("ext", ["mp3", "flac"])
def test_dry_run_changes_nothing_and_describes_the_change(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", duration_s=2.0)
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    outcome = write_tags(path, UPDATE, dry_run=True)
    assert outcome.status == WOULD_WRITE
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    assert "ORPHEUS_TAGS [] -> ['rock', 'hard rock', '80s']" in outcome.describe()
    assert "GENRE [] -> ['rock']" in outcome.describe()


def test_existing_tags_are_kept(tmp_path):
    path = write_clip(tmp_path / "song.ogg", duration_s=2.0)
    audio = mutagen.File(str(path))
    audio["TITLE"], audio["ARTIST"] = "Song", "Band"
    audio.save()
    assert write_tags(path, UPDATE).status == WRITTEN
    audio = mutagen.File(str(path))
    assert audio["TITLE"] == ["Song"] and audio["ARTIST"] == ["Band"] and audio["ORPHEUS_TAGS"][0] == "rock"


def test_read_only_file_and_folder_are_skipped_with_reason(tmp_path):
    path = write_clip(tmp_path / "ro" / "song.mp3", duration_s=2.0)
    data = path.read_bytes()
    os.chmod(path, 0o444)
    outcome = write_tags(path, UPDATE)
    assert outcome.status == SKIPPED and "read-only file" in outcome.reason and path.read_bytes() == data
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o555)
    try:
        outcome = write_tags(path, UPDATE)
        assert outcome.status == SKIPPED and "read-only folder" in outcome.reason and path.read_bytes() == data
    finally:
        os.chmod(path.parent, 0o755)
    assert outcome.describe().startswith(f"{path}: skipped: read-only folder")


def test_files_without_a_tag_header_are_skipped(tmp_path):
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_bytes(b"these are not mpeg frames " * 40)
    broken_wav = tmp_path / "broken.wav"
    broken_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * 30)
    for path in (not_audio, broken_wav):
        data = path.read_bytes()
        outcome = write_tags(path, UPDATE)
        assert outcome.status == SKIPPED and ("tag header" in outcome.reason), outcome.reason
        assert path.read_bytes() == data and leftovers(tmp_path) == []
    missing = write_tags(tmp_path / "gone.flac", UPDATE)
    assert missing.status == SKIPPED


def test_symlink_is_followed_and_stays_a_link(tmp_path):
    target = write_clip(tmp_path / "music" / "song.flac", duration_s=2.0)
    link = tmp_path / "link.flac"
    link.symlink_to(target)
    assert write_tags(link, UPDATE).status == WRITTEN
    assert link.is_symlink() and tag_writer.read_fields(target)["ORPHEUS_TAGS"][0] == "rock"


def test_empty_selection_removes_the_tags_field(tmp_path):
    path = write_clip(tmp_path / "song.wav", duration_s=2.0)
    write_tags(path, UPDATE)
    outcome = write_tags(path, tag_writer.update_for([], "M; threshold 0.99", genre=True))
    assert outcome.status == WRITTEN
    assert tag_writer.read_fields(path) == {"ORPHEUS_MODEL": ["M; threshold 0.99"], "GENRE": ["rock"]}
    assert tag_writer.already_tagged(tag_writer.read_fields(path), "M; threshold 0.99", genre=True)
    assert not tag_writer.already_tagged(tag_writer.read_fields(path), "M; top 3", genre=False)


def test_failed_write_leaves_the_original_whole(tmp_path):
    """A real write failure (file-size limit, as a full disk fails a write): skipped, original intact, no temp."""
    import subprocess
    import sys
    path = write_clip(tmp_path / "song.flac", duration_s=3.0)
    data = path.read_bytes()
    code = ("import resource, signal, sys\n"
            "from orpheus.tag_writer import TagUpdate, write_tags\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(data) // 2}, resource.RLIM_INFINITY))\n"
            f"outcome = write_tags({str(path)!r}, TagUpdate(('rock',), 'm'))\n"
            "print(outcome.status, '|', outcome.reason)\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    status, reason = done.stdout.strip().split(" | ")
    assert status == SKIPPED and "File too large" in reason and "the file is unchanged" in reason
    assert path.read_bytes() == data and leftovers(tmp_path) == []
