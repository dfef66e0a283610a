"""Write predicted tags into audio files' own metadata with mutagen, atomically, never touching the audio.

Fields written (read back by `read_fields`):

    mp3                  ID3v2.4  TXXX:ORPHEUS_TAGS (one text value per tag, most probable first),
                                  TXXX:ORPHEUS_MODEL, and TCON (genre) with `genre`
    ogg (Vorbis, Opus,   Vorbis comments ORPHEUS_TAGS (one value per tag), ORPHEUS_MODEL, and GENRE
    FLAC in Ogg), flac
    wav                  an ID3v2.4 "id3 " chunk with the same frames as mp3

An existing ID3v2.3 tag is saved as v2.4 (mutagen upgrades its frames; v2.3 cannot hold several
values in one TXXX frame); an ID3v1 tag at the end of an mp3 is left in place. ORPHEUS_MODEL names
the model, a digest of its files and the tag selection (e.g. `MSD_musicnn sha256:0123456789ab; top 5`),
so a rerun can tell a file already tagged the same way.

Safety: the file is copied to a temporary file in its own folder, the copy is tagged and fsync'ed,
then renamed over the original (`os.replace`), so a kill or a full disk leaves either the old file or
the new one, never a half-written one (a kill between copy and rename can leave a hidden
`.NAME.*.orpheus-tmp` beside it: never listed as audio, safe to delete). mutagen rewrites only
metadata (ID3 frames, Vorbis comment packets and the Ogg pages that carry them, FLAC metadata blocks,
RIFF chunks): the audio stream is copied byte for byte, never decoded or re-encoded. The new file
keeps the original's permission bits; its modification time is the time of writing (its content
changed, so backup and sync tools must see it). A symbolic link is followed and its target replaced;
a hard-linked file gets a new inode, so its other names keep the old tags. Owner and group are those
of the user running Orpheus.

Files that cannot be tagged are skipped with a reason, never raised: read-only files or folders, files
whose container mutagen does not recognise (no tag header it can read or add), and write failures
(e.g. a full disk).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

log = logging.getLogger(__name__)

TAGS_FIELD = "ORPHEUS_TAGS"
MODEL_FIELD = "ORPHEUS_MODEL"
GENRE_FIELD = "GENRE"

WRITTEN, UNCHANGED, WOULD_WRITE, SKIPPED = "written", "unchanged", "would write", "skipped"


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

    def fields(self) -> dict[str, list[str]]:
        wanted = {TAGS_FIELD: list(self.tags), MODEL_FIELD: [self.model]}
        if self.genre is not None:
            wanted[GENRE_FIELD] = [self.genre]
        return wanted


@dataclass(frozen=True)
class WriteOutcome:
    """What `write_tags` did to one file: a status among WRITTEN, UNCHANGED, WOULD_WRITE, SKIPPED, a reason
    (for SKIPPED), and the fields before and after (field -> values; only the fields Orpheus writes)."""
    file: str
    status: str
    reason: str = ""
    before: dict[str, list[str]] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out

    def describe(self) -> str:
        """One line: `FILE: STATUS[: reason]`, with the field changes for WRITTEN and WOULD_WRITE."""
        if self.status == SKIPPED:
            return f"{self.file}: skipped: {self.reason}"
        if self.status == UNCHANGED:
            return f"{self.file}: unchanged"
        changes = "; ".join(f"{key} {self.before.get(key, [])} -> {self.after.get(key, [])}"
                            for key in sorted(set(self.before) | set(self.after))
                            if self.before.get(key, []) != self.after.get(key, []))
        return f"{self.file}: {self.status}: {changes}"


class SkipFile(Exception):
    """This file cannot be tagged; the message says why."""


# ---------------------------------------------------------------- containers

def open_tagged(path: str | os.PathLike):
    """The mutagen file object of `path`, with a tag block (added in memory when it has none).

    Raises:
        SkipFile: mutagen does not recognise the container, or it cannot hold tags.
    """
    import mutagen
    try:
        audio = mutagen.File(str(path))
    except mutagen.MutagenError as err:
        raise SkipFile(f"unreadable tag header ({err})") from err
    if audio is None:
        raise SkipFile("no tag header mutagen recognises (not an mp3/ogg/opus/flac/wav stream)")
    if audio.tags is None:
        try:
            audio.add_tags()
        except (mutagen.MutagenError, NotImplementedError) as err:
            raise SkipFile(f"this {type(audio).__name__} file cannot hold tags ({err})") from err
    return audio


def _is_id3(audio) -> bool:
    from mutagen.id3 import ID3
    return isinstance(audio.tags, ID3)


def current_fields(audio) -> dict[str, list[str]]:
    """The Orpheus fields (and genre) in a mutagen file object: field -> values, absent fields left out."""
    out: dict[str, list[str]] = {}
    if _is_id3(audio):
        for name, key in ((TAGS_FIELD, f"TXXX:{TAGS_FIELD}"), (MODEL_FIELD, f"TXXX:{MODEL_FIELD}"),
                          (GENRE_FIELD, "TCON")):
            frame = audio.tags.get(key)
            if frame is not None and list(frame.text):
                out[name] = [str(t) for t in frame.text]
        return out
    for name in (TAGS_FIELD, MODEL_FIELD, GENRE_FIELD):
        values = audio.tags.get(name)
        if values:
            out[name] = [str(v) for v in values]
    return out


def _apply(audio, wanted: dict[str, list[str]]) -> None:
    if _is_id3(audio):
        from mutagen.id3 import TCON, TXXX
        for name, values in wanted.items():
            key = "TCON" if name == GENRE_FIELD else f"TXXX:{name}"
            audio.tags.delall(key)
            if values:
                audio.tags.add(TCON(encoding=3, text=values) if name == GENRE_FIELD
                               else TXXX(encoding=3, desc=name, text=values))
        return
    for name, values in wanted.items():
        if values:
            audio.tags[name] = values
        elif name in audio.tags:
            del audio.tags[name]


def _save(audio, path: str) -> None:
    if _is_id3(audio):
        audio.save(path, v2_version=4)
    else:
        audio.save(path)


def read_fields(path: str | os.PathLike) -> dict[str, list[str]]:
    """The Orpheus fields of a file (field -> values); {} when it has none or cannot be read."""
    try:
        return current_fields(open_tagged(path))
    except SkipFile:
        return {}


# ---------------------------------------------------------------- writing

def write_tags(path: str | os.PathLike, update: TagUpdate, *, dry_run: bool = False) -> WriteOutcome:
    """Write `update` into `path` atomically (see the module docstring); never raises for a bad file."""
    import mutagen
    name = str(path)
    target = os.path.realpath(path)
    try:
        before = current_fields(open_tagged(target))
    except SkipFile as err:
        return WriteOutcome(name, SKIPPED, str(err))
    except OSError as err:
        return WriteOutcome(name, SKIPPED, f"cannot read ({err.strerror or err})")
    wanted = update.fields()
    after = {**before, **{k: v for k, v in wanted.items() if v}}
    for k, v in wanted.items():
        if not v:
            after.pop(k, None)
    if after == before:
        return WriteOutcome(name, UNCHANGED, before=before, after=after)
    if dry_run:
        return WriteOutcome(name, WOULD_WRITE, before=before, after=after)
    if not _writable(target):
        return WriteOutcome(name, SKIPPED, "read-only file; make it writable (chmod u+w) to tag it", before, after)
    folder = os.path.dirname(target)
    if not _writable(folder):
        return WriteOutcome(name, SKIPPED, f"read-only folder {folder}: the tagged copy cannot be written beside it",
                            before, after)
    try:
        _replace_with_tagged_copy(target, wanted)
    except SkipFile as err:
        return WriteOutcome(name, SKIPPED, str(err), before, after)
    except (OSError, mutagen.MutagenError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        return WriteOutcome(name, SKIPPED, f"could not write the tagged copy ({reason}); the file is unchanged",
                            before, after)
    return WriteOutcome(name, WRITTEN, before=before, after=after)


def _writable(path: str) -> bool:
    """Writable by this user and marked writable by its owner: a read-only mark is respected even by root."""
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & stat.S_IWUSR)


def _replace_with_tagged_copy(target: str, wanted: dict[str, list[str]]) -> None:
    """Copy `target` beside itself, tag the copy, fsync it and rename it over `target`."""
    original = os.stat(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".orpheus-tmp",
                               dir=os.path.dirname(target))
    os.close(fd)
    try:
        shutil.copyfile(target, tmp)
        shutil.copymode(target, tmp)
        audio = open_tagged(tmp)
        _apply(audio, wanted)
        _save(audio, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        now = os.stat(target)
        if (now.st_size, now.st_mtime_ns) != (original.st_size, original.st_mtime_ns):
            raise SkipFile("the file changed while it was being tagged; rerun to tag it")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(os.path.dirname(target))


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def already_tagged(fields: dict[str, list[str]], model: str, *, genre: bool) -> bool:
    """Whether a file's fields show it tagged by `model` (the ORPHEUS_MODEL value), with the genre set when asked."""
    if fields.get(MODEL_FIELD) != [model]:
        return False
    if genre:
        tags = fields.get(TAGS_FIELD, [])
        return not tags or fields.get(GENRE_FIELD) == tags[:1]
    return True


def update_for(tags: Sequence[str], model: str, *, genre: bool) -> TagUpdate:
    """The update for selected `tags` (most probable first); with `genre`, the genre is the first tag."""
    tags = tuple(tags)
    return TagUpdate(tags=tags, model=model, genre=(tags[0] if tags else None) if genre else None)


def summary_line(outcomes: Sequence[WriteOutcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in (WRITTEN, WOULD_WRITE, UNCHANGED, SKIPPED)}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no file"

