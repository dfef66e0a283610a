"""Tag statistics of a Last.fm tags database, raw or clean: co-occurrence, top pairs, merges, heat map.

Input: a tags database with the Last.fm schema (`lastfm_tags.db` or `clean_lastfm.db`, see `msd.lastfm`).
Output, in OUT_DIR:
    tags.csv          index, tag, count: every tag with at least one track, by count (descending, ties by
                      name); `index` is its row and column in the matrix
    cooccurrence.npz  `sparse.COO` int32 [n_tags, n_tags] (`sparse.load_npz`), symmetric: entry (a, b) is
                      the number of tracks carrying both tags, the diagonal the tracks per tag. Pairs seen
                      on fewer than `--min-count` tracks are left out (on the full Last.fm data they are most
                      pairs and say nothing); the diagonal is always whole
    pairs.csv         the `--pairs` top pairs by count, by Jaccard and by PMI (`by`, `rank`, then the pair
                      and all its statistics)
    merges.csv        suggested merges: pairs on at least `--merge-min-count` tracks whose tags almost always
                      occur together, min(P(a|b), P(b|a)) >= `--merge-threshold`
    heatmap.png       Jaccard similarity of the `--top` most frequent tags, in the leaf order of an
                      average-linkage clustering on 1 - Jaccard (similar tags side by side)

For tags a, b on c_a, c_b tracks, together on c_ab of the n tracks with a tag:
Jaccard = c_ab / (c_a + c_b - c_ab), PMI = ln(n c_ab / (c_a c_b)), min_conditional = c_ab / max(c_a, c_b).
A (track, tag) pair counts once however often the database repeats it, whatever its val (`--min-val`
keeps only pairs with val >= it).

The co-occurrence matrix is X^T X of the sparse track x tag incidence matrix X (scipy.sparse), computed
over blocks of tag columns so the product never holds the pairs below `--min-count` all at once.

Example:
    orpheus tag-stats lastfm_tags.db stats/raw --top 40
    orpheus tag-stats clean_lastfm.db stats/clean
"""


import argparse
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse
from tqdm import tqdm

from msd.lastfm import LastFm
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError, DataFormatError, MissingDependencyError
from orpheus.files import atomic_dir, atomic_path, check_output, write_csv_atomic
from orpheus.ownership import FolderKind, file_with

log = logging.getLogger(__name__)

TAG_STATS = FolderKind("tag statistics folder", legacy=file_with("tags.csv", "cooccurrence.npz", "pairs.csv"))
PAIR_COLUMNS = ["tag_a", "tag_b", "count", "count_a", "count_b", "jaccard", "pmi", "min_conditional"]
BLOCK_ENTRIES = 20_000_000  # products per block of tag columns: bounds the memory of X^T X


@dataclass
class TagStats:
    tags: pd.DataFrame   # index, tag, count
    cooccurrence: "sparse.COO"  # noqa: F821  int32 [n_tags, n_tags]
    n_tracks: int        # tracks with at least one (counted) tag


def import_sparse():
    """The pydata `sparse` package (the `stats` extra), or `MissingDependencyError` with the install command."""
    try:
        import sparse
    except ImportError as err:
        raise MissingDependencyError("msd.tag_stats needs the sparse package: pip install 'orpheus-tagger[stats]' "
                                     "(or pip install sparse)") from err
    return sparse


