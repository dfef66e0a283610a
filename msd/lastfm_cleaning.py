"""Merge Last.fm's raw tags into a clean vocabulary: `lastfm_tags.db` -> `clean_lastfm.db` + `.tags.csv`.

The clean vocabulary is data, in `msd/txt/` (or `--supp-txt-path`):
    genres.txt   clean genre tags, one per line (~170 of Last.fm's most frequent genre tags)
    decades.txt  decade tags (50s ... 10s)
    vocals.txt   `female`, `male`, `rap`, `instrumental` with hand-picked variants (`clean: a, b, c`)
    combine.txt  synonyms normalisation cannot see (`electronic: electronica, ...`)
    drop.txt     raw tags never mapped, matched exactly after lowercasing (`rocks`, `blue`, `seen live`)

A raw tag maps to a clean tag when their keys are equal. The key of a tag is, in order:
    1. lowercase, trimmed, inner whitespace collapsed;
    2. decades: `80s`, `80's`, `'80s`, `1980s`, `eighties` -> `80s` (`2000s`, `noughties` -> `00s`);
    3. `&`, a standalone `n`, `'n'`, `n'` -> `and` (`drum & bass`, `drum n bass`, `drum'n'bass`);
    4. every non-alphanumeric character removed (`hip-hop`, `hip hop`, `hiphop` agree);
    5. one trailing `s` removed (`female vocalists` = `female vocalist`).
Clean names (lowercase, single spaces: "hip hop", "drum and bass", "80s") are the file entries.

Pairs: a (track, raw tag) pair is kept when its val > `--val` (default 0: zero-weight pairs, which
Last.fm uses for barely-applied tags, are dropped). Pairs of one track that merge into the same
clean tag keep the largest val. The output keeps every `tids` row under its ROWID, has `tags`
ordered by popularity (distinct tracks, descending, ties by name) and only tags with a track, and
`tid_tag` sorted by (tid, tag), with indexes on all lookup columns. `<output stem>.tags.csv` lists
`clean_tag, raw_tag, count` (pairs of that raw tag that went into the clean tag).

Example:
    orpheus lastfm-cleaning lastfm_tags.db clean_lastfm.db --val 0 --supp-txt-path msd/txt
"""


import argparse
import itertools
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from msd.lastfm import LastFm
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError
from orpheus.files import atomic_path, check_output, require_dir, require_file
from orpheus.ownership import SQLITE_APPLICATION_ID, TAG_DATABASE, csv_kind

log = logging.getLogger(__name__)

TXT_DIR = Path(str(resources.files("msd").joinpath("txt")))   # package data (setup.cfg)
LIST_FILES = ("genres.txt", "decades.txt")
MAPPING_FILES = ("vocals.txt", "combine.txt")
DROP_FILE = "drop.txt"
DECADE_WORDS = {"forties": "40s", "fifties": "50s", "sixties": "60s", "seventies": "70s", "eighties": "80s",
                "nineties": "90s", "noughties": "00s", "naughties": "00s", "aughts": "00s",
                "two thousands": "00s", "twenty tens": "10s"}


# ---- normalisation ----
DECADE = re.compile(r"^'?(?:19(?=[2-9])|20(?=[01]))?(\d)0 ?'? ?s$")  # 80s 80's '80s 1980s 2000s
AND_WORD = re.compile(r"(?<![a-z0-9])'?n'?(?![a-z0-9])")             # drum n bass, drum'n'bass, rock n' roll
NON_ALNUM = re.compile(r"[^a-z0-9]")
_ASCII_NON_ALNUM = str.maketrans("", "", "".join(chr(c) for c in range(128) if not chr(c).isalnum()))


def display_form(tag: str) -> str:
    """Step 1: lowercase, trim, collapse inner whitespace."""
    return " ".join(str(tag).lower().split())


def tag_key(tag: str) -> str:
    """The matching key of one tag name (steps 1-5 of the module docstring).

    Returns "" for a tag with no ASCII letter or digit, which never matches.
    """
    text = display_form(tag)
    text = DECADE_WORDS.get(text, text)
    if text.endswith("s") and len(text) <= 7:
        text = DECADE.sub(r"\g<1>0s", text)
    text = text.replace("&", " and ")
    if "n" in text and ("n " in text or " n" in text or "'n" in text or "n'" in text or text == "n"):
        text = AND_WORD.sub(" and ", text)
    text = text.translate(_ASCII_NON_ALNUM) if text.isascii() else NON_ALNUM.sub("", text)
    return text[:-1] if text.endswith("s") else text


