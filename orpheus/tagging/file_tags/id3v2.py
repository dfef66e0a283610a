"""ID3v2 tags edited frame by frame: the named text frames replaced, every other byte of the tag kept.

mutagen decodes and re-encodes a whole tag when it saves: it upgrades ID3v2.3 to v2.4 and drops the
frames v2.4 has no place for (RVAD, EQUA, TRDA, TSIZ) and the frames it does not know (XSOP, NCON, ...),
and it rewrites an ID3v1 tag from the v2 frames. Orpheus therefore parses the tag into raw frames
itself, replaces only the frames it names (TXXX:ORPHEUS_TAGS, TXXX:ORPHEUS_MODEL, TCON), writes them in
the tag's own version (2.2, 2.3 or 2.4) and keeps every other frame, the extended header and the
order of the frames byte for byte. Whatever follows the tag (the audio, an APEv2 tag, an ID3v1 tag) is
not part of it.

Tags this module will not rewrite (`ID3Unsupported`, so the file is skipped with the reason):
whole-tag unsynchronisation (a 1990s workaround no current tagger writes), a CRC over the frames in the
extended header (it would no longer match), ID3v2.2 compression, and frame sizes that do not parse.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

HEADER_SIZE = 10
PADDING = 1024  # bytes of padding added when a tag must grow, as mutagen and most taggers do

# frame header: id length, header length, whether the size is sync-safe (v2.4) -- per major version
_FRAME_LAYOUT = {2: (3, 6, False), 3: (4, 10, False), 4: (4, 10, True)}
# text frame ids of the fields Orpheus names, per major version
USER_TEXT = {2: "TXX", 3: "TXXX", 4: "TXXX"}
GENRE = {2: "TCO", 3: "TCON", 4: "TCON"}
_TERMINATORS = {0: b"\x00", 1: b"\x00\x00", 2: b"\x00\x00", 3: b"\x00"}
_CODECS = {0: "latin-1", 1: "utf-16", 2: "utf-16-be", 3: "utf-8"}


class ID3Unsupported(Exception):
    """A tag this module reads but will not rewrite; the message says why."""


@dataclass(frozen=True)
class RawFrame:
    """One frame exactly as in the file (header included)."""
    frame_id: str
    flags: int
    raw: bytes
    header_size: int

    @property
    def payload(self) -> bytes:
        return self.raw[self.header_size:]


@dataclass
class ID3Tag:
    """A parsed ID3v2 tag: its header fields, extended header and footer kept raw, frames raw, then the tail
    (padding, or bytes after the last frame that are not a frame)."""
    major: int
    revision: int
    flags: int
    extended: bytes
    frames: list[RawFrame] = field(default_factory=list)
    tail: bytes = b""
    size: int = 0  # bytes the whole tag takes in the file (header, body, footer)

    @property
    def has_footer(self) -> bool:
        return self.major == 4 and bool(self.flags & 0x10)


def _syncsafe(data: bytes) -> int:
    b = data
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def _to_syncsafe(n: int) -> bytes:
    if n >= 1 << 28:
        raise ID3Unsupported("the tag would exceed ID3v2's 256 MB limit")
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def tag_size(header: bytes) -> int | None:
    """Bytes of the whole tag that starts with this 10-byte `header` (footer included), or None if it is no
    ID3v2 header."""
    if len(header) < HEADER_SIZE or header[:3] != b"ID3" or header[3] not in _FRAME_LAYOUT or any(
            b & 0x80 for b in header[6:10]):
        return None
    footer = HEADER_SIZE if header[3] == 4 and header[5] & 0x10 else 0
    return HEADER_SIZE + _syncsafe(header[6:10]) + footer


def parse_tag(data: bytes) -> ID3Tag:
    """Parse a whole tag (`data` = the `tag_size` bytes from its header on).

    Raises:
        ID3Unsupported: see the module docstring.
    """
    major, revision, flags = data[3], data[4], data[5]
    size = tag_size(data[:HEADER_SIZE])
    if size is None or len(data) < size:
        raise ID3Unsupported("the ID3v2 tag is cut short")
    if flags & 0x80:
        raise ID3Unsupported(f"unsynchronised ID3v2.{major} tag (rewrite it once with your tagger)")
    if major == 2 and flags & 0x40:
        raise ID3Unsupported("compressed ID3v2.2 tag")
    body_end = HEADER_SIZE + _syncsafe(data[6:10])
    pos, extended = HEADER_SIZE, b""
    if major >= 3 and flags & 0x40:
        if major == 3:
            ext_len = 4 + struct.unpack(">I", data[pos:pos + 4])[0]
            if struct.unpack(">H", data[pos + 4:pos + 6])[0] & 0x8000:
                raise ID3Unsupported("the ID3v2.3 extended header carries a CRC of the frames")
        else:
            ext_len = _syncsafe(data[pos:pos + 4])
            if len(data) > pos + 5 and data[pos + 5] & 0x20:
                raise ID3Unsupported("the ID3v2.4 extended header carries a CRC of the frames")
        if ext_len < 6 or pos + ext_len > body_end:
            raise ID3Unsupported("malformed ID3v2 extended header")
        extended = data[pos:pos + ext_len]
        pos += ext_len
    frames, tail = _walk_frames(data[pos:body_end], major, syncsafe=_FRAME_LAYOUT[major][2])
    if frames is None and major == 4:
        if _walk_frames(data[pos:body_end], major, syncsafe=False)[0] is not None:
            raise ID3Unsupported("ID3v2.4 frame sizes are not sync-safe (an old iTunes bug; rewrite the tag once "
                                 "with your tagger)")
    if frames is None:
        raise ID3Unsupported("an ID3v2 frame runs past the end of its tag")
    return ID3Tag(major, revision, flags, extended, frames, tail, size)


def _walk_frames(body: bytes, major: int, *, syncsafe: bool) -> tuple[list[RawFrame] | None, bytes]:
    """Frames of `body` up to the padding (or the first bytes that are no frame): (frames, tail), or
    (None, b"") when a frame's size runs past the body."""
    id_len, header_len, _ = _FRAME_LAYOUT[major]
    frames, pos = [], 0
    while pos + header_len <= len(body):
        frame_id = body[pos:pos + id_len]
        if not all(48 <= c <= 57 or 65 <= c <= 90 for c in frame_id):
            break  # padding (zeros) or bytes that are no frame: kept as the tail
        if major == 2:
            size = int.from_bytes(body[pos + 3:pos + 6], "big")
            frame_flags = 0
        else:
            size_bytes = body[pos + 4:pos + 8]
            size = _syncsafe(size_bytes) if syncsafe else struct.unpack(">I", size_bytes)[0]
            frame_flags = struct.unpack(">H", body[pos + 8:pos + 10])[0]
        end = pos + header_len + size
        if end > len(body) or (syncsafe and any(b & 0x80 for b in body[pos + 4:pos + 8])):
            return None, b""
        frames.append(RawFrame(frame_id.decode("ascii"), frame_flags, body[pos:end], header_len))
        pos = end
    return frames, body[pos:]


