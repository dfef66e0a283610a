"""Tag writing into real mp3/ogg/opus/flac/wav files: fields every tool shows, everything else untouched (byte
for byte, owner, mode, xattrs, hard links), atomic replace, leftovers of killed runs cleaned, skips."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.id3 import ID3

from orpheus.tagging.file_tags import rewrite as file_rewrite

from orpheus.tagging.file_tags import writer as tag_writer
from orpheus.tagging.file_tags.writer import SKIPPED, UNCHANGED, WOULD_WRITE, WRITTEN, TagUpdate, write_tags
from tests.fixtures_audio import write_clip
from tests.fixtures_tags import (ape_tag, every_frame, exiftool_json, exiftool_lines, ffprobe_tags, id3v1_tag,
                                 mediainfo_general, needs, pack_frame, pack_tag, split_tag, without_named)

FORMATS = ["mp3", "ogg", "opus", "flac", "wav"]
UPDATE = TagUpdate(tags=("rock", "hard rock", "80s"), model="MSD_musicnn sha256:0123456789ab; top 3", genre="rock")
JOINED = "rock; hard rock; 80s"
ROOT = Path(__file__).resolve().parents[2]


def decode_all(path: Path) -> np.ndarray:
    """Every sample of the file, as libsndfile decodes it."""
    samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return samples


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".orpheus-" in p.name)


@pytest.mark.parametrize("ext", FORMATS)
def test_fields_written_audio_untouched_mode_kept(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", ("rock", "male"), seed=4, duration_s=3.0)
    os.chmod(path, 0o640)
    before_samples, inode = decode_all(path), path.stat().st_ino
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN and outcome.method == file_rewrite.REPLACE, outcome.reason
    assert np.array_equal(decode_all(path), before_samples)  # every sample, bit for bit
    assert path.stat().st_mode & 0o777 == 0o640 and path.stat().st_ino != inode  # a renamed copy
    assert leftovers(tmp_path) == []
    if ext in ("mp3", "wav"):
        tags = mutagen.File(str(path)).tags
        assert isinstance(tags, ID3) and tags.version[:2] == (2, 4)  # a new tag is v2.4
        assert tags["TXXX:ORPHEUS_TAGS"].text == [JOINED]  # one value: every tool shows all of it
        assert tags["TXXX:ORPHEUS_MODEL"].text == [UPDATE.model] and tags["TCON"].text == ["rock"]
    else:
        comments = mutagen.File(str(path)).tags
        assert comments["ORPHEUS_TAGS"] == [JOINED]
        assert comments["ORPHEUS_MODEL"] == [UPDATE.model] and comments["GENRE"] == ["rock"]
    fields = tag_writer.read_fields(path)
    assert fields == {"ORPHEUS_TAGS": [JOINED], "ORPHEUS_MODEL": [UPDATE.model], "GENRE": ["rock"]}
    assert tag_writer.split_tags(fields["ORPHEUS_TAGS"]) == ["rock", "hard rock", "80s"]
    again = write_tags(path, UPDATE)
    assert again.status == UNCHANGED
    # a new selection replaces the values; no genre asked: the genre field is left as it is
    changed = write_tags(path, TagUpdate(tags=("pop",), model="other"))
    assert changed.status == WRITTEN and np.array_equal(decode_all(path), before_samples)
    assert tag_writer.read_fields(path) == {"ORPHEUS_TAGS": ["pop"], "ORPHEUS_MODEL": ["other"], "GENRE": ["rock"]}


@needs("exiftool")
@needs("ffprobe")
@needs("mediainfo")
@pytest.mark.parametrize("ext", FORMATS)
def test_every_tool_shows_every_tag_and_both_fields(tmp_path, ext):
    """What exiftool, ffprobe, mediainfo, mutagen and beets' MediaFile show after a write: all tags, both fields."""
    import mediafile
    path = write_clip(tmp_path / f"song.{ext}", duration_s=2.0)
    assert write_tags(path, UPDATE).status == WRITTEN
    lines = exiftool_lines(path)
    if ext in ("mp3", "wav"):
        assert f"[ID3v2_4] UserDefinedText : (ORPHEUS_TAGS) {JOINED}" in lines
        assert f"[ID3v2_4] UserDefinedText : (ORPHEUS_MODEL) {UPDATE.model}" in lines
        # exiftool's plain JSON shows one of several TXXX frames (the last): ORPHEUS_TAGS; -a -G4 shows both
        assert exiftool_json(path)["UserDefinedText"] == f"(ORPHEUS_TAGS) {JOINED}"
        assert f"(ORPHEUS_MODEL) {UPDATE.model}" in exiftool_json(path, "-a", "-G4").values()
    else:
        shown = exiftool_json(path)
        assert shown["OrpheusTags"] == JOINED and shown["OrpheusModel"] == UPDATE.model and shown["Genre"] == "rock"
    probe = {k.upper(): v for k, v in ffprobe_tags(path).items()}
    assert probe["ORPHEUS_TAGS"] == JOINED and probe["ORPHEUS_MODEL"] == UPDATE.model and probe["GENRE"] == "rock"
    info = mediainfo_general(path)
    assert info["ORPHEUS_TAGS"] == JOINED and info["ORPHEUS_MODEL"] == UPDATE.model and info["Genre"] == "rock"
    assert mediafile.MediaFile(str(path)).genre == "rock"


