"""Benchmark `test_model.py predict` against musicnn's recipe with its model compiled once.

Rows (each in its own process, so each peak RSS is its own; 30 s 44.1 kHz stereo mp3s, made from
../shared/audio clips or, without them, synthesised):
  reference   musicnn's recipe, one track at a time: librosa.load(sr=16000), librosa mel (n_fft 512,
              hop 256, 96 mels), log10(10000 x + 1), musicnn's 3 s windows (the frames after the last
              whole window dropped: 10 windows for 30 s), the same MSD_musicnn weights in ONE
              tf.function (compiled once, batch axis free), one call per track; timed like predict,
              from model load to the last result
  reference, apart
              the same work with its halves timed apart: every track decoded first (before TensorFlow
              is imported), then every track's model call. On a small machine TensorFlow's idle threads
              spin after each call and slow librosa's next track, and librosa's slow the next call
              (2 cores: 47 -> 130+ ms a track for librosa): this row is what the recipe costs without
              that, the stricter baseline
  floor       predict's windows (11 for 30 s: the last one aligned to the end) of the same features
              through the same compiled model, decoding and features excluded; and through the OpenVINO
              models that predict may run (float32 for exact; for fast, each arithmetic this CPU offers:
              bf16, int8+bf16 or int8, see `orpheus.tagging.fast_arithmetic`), in its batches of 16 windows,
              as many at once as it runs: where the time goes
  predict     `run_predict(--precision exact|fast, --jobs 1|all cores)` from model load to the last result
  memory      predict (exact, default settings) on 10 / 200 / 1000 files and one 60-minute file
Each speed row runs twice, on all the files and on the first two alone: the difference gives its
marginal time per track (the start-up, imports, model load and process pool, included in both, cancel
out), the two-file run its start-up. With `--repeat N` each run is made N times, rows interleaved, and
the median time is used (peak memory: the largest). Printed per row: tracks/s over the whole run,
start-up seconds, marginal ms per track, its ratio to the reference and to the reference timed apart,
the whole run's ratio to the reference's, peak RSS (VmHWM) of the main process and of the largest worker
(polled), and the max |p - p_floor| of the track scores against the first floor row (the same
windows; the reference rows are compared with the reference). The one-off OpenVINO conversion and
fast's choice of arithmetic are made (and cached, as in any use) before the rows are timed; the
choice, with each candidate's CPU ms per window, is printed first.

    python bench/tagging.py                          # 20 files, all rows but the big memory rows
    python bench/tagging.py --files 40 --repeat 3    # the speed rows, medians of 3
    python bench/tagging.py --files 190 --memory     # + 10/200/1000 files and a 60-minute file
"""

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "clips"


# ---------------------------------------------------------------- inputs

def synth(seconds: float, rate: int, rng) -> np.ndarray:
    """Chords with a beat over noise, mono float32: music-like enough to tag when no clip is around."""
    t = np.arange(int(seconds * rate)) / rate
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    chord = sum(np.sin(2 * np.pi * root * k * t) for k in (1, 1.26, 1.5, 2))
    beat = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.7) * rng.normal(size=t.size)
    return (0.15 * chord + 0.2 * beat + 0.02 * rng.normal(size=t.size)).astype(np.float32) / 1.5


def make_mp3s(folder: Path, count: int, seconds: float = 30.0, seed: int = 0) -> list[Path]:
    """`count` stereo 44.1 kHz mp3s of `seconds` each (concatenated shared clips, else synthesised)."""
    import soundfile as sf

    from orpheus.audio.decode import load_audio
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = sorted(CLIPS.glob("*.ogg")) if CLIPS.is_dir() else []
    cache: dict = {}
    out = []
    for i in range(count):
        path = folder / f"track_{i:04d}.mp3"
        if not path.exists():
            if clips:
                parts = []
                while sum(p.shape[0] for p in parts) < seconds * 44100:
                    j = int(rng.integers(len(clips)))
                    cache.setdefault(j, load_audio(clips[j], 44100)[0])
                    parts.append(cache[j])
                mono = np.concatenate(parts)[:int(seconds * 44100)]
            else:
                mono = synth(seconds, 44100, rng)
            sf.write(str(path), np.stack([mono, np.roll(mono, 37)], axis=1), 44100, format="MP3")
        out.append(path)
    return out


