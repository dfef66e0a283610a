"""Join `fetcher.csv` with the MSD summary and drop the tracks the dataset cannot use.

Inputs: `fetcher.csv` (see `msd.fetcher`), `msd_summary_file.h5` (groups `metadata`, `analysis`,
`musicbrainz`, each a compound table `songs`, rows aligned), optionally `sid_mismatches.txt`,
`msd_duplicates.txt` and `lastfm_tags.db`.
Outputs: `wrangle.csv` (fetcher columns but `header_error` + `track_id, song_id, artist_id, year`) and, beside it,
`wrangle.dropped.csv` (the dropped rows with a `reason`). A summary of counts per rule is printed.

Drop rules, applied in this order (a row is counted once, under the first rule it breaks):
    zero_size             the mp3 has 0 bytes
    unreadable            fetcher could not read its header (empty clip_length/channels; its
                          header_error, kept in wrangle.dropped.csv, says whether the file was
                          unreadable or corrupt)
    repeated_7digitalid   a second clip with a 7digital id already seen (the first path, sorted, is kept)
    no_summary            no summary row has this track_7digitalid
    ambiguous_7digitalid  several summary rows share this track_7digitalid, so the track is unknown
    mismatched            the track id is listed in sid_mismatches.txt (audio does not match the song)
    untagged              with --discard-no-tag: the track has no row in lastfm_tags.db tid_tag
    duplicate             with --discard-dupl: another member of its msd_duplicates.txt group survives;
                          of each group's members that survive the rules above, the smallest
                          track_id is kept (deterministic, independent of file order)

Everything is vectorised (numpy/pandas); the 1,000,000-row summary is read field by field with h5py.

Example:
    orpheus wrangle fetcher.csv wrangle.csv --path-h5 msd_summary_file.h5 --path-db lastfm_tags.db \\
        --path-txt-mism sid_mismatches.txt --path-txt-dupl msd_duplicates.txt --discard-no-tag --discard-dupl
"""


import argparse
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from msd.drop_report import DROP_REPORT, dropped_path, format_drop_summary
from msd import fetcher
from msd.lastfm import LastFm
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError, DataFormatError
from orpheus.files import atomic_path, check_output, require_file
from orpheus.ownership import csv_kind

log = logging.getLogger(__name__)

SUMMARY_GROUPS = ("metadata", "analysis", "musicbrainz")
SUMMARY_FIELDS = ("track_7digitalid", "track_id", "song_id", "artist_id", "year")
ADDED_COLUMNS = ["track_id", "song_id", "artist_id", "year"]
# fetcher.csv's header_error (absent from older files) is kept for dropped rows only; wrangle.csv has the rest
HEADER_ERROR = "header_error"
FETCHER_COLUMNS = [c for c in fetcher.COLUMNS if c != HEADER_ERROR]
WRANGLE_CSV = csv_kind("wrangle table", FETCHER_COLUMNS + ADDED_COLUMNS)
REASONS = ("zero_size", "unreadable", "repeated_7digitalid", "no_summary", "ambiguous_7digitalid",
           "mismatched", "untagged", "duplicate")
MISMATCH_LINE = re.compile(r"^ERROR: <(SO[A-Z0-9]{16}) (TR[A-Z0-9]{16})>")
TRACK_ID = re.compile(r"^TR[A-Z0-9]{16}$")


# ---- readers ----
def read_fetcher_csv(path: str | Path) -> pd.DataFrame:
    """Read fetcher.csv; raise a one-line `DataFormatError` if a column is missing."""
    path = require_file(path, "fetcher.csv")
    try:
        table = pd.read_csv(path, dtype={"file_path": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); rerun msd/fetcher.py") from err
    missing = [c for c in FETCHER_COLUMNS if c not in table.columns]
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing}; expected fetcher.csv from msd/fetcher.py")
    if not pd.api.types.is_integer_dtype(table["track_7digitalid"]):
        raise DataFormatError(f"{path}: track_7digitalid must be integers; rerun msd/fetcher.py")
    return table


