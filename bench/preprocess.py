"""Benchmark of the preprocessing stage against the original urop2019 recipe and the decode floor.

On the same tracks in one run (the real clips of ../shared/audio/clips, 10 s, plus generated 30 s
44.1 kHz stereo mp3s made from them), log-mel dB at 16 kHz:
    floor  decode only with soundfile, one process
    seed   the urop2019 recipe with today's librosa, one process: librosa.load(sr=16000),
           melspectrogram(n_mels=96), power_to_db
    ours   tfrecords/preprocessing.py log-mel-spectrogram with --jobs 1 and with all cores:
           in-process (start-up excluded), a fresh process (start-up included), and the marginal
           time per track of fresh processes (the same audio listed --repeat times: the fixed
           start-up cost cancels out, as on a long run)
Then `--runner beam` (Apache Beam's DirectRunner, multi_processing) against the default `--runner
pool`, fresh processes, on the tracks and on the same audio listed --repeat times: each runner's
fixed cost and per-track cost, and from how many tracks Beam is within 1.5x of the pool.

Prints ms per track (wall) and the ratios against the targets: one job <= 1.5x the floor, all cores
>= 3x the seed, all cores >= 0.9 x cores x one job; CPU ms per track where this process tree's CPU
time is visible; where the writer (the main process) waited; and the start-up costs. Wall figures
carry the load of other jobs on a shared machine (printed with the CPU); run it on a quiet one, e.g.
under `flock /tmp/orpheus-bench.lock`.
Run: python bench/preprocess.py [--n-real 50 --n-generated 50 --repeat 4] [--runners-only | --no-runners]
"""

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines (nothing here should import it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import contextlib
import csv
import io
import logging
import resource
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from orpheus import cpu

from orpheus.audio import decode as audio
from orpheus.cli import default_jobs
from orpheus.files import stderr_redirected

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


def write_tables(root: Path, mp3_paths: list[str], repeat: int) -> str:
    """ultimate{suffix}.csv and clean_lastfm{suffix}.db (real schema) for `mp3_paths`, each listed `repeat`
    times under distinct track ids (suffix "" for 1, else "_x{repeat}"): more tracks, the same audio.
    Returns the suffix."""
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
    return suffix


@contextlib.contextmanager
def c_stderr_counted(counts: dict) -> Iterator[None]:
    """Send what C libraries write to stderr (libmpg123's notes on the generated mp3s) to a file, and count
    its lines into counts["lines"], so the tables stay readable."""
    with tempfile.TemporaryFile() as sink:
        try:
            with stderr_redirected(sink.fileno()):
                yield
        finally:
            sink.seek(0)
            counts["lines"] = counts.get("lines", 0) + len(sink.read().splitlines())


def cpu_seconds() -> float:
    """CPU time of this process and of every child it reaped (with the children those reaped)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def pool_cpu_seconds() -> float:
    """CPU time of this process's fork server (`orpheus.parallel`'s pools start their workers from it) and of
    the workers it reaped: the pool's share of an in-process run, which `cpu_seconds` does not see."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # None until a pool has started it
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() if pid else []
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK") if fields else 0.0  # u, s, cu, cs time


def measured(func, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process tree and of the pool's fork server) of `func(*args)`."""
    wall, cpu = time.perf_counter(), cpu_seconds() + pool_cpu_seconds()
    func(*args)
    return time.perf_counter() - wall, cpu_seconds() + pool_cpu_seconds() - cpu


def best_of(repeats: int, func, *args) -> tuple[float, float]:
    """`measured(func, *args)` `repeats` times: the fastest (wall, CPU). The machine's noise (other jobs, memory
    the kernel reclaimed and faults in again) only ever adds time, so the best run is the cost itself; every row
    gets the same treatment, the baselines included."""
    return min((measured(func, *args) for _ in range(repeats)), key=lambda run: run[0])


def time_decode(paths: list[Path]) -> None:
    for path in paths:
        sf.read(path, dtype="float32")


def time_decode_mono(paths: list[Path]) -> None:
    """Our decoding: `load_audio` at the file's rate (stereo mp3s mixed to mono in libmpg123)."""
    for path in paths:
        audio.load_audio(path)


def interleaved_ratio(paths: list[Path], passes: int) -> tuple[float, float, float]:
    """The floor and one job's per-track path (`tfrecords.shards.encode_track`: decode, features, record) timed
    track by track in turn, `passes` times: (floor CPU ms, ours CPU ms, ours / floor). Both see the same moment of
    the machine, so its drift (measured here: +-10% over tens of seconds) cancels out of the ratio."""
    from orpheus.audio.settings import FeatureSettings
    from tfrecords.plan import Track
    from tfrecords.shards import ShardSettings, encode_track

    settings = ShardSettings(FeatureSettings("log-mel-spectrogram", 16000, 96, 2048, 512, "db", None), "float32", 0.0)
    jobs = [(Track(f"TR{i}", "AR", str(p), str(p)), settings, len(TAGS)) for i, p in enumerate(paths)]
    floor = ours = 0.0
    for _ in range(passes):
        for path, job in zip(paths, jobs):
            start = time.process_time()
            sf.read(path, dtype="float32")
            middle = time.process_time()
            encode_track(job)
            floor, ours = floor + middle - start, ours + time.process_time() - middle
    n = passes * len(paths)
    return 1000 * floor / n, 1000 * ours / n, ours / floor


def time_urop2019(paths: list[Path]) -> None:
    """The recipe on one core: BLAS limited to one thread (librosa's mel product would otherwise spin a
    second thread, which only inflates its CPU time on a shared machine); warmed up on the first track."""
    import librosa
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for path in paths:
            y, sr = librosa.load(path, sr=16000)
            librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=96))