# ---------------------------------------------------------------- rows (run in a child process)

class PeakWatcher:
    """Polls the peak RSS (VmHWM) of this process's descendants: the pool's workers."""

    def __init__(self) -> None:
        self.worker_peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.2):
            for pid in descendants(me):
                self.worker_peak_kb = max(self.worker_peak_kb, peak_rss_kb(pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.worker_peak_kb


def peak_rss_kb(pid: int | str) -> int:
    """A process's peak RSS (VmHWM) in kB, 0 if it is gone. Not ru_maxrss: Linux carries that over from the
    parent across fork + exec, so a row started by a benchmark that had grown to 0.8 GB (the mp3s it made)
    reported 0.8 GB for every row."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def reference_windows(path, width, tail: bool = False):
    """musicnn's extractor recipe (librosa at 16 kHz, mel 512/256/96, log10(10000 x + 1)), 3 s windows.

    musicnn drops the frames after the last whole window (10 windows for 30 s); `tail=True` adds a last
    window aligned to the end as Orpheus does (11), so that the floor rows see predict's windows."""
    import librosa
    audio, _ = librosa.load(str(path), sr=16000)
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    logmel = np.log10(10000 * mel + 1).astype(np.float32)
    if logmel.shape[0] < width:
        logmel = np.pad(logmel, ((0, width - logmel.shape[0]), (0, 0)))
    starts = list(range(0, logmel.shape[0] - width + 1, width))
    if tail and starts[-1] != logmel.shape[0] - width:
        starts.append(logmel.shape[0] - width)
    return np.stack([logmel[s:s + width] for s in starts])


def compiled_reference(run_dir):
    import keras
    import tensorflow as tf

    import orpheus.models.layers  # noqa: F401  (custom layers)
    from orpheus.formats.rundir import read_run_info
    info = read_run_info(run_dir)
    model = keras.saving.load_model(str(Path(run_dir) / "model.keras"), compile=False)
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec([None, info.window_frames, 96], tf.float32)])
    return info, forward


def row(kind: str, files: list[str], run_dir: str, jobs: int, precision: str) -> dict:
    watcher = PeakWatcher()
    scores = {}
    if kind == "openvino-floor":  # predict's own model, its batches, the same windows
        from orpheus.tagging import fast_arithmetic
        from orpheus.tagging.backends import openvino_backend, openvino_ir
        from orpheus.formats.rundir import read_run_info
        from orpheus.tagging.tagger import BATCH_SIZES
        info = read_run_info(run_dir)
        windows = {f: reference_windows(f, info.window_frames, tail=True) for f in files}
        if precision != "exact":  # one of fast's candidates: chosen (and cached) as the only one offered
            fast_arithmetic.available_candidates = lambda flags=None: (precision,)
        backend = openvino_backend(openvino_ir(Path(run_dir), False), "exact" if precision == "exact" else "fast",
                                   Path(run_dir), info.window_frames, False)
        batch = BATCH_SIZES["openvino"]
        backend.forward(np.zeros((batch, info.window_frames, 96), np.float32))
        start = time.perf_counter()
        every = np.concatenate([windows[f] for f in files])
        running, parts = [], []  # as predict runs it: up to backend.in_flight batches at once
        for i in range(0, len(every), batch):
            if len(running) == backend.in_flight:
                parts.append(running.pop(0)()[0])
            running.append(backend.start(every[i:i + batch]))
        probabilities = np.concatenate(parts + [wait()[0] for wait in running])
        offset = 0
        for f in files:
            scores[f] = probabilities[offset:offset + len(windows[f])].mean(axis=0).tolist()
            offset += len(windows[f])
    elif kind in ("reference", "reference-apart", "floor"):
        from orpheus.formats.rundir import read_run_info
        start = time.perf_counter()  # the reference, like predict, counts its model load and trace
        if kind == "reference-apart":  # its two halves apart: every track decoded before TensorFlow is imported
            windows = {f: reference_windows(f, read_run_info(run_dir).window_frames) for f in files}
        info, forward = compiled_reference(run_dir)
        forward(np.zeros((1, info.window_frames, 96), np.float32))
        if kind == "floor":  # the floor counts the forward passes only, of predict's windows
            windows = {f: reference_windows(f, info.window_frames, tail=True) for f in files}
            start = time.perf_counter()
        for f in files:
            w = reference_windows(f, info.window_frames) if kind == "reference" else windows[f]
            scores[f] = np.asarray(forward(w)).mean(axis=0).tolist()
    else:
        from orpheus.formats.rundir import read_run_info
        from orpheus.tagging.backends import use_system_allocator
        from orpheus.tagging.predict import run_predict
        use_system_allocator()   # as `orpheus predict` does at start
        tags = read_run_info(run_dir).tags
        folder = str(Path(files[0]).parent) if len(files) > 1 else files[0]
        stream = io.StringIO()
        start = time.perf_counter()
        run_predict(run_dir=run_dir, mp3=folder, fmt="json", jobs=jobs, quiet=True, stream=stream,
                    precision=precision)
        for line in stream.getvalue().splitlines():
            record = json.loads(line)
            scores[record["file"]] = [record["tags"][t] for t in tags]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "n": len(files), "main_mb": peak_rss_kb("self") / 1024,
            "worker_mb": watcher.stop() / 1024, "scores": scores}


