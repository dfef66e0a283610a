"""The chunks of a RIFF WAVE file, and new versions of two of them: the `id3 ` chunk and the INFO genre.

A wav file carries its tags in two places: an ID3v2 tag in an `id3 ` (or `ID3 `) chunk, which mutagen,
beets, exiftool and mediainfo read, and a `LIST` chunk of type `INFO` (IART, INAM, IGNR, ...), which
Windows and many audio editors write. ffmpeg (and so ffprobe) reads only the INFO chunk of a file that has
one ("Discarding ID3 tags because more suitable tags were found"), so a wav with INFO gets its genre in
both places or the tools disagree.

Every other chunk (fmt, data, bext, cue, ...) and any bytes after the RIFF's end are copied from the
original unchanged; a new `id3 ` chunk goes after the last one. Chunk data is padded to an even size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

Piece = bytes | tuple[int, int]  # new bytes, or (offset, length) of bytes copied from the original file


class RiffUnsupported(Exception):
    """A wav file whose layout this module will not rewrite; the message says why."""


@dataclass(frozen=True)
class Chunk:
    chunk_id: bytes
    offset: int  # of the chunk header
    size: int  # of the data, as the header states
    span: int  # bytes up to the next chunk (header, data, pad byte)

    @property
    def data_offset(self) -> int:
        return self.offset + 8


@dataclass(frozen=True)
class WaveLayout:
    chunks: list[Chunk]
    riff_end: int  # offset after the RIFF's last byte
    file_size: int

    def find(self, *ids: bytes) -> Chunk | None:
        return next((c for c in self.chunks if c.chunk_id in ids), None)

    def info_list(self, f: BinaryIO) -> Chunk | None:
        """The top-level LIST chunk of type INFO, if any."""
        for chunk in self.chunks:
            if chunk.chunk_id == b"LIST" and chunk.size >= 4:
                f.seek(chunk.data_offset)
                if f.read(4) == b"INFO":
                    return chunk
        return None


ID3_CHUNK_IDS = (b"id3 ", b"ID3 ")


def read_layout(f: BinaryIO) -> WaveLayout:
    """The top-level chunks of a RIFF WAVE file.

    Raises:
        RiffUnsupported: not RIFF WAVE (e.g. RF64), or chunk sizes that run past the file.
    """
    f.seek(0, 2)
    file_size = f.tell()
    f.seek(0)
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise RiffUnsupported("not a RIFF WAVE file (RF64 and other variants are not rewritten)")
    riff_end = 8 + struct.unpack("<I", header[4:8])[0]
    if riff_end > file_size:
        raise RiffUnsupported(f"the RIFF header announces {riff_end} bytes but the file has {file_size} "
                              "(cut short?)")
    starts, pos = [], 12
    while pos + 8 <= riff_end:
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        if pos + 8 + size > riff_end:
            raise RiffUnsupported(f"chunk {chunk_id!r} runs past the end of the RIFF")
        starts.append((chunk_id, pos, size))
        pos += 8 + size + (size & 1)
    ends = [start for _, start, _ in starts[1:]] + [riff_end]
    chunks = [Chunk(cid, start, size, end - start) for (cid, start, size), end in zip(starts, ends)]
    return WaveLayout(chunks, riff_end, file_size)


def chunk_bytes(chunk_id: bytes, data: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def info_with_genre(info_data: bytes, genre: str) -> bytes:
    """The data of a LIST INFO chunk (b"INFO" + subchunks) with IGNR set to `genre` (replacing the first IGNR,
    dropping others; appended when absent); the other subchunks byte for byte."""
    value = genre.encode("latin-1", errors="replace") if genre.isascii() else genre.encode("utf-8")
    ignr = chunk_bytes(b"IGNR", value + b"\x00")
    out, pos, placed = [b"INFO"], 4, False
    while pos + 8 <= len(info_data):
        sub_id, size = struct.unpack("<4sI", info_data[pos:pos + 8])
        end = min(len(info_data), pos + 8 + size + (size & 1))
        if sub_id == b"IGNR":
            if not placed:
                out.append(ignr)
                placed = True
        else:
            out.append(info_data[pos:end])
        pos = end
    out.append(info_data[pos:])  # a trailing odd byte, if any
    if not placed:
        out.append(ignr)
    return b"".join(out)


def info_genres(info_data: bytes) -> list[str]:
    """The IGNR values of a LIST INFO chunk's data."""
    out, pos = [], 4
    while pos + 8 <= len(info_data):
        sub_id, size = struct.unpack("<4sI", info_data[pos:pos + 8])
        if sub_id == b"IGNR":
            raw = info_data[pos + 8:pos + 8 + size].split(b"\x00", 1)[0]
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("latin-1"))
        pos += 8 + size + (size & 1)
    return [g for g in out if g]


def rebuilt(layout: WaveLayout, replaced: dict[int, bytes], appended: bytes = b"") -> list[Piece]:
    """The new file as pieces: each chunk copied, or replaced by whole new chunk bytes (`replaced`: chunk
    offset -> bytes), `appended` after the last chunk, the RIFF size updated, bytes after the RIFF kept."""
    pieces: list[Piece] = []
    length = 4
    for chunk in layout.chunks:
        if chunk.offset in replaced:
            pieces.append(replaced[chunk.offset])
            length += len(replaced[chunk.offset])
        else:
            pieces.append((chunk.offset, chunk.span))
            length += chunk.span
    if appended:
        last = layout.chunks[-1] if layout.chunks else None
        if last is not None and last.span % 2:  # an odd last chunk without its pad byte: realign
            appended = b"\x00" + appended
        pieces.append(appended)
        length += len(appended)
    if layout.file_size > layout.riff_end:
        pieces.append((layout.riff_end, layout.file_size - layout.riff_end))
    return [b"RIFF" + struct.pack("<I", length) + b"WAVE", *pieces]
