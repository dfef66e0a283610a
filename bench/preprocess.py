"""Benchmark of the preprocessing stage against the original urop2019 recipe and the decode floor.

On the same tracks in one run (the real clips of ../shared/audio/clips, 10 s, plus generated 30 s
44.1 kHz stereo mp3s made from them):
    (a) the urop2019 recipe with today's librosa, one process: librosa.load(sr=16000),
        melspectrogram(n_mels=96), power_to_db
    (b) decode only with soundfile (the floor)
    (c) tfrecords/preprocessing.py log-mel-spectrogram end to end (a fresh process, so its
        start-up and TensorFlow import count), with --jobs 1 and with all cores; also timed
        in-process (start-up excluded) to show the per-track steady state
    (d) `--runner beam` (Apache Beam's DirectRunner, multi_processing) against the default
        `--runner pool`, fresh processes, on the tracks and on the same audio listed --repeat times:
        tracks/s and the overhead ratio beam / pool (target <= 1.5x on 2 cores) with --jobs workers
        (wall) and with one (CPU, load-independent), and from the two sizes each runner's fixed
        start-up and per-track cost; shards byte-identical
Prints tracks/s (wall) and CPU ms per track, and the ratios against the targets: (c, all cores)
>= 3x (a) and (c, one job) <= 1.5x (b) per track. On a shared machine, the wall figures carry the
other jobs' load (printed); the CPU figures do not.
Run: python bench/preprocess.py [--n-real 50 --n-generated 20] [--runners-only]
"""

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import csv
import resource
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from orpheus import audio
from orpheus.cli import default_jobs

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "audio" / "clips"
TAGS = ("rock", "pop", "jazz", "electronic", "ambient")


def make_corpus(root: Path, n_real: int, n_generated: int, seed: int = 0, clips_dir: Path = CLIPS) -> list[Path]:
    """Link the real clips and write generated 30 s 44.1 kHz stereo mp3s under root/audio; write
    ultimate.csv and clean_lastfm.db (real schema) beside it. Returns the audio paths."""
    clips = sorted(p for p in clips_dir.iterdir() if p.suffix in audio.AUDIO_EXTENSIONS) if clips_dir.is_dir() else []
    if not clips:
        raise SystemExit(f"{clips_dir}: no clips; the benchmark needs ../shared/audio (or --clips DIR)")
    audio_dir = root / "audio"
    (audio_dir / "real").mkdir(parents=True)
    (audio_dir / "gen").mkdir()
    paths = []
    for clip in clips[:n_real]:
        link = audio_dir / "real" / clip.name
        link.symlink_to(clip)
        paths.append(link)
    rng = np.random.default_rng(seed)
    for i in range(n_generated):
        picks = rng.choice(len(clips), size=3, replace=False)
        mono = np.concatenate([audio.load_audio(clips[k], 44100)[0] for k in picks])[:30 * 44100]
        stereo = np.stack([mono, np.roll(mono, 441)], axis=1) * 0.9
        path = audio_dir / "gen" / f"gen{i:03d}.mp3"
        sf.write(path, stereo, 44100)
        paths.append(path)
    write_tables(root, [str(path.relative_to(audio_dir)) for path in paths], repeat=1)
    return paths


def write_tables(root: Path, mp3_paths: list[str], repeat: int) -> None:
    """ultimate{suffix}.csv and clean_lastfm{suffix}.db (real schema) for `mp3_paths`, each listed `repeat`
    times under distinct track ids (suffix "" for 1, else "_x{repeat}"): more tracks, the same audio."""
    suffix = "" if repeat == 1 else f"_x{repeat}"
    tids = [f"TRBENCH{i:05d}" + ("" if r == 0 else f"R{r}") for r in range(repeat) for i in range(len(mp3_paths))]
    with open(root / f"ultimate{suffix}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track_id", "artist_id", "mp3_path"])
        for k, tid in enumerate(tids):
            writer.writerow([tid, f"AR{k:05d}", mp3_paths[k % len(mp3_paths)]])
    db = sqlite3.connect(root / f"clean_lastfm{suffix}.db")
    db.execute("CREATE TABLE tids (tid TEXT)")
    db.execute("CREATE TABLE tags (tag TEXT)")
    db.execute("CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT)")
    db.executemany("INSERT INTO tags (tag) VALUES (?)", [(t,) for t in TAGS])
    for k, tid in enumerate(tids):
        rowid = db.execute("INSERT INTO tids (tid) VALUES (?)", (tid,)).lastrowid
        db.execute("INSERT INTO tid_tag VALUES (?, ?, 100)", (rowid, 1 + (k % len(mp3_paths)) % len(TAGS)))
    db.commit()
    db.close()