def tag_keys(tags: pd.Series | Iterable[str]) -> pd.Series:
    """Keys (`tag_key`) of many tags, computed once per distinct string. str [n] -> str [n]."""
    tags = pd.Series(list(tags) if not isinstance(tags, pd.Series) else tags, dtype=object)
    distinct = pd.unique(tags)
    keys = pd.Series([tag_key(t) for t in distinct], index=distinct, dtype=object)
    return pd.Series(keys.reindex(tags).to_numpy(), index=tags.index, dtype=object)


# ---- vocabulary ----
@dataclass(frozen=True)
class Vocabulary:
    """Clean tag of every matching key, and the raw tags never mapped."""
    clean_of_key: dict[str, str]   # key -> clean tag name
    dropped: frozenset[str]        # display forms (lowercase, single spaces) never mapped

    @property
    def clean_tags(self) -> list[str]:
        """The clean tag names, sorted."""
        return sorted(set(self.clean_of_key.values()))

    def map_tags(self, raw_tags: pd.Series | Sequence[str]) -> pd.Series:
        """Clean name of each raw tag, missing (NaN) when it maps to no clean tag. str [n] -> object [n]."""
        raw = pd.Series(list(raw_tags) if not isinstance(raw_tags, pd.Series) else raw_tags, dtype=object)
        clean = tag_keys(raw).map(self.clean_of_key)
        clean[raw.map(display_form).isin(self.dropped).to_numpy()] = None
        return clean


