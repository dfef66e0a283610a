"""Whose is this path? The one rule every Orpheus command applies before it writes.

A command may
  - create an output that does not exist yet (an empty file or an empty folder counts as new),
  - resume an output it recognises as its own kind (commands that resume: `predict --output`,
    `train --resume`, `preprocess`, the demo),
  - with `--overwrite`, replace an output of the same kind that Orpheus wrote,
and refuses anything else with one line that names the path and says what is there (`claim`).
An output may not be one of the command's inputs nor a folder holding one, and a folder output may not
lie inside a folder the command reads as a whole (a run directory, an audio tree).

How an output shows that Orpheus wrote it (its kind's mark):
  - a folder output (an export, a run directory, a shard folder, a report...) holds `MARKER`,
    `.orpheus-output.json`: {"kind": "export", "written_by": "orpheus 0.1.0"}. Folders written before
    the marker existed are recognised by their own files (`FolderKind.legacy`: a run directory's
    run.json, a shard folder's dataset.json), so older runs still resume and can be replaced;
  - a file output by its own format's header: a CSV's header row, the results log's first record,
    a tag database's SQLite application id, a PNG's or WAV's "Software" field (`FileKind.recognise`).
"""

from __future__ import annotations

import csv
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from orpheus import __version__
from orpheus.errors import OutputExistsError

MARKER = ".orpheus-output.json"
SQLITE_APPLICATION_ID = 0x4F525048   # "ORPH": PRAGMA application_id of the tag databases Orpheus writes
SOFTWARE_PREFIX = "Orpheus"          # the "Software" field of the PNG and WAV files Orpheus writes


class ForeignOutputError(OutputExistsError):
    """The output path holds something Orpheus did not write (or one of the command's inputs)."""


@dataclass(frozen=True)
class FileKind:
    """A file output: `recognise(path)` says whether an existing file is one Orpheus wrote."""
    name: str
    recognise: Callable[[Path], bool]
    folder = False


@dataclass(frozen=True)
class FolderKind:
    """A folder output, marked by `MARKER`; `legacy` recognises one written before the marker existed."""
    name: str
    legacy: Callable[[Path], bool] = lambda path: False
    folder = True


Kind = FileKind | FolderKind


# ------------------------------------------------------------------------------------- the rule
def claim(path: str | os.PathLike, kind: Kind, *, overwrite: bool = False, resume: bool = False,
          inputs: Iterable[tuple[str | os.PathLike, str]] = (), read_whole: Iterable[str | os.PathLike] = (),
          flag: str = "") -> str:
    """Decide what a command may do with its output `path`, or raise the one-line error.

    Args:
        kind: what the command writes there.
        overwrite: `--overwrite` was given: an output of the same kind that Orpheus wrote may be replaced.
        resume: the command continues an output of its own kind (no `--overwrite` needed).
        inputs: (path, what it is) of each input; the output may be none of them nor hold one.
        read_whole: folders among the inputs that the command reads as a whole (walks, a run directory);
            a folder output may not lie inside one.
        flag: how the user named the output (e.g. "--output"), for the advice.

    Returns:
        "new" (nothing there, an empty file or an empty folder), "resume" or "replace".

    Raises:
        OutputExistsError: an output of this kind is there and neither `resume` nor `overwrite` was given.
        ForeignOutputError: anything else is there, or the output overlaps an input.
    """
    path = Path(path)
    check_inputs(path, kind, inputs, read_whole, flag)
    for parent in path.parents:   # a path through a file can hold nothing
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ForeignOutputError(f"{path}: {parent} is a file, not a folder; {_choose(flag)}")
            break
    there = what_is_there(path, kind)
    if there is None:
        return "new"
    if there == "ours":
        if resume:
            return "resume"
        if overwrite:
            return "replace"
        raise OutputExistsError(f"{path}: {_a(kind.name)} written by Orpheus is already there; pass --overwrite "
                                f"to replace it{_or_choose(flag)}")
    raise ForeignOutputError(f"{path}: holds {there}, not {_a(kind.name)} written by Orpheus; {_choose(flag)} "
                             f"(--overwrite replaces only {_a(kind.name)} that Orpheus wrote)")


def check_inputs(path: Path, kind: Kind, inputs: Iterable[tuple[str | os.PathLike, str]],
                 read_whole: Iterable[str | os.PathLike] = (), flag: str = "") -> None:
    """Refuse an output that is an input, holds one, or (a folder output) lies in a folder read as a whole."""
    out = os.path.realpath(path)
    whole = {os.path.realpath(p) for p in read_whole}
    for source, what in inputs:
        real = os.path.realpath(source)
        if out == real:
            problem = f"is the {what} itself"
        elif _inside(real, out):
            problem = f"holds the {what} ({source})"
        elif kind.folder and real in whole and _inside(out, real):
            problem = f"lies inside the {what} ({source}), which this command reads as a whole"
        else:
            continue
        raise ForeignOutputError(f"{path}: {problem}; an output may not overwrite its own input: {_choose(flag)}")


