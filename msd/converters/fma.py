"""FMA (Free Music Archive) -> the cleaning stage's outputs, so `tfrecords/preprocessing.py` runs unchanged.

Inputs (the official FMA release):
    fma_metadata/tracks.csv   two header rows (read with `pd.read_csv(..., index_col=0, header=[0, 1])`),
                              indexed by track id; used columns: ('set', 'subset'), ('set', 'split'),
                              ('track', 'genre_top'), ('track', 'genres_all') (a Python list literal of
                              genre ids), ('artist', 'id'), and when present ('artist', 'name'), ('track', 'title')
    fma_metadata/genres.csv   genre_id, #tracks, parent, title, top_level
    AUDIO_ROOT/<first 3 digits>/<6-digit id>.mp3   (fma_small, fma_medium, fma_large or fma_full)

Outputs in OUT_DIR, the same as `msd.converters.mtt`'s:
    ultimate.csv      one row per kept track: track_id (the FMA track id), artist_id (('artist', 'id')),
                      mp3_path, file_size (bytes), channels, sample_rate (Hz), clip_length (s), subset,
                      genre_top, artist_name, title
    clean_tags.db     sqlite3 tids/tags/tid_tag: tags are genre titles, val 100, by popularity then name
    split.csv         track_id,split from the official ('set', 'split'): training/validation/test ->
                      train/valid/test
    skipped.csv       track_id,mp3_path,reason: audio missing, empty, corrupt, no official split, ...

Subsets nest: "small" is in "medium", which is in "large" (`--subset medium` keeps small and medium).
"""

from __future__ import annotations


import argparse
import ast
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from msd.converters.common import add_verify_arg
from msd.converters.common import (AUDIO_COLUMNS, check_audio_files, check_outputs,
                                   conversion_result, rank_tags)
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError
from orpheus.files import require_dir, require_file

log = logging.getLogger(__name__)

TRACKS_CSV = "tracks.csv"
GENRES_CSV = "genres.csv"
SUBSETS = ("small", "medium", "large")
TAG_MODES = ("top", "all")
OFFICIAL_SPLITS = {"training": "train", "validation": "valid", "test": "test"}
REQUIRED_TRACK_COLUMNS = (("set", "subset"), ("set", "split"), ("track", "genre_top"), ("track", "genres_all"),
                          ("artist", "id"))
GENRES_COLUMNS = ("genre_id", "#tracks", "parent", "title", "top_level")


def audio_path(track_id: int) -> str:
    """The mp3 of an FMA track relative to the audio root: 2 -> `000/000002.mp3`."""
    name = f"{int(track_id):06d}"
    return f"{name[:3]}/{name}.mp3"


def read_tracks(path: Path) -> pd.DataFrame:
    """Read FMA's tracks.csv (two header rows) as a DataFrame with (level0, level1) columns, index = track id."""
    path = require_file(path, "FMA fma_metadata/tracks.csv")
    try:
        frame = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, IndexError) as err:
        raise DataFormatError(f"{path}: cannot read it as FMA tracks.csv with two header rows "
                              f"({str(err).splitlines()[0]})") from err
    if not isinstance(frame.columns, pd.MultiIndex):
        raise DataFormatError(f"{path}: expected two header rows (e.g. 'set' over 'subset'); is it FMA's tracks.csv?")
    missing = [col for col in REQUIRED_TRACK_COLUMNS if col not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {', '.join(map(str, missing))}; expected FMA's tracks.csv "
                              "with its two header rows")
    try:
        frame.index = frame.index.astype(int)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: the first column must hold integer track ids ({err})") from err
    return frame


def read_genres(path: Path) -> dict[int, str]:
    """Read FMA's genres.csv: genre id -> title."""
    path = require_file(path, "FMA fma_metadata/genres.csv")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a CSV file ({str(err).splitlines()[0]})") from err
    missing = [c for c in ("genre_id", "title") if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(GENRES_COLUMNS)}")
    try:
        ids = frame["genre_id"].astype(int)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: column genre_id must hold integers ({err})") from err
    return dict(zip(ids, frame["title"].astype(str)))


