"""Benchmark of the cleaning stage at full MSD scale, against the targets of issue 2.

Part 1 (no audio): builds synthetic inputs of the real sizes in the real formats -- a 1,000,000-row
summary HDF5, a 505,216-track / 522,366-tag / 8,598,630-pair Last.fm database, a ~500k-row
fetcher.csv, a mismatch list and a duplicates list -- then times `wrangle` (all rules),
`lastfm_cleaning` and `msd.tag_stats` on the raw database, each in a fresh process, printing seconds,
rows/s and peak memory (resource.getrusage). Target: wrangle and lastfm_cleaning together under 180 s
and each under 4 GB peak (tag_stats, an analysis tool outside the pipeline, is reported beside them).

Part 2 (audio): encodes the real clips of ../shared/audio/clips (or synthetic noise-and-silence
signals when absent) to `<d0>/<d1>/<id>.clip.mp3` (200 tracks for `silence`; hard links of them make
6,000 files for `fetcher`, whose header reads are ~1 ms each), then times `fetcher` and `silence`
with --jobs 1 and --jobs <all cores>, printing tracks/s. The machine load is printed first: on a
shared machine, compare runs only at similar load.

Example:
    python bench/cleaning.py                       # full scale, both parts
    python bench/cleaning.py --scale 0.1 --no-audio
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from orpheus.cli import default_jobs

FULL = {"summary_rows": 1_000_000, "tids": 505_216, "tags": 522_366, "pairs": 8_598_630, "fetcher_rows": 500_000,
        "mismatches": 19_094, "duplicate_groups": 53_471}
TARGET_S = 180.0
TARGET_MB = 4096.0
REPO = Path(__file__).resolve().parents[1]
MESSY_VARIANTS = ["{}", "{} ", "{U}", "{T}", "{}s", "{h}", "{U}!"]


def ids(prefix: str, numbers: np.ndarray) -> np.ndarray:
    """MSD-style ids: prefix + 16 upper-case hex digits, as S18 bytes."""
    return np.array([f"{prefix}{int(n):016X}" for n in numbers], dtype="S18")


def build_summary(path: Path, n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Write a summary HDF5 with the real layout; return its (track_7digitalid, track_id) table."""
    track_ids = ids("TR", rng.choice(2**62, n_rows, replace=False))
    seven = rng.choice(20 * n_rows, n_rows, replace=False).astype(np.int32) + 1
    shared = rng.choice(n_rows, n_rows // 100, replace=False)  # ~1% ambiguous 7digital ids
    seven[shared[: len(shared) // 2]] = seven[shared[len(shared) // 2:]]
    meta = np.zeros(n_rows, dtype=[("artist_id", "S18"), ("artist_name", "S64"), ("release", "S64"),
                                   ("song_id", "S18"), ("title", "S64"), ("track_7digitalid", "<i4"),
                                   ("artist_familiarity", "<f8"), ("song_hotttnesss", "<f8")])
    meta["artist_id"] = ids("AR", rng.integers(0, 44_745, n_rows))
    meta["song_id"] = ids("SO", rng.choice(2**62, n_rows, replace=False))
    meta["artist_name"] = b"some artist"
    meta["title"] = b"some title"
    meta["release"] = b"some release"
    meta["track_7digitalid"] = seven
    analysis = np.zeros(n_rows, dtype=[("duration", "<f8"), ("key", "<i4"), ("tempo", "<f8"), ("track_id", "S18")])
    analysis["track_id"] = track_ids
    analysis["duration"] = rng.uniform(30, 600, n_rows)
    music = np.zeros(n_rows, dtype=[("idx_artist_mbtags", "<i4"), ("year", "<i4")])
    music["year"] = np.where(rng.random(n_rows) < 0.5, 0, rng.integers(1950, 2011, n_rows))
    with h5py.File(path, "w") as h5:
        for group, table in (("metadata", meta), ("analysis", analysis), ("musicbrainz", music)):
            h5.create_group(group).create_dataset("songs", data=table)
    return pd.DataFrame({"track_7digitalid": seven.astype(np.int64), "track_id": track_ids.astype(str)})


def raw_tag_names(n_tags: int, rng: np.random.Generator) -> list[str]:
    """Messy variants of the clean vocabulary (the most popular ranks) mixed with junk tags."""
    from msd.lastfm_cleaning import load_vocabulary

    names, seen = [], set()
    for clean in load_vocabulary().clean_tags:
        for pattern in MESSY_VARIANTS:
            name = pattern.format(clean, U=clean.upper(), T=clean.title(), h=clean.replace(" ", "-"))
            if name not in seen:
                seen.add(name)
                names.append(name)
    names += [f"junk tag {i:06d}" for i in range(n_tags - len(names))]
    order = rng.permutation(len(names))
    head = np.concatenate([np.arange(len(seen)), order[order >= len(seen)]])  # vocabulary first = popular
    return [names[i] for i in head[:n_tags]]


def build_lastfm(path: Path, summary: pd.DataFrame, n_tids: int, n_tags: int, n_pairs: int,
                 rng: np.random.Generator) -> None:
    """Write a raw Last.fm database with the real schema and a Zipf-like tag popularity."""
    tids = summary["track_id"].to_numpy()[rng.choice(len(summary), n_tids, replace=False)]
    tags = raw_tag_names(n_tags, rng)
    weights = 1.0 / (np.arange(n_tags) + 20.0)
    pair_tag = rng.choice(n_tags, n_pairs, p=weights / weights.sum()) + 1
    pair_tid = rng.integers(1, n_tids + 1, n_pairs)
    pair_val = rng.integers(0, 101, n_pairs).astype(np.float64)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE tids (tid TEXT)")
    conn.execute("CREATE TABLE tags (tag TEXT)")
    conn.execute("CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT)")
    conn.executemany("INSERT INTO tids VALUES (?)", ((t,) for t in tids.tolist()))
    conn.executemany("INSERT INTO tags VALUES (?)", ((t,) for t in tags))
    conn.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", zip(pair_tid.tolist(), pair_tag.tolist(),
                                                                pair_val.tolist()))
    conn.commit()
    conn.close()


def build_fetcher(path: Path, summary: pd.DataFrame, n_rows: int, rng: np.random.Generator) -> None:
    """A fetcher.csv: mostly summary 7digital ids, some unknown, zero-size and unreadable clips."""
    known = summary["track_7digitalid"].unique()
    seven = rng.choice(known, n_rows, replace=False)
    unknown = rng.random(n_rows) < 0.01
    seven[unknown] = 50_000_000 + np.arange(unknown.sum())
    size = rng.integers(200_000, 1_200_000, n_rows)
    size[rng.random(n_rows) < 0.005] = 0
    unreadable = (rng.random(n_rows) < 0.005) | (size == 0)
    seven_str = seven.astype(str)
    table = pd.DataFrame({
        "track_7digitalid": seven,
        "file_path": [f"{s[-1]}/{s[-2]}/{s}.clip.mp3" for s in seven_str],
        "file_size": size,
        "channels": pd.array(np.where(unreadable, 0, 2), dtype="Int64"),
        "sample_rate": pd.array(np.where(unreadable, 0, 44100), dtype="Int64"),
        "clip_length": np.where(unreadable, np.nan, rng.uniform(20, 31, n_rows)),
    })
    table.loc[unreadable, ["channels", "sample_rate"]] = pd.NA
    table.to_csv(path, index=False)


def build_lists(folder: Path, summary: pd.DataFrame, n_mism: int, n_groups: int, rng: np.random.Generator) -> None:
    tids = summary["track_id"].to_numpy()
    mism = tids[rng.choice(len(tids), n_mism, replace=False)]
    with open(folder / "sid_mismatches.txt", "w") as f:
        f.writelines(f"ERROR: <SO{i:016X} {t}> Artist  -  Title != Artist  -  Other title\n"
                     for i, t in enumerate(mism))
    members = tids[rng.choice(len(tids), n_groups * 3, replace=False)].reshape(n_groups, 3)
    with open(folder / "msd_duplicates.txt", "w") as f:
        f.write("# MILLION SONG DATASET - DUPLICATES\n# synthetic benchmark copy\n")
        for g, group in enumerate(members):
            size = 2 + (g % 2)
            f.write(f"%{g} Artist - Title\n" + "".join(f"{t}\n" for t in group[:size]))


def build_inputs(work: str, sizes: dict, seed: int) -> None:
    """Write every table input of the benchmark into `work`."""
    work = Path(work)
    rng = np.random.default_rng(seed)
    summary = build_summary(work / "msd_summary_file.h5", sizes["summary_rows"], rng)
    build_lastfm(work / "lastfm_tags.db", summary, sizes["tids"], sizes["tags"], sizes["pairs"], rng)
    build_fetcher(work / "fetcher.csv", summary, sizes["fetcher_rows"], rng)
    build_lists(work, summary, sizes["mismatches"], sizes["duplicate_groups"], rng)


def timed_child(code: str) -> dict:
    """Run `code` in a fresh Python; it prints a JSON dict. Adds seconds, the child's CPU seconds (user +
    system: on a shared machine the steadier figure) and its peak RSS (MB)."""
    wrapper = ("import json, resource, time, sys\nstart = time.perf_counter()\n" + code +
               "\nusage = resource.getrusage(resource.RUSAGE_SELF)\n"
               "out = dict(result, seconds=time.perf_counter() - start, cpu_s=usage.ru_utime + usage.ru_stime, "
               "peak_mb=usage.ru_maxrss / 1024)\nprint(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", wrapper], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_tables(work: Path, scale: float, seed: int, reuse: bool = False) -> None:
    sizes = {k: max(10, int(v * scale)) for k, v in FULL.items()}
    if not reuse:
        # built in a child, so this process stays small: Linux carries ru_maxrss across fork + exec
        built = timed_child(f"from bench.cleaning import build_inputs\nbuild_inputs({str(work)!r}, {sizes!r}, "
                            f"{seed})\nresult = {{}}")
        print(f"built inputs {sizes} in {built['seconds']:.1f} s (peak {built['peak_mb']:.0f} MB)")

    w = timed_child(
        "from msd.wrangle import run\n"
        f"r = run({str(work / 'fetcher.csv')!r}, {str(work / 'wrangle.csv')!r}, path_h5={str(work / 'msd_summary_file.h5')!r},"
        f" path_db={str(work / 'lastfm_tags.db')!r}, path_txt_mism={str(work / 'sid_mismatches.txt')!r},"
        f" path_txt_dupl={str(work / 'msd_duplicates.txt')!r}, discard_no_tag=True, discard_dupl=True,"
        " overwrite=True, quiet=True)\n"
        "result = dict(kept=len(r.kept), counts=r.counts)")
    c = timed_child(
        "from msd.lastfm_cleaning import run\n"
        f"r = run({str(work / 'lastfm_tags.db')!r}, {str(work / 'clean_lastfm.db')!r}, overwrite=True, quiet=True)\n"
        "result = dict(tags=len(r.tags), pairs=r.n_pairs, tids=r.n_tids)")
    print(f"wrangle:         {w['seconds']:7.1f} s  {sizes['fetcher_rows'] / w['seconds']:>10,.0f} fetcher rows/s  "
          f"({sizes['summary_rows']:,} summary rows)  peak {w['peak_mb']:7.0f} MB  kept {w['kept']:,}  {w['counts']}")
    print(f"lastfm_cleaning: {c['seconds']:7.1f} s  {sizes['pairs'] / c['seconds']:>10,.0f} raw pairs/s  "
          f"peak {c['peak_mb']:7.0f} MB  -> {c['tags']} clean tags, {c['pairs']:,} pairs, {c['tids']:,} tids")
    s = timed_child(
        "from msd.tag_stats import run\n"
        f"stats, merges = run({str(work / 'lastfm_tags.db')!r}, {str(work / 'tag_stats_raw')!r}, overwrite=True,"
        " quiet=True)\n"
        "result = dict(tags=len(stats.tags), tracks=stats.n_tracks, entries=int(stats.cooccurrence.nnz),"
        " merges=len(merges))")
    print(f"tag_stats (raw): {s['seconds']:7.1f} s (CPU {s['cpu_s']:.1f} s)  "
          f"{sizes['pairs'] / s['seconds']:>10,.0f} raw pairs/s  "
          f"peak {s['peak_mb']:7.0f} MB  -> {s['tags']:,} tags on {s['tracks']:,} tracks, {s['entries']:,} matrix "
          f"entries (pairs on >= 2 tracks + diagonal), {s['merges']} suggested merges")
    total = w["seconds"] + c["seconds"]
    peak = max(w["peak_mb"], c["peak_mb"])
    verdict = "PASS" if total < TARGET_S and peak < TARGET_MB else "MISS"
    print(f"together:        {total:7.1f} s (target < {TARGET_S:.0f} s at full scale), peak {peak:.0f} MB "
          f"(target < {TARGET_MB:.0f} MB): {verdict}")


def build_audio_tree(root: Path, n_tracks: int, seed: int) -> pd.DataFrame:
    """Encode real clips (or synthetic signals) as `<d0>/<d1>/<id>.clip.mp3`; return a wrangle-like table."""
    import soundfile as sf

    from orpheus.audio.decode import load_audio

    candidates = [REPO.parent / "shared" / "audio" / "clips", REPO.parents[1] / "shared" / "audio" / "clips"]
    clips = next((sorted(c.glob("*.ogg")) for c in candidates if c.is_dir()), [])
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_tracks):
        if clips:
            audio, rate = load_audio(clips[i % len(clips)])
        else:
            rate = 44100
            audio = (0.2 * rng.standard_normal(rate * 30)).astype(np.float32)
            audio[rate * 10: rate * 12] = 0.0
        seven = 1_000_000 + i
        rel = f"{seven % 10}/{seven // 10 % 10}/{seven}.clip.mp3"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, np.stack([audio, audio], axis=1), rate, format="MP3")
        rows.append((seven, rel, (root / rel).stat().st_size, f"TR{i:016d}", f"AR{i:016d}"))
    return pd.DataFrame(rows, columns=["track_7digitalid", "file_path", "file_size", "track_id", "artist_id"])


