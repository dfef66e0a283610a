"""Helpers shared by the dataset converters (mtt, fma, jamendo, labels): their common output contract.

Every converter writes the same four files into OUT_DIR, the shapes of the MSD cleaning's outputs, so
`tfrecords/preprocessing.py --split-file` runs unchanged on any of them:
    ultimate.csv      one row per kept track, starting track_id, artist_id, mp3_path (relative to the audio
                      root), then file_size (bytes), channels, sample_rate (Hz), clip_length (s), then
                      dataset-specific columns
    clean_tags.db     sqlite3 tids(tid TEXT), tags(tag TEXT), tid_tag(tid INTEGER, tag INTEGER, val FLOAT);
                      ids are ROWIDs, val 100 for a present tag, tags by popularity (desc) then name
    split.csv         track_id,split (train | valid | test)
    skipped.csv       track_id,mp3_path,reason for every track left out

Here: audio checks (`check_audio`), stable artist ids, hash splits, tag ranking, the tag database,
writing the outputs and the CLI summary.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import soundfile as sf

from orpheus.audio.decode import c_notes_logged
from orpheus.errors import DataFormatError, MissingInputError
from orpheus.files import atomic_path, require_file, write_csv_atomic
from orpheus.ownership import SQLITE_APPLICATION_ID, TAG_DATABASE, FileKind, ForeignOutputError, claim, csv_kind, within
from orpheus.parallel import parallel_map

TXT_DIR = Path(str(resources.files("msd").joinpath("txt")))   # package data (setup.cfg)

MASTER_CSV = "ultimate.csv"
TAG_DB = "clean_tags.db"
SPLIT_CSV = "split.csv"
SKIPPED_CSV = "skipped.csv"
OUTPUT_NAMES = (MASTER_CSV, TAG_DB, SPLIT_CSV, SKIPPED_CSV)
AUDIO_COLUMNS = ("file_size", "channels", "sample_rate", "clip_length")
SPLITS = ("train", "valid", "test")
PRESENT_VAL = 100.0
VERIFY_MODES = ("header", "decode")


def read_text_input(path: Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of an input file; unreadable or non-`encoding` bytes are one-line errors naming the file (and line).

    Raises:
        MissingInputError: the file is absent or cannot be read (permissions, a folder, ...).
        DataFormatError: `path:LINE: not UTF-8 text`, LINE being the line of the first bad byte.
    """
    path = require_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MissingInputError(f"{path}: cannot read the {what} ({err.strerror or err})") from err
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from err