def read_summary(path: str | Path, only_7digitalids: np.ndarray | None = None) -> pd.DataFrame:
    """Read the summary fields `SUMMARY_FIELDS` from an MSD summary HDF5, one field at a time.

    Each field is looked up in the `songs` compound table of the groups metadata, analysis and
    musicbrainz (the real file keeps track_id in analysis and year in musicbrainz). Byte strings are
    decoded as ASCII. With `only_7digitalids`, only rows with one of those ids are kept (all of them,
    so shared ids stay visible), which spares decoding strings of the other rows.

    Returns:
        DataFrame [n_rows] with track_7digitalid (int64), track_id, song_id, artist_id (str), year (int64).

    Raises:
        DataFormatError: not HDF5, a group/table/field is missing, or the tables' rows are not aligned.
    """
    import h5py

    path = require_file(path, "MSD summary HDF5")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not an HDF5 file; pass msd_summary_file.h5 to --path-h5") from err
    columns: dict[str, np.ndarray] = {}
    with h5:
        tables = {}
        for group in SUMMARY_GROUPS:
            node = h5.get(group)
            table = node.get("songs") if isinstance(node, h5py.Group) else None
            if not isinstance(table, h5py.Dataset) or table.dtype.names is None:
                raise DataFormatError(f"{path}: missing compound table /{group}/songs; expected the MSD summary "
                                      "layout (groups metadata, analysis, musicbrainz)")
            tables[group] = table
        lengths = {group: table.shape[0] for group, table in tables.items()}
        if len(set(lengths.values())) != 1:
            raise DataFormatError(f"{path}: /*/songs tables have different row counts {lengths}; the file is damaged")
        for field in SUMMARY_FIELDS:
            group = next((g for g in SUMMARY_GROUPS if field in tables[g].dtype.names), None)
            if group is None:
                raise DataFormatError(f"{path}: field {field!r} not found in /metadata|analysis|musicbrainz/songs; "
                                      "expected the MSD summary layout")
            columns[field] = tables[group][field]  # reads this one field only
    if only_7digitalids is not None:
        keep = np.isin(columns["track_7digitalid"], np.asarray(only_7digitalids))
        columns = {name: values[keep] for name, values in columns.items()}
    frame = pd.DataFrame({
        name: values.astype(str) if values.dtype.kind == "S" else values.astype(np.int64)
        for name, values in columns.items()})
    return frame


def read_mismatches(path: str | Path) -> set[str]:
    """Track ids listed in `sid_mismatches.txt` (`ERROR: <SOxxxx TRxxxx> artist - title != ...`).

    Raises:
        DataFormatError: a non-blank line does not start with `ERROR: <SO... TR...>`; names file and line.
    """
    path = require_file(path, "sid_mismatches.txt")
    tids = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            match = MISMATCH_LINE.match(line)
            if match is None:
                raise DataFormatError(f"{path}:{number}: malformed mismatch line {line.strip()[:60]!r}; expected "
                                      "'ERROR: <SOxxxxxxxxxxxxxxxx TRxxxxxxxxxxxxxxxx> artist - title != ...'")
            tids.add(match.group(2))
    return tids


def read_duplicates(path: str | Path) -> pd.Series:
    """Duplicate groups of `msd_duplicates.txt`: `#` comments, a `%` line opens a group, then track ids.

    Returns:
        Series track_id (str) -> group number (int, 0-based, in file order).

    Raises:
        DataFormatError: a track line before any `%` line, or a line that is not a track id.
    """
    path = require_file(path, "msd_duplicates.txt")
    tids, groups = [], []
    group = -1
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("%"):
                group += 1
                continue
            tid = text.split()[0]
            if group < 0 or not TRACK_ID.match(tid):
                raise DataFormatError(f"{path}:{number}: malformed duplicates line {text[:60]!r}; expected '#' "
                                      "comments, '%' group headers and one track id (TR + 16 characters) per line")
            tids.append(tid)
            groups.append(group)
    series = pd.Series(groups, index=tids, dtype=np.int64)
    return series[~series.index.duplicated(keep="first")]


