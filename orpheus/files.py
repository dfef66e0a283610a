"""Atomic, resumable file outputs shared by every stage.

Outputs are written to a temporary name in the destination folder and renamed into place only
when complete, so an interrupted run never leaves a truncated file under the final name, and a
rerun can trust that any file present under its final name is whole.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from orpheus.errors import DataFormatError, MissingInputError, OutputExistsError, OutputWriteError
from orpheus import __version__
from orpheus.ownership import MARKER, FolderKind, Kind, claim

T = TypeVar("T")

# What the environment can do to a write, by errno and by the text libraries put in their messages
# (TensorFlow: "<path>; No space left on device"; h5py: "... errno = 28, error message = '...'").
_ENVIRONMENT_ERRORS = (
    (errno.ENOSPC, "No space left on device", "no space left on device; free space or choose another output folder"),
    (errno.EDQUOT, "Disk quota exceeded", "disk quota exceeded; free space or choose another output folder"),
    (errno.EROFS, "Read-only file system", "read-only file system; choose another output folder"),
    (errno.EACCES, "Permission denied", "permission denied; choose an output folder you can write to"),
    (errno.EPERM, "Operation not permitted", "permission denied; choose an output folder you can write to"),
)


def output_write_error(err: BaseException, path: str | os.PathLike | None = None) -> OutputWriteError | None:
    """The one-line `OutputWriteError` for a write that failed for a reason of the environment, else None.

    Args:
        err: an `OSError` (errno ENOSPC, EDQUOT, EROFS, EACCES or EPERM) or any exception whose message
            carries one of their texts, e.g. TensorFlow's `ResourceExhaustedError` and `PermissionDeniedError`.
        path: the file or folder being written; None: the one the error names.

    Returns:
        `OutputWriteError("<folder>: no space left on device; free space or choose another output folder")`
        and the like, naming the folder (a file's parent), or None for any other failure.
    """
    text = str(err)
    code = getattr(err, "errno", None)
    for number, strerror, message in _ENVIRONMENT_ERRORS:
        if code == number or (code is None and (strerror in text or f"errno = {number}," in text)):
            break
    else:
        return None
    if path is None:
        path = getattr(err, "filename", None) or _named_path(text)
    if path is None:
        return OutputWriteError(f"output folder: {message}")
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return OutputWriteError(f"{folder}: {message}")


def _named_path(text: str) -> str | None:
    """The path an error message names: h5py's "name = '<path>'" or TensorFlow's "<path>; <reason>"."""
    match = re.search(r"name = '([^']+)'", text) or re.search(r"(/[^\s;']*);", text)
    return match.group(1) if match else None


@contextlib.contextmanager
def writing_to(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk, a read-only or a forbidden folder met in the block into `OutputWriteError`
    naming `path`'s folder; other errors pass unchanged."""
    try:
        yield
    except OSError as err:
        converted = output_write_error(err, path)
        if converted is None:
            raise
        raise converted from err


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a Path, or raise `MissingInputError` naming it and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; check the path")
    return path


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a Path, or raise `MissingInputError` if it is not an existing folder."""
    path = Path(path)
    if not path.is_dir():
        raise MissingInputError(f"{path}: {what} folder not found; check the path")
    return path


def check_output(path: str | os.PathLike, kind: Kind, *, overwrite: bool = False, resume: bool = False,
                 inputs: Iterable[tuple[str | os.PathLike, str]] = (), read_whole: Iterable[str | os.PathLike] = (),
                 flag: str = "") -> Path:
    """Apply the ownership rule (`orpheus.ownership.claim`) to the output `path`; create its parent folder.

    Raises `OutputExistsError` for an output of `kind` without `overwrite` (or `resume`), and
    `ForeignOutputError` for anything Orpheus did not write there or an output that overlaps an input.
    """
    path = Path(path)
    claim(path, kind, overwrite=overwrite, resume=resume, inputs=inputs, read_whole=read_whole, flag=flag)
    with writing_to(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def stderr_redirected(fd: int) -> Iterator[int]:
    """Point file descriptor 2 at `fd` for the block: what C libraries and child processes write to stderr goes
    there. Yields a duplicate of the stderr it replaced, closed when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield saved
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The temporary file is removed if the block raises, so a failed write leaves nothing behind.
    A full disk or a read-only folder, met here or in the block, raises `OutputWriteError` naming the folder.
    """
    path = Path(path)
    with writing_to(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing_to(path.parent):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: FolderKind, *, overwrite: bool = False,
               inputs: Iterable[tuple[str | os.PathLike, str]] = (), read_whole: Iterable[str | os.PathLike] = (),
               flag: str = "") -> Iterator[Path]:
    """Yield a temporary folder beside `path`; when the block succeeds, mark it as `kind` and rename it onto `path`.

    The ownership rule (`check_output`) is applied before and after the block (another process may
    finish first): an existing output of `kind` is replaced, in one rename, only with `overwrite`, and
    nothing Orpheus did not write is ever replaced. A failed block leaves nothing.
    """
    path = Path(path)
    rule = dict(overwrite=overwrite, inputs=inputs, read_whole=read_whole, flag=flag)
    check_output(path, kind, **rule)
    with writing_to(path.parent):
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp_dir, 0o777 & ~_umask())    # mkdtemp makes it private; outputs are ordinary folders
    try:
        with writing_to(path.parent):
            yield tmp_dir
            mark(tmp_dir, kind)
            _replace_dir(tmp_dir, path, claim(path, kind, **rule))
    except OutputWriteError as err:     # met in the temporary folder: name the folder the user gave
        raise OutputWriteError(str(err).replace(str(tmp_dir), str(path.parent))) from err
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


def _replace_dir(tmp_dir: Path, out_dir: Path, claimed: str) -> None:
    """Rename the finished `tmp_dir` onto `out_dir`: a new (or empty) one, or with `claimed` "replace" an
    output of the same kind, moved aside first and removed once the new one is in place."""
    if claimed == "replace":
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old)
        return
    try:
        os.replace(tmp_dir, out_dir)
    except OSError as err:      # another process renamed its output into place first
        if not out_dir.exists():
            raise
        raise OutputExistsError(f"{out_dir}: output already exists; pass --overwrite to replace it") from err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def partial_path(output: str | os.PathLike) -> Path:
    """`out.csv` -> `.out.csv.partial.jsonl`: the progress log of an unfinished run that writes `out.csv`.

    Per-track results are appended to it as `[key, value]` JSON lines while the run goes, so a rerun
    after a kill resumes from them; the run deletes it once the output is written.
    """
    output = Path(output)
    return output.with_name(f".{output.name}.partial.jsonl")


def read_partial(path: str | os.PathLike | None) -> dict[str, Any]:
    """key -> value of the `[key, value]` lines of a progress log; {} when there is none.

    A torn last line (the run was killed while writing it) is ignored.
    """
    done: dict[str, Any] = {}
    if path is None or not Path(path).is_file():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                key, value = json.loads(line)
            except (ValueError, TypeError):
                continue
            done[key] = value
    return done


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json_record(path: str | os.PathLike, cls: type[T], *, what: str, tuple_keys: Sequence[str],
                     missing: str, malformed: str, prepare: Callable[[dict], dict] | None = None) -> T:
    """Read the JSON object at `path` into the dataclass `cls`; its lists at `tuple_keys` become tuples.

    `prepare`, when given, turns the raw object into `cls`'s keyword arguments first (nested records);
    a ValueError, TypeError or KeyError it raises reads as a malformed file.

    A missing file raises `MissingInputError` ("{path}: not found; {missing}"); bad JSON, an unknown or
    missing key or a wrong value raise `DataFormatError` ("{path}: malformed {what} ({why}); {malformed}").
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: not found; {missing}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if prepare is not None:
            raw = prepare(raw)
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        for key in tuple_keys:
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)
    except (ValueError, TypeError, KeyError) as err:
        raise DataFormatError(f"{path}: malformed {what} ({err}); {malformed}") from err