def read_list_txt(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a data file in msd/txt, stripped."""
    path = require_file(path, "tag list")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def artist_id_from_name(name: str) -> str:
    """A stable artist id: the first 16 hex digits of SHA-1 of the normalised name ('' for no name).

    Normalisation lowercases and turns every run of non-alphanumerics into one space, so the
    display name `J.S. Bach` and the file-name form `j_s__bach` give the same id.
    """
    normalised = " ".join(re.sub(r"[^0-9a-z]+", " ", str(name).lower()).split())
    if not normalised:
        return ""
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class AudioCheck:
    """What `check_audio` found: `reason` is '' for a usable file, else why it is skipped."""
    reason: str
    file_size: int = 0
    channels: int = 0
    sample_rate: int = 0
    clip_length: float = 0.0


def check_audio(job: tuple[str, str]) -> AudioCheck:
    """Check one audio file: present, not empty, decodable.

    Args:
        job: (path, mode). mode "header" opens the file and decodes its first 4096 frames (fast);
            "decode" decodes it to the end (catches truncated files, slower).

    Returns:
        AudioCheck with size in bytes, channels, sample rate in Hz and length in seconds.
    """
    path, mode = job
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return AudioCheck("audio missing")
    except OSError as err:
        return AudioCheck(f"audio unreadable: {err.strerror or err}")
    if size == 0:
        return AudioCheck("empty file (0 bytes)", 0)
    try:
        with c_notes_logged(path), sf.SoundFile(path) as f:
            channels, sample_rate, frames = f.channels, f.samplerate, f.frames
            if mode == "decode":
                n_read = sum(len(block) for block in f.blocks(blocksize=1 << 18, dtype="float32"))
            else:
                n_read = len(f.read(4096, dtype="float32"))
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if first_line.startswith("Error opening"):  # libsndfile's generic message names the file, not the fault
            first_line = "not a decodable audio file"
        return AudioCheck(f"corrupt audio ({first_line})", size)
    if n_read == 0:
        return AudioCheck("corrupt audio (no samples)", size)
    n_frames = n_read if mode == "decode" else frames
    return AudioCheck("", size, channels, sample_rate, round(n_frames / sample_rate, 3))


def check_audio_files(root_dir: Path, rel_paths: Sequence[str], *, mode: str, jobs: int,
                      quiet: bool) -> list[AudioCheck]:
    """`check_audio` on each `root_dir / rel_path`, in a process pool, in input order."""
    if mode not in VERIFY_MODES:
        raise DataFormatError(f"unknown --verify mode {mode!r}; expected one of {', '.join(VERIFY_MODES)}")
    work = [(str(root_dir / rel), mode) for rel in rel_paths]
    return list(parallel_map(check_audio, work, jobs=jobs, desc="checking audio", quiet=quiet))


def add_verify_arg(parser) -> None:
    """The converters' `--verify` flag: how thoroughly `check_audio_files` reads each file."""
    parser.add_argument("--verify", choices=VERIFY_MODES, default="header",
                        help="audio check: open and decode the first frames, or decode every file fully")


def rank_tags(tags_per_track: Mapping[str, Sequence[str]], top: int | None = None) -> list[str]:
    """Tags by number of tracks (descending), ties by name; only tags with a track; the first `top` if given."""
    counts = Counter(tag for tags in tags_per_track.values() for tag in set(tags))
    ranked = sorted(counts, key=lambda tag: (-counts[tag], tag))
    return ranked[:top] if top else ranked


def write_tag_db(path: Path, track_ids: Sequence[str], tags_per_track: Mapping[str, Sequence[str]],
                 vocabulary: Sequence[str]) -> None:
    """Write the clean three-table tag database atomically.

    tids holds `track_ids` in order (ROWID = position + 1); tags holds `vocabulary` in order; tid_tag has
    one row (tid ROWID, tag ROWID, 100.0) per present tag of the vocabulary, sorted by tid then tag.
    """
    tag_rowid = {tag: i for i, tag in enumerate(vocabulary, start=1)}
    pairs = sorted({(tid_rowid, tag_rowid[tag])
                    for tid_rowid, tid in enumerate(track_ids, start=1)
                    for tag in tags_per_track.get(tid, ()) if tag in tag_rowid})
    with atomic_path(path) as tmp:
        tmp.unlink()  # sqlite3 wants to create the file itself
        con = sqlite3.connect(tmp)
        try:
            con.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")   # the mark: a tag database Orpheus wrote
            con.execute("CREATE TABLE tids (tid TEXT)")
            con.execute("CREATE TABLE tags (tag TEXT)")
            con.execute("CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT)")
            con.executemany("INSERT INTO tids (ROWID, tid) VALUES (?, ?)",
                            [(i, tid) for i, tid in enumerate(track_ids, start=1)])
            con.executemany("INSERT INTO tags (ROWID, tag) VALUES (?, ?)",
                            [(i, tag) for i, tag in enumerate(vocabulary, start=1)])
            con.executemany("INSERT INTO tid_tag (tid, tag, val) VALUES (?, ?, ?)",
                            [(tid, tag, PRESENT_VAL) for tid, tag in pairs])
            con.execute("CREATE INDEX idx_tid_tag_tid ON tid_tag (tid)")
            con.execute("CREATE INDEX idx_tid_tag_tag ON tid_tag (tag)")
            con.commit()
        finally:
            con.close()


MASTER_CSV_KIND = csv_kind("master CSV", ("track_id", "artist_id", "mp3_path"))   # also msd.silence's output
SKIPPED_COLUMNS = ("track_id", "mp3_path", "reason")
OUTPUT_KINDS = {MASTER_CSV: MASTER_CSV_KIND, TAG_DB: TAG_DATABASE,
                SPLIT_CSV: csv_kind("split file", ("track_id", "split")),
                SKIPPED_CSV: csv_kind("skipped-track report", SKIPPED_COLUMNS)}


def check_outputs(out_dir: Path, overwrite: bool, extra: Mapping[str, FileKind] | None = None,
                  inputs: Sequence[tuple[str | Path, str]] = (),
                  read_whole: Sequence[str | Path] = ()) -> dict[str, Path]:
    """The output paths in `out_dir` (the four shared ones, then `extra`: name -> kind), each checked with
    the ownership rule before any work: new, or (with `overwrite`) a file of the same kind Orpheus wrote,
    and none of `inputs`. `out_dir` only receives these files, so it may hold the inputs, but it may not
    lie in a folder of `read_whole` (the tag folders a walk would read its files from)."""
    for root in read_whole:
        if within(out_dir, root):
            raise ForeignOutputError(f"{out_dir}: lies inside {root}, which this command reads as a whole (its "
                                     "files would be read as tracks next time); give OUT_DIR another path")
    kinds = {**OUTPUT_KINDS, **(extra or {})}
    for name, kind in kinds.items():   # nothing is created yet: a conversion that fails leaves nothing
        claim(out_dir / name, kind, overwrite=overwrite, inputs=inputs, flag="OUT_DIR")
    return {name: out_dir / name for name in kinds}


def require_kept(name: str, master: pd.DataFrame, skipped: Sequence[tuple[str, str, str]]) -> None:
    """Raise when a conversion kept no track: nothing is written, and the message says why they went."""
    if len(master):
        return
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(skip_reasons(skipped).items())) or "none found"
    raise DataFormatError(f"{name}: kept 0 tracks (skipped {len(skipped)}: {reasons}); nothing written: check "
                          "the audio root and the metadata, or the options that select tracks")