@pytest.mark.parametrize("major", [2, 3, 4])
def test_id3_tag_keeps_its_version_and_every_other_byte(tmp_path, major):
    """An mp3 with every frame type mutagen knows (plus XSOP, NCON), artwork, ReplayGain and user frames, an APEv2
    and an ID3v1 tag: only the named frames change; their version is the tag's; the rest is byte for byte."""
    audio = write_clip(tmp_path / "plain.mp3", duration_s=2.0).read_bytes()
    frames = every_frame(major)
    tail = audio + ape_tag({"Artist": "Band", "REPLAYGAIN_TRACK_GAIN": "-6.20 dB"}) + id3v1_tag("Song", "my comment", 0)
    path = tmp_path / "song.mp3"
    path.write_bytes(pack_tag(major, frames) + tail)
    original = path.read_bytes()
    shown_before = _client_views(path)
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN, outcome.reason
    assert outcome.before["ORPHEUS_TAGS"] == ["blues", "soul"] and outcome.before["GENRE"] == ["Blues"]
    new_major, new_frames, new_tail = split_tag(path.read_bytes())
    assert new_major == major and new_tail == tail  # audio, APEv2 and ID3v1 byte for byte
    assert len(path.read_bytes()) == len(original)  # the new frames fit into the padding: nothing moved
    id_len, named = (3, (b"TXX", b"TCO")) if major == 2 else (4, (b"TXXX", b"TCON"))
    kept = [f for f in frames if f[:id_len] not in named]
    assert [f for f in new_frames if f[:id_len] not in named] == kept  # every other frame, in order, as it was
    user_before = [f for f in frames if f[:3] == b"TXX" and b"O\x00R\x00P\x00H" not in f]
    assert [f for f in new_frames if f in user_before] == user_before  # the user's own TXXX frames too
    assert tag_writer.read_fields(path) == {"ORPHEUS_TAGS": [JOINED], "ORPHEUS_MODEL": [UPDATE.model],
                                            "GENRE": ["rock"]}
    if major > 2:
        loaded = ID3(str(path), translate=False)
        assert loaded.version[1] == major and loaded["TXXX:ORPHEUS_TAGS"].text == [JOINED]
    shown_after = _client_views(path)
    if major == 2:  # mediainfo 23.04 reads a v2.2 TXX frame's description 3 bytes late (its own bug)
        shown_before.pop("mediainfo", None)
    for client, before in shown_before.items():
        assert without_named(shown_after[client]) == without_named(before), client


def _client_views(path: Path) -> dict[str, list]:
    """What each installed client shows of a file (exiftool every tag; ffprobe and mediainfo their tags)."""
    import shutil
    views = {}
    if shutil.which("exiftool"):
        views["exiftool"] = exiftool_lines(path)
    if shutil.which("ffprobe"):
        views["ffprobe"] = sorted(ffprobe_tags(path).items())
    if shutil.which("mediainfo"):
        views["mediainfo"] = sorted(mediainfo_general(path).items())
    return views


def test_id3_tag_that_cannot_be_rewritten_is_skipped_also_in_dry_run(tmp_path):
    audio = write_clip(tmp_path / "plain.mp3", duration_s=2.0).read_bytes()
    path = tmp_path / "song.mp3"
    tag = bytearray(pack_tag(3, [pack_frame(3, "TIT2", b"\x00Song")]))
    tag[5] |= 0x80  # whole-tag unsynchronisation
    path.write_bytes(bytes(tag) + audio)
    for dry_run in (True, False):
        outcome = write_tags(path, UPDATE, dry_run=dry_run)
        assert outcome.status == SKIPPED and "unsynchronised ID3v2.3 tag" in outcome.reason
    assert path.read_bytes() == bytes(tag) + audio


