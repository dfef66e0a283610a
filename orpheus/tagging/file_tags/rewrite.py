"""Rewrite a user's file with new content while it stays the same file to the user: owner, group, mode,
extended attributes (ACLs and SELinux labels among them) and hard links kept; never half-written.

Two ways, chosen per file (`choose_method`):

- **replace** (the usual case): the new content is written to a hidden temporary file beside the original
  (`.NAME.XXXXXXXX.orpheus-tmp`), fsync'ed, given the original's owner, group, mode and extended
  attributes, and renamed over it. A kill or a full disk leaves the old file or the new one, never a mix.
- **in place**, for a file with several hard links (a rename would split them: the other names would keep
  the old content) and for a file whose owner, group or attributes this user cannot give a new file: the
  full new content is first written and fsync'ed beside it as a journal (`.NAME.XXXXXXXX.orpheus-journal`),
  then copied into the original inode (only the blocks that differ; a file that grows has its space
  reserved first, so a full disk fails before anything is written), then the journal is removed.

Temporary files are locked (`flock`) while their writer lives. `clean_stale` (run by each library run and
by the beets plugin on every folder it writes to) removes the temporary copies of writers that died, and
finishes an in-place write that a kill interrupted by copying its journal into the original.
The modification time of a rewritten file is the time of writing: its content changed, so backup and sync
tools must see it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import stat
import tempfile
from typing import Callable

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".orpheus-tmp"
JOURNAL_SUFFIX = ".orpheus-journal"
REPLACE, IN_PLACE = "replace", "in place"
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<kind>\.orpheus-tmp|\.orpheus-journal)")
_BLOCK = 1 << 20


class RewriteError(Exception):
    """The file could not be rewritten; the message says why and that the file is unchanged."""


def writable(path: str) -> bool:
    """Writable by this user and marked writable by its owner: a read-only mark is respected even by root."""
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & stat.S_IWUSR)


def refusal(target: str) -> str | None:
    """Why `target` (a real path, not a link) cannot be rewritten at all, or None."""
    if not writable(target):
        if _on_read_only_file_system(target):   # chmod cannot help there
            return "read-only file system; remount it read-write, or copy the files to a writable disk, to tag them"
        return "read-only file; make it writable (chmod u+w) to tag it"
    folder = os.path.dirname(target)
    if not writable(folder):
        return f"read-only folder {folder}: there is no room beside the file for its new copy"
    return None


def _on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def choose_method(target: str) -> tuple[str, str]:
    """(REPLACE or IN_PLACE, why in place) for `target`, from what can be seen before writing."""
    st = os.stat(target)
    if st.st_nlink > 1:
        return IN_PLACE, f"{st.st_nlink} hard links"
    if os.geteuid() != 0 and st.st_uid != os.geteuid():
        return IN_PLACE, f"owned by uid {st.st_uid}"
    return REPLACE, ""


def rewrite(target: str, build: Callable[[str], None], method: str, why: str = "") -> tuple[str, str]:
    """Rewrite `target` with the content that `build(path)` writes into a new file at `path`.

    `method` and `why` come from `choose_method`. Returns (method used, why in place): REPLACE turns into
    IN_PLACE when the copy cannot carry the original's owner or extended attributes.

    Raises:
        RewriteError: the original changed meanwhile, or the in-place copy failed (the message says whether
            the file is unchanged or the next run finishes it).
        OSError: from `build` (e.g. a full disk); the original is unchanged.
    """
    folder = os.path.dirname(target)
    before = os.stat(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=TEMP_SUFFIX, dir=folder)
    journal = tmp[:-len(TEMP_SUFFIX)] + JOURNAL_SUFFIX
    with os.fdopen(fd, "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # held until this block ends: `clean_stale` leaves it alone
        try:
            build(tmp)
            _fsync_file(tmp)
            now = os.stat(target)
            if (now.st_size, now.st_mtime_ns, now.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                raise RewriteError("the file changed while it was being tagged; rerun to tag it")
            if method == REPLACE:
                why = carry_metadata(before, target, tmp)
                if not why:
                    os.replace(tmp, target)
                    _fsync_dir(folder)
                    return REPLACE, ""
            os.rename(tmp, journal)
            _fsync_dir(folder)
            try:
                copy_into(journal, target)
            except RewriteError:
                os.unlink(journal)
                raise
            except OSError as err:
                raise RewriteError(f"the in-place write failed ({err.strerror or err}); the file is partly "
                                   f"written: the next run in this folder finishes it from {journal}") from err
            os.unlink(journal)
            _fsync_dir(folder)
            return IN_PLACE, why
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def carry_metadata(original: os.stat_result, source: str, copy: str) -> str:
    """Give `copy` the owner, group, mode and extended attributes of `source`; '' when done, else why not."""
    try:
        made = os.stat(copy)
        if (original.st_uid, original.st_gid) != (made.st_uid, made.st_gid):
            os.chown(copy, original.st_uid, original.st_gid)
    except PermissionError:
        return f"owned by {original.st_uid}:{original.st_gid}, which this user cannot give a new file"
    os.chmod(copy, stat.S_IMODE(original.st_mode))  # after chown, which clears set-id bits
    try:
        names = _xattr_names(source)
        for name in names:
            os.setxattr(copy, name, os.getxattr(source, name))
        for name in set(_xattr_names(copy)) - set(names):  # e.g. a default ACL inherited from the folder
            os.removexattr(copy, name)
    except OSError as err:
        return f"its extended attributes cannot be given to a new file ({err.strerror or err})"
    return ""


def _xattr_names(path: str) -> list[str]:
    try:
        return os.listxattr(path)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def copy_into(source: str, target: str) -> None:
    """Make `target`'s content equal `source`'s, in `target`'s own inode, writing only blocks that differ."""
    with open(source, "rb") as src, open(target, "r+b") as dst:
        new_size, old_size = os.fstat(src.fileno()).st_size, os.fstat(dst.fileno()).st_size
        if new_size > old_size:
            try:
                os.posix_fallocate(dst.fileno(), 0, new_size)  # a full disk fails here, before any write
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    os.ftruncate(dst.fileno(), old_size)
                    raise RewriteError(f"no room to grow the file ({err.strerror or err}); the file is "
                                       "unchanged") from err
                # this file system cannot reserve space: write without (a failure then leaves the journal)
        pos = 0
        while True:
            new = src.read(_BLOCK)
            if not new:
                break
            dst.seek(pos)
            if dst.read(len(new)) != new:
                dst.seek(pos)
                dst.write(new)
            pos += len(new)
        dst.truncate(new_size)
        dst.flush()
        os.fsync(dst.fileno())