# ---- reading ----
def read_incidence(db: LastFm, min_val: float | None = None) -> tuple[scipy.sparse.csc_matrix, pd.DataFrame]:
    """The track x tag incidence matrix of `db` and its tags.

    Returns:
        (X: csc int32 [n_tracks, n_tags], 1 where the track carries the tag; tracks with a tag only,
        tags: DataFrame index, tag, count in the column order of X: by count descending, ties by name).
    """
    names = pd.read_sql_query("SELECT ROWID AS rid, tag FROM tags", db.conn)
    if names.empty:
        raise DataFormatError(f"{db.path}: an empty tags database (no tags in table tags); pass a Last.fm "
                              "tags database with its rows")
    max_rid = int(names["rid"].max())
    shift = max(max_rid.bit_length(), 1)
    sql = f"SELECT (tid << {shift}) | tag FROM tid_tag WHERE tag BETWEEN 1 AND {max_rid}"
    cursor = db.conn.execute(sql + (" AND val >= ?" if min_val is not None else ""),
                             () if min_val is None else (float(min_val),))
    chunks = []
    while rows := cursor.fetchmany(1 << 20):
        chunks.append(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows)))
    packed = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)  # a pair counts once
    rid, tid = packed & ((1 << shift) - 1), packed >> shift
    known = np.zeros(max_rid + 1, bool)
    known[names["rid"].to_numpy()] = True
    rid, tid = rid[known[rid]], tid[known[rid]]
    if not len(rid):
        raise DataFormatError(f"{db.path}: an empty tags database (no (track, tag) pairs in table tid_tag"
                              f"{'' if min_val is None else f' with val >= {min_val:g}'})")
    counts = np.bincount(rid, minlength=max_rid + 1)
    tags = names.assign(count=counts[names["rid"].to_numpy()])
    tags = tags[tags["count"] > 0].sort_values(["count", "tag", "rid"], ascending=[False, True, True], kind="stable")
    column_of = np.full(max_rid + 1, -1, np.int64)
    column_of[tags["rid"].to_numpy()] = np.arange(len(tags))
    _, row = np.unique(tid, return_inverse=True)
    x = scipy.sparse.csc_matrix((np.ones(len(rid), np.int32), (row.astype(np.int64), column_of[rid])),
                                shape=(int(row.max()) + 1, len(tags)))
    tags = pd.DataFrame({"index": np.arange(len(tags)), "tag": tags["tag"].astype(str).to_numpy(),
                         "count": tags["count"].to_numpy(np.int64)})
    return x, tags


def cooccurrence(x: scipy.sparse.csc_matrix, min_count: int = 2, quiet: bool = True) -> "sparse.COO":  # noqa: F821
    """X^T X, off-diagonal entries below `min_count` dropped. csc int32 [n_tracks, n_tags] -> COO int32 [n_tags, n_tags].

    The product is computed over blocks of columns holding about `BLOCK_ENTRIES` products each, and
    each block is filtered before the next, so memory follows the pairs kept, not all pairs.
    """
    sparse = import_sparse()
    n_tags = x.shape[1]
    xt = x.T.tocsr()
    row_nnz = np.diff(x.tocsr().indptr).astype(np.int64)
    # products of column j: the tag counts of its tracks, summed (every column has a track)
    work = np.add.reduceat(row_nnz[x.indices], x.indptr[:-1]) if x.nnz else np.zeros(n_tags, np.int64)
    bounds = [0]
    total = 0
    for j, w in enumerate(work):
        total += int(w)
        if total >= BLOCK_ENTRIES:
            bounds.append(j + 1)
            total = 0
    if bounds[-1] != n_tags:
        bounds.append(n_tags)
    rows, cols, vals = [], [], []
    for start, stop in tqdm(list(itertools.pairwise(bounds)), desc="co-occurrence", unit="block",
                            disable=quiet, delay=1):
        block = (xt @ x[:, start:stop]).tocoo()
        keep = (block.data >= min_count) | (block.row == block.col + start)
        rows.append(block.row[keep].astype(np.int32))
        cols.append((block.col[keep] + start).astype(np.int32))
        vals.append(block.data[keep].astype(np.int32))
    coords = np.stack([np.concatenate(rows), np.concatenate(cols)])
    return sparse.COO(coords, np.concatenate(vals), shape=(n_tags, n_tags), sorted=False, has_duplicates=False)


def tag_stats(db_path: str | Path, *, min_count: int = 2, min_val: float | None = None,
              quiet: bool = True) -> TagStats:
    """Tags, co-occurrence matrix and track count of the tags database at `db_path`."""
    with LastFm(db_path) as db:
        x, tags = read_incidence(db, min_val)
    log.info("tag_stats: %d tags, %d tracks, %d (track, tag) pairs", x.shape[1], x.shape[0], x.nnz)
    return TagStats(tags=tags, cooccurrence=cooccurrence(x, min_count, quiet), n_tracks=int(x.shape[0]))