def _info_chunk(fields: dict[str, str]) -> bytes:
    body = b"INFO"
    for key, value in fields.items():
        data = value.encode() + b"\x00"
        body += key.encode() + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2)
    return b"LIST" + struct.pack("<I", len(body)) + body


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI", data[pos:pos + 8])
        out.append((cid, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + size % 2
    return out


@needs("ffprobe")
@needs("exiftool")
def test_wav_with_riff_info_gets_one_genre_everywhere(tmp_path):
    """ffmpeg reads a wav's INFO chunk and drops its ID3 chunk, so the genre goes into both; all else stays."""
    path = write_clip(tmp_path / "song.wav", duration_s=2.0)
    data = path.read_bytes()
    id3_chunk = pack_tag(3, [pack_frame(3, "TIT2", b"\x00Song"), pack_frame(3, "TCON", b"\x00Blues")])
    extra = _info_chunk({"INAM": "Song", "IGNR": "Blues", "ICMT": "odd"}) + b"id3 " + struct.pack(
        "<I", len(id3_chunk)) + id3_chunk
    data = data[:4] + struct.pack("<I", len(data) - 8 + len(extra)) + data[8:] + extra
    path.write_bytes(data)
    assert ffprobe_tags(path)["genre"] == "Blues"
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN
    assert outcome.before["INFO:IGNR"] == ["Blues"] and outcome.after["INFO:IGNR"] == ["rock"]
    before, after = dict(_chunks(data)), dict(_chunks(path.read_bytes()))
    assert [c for c, _ in _chunks(path.read_bytes())] == [c for c, _ in _chunks(data)]  # same chunks, same order
    assert after[b"fmt "] == before[b"fmt "] and after[b"data"] == before[b"data"]
    assert after[b"LIST"] == before[b"LIST"].replace(b"IGNR\x06\x00\x00\x00Blues\x00",
                                                     b"IGNR\x05\x00\x00\x00rock\x00\x00")
    probe = ffprobe_tags(path)
    assert probe["genre"] == "rock" and probe["title"] == "Song"
    genres = [line for line in exiftool_lines(path) if " Genre " in line]
    assert sorted(genres) == ["[ID3v2_3] Genre : rock", "[RIFF] Genre : rock"]
    _, frames, _ = split_tag(after[b"id3 "])
    assert frames[0] == pack_frame(3, "TIT2", b"\x00Song")  # the v2.3 tag stays v2.3, its title byte for byte
    assert tag_writer.already_tagged(tag_writer.read_fields(path), UPDATE.model, genre=True)


def _flac_blocks(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 4
    while True:
        kind, size = data[pos] & 0x7F, int.from_bytes(data[pos + 1:pos + 4], "big")
        out.append((kind, data[pos + 4:pos + 4 + size]))
        if data[pos] & 0x80:
            return out
        pos += 4 + size


def test_flac_and_ogg_keep_every_other_block_comment_and_packet(tmp_path):
    from mutagen.flac import FLAC, MetadataBlock, Picture
    from mutagen.ogg import OggPage
    path = write_clip(tmp_path / "song.flac", duration_s=2.0)
    flac = FLAC(str(path))
    picture = Picture()
    picture.type, picture.mime, picture.desc, picture.data = 3, "image/png", "cover", b"\x89PNG" + bytes(500)
    flac.add_picture(picture)
    application = MetadataBlock(b"ORPHtest application data")
    application.code = 2
    flac.metadata_blocks.insert(1, application)
    flac["TITLE"], flac["REPLAYGAIN_TRACK_GAIN"], flac["GENRE"] = "Song", "-6.20 dB", ["Blues", "Soul"]
    flac["ORPHEUS_TAGS"] = ["blues", "soul"]
    flac.save()
    data = path.read_bytes()
    assert write_tags(path, UPDATE).status == WRITTEN
    after = path.read_bytes()
    kept = [b for b in _flac_blocks(data) if b[0] not in (1, 4)]  # all but PADDING and VORBIS_COMMENT
    assert [b for b in _flac_blocks(after) if b[0] not in (1, 4)] == kept
    assert after.endswith(data[-(len(data) - _audio_offset(data)):])  # the audio frames, byte for byte
    comments = FLAC(str(path)).tags
    assert [c for c in comments if c[0] not in ("ORPHEUS_TAGS", "ORPHEUS_MODEL", "GENRE")] == [
        ("TITLE", "Song"), ("REPLAYGAIN_TRACK_GAIN", "-6.20 dB")]
    assert comments["GENRE"] == ["rock"] and comments.vendor == FLAC(str(tmp_path / "song.flac")).tags.vendor

    ogg = write_clip(tmp_path / "song.ogg", duration_s=2.0)
    vorbis = mutagen.File(str(ogg))
    vorbis["TITLE"], vorbis["METADATA_BLOCK_PICTURE"] = "Song", "AAAAAwAAAAlpbWFnZS9wbmcAAAAA"
    vorbis.save()
    packets = _ogg_packets(ogg, OggPage)
    assert write_tags(ogg, UPDATE).status == WRITTEN
    new_packets = _ogg_packets(ogg, OggPage)
    assert new_packets[:1] + new_packets[2:] == packets[:1] + packets[2:]  # all but the comment packet
    assert mutagen.File(str(ogg))["METADATA_BLOCK_PICTURE"] == ["AAAAAwAAAAlpbWFnZS9wbmcAAAAA"]


def _audio_offset(flac: bytes) -> int:
    pos = 4
    while True:
        last, size = flac[pos] & 0x80, int.from_bytes(flac[pos + 1:pos + 4], "big")
        pos += 4 + size
        if last:
            return pos


def _ogg_packets(path: Path, OggPage) -> list[bytes]:
    pages = []
    with open(path, "rb") as f:
        while True:
            try:
                pages.append(OggPage(f))
            except EOFError:
                break
    return OggPage.to_packets(pages)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("ext", ["mp3", "flac"])
def test_owner_group_mode_and_xattrs_are_kept(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", duration_s=2.0)
    os.chown(path, 4321, 4322)
    os.chmod(path, 0o640)
    os.setxattr(path, "user.origin", b"bought at the gig")
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN and outcome.method == file_rewrite.REPLACE
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (4321, 4322, 0o640)
    assert os.listxattr(path) == ["user.origin"] and os.getxattr(path, "user.origin") == b"bought at the gig"


@pytest.mark.parametrize("ext", ["mp3", "ogg"])
def test_hard_linked_file_is_written_in_place_for_all_its_names(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", duration_s=2.0)
    other = tmp_path / "elsewhere" / f"same.{ext}"
    other.parent.mkdir()
    os.link(path, other)
    inode, samples = path.stat().st_ino, decode_all(path)
    dry = write_tags(path, UPDATE, dry_run=True)
    assert dry.status == WOULD_WRITE and dry.method == file_rewrite.IN_PLACE and "2 hard links" in dry.describe()
    outcome = write_tags(path, UPDATE)
    assert outcome.status == WRITTEN and outcome.method == file_rewrite.IN_PLACE
    assert "(in place: 2 hard links)" in outcome.describe()
    assert path.stat().st_ino == other.stat().st_ino == inode and path.stat().st_nlink == 2
    assert tag_writer.read_fields(other)["ORPHEUS_TAGS"] == [JOINED]
    assert np.array_equal(decode_all(other), samples) and leftovers(tmp_path) == []


def test_killed_write_leaves_a_temporary_copy_that_the_next_run_removes(tmp_path):
    """A real kill (SIGXFSZ at a file-size limit, mid-copy) leaves the original whole and a temporary copy;
    the next run's cleanup removes it, but leaves a temporary file a live writer still holds."""
    import fcntl
    path = write_clip(tmp_path / "song.flac", duration_s=3.0)
    data = path.read_bytes()
    code = ("import resource, signal\n"
            "from orpheus.tagging.file_tags.writer import TagUpdate, write_tags\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel's default kills\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(data) // 2}, resource.RLIM_INFINITY))\n"
            f"write_tags({str(path)!r}, TagUpdate(('rock',), 'm'))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGXFSZ
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(".song.flac.") and stale[0].endswith(".orpheus-tmp")
    assert path.read_bytes() == data
    live = tmp_path / ".other.flac.abcdefgh.orpheus-tmp"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert tag_writer.clean_stale_temporaries([path], dry_run=True) == [
            f"{tmp_path / stale[0]}: would remove the temporary copy an interrupted run left"]
        assert len(leftovers(tmp_path)) == 2
        lines = tag_writer.clean_stale_temporaries([path])
        assert lines == [f"{tmp_path / stale[0]}: remove the temporary copy an interrupted run left"]
        assert leftovers(tmp_path) == [live.name]  # a live writer's file stays
    assert path.read_bytes() == data


def test_interrupted_in_place_write_is_finished_by_the_next_run(tmp_path):
    """The state a kill in the middle of an in-place write leaves (a torn original, its complete journal): the
    next run copies the journal in, keeping the inode and its links."""
    path = write_clip(tmp_path / "song.mp3", duration_s=2.0)
    os.link(path, tmp_path / "link.mp3")
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(path.read_bytes())
    assert write_tags(tagged, UPDATE).status == WRITTEN
    journal = tmp_path / ".song.mp3.k2j4h5g6.orpheus-journal"
    journal.write_bytes(tagged.read_bytes())
    with open(path, "r+b") as f:  # torn: the new tag's first bytes written over the old start, the rest not
        f.write(tagged.read_bytes()[:700])
    inode = path.stat().st_ino
    lines = tag_writer.clean_stale_temporaries([path])
    assert lines == [f"{path}: finish the in-place tag write an interrupted run began (from {journal.name})"]
    assert path.read_bytes() == tagged.read_bytes() and path.stat().st_ino == inode
    assert (tmp_path / "link.mp3").read_bytes() == tagged.read_bytes() and not journal.exists()


@pytest.mark.parametrize("ext", ["mp3", "flac"])
def test_dry_run_changes_nothing_and_describes_the_change(tmp_path, ext):
    path = write_clip(tmp_path / f"song.{ext}", duration_s=2.0)
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    outcome = write_tags(path, UPDATE, dry_run=True)
    assert outcome.status == WOULD_WRITE
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    assert f"ORPHEUS_TAGS [] -> ['{JOINED}']" in outcome.describe()
    assert "GENRE [] -> ['rock']" in outcome.describe()
    assert outcome.to_json() == {"status": WOULD_WRITE, "method": file_rewrite.REPLACE,
                                 "fields": {"ORPHEUS_TAGS": [JOINED], "ORPHEUS_MODEL": [UPDATE.model],
                                            "GENRE": ["rock"]},
                                 "previous": {"GENRE": [], "ORPHEUS_MODEL": [], "ORPHEUS_TAGS": []}}


def test_existing_tags_are_kept(tmp_path):
    path = write_clip(tmp_path / "song.ogg", duration_s=2.0)
    audio = mutagen.File(str(path))
    audio["TITLE"], audio["ARTIST"] = "Song", "Band"
    audio.save()
    assert write_tags(path, UPDATE).status == WRITTEN
    audio = mutagen.File(str(path))
    assert audio["TITLE"] == ["Song"] and audio["ARTIST"] == ["Band"] and audio["ORPHEUS_TAGS"] == [JOINED]


def test_read_only_file_and_folder_are_skipped_with_reason_also_in_dry_run(tmp_path):
    path = write_clip(tmp_path / "ro" / "song.mp3", duration_s=2.0)
    data = path.read_bytes()
    os.chmod(path, 0o444)
    for dry_run in (True, False):
        outcome = write_tags(path, UPDATE, dry_run=dry_run)
        assert outcome.status == SKIPPED and "read-only file" in outcome.reason and path.read_bytes() == data
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o555)
    try:
        for dry_run in (True, False):
            outcome = write_tags(path, UPDATE, dry_run=dry_run)
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
    assert link.is_symlink() and tag_writer.read_fields(target)["ORPHEUS_TAGS"] == [JOINED]


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
    path = write_clip(tmp_path / "song.flac", duration_s=3.0)
    data = path.read_bytes()
    code = ("import resource, signal, sys\n"
            "from orpheus.tagging.file_tags.writer import TagUpdate, write_tags\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(data) // 2}, resource.RLIM_INFINITY))\n"
            f"outcome = write_tags({str(path)!r}, TagUpdate(('rock',), 'm'))\n"
            "print(outcome.status, '|', outcome.reason)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    status, reason = done.stdout.strip().split(" | ")
    assert status == SKIPPED and "File too large" in reason and "the file is unchanged" in reason
    assert path.read_bytes() == data and leftovers(tmp_path) == []