def _data_lines(path: Path) -> Iterable[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


def load_vocabulary(txt_dir: str | Path = TXT_DIR) -> Vocabulary:
    """Read the tag lists of `txt_dir` (see the module docstring).

    Raises:
        MissingInputError: the folder or one of its files is missing.
        DataFormatError: a malformed `clean: variants` line, or one key claimed by two clean tags.
    """
    folder = require_dir(txt_dir, "tag lists (--supp-txt-path)")
    claims: dict[str, tuple[str, str]] = {}  # key -> (clean tag, where it was claimed)

    def claim(variant: str, clean: str, where: str) -> None:
        key = tag_key(variant)
        if not key:
            raise DataFormatError(f"{where}: {variant!r} has no letter or digit; fix the tag list")
        previous = claims.get(key)
        if previous is not None and previous[0] != clean:
            raise DataFormatError(f"{where}: {variant!r} maps to {clean!r} but its key {key!r} already maps to "
                                  f"{previous[0]!r} ({previous[1]}); remove one of them")
        claims.setdefault(key, (clean, where))

    for name in LIST_FILES:
        path = require_file(folder / name, f"tag list {name}")
        for number, text in _data_lines(path):
            claim(text, " ".join(text.lower().split()), f"{path}:{number}")
    for name in MAPPING_FILES:
        path = require_file(folder / name, f"tag list {name}")
        for number, text in _data_lines(path):
            clean, sep, variants = text.partition(":")
            clean = " ".join(clean.lower().split())
            if not sep or not clean:
                raise DataFormatError(f"{path}:{number}: expected 'clean tag: variant, variant', got {text[:60]!r}")
            claim(clean, clean, f"{path}:{number}")
            for variant in variants.split(","):
                if variant.strip():
                    claim(variant.strip(), clean, f"{path}:{number}")
    path = require_file(folder / DROP_FILE, f"tag list {DROP_FILE}")
    dropped = frozenset(" ".join(text.lower().split()) for _, text in _data_lines(path))
    return Vocabulary({key: clean for key, (clean, _) in claims.items()}, dropped)


# ---- the stage ----
@dataclass
class CleaningResult:
    tags: pd.DataFrame       # clean_tag, n_tracks: in output ROWID order
    sources: pd.DataFrame    # clean_tag, raw_tag, count
    n_pairs: int             # tid_tag rows written
    n_tids: int              # tids rows copied


def clean_pairs(raw: LastFm, vocabulary: Vocabulary, val: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Map and merge the raw pairs (numpy on packed integer keys; one scan of tid_tag).

    Returns:
        (pairs: tid (ROWID), tag (clean ROWID, 1-based), val; sorted by tid, tag),
        (tags: clean_tag, n_tracks; in ROWID order),
        (sources: clean_tag, raw_tag, count).
    """
    raw_tags = pd.read_sql_query("SELECT ROWID AS rid, tag FROM tags", raw.conn)
    raw_tags["clean"] = vocabulary.map_tags(raw_tags["tag"].astype(str)).to_numpy()
    mapped = raw_tags.dropna(subset=["clean"])
    names = np.array(sorted(mapped["clean"].unique()), dtype=object)
    n_clean = max(len(names), 1)
    max_rid = int(raw_tags["rid"].max()) if len(raw_tags) else 0
    cid_of_rid = np.full(max_rid + 1, -1, dtype=np.int64)
    cid_of_rid[mapped["rid"].to_numpy(np.int64)] = np.searchsorted(names, mapped["clean"].to_numpy())

    conn = raw.conn
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS mapped_tags (rid INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.mapped_tags")
    conn.executemany("INSERT INTO temp.mapped_tags VALUES (?)", ((r,) for r in mapped["rid"].astype(int).tolist()))
    # (tid << shift) | tag packs a pair in one exact float64 (< 2**53), so rows cost one tuple of two numbers
    shift = max(max_rid.bit_length(), 1)
    cursor = conn.execute(
        f"SELECT (tid << {shift}) | tag, val FROM tid_tag WHERE tag IN (SELECT rid FROM temp.mapped_tags) AND val > ?",
        (float(val),))
    chunks = []
    while rows := cursor.fetchmany(1 << 20):
        chunks.append(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=2 * len(rows)))
    flat = np.concatenate(chunks).reshape(-1, 2) if chunks else np.zeros((0, 2))
    packed = flat[:, 0].astype(np.int64)
    vals = flat[:, 1]
    del flat, chunks
    raw_rid = packed & ((1 << shift) - 1)
    tid = packed >> shift
    cid = cid_of_rid[raw_rid]

    raw_counts = np.bincount(raw_rid, minlength=max_rid + 1)
    sources = mapped.assign(count=raw_counts[mapped["rid"].to_numpy(np.int64)])
    sources = sources[sources["count"] > 0]

    # merge pairs of one track that map to one clean tag: keep the largest val
    key = tid * n_clean + cid
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    merged_val = np.maximum.reduceat(vals, starts) if len(key) else vals
    merged_tid, merged_cid = key[starts] // n_clean, key[starts] % n_clean

    n_tracks = np.bincount(merged_cid, minlength=len(names))
    present = np.flatnonzero(n_tracks)
    tags = pd.DataFrame({"clean_tag": names[present], "n_tracks": n_tracks[present]})
    tags = tags.sort_values(["n_tracks", "clean_tag"], ascending=[False, True], kind="stable").reset_index(drop=True)
    new_id = np.zeros(len(names), dtype=np.int64)
    new_id[np.searchsorted(names, tags["clean_tag"].to_numpy())] = np.arange(1, len(tags) + 1)
    merged_tag = new_id[merged_cid]
    order = np.lexsort((merged_tag, merged_tid))
    pairs = pd.DataFrame({"tid": merged_tid[order], "tag": merged_tag[order], "val": merged_val[order]})

    rank = pd.Series(np.arange(len(tags)), index=tags["clean_tag"])
    sources = sources.rename(columns={"clean": "clean_tag", "tag": "raw_tag"})
    sources = sources.assign(rank=sources["clean_tag"].map(rank).to_numpy())
    sources = sources.sort_values(["rank", "count", "raw_tag"], ascending=[True, False, True], kind="stable")
    return pairs, tags, sources[["clean_tag", "raw_tag", "count"]].reset_index(drop=True)


def write_clean_db(path: Path, raw_path: Path, pairs: pd.DataFrame, tags: pd.DataFrame) -> int:
    """Write the clean database at `path` (a fresh file): tids copied with ROWIDs, clean tags, pairs, indexes.

    Returns:
        the number of tids copied.
    """
    # uri=True: the read-only ATTACH below is a URI, which SQLite takes as a file name on a connection opened
    # without it wherever URIs are off by default, as in the SQLite inside TensorFlow, whose symbols this
    # process's sqlite3 module uses when TensorFlow was imported first
    conn = sqlite3.connect(path.resolve().as_uri(), uri=True)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE tids (tid TEXT)")
        conn.execute("CREATE TABLE tags (tag TEXT)")
        conn.execute("CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT)")
        conn.execute("ATTACH DATABASE ? AS raw", (f"{raw_path.resolve().as_uri()}?mode=ro",))
        conn.execute("INSERT INTO tids (ROWID, tid) SELECT ROWID, tid FROM raw.tids ORDER BY ROWID")
        n_tids = conn.execute("SELECT COUNT(*) FROM tids").fetchone()[0]
        conn.commit()
        conn.execute("DETACH DATABASE raw")
        conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")   # the mark: a tag database Orpheus wrote
        conn.executemany("INSERT INTO tags (ROWID, tag) VALUES (?, ?)",
                         zip(range(1, len(tags) + 1), tags["clean_tag"].tolist()))
        conn.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                         zip(pairs["tid"].tolist(), pairs["tag"].tolist(), pairs["val"].tolist()))
        conn.execute("CREATE INDEX idx_tids_tid ON tids (tid)")
        conn.execute("CREATE INDEX idx_tags_tag ON tags (tag)")
        conn.execute("CREATE INDEX idx_tid_tag_tid ON tid_tag (tid)")
        conn.execute("CREATE INDEX idx_tid_tag_tag ON tid_tag (tag)")
        conn.commit()
    finally:
        conn.close()
    return int(n_tids)


TAG_SOURCES = csv_kind("tag sources table", ("clean_tag", "raw_tag", "count"))   # OUTPUT.tags.csv


def sources_path(output: str | Path) -> Path:
    """`clean_lastfm.db` -> `clean_lastfm.tags.csv` (beside the output)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.tags.csv")


def check_has_pairs(raw_db: str | Path) -> None:
    """Raise `DataFormatError` unless `raw_db` is a Last.fm tags database with tags and (track, tag) pairs."""
    with LastFm(raw_db) as raw:
        for table, what in (("tags", "tags"), ("tid_tag", "(track, tag) pairs")):
            if raw.conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:
                raise DataFormatError(f"{raw.path}: an empty tags database (no {what} in table {table}); "
                                      "pass the Last.fm tags database (lastfm_tags.db) with its rows")


def run(raw_db: str | Path, output: str | Path, *, val: float = 0.0, txt_dir: str | Path = TXT_DIR,
        overwrite: bool = False, quiet: bool = False) -> CleaningResult:
    """Build `output` (clean_lastfm.db) and its `.tags.csv` from `raw_db`, atomically."""
    inputs = [(raw_db, "raw tags database")]
    output = check_output(output, TAG_DATABASE, overwrite=overwrite, inputs=inputs)
    csv_out = check_output(sources_path(output), TAG_SOURCES, overwrite=overwrite, inputs=inputs)
    start = time.perf_counter()
    vocabulary = load_vocabulary(txt_dir)
    check_has_pairs(raw_db)  # bad input fails here, before any progress output
    steps = tqdm(total=3, desc="lastfm_cleaning", unit="step", disable=quiet, delay=1)
    try:
        with LastFm(raw_db) as raw:
            pairs, tags, sources = clean_pairs(raw, vocabulary, val)
            raw_path = raw.path
        if pairs.empty:
            log.warning("%s: no (track, tag) pair with val > %g maps to a clean tag of %s; the outputs are empty",
                        raw_path, val, txt_dir)
        steps.update()
        with atomic_path(output) as tmp:
            tmp.unlink()  # sqlite wants to create the file itself
            n_tids = write_clean_db(tmp, raw_path, pairs, tags)
        steps.update()
        with atomic_path(csv_out) as tmp:
            sources.to_csv(tmp, index=False)
        steps.update()
    finally:
        steps.close()
    log.info("lastfm_cleaning: %d clean tags, %d pairs in %.1f s", len(tags), len(pairs), time.perf_counter() - start)
    return CleaningResult(tags=tags, sources=sources, n_pairs=len(pairs), n_tids=n_tids)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus lastfm-cleaning", "Merge Last.fm raw tags into the clean vocabulary of msd/txt and write clean_lastfm.db.",
        "examples:\n"
        "  orpheus lastfm-cleaning lastfm_tags.db clean_lastfm.db\n"
        "  orpheus lastfm-cleaning lastfm_tags.db clean_lastfm.db --val 10 --supp-txt-path my_lists/")
    parser.add_argument("input", help="raw Last.fm tags database (lastfm_tags.db)")
    parser.add_argument("output", help="clean database to write (clean_lastfm.db; <stem>.tags.csv beside it)")
    parser.add_argument("--val", type=float, default=0.0,
                        help="keep (track, tag) pairs with val strictly above this (0..100)")
    parser.add_argument("--supp-txt-path", default=str(TXT_DIR),
                        help="folder of tag lists: genres.txt decades.txt vocals.txt combine.txt drop.txt")
    add_common_args(parser, overwrite=True)  # no --jobs: vectorised, one scan of tid_tag (see bench/cleaning.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        result = run(args.input, args.output, val=args.val, txt_dir=args.supp_txt_path, overwrite=args.overwrite,
                     quiet=args.quiet)
        print(f"lastfm_cleaning: {len(result.tags)} clean tags, {result.n_pairs} pairs, {result.n_tids} tids "
              f"-> {args.output}; raw tag sources -> {sources_path(args.output)}")
        return 0

    return run_main(parser, argv, command)