# ---------------------------------------------------------------- text frames

def frame_data(frame: RawFrame, major: int) -> bytes | None:
    """The frame's content with its format flags undone (grouping byte, data length, unsynchronisation,
    compression), or None for an encrypted frame (which is never one of ours)."""
    data, flags = frame.payload, frame.flags
    if major == 4:
        if flags & 0x0004:
            return None
        if flags & 0x0040:
            data = data[1:]
        if flags & 0x0001:
            data = data[4:]
        if flags & 0x0002:
            data = data.replace(b"\xff\x00", b"\xff")
        if flags & 0x0008:
            data = _inflate(data)
    elif major == 3:
        if flags & 0x0040:
            return None
        if flags & 0x0080:
            data = _inflate(data[4:])
        if flags & 0x0020:
            data = data[1:]
    return data


def _inflate(data: bytes) -> bytes | None:
    try:
        return zlib.decompress(data)
    except zlib.error:
        return None


def _split_strings(data: bytes, encoding: int) -> list[str]:
    term = _TERMINATORS.get(encoding)
    if term is None:
        return []
    parts, pos = [], 0
    while pos <= len(data):
        end = data.find(term, pos)
        while end != -1 and len(term) == 2 and (end - pos) % 2:
            end = data.find(term, end + 1)  # UTF-16 terminators sit on code-unit boundaries
        chunk = data[pos:] if end == -1 else data[pos:end]
        parts.append(chunk.decode(_CODECS[encoding], errors="replace"))
        if end == -1:
            break
        pos = end + len(term)
    if parts and parts[-1] == "":
        parts.pop()  # a terminator after the last string
    return parts