def what_is_there(path: Path, kind: Kind) -> str | None:
    """None when `path` is free for a new output, "ours" when it holds `kind` written by Orpheus, else
    what is there in a few words ("an audio file (FLAC)", "a folder of other things (3 entries: ...)")."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"something that cannot be examined ({err.strerror})"
    if stat.S_ISLNK(info.st_mode) and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        if not kind.folder:
            return "a folder, where a file is expected"
        marked = marker_kind(path)
        if marked == kind.name or (marked is None and kind.legacy(path)):
            return "ours"
        if marked is not None:
            return f"{_a(marked)} written by Orpheus"
        # an empty folder is free, as is one whose marker another process is writing right now
        entries = sorted(e for e in os.listdir(path) if not (e.startswith(f".{MARKER}.") and e.endswith(".tmp")))
        if not entries:
            return None
        listed = ", ".join(entries[:3]) + ", ..." * (len(entries) > 3)
        return f"a folder of other things ({len(entries)} entries: {listed})"
    if not path.is_file():
        return _special_file(path.stat().st_mode)
    if kind.folder:
        return f"{describe_file(path)}, where a folder is expected"
    if path.stat().st_size == 0:
        return None
    return "ours" if kind.recognise(path) else describe_file(path)


def marker_kind(folder: Path) -> str | None:
    """The kind named by `folder`'s `MARKER`, or None when it has none (or an unreadable one)."""
    try:
        kind = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _inside(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip(os.sep) + os.sep)


def within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies inside it, comparing real paths (links resolved)."""
    real, parent = os.path.realpath(path), os.path.realpath(folder)
    return real == parent or _inside(real, parent)


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _choose(flag: str) -> str:
    return f"give {flag} another path" if flag else "choose another path"


def _or_choose(flag: str) -> str:
    return f" or give {flag} another path" if flag else " or choose another path"


# ------------------------------------------------------------------------------- what is there
_AUDIO_MAGIC = ((b"fLaC", 0, "FLAC"), (b"OggS", 0, "Ogg"), (b"ID3", 0, "MP3"), (b"WAVE", 8, "WAV"),
                (b"AIFF", 8, "AIFF"), (b"ftyp", 4, "MP4/M4A"))


def describe_file(path: Path) -> str:
    """A file in a few words: "an audio file (FLAC)", "a text file (120 bytes)", "a file (4096 bytes)"."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as err:
        return f"a file that cannot be read ({err.strerror})"
    for magic, offset, name in _AUDIO_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return f"an audio file ({name})"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "an audio file (MP3)"
    try:
        if b"\0" not in head:
            head.decode("utf-8")
            return f"a text file ({size} bytes)"
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:   # not only a character cut at the end of the block
            return f"a file ({size} bytes)"
        return f"a text file ({size} bytes)"
    return f"a file ({size} bytes)"


def _special_file(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file (to discard an output, leave its option out)"
    if stat.S_ISFIFO(mode):
        return "a named pipe, not a file"
    return "a special file"


# ------------------------------------------------------------------------ recognising file kinds
def csv_kind(name: str, columns: Sequence[str], last: str | None = None) -> FileKind:
    """A CSV output whose header row starts with `columns` (and ends with the column `last`, if given)."""
    def recognise(path: Path) -> bool:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader([f.readline(1 << 16)]), [])
        except (OSError, UnicodeDecodeError, csv.Error):
            return False
        return tuple(header[:len(columns)]) == tuple(columns) and (last is None or header[-1:] == [last])
    return FileKind(name, recognise)


def read_head(path: Path, n_bytes: int) -> bytes:
    """The first `n_bytes` of a file (fewer if it is shorter); b"" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n_bytes)
    except OSError:
        return b""


def is_orpheus_sqlite(path: Path) -> bool:
    """A SQLite database Orpheus wrote: its header's application id is `SQLITE_APPLICATION_ID`."""
    head = read_head(path, 72)
    return head[:16] == b"SQLite format 3\0" and int.from_bytes(head[68:72], "big") == SQLITE_APPLICATION_ID


def has_software_field(path: Path) -> bool:
    """A PNG (tEXt "Software") or WAV (LIST INFO "ISFT") whose software field starts with `SOFTWARE_PREFIX`."""
    head = read_head(path, 1 << 16)
    wanted = SOFTWARE_PREFIX.encode("ascii")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return b"tEXtSoftware\0" + wanted in head
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        at = head.find(b"ISFT")
        return at >= 0 and head[at + 8:at + 8 + len(wanted)] == wanted
    return False


def software_name() -> str:
    """The "Software" field Orpheus writes into its PNG and WAV files."""
    return f"{SOFTWARE_PREFIX} {__version__}"


TAG_DATABASE = FileKind("tag database", is_orpheus_sqlite)


def file_with(*names: str) -> Callable[[Path], bool]:
    """A legacy test for a folder kind: it holds all of `names`."""
    return lambda folder: all((folder / name).exists() for name in names)