# ---- rules ----
@dataclass
class WrangleResult:
    kept: pd.DataFrame       # fetcher columns + ADDED_COLUMNS
    dropped: pd.DataFrame    # same columns + reason
    counts: dict[str, int]   # reason -> rows dropped


def apply_rules(fetch: pd.DataFrame, summary: pd.DataFrame, *, mismatched: set[str] | None = None,
                tagged: set[str] | None = None, duplicates: pd.Series | None = None) -> WrangleResult:
    """Join the fetcher table with the summary and apply the drop rules (see the module docstring).

    Args:
        fetch: fetcher table (FETCHER_COLUMNS, and header_error when fetcher wrote it).
        summary: summary table from `read_summary`.
        mismatched: track ids of sid_mismatches.txt, or None to skip the rule.
        tagged: track ids with at least one tag, or None to skip the untagged rule.
        duplicates: track_id -> group (from `read_duplicates`), or None to skip the duplicate rule.
    """
    table = fetch.reindex(columns=FETCHER_COLUMNS + [HEADER_ERROR]).reset_index(drop=True)
    reason = pd.Series(pd.NA, index=table.index, dtype="string")

    def mark(mask, name: str) -> None:
        reason[np.asarray(mask, dtype=bool) & reason.isna().to_numpy()] = name

    mark(table["file_size"].to_numpy() == 0, "zero_size")
    mark(table["clip_length"].isna() | table["channels"].isna(), "unreadable")
    mark(table["track_7digitalid"].duplicated(keep="first"), "repeated_7digitalid")

    id_counts = summary["track_7digitalid"].value_counts()
    n_rows = table["track_7digitalid"].map(id_counts).fillna(0).to_numpy()
    mark(n_rows == 0, "no_summary")
    mark(n_rows > 1, "ambiguous_7digitalid")

    unique = summary[summary["track_7digitalid"].map(id_counts).to_numpy() == 1]
    table = table.merge(unique[["track_7digitalid"] + ADDED_COLUMNS], on="track_7digitalid", how="left",
                        validate="many_to_one")
    if mismatched is not None:
        mark(table["track_id"].isin(mismatched), "mismatched")
    if tagged is not None:
        mark(~table["track_id"].isin(tagged), "untagged")
    if duplicates is not None:
        group = table["track_id"].map(duplicates)
        alive = reason.isna() & group.notna()
        members = pd.DataFrame({"track_id": table["track_id"][alive], "group": group[alive]})
        members = members.sort_values(["group", "track_id"], kind="stable")
        losers = members.index[members["group"].duplicated(keep="first")]
        mask = np.zeros(len(table), dtype=bool)
        mask[losers] = True
        mark(mask, "duplicate")

    table["year"] = table["year"].astype("Int64")
    dropped = table[reason.notna()].assign(reason=reason[reason.notna()])
    kept = table[reason.isna()].drop(columns=HEADER_ERROR).reset_index(drop=True)
    counts = {name: int((reason == name).sum()) for name in REASONS}
    return WrangleResult(kept=kept, dropped=dropped.reset_index(drop=True), counts=counts)