def default_cache_dir() -> Path:
    """`$ORPHEUS_CACHE` if set, else `$XDG_CACHE_HOME/orpheus`, else `~/.cache/orpheus`."""
    if os.environ.get("ORPHEUS_CACHE"):
        return Path(os.environ["ORPHEUS_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "orpheus"
    return Path.home() / ".cache" / "orpheus"


def publish_dir(folder: Path, target: Path) -> None:
    """Copy a finished cache folder to `target` atomically (a concurrent run may publish it first: then theirs stays)."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise


def mark(folder: str | os.PathLike, kind: FolderKind) -> None:
    """Write `folder`'s ownership marker (`orpheus.ownership.MARKER`), saying Orpheus wrote it as `kind`."""
    write_json_atomic(Path(folder) / MARKER, {"kind": kind.name, "written_by": f"orpheus {__version__}"})


def write_csv_atomic(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Write a CSV with `header` and `rows` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def walk_files(root: str | os.PathLike, *, hidden: bool = True,
               on_error: Callable[[OSError], None] | None = None) -> list[tuple[Path, str]]:
    """Every file under the folder `root`, as (path, real path), sorted by path: the one folder walk of
    `predict`, `labels --from-folders` and `fetcher`.

    Links to folders are followed, but a folder whose real path was already visited is not entered
    again: the tree's own folders are walked first, then the linked ones, so a link loop
    (`album/loop -> ..`) or a link to a folder of the tree adds nothing, and a link to a folder
    elsewhere (another disk) is walked once. A file reached by two paths (a link to it) is listed under
    each; callers that count files keep one path per real path (`first_paths`). A broken link is
    listed (reading it fails and is reported like any unreadable file). The result is the same on
    every run.

    Args:
        hidden: also walk names that start with a dot.
        on_error: called with the `OSError` of a folder that cannot be listed (which is then skipped).
    """
    seen: set[str] = set()
    found: list[tuple[Path, str]] = []
    folders, linked = [Path(root)], []
    while folders or linked:
        folder = folders.pop() if folders else linked.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name, reverse=True)
        except OSError as err:
            if on_error is not None:
                on_error(err)
            continue
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
            except OSError:
                is_dir = is_link = False
            if is_dir:
                (linked if is_link else folders).append(Path(entry.path))
            elif is_link or entry.is_file():   # a broken link too: reading it reports it
                found.append((Path(entry.path), os.path.realpath(entry.path)))
    return sorted(found)


def first_paths(files: Sequence[tuple[Path, str]]) -> list[Path]:
    """The first path of each real path in `files` (pairs of `walk_files`), in order: a file counts once."""
    seen: set[str] = set()
    kept = []
    for path, real in files:
        if real not in seen:
            seen.add(real)
            kept.append(path)
    return kept
