"""Audio files carrying everything a user's tags can hold, built byte by byte, and what the tools people read
their files with (exiftool, ffprobe, mediainfo) show for them.

The ID3 builder here is independent of `orpheus.tagging.file_tags.id3v2` (it packs frames with struct and takes each frame's
content from mutagen's own encoder), so a test that parses with one and builds with the other checks both.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

CLIENTS = ("exiftool", "ffprobe", "mediainfo")
# the fields Orpheus names: what the tools call them (exiftool's ID3 frames show "(DESC) value")
NAMED = ("orpheus", "genre", "ignr")


def needs(client: str):
    """Skip a test when a client is not installed (CI installs them: see the Makefile's APT_PACKAGES)."""
    return pytest.mark.skipif(shutil.which(client) is None, reason=f"{client} is not installed")


def syncsafe(n: int) -> bytes:
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def pack_frame(major: int, frame_id: str, payload: bytes, flags: int = 0) -> bytes:
    if major == 2:
        return frame_id.encode() + len(payload).to_bytes(3, "big") + payload
    size = syncsafe(len(payload)) if major == 4 else struct.pack(">I", len(payload))
    return frame_id.encode() + size + struct.pack(">H", flags) + payload


def pack_tag(major: int, frames: list[bytes], padding: int = 300) -> bytes:
    body = b"".join(frames) + b"\x00" * padding
    return b"ID3" + bytes((major, 0, 0)) + syncsafe(len(body)) + body


def split_tag(data: bytes) -> tuple[int, list[bytes], bytes]:
    """(major version, raw frames, the bytes after the tag) of a file starting with an ID3v2 tag."""
    major = data[3]
    end = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    id_len, head = (3, 6) if major == 2 else (4, 10)
    frames, pos = [], 10
    while pos + head <= end and data[pos:pos + 1] not in (b"\x00", b""):
        if major == 2:
            size = int.from_bytes(data[pos + 3:pos + 6], "big")
        elif major == 3:
            size = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        else:
            b = data[pos + 4:pos + 8]
            size = (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]
        frames.append(data[pos:pos + head + size])
        pos += head + size
    return major, frames, data[end:]


def every_frame(major: int) -> list[bytes]:
    """One frame of every type mutagen knows (v2.2: its v2.2 types), artwork, ReplayGain and user frames,
    frames mutagen does not know (XSOP, NCON, kept raw), an old-form ORPHEUS_TAGS and a genre."""
    import mutagen.id3 as id3
    from mutagen.id3._util import ID3SaveConfig
    config = ID3SaveConfig(v2_version=3 if major < 4 else 4, v23_separator="/")
    enc = 3 if major == 4 else 1
    special = {"ASPI": {"S": 0, "L": 0, "N": 2, "b": 8, "Fi": [1, 2]}, "MCDI": {"data": b"\x01\x02\x03"},
               "APIC": {"encoding": enc, "mime": "image/png", "type": 3, "desc": "cover",
                        "data": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4},
               "PIC": {"encoding": 1, "mime": "PNG", "type": 3, "desc": "cover", "data": b"\x89PNG" + bytes(200)}}
    table = id3.Frames_2_2 if major == 2 else id3.Frames
    frames = []
    for name, cls in sorted(table.items()):
        if name in ("TXXX", "TXX", "TCON", "TCO"):
            continue  # added below, as a user's frames
        kwargs = special.get(name, {})
        if not kwargs and issubclass(cls, id3.TextFrame) and not issubclass(cls, (id3.TIPL, id3.TMCL, id3.IPLS,
                                                                                   id3.IPL)):
            kwargs = {"encoding": enc, "text": ["2001-02-03" if name.startswith("TD") or name in ("TOR", "TYE")
                                                else f"{name} value é"]}
        frames.append(pack_frame(major, name, cls(**kwargs)._writeData(config)))
    user, genre = ("TXX", "TCO") if major == 2 else ("TXXX", "TCON")
    for desc, values in (("replaygain_track_gain", ["-6.20 dB"]), ("replaygain_track_peak", ["0.988"]),
                         ("MusicBrainz Album Id", ["0b1a2c3d-0000-4000-8000-000000000001"]),
                         ("ORPHEUS_TAGS", ["blues", "soul"]), ("my own field", ["mine", "also mine"])):
        frames.append(pack_frame(major, user, b"\x01" + b"\x00\x00".join(s.encode("utf-16")
                                                                         for s in [desc, *values])))
    frames.append(pack_frame(major, genre, b"\x00Blues"))
    if major > 2:
        frames.append(pack_frame(major, "XSOP", b"\x00Beatles, The"))  # artist sort, a v2.3-era frame
        frames.append(pack_frame(major, "NCON", b"\x00\x01\x02\x03 MusicMatch data"))
    return frames


def ape_tag(items: dict[str, str]) -> bytes:
    """An APEv2 tag (header + items + footer) as taggers append it before ID3v1."""
    body = b"".join(struct.pack("<II", len(v.encode()), 0) + k.encode() + b"\x00" + v.encode()
                    for k, v in items.items())
    def block(flags: int) -> bytes:
        return b"APETAGEX" + struct.pack("<IIII", 2000, len(body) + 32, len(items), flags) + b"\x00" * 8
    return block(0xA0000000) + body + block(0x80000000)


def id3v1_tag(title: str, comment: str, genre: int) -> bytes:
    def field(text: str, n: int) -> bytes:
        return text.encode("latin-1")[:n].ljust(n, b"\x00")
    return (b"TAG" + field(title, 30) + field("Band", 30) + field("Album", 30) + b"1999" + field(comment, 28)
            + b"\x00\x07" + bytes((genre,)))


# ---------------------------------------------------------------- what the clients show

def exiftool_lines(path: Path) -> list[str]:
    """`exiftool -a -G1 -s` lines (every tag, duplicates included), without the file system's own."""
    out = subprocess.run(["exiftool", "-a", "-G1", "-s", "-charset", "utf8", str(path)], capture_output=True,
                         text=True, errors="replace", check=True).stdout
    return [" ".join(line.split()) for line in out.splitlines() if not line.startswith(("[System]", "[ExifTool]"))]


def exiftool_json(path: Path, *args: str) -> dict:
    out = subprocess.run(["exiftool", "-j", *args, str(path)], capture_output=True, text=True, errors="replace",
                         check=True).stdout
    return json.loads(out)[0]


def ffprobe_tags(path: Path) -> dict[str, str]:
    """The container's and the first stream's tags as ffprobe reports them (key -> value)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
                         capture_output=True, text=True, errors="replace", check=True).stdout
    probe = json.loads(out)
    tags = dict(probe["format"].get("tags", {}))
    for stream in probe.get("streams", [])[:1]:
        tags.update(stream.get("tags", {}))
    return tags


def mediainfo_general(path: Path) -> dict[str, str]:
    """mediainfo's General section as text lines (field -> value)."""
    out = subprocess.run(["mediainfo", str(path)], capture_output=True, text=True, errors="replace", check=True).stdout
    general = out.split("\n\n")[0]
    fields = {}
    for line in general.splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def without_named(lines) -> list:
    """Client output less the fields Orpheus names and the file's size, date and layout figures."""
    skip = NAMED + ("file size", "filesize", "modif", "access", "inode", "change", "id3size", "overall bit",
                    "overallbitrate", "stream size", "duration", "complete name", "complete_name")
    return sorted(x for x in lines if not any(word in str(x).lower().replace(" ", "") or word in str(x).lower()
                                              for word in skip))