def leftovers(folder: str) -> list[tuple[str, str]]:
    """(path, original's path) of the temporary files and journals in `folder` whose writer is gone."""
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer holds it
        except OSError:
            continue
        out.append((entry.path, os.path.join(folder, match["name"])))
    return out


def clean_stale(folder: str, *, dry_run: bool = False) -> list[str]:
    """Remove the temporary copies that killed writers left in `folder`, and finish their in-place writes.

    Returns one line per leftover, saying what was (or, with `dry_run`, would be) done. Never raises.
    """
    lines = []
    for path, original in leftovers(folder):
        verb = "would " if dry_run else ""
        try:
            if path.endswith(JOURNAL_SUFFIX) and os.path.isfile(original) and not os.path.islink(original):
                if not dry_run:
                    copy_into(path, original)
                    os.unlink(path)
                lines.append(f"{original}: {verb}finish the in-place tag write an interrupted run began "
                             f"(from {os.path.basename(path)})")
            else:
                if not dry_run:
                    os.unlink(path)
                lines.append(f"{path}: {verb}remove the temporary copy an interrupted run left")
        except (OSError, RewriteError) as err:
            lines.append(f"{path}: cannot clean up the temporary copy an interrupted run left "
                         f"({err.strerror or err}); delete it by hand")
    if lines and not dry_run:
        _fsync_dir(folder)
    return lines


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


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