def write_dataset_outputs(out_dir: Path, master: pd.DataFrame, tags_per_track: Mapping[str, Sequence[str]],
                          vocabulary: Sequence[str], splits: Mapping[str, str],
                          skipped: Sequence[tuple[str, str, str]]) -> None:
    """Write ultimate.csv, clean_tags.db, split.csv and skipped.csv atomically.

    Args:
        master: one row per kept track, starting with track_id, artist_id, mp3_path.
        tags_per_track: track_id -> its tags (only those in `vocabulary` are stored).
        vocabulary: tag names in database order.
        splits: track_id -> "train" | "valid" | "test" for every kept track.
        skipped: (track_id, mp3_path, reason) for every track left out.
    """
    track_ids = list(master["track_id"])
    with atomic_path(out_dir / MASTER_CSV) as tmp:
        master.to_csv(tmp, index=False)
    write_tag_db(out_dir / TAG_DB, track_ids, tags_per_track, vocabulary)
    write_csv_atomic(out_dir / SPLIT_CSV, ("track_id", "split"), [(tid, splits[tid]) for tid in track_ids])
    write_csv_atomic(out_dir / SKIPPED_CSV, SKIPPED_COLUMNS, list(skipped))


def summarise(name: str, master: pd.DataFrame, vocabulary: Sequence[str], splits: Mapping[str, str],
              skipped: Sequence[tuple[str, str, str]]) -> str:
    """A few lines for the CLI: kept/skipped counts by reason and split, vocabulary size."""
    split_counts = Counter(splits.values())
    reasons = Counter(reason.split(" (")[0] for _, _, reason in skipped)
    per_split = ", ".join(f"{split} {split_counts[split]}" for split in ("train", "valid", "test"))
    lines = [f"{name}: kept {len(master)} tracks ({per_split}), {len(vocabulary)} tags, skipped {len(skipped)}"]
    lines += [f"  skipped {n}: {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines)


def hash_fraction(key: str, salt: str = "") -> float:
    """A stable number in [0, 1) from `key`: the first 8 bytes of SHA-1 of `salt + key` (never `hash()`)."""
    digest = hashlib.sha1(f"{salt}{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def salted_sha1_split(key: str, percentages: Sequence[float], salt: str = "") -> str:
    """"train", "valid" or "test" for `key`, with probabilities `percentages` (train, valid, test; any scale).

    The converters' splitter: SHA-1 of `salt + key` as a fraction of the percentages' sum. Preprocessing's
    (`tfrecords.plan.sha256_split`) is another algorithm, kept because each decides where users' tracks already are."""
    total = float(sum(percentages))
    point, edge = hash_fraction(key, salt) * total, 0.0
    for split, share in zip(SPLITS, percentages):
        edge += share
        if point < edge:
            return split
    return next(split for split, share in reversed(list(zip(SPLITS, percentages))) if share > 0)


def skip_reasons(skipped: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """Skipped tracks per reason, the reason's details (in parentheses) left out."""
    return dict(Counter(reason.split(" (")[0] for _, _, reason in skipped))


def conversion_result(name: str, out_dir: Path, outputs: Mapping[str, Path], master: pd.DataFrame,
                      tags_per_track: Mapping[str, Sequence[str]], vocabulary: Sequence[str],
                      splits: Mapping[str, str], skipped: Sequence[tuple[str, str, str]]) -> dict:
    """Write the four outputs and return what every converter's `run` returns.

    Returns:
        {"kept": n, "skipped": n, "tags": [...], "splits": {split: n}, "reasons": {reason: n},
         "summary": str, "outputs": {file name: path}}
    """
    require_kept(name, master, skipped)
    write_dataset_outputs(out_dir, master, tags_per_track, vocabulary, splits, skipped)
    return {"kept": len(master), "skipped": len(skipped), "tags": list(vocabulary),
            "splits": dict(Counter(splits.values())), "reasons": skip_reasons(skipped),
            "summary": summarise(name, master, vocabulary, splits, skipped),
            "outputs": {name: str(path) for name, path in outputs.items()}}
