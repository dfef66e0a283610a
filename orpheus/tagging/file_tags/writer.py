"""Write predicted tags into audio files' own metadata: only the named fields change, nothing else.

Fields written (read back by `read_fields`), each holding one text value:

    ORPHEUS_TAGS   the selected tags, most probable first, joined by "; " (e.g. `rock; indie; 00s`)
    ORPHEUS_MODEL  the model, a digest of its files and the selection (e.g. `MSD_musicnn sha256:0123456789ab;
                   top 5`), so a rerun can tell a file already tagged the same way
    GENRE          the most probable selected tag, with `genre` (TCON in ID3)

    mp3   ID3v2 TXXX:ORPHEUS_TAGS, TXXX:ORPHEUS_MODEL, TCON, in the tag's own version (a new tag: v2.4)
    wav   the same frames in the `id3 ` chunk; with a RIFF INFO chunk, its IGNR too (field `INFO:IGNR`)
    ogg (Vorbis, Opus), flac   Vorbis comments ORPHEUS_TAGS, ORPHEUS_MODEL, GENRE

Why one joined value (measured with exiftool 12.57, ffprobe 5.1, mediainfo 23.04, mutagen, beets 2.14):
a TXXX frame holding several null-separated values shows only its first value in exiftool, ffprobe and
mediainfo; a Vorbis field repeated once per tag shows only its last value in exiftool's default output.
One value joined by "; " (the separator of Picard's multi-value display, beets' list fields and the RIFF
INFO keywords convention) shows whole in every one of them, in every format.

What stays (see `orpheus.tagging.file_tags.id3v2`, `orpheus.tagging.file_tags.riff_wave`, `orpheus.tagging.file_tags.rewrite`): ID3 tags are edited frame
by frame, so their version (2.2, 2.3, 2.4), every other frame, an ID3v1 tag and an APEv2 tag stay byte
for byte; in a wav every other chunk stays; FLAC and Ogg files are written with mutagen, which rewrites
only the comment block (FLAC) or the comment packet's pages (Ogg): the audio packets are copied, never
decoded or re-encoded. The file keeps its owner, group, mode, extended attributes and hard links, and is
never left half-written (`orpheus.tagging.file_tags.rewrite`).

Files that cannot be tagged are skipped with a reason, never raised: read-only files or folders, files
whose container mutagen does not recognise, tags this module will not rewrite, and write failures.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Sequence

from orpheus.tagging.file_tags import rewrite as file_rewrite

from orpheus.tagging.file_tags import id3v2

from orpheus.tagging.file_tags import riff_wave

log = logging.getLogger(__name__)

TAGS_FIELD = "ORPHEUS_TAGS"
MODEL_FIELD = "ORPHEUS_MODEL"
GENRE_FIELD = "GENRE"
INFO_GENRE_FIELD = "INFO:IGNR"
TAG_SEPARATOR = "; "

WRITTEN, UNCHANGED, WOULD_WRITE, SKIPPED = "written", "unchanged", "would write", "skipped"


def join_tags(tags: Sequence[str]) -> str:
    """The ORPHEUS_TAGS value of `tags` (a tag containing the separator gets ";" without the space)."""
    return TAG_SEPARATOR.join(t.replace(TAG_SEPARATOR, ";") for t in tags)


def split_tags(values: Sequence[str]) -> list[str]:
    """The tags in ORPHEUS_TAGS values (also reads the one-value-per-tag form older versions wrote)."""
    return [t for v in values for t in v.split(TAG_SEPARATOR) if t]


@dataclass(frozen=True)
class TagUpdate:
    """What to write into one file.

    tags:  the selected tags, most probable first (may be empty: then the ORPHEUS_TAGS field is removed).
    model: the ORPHEUS_MODEL value (model, digest, selection).
    genre: also set the standard genre field to this, when not None.
    """
    tags: tuple[str, ...]
    model: str
    genre: str | None = None

    def fields(self) -> dict[str, str | None]:
        """field -> its one new value (None: remove the field)."""
        # ORPHEUS_TAGS last: of several TXXX frames, exiftool shows the last one unless asked for duplicates
        wanted = {MODEL_FIELD: self.model, TAGS_FIELD: join_tags(self.tags) if self.tags else None}
        if self.genre is not None:
            wanted[GENRE_FIELD] = self.genre
        return wanted


@dataclass(frozen=True)
class WriteOutcome:
    """What `write_tags` did to one file: a status among WRITTEN, UNCHANGED, WOULD_WRITE, SKIPPED, a reason
    (for SKIPPED), the fields before and after (field -> values; only the fields Orpheus writes), and how
    the file was (or would be) written: `file_rewrite.REPLACE` or `IN_PLACE` with why."""
    file: str
    status: str
    reason: str = ""
    before: dict[str, list[str]] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)
    method: str = ""
    why_in_place: str = ""

    @property
    def changed(self) -> list[str]:
        return [key for key in sorted(set(self.before) | set(self.after))
                if self.before.get(key, []) != self.after.get(key, [])]

    def to_json(self) -> dict:
        """The record's `tag_write`: status, reason when skipped, the fields as they are (or would be) after
        the write, the previous values of the fields that change, and how the file was written."""
        out: dict = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.status != SKIPPED:
            out["fields"] = self.after
            out["previous"] = {key: self.before.get(key, []) for key in self.changed}
        if self.method:
            out["method"] = self.method + (f" ({self.why_in_place})" if self.why_in_place else "")
        return out

    def describe(self) -> str:
        """One line: `FILE: STATUS[: reason]`, with the field changes for WRITTEN and WOULD_WRITE."""
        if self.status == SKIPPED:
            return f"{self.file}: skipped: {self.reason}"
        if self.status == UNCHANGED:
            return f"{self.file}: unchanged"
        changes = "; ".join(f"{key} {self.before.get(key, [])} -> {self.after.get(key, [])}"
                            for key in self.changed)
        how = f" (in place: {self.why_in_place})" if self.method == file_rewrite.IN_PLACE else ""
        return f"{self.file}: {self.status}{how}: {changes}"


class SkipFile(Exception):
    """This file cannot be tagged; the message says why."""


# ---------------------------------------------------------------- containers

class ID3Container:
    """An mp3: an ID3v2 tag at the start (added when absent), edited frame by frame; the rest copied."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            header = f.read(id3v2.HEADER_SIZE)
            size = id3v2.tag_size(header)
            self.tag = id3v2.new_tag() if size is None else _parse(header + f.read(size - len(header)))
            self.file_size = os.fstat(f.fileno()).st_size
        self.old_size = 0 if size is None else size

    def fields(self) -> dict[str, list[str]]:
        return _id3_fields(self.tag)

    def wanted(self, fields: dict[str, str | None]) -> dict[str, str | None]:
        return fields

    def pieces(self, wanted: dict[str, str | None]) -> list[riff_wave.Piece]:
        return [_render(self.tag, wanted), (self.old_size, self.file_size - self.old_size)]