def cli_args(root: Path, out: Path, jobs: int, num_files: int, suffix: str = "") -> list[str]:
    return ["log-mel-spectrogram", str(out), "--csv-path", str(root / f"ultimate{suffix}.csv"), "--tag-path",
            str(root / f"clean_lastfm{suffix}.db"), "--root-dir", str(root / "audio"), "--num-files", str(num_files),
            "--min-length-s", "0", "--jobs", str(jobs), "--quiet"]


def run_fresh(argv: list[str], what: str) -> None:
    """A fresh `python` process, its output kept (and shown only when it fails)."""
    done = subprocess.run([sys.executable, *argv], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}")


def time_cli(root: Path, out: Path, jobs: int, num_files: int, suffix: str = "", *extra: str) -> None:
    out = new_folder(out)
    run_fresh([str(REPO / "tfrecords" / "preprocessing.py"), *cli_args(root, out, jobs, num_files, suffix), *extra],
              f"preprocessing.py --jobs {jobs} {' '.join(extra)}")


class WriterLog(logging.Handler):
    """Keeps the pool's DEBUG line on where the writer's time went (`tfrecords.runners.run_pool`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "the writer waited" in record.getMessage():
            self.lines.append(record.getMessage())


def new_folder(out: Path) -> Path:
    """`out`, or out-2, out-3, ... where it exists: each run of a row writes a new folder (best_of runs it again)."""
    candidate, k = out, 1
    while candidate.exists():
        k += 1
        candidate = out.with_name(f"{out.name}-{k}")
    return candidate


def time_in_process(root: Path, out: Path, jobs: int, num_files: int, writer_log: WriterLog) -> None:
    from tfrecords import preprocessing

    out = new_folder(out)

    logger = logging.getLogger("tfrecords.runners")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(writer_log)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its summary lines
            status = preprocessing.main(cli_args(root, out, jobs, num_files))
        if status != 0:
            raise SystemExit("preprocessing failed")
    finally:
        logger.removeHandler(writer_log)
        logger.setLevel(level)


def same_shards(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.tfrecord"))
    return bool(names) and names == sorted(p.name for p in b.glob("*.tfrecord")) and \
        all((a / name).read_bytes() == (b / name).read_bytes() for name in names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n-real", type=int, default=50, help="real 10 s clips (of 50)")
    parser.add_argument("--n-generated", type=int, default=50, help="generated 30 s 44.1 kHz stereo mp3s")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="'all cores'")
    parser.add_argument("--num-files", type=int, default=4, help="shards")
    parser.add_argument("--repeat", type=int, default=4,
                        help="the fresh-process runs also run on the tracks listed this many times, which parts the "
                             "fixed start-up cost from the per-track (marginal) cost")
    parser.add_argument("--clips", type=Path, default=CLIPS, help="folder of the real clips")
    parser.add_argument("--best-of", type=int, default=3,
                        help="each row of the first table: the fastest of this many runs")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--runners-only", action="store_true", help="only --runner beam against the pool")
    group.add_argument("--no-runners", action="store_true", help="skip --runner beam against the pool")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu.describe()}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="orpheus-bench-") as tmp:
        root = Path(tmp)
        paths = make_corpus(root, args.n_real, args.n_generated, clips_dir=args.clips)
        audio_dir = root / "audio"
        repeated = write_tables(root, [str(p.relative_to(audio_dir)) for p in paths], repeat=max(2, args.repeat))
        if not args.runners_only:
            compare_with_baselines(root, paths, repeated, args)
        if not args.no_runners:
            compare_runners(root, paths, repeated, args)
    return 0


def compare_with_baselines(root: Path, paths: list[Path], repeated: str, args: argparse.Namespace) -> None:
    """The floor and the seed recipe against preprocessing.py, in-process, fresh and marginal."""
    n, k, jobs = len(paths), max(2, args.repeat), args.jobs
    import librosa  # noqa: F401  (imports excluded from the seed's time)

    notes: dict = {}
    writer_logs = {1: WriterLog(), jobs: WriterLog()}
    load = os.getloadavg()[0]
    with c_stderr_counted(notes):
        time_urop2019(paths[:1])  # warm-up: librosa's lazy imports and caches
        rows = {
            "floor": best_of(args.best_of, time_decode, paths),
            "ours_decode": best_of(args.best_of, time_decode_mono, paths),
            "seed": best_of(args.best_of, time_urop2019, paths),
            "in1": best_of(args.best_of, time_in_process, root, root / "in1", 1, args.num_files, writer_logs[1]),
            "inN": best_of(args.best_of, time_in_process, root, root / "inN", jobs, args.num_files,
                           writer_logs[jobs]),
        }
        fresh = {}
        for j in dict.fromkeys((1, jobs)):
            for size, suffix in ((n, ""), (n * k, repeated)):
                fresh[j, size] = best_of(args.best_of, time_cli, root, root / f"fresh{j}{suffix}", j, args.num_files,
                                         suffix)
        imports = measured(run_fresh, ["-c", "import tfrecords.preprocessing"], "import")
        tensorflow = measured(run_fresh, ["-c", "import tensorflow"], "import tensorflow")
        paired = interleaved_ratio(paths, args.best_of)
    marginal = {j: (fresh[j, n * k][0] - fresh[j, n][0]) / (n * (k - 1)) for j in dict.fromkeys((1, jobs))}
    marginal_cpu = (fresh[1, n * k][1] - fresh[1, n][1]) / (n * (k - 1))  # pool workers are not reaped into it
    ms = {name: 1000 * wall / n for name, (wall, _) in rows.items()}
    ms.update({f"marginal{j}": 1000 * marginal[j] for j in marginal})
    ms.update({f"fresh{j}": 1000 * fresh[j, n][0] / n for j in dict.fromkeys((1, jobs))})
    cpu = {name: 1000 * seconds / n for name, (_, seconds) in rows.items()}
    print(f"\n{n} tracks ({n - args.n_generated} real 10 s clips + {args.n_generated} generated 30 s 44.1 kHz stereo "
          f"mp3s), log-mel dB at 16 kHz, {args.num_files} shards; each row the best of {args.best_of} runs; "
          f"marginal: fresh processes on {n} and {n * k} tracks; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    print("| row | ms per track (wall) | CPU ms per track | against |\n|---|---:|---:|---|")
    floor, seed = ms["floor"], ms["seed"]

    def row(name: str, value: float, cpu_ms: float | None, against: str) -> None:
        print(f"| {name} | {value:.1f} | {'' if cpu_ms is None else f'{cpu_ms:.1f}'} | {against} |")

    row("decode only (soundfile)", floor, cpu["floor"], "the floor")
    row("decode to mono, ours (`load_audio`; libmpg123 mixes stereo mp3s)", ms["ours_decode"], cpu["ours_decode"],
        f"{ms['ours_decode'] / floor:.2f}x the floor")
    row("urop2019 recipe (librosa load + mel + dB), one process", seed, cpu["seed"], "the seed")
    row("`--jobs 1`, in-process (start-up excluded)", ms["in1"], cpu["in1"],
        f"{ms['in1'] / floor:.2f}x the floor (target <= 1.5x); {seed / ms['in1']:.2f}x the seed")
    row(f"`--jobs {jobs}`, in-process (pool start included; CPU of all its processes)", ms["inN"], cpu["inN"],
        f"{seed / ms['inN']:.2f}x the seed (target >= 3x); {ms['in1'] / ms['inN']:.2f}x one job; CPU "
        f"{cpu['inN'] / cpu['in1']:.2f}x one job's")
    row("`--jobs 1`, marginal (fresh processes)", ms["marginal1"], 1000 * marginal_cpu,
        f"{ms['marginal1'] / floor:.2f}x the floor (target <= 1.5x)")
    row("one job's per-track path, timed in turn with the floor track by track", paired[1], paired[1],
        f"{paired[2]:.2f}x the floor's {paired[0]:.1f} ms in the same passes (target <= 1.5x)")
    if jobs != 1:
        many = ms[f"marginal{jobs}"]
        row(f"`--jobs {jobs}`, marginal (fresh processes)", many, None,
            f"{seed / many:.2f}x the seed (target >= 3x); {ms['marginal1'] / many:.2f}x one job (target >= "
            f"{0.9 * jobs:.1f}x)")
    for j in dict.fromkeys((1, jobs)):
        row(f"`--jobs {j}`, a fresh process, {n} tracks", ms[f"fresh{j}"], None,
            f"{seed / ms[f'fresh{j}']:.2f}x the seed; start-up {fresh[j, n][0] - n * marginal[j]:.2f} s")
    print(f"start-up: python + `import tfrecords.preprocessing` {imports[0]:.2f} s; `import tensorflow` (which "
          f"preprocessing no longer does) {tensorflow[0]:.2f} s")
    for j, log in writer_logs.items():
        print(f"writer, in-process --jobs {j}: {'; '.join(log.lines) or 'no log line'}")
    others = sorted(p.name for p in root.iterdir() if p.name.startswith(("in", "fresh")) and "_x" not in p.name)
    print(f"shards byte-identical across in-process, fresh, --jobs 1 and --jobs {jobs}, each run: "
          f"{all(same_shards(root / 'in1', root / other) for other in others)}")
    if notes.get("lines"):
        print(f"(libmpg123 wrote {notes['lines']} lines about the generated mp3s to stderr; not shown)")


def compare_runners(root: Path, paths: list[Path], repeated: str, args: argparse.Namespace) -> None:
    """--runner beam (DirectRunner, multi_processing) against --runner pool, fresh processes, wall and CPU of the
    process tree, on n tracks and on the same audio listed `repeat` times: time = fixed + tracks x per-track."""
    n, k = len(paths), max(2, args.repeat)
    load = os.getloadavg()[0]
    sizes = {n: "", n * k: repeated}
    wall, cpu = {}, {}
    for jobs in dict.fromkeys((args.jobs, 1)):
        for runner in ("pool", "beam"):
            for size, suffix in sizes.items():
                out = root / f"d-{runner}-j{jobs}{suffix}"
                wall[runner, jobs, size], cpu[runner, jobs, size] = measured(
                    time_cli, root, out, jobs, args.num_files, suffix, "--runner", runner)
    print(f"\n--runner beam (DirectRunner, multi_processing) against --runner pool, fresh processes, {args.num_files} "
          f"shards, {n} tracks and the same listed {k} times; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    for jobs in dict.fromkeys((args.jobs, 1)):
        same = all(same_shards(root / f"d-pool-j{jobs}{suffix}", root / f"d-beam-j{jobs}{suffix}")
                   for suffix in sizes.values())
        print(f"--jobs {jobs}: shards of --runner beam byte-identical to --runner pool: {same}")
    print("| --jobs | measure | tracks | pool tracks/s | beam tracks/s | beam / pool |\n|---|---|---:|---:|---:|---:|")
    for jobs, what, table in ((args.jobs, "wall", wall), (1, "CPU", cpu)):
        for size in sizes:
            pool, beam = table["pool", jobs, size], table["beam", jobs, size]
            print(f"| {jobs} | {what} | {size} | {size / pool:.1f} | {size / beam:.1f} | {beam / pool:.2f}x |")
    for jobs, what, table in ((args.jobs, "wall", wall), (1, "CPU", cpu)):
        per = {r: (table[r, jobs, n * k] - table[r, jobs, n]) / (n * (k - 1)) for r in ("pool", "beam")}
        fixed = {r: table[r, jobs, n] - n * per[r] for r in ("pool", "beam")}
        line = (f"--jobs {jobs} {what}: per track pool {1000 * per['pool']:.1f} ms, beam {1000 * per['beam']:.1f} ms "
                f"({per['beam'] / per['pool']:.2f}x); fixed: pool {fixed['pool']:.1f} s, beam {fixed['beam']:.1f} s")
        if 1.5 * per["pool"] > per["beam"]:
            crossover = max(0.0, (fixed["beam"] - 1.5 * fixed["pool"]) / (1.5 * per["pool"] - per["beam"]))
            line += f"; beam within 1.5x of the pool from about {crossover:.0f} tracks"
        else:
            line += "; beam's per-track cost alone is over 1.5x the pool's"
        print(line)
    print("target: beam / pool <= 1.5x wall from a few hundred tracks")


if __name__ == "__main__":
    sys.exit(main())