# ---- statistics ----
def pair_table(stats: TagStats) -> pd.DataFrame:
    """Every pair a < b of the matrix: columns a, b (tag indices) and the statistics of `PAIR_COLUMNS`."""
    coords, count = stats.cooccurrence.coords, stats.cooccurrence.data.astype(np.int64)
    upper = coords[0] < coords[1]
    a, b, c_ab = coords[0][upper].astype(np.int64), coords[1][upper].astype(np.int64), count[upper]
    counts = stats.tags["count"].to_numpy(np.int64)
    c_a, c_b = counts[a], counts[b]
    return pd.DataFrame({"a": a, "b": b, "count": c_ab, "count_a": c_a, "count_b": c_b,
                         "jaccard": c_ab / (c_a + c_b - c_ab),
                         "pmi": np.log(stats.n_tracks * c_ab / (c_a * c_b).astype(np.float64)),
                         "min_conditional": c_ab / np.maximum(c_a, c_b)})


def _ranked(pairs: pd.DataFrame, *keys: str) -> np.ndarray:
    """Row order by `keys` descending, then by tag index (names in tags.csv order): integer sorts only."""
    return np.lexsort([pairs["b"].to_numpy(), pairs["a"].to_numpy()] + [-pairs[k].to_numpy() for k in reversed(keys)])