class WaveContainer:
    """A wav: the ID3v2 tag of its `id3 ` chunk (added when absent) and the genre of its INFO chunk."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            try:
                self.layout = riff_wave.read_layout(f)
            except riff_wave.RiffUnsupported as err:
                raise SkipFile(str(err)) from err
            self.id3_chunk = self.layout.find(*riff_wave.ID3_CHUNK_IDS)
            self.tag = id3v2.new_tag()
            if self.id3_chunk is not None:
                f.seek(self.id3_chunk.data_offset)
                data = f.read(self.id3_chunk.size)
                if id3v2.tag_size(data[:id3v2.HEADER_SIZE]) is None:
                    raise SkipFile("the wav's id3 chunk holds no ID3v2 tag")
                self.tag = _parse(data)
            self.info_chunk = self.layout.info_list(f)
            self.info_data = b""
            if self.info_chunk is not None:
                f.seek(self.info_chunk.data_offset)
                self.info_data = f.read(self.info_chunk.size)

    def fields(self) -> dict[str, list[str]]:
        out = _id3_fields(self.tag)
        genres = riff_wave.info_genres(self.info_data) if self.info_chunk is not None else []
        if genres:
            out[INFO_GENRE_FIELD] = genres
        return out

    def wanted(self, fields: dict[str, str | None]) -> dict[str, str | None]:
        if self.info_chunk is not None and fields.get(GENRE_FIELD) is not None:
            return {**fields, INFO_GENRE_FIELD: fields[GENRE_FIELD]}  # ffprobe reads INFO, not ID3, here
        return fields

    def pieces(self, wanted: dict[str, str | None]) -> list[riff_wave.Piece]:
        id3_fields = {k: v for k, v in wanted.items() if k != INFO_GENRE_FIELD}
        id3_data = _render(self.tag, id3_fields)
        replaced: dict[int, bytes] = {}
        appended = b""
        if self.id3_chunk is None:
            appended = riff_wave.chunk_bytes(b"id3 ", id3_data)
        else:
            replaced[self.id3_chunk.offset] = riff_wave.chunk_bytes(self.id3_chunk.chunk_id, id3_data)
        if wanted.get(INFO_GENRE_FIELD) is not None:
            replaced[self.info_chunk.offset] = riff_wave.chunk_bytes(
                b"LIST", riff_wave.info_with_genre(self.info_data, wanted[INFO_GENRE_FIELD]))
        return riff_wave.rebuilt(self.layout, replaced, appended)


class VorbisContainer:
    """Ogg Vorbis, Ogg Opus, FLAC: Vorbis comments, written by mutagen on the copy."""

    def __init__(self, path: str, audio) -> None:
        self.path = path
        self.audio = audio

    def fields(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.audio.tags is not None:
            for name in (TAGS_FIELD, MODEL_FIELD, GENRE_FIELD):
                values = self.audio.tags.get(name)
                if values:
                    out[name] = [str(v) for v in values]
        return out

    def wanted(self, fields: dict[str, str | None]) -> dict[str, str | None]:
        return fields

    def write_copy(self, wanted: dict[str, str | None], tmp: str) -> None:
        import mutagen
        shutil.copyfile(self.path, tmp)
        audio = mutagen.File(tmp)
        if audio.tags is None:
            audio.add_tags()
        for name, value in wanted.items():
            if value is not None:
                audio.tags[name] = [value]
            elif name in audio.tags:
                del audio.tags[name]
        audio.save()


def _parse(data: bytes) -> id3v2.ID3Tag:
    try:
        return id3v2.parse_tag(data)
    except id3v2.ID3Unsupported as err:
        raise SkipFile(str(err)) from err


def _render(tag: id3v2.ID3Tag, wanted: dict[str, str | None]) -> bytes:
    try:
        return id3v2.render(tag, {_id3_key(name): value for name, value in wanted.items()})
    except id3v2.ID3Unsupported as err:
        raise SkipFile(str(err)) from err


def _id3_key(name: str) -> id3v2.FieldKey:
    return ("genre", None) if name == GENRE_FIELD else ("user", name)


def _id3_fields(tag: id3v2.ID3Tag) -> dict[str, list[str]]:
    names = (TAGS_FIELD, MODEL_FIELD, GENRE_FIELD)
    found = id3v2.read_values(tag, {_id3_key(n) for n in names})
    return {name: found[_id3_key(name)] for name in names if _id3_key(name) in found}


def open_container(path: str | os.PathLike):
    """The container of `path` (mp3, wav, Ogg Vorbis/Opus, FLAC) with its tags read.

    Raises:
        SkipFile: mutagen does not recognise the file, or Orpheus does not write its kind or its tag.
        OSError: the file cannot be read.
    """
    import mutagen
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE
    try:
        audio = mutagen.File(str(path))
    except mutagen.MutagenError as err:
        raise SkipFile(f"unreadable tag header ({err})") from err
    if audio is None:
        raise SkipFile("no tag header mutagen recognises (not an mp3/ogg/opus/flac/wav stream)")
    if isinstance(audio, MP3):
        return ID3Container(str(path))
    if isinstance(audio, WAVE):
        return WaveContainer(str(path))
    if isinstance(audio, (OggVorbis, OggOpus, FLAC)):
        return VorbisContainer(str(path), audio)
    raise SkipFile(f"a {type(audio).__name__} file: Orpheus writes tags into mp3, wav, ogg, opus and flac")


def read_fields(path: str | os.PathLike) -> dict[str, list[str]]:
    """The Orpheus fields of a file (field -> values as stored); {} when it has none or cannot be read."""
    try:
        return open_container(os.path.realpath(path)).fields()
    except (SkipFile, OSError):
        return {}


# ---------------------------------------------------------------- writing

def write_tags(path: str | os.PathLike, update: TagUpdate, *, dry_run: bool = False) -> WriteOutcome:
    """Write `update` into `path` (a link: into its target); never raises for a bad file.

    With `dry_run`, changes nothing and reports what the real run would do, skips included (only a write
    failure, such as a full disk, cannot be foreseen).
    """
    import mutagen
    name, target = str(path), os.path.realpath(path)
    try:
        container = open_container(target)
        before = container.fields()
    except SkipFile as err:
        return WriteOutcome(name, SKIPPED, str(err))
    except OSError as err:
        return WriteOutcome(name, SKIPPED, f"cannot read ({err.strerror or err})")
    wanted = container.wanted(update.fields())
    after = {**before, **{k: [v] for k, v in wanted.items() if v is not None}}
    for k in [k for k, v in wanted.items() if v is None]:
        after.pop(k, None)
    if after == before:
        return WriteOutcome(name, UNCHANGED, before=before, after=after)
    try:
        reason = file_rewrite.refusal(target)
        if reason is None and hasattr(container, "pieces"):
            pieces = container.pieces(wanted)  # an ID3 tag or RIFF layout that cannot be written says so here
        method, why = file_rewrite.choose_method(target)
    except SkipFile as err:
        reason = str(err)
    except OSError as err:
        reason = f"cannot read ({err.strerror or err})"
    if reason:
        return WriteOutcome(name, SKIPPED, reason, before, after)
    if dry_run:
        return WriteOutcome(name, WOULD_WRITE, before=before, after=after, method=method, why_in_place=why)

    def build(tmp: str) -> None:
        if hasattr(container, "pieces"):
            write_pieces(target, pieces, tmp)
        else:
            container.write_copy(wanted, tmp)

    try:
        method, why = file_rewrite.rewrite(target, build, method, why)
    except file_rewrite.RewriteError as err:
        return WriteOutcome(name, SKIPPED, str(err), before, after)
    except (OSError, mutagen.MutagenError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        return WriteOutcome(name, SKIPPED, f"could not write the tagged copy ({reason}); the file is unchanged",
                            before, after)
    return WriteOutcome(name, WRITTEN, before=before, after=after, method=method, why_in_place=why)


def write_pieces(source: str, pieces: Sequence[riff_wave.Piece], out: str) -> None:
    """Write a new file at `out` from `pieces`: new bytes, or (offset, length) ranges copied from `source`."""
    with open(source, "rb") as src, open(out, "wb") as dst:
        for piece in pieces:
            if isinstance(piece, bytes):
                dst.write(piece)
                continue
            offset, length = piece
            src.seek(offset)
            while length > 0:
                block = src.read(min(length, 1 << 20))
                if not block:
                    raise OSError(f"{source} changed size while it was being tagged")
                dst.write(block)
                length -= len(block)


def clean_stale_temporaries(files: Sequence[str | os.PathLike], *, dry_run: bool = False) -> list[str]:
    """`file_rewrite.clean_stale` on each folder that holds one of `files` (links resolved), once each."""
    lines = []
    for folder in sorted({os.path.dirname(os.path.realpath(f)) for f in files}):
        lines += file_rewrite.clean_stale(folder, dry_run=dry_run)
    return lines


def already_tagged(fields: dict[str, list[str]], model: str, *, genre: bool) -> bool:
    """Whether a file's fields show it tagged by `model` (the ORPHEUS_MODEL value), in the current one-value
    form, with the genre set (in every place the file keeps one) when asked."""
    if fields.get(MODEL_FIELD) != [model] or len(fields.get(TAGS_FIELD, [])) > 1:
        return False
    if genre:
        tags = split_tags(fields.get(TAGS_FIELD, []))
        return not tags or (fields.get(GENRE_FIELD) == tags[:1]
                            and fields.get(INFO_GENRE_FIELD, tags[:1]) == tags[:1])
    return True


def update_for(tags: Sequence[str], model: str, *, genre: bool) -> TagUpdate:
    """The update for selected `tags` (most probable first); with `genre`, the genre is the first tag."""
    tags = tuple(tags)
    return TagUpdate(tags=tags, model=model, genre=(tags[0] if tags else None) if genre else None)


def summary_line(outcomes: Sequence[WriteOutcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in (WRITTEN, WOULD_WRITE, UNCHANGED, SKIPPED)}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no file"
