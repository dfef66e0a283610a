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

The dataset-independent helpers (`check_audio`, `write_dataset_outputs`, ...) live in
`msd.converters.common`, shared with fma, jamendo and labels.
"""

from __future__ import annotations


import argparse
import logging
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from msd.converters.common import add_verify_arg
from msd.converters.common import (AUDIO_COLUMNS, TXT_DIR, artist_id_from_name,
                                   check_audio_files, check_outputs, conversion_result, rank_tags,
                                   read_list_txt)
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError
from orpheus.files import require_dir, require_file

log = logging.getLogger(__name__)

MTT_TAGS_TXT = TXT_DIR / "mtt_tags.txt"
MTT_SYNONYMS_TXT = TXT_DIR / "mtt_synonyms.txt"
MTT_KNOWN_BAD_TXT = TXT_DIR / "mtt_known_bad.txt"

ANNOTATIONS = "annotations_final.csv"
CLIP_INFO = "clip_info_final.csv"
CLIP_INFO_COLUMNS = ("clip_id", "track_number", "title", "artist", "album", "url", "segmentStart",
                     "segmentEnd", "original_url", "mp3_path")
FOLDERS = tuple("0123456789abcdef")
FOLDER_SPLITS = {**{f: "train" for f in "0123456789ab"}, "c": "valid", **{f: "test" for f in "def"}}


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
    outputs = check_outputs(out_dir, overwrite, inputs=[(root_dir, "MagnaTagATune root")])
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
    result = conversion_result("MagnaTagATune", out_dir, outputs, master, tags_per_track, vocabulary, splits,
                               skipped)
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus mtt",
        "Convert MagnaTagATune (annotations_final.csv, clip_info_final.csv, audio folders 0..f) into the "
        "cleaning stage's outputs: OUT_DIR/ultimate.csv, clean_tags.db, split.csv (standard split by "
        "folder: 0-b train, c valid, d-f test) and skipped.csv.",
        "examples:\n"
        "  # the common setting of the literature: merged synonyms, top 50 tags\n"
        "  orpheus mtt mtt_clean --root-dir ~/data/magnatagatune --merge-synonyms --top 50\n"
        "  # then shard it with the standard split\n"
        "  python tfrecords/preprocessing.py log-mel-spectrogram mtt_shards --csv-path mtt_clean/ultimate.csv \\\n"
        "      --tag-path mtt_clean/clean_tags.db --root-dir ~/data/magnatagatune --split-file mtt_clean/split.csv\n"
        "  # a miniature copy to try it on\n"
        "  orpheus synthetic-mtt mini_mtt --clips 64 && orpheus mtt mini_clean --root-dir mini_mtt")
    parser.add_argument("out_dir", help="output folder for ultimate.csv, clean_tags.db, split.csv, skipped.csv")
    parser.add_argument("--root-dir", required=True, help="MagnaTagATune root with the audio folders 0..f")
    parser.add_argument("--annotations", help="annotations_final.csv (default: ROOT/annotations_final.csv)")
    parser.add_argument("--clip-info", help="clip_info_final.csv for artist names (default: ROOT/clip_info_final.csv "
                                            "when present, else artists from the mp3 file names)")
    parser.add_argument("--merge-synonyms", action="store_true",
                        help=f"merge the synonym groups of {MTT_SYNONYMS_TXT.relative_to(TXT_DIR.parent.parent)}")
    parser.add_argument("--top", type=int, default=None, help="keep only the N most frequent tags (e.g. 50)")
    parser.add_argument("--discard-no-tag", action="store_true", help="skip (and report) clips left with no tag")
    add_verify_arg(parser)
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
