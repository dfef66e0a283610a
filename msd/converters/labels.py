"""Your own labelled audio -> the cleaning stage's outputs, so `tfrecords/preprocessing.py` runs unchanged.

Inputs, one of:
    --labels labels.csv   a CSV with a header row and the columns `file,tags[,artist][,split]` (any order;
                          other columns are ignored): `file` is relative to --root-dir (default: the CSV's
                          folder), `tags` are separated by `;` (`rock; guitar`), `artist` groups the split,
                          `split` (train | valid | test; also training, validation, val) fixes a row's split
    --from-folders ROOT   ROOT/<tag>/.../<file>: each top-level folder is a tag. A file is identified by its
                          path below its tag folder, so `rock/a.mp3` and `guitar/a.mp3` are one track with
                          both tags (its audio is read from the first tag folder by name); files directly
                          in ROOT or with another extension than mp3/ogg/opus/flac/wav are reported, hidden files
                          and folders (a leading dot) are ignored

Outputs in OUT_DIR, the same as `msd.converters.mtt`'s and `msd.converters.fma`'s (see `msd.converters.common`):
    ultimate.csv           one row per kept track: track_id (the file's path below the root, or below its tag
                           folder), artist_id (a hash of the artist's name, '' without one), mp3_path
                           (relative to the root), file_size, channels, sample_rate, clip_length, artist
    clean_tags.db          tids/tags/tid_tag: the tags as written (surrounding spaces stripped), val 100
    split.csv              track_id,split: the `split` column where given, else a SHA-1 hash of the artist
                           (of the track id without one) against --split percentages, so no artist lands in
                           two splits unless its rows say so; an artist's rows without a split follow its
                           explicit one
    skipped.csv            track_id,mp3_path,reason: audio missing/empty/corrupt, no tags, duplicate rows,
                           no tag left after --min-count, not in a tag folder, not an audio file
    clean_tags.dropped.csv tag,tracks,reason: the tags left out by --min-count
"""

from __future__ import annotations


import argparse
import csv
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import pandas as pd

from msd.converters.common import add_verify_arg
from msd.converters.common import (AUDIO_COLUMNS, SPLITS, TAG_DB, artist_id_from_name,
                                   check_audio_files, check_outputs, conversion_result, salted_sha1_split, rank_tags,
                                   read_text_input)
from msd.drop_report import dropped_path
from orpheus.audio.decode import AUDIO_EXTENSIONS
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError
from orpheus.files import require_dir, walk_files, write_csv_atomic
from orpheus.ownership import csv_kind

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("file", "tags")
OPTIONAL_COLUMNS = ("artist", "split")
SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
               "test": "test"}
TAG_SEPARATOR = ";"
DROPPED_TAGS_CSV = dropped_path(TAG_DB).name  # clean_tags.dropped.csv
DROPPED_TAGS_COLUMNS = ("tag", "tracks", "reason")
DROPPED_TAGS = csv_kind("dropped-tag report", DROPPED_TAGS_COLUMNS)
DEFAULT_SPLIT = (80.0, 10.0, 10.0)


@dataclass
class Track:
    """One labelled file: `track_id` its stable key, `mp3_path` its audio below the root."""
    track_id: str
    mp3_path: str
    tags: list[str]
    artist: str = ""
    split: str = ""                  # "" = decided by hash
    where: str = ""                  # "labels.csv:12" or the tag folders, for messages
    folders: list[str] = field(default_factory=list)


def parse_tags(text: str) -> list[str]:
    """`'rock; guitar;;rock'` -> `['rock', 'guitar']`: split on `;`, stripped, empties and repeats dropped."""
    tags = (tag.strip() for tag in text.split(TAG_SEPARATOR))
    return list(dict.fromkeys(tag for tag in tags if tag))


def clean_relative_path(text: str, where: str) -> str:
    """The POSIX form of a path relative to the root; absolute paths and `..` are errors naming `where`."""
    text = text.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or (len(text) > 1 and text[1] == ":"):
        raise DataFormatError(f"{where}: file {text!r} must be a path relative to --root-dir (no leading /, no ..)")
    return str(path)


