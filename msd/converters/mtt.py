"""MagnaTagATune -> the cleaning stage's outputs, so `tfrecords/preprocessing.py` runs unchanged.

Inputs (the official MagnaTagATune release):
    annotations_final.csv   tab-separated despite its name: `clip_id`, 188 binary tag columns, `mp3_path`
                            (e.g. `f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3`)
    clip_info_final.csv     tab-separated: clip_id, track_number, title, artist, album, url, segmentStart,
                            segmentEnd, original_url, mp3_path (optional: gives the artist names)
    0/ .. f/                the 16 audio folders of mono 16 kHz mp3 clips of about 29 s

Outputs in OUT_DIR (the same shapes as the MSD cleaning's `ultimate.csv` and `clean_lastfm.db`):
    ultimate.csv            one row per kept clip: track_id (= clip id), artist_id, mp3_path (relative to the
                            audio root), file_size (bytes), channels, sample_rate (Hz), clip_length (s),
                            folder, artist, album, title
    clean_tags.db           sqlite3 tids(tid TEXT), tags(tag TEXT), tid_tag(tid INTEGER, tag INTEGER, val FLOAT);
                            ids are ROWIDs, val 100 for a present tag, tags by popularity (desc) then name
    split.csv               track_id,split for `preprocessing.py --split-file`: the standard split by folder,
                            `0`-`b` train, `c` valid, `d`-`f` test
    skipped.csv             track_id,mp3_path,reason for every clip left out (known-bad, empty, corrupt, missing)

The dataset-independent output helpers here (`check_audio`, `write_dataset_outputs`, ...) are shared
with `msd.fma`.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from importlib import resources  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Mapping, Sequence  # noqa: E402

import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402

from orpheus.cli import add_common_args, make_parser, run_main  # noqa: E402
from orpheus.errors import DataFormatError  # noqa: E402
from orpheus.files import atomic_path, check_output, require_dir, require_file, write_csv_atomic  # noqa: E402
from orpheus.parallel import parallel_map  # noqa: E402

log = logging.getLogger(__name__)

TXT_DIR = Path(str(resources.files("msd").joinpath("txt")))   # package data (setup.cfg)
MTT_TAGS_TXT = TXT_DIR / "mtt_tags.txt"
MTT_SYNONYMS_TXT = TXT_DIR / "mtt_synonyms.txt"
MTT_KNOWN_BAD_TXT = TXT_DIR / "mtt_known_bad.txt"

ANNOTATIONS = "annotations_final.csv"
CLIP_INFO = "clip_info_final.csv"
CLIP_INFO_COLUMNS = ("clip_id", "track_number", "title", "artist", "album", "url", "segmentStart",
                     "segmentEnd", "original_url", "mp3_path")
FOLDERS = tuple("0123456789abcdef")
FOLDER_SPLITS = {**{f: "train" for f in "0123456789ab"}, "c": "valid", **{f: "test" for f in "def"}}

# Output file names, shared with msd.fma.
MASTER_CSV = "ultimate.csv"
TAG_DB = "clean_tags.db"
SPLIT_CSV = "split.csv"
SKIPPED_CSV = "skipped.csv"
OUTPUT_NAMES = (MASTER_CSV, TAG_DB, SPLIT_CSV, SKIPPED_CSV)
AUDIO_COLUMNS = ("file_size", "channels", "sample_rate", "clip_length")
PRESENT_VAL = 100.0
VERIFY_MODES = ("header", "decode")


# ----------------------------------------------------------------------------------------------
# Shared with msd.fma: audio checks, artist ids, tag database, outputs.

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
        with sf.SoundFile(path) as f:
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


def check_outputs(out_dir: Path, overwrite: bool) -> dict[str, Path]:
    """The output paths in `out_dir`, refusing existing ones unless `overwrite` (before any work)."""
    return {name: check_output(out_dir / name, overwrite) for name in OUTPUT_NAMES}


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
    write_csv_atomic(out_dir / SKIPPED_CSV, ("track_id", "mp3_path", "reason"), list(skipped))


def summarise(name: str, master: pd.DataFrame, vocabulary: Sequence[str], splits: Mapping[str, str],
              skipped: Sequence[tuple[str, str, str]]) -> str:
    """A few lines for the CLI: kept/skipped counts by reason and split, vocabulary size."""
    split_counts = Counter(splits.values())
    reasons = Counter(reason.split(" (")[0] for _, _, reason in skipped)
    per_split = ", ".join(f"{split} {split_counts[split]}" for split in ("train", "valid", "test"))
    lines = [f"{name}: kept {len(master)} tracks ({per_split}), {len(vocabulary)} tags, skipped {len(skipped)}"]
    lines += [f"  skipped {n}: {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# MagnaTagATune.

def read_synonyms(path: Path = MTT_SYNONYMS_TXT) -> dict[str, str]:
    """Raw tag -> merged tag, from a synonym file (one group per line, merged tag first, comma-separated)."""
    mapping: dict[str, str] = {}
    for line in read_list_txt(path):
        group = [name.strip() for name in line.split(",") if name.strip()]
        for name in group:
            if name in mapping:
                raise DataFormatError(f"{path}: tag {name!r} is in two synonym groups; keep it in one")
            mapping[name] = group[0]
    return mapping


def read_annotations(path: Path) -> pd.DataFrame:
    """Read annotations_final.csv (tab-separated): clip_id, the binary tag columns, mp3_path.

    Returns:
        DataFrame indexed by nothing, with `clip_id` (str), the tag columns (uint8 0/1) and `mp3_path` (str).
    """
    path = require_file(path, "MagnaTagATune annotations_final.csv")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a tab-separated annotations file ({str(err).splitlines()[0]})") from err
    missing = [c for c in ("clip_id", "mp3_path") if c not in frame.columns]
    tag_columns = [c for c in frame.columns if c not in ("clip_id", "mp3_path")]
    if missing or not tag_columns:
        raise DataFormatError(f"{path}: expected tab-separated columns clip_id, <tag columns>, mp3_path; "
                              f"missing {', '.join(missing) or 'tag columns'} (is it the real annotations_final.csv?)")
    bad_ids = frame.loc[~frame["clip_id"].str.fullmatch(r"\d+"), "clip_id"]
    if len(bad_ids):
        raise DataFormatError(f"{path}: column clip_id: {bad_ids.iloc[0]!r} is not an integer clip id")
    duplicated = frame.loc[frame["clip_id"].duplicated(), "clip_id"]
    if len(duplicated):
        raise DataFormatError(f"{path}: column clip_id: clip {duplicated.iloc[0]} appears twice")
    for column in tag_columns:
        values = frame[column]
        bad = values[~values.isin(("0", "1"))]
        if len(bad):
            raise DataFormatError(f"{path}: tag column {column!r}: value {bad.iloc[0]!r} is not 0 or 1")
    frame[tag_columns] = frame[tag_columns].astype("uint8")
    return frame


def read_clip_info(path: Path) -> pd.DataFrame:
    """Read clip_info_final.csv (tab-separated), indexed by clip_id (str), with artist, album, title."""
    path = require_file(path, "MagnaTagATune clip_info_final.csv")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a tab-separated clip info file ({str(err).splitlines()[0]})") from err
    missing = [c for c in ("clip_id", "artist", "album", "title") if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}; expected the tab-separated "
                              f"columns {', '.join(CLIP_INFO_COLUMNS)}")
    return frame.drop_duplicates("clip_id").set_index("clip_id")


def merge_tag_columns(tags: pd.DataFrame, synonyms: Mapping[str, str]) -> pd.DataFrame:
    """OR together the columns of each synonym group into a column named by its merged tag.

    Args:
        tags: uint8 0/1 [n_clips, n_raw_tags], columns = raw tag names.
        synonyms: raw tag -> merged tag; raw tags not in it stay as they are.

    Returns:
        uint8 0/1 [n_clips, n_merged_tags], columns in order of first appearance.
    """
    return tags.T.groupby(lambda name: synonyms.get(name, name), sort=False).max().T.astype("uint8")


def folder_of(mp3_path: str) -> str:
    """The audio folder of an MTT mp3_path (`f/abc.mp3` -> `f`), '' when it has none."""
    head, _, rest = mp3_path.partition("/")
    return head if rest else ""


def artist_from_mp3_path(mp3_path: str) -> str:
    """The artist part of an MTT file name.

    `f/american_bach_soloists-j_s__bach-01-bwv54-30-59.mp3` -> `american_bach_soloists`.
    """
    return Path(mp3_path).name.split("-")[0]


def run(out_dir: str | Path, root_dir: str | Path, *, annotations: str | Path | None = None,
        clip_info: str | Path | None = None, merge_synonyms: bool = False, top: int | None = None,
        discard_no_tag: bool = False, verify: str = "header", jobs: int = 1, quiet: bool = False,
        overwrite: bool = False) -> dict:
    """Convert MagnaTagATune into OUT_DIR/{ultimate.csv, clean_tags.db, split.csv, skipped.csv}.

    Args:
        out_dir: output folder.
        root_dir: the MTT root holding the audio folders 0..f (and by default the two CSVs).
        annotations: annotations_final.csv; default ROOT/annotations_final.csv.
        clip_info: clip_info_final.csv; default ROOT/clip_info_final.csv when present, else artists come
            from the mp3 file names.
        merge_synonyms: merge the synonym groups of msd/txt/mtt_synonyms.txt.
        top: keep only the `top` most frequent tags (after merging).
        discard_no_tag: skip clips left with no tag (reported), as most MTT studies do.
        verify: "header" (open and decode the first frames) or "decode" (decode every file to the end).
        jobs: worker processes for the audio checks.

    Returns:
        {"kept": n, "skipped": n, "tags": [...], "splits": {split: n}, "reasons": {reason: n}}
    """
    out_dir, root_dir = Path(out_dir), require_dir(root_dir, "MagnaTagATune audio root")
    if top is not None and top < 1:
        raise DataFormatError(f"--top must be at least 1, got {top}")
    outputs = check_outputs(out_dir, overwrite)
    frame = read_annotations(Path(annotations) if annotations else root_dir / ANNOTATIONS)
    if clip_info is None and (root_dir / CLIP_INFO).is_file():
        clip_info = root_dir / CLIP_INFO
    info = read_clip_info(Path(clip_info)) if clip_info else None
    known_bad = set(read_list_txt(MTT_KNOWN_BAD_TXT))

    tag_columns = [c for c in frame.columns if c not in ("clip_id", "mp3_path")]
    tags = frame[tag_columns]
    if merge_synonyms:
        synonyms = read_synonyms()
        unknown = sorted(set(synonyms) - set(tag_columns))
        if unknown:
            log.warning("synonym tags not among the annotation columns (ignored): %s", ", ".join(unknown))
        tags = merge_tag_columns(tags, synonyms)

    clip_ids, mp3_paths = list(frame["clip_id"]), list(frame["mp3_path"])
    skipped: list[tuple[str, str, str]] = []
    candidates: list[int] = []
    for row, (clip_id, mp3_path) in enumerate(zip(clip_ids, mp3_paths)):
        if clip_id in known_bad:
            skipped.append((clip_id, mp3_path, f"known-bad clip (listed in {MTT_KNOWN_BAD_TXT.name})"))
        elif not mp3_path:
            skipped.append((clip_id, mp3_path, "no mp3_path in annotations"))
        elif folder_of(mp3_path) not in FOLDER_SPLITS:
            skipped.append((clip_id, mp3_path, "mp3_path not in one of the folders 0..f (no standard split)"))
        else:
            candidates.append(row)
    checks = check_audio_files(root_dir, [mp3_paths[r] for r in candidates], mode=verify, jobs=jobs, quiet=quiet)
    kept_rows = []
    for row, check in zip(candidates, checks):
        if check.reason:
            skipped.append((clip_ids[row], mp3_paths[row], check.reason))
        else:
            kept_rows.append((row, check))

    tag_names = list(tags.columns)
    tag_matrix = tags.to_numpy()
    tags_per_track = {clip_ids[row]: [tag_names[j] for j in tag_matrix[row].nonzero()[0]] for row, _ in kept_rows}
    vocabulary = rank_tags(tags_per_track, top)
    in_vocabulary = set(vocabulary)
    if discard_no_tag:
        untagged = {tid for tid, names in tags_per_track.items() if not in_vocabulary.intersection(names)}
        skipped += [(clip_ids[row], mp3_paths[row], "no tag among the kept tags")
                    for row, _ in kept_rows if clip_ids[row] in untagged]
        kept_rows = [(row, check) for row, check in kept_rows if clip_ids[row] not in untagged]
        tags_per_track = {tid: names for tid, names in tags_per_track.items() if tid not in untagged}

    records = []
    for row, check in kept_rows:
        clip_id, mp3_path = clip_ids[row], mp3_paths[row]
        meta = info.loc[clip_id] if info is not None and clip_id in info.index else None
        artist = meta["artist"] if meta is not None else ""
        artist_id = artist_id_from_name(artist) or artist_id_from_name(artist_from_mp3_path(mp3_path))
        records.append({"track_id": clip_id, "artist_id": artist_id, "mp3_path": mp3_path,
                        "file_size": check.file_size, "channels": check.channels,
                        "sample_rate": check.sample_rate, "clip_length": check.clip_length,
                        "folder": folder_of(mp3_path), "artist": artist,
                        "album": meta["album"] if meta is not None else "",
                        "title": meta["title"] if meta is not None else ""})
    columns = ["track_id", "artist_id", "mp3_path", *AUDIO_COLUMNS, "folder", "artist", "album", "title"]
    master = pd.DataFrame.from_records(records, columns=columns)
    splits = {rec["track_id"]: FOLDER_SPLITS[rec["folder"]] for rec in records}
    skipped.sort(key=lambda item: int(item[0]))
    write_dataset_outputs(out_dir, master, tags_per_track, vocabulary, splits, skipped)
    summary = {"kept": len(master), "skipped": len(skipped), "tags": vocabulary,
               "splits": dict(Counter(splits.values())),
               "reasons": dict(Counter(reason.split(" (")[0] for _, _, reason in skipped)),
               "summary": summarise("MagnaTagATune", master, vocabulary, splits, skipped),
               "outputs": {name: str(path) for name, path in outputs.items()}}
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m msd.mtt",
        "Convert MagnaTagATune (annotations_final.csv, clip_info_final.csv, audio folders 0..f) into the "
        "cleaning stage's outputs: OUT_DIR/ultimate.csv, clean_tags.db, split.csv (standard split by "
        "folder: 0-b train, c valid, d-f test) and skipped.csv.",
        "examples:\n"
        "  # the common setting of the literature: merged synonyms, top 50 tags\n"
        "  python -m msd.mtt mtt_clean --root-dir ~/data/magnatagatune --merge-synonyms --top 50\n"
        "  # then shard it with the standard split\n"
        "  python tfrecords/preprocessing.py log-mel-spectrogram mtt_shards --csv-path mtt_clean/ultimate.csv \\\n"
        "      --tag-path mtt_clean/clean_tags.db --root-dir ~/data/magnatagatune --split-file mtt_clean/split.csv\n"
        "  # a miniature copy to try it on\n"
        "  python -m msd.miniature.synthetic_mtt mini_mtt --clips 64 && python -m msd.mtt mini_clean --root-dir mini_mtt")
    parser.add_argument("out_dir", help="output folder for ultimate.csv, clean_tags.db, split.csv, skipped.csv")
    parser.add_argument("--root-dir", required=True, help="MagnaTagATune root with the audio folders 0..f")
    parser.add_argument("--annotations", help="annotations_final.csv (default: ROOT/annotations_final.csv)")
    parser.add_argument("--clip-info", help="clip_info_final.csv for artist names (default: ROOT/clip_info_final.csv "
                                            "when present, else artists from the mp3 file names)")
    parser.add_argument("--merge-synonyms", action="store_true",
                        help=f"merge the synonym groups of {MTT_SYNONYMS_TXT.relative_to(TXT_DIR.parent.parent)}")
    parser.add_argument("--top", type=int, default=None, help="keep only the N most frequent tags (e.g. 50)")
    parser.add_argument("--discard-no-tag", action="store_true", help="skip (and report) clips left with no tag")
    parser.add_argument("--verify", choices=VERIFY_MODES, default="header",
                        help="audio check: open and decode the first frames, or decode every file fully")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        result = run(args.out_dir, args.root_dir, annotations=args.annotations, clip_info=args.clip_info,
                     merge_synonyms=args.merge_synonyms, top=args.top, discard_no_tag=args.discard_no_tag,
                     verify=args.verify, jobs=args.jobs, quiet=args.quiet, overwrite=args.overwrite)
        print(result["summary"])
        return 0

    return run_main(parser, argv, command)


if __name__ == "__main__":
    sys.exit(main())