def run_row(args: list[str]) -> dict:
    """One row in a fresh process (its own peak RSS)."""
    out = subprocess.run([sys.executable, __file__, "--row-json", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"row {args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20, help="30 s mp3s for the speed rows")
    parser.add_argument("--memory", action="store_true", help="also the 10/200/1000-file and 60-minute rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each speed row (the median is printed)")
    parser.add_argument("--run-dir", help="run directory (default: the converted pretrained MSD_musicnn)")
    parser.add_argument("--work", help="folder for the generated mp3s (default: a temporary folder)")
    parser.add_argument("--row-json", nargs=5, metavar=("KIND", "LIST", "RUN_DIR", "JOBS", "PRECISION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row_json:
        kind, listing, run_dir, jobs, precision = args.row_json
        print(json.dumps(row(kind, Path(listing).read_text().split("\n"), run_dir, int(jobs), precision)))
        return 0
    run_dir = args.run_dir
    if run_dir is None:
        from orpheus.models.pretrained import pretrained_run_dir
        run_dir = str(pretrained_run_dir("MSD_musicnn"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        speed = make_mp3s(work / f"speed{args.files}", args.files)
        short = make_mp3s(work / "speed2", 2)  # the same first two tracks, in a folder of their own
        from orpheus import cpu
        print(f"{len(speed)} x 30 s 44.1 kHz stereo mp3 ({'shared clips' if CLIPS.is_dir() else 'synthesised'}), "
              f"model {Path(run_dir).name}, {cpu.describe()}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)

        def listing(files, name):
            path = work / f"{name}.txt"
            path.write_text("\n".join(str(f) for f in files))
            return str(path)

        from orpheus.tagging.fast_arithmetic import available_candidates
        rows = [("reference: musicnn recipe, compiled once, 1 by 1", "reference", speed, 1, "exact"),
                ("reference, decoding and model timed apart", "reference-apart", speed, 1, "exact"),
                ("forward-only floor (same windows, same model)", "floor", speed, 1, "exact"),
                ("forward-only floor, OpenVINO float32 (exact)", "openvino-floor", speed, 1, "exact")]
        for arithmetic in available_candidates():  # what fast may choose on this CPU
            if arithmetic != "float32":
                rows.append((f"forward-only floor, OpenVINO {arithmetic}", "openvino-floor", speed, 1, arithmetic))
        for precision in ("exact", "fast"):
            for jobs in sorted({1, cores}):
                rows.append((f"predict --precision {precision} --jobs {jobs}", "predict", speed, jobs, precision))
        if args.memory:
            for n in (10, 200, 1000):
                files = make_mp3s(work / f"mem{n}", n)
                rows.append((f"memory: predict, {n} files", "predict", files, cores, "exact"))
            rows.append(("memory: predict --precision fast, 1000 files", "predict", files, cores, "fast"))
            hour = work / "hour" / "hour.mp3"
            if not hour.exists():
                import soundfile as sf
                hour.parent.mkdir(parents=True)
                block = np.stack([synth(60, 44100, np.random.default_rng(i)) for i in range(2)], axis=1)
                with sf.SoundFile(str(hour), "w", 44100, 2, format="MP3") as f:
                    for _ in range(60):
                        f.write(block)
            rows.append(("memory: predict, one 60-minute file", "predict", [hour], cores, "exact"))
            rows.append(("memory: predict --precision fast, one 60-minute file", "predict", [hour], cores, "fast"))
        run_row(["predict", listing(speed[:1], "warm"), run_dir, "1", "fast"])  # the one-off conversion and choice
        for _, kind, _, _, arithmetic in rows:  # and each floor candidate's, so no timed row makes one
            if kind == "openvino-floor" and arithmetic != "exact":
                run_row([kind, listing(speed[:1], "warm"), run_dir, "1", arithmetic])
        from orpheus.tagging.fast_arithmetic import CHOICE_FILE, choice_dir
        from orpheus.tagging.backends import model_digest
        from orpheus.files import default_cache_dir
        from orpheus.formats.rundir import read_run_info
        folder = choice_dir(default_cache_dir(), model_digest(Path(run_dir) / "model.keras"),
                            read_run_info(run_dir).window_frames)
        fast = json.loads((folder / CHOICE_FILE).read_text())
        print(f"--precision fast on this CPU ({fast['cpu']}): {fast['chosen']}, chosen at first use from "
              + ", ".join(f"{n} {c.get('cpu_ms_per_window', '-')} CPU ms/window (max |dp| {c['max_abs_difference']})"
                          for n, c in fast["candidates"].items()), flush=True)
        print(f"{'row':<52} {'tracks/s':>8} {'start s':>7} {'ms/track':>8} {'x ref':>6} {'x apart':>7} {'(all)':>6} "
              f"{'main MB':>7} {'worker MB':>9} {'max|dp|':>7}")
        timed: dict[int, list] = {}
        for _ in range(args.repeat):  # rows interleaved, so a slow spell of the machine spreads over all of them
            for i, (label, kind, files, jobs, precision) in enumerate(rows):
                if label.startswith("memory") and i in timed:
                    continue
                both = [run_row([kind, listing(files, "list"), run_dir, str(jobs), precision])]
                if not label.startswith("memory") and len(files) > len(short):
                    both.append(run_row([kind, listing(short, "short"), run_dir, str(jobs), precision]))
                timed.setdefault(i, []).append(both)
        results = {}
        for i, (label, kind, files, jobs, precision) in enumerate(rows):
            runs = timed[i]
            result = {**runs[0][0], "seconds": float(np.median([r[0]["seconds"] for r in runs])),
                      "main_mb": max(r[0]["main_mb"] for r in runs), "worker_mb": max(r[0]["worker_mb"] for r in runs),
                      "marginal_s": float("nan"), "startup_s": float("nan")}
            if len(runs[0]) > 1:
                short_s = float(np.median([r[1]["seconds"] for r in runs]))
                result["marginal_s"] = (result["seconds"] - short_s) / (len(files) - len(short))
                result["startup_s"] = short_s - len(short) * result["marginal_s"]
            results[i] = result
        first = {kind: results[i] for i, (_, kind, *_) in reversed(list(enumerate(rows)))}
        reference, apart = first["reference"], first["reference-apart"]
        same_windows = first["floor"]  # predict's windows through musicnn's features and the Keras model
        for i, (label, kind, files, jobs, precision) in enumerate(rows):
            result = results[i]
            rate = result["n"] / result["seconds"]
            against = reference if kind.startswith("reference") else same_windows
            common = [f for f in result["scores"] if f in against["scores"]]
            diff = max((float(np.abs(np.subtract(result["scores"][f], against["scores"][f])).max()) for f in common),
                       default=float("nan"))
            print(f"{label:<52} {rate:8.2f} {result['startup_s']:7.1f} {1000 * result['marginal_s']:8.0f} "
                  f"{reference['marginal_s'] / result['marginal_s']:6.2f} {apart['marginal_s'] / result['marginal_s']:7.2f} "
                  f"{rate / (reference['n'] / reference['seconds']):6.2f} {result['main_mb']:7.0f} "
                  f"{result['worker_mb']:9.0f} {diff:7.4f}   (load {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