def measured(func, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of every child it reaped) of `func(*args)`.

    CPU time is what the work costs whatever the load of the shared machine; wall time is what
    you wait for, and with other jobs on the cores it is inflated."""
    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime
    wall, cpu0 = time.perf_counter(), cpu()
    func(*args)
    return time.perf_counter() - wall, cpu() - cpu0


def time_urop2019(paths: list[Path]) -> float:
    """The recipe on one core: BLAS limited to one thread (librosa's mel product would otherwise spin
    a second thread, which only inflates its CPU time on this shared 2-core machine)."""
    import librosa
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _time_urop2019(librosa, paths)


def _time_urop2019(librosa, paths: list[Path]) -> float:

    librosa.power_to_db(librosa.feature.melspectrogram(y=librosa.load(paths[0], sr=16000)[0], n_mels=96))  # warm-up
    start = time.perf_counter()
    for path in paths:
        y, sr = librosa.load(path, sr=16000)
        librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=96))
    return time.perf_counter() - start


def time_decode(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        sf.read(path, dtype="float32")
    return time.perf_counter() - start


def cli_args(root: Path, out: Path, jobs: int, num_files: int, suffix: str = "") -> list[str]:
    return ["log-mel-spectrogram", str(out), "--csv-path", str(root / f"ultimate{suffix}.csv"), "--tag-path",
            str(root / f"clean_lastfm{suffix}.db"), "--root-dir", str(root / "audio"), "--num-files", str(num_files),
            "--min-length-s", "0", "--jobs", str(jobs), "--quiet"]


def time_cli(root: Path, out: Path, jobs: int, num_files: int, suffix: str = "", *extra: str) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    script = REPO / "tfrecords" / "preprocessing.py"
    subprocess.run([sys.executable, str(script), *cli_args(root, out, jobs, num_files, suffix), *extra],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_in_process(root: Path, out: Path, jobs: int, num_files: int) -> float:
    from tfrecords import preprocessing

    start = time.perf_counter()
    if preprocessing.main(cli_args(root, out, jobs, num_files)) != 0:
        raise SystemExit("preprocessing failed")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n-real", type=int, default=50, help="real 10 s clips (of 50)")
    parser.add_argument("--n-generated", type=int, default=20, help="generated 30 s 44.1 kHz stereo mp3s")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="'all cores' for (c)")
    parser.add_argument("--num-files", type=int, default=4, help="shards")
    parser.add_argument("--repeat", type=int, default=10,
                        help="(d) also runs both runners on the tracks listed this many times, to part the "
                             "fixed start-up cost from the per-track cost")
    parser.add_argument("--clips", type=Path, default=CLIPS, help="folder of the real clips")
    parser.add_argument("--runners-only", action="store_true", help="only (d): --runner beam against the pool")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="orpheus-bench-") as tmp:
        root = Path(tmp)
        paths = make_corpus(root, args.n_real, args.n_generated, clips_dir=args.clips)
        if not args.runners_only:
            compare_with_baselines(root, paths, args)
        compare_runners(root, paths, args)
    return 0


def compare_runners(root: Path, paths: list[Path], args: argparse.Namespace) -> None:
    """(d) --runner beam (DirectRunner, multi_processing) against --runner pool, fresh processes, with --jobs
    workers (wall) and with one (CPU: Beam's worker processes are reaped by the driver, so their CPU counts; a
    pool's forkserver workers are not, so CPU is compared at --jobs 1 only), on n tracks and on the same
    audio listed `repeat` times. time = fixed + tracks x per-track: the two sizes give both terms."""
    n, k = len(paths), max(2, args.repeat)
    audio_dir = root / "audio"
    write_tables(root, [str(p.relative_to(audio_dir)) for p in paths], repeat=k)
    load = os.getloadavg()[0]
    sizes = {n: "", n * k: f"_x{k}"}
    wall, cpu = {}, {}
    for jobs in dict.fromkeys((args.jobs, 1)):
        for runner in ("pool", "beam"):
            for size, suffix in sizes.items():
                out = root / f"d-{runner}-j{jobs}{suffix}"
                wall[runner, jobs, size], cpu[runner, jobs, size] = measured(
                    time_cli, root, out, jobs, args.num_files, suffix, "--runner", runner)
    for jobs in dict.fromkeys((args.jobs, 1)):
        for size, suffix in sizes.items():
            pool, beam = root / f"d-pool-j{jobs}{suffix}", root / f"d-beam-j{jobs}{suffix}"
            stock = sorted(pool.glob("*.tfrecord"))
            same = bool(stock) and sorted(q.name for q in beam.glob("*.tfrecord")) == [p.name for p in stock] and \
                all((beam / p.name).read_bytes() == p.read_bytes() for p in stock)
            print(f"--jobs {jobs}, {size} tracks: shards of --runner beam byte-identical to --runner pool "
                  f"({len(stock)} shards): {same}")
    print(f"(d) runners, fresh processes, {args.num_files} shards, {n} tracks and the same listed {k} times; load "
          f"average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end, {default_jobs()} cores")

    def line(what: str, table: dict, jobs: int) -> None:
        per = {r: (table[r, jobs, n * k] - table[r, jobs, n]) / (n * (k - 1)) for r in ("pool", "beam")}
        fixed = {r: table[r, jobs, n] - n * per[r] for r in ("pool", "beam")}
        for size in sizes:
            ratio = table["beam", jobs, size] / table["pool", jobs, size]
            print(f"d  --jobs {jobs} {what} {size:5d} tracks: pool {size / table['pool', jobs, size]:6.1f} tracks/s, "
                  f"beam {size / table['beam', jobs, size]:6.1f} tracks/s; beam / pool {ratio:.2f}x")
        print(f"d  --jobs {jobs} {what} per track: pool {1000 * per['pool']:.1f} ms, beam {1000 * per['beam']:.1f} ms "
              f"({per['beam'] / per['pool']:.2f}x); fixed: pool {fixed['pool']:.1f} s, beam {fixed['beam']:.1f} s")
        if 1.5 * per["pool"] > per["beam"]:
            crossover = max(0.0, (fixed["beam"] - 1.5 * fixed["pool"]) / (1.5 * per["pool"] - per["beam"]))
            print(f"d  --jobs {jobs} {what}: beam within 1.5x of the pool from about {crossover:.0f} tracks")

    line("wall", wall, args.jobs)
    line("CPU ", cpu, 1)
    print("target: beam / pool <= 1.5x wall on 2 cores")


def compare_with_baselines(root: Path, paths: list[Path], args: argparse.Namespace) -> None:
    """(a), (b), (c): the urop2019 recipe and the decode floor against preprocessing.py."""
    n = len(paths)
    load = os.getloadavg()[0]
    import librosa  # noqa: F401  (imports excluded from (a))
    times = {
        "b  decode only (soundfile)": measured(time_decode, paths),
        "a  urop2019 librosa recipe, 1 process": measured(time_urop2019, paths),
        "c1 preprocessing.py --jobs 1 (fresh process)": measured(time_cli, root, root / "c1", 1, args.num_files),
        f"cN preprocessing.py --jobs {args.jobs} (fresh process)": measured(time_cli, root, root / "cN", args.jobs,
                                                                           args.num_files),
    }
    import tensorflow  # noqa: F401  (start-up excluded from the in-process figures)
    times["c1' --jobs 1 in-process (start-up excluded)"] = measured(time_in_process, root, root / "c1p", 1,
                                                                    args.num_files)
    times[f"cN' --jobs {args.jobs} in-process (start-up excluded)"] = measured(time_in_process, root, root / "cNp",
                                                                               args.jobs, args.num_files)
    stock = sorted((root / "c1").glob("*.tfrecord"))
    for other in ("cN", "c1p", "cNp"):
        same = bool(stock) and all((root / other / p.name).read_bytes() == p.read_bytes() for p in stock)
        print(f"shards of {other} byte-identical to those of c1: {same}")
    print(f"{n} tracks ({n - args.n_generated} real 10 s clips + {args.n_generated} generated 30 s 44.1 kHz "
          "stereo mp3s); "
          f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end, {default_jobs()} cores")
    print(f"{'':55s} {'wall':>33s} {'CPU':>16s}")
    for name, (wall, cpu) in times.items():
        # forkserver workers are not our children: their CPU time is not visible here
        cpu_text = f"{1000 * cpu / n:7.1f} ms/track" if "jobs 1" in name or name[0] in "ab" else "    n/a (pool)"
        print(f"{name:55s} {n / wall:7.1f} tracks/s {1000 * wall / n:7.1f} ms/track {cpu_text}")
    walls = [w for w, _ in times.values()]
    cpus = [c for _, c in times.values()]
    b, a, c1, cn, c1p, cnp = walls
    print(f"target (c all cores) >= 3x (a), wall: {a / cn:.2f}x fresh process, {a / cnp:.2f}x in-process")
    print(f"target (c one job) <= 1.5x (b), wall: {c1 / b:.2f}x fresh process, {c1p / b:.2f}x in-process")
    b, a, c1, _, c1p, _ = cpus
    cores = min(args.jobs, default_jobs())
    print(f"from CPU time (load-independent; 'all cores' is the ideal c1 CPU / {cores}, not a measurement):")
    print(f"  (c one job) / (b):      {c1 / b:.2f}x fresh process, {c1p / b:.2f}x in-process")
    print(f"  (a) / (c one job):      {a / c1:.2f}x fresh process, {a / c1p:.2f}x in-process")
    print(f"  (a) / (c1 / {cores} cores):   {a / (c1 / cores):.2f}x fresh process, {a / (c1p / cores):.2f}x in-process")


if __name__ == "__main__":
    sys.exit(main())