def run(fetcher_csv: str | Path, output: str | Path, *, path_h5: str | Path, path_db: str | Path | None = None,
        path_txt_mism: str | Path | None = None, path_txt_dupl: str | Path | None = None,
        discard_no_tag: bool = False, discard_dupl: bool = False, overwrite: bool = False,
        quiet: bool = False) -> WrangleResult:
    """Read the inputs, apply the rules, write `output` and `<output stem>.dropped.csv` atomically."""
    if discard_no_tag and path_db is None:
        raise ConfigError("--discard-no-tag needs --path-db lastfm_tags.db")
    if discard_dupl and path_txt_dupl is None:
        raise ConfigError("--discard-dupl needs --path-txt-dupl msd_duplicates.txt")
    inputs = [(path, what) for path, what in ((fetcher_csv, "fetcher table"), (path_h5, "MSD summary"),
                                              (path_db, "Last.fm database"), (path_txt_mism, "mismatch list"),
                                              (path_txt_dupl, "duplicate list")) if path is not None]
    output = check_output(output, WRANGLE_CSV, overwrite=overwrite, inputs=inputs)
    dropped_out = check_output(dropped_path(output), DROP_REPORT, overwrite=overwrite, inputs=inputs)
    start = time.perf_counter()
    # the small inputs are read (and bad ones reported) before any progress output
    mismatched = read_mismatches(path_txt_mism) if path_txt_mism is not None else None
    duplicates = read_duplicates(path_txt_dupl) if discard_dupl else None
    if discard_no_tag:
        LastFm(path_db).close()
    require_file(path_h5, "MSD summary HDF5")
    fetch = read_fetcher_csv(fetcher_csv)
    steps = tqdm(total=4, desc="wrangle", unit="step", disable=quiet, delay=1)
    try:
        summary = read_summary(path_h5, only_7digitalids=fetch["track_7digitalid"].unique())
        steps.update()
        tagged = None
        if discard_no_tag:
            with LastFm(path_db) as db:
                tagged = db.tagged_tids()
        steps.update()
        result = apply_rules(fetch, summary, mismatched=mismatched, tagged=tagged, duplicates=duplicates)
        steps.update()
        with atomic_path(output) as tmp:
            result.kept.to_csv(tmp, index=False)
        with atomic_path(dropped_out) as tmp:
            result.dropped.to_csv(tmp, index=False)
        steps.update()
    finally:
        steps.close()
    log.info("wrangle: %d of %d rows kept in %.1f s", len(result.kept), len(fetch), time.perf_counter() - start)
    return result


def format_summary(result: WrangleResult, output: str | Path) -> str:
    """The printed per-rule summary."""
    return format_drop_summary("wrangle", len(result.kept), result.counts.items(), output)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus wrangle", "Join fetcher.csv with the MSD summary; drop unusable, mismatched, untagged and duplicate tracks.",
        "examples:\n"
        "  orpheus wrangle fetcher.csv wrangle.csv --path-h5 msd_summary_file.h5 --path-db lastfm_tags.db \\\n"
        "         --path-txt-mism sid_mismatches.txt --path-txt-dupl msd_duplicates.txt --discard-no-tag --discard-dupl\n"
        "  orpheus wrangle fetcher.csv wrangle.csv --path-h5 msd_summary_file.h5   # file rules and join only")
    parser.add_argument("input", help="fetcher.csv from msd/fetcher.py")
    parser.add_argument("output", help="wrangle.csv to write (dropped rows go to <stem>.dropped.csv beside it)")
    parser.add_argument("--path-h5", required=True, help="MSD summary file (msd_summary_file.h5)")
    parser.add_argument("--path-db", help="Last.fm tags database (lastfm_tags.db), for --discard-no-tag")
    parser.add_argument("--path-txt-mism", help="sid_mismatches.txt: drop the listed track ids")
    parser.add_argument("--path-txt-dupl", help="msd_duplicates.txt, for --discard-dupl")
    parser.add_argument("--discard-no-tag", action="store_true", help="drop tracks with no Last.fm tag")
    parser.add_argument("--discard-dupl", action="store_true",
                        help="keep one track per duplicate group (the smallest surviving track_id)")
    add_common_args(parser, overwrite=True)  # no --jobs: vectorised, one pass (see bench/cleaning.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        result = run(args.input, args.output, path_h5=args.path_h5, path_db=args.path_db,
                     path_txt_mism=args.path_txt_mism, path_txt_dupl=args.path_txt_dupl,
                     discard_no_tag=args.discard_no_tag, discard_dupl=args.discard_dupl,
                     overwrite=args.overwrite, quiet=args.quiet)
        print(format_summary(result, args.output))
        return 0

    return run_main(parser, argv, command)