def text_values(frame: RawFrame, major: int) -> tuple[str, list[str]] | None:
    """(description, values) of a TXXX frame, ("", values) of another text frame; None when unreadable."""
    data = frame_data(frame, major)
    if not data:
        return None
    strings = _split_strings(data[1:], data[0])
    if frame.frame_id == USER_TEXT[major]:
        return (strings[0], strings[1:]) if strings else None
    return "", strings


def encode_text_frame(frame_id: str, major: int, value: str, desc: str | None = None) -> bytes:
    """A text frame (TXXX when `desc` is given) holding one value, in the version's own layout: UTF-8 in
    v2.4; Latin-1 where it suffices, else UTF-16 with a byte-order mark, in v2.2 and v2.3."""
    strings = [value] if desc is None else [desc, value]
    if major == 4:
        payload = b"\x03" + b"\x00".join(s.encode("utf-8") for s in strings)
    else:
        try:
            payload = b"\x00" + b"\x00".join(s.encode("latin-1") for s in strings)
        except UnicodeEncodeError:
            payload = b"\x01" + b"\x00\x00".join(s.encode("utf-16") for s in strings)
    if major == 2:
        return frame_id.encode("ascii") + len(payload).to_bytes(3, "big") + payload
    size = _to_syncsafe(len(payload)) if major == 4 else struct.pack(">I", len(payload))
    return frame_id.encode("ascii") + size + b"\x00\x00" + payload


# ---------------------------------------------------------------- editing

FieldKey = tuple[str, str | None]  # ("user", DESC) for TXXX:DESC, ("genre", None) for TCON


def frame_key(frame: RawFrame, major: int) -> tuple[FieldKey | None, list[str]]:
    """Which named field a frame holds (None for any other frame), and its values."""
    if frame.frame_id == USER_TEXT[major]:
        decoded = text_values(frame, major)
        if decoded is not None:
            return ("user", decoded[0].upper()), decoded[1]
    elif frame.frame_id == GENRE[major]:
        decoded = text_values(frame, major)
        return ("genre", None), decoded[1] if decoded else []
    return None, []


def read_values(tag: ID3Tag, keys: set[FieldKey]) -> dict[FieldKey, list[str]]:
    """The values of the named fields present in `tag` (several frames of one field: values concatenated)."""
    out: dict[FieldKey, list[str]] = {}
    for frame in tag.frames:
        key, values = frame_key(frame, tag.major)
        if key in keys and values:
            out.setdefault(key, []).extend(values)
    return out


def render(tag: ID3Tag, wanted: dict[FieldKey, str | None]) -> bytes:
    """The tag with each field of `wanted` set to its one value (None: removed), every other frame kept.

    The named frames are removed where they are and the new ones follow the last frame, in `wanted`'s
    order (exiftool shows only the last of several TXXX frames unless asked for duplicates, so the field
    that matters most goes last). The tag keeps its size when the frames fit into it (the padding shrinks),
    else it grows with `PADDING` bytes of padding (none when it has a footer, as v2.4 requires).
    """
    frames = [frame.raw for frame in tag.frames if frame_key(frame, tag.major)[0] not in wanted]
    frames += [_new_frame(key, value, tag.major) for key, value in wanted.items() if value is not None]
    body = b"".join(frames)
    footer = HEADER_SIZE if tag.has_footer else 0
    room = tag.size - HEADER_SIZE - footer - len(tag.extended)
    if tag.tail.strip(b"\x00"):  # bytes after the frames that are not padding: kept after the frames
        body += tag.tail
    elif tag.has_footer:
        pass
    elif len(body) <= room:
        body += b"\x00" * (room - len(body))
    else:
        body += b"\x00" * PADDING
    extended = tag.extended
    if tag.major == 3 and extended:  # the v2.3 extended header states the padding's size
        padding = len(body) - len(body.rstrip(b"\x00"))
        extended = extended[:6] + struct.pack(">I", padding) + extended[10:]
    size = _to_syncsafe(len(extended) + len(body))
    header = bytes((tag.major, tag.revision, tag.flags)) + size
    return b"ID3" + header + extended + body + (b"3DI" + header if tag.has_footer else b"")


def _new_frame(key: FieldKey, value: str, major: int) -> bytes:
    kind, desc = key
    if kind == "genre":
        return encode_text_frame(GENRE[major], major, value)
    return encode_text_frame(USER_TEXT[major], major, value, desc=desc)


def new_tag() -> ID3Tag:
    """An empty ID3v2.4 tag (for a file that has none), with no room: `render` adds the padding."""
    return ID3Tag(major=4, revision=0, flags=0, extended=b"", frames=[], tail=b"", size=HEADER_SIZE)