def read_labels_csv(path: Path) -> list[Track]:
    """Read labels.csv (see the module docstring) into Tracks in file order.

    Raises:
        DataFormatError: naming the file and line for bad encoding, missing columns, a row with the wrong
            number of fields, an unknown split name or a bad path.
    """
    path = Path(path)
    text = read_text_input(path, "labels CSV", encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader, [])]  # `File,Tags` works too
    except csv.Error as err:
        raise DataFormatError(f"{path}:1: {err}") from err
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DataFormatError(f"{path}:1: missing column(s) {', '.join(missing)}; expected a header row "
                              f"file,tags[,artist][,split] (found {','.join(header) or 'an empty file'})")
    ignored = [name for name in header if name not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if ignored:
        log.info("%s: ignoring column(s) %s", path, ", ".join(ignored))
    column = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if name in header}
    tracks = []
    try:
        for fields in reader:
            where = f"{path}:{reader.line_num}"
            if not any(value.strip() for value in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise DataFormatError(f"{where}: {len(fields)} fields, but the header has {len(header)} "
                                      f"({','.join(header)}); quote values that hold commas")
            split_text = fields[column["split"]].strip().lower() if "split" in column else ""
            if split_text and split_text not in SPLIT_NAMES:
                raise DataFormatError(f"{where}: split {fields[column['split']]!r} is not one of "
                                      f"{', '.join(SPLITS)} (or empty for a hash split)")
            rel = clean_relative_path(fields[column["file"]], where)
            tracks.append(Track(rel, rel, parse_tags(fields[column["tags"]]),
                                fields[column["artist"]].strip() if "artist" in column else "",
                                SPLIT_NAMES.get(split_text, ""), where))
    except csv.Error as err:
        raise DataFormatError(f"{path}:{reader.line_num}: {err}") from err
    return tracks


def scan_tag_folders(root: Path) -> tuple[list[Track], list[tuple[str, str, str]]]:
    """Tracks from ROOT/<tag>/...: one per path below the tag folders, with every tag it is found under.

    Returns:
        (tracks sorted by track_id, skipped (track_id, mp3_path, reason) for files not in a tag folder,
        not audio files and unreadable folders)
    """
    by_id: dict[str, Track] = {}
    skipped = []

    def unreadable(err: OSError) -> None:  # a folder that cannot be listed is reported, not skipped silently
        rel = Path(err.filename).relative_to(root).as_posix() if err.filename else "."
        skipped.append((rel, rel, f"folder unreadable ({err.strerror or err})"))

    by_real: dict[str, Track] = {}   # a file reached by two paths (a link) is one track, with the tags of both
    for path, real in walk_files(root, hidden=False, on_error=unreadable):
        rel_path = path.relative_to(root)
        rel, rel_dir = rel_path.as_posix(), rel_path.parent
        if not rel_dir.parts:
            skipped.append((rel, rel, "not in a tag folder (expected ROOT/<tag>/<file>)"))
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped.append((rel, rel, f"not an audio file (extension not one of {', '.join(AUDIO_EXTENSIONS)})"))
            continue
        tag, track_id = rel_dir.parts[0], PurePosixPath(*rel_dir.parts[1:], path.name).as_posix()
        track = by_real.get(real) or by_id.setdefault(track_id, Track(track_id, rel, [], where=f"{root}/{rel}"))
        by_real.setdefault(real, track)
        if track.track_id == track_id:
            track.folders.append(rel)
        if tag not in track.tags:
            track.tags.append(tag)
    for track in by_id.values():  # tag folders are walked in name order: the first copy is the first tag's
        track.mp3_path = min(track.folders)
    return sorted(by_id.values(), key=lambda t: t.track_id), skipped


def assign_splits(tracks: Sequence[Track], percentages: Sequence[float]) -> dict[str, str]:
    """track_id -> split: the explicit split, else the artist's one explicit split, else a hash.

    The hash key is `artist:<name>` when the track has an artist (all its tracks go together), else
    `track:<track_id>`.
    """
    explicit_by_artist: dict[str, set[str]] = {}
    for track in tracks:
        if track.split and track.artist:
            explicit_by_artist.setdefault(track.artist, set()).add(track.split)
    for artist, splits in sorted(explicit_by_artist.items()):
        if len(splits) > 1:
            log.warning("artist %r has rows in the splits %s (as the split column says)", artist,
                        ", ".join(sorted(splits)))
    splits = {}
    for track in tracks:
        artist_splits = explicit_by_artist.get(track.artist, set())
        if track.split:
            splits[track.track_id] = track.split
        elif track.artist and len(artist_splits) == 1:
            splits[track.track_id] = next(iter(artist_splits))
        else:
            key = f"artist:{track.artist}" if track.artist else f"track:{track.track_id}"
            splits[track.track_id] = salted_sha1_split(key, percentages)
    return splits


def check_split_percentages(split: Sequence[float]) -> tuple[float, float, float]:
    if len(split) != 3 or any(share < 0 for share in split) or sum(split) <= 0:
        raise DataFormatError(f"--split needs three percentages (train valid test) >= 0 with a positive sum, "
                              f"got {' '.join(map(str, split))}")
    return tuple(float(share) for share in split)


def run(out_dir: str | Path, *, labels: str | Path | None = None, root_dir: str | Path | None = None,
        from_folders: str | Path | None = None, split: Sequence[float] = DEFAULT_SPLIT, min_count: int = 1,
        verify: str = "header", jobs: int = 1, quiet: bool = False, overwrite: bool = False) -> dict:
    """Convert labelled audio into OUT_DIR/{ultimate.csv, clean_tags.db, split.csv, skipped.csv,
    clean_tags.dropped.csv}.

    Args:
        out_dir: output folder.
        labels: labels.csv (columns file,tags[,artist][,split]); exclusive with `from_folders`.
        root_dir: the audio root the CSV's paths are relative to; default the CSV's folder.
        from_folders: a root of tag folders ROOT/<tag>/...; exclusive with `labels`.
        split: train, valid, test percentages for the tracks without an explicit split.
        min_count: keep only tags on at least this many kept tracks.
        verify: "header" or "decode" (see `msd.converters.common.check_audio`).
        jobs: worker processes for the audio checks.

    Returns:
        {"kept", "skipped", "tags", "splits", "reasons", "summary", "outputs", "dropped_tags": {tag: n}}
    """
    if (labels is None) == (from_folders is None):
        raise DataFormatError("give either --labels labels.csv or --from-folders ROOT")
    percentages = check_split_percentages(split)
    if min_count < 1:
        raise DataFormatError(f"--min-count must be at least 1, got {min_count}")
    out_dir = Path(out_dir)
    extra = {DROPPED_TAGS_CSV: DROPPED_TAGS}
    if labels is not None:
        labels = Path(labels)
        root = require_dir(root_dir if root_dir is not None else labels.parent, "audio root (--root-dir)")
        outputs = check_outputs(out_dir, overwrite, extra, inputs=[(labels, "labels CSV"), (root, "audio root")])
        tracks, skipped = read_labels_csv(labels), []
        name = labels.name
    else:
        root = require_dir(from_folders, "tag folders root (--from-folders)")
        outputs = check_outputs(out_dir, overwrite, extra, inputs=[(root, "tag folders root")], read_whole=[root])
        tracks, skipped = scan_tag_folders(root)
        name = f"tag folders in {root}"
    if not tracks and not skipped:
        raise DataFormatError(f"{labels if labels is not None else root}: no tracks found; see "
                              "`orpheus labels --help` for the expected layout")

    first_row: dict[str, str] = {}
    candidates = []
    for track in tracks:
        if track.track_id in first_row:
            skipped.append((track.track_id, track.mp3_path, f"duplicate row (first at {first_row[track.track_id]})"))
        elif not track.tags:
            first_row[track.track_id] = track.where
            skipped.append((track.track_id, track.mp3_path, "no tags"))
        else:
            first_row[track.track_id] = track.where
            candidates.append(track)
    checks = check_audio_files(root, [t.mp3_path for t in candidates], mode=verify, jobs=jobs, quiet=quiet)
    kept = []
    for track, check in zip(candidates, checks):
        if check.reason:
            skipped.append((track.track_id, track.mp3_path, check.reason))
        else:
            kept.append((track, check))

    counts = Counter(tag for track, _ in kept for tag in track.tags)
    vocabulary = [tag for tag in rank_tags({t.track_id: t.tags for t, _ in kept}) if counts[tag] >= min_count]
    in_vocabulary = set(vocabulary)
    dropped_tags = {tag: n for tag, n in sorted(counts.items()) if tag not in in_vocabulary}
    still_tagged = []
    for track, check in kept:
        if in_vocabulary.intersection(track.tags):
            still_tagged.append((track, check))
        else:
            skipped.append((track.track_id, track.mp3_path,
                            f"no tag on at least {min_count} tracks (--min-count; had {'; '.join(track.tags)})"))
    kept = sorted(still_tagged, key=lambda item: item[0].track_id)
    # all tagged rows, kept or not, so an artist's explicit split holds even if that row's audio is broken
    split_of = assign_splits(candidates, percentages)
    splits = {track.track_id: split_of[track.track_id] for track, _ in kept}

    records = [{"track_id": t.track_id, "artist_id": artist_id_from_name(t.artist), "mp3_path": t.mp3_path,
                "file_size": c.file_size, "channels": c.channels, "sample_rate": c.sample_rate,
                "clip_length": c.clip_length, "artist": t.artist} for t, c in kept]
    master = pd.DataFrame.from_records(records, columns=["track_id", "artist_id", "mp3_path", *AUDIO_COLUMNS,
                                                         "artist"])
    tags_per_track = {t.track_id: [tag for tag in t.tags if tag in in_vocabulary] for t, _ in kept}
    skipped.sort(key=lambda item: (item[0], item[1]))
    result = conversion_result(name, out_dir, outputs, master, tags_per_track, vocabulary, splits, skipped)
    write_csv_atomic(outputs[DROPPED_TAGS_CSV], DROPPED_TAGS_COLUMNS,
                     [(tag, n, f"on {n} track(s), fewer than --min-count {min_count}")
                      for tag, n in dropped_tags.items()])
    empty = [s for s, share in zip(SPLITS, percentages) if share > 0 and s not in result["splits"]]
    if kept and empty:
        log.warning("no track landed in the %s split; with few tracks (or artists) give labels.csv a split "
                    "column or change --split",
                    " and ".join(empty))
    if dropped_tags:
        result["summary"] += f"\n  dropped {len(dropped_tags)} tag(s) below --min-count -> {outputs[DROPPED_TAGS_CSV]}"
    result["dropped_tags"] = dropped_tags
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus labels",
        "Convert your own labelled audio (a labels.csv with file,tags[,artist][,split], or one folder per tag) "
        "into the cleaning stage's outputs: OUT_DIR/ultimate.csv, clean_tags.db, split.csv, skipped.csv (tracks "
        "left out and why) and clean_tags.dropped.csv (tags left out by --min-count).",
        "examples:\n"
        "  # a CSV: file,tags,artist  e.g.  songs/a.mp3,\"rock; guitar\",Iron Trio\n"
        "  orpheus labels my_clean --labels my_music/labels.csv --root-dir my_music --min-count 5\n"
        "  # one folder per tag: my_music/rock/a.mp3, my_music/guitar/a.mp3 (= one track, two tags)\n"
        "  orpheus labels my_clean --from-folders my_music --split 70 15 15\n"
        "  # then shard it with its split\n"
        "  python tfrecords/preprocessing.py log-mel-spectrogram my_shards --csv-path my_clean/ultimate.csv \\\n"
        "      --tag-path my_clean/clean_tags.db --root-dir my_music --split-file my_clean/split.csv")
    parser.add_argument("out_dir", help="output folder for ultimate.csv, clean_tags.db, split.csv, skipped.csv")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="CSV with a header row and the columns file,tags[,artist][,split]")
    source.add_argument("--from-folders", metavar="ROOT", help="audio root with one folder per tag: ROOT/<tag>/...")
    parser.add_argument("--root-dir", help="with --labels: the folder the CSV's paths are relative to "
                                           "(default: the CSV's folder)")
    parser.add_argument("--split", type=float, nargs=3, default=list(DEFAULT_SPLIT), metavar=("TRAIN", "VALID", "TEST"),
                        help="percentages of the hash split for rows without a split column value")
    parser.add_argument("--min-count", type=int, default=1, help="keep only tags on at least N kept tracks")
    add_verify_arg(parser)
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        if args.from_folders and args.root_dir:
            parser.error("--root-dir goes with --labels; with --from-folders the ROOT is the audio root")
        result = run(args.out_dir, labels=args.labels, root_dir=args.root_dir, from_folders=args.from_folders,
                     split=args.split, min_count=args.min_count, verify=args.verify, jobs=args.jobs,
                     quiet=args.quiet, overwrite=args.overwrite)
        print(result["summary"])
        return 0

    return run_main(parser, argv, command)