def parse_id_lists(path: Path, column: pd.Series, name: tuple[str, str]) -> dict[int, list[int]]:
    """Parse a column of Python list literals (`'[21, 811]'`) into lists of ints; NaN -> [].

    Raises:
        DataFormatError: naming the file, the column and the track for a malformed literal.
    """
    parsed: dict[int, list[int]] = {}
    for track_id, text in column.items():
        if pd.isna(text):
            parsed[track_id] = []
            continue
        try:
            value = ast.literal_eval(str(text))
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            raise DataFormatError(f"{path}: column {name}, track {track_id}: malformed list literal {text!r} "
                                  f"({type(err).__name__}); expected e.g. [21, 811]") from err
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise DataFormatError(f"{path}: column {name}, track {track_id}: {text!r} is not a list of genre ids")
        parsed[track_id] = list(value)
    return parsed


def run(out_dir: str | Path, metadata_dir: str | Path, root_dir: str | Path, *, subset: str = "small",
        tags: str = "top", top: int | None = None, verify: str = "header", jobs: int = 1, quiet: bool = False,
        overwrite: bool = False) -> dict:
    """Convert an FMA subset into OUT_DIR/{ultimate.csv, clean_tags.db, split.csv, skipped.csv}.

    Args:
        out_dir: output folder.
        metadata_dir: fma_metadata, holding tracks.csv and genres.csv.
        root_dir: the audio root (fma_small, fma_medium, fma_large or fma_full).
        subset: "small", "medium" (small + medium) or "large" (all).
        tags: "top" = ('track', 'genre_top') only; "all" = every genre of ('track', 'genres_all').
        top: keep only the `top` most frequent tags.
        verify: "header" or "decode" (see `msd.converters.common.check_audio`).
        jobs: worker processes for the audio checks.

    Returns:
        {"kept": n, "skipped": n, "tags": [...], "splits": {split: n}, "reasons": {reason: n}, "summary": str}
    """
    if subset not in SUBSETS:
        raise DataFormatError(f"unknown --subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if tags not in TAG_MODES:
        raise DataFormatError(f"unknown --tags {tags!r}; expected one of {', '.join(TAG_MODES)}")
    if top is not None and top < 1:
        raise DataFormatError(f"--top must be at least 1, got {top}")
    out_dir = Path(out_dir)
    metadata_dir = require_dir(metadata_dir, "FMA fma_metadata")
    root_dir = require_dir(root_dir, "FMA audio root")
    outputs = check_outputs(out_dir, overwrite, inputs=[(metadata_dir, "FMA metadata folder"),
                                                        (root_dir, "FMA audio root")])
    tracks_path = metadata_dir / TRACKS_CSV
    tracks = read_tracks(tracks_path)
    genres_path = metadata_dir / GENRES_CSV
    genre_titles = read_genres(genres_path)

    subset_rank = {name: i for i, name in enumerate(SUBSETS)}
    unknown_subsets = sorted(set(tracks[("set", "subset")].dropna().astype(str)) - set(SUBSETS))
    if unknown_subsets:
        raise DataFormatError(f"{tracks_path}: column ('set', 'subset') holds {unknown_subsets[0]!r}; "
                              f"expected one of {', '.join(SUBSETS)}")
    in_subset = tracks[("set", "subset")].map(lambda s: subset_rank.get(s, len(SUBSETS))) <= subset_rank[subset]
    tracks = tracks[in_subset]
    if tags == "all":
        genre_ids = parse_id_lists(tracks_path, tracks[("track", "genres_all")], ("track", "genres_all"))

    # Plain dicts of the used columns: per-track .at lookups on 100k rows of MultiIndex columns are slow.
    def column(level0: str, level1: str) -> dict:
        return tracks[(level0, level1)].to_dict() if (level0, level1) in tracks.columns else {}

    splits_of, subsets, genre_tops = column("set", "split"), column("set", "subset"), column("track", "genre_top")
    artist_ids, artist_names, titles = column("artist", "id"), column("artist", "name"), column("track", "title")
    skipped: list[tuple[str, str, str]] = []
    candidates: list[tuple[int, list[str]]] = []
    for track_id, split in splits_of.items():
        rel = audio_path(track_id)
        if split not in OFFICIAL_SPLITS:
            skipped.append((str(track_id), rel, f"no official split (('set', 'split') = {split!r})"))
            continue
        if tags == "top":
            names = [] if pd.isna(genre_tops[track_id]) else [str(genre_tops[track_id])]
        else:
            unknown = [g for g in genre_ids[track_id] if g not in genre_titles]
            if unknown:
                skipped.append((str(track_id), rel, f"genre id {unknown[0]} not in {GENRES_CSV}"))
                continue
            names = sorted({genre_titles[g] for g in genre_ids[track_id]})
        candidates.append((track_id, names))

    checks = check_audio_files(root_dir, [audio_path(t) for t, _ in candidates], mode=verify, jobs=jobs, quiet=quiet)
    records, tags_per_track, splits = [], {}, {}
    for (track_id, names), check in zip(candidates, checks):
        tid, rel = str(track_id), audio_path(track_id)
        if check.reason:
            skipped.append((tid, rel, check.reason))
            continue
        artist_id = artist_ids[track_id]
        records.append({"track_id": tid, "artist_id": "" if pd.isna(artist_id) else str(int(artist_id)),
                        "mp3_path": rel, "file_size": check.file_size, "channels": check.channels,
                        "sample_rate": check.sample_rate, "clip_length": check.clip_length,
                        "subset": subsets[track_id], "genre_top": _text(genre_tops[track_id]),
                        "artist_name": _text(artist_names.get(track_id)), "title": _text(titles.get(track_id))})
        tags_per_track[tid] = names
        splits[tid] = OFFICIAL_SPLITS[splits_of[track_id]]
    columns = ["track_id", "artist_id", "mp3_path", *AUDIO_COLUMNS, "subset", "genre_top", "artist_name", "title"]
    master = pd.DataFrame.from_records(records, columns=columns)
    vocabulary = rank_tags(tags_per_track, top)
    skipped.sort(key=lambda item: int(item[0]))
    result = conversion_result(f"FMA {subset}", out_dir, outputs, master, tags_per_track, vocabulary, splits,
                               skipped)
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return result


def _text(value: object) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus fma",
        "Convert an FMA subset (fma_metadata/tracks.csv, genres.csv, audio <000>/<000002>.mp3) into the "
        "cleaning stage's outputs: OUT_DIR/ultimate.csv, clean_tags.db (genre titles), split.csv (the official "
        "split) and skipped.csv (missing, empty or corrupt audio).",
        "examples:\n"
        "  # fma_small, one tag per track (its top genre), official split\n"
        "  orpheus fma fma_small_clean --metadata-dir ~/data/fma_metadata --root-dir ~/data/fma_small\n"
        "  # fma_medium with every genre of each track (multi-label)\n"
        "  orpheus fma fma_medium_clean --metadata-dir ~/data/fma_metadata --root-dir ~/data/fma_medium \\\n"
        "      --subset medium --tags all\n"
        "  # a miniature copy to try it on\n"
        "  orpheus synthetic-fma mini_fma --tracks 64 && \\\n"
        "      orpheus fma mini_clean --metadata-dir mini_fma/fma_metadata --root-dir mini_fma/fma_large "
        "--subset large")
    parser.add_argument("out_dir", help="output folder for ultimate.csv, clean_tags.db, split.csv, skipped.csv")
    parser.add_argument("--metadata-dir", required=True, help="fma_metadata folder with tracks.csv and genres.csv")
    parser.add_argument("--root-dir", required=True, help="audio root: <000>/<000002>.mp3 below it")
    parser.add_argument("--subset", choices=SUBSETS, default="small",
                        help="tracks of this subset and the smaller ones (small < medium < large)")
    parser.add_argument("--tags", choices=TAG_MODES, default="top",
                        help="top: ('track', 'genre_top') only; all: every genre of ('track', 'genres_all')")
    parser.add_argument("--top", type=int, default=None, help="keep only the N most frequent tags")
    add_verify_arg(parser)
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        result = run(args.out_dir, args.metadata_dir, args.root_dir, subset=args.subset, tags=args.tags,
                     top=args.top, verify=args.verify, jobs=args.jobs, quiet=args.quiet, overwrite=args.overwrite)
        print(result["summary"])
        return 0

    return run_main(parser, argv, command)
