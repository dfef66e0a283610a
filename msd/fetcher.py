"""Scan an audio tree of 7digital previews and write `fetcher.csv`.

Input: a root folder holding `<d0>/<d1>/<track_7digitalid>.clip.mp3` (any depth).
Output: `fetcher.csv` with one row per mp3, sorted by path:
`track_7digitalid, file_path` (relative to the root), `file_size` (bytes), `channels`,
`sample_rate` (Hz), `clip_length` (seconds), `header_error`. The header fields come from the mp3
headers (mutagen, then libsndfile as a fallback), so nothing is decoded. A file without a header is
kept with empty `channels, sample_rate, clip_length`, so `wrangle` can drop and count it, and
`header_error` says why: `empty file (0 bytes)`, `unreadable: <reason>` (permissions, an I/O error:
the file system is at fault, not the file) or `corrupt: ...` (the bytes cannot be parsed).
Headers are logged as they are read, so an interrupted run resumes where it stopped.

Example:
    orpheus fetcher fetcher.csv --root-dir AUDIO_ROOT
"""

import os

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError
from orpheus.files import atomic_path, check_output, first_paths, partial_path, read_partial, require_dir, walk_files
from orpheus.ownership import csv_kind
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

CLIP_SUFFIX = ".clip.mp3"
FILES_PER_WORKER = 2000
COLUMNS = ["track_7digitalid", "file_path", "file_size", "channels", "sample_rate", "clip_length", "header_error"]
HEADER_FIELDS = 5  # entries of a read_header result, as logged in the progress log
FETCHER_CSV = csv_kind("fetcher table", COLUMNS)


def find_clips(root_dir: str | Path) -> list[str]:
    """Paths of every `*.clip.mp3` under `root_dir`, relative to it, sorted (POSIX separators).

    The walk is `orpheus.files.walk_files`: links to folders are followed, never into a folder already
    walked, and a clip reached by two paths is listed once (under its first path).
    """
    root = Path(root_dir)
    clips = [(path, real) for path, real in walk_files(root, on_error=_warn_unlistable)
             if path.name.endswith(CLIP_SUFFIX)]
    return sorted(path.relative_to(root).as_posix() for path in first_paths(clips))


def _warn_unlistable(err: OSError) -> None:
    log.warning("%s: cannot list the folder (%s); its clips are left out of fetcher.csv: fix its permissions "
                "and rerun", err.filename, err.strerror)


def seven_digital_id(rel_path: str) -> int:
    """The 7digital id in a clip's file name (`.../1234567.clip.mp3` -> 1234567).

    Raises:
        DataFormatError: the name before `.clip.mp3` is not an integer.
    """
    stem = rel_path.rsplit("/", 1)[-1][: -len(CLIP_SUFFIX)]
    if not stem.isdigit():
        raise DataFormatError(f"{rel_path}: clip name is not <7digitalid>.clip.mp3; rename or remove the file")
    return int(stem)


def read_header(path: str) -> tuple[int, int | None, int | None, float | None, str | None]:
    """Read an mp3's size and header fields without decoding it.

    Returns:
        (file_size in bytes, channels, sample_rate in Hz, clip_length in seconds, header_error); the
        three header fields are None and `header_error` says why when the header cannot be had:
        "empty file (0 bytes)", "unreadable: <reason>" (the file cannot be read: permissions, I/O
        error, a dangling link; fix the file system and rerun) or "corrupt: ..." (the bytes are there
        but neither mutagen nor libsndfile can parse them). `header_error` is None for a good header.
    """
    size = 0
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:  # separates a file we may not read from one we cannot parse
            f.read(1)
    except OSError as err:
        return size, None, None, None, f"unreadable: {err.strerror or err}"
    if size == 0:
        return size, None, None, None, "empty file (0 bytes)"
    try:
        from mutagen.mp3 import MP3

        info = MP3(path).info
        if info.length > 0 and info.sample_rate > 0:
            return size, int(info.channels), int(info.sample_rate), float(info.length), None
    except Exception:  # mutagen raises many types on garbage; fall back to libsndfile
        pass
    try:
        import soundfile as sf

        from orpheus.audio.decode import c_notes_logged

        with c_notes_logged(path):
            info = sf.info(path)
        if info.frames > 0 and info.samplerate > 0:
            return size, int(info.channels), int(info.samplerate), info.frames / info.samplerate, None
    except Exception:  # corrupt: reported with an empty header, dropped and counted by wrangle
        pass
    return size, None, None, None, "corrupt: neither mutagen nor libsndfile can parse an mp3 header"


