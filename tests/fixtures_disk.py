"""Disks for tests: a full one (the atomic writers of `orpheus.files` write into /dev/full, the kernel's ENOSPC),
and real mounts (a small tmpfs, a read-only bind mount) where the machine allows them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


def make_disk_full(monkeypatch, *, ending: str = "", after: int = 0) -> None:
    """From now on every temporary file `orpheus.files.atomic_path` makes is a link to /dev/full, so the
    real write path (open, write, flush, close) fails with errno ENOSPC as on a full disk.

    With `ending`, only the temporary files of outputs whose name ends with it, after the first `after` of
    them (a disk that fills up while a run writes its shards)."""
    real_mkstemp = tempfile.mkstemp
    seen = []

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        output = os.path.basename(name)[1:].rsplit(".", 2)[0]  # atomic_path's ".{output}.{random}.tmp"
        if output.endswith(ending):
            seen.append(name)
            if len(seen) > after:
                os.unlink(name)
                os.symlink("/dev/full", name)
        return fd, name

    monkeypatch.setattr("orpheus.files.tempfile.mkstemp", mkstemp_on_full_disk)


@pytest.fixture
def full_disk(monkeypatch) -> None:
    """A full disk for the whole test (`make_disk_full`)."""
    make_disk_full(monkeypatch)


@contextlib.contextmanager
def mounted(target: Path, *options: str) -> Iterator[None]:
    """`mount OPTIONS... TARGET` for the block, or skip where this machine does not allow it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root")
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this machine cannot mount: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)
