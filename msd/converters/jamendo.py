"""MTG-Jamendo -> the cleaning stage's outputs, so `tfrecords/preprocessing.py` runs unchanged.

Inputs (the `data/` folder of the mtg-jamendo-dataset repository, and its audio):
    data/autotagging_<subset>.tsv    the subset's tracks (optional here: when present, its tracks missing from
                                     the split files are reported); subset "all" reads data/autotagging.tsv
    data/splits/split-<N>/autotagging_<subset>-{train,validation,test}.tsv   the official split N (0..4)
                                     (subset "all": autotagging-{train,validation,test}.tsv)
    Every TSV is tab-separated with the header TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS, where TAGS
    is a variable number of further fields `<category>---<tag>` (category genre, instrument or mood/theme):
        track_0000214  artist_000014  album_000031  14/214.mp3  124.6  genre---rock  instrument---guitar
    AUDIO_ROOT/<NN>/<id>.mp3         the audio, PATH relative to the root; or AUDIO_ROOT/<NN>/<id>.low.mp3,
                                     the names of the official low-quality download (audio-low): each
                                     track is found under either name, no flag needed, and the summary
                                     says how many were found under each

Tags and tracks come from the split files: they are the benchmark's, and drop the few tags the subset file
has that are not in all three splits.

Outputs in OUT_DIR, the same as `msd.converters.mtt`'s and `msd.converters.fma`'s (see `msd.converters.common`):
    ultimate.csv      one row per kept track: track_id (`track_0000214`), artist_id (`artist_000014`), mp3_path
                      (PATH, or its `.low.mp3` name where that is the file found), file_size, channels, sample_rate, clip_length (s), album_id, duration (s, from
                      the metadata); with --excerpt-s also audio_start, audio_end (s): the middle excerpt that
                      preprocessing then decodes instead of the whole track
    clean_tags.db     tids/tags/tid_tag, val 100. Tag names (--tag-names): "short" (default) drops the
                      category, `genre---rock` -> `rock`, except where two categories share a name
                      (both then keep their full names, so names stay unique); "full" keeps `genre---rock`
    split.csv         track_id,split from split N: train/validation/test -> train/valid/test
    skipped.csv       track_id,mp3_path,reason: audio missing/empty/corrupt, in two split files, in the subset
                      file but in none of the split files
"""

from __future__ import annotations


import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from msd.converters.common import add_verify_arg
from msd.converters.common import (AUDIO_COLUMNS, check_audio_files, check_outputs,
                                   conversion_result, rank_tags, read_text_input)
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError, MissingInputError
from orpheus.files import require_dir

log = logging.getLogger(__name__)

SUBSETS = ("top50tags", "genre", "instrument", "moodtheme", "all")
N_SPLITS = 5
CATEGORIES = ("genre", "instrument", "mood/theme")
TAG_SEPARATOR = "---"
HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
OFFICIAL_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
TAG_NAME_MODES = ("short", "full")
ID_PATTERNS = {"TRACK_ID": re.compile(r"track_\d+"), "ARTIST_ID": re.compile(r"artist_\d+"),
               "ALBUM_ID": re.compile(r"album_\d+")}
ID_EXAMPLES = {"TRACK_ID": "track_0000214", "ARTIST_ID": "artist_000014", "ALBUM_ID": "album_000031"}


@dataclass(frozen=True)
class JamendoTrack:
    """One row of an MTG-Jamendo TSV; `tags` are the raw `<category>---<tag>` fields, `where` is `file:line`."""
    track_id: str
    artist_id: str
    album_id: str
    path: str
    duration_s: float
    tags: tuple[str, ...]
    where: str


def subset_stem(subset: str) -> str:
    """`top50tags` -> `autotagging_top50tags`; `all` -> `autotagging`."""
    return "autotagging" if subset == "all" else f"autotagging_{subset}"


def split_file(metadata_dir: Path, subset: str, split_index: int, name: str) -> Path:
    """data/splits/split-N/autotagging_<subset>-<name>.tsv (name: train, validation or test)."""
    return metadata_dir / "splits" / f"split-{split_index}" / f"{subset_stem(subset)}-{name}.tsv"


def audio_path(track_number: int) -> str:
    """The real layout of the audio below its root: 214 -> `14/214.mp3` (folder = last two digits)."""
    return f"{track_number % 100:02d}/{track_number}.mp3"


LOW_QUALITY_SUFFIX = ".low.mp3"   # the official audio-low download: 14/214.low.mp3 for the metadata's 14/214.mp3
LAYOUTS = ("NN/ID.mp3", "NN/ID.low.mp3")


