"""Benchmark `test_model.py predict --mp3 DIR` against the musicnn recipe run one track at a time.

(a) reference: for each file, librosa.load at 16 kHz, librosa mel (n_fft 512, hop 256, 96 mels),
    log10(10000 x + 1), consecutive 3 s windows (the last aligned to the end), one model call per track.
(b) orpheus: `run_predict(mp3=DIR, jobs=N)` in this process, timed from model load to the last
    result (process pool for decoding + features, batched inference across tracks).
Both use the same converted MSD_musicnn model (or --run-dir). Prints tracks/s, the speed ratio
and the max absolute difference of the per-track probabilities (targets: >= 3x, < 0.01).

    python bench/tagging.py                         # the shared clips, 2 worker processes
    python bench/tagging.py --generated 20          # plus 20 generated 30 s mp3s
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
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "clips"


def cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (the pool's workers)."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reference_tags(files, run_dir):
    """The musicnn recipe, one track at a time; returns ({file: probabilities [n_tags]}, seconds)."""
    import keras
    import librosa

    import orpheus.models  # noqa: F401  (custom layers)
    from orpheus.rundir import read_run_info
    start = time.perf_counter()
    info = read_run_info(run_dir)
    model = keras.saving.load_model(str(Path(run_dir) / "model.keras"), compile=False)
    width = info.window_frames
    out = {}
    for path in files:
        audio, _ = librosa.load(str(path), sr=16000)
        mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
        logmel = np.log10(10000 * mel + 1).astype(np.float32)
        if logmel.shape[0] < width:
            logmel = np.pad(logmel, ((0, width - logmel.shape[0]), (0, 0)))
        starts = list(range(0, logmel.shape[0] - width + 1, width))
        if starts[-1] != logmel.shape[0] - width:
            starts.append(logmel.shape[0] - width)
        windows = np.stack([logmel[s:s + width] for s in starts])
        out[str(path)] = np.asarray(model(windows, training=False)).mean(axis=0)
    return out, time.perf_counter() - start


def orpheus_tags(folder, run_dir, jobs):
    """`predict --mp3 folder --format json` in process; returns ({file: probabilities}, seconds)."""
    from orpheus.rundir import read_run_info
    from orpheus.test_model import run_predict
    tags = read_run_info(run_dir).tags
    stream = io.StringIO()
    start = time.perf_counter()
    status = run_predict(run_dir=str(run_dir), mp3=str(folder), fmt="json", jobs=jobs, quiet=True, stream=stream)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit("predict reported failed files")
    out = {}
    for line in stream.getvalue().splitlines():
        record = json.loads(line)
        out[record["file"]] = np.array([record["tags"][t] for t in tags])
    return out, seconds


def generate_mp3s(folder, count, seed=0):
    """`count` 30 s mp3s made of three shared clips each (mono, 44.1 kHz), in `folder`."""
    import soundfile as sf

    from orpheus.audio import load_audio
    rng = np.random.default_rng(seed)
    clips = sorted(CLIPS.glob("*.ogg"))
    for i in range(count):
        parts = [load_audio(clips[j], 44100)[0] for j in rng.choice(len(clips), 3, replace=False)]
        sf.write(str(folder / f"generated_{i:03d}.mp3"), np.concatenate(parts), 44100, format="MP3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(CLIPS), help="folder of audio files")
    parser.add_argument("--run-dir", help="run directory (default: the converted pretrained MSD_musicnn)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for (b)")
    parser.add_argument("--generated", type=int, default=0, help="also tag this many generated 30 s mp3s")
    args = parser.parse_args(argv)
    from orpheus.tagging import list_audio_files
    run_dir = args.run_dir
    if run_dir is None:
        from orpheus.pretrained import pretrained_run_dir
        run_dir = str(pretrained_run_dir("MSD_musicnn"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder)
        if args.generated:
            work = Path(tmp) / "audio"
            work.mkdir()
            for f in list_audio_files(folder):
                (work / f.name).symlink_to(f.resolve())
            generate_mp3s(work, args.generated)
            folder = work
        files = list_audio_files(folder)
        audio_s = sum(__import__("soundfile").info(str(f)).duration for f in files)
        print(f"{len(files)} files, {audio_s:.0f} s of audio, model {run_dir}")
        print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
        cpu0 = cpu_s()
        ours, ours_s = orpheus_tags(folder, run_dir, args.jobs)
        cpu1 = cpu_s()
        ref, ref_s = reference_tags(files, run_dir)
        cpu2 = cpu_s()
    diff = max(float(np.abs(ours[str(f)] - ref[str(f)]).max()) for f in files)
    print(f"(a) reference, one track at a time: {ref_s:7.2f} s  {len(files) / ref_s:6.2f} tracks/s  "
          f"(CPU {cpu2 - cpu1:.1f} s)")
    print(f"(b) predict --mp3 DIR, jobs={args.jobs}, in-process incl. model load: {ours_s:7.2f} s  "
          f"{len(files) / ours_s:6.2f} tracks/s  (CPU {cpu1 - cpu0:.1f} s incl. workers)")
    print(f"speed ratio (b)/(a): {ref_s / ours_s:.2f}x   max |probability difference|: {diff:.5f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