def bench_audio(work: Path, n_tracks: int, n_fetcher: int, seed: int) -> None:
    from msd import fetcher, silence

    root = work / "audio"
    shutil.rmtree(root, ignore_errors=True)
    table = build_audio_tree(root, n_tracks, seed)
    table.to_csv(work / "audio_wrangle.csv", index=False)
    fetch_root = work / "audio_many"  # hard links of the same clips: enough files for fetcher's workers
    shutil.rmtree(fetch_root, ignore_errors=True)
    for i in range(n_fetcher):
        rel = table["file_path"].iloc[i % len(table)]
        target = fetch_root / f"{i % 100:02d}" / f"{2_000_000 + i}.clip.mp3"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(root / rel, target)
    for jobs in sorted({1, default_jobs()}):
        start = time.perf_counter()
        fetcher.run(work / f"fetcher_{jobs}.csv", fetch_root, jobs=jobs, overwrite=True, quiet=True)
        fetch_s = time.perf_counter() - start
        start = time.perf_counter()
        silence.run(work / "audio_wrangle.csv", work / f"ultimate_{jobs}.csv", root_dir=root, jobs=jobs,
                    overwrite=True, quiet=True)
        silence_s = time.perf_counter() - start
        print(f"audio, --jobs {jobs}: fetcher {n_fetcher / fetch_s:7.1f} tracks/s ({n_fetcher} files, {fetch_s:.2f} s), "
              f"silence {n_tracks / silence_s:6.1f} tracks/s ({n_tracks} tracks, {silence_s:.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full MSD sizes")
    parser.add_argument("--audio-tracks", type=int, default=200, help="mp3 clips for the audio part")
    parser.add_argument("--fetcher-files", type=int, default=6000, help="mp3 files (hard links) for fetcher")
    parser.add_argument("--no-audio", action="store_true", help="skip the audio part")
    parser.add_argument("--no-tables", action="store_true", help="skip the table part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="keep inputs and outputs here (default: a temporary folder)")
    parser.add_argument("--reuse-inputs", action="store_true", help="time the stages on the inputs in --work-dir")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"cleaning benchmark: {default_jobs()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_cleaning_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.no_tables:
            bench_tables(work, args.scale, args.seed, args.reuse_inputs)
        if not args.no_audio:
            bench_audio(work, args.audio_tracks, args.fetcher_files, args.seed)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