def low_quality_path(path: str) -> str:
    """The low-quality download's name of a metadata PATH: `14/214.mp3` -> `14/214.low.mp3`."""
    return path[:-len(".mp3")] + LOW_QUALITY_SUFFIX if path.endswith(".mp3") else path


def locate_audio(root_dir: Path, paths: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Each metadata PATH as the file found below `root_dir`: itself, else its `.low.mp3` name (the
    low-quality download), else itself (reported missing later).

    Returns:
        (paths relative to the root, {"NN/ID.mp3": n, "NN/ID.low.mp3": n, "missing": n})
    """
    found, counts = [], dict.fromkeys((*LAYOUTS, "missing"), 0)
    for path in paths:
        low = low_quality_path(path)
        if (root_dir / path).exists():
            found.append(path)
            counts[LAYOUTS[0]] += 1
        elif low != path and (root_dir / low).exists():
            found.append(low)
            counts[LAYOUTS[1]] += 1
        else:
            found.append(path)
            counts["missing"] += 1
    return found, counts


def layout_summary(counts: Mapping[str, int]) -> str:
    """`audio found as NN/ID.low.mp3 (the low-quality download): 34, as NN/ID.mp3: 0, missing: 0`."""
    names = {LAYOUTS[0]: LAYOUTS[0], LAYOUTS[1]: f"{LAYOUTS[1]} (the low-quality download)"}
    order = sorted(LAYOUTS, key=lambda layout: -counts[layout])
    return ("audio found as " + ", as ".join(f"{names[layout]}: {counts[layout]}" for layout in order)
            + f", missing: {counts['missing']}")


def read_tsv(path: Path) -> list[JamendoTrack]:
    """Read one MTG-Jamendo TSV (see the module docstring), in file order.

    Raises:
        DataFormatError: naming the file and line for bad encoding, a wrong header, a short row, a malformed
            id, duration or tag, or a track listed twice.
    """
    path = Path(path)
    text = read_text_input(path, "MTG-Jamendo TSV")
    lines = text.splitlines()
    header = tuple(lines[0].split("\t")) if lines else ()
    if header[:len(HEADER)] != HEADER:
        raise DataFormatError(f"{path}:1: expected the tab-separated header {' '.join(HEADER)}, found "
                              f"{' '.join(header) or 'an empty file'} (is it an mtg-jamendo-dataset TSV?)")
    tracks, first_line = [], {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) < len(HEADER) - 1:
            raise DataFormatError(f"{where}: {len(fields)} tab-separated fields; expected at least 5 "
                                  f"({' '.join(HEADER[:5])}) and then the tags")
        for name, value in zip(HEADER[:3], fields):
            if not ID_PATTERNS[name].fullmatch(value):
                raise DataFormatError(f"{where}: {name} {value!r} does not look like {ID_EXAMPLES[name]}")
        try:
            duration_s = float(fields[4])
        except ValueError as err:
            raise DataFormatError(f"{where}: DURATION {fields[4]!r} is not a number of seconds") from err
        tags = tuple(field for field in fields[5:] if field)
        for tag in tags:
            category, sep, name = tag.partition(TAG_SEPARATOR)
            if not sep or category not in CATEGORIES or not name:
                raise DataFormatError(f"{where}: tag {tag!r} is not <category>---<tag> with category one of "
                                      f"{', '.join(CATEGORIES)}")
        if fields[0] in first_line:
            raise DataFormatError(f"{where}: {fields[0]} is already on line {first_line[fields[0]]}")
        first_line[fields[0]] = number
        if not fields[3] or fields[3].startswith("/") or ".." in fields[3].split("/"):
            raise DataFormatError(f"{where}: PATH {fields[3]!r} must be relative to the audio root, like 14/214.mp3")
        tracks.append(JamendoTrack(fields[0], fields[1], fields[2], fields[3], duration_s, tags, where))
    return tracks


def tag_names(raw_tags: Sequence[str], mode: str) -> dict[str, str]:
    """Raw `<category>---<tag>` -> its output name (see `--tag-names` in the module docstring).

    Short names that two categories share keep their full names, so the mapping stays one-to-one.
    """
    if mode == "full":
        return {raw: raw for raw in raw_tags}
    categories_of: dict[str, set[str]] = {}
    for raw in raw_tags:
        category, _, name = raw.partition(TAG_SEPARATOR)
        categories_of.setdefault(name, set()).add(category)
    shared = sorted(name for name, cats in categories_of.items() if len(cats) > 1)
    if shared:
        log.info("tags in several categories keep their category: %s", ", ".join(shared))
    return {raw: raw if len(categories_of[raw.partition(TAG_SEPARATOR)[2]]) > 1 else raw.partition(TAG_SEPARATOR)[2]
            for raw in raw_tags}


def excerpt_span(length_s: float, excerpt_s: float) -> tuple[float, float]:
    """(audio_start, audio_end) in seconds of the middle `excerpt_s` of a track of `length_s`; all of a shorter one."""
    if length_s <= excerpt_s:
        return 0.0, round(length_s, 3)
    start = round((length_s - excerpt_s) / 2, 3)
    return start, round(start + excerpt_s, 3)


def run(out_dir: str | Path, metadata_dir: str | Path, root_dir: str | Path, *, subset: str = "top50tags",
        split: int = 0, tag_names_mode: str = "short", excerpt_s: float | None = None, verify: str = "header",
        jobs: int = 1, quiet: bool = False, overwrite: bool = False) -> dict:
    """Convert an MTG-Jamendo subset with official split N into OUT_DIR/{ultimate.csv, clean_tags.db,
    split.csv, skipped.csv}.

    Args:
        out_dir: output folder.
        metadata_dir: the repository's `data/` folder (the repository root also works).
        root_dir: the audio root (`NN/ID.mp3` or `NN/ID.low.mp3` below it).
        subset: top50tags, genre, instrument, moodtheme or all.
        split: the official split, 0..4.
        tag_names_mode: "short" (`rock`) or "full" (`genre---rock`).
        excerpt_s: when set, ultimate.csv gets audio_start/audio_end for the middle `excerpt_s` seconds.
        verify: "header" or "decode" (see `msd.converters.common.check_audio`).
        jobs: worker processes for the audio checks.

    Returns:
        {"kept", "skipped", "tags", "splits", "reasons", "summary", "outputs", "layout"} (layout: tracks found
        under each name, see `locate_audio`)
    """
    if subset not in SUBSETS:
        raise DataFormatError(f"unknown --subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if split not in range(N_SPLITS):
        raise DataFormatError(f"--split must be one of 0..{N_SPLITS - 1} (the official splits), got {split}")
    if tag_names_mode not in TAG_NAME_MODES:
        raise DataFormatError(f"unknown --tag-names {tag_names_mode!r}; expected one of {', '.join(TAG_NAME_MODES)}")
    if excerpt_s is not None and excerpt_s <= 0:
        raise DataFormatError(f"--excerpt-s must be positive, got {excerpt_s}")
    out_dir = Path(out_dir)
    metadata_dir = require_dir(metadata_dir, "MTG-Jamendo data folder (--metadata-dir)")
    if not (metadata_dir / "splits").is_dir() and (metadata_dir / "data" / "splits").is_dir():
        metadata_dir = metadata_dir / "data"  # the repository root was given
    root_dir = require_dir(root_dir, "MTG-Jamendo audio root")
    outputs = check_outputs(out_dir, overwrite, inputs=[(metadata_dir, "MTG-Jamendo data folder"),
                                                        (root_dir, "MTG-Jamendo audio root")])

    skipped: list[tuple[str, str, str]] = []
    split_of: dict[str, str] = {}
    file_of: dict[str, Path] = {}
    candidates: list[JamendoTrack] = []
    for name, official in OFFICIAL_SPLITS.items():
        path = split_file(metadata_dir, subset, split, name)
        for track in read_tsv(path):
            if track.track_id in split_of:
                skipped.append((track.track_id, track.path, f"in two split files ({file_of[track.track_id].name} "
                                                            f"and {path.name})"))
                continue
            split_of[track.track_id], file_of[track.track_id] = official, path
            candidates.append(track)
    duplicated = {tid for tid, _, _ in skipped}
    candidates = [track for track in candidates if track.track_id not in duplicated]
    subset_path = metadata_dir / f"{subset_stem(subset)}.tsv"
    if subset_path.is_file():
        skipped += [(t.track_id, t.path, f"in {subset_path.name} but in none of the split-{split} files")
                    for t in read_tsv(subset_path) if t.track_id not in split_of]
    else:
        log.info("%s not found: tracks come from the split files alone", subset_path)
    if not candidates:
        raise DataFormatError(f"{split_file(metadata_dir, subset, split, 'train').parent}: the {subset} split files "
                              "list no tracks")

    found, layout_counts = locate_audio(root_dir, [t.path for t in candidates])
    if layout_counts["missing"] == len(candidates):
        raise MissingInputError(f"{root_dir}: holds the audio of none of the {len(candidates)} tracks, neither as "
                                f"{' nor as '.join(LAYOUTS)} (e.g. {candidates[0].path}); check --root-dir")
    log.info("%s: %s", root_dir, layout_summary(layout_counts))
    checks = check_audio_files(root_dir, found, mode=verify, jobs=jobs, quiet=quiet)
    names = tag_names(sorted({tag for t in candidates for tag in t.tags}), tag_names_mode)
    records, tags_per_track, splits = [], {}, {}
    for track, path, check in zip(candidates, found, checks):
        if check.reason:
            skipped.append((track.track_id, path, check.reason))
            continue
        record = {"track_id": track.track_id, "artist_id": track.artist_id, "mp3_path": path,
                  "file_size": check.file_size, "channels": check.channels, "sample_rate": check.sample_rate,
                  "clip_length": check.clip_length, "album_id": track.album_id, "duration": track.duration_s}
        if excerpt_s is not None:
            record["audio_start"], record["audio_end"] = excerpt_span(check.clip_length or track.duration_s,
                                                                      excerpt_s)
        records.append(record)
        tags_per_track[track.track_id] = [names[tag] for tag in track.tags]
        splits[track.track_id] = split_of[track.track_id]
    columns = ["track_id", "artist_id", "mp3_path", *AUDIO_COLUMNS, "album_id", "duration",
               *(("audio_start", "audio_end") if excerpt_s is not None else ())]
    master = pd.DataFrame.from_records(records, columns=columns).sort_values("track_id", ignore_index=True)
    vocabulary = rank_tags(tags_per_track)
    skipped.sort(key=lambda item: (item[0], item[2]))
    result = conversion_result(f"MTG-Jamendo {subset} split-{split}", out_dir, outputs, master, tags_per_track,
                               vocabulary, splits, skipped)
    result["layout"] = layout_counts
    result["summary"] += f"\n  {layout_summary(layout_counts)}"
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus jamendo",
        "Convert an MTG-Jamendo subset with one of its official splits (the mtg-jamendo-dataset repository's "
        "data/ folder and the audio NN/ID.mp3) into the cleaning stage's outputs: OUT_DIR/ultimate.csv, "
        "clean_tags.db, split.csv and skipped.csv (missing, empty or corrupt audio, tracks in no split file).",
        "examples:\n"
        "  # the top-50 tags benchmark, official split 0, tags without their category (rock, piano, happy)\n"
        "  orpheus jamendo jamendo_clean --metadata-dir mtg-jamendo-dataset/data --root-dir ~/data/jamendo \\\n"
        "      --subset top50tags --split 0 --excerpt-s 30\n"
        "  # mood/theme with the full tag names (mood/theme---happy)\n"
        "  orpheus jamendo moods_clean --metadata-dir mtg-jamendo-dataset/data --root-dir ~/data/jamendo \\\n"
        "      --subset moodtheme --split 2 --tag-names full\n"
        "  # the low-quality download (NN/ID.low.mp3) is found as well, no flag needed\n"
        "  orpheus jamendo jamendo_low --metadata-dir mtg-jamendo-dataset/data --root-dir ~/data/audio_low\n"
        "  # a miniature copy to try it on\n"
        "  orpheus synthetic-jamendo mini_jamendo --tracks 64 && \\\n"
        "      orpheus jamendo mini_clean --metadata-dir mini_jamendo/data --root-dir mini_jamendo/audio")
    parser.add_argument("out_dir", help="output folder for ultimate.csv, clean_tags.db, split.csv, skipped.csv")
    parser.add_argument("--metadata-dir", required=True,
                        help="the repository's data/ folder (autotagging*.tsv and splits/split-N/)")
    parser.add_argument("--root-dir", required=True,
                        help="audio root: NN/ID.mp3 below it, or NN/ID.low.mp3 (the low-quality download)")
    parser.add_argument("--subset", choices=SUBSETS, default="top50tags",
                        help="tag subset; all = every tag (data/autotagging.tsv)")
    parser.add_argument("--split", type=int, choices=range(N_SPLITS), default=0, metavar="0..4",
                        help="official split (data/splits/split-N)")
    parser.add_argument("--tag-names", choices=TAG_NAME_MODES, default="short",
                        help="short: rock (a name two categories share keeps its category); full: genre---rock")
    parser.add_argument("--excerpt-s", type=float, default=None,
                        help="write audio_start/audio_end so preprocessing decodes only the middle N seconds "
                             "(the tracks are full songs)")
    add_verify_arg(parser)
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        result = run(args.out_dir, args.metadata_dir, args.root_dir, subset=args.subset, split=args.split,
                     tag_names_mode=args.tag_names, excerpt_s=args.excerpt_s, verify=args.verify, jobs=args.jobs,
                     quiet=args.quiet, overwrite=args.overwrite)
        print(result["summary"])
        return 0

    return run_main(parser, argv, command)