def scan(root_dir: str | Path, *, jobs: int = 1, quiet: bool = False, checkpoint: Path | None = None) -> pd.DataFrame:
    """Scan `root_dir` and return the fetcher table (columns `COLUMNS`, one row per clip, sorted by path).

    With `checkpoint`, each header read is logged there, and headers an earlier interrupted scan logged
    are reused when the file's size has not changed.
    """
    root = require_dir(root_dir, "audio root")
    rel_paths = find_clips(root)
    ids = [seven_digital_id(p) for p in rel_paths]
    done = read_partial(checkpoint)
    headers: dict[str, tuple] = {}
    for rel in rel_paths:
        logged = done.get(rel)
        if logged is not None and len(logged) == HEADER_FIELDS and logged[0] == _size(root / rel):
            headers[rel] = tuple(logged)
    if headers:
        log.info("fetcher: resuming %d headers from %s", len(headers), checkpoint)
    todo = [rel for rel in rel_paths if rel not in headers]
    full = [str(root / p) for p in todo]
    # a header read takes about a millisecond and starting a worker about a second: use only as many
    # workers as there are FILES_PER_WORKER files
    workers = max(1, min(jobs, len(full) // FILES_PER_WORKER))
    results = parallel_map(read_header, full, jobs=workers, desc="fetcher", quiet=quiet,
                           chunksize=max(1, min(256, len(full) // (workers * 8) or 1)))
    log_file = open(checkpoint, "a", encoding="utf-8") if checkpoint is not None else None
    try:
        for rel, header in zip(todo, results):
            headers[rel] = header
            if log_file is not None:
                log_file.write(json.dumps([rel, list(header)]) + "\n")
    finally:
        if log_file is not None:
            log_file.close()
    table = pd.DataFrame([headers[rel] for rel in rel_paths],
                         columns=["file_size", "channels", "sample_rate", "clip_length", "header_error"])
    table.insert(0, "file_path", rel_paths)
    table.insert(0, "track_7digitalid", ids)
    table["file_size"] = table["file_size"].astype("int64")
    for col in ("channels", "sample_rate"):
        table[col] = table[col].astype("Int64")
    return table[COLUMNS]


def header_summary(table: pd.DataFrame) -> str:
    """"3 without a header: 1 empty, 1 unreadable, 1 corrupt" (or "all headers read") for the fetcher table."""
    errors = table["header_error"].dropna().astype(str)
    if errors.empty:
        return "all headers read"
    kinds = errors.str.split(r"[:(]", n=1, regex=True).str[0].str.strip().replace({"empty file": "empty"})
    counts = kinds.value_counts()
    parts = ", ".join(f"{counts[k]} {k}" for k in ("empty", "unreadable", "corrupt") if k in counts)
    return f"{len(errors)} without a header: {parts}"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def run(output: str | Path, root_dir: str | Path, *, jobs: int = 1, overwrite: bool = False,
        quiet: bool = False) -> pd.DataFrame:
    """Scan `root_dir` and write `output` (fetcher.csv) atomically; return the table.

    An interrupted run leaves `.fetcher.csv.partial.jsonl` beside the output; the next run reuses it.
    """
    output = check_output(output, FETCHER_CSV, overwrite=overwrite, inputs=[(root_dir, "audio root")])
    start = time.perf_counter()
    checkpoint = partial_path(output)
    table = scan(root_dir, jobs=jobs, quiet=quiet, checkpoint=checkpoint)
    if table.empty:
        raise DataFormatError(f"{root_dir}: no <7digitalid>{CLIP_SUFFIX} file in this folder or below; nothing "
                              "written: check --root-dir")
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    checkpoint.unlink(missing_ok=True)
    log.info("fetcher: %d clips (%s) in %.1f s -> %s", len(table), header_summary(table),
             time.perf_counter() - start, output)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus fetcher", "Scan an audio tree of <7digitalid>.clip.mp3 previews and write fetcher.csv.",
        "examples:\n"
        "  orpheus fetcher fetcher.csv --root-dir /data/msd/audio\n"
        "  orpheus fetcher fetcher.csv --root-dir AUDIO_ROOT --jobs 2 --overwrite")
    parser.add_argument("output", help="fetcher.csv to write")
    parser.add_argument("--root-dir", required=True, help="root of the audio tree")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        table = run(args.output, args.root_dir, jobs=args.jobs, overwrite=args.overwrite, quiet=args.quiet)
        print(f"fetcher: {len(table)} clips, {header_summary(table)} -> {args.output}")
        return 0

    return run_main(parser, argv, command)