def _named(pairs: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    names = tags["tag"].to_numpy()
    named = pairs.assign(tag_a=names[pairs["a"].to_numpy()], tag_b=names[pairs["b"].to_numpy()])
    return named.drop(columns=["a", "b"])


def top_pairs(pairs: pd.DataFrame, tags: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` top pairs by count, by Jaccard and by PMI (ties by count, then tag order), stacked with `by`, `rank`."""
    tops = []
    for by in ("count", "jaccard", "pmi"):
        keys = (by,) if by == "count" else (by, "count")
        head = pairs.iloc[_ranked(pairs, *keys)[:n]]
        tops.append(_named(head, tags).assign(by=by, rank=np.arange(1, len(head) + 1)))
    return pd.concat(tops, ignore_index=True)[["by", "rank"] + PAIR_COLUMNS]


def suggested_merges(pairs: pd.DataFrame, tags: pd.DataFrame, threshold: float, min_count: int) -> pd.DataFrame:
    """Pairs on >= `min_count` tracks with min(P(a|b), P(b|a)) >= `threshold`, most certain first."""
    merges = pairs[(pairs["count"] >= min_count) & (pairs["min_conditional"] >= threshold)]
    merges = merges.iloc[_ranked(merges, "min_conditional", "count")]
    return _named(merges, tags)[PAIR_COLUMNS].reset_index(drop=True)


def clustered_order(similarity: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering on 1 - `similarity`. float [n, n] in [0, 1] -> int [n]."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(similarity) < 3:
        return np.arange(len(similarity))
    distance = 1.0 - similarity
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average", optimal_ordering=True)
    return leaves_list(tree)


def write_heatmap(path: Path, stats: TagStats, top: int, title: str) -> list[str]:
    """Jaccard heat map of the `top` most frequent tags in clustered order; returns the tags in that order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(top, len(stats.tags))
    counts = stats.tags["count"].to_numpy(np.float64)[:n]
    together = stats.cooccurrence[:n, :n].todense().astype(np.float64)
    jaccard = together / (counts[:, None] + counts[None, :] - together)
    order = clustered_order(jaccard)
    names = stats.tags["tag"].to_numpy()[:n][order]
    size = max(5.0, 0.22 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(jaccard[np.ix_(order, order)], cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="Jaccard (tracks with both / with either)", shrink=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return [str(t) for t in names]


# ---- the command ----
def run(tag_db: str | Path, out_dir: str | Path, *, top: int = 40, n_pairs: int = 100, min_count: int = 2,
        merge_threshold: float = 0.8, merge_min_count: int = 10, min_val: float | None = None,
        overwrite: bool = False, quiet: bool = False) -> tuple[TagStats, pd.DataFrame]:
    """Write the outputs of the module docstring into `out_dir`; returns the statistics and the merges."""
    for ok, flag, rule in ((top >= 1, "--top", "at least 1"), (n_pairs >= 1, "--pairs", "at least 1"),
                           (min_count >= 1, "--min-count", "at least 1"),
                           (0.0 < merge_threshold <= 1.0, "--merge-threshold", "in (0, 1]"),
                           (merge_min_count >= 1, "--merge-min-count", "at least 1")):
        if not ok:
            raise ConfigError(f"{flag} must be {rule}")
    out_dir = Path(out_dir)
    rule = dict(overwrite=overwrite, inputs=[(tag_db, "tags database")], flag="OUT_DIR")
    check_output(out_dir, TAG_STATS, **rule)
    import_sparse()  # a missing package fails before the work
    stats = tag_stats(tag_db, min_count=min_count, min_val=min_val, quiet=quiet)
    if stats.tags.empty:
        where = "" if min_val is None else f" with val >= {min_val:g} (--min-val)"
        raise DataFormatError(f"{tag_db}: no (track, tag) pair{where}; nothing written")
    with atomic_dir(out_dir, TAG_STATS, **rule) as tmp:   # all five files, or none
        write_csv_atomic(tmp / "tags.csv", ["index", "tag", "count"], stats.tags.itertuples(index=False))
        with atomic_path(tmp / "cooccurrence.npz") as part, open(part, "wb") as f:
            import_sparse().save_npz(f, stats.cooccurrence)
        pairs = pair_table(stats)
        merges = suggested_merges(pairs, stats.tags, merge_threshold, merge_min_count)
        for name, table in (("pairs.csv", top_pairs(pairs, stats.tags, n_pairs)), ("merges.csv", merges)):
            with atomic_path(tmp / name) as part:
                table.to_csv(part, index=False, float_format="%.6g")
        write_heatmap(tmp / "heatmap.png", stats, top,
                      f"{Path(tag_db).name}: Jaccard of the {min(top, len(stats.tags))} most frequent tags (clustered)")
    return stats, merges


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus tag-stats", "Tag co-occurrence of a Last.fm tags database (raw or clean): matrix, top pairs, "
        "suggested merges and a clustered heat map.",
        "examples:\n"
        "  orpheus tag-stats lastfm_tags.db stats/raw --top 40\n"
        "  orpheus tag-stats clean_lastfm.db stats/clean --merge-threshold 0.9 --merge-min-count 50")
    parser.add_argument("tag_db", help="Last.fm tags database (lastfm_tags.db or clean_lastfm.db)")
    parser.add_argument("out_dir", help="folder for tags.csv, cooccurrence.npz, pairs.csv, merges.csv, heatmap.png")
    parser.add_argument("--top", type=int, default=40, help="most frequent tags in the heat map")
    parser.add_argument("--pairs", dest="n_pairs", type=int, default=100,
                        help="pairs in each top list of pairs.csv (by count, Jaccard, PMI)")
    parser.add_argument("--min-count", type=int, default=2,
                        help="leave pairs seen on fewer tracks out of the matrix and the statistics")
    parser.add_argument("--merge-threshold", type=float, default=0.8,
                        help="suggest a merge when min(P(a|b), P(b|a)) is at least this")
    parser.add_argument("--merge-min-count", type=int, default=10, help="suggest merges of pairs on this many tracks")
    parser.add_argument("--min-val", type=float, default=None, help="count only pairs with val >= this (0..100)")
    add_common_args(parser, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        stats, merges = run(args.tag_db, args.out_dir, top=args.top, n_pairs=args.n_pairs, min_count=args.min_count,
                            merge_threshold=args.merge_threshold, merge_min_count=args.merge_min_count,
                            min_val=args.min_val, overwrite=args.overwrite, quiet=args.quiet)
        n_pairs = int((stats.cooccurrence.coords[0] < stats.cooccurrence.coords[1]).sum())
        print(f"tag_stats: {len(stats.tags)} tags on {stats.n_tracks} tracks, {n_pairs} pairs on >= {args.min_count} "
              f"tracks, {len(merges)} suggested merges -> {args.out_dir}")
        return 0

    return run_main(parser, argv, command)
