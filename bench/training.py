"""Benchmark of the input pipeline and both training loops (issue 4, "Speed").

Writes real shards from the clips of ../shared/audio/clips (16 kHz log-mel, 96 mels, the "db" preset,
via `orpheus.audio.features` and `orpheus.spec`, with seeded random multi-hot tags), then prints:
  1. input pipeline examples/s alone (`make_dataset`, training mode: shuffles, random crops,
     normalisation, batching; no model);
  2. training examples/s of the Pons log-mel model with `--loop fit` and `--loop custom`
     (steady state: the first epoch, with tracing, is left out; validation is not timed);
  3. the ratio custom/fit (target >= 0.9) and input/training (target >= 5).

Example:
    python bench/training.py
    python bench/training.py --window-s 15 --batch-size 64 --steps 5
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from orpheus import data_input, training  # noqa: E402
from orpheus.audio import AUDIO_EXTENSIONS, features, load_audio  # noqa: E402
from orpheus.feature_settings import FeatureSettings  # noqa: E402
from orpheus.config import load_config  # noqa: E402
from orpheus.spec import DatasetInfo, serialize, shard_name, to_example, write_dataset_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "audio" / "clips"
SAMPLE_RATE, N_MELS, N_TAGS = 16000, 96, 50


def write_real_shards(shard_dir: Path, clips: list[Path], n_shards: int = 4) -> DatasetInfo:
    """Log-mel shards of `clips`: every clip in train, the first 8 also in valid."""
    rng = np.random.default_rng(0)
    spectrograms = [features(load_audio(p, SAMPLE_RATE)[0], SAMPLE_RATE, format="log-mel-spectrogram",
                             n_mels=N_MELS) for p in clips]
    tags = (rng.random((len(clips), N_TAGS)) < 0.2).astype(np.int64)
    info = DatasetInfo(features=FeatureSettings("log-mel-spectrogram", SAMPLE_RATE, n_mels=N_MELS, n_fft=2048,
                                                hop_length=512, preset="db"),
                       tags=tuple(f"tag{i}" for i in range(N_TAGS)),
                       counts={"train": len(clips), "valid": 8},
                       positives={"train": tags.sum(0).tolist(), "valid": tags[:8].sum(0).tolist()})
    for split, count in (("train", len(clips)), ("valid", 8)):
        writers = [tf.io.TFRecordWriter(str(shard_dir / shard_name(split, i, n_shards))) for i in range(n_shards)]
        for i in range(count):
            example = {"tid": clips[i].stem, "artist_id": "", "audio": spectrograms[i], "tags": tags[i]}
            writers[i % n_shards].write(serialize(to_example(example, info.spec())))
        for writer in writers:
            writer.close()
    write_dataset_info(shard_dir, info)
    return info


def input_examples_per_s(shard_dir: Path, config, steps: int) -> float:
    run_info = data_input.make_run_info(shard_dir, config)
    dataset = data_input.make_dataset(shard_dir, "train", config, training=True, seed=0, run_info=run_info,
                                      epochs=(0, 1000), steps_per_epoch=2)
    iterator = iter(dataset)
    for _ in range(3):  # warm-up
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * config.train.batch_size / (time.perf_counter() - start)


class StepTimer(keras.callbacks.Callback):
    """Seconds of the training steps of each epoch (from epoch begin to its last batch end)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_s: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_s.append(self.last - self.start)


def training_examples_per_s(shard_dir: Path, config, loop: str, steps: int, epochs: int) -> float:
    """Steady-state examples/s of one loop, through the same functions `train` uses."""
    keras.utils.set_random_seed(0)
    strategy = training.choose_strategy()
    run_info = data_input.make_run_info(shard_dir, config)
    with tempfile.TemporaryDirectory() as run_dir, strategy.scope():
        model, optimizer = training.build_training_model(config, run_info, steps, epochs)
        callbacks, _ = training.make_callbacks(Path(run_dir), config, model, optimizer, resume=False)
        timer = StepTimer()
        train_data = strategy.distribute_datasets_from_function(lambda ctx: data_input.make_dataset(
            shard_dir, "train", config, ctx, training=True, seed=0, run_info=run_info, epochs=(0, epochs),
            steps_per_epoch=steps))
        valid_data = strategy.distribute_datasets_from_function(lambda ctx: data_input.make_dataset(
            shard_dir, "valid", config, ctx, training=False, run_info=run_info))
        if loop == "fit":
            training.fit_loop(model, train_data, valid_data, [timer] + callbacks, start_epoch=0, epochs=epochs,
                              steps=steps, quiet=True)
        else:
            training.custom_loop(model, optimizer, strategy, train_data, valid_data, [timer] + callbacks,
                                 start_epoch=0, epochs=epochs, steps=steps, global_batch=config.train.batch_size,
                                 xla=False, quiet=True)
    steady = timer.epoch_s[1:]
    return len(steady) * steps * config.train.batch_size / sum(steady)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "urop2019_log_mel.json"))
    parser.add_argument("--window-s", type=float, default=5.0, help="crop length (the clips are 10 s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop (the first is not timed)")
    parser.add_argument("--input-steps", type=int, default=60)
    parser.add_argument("--order", nargs=2, default=["fit", "custom"], choices=["fit", "custom"],
                        help="which loop is timed first (the load of a shared machine drifts)")
    args = parser.parse_args()
    clips = sorted(p for p in CLIPS.iterdir() if p.suffix in AUDIO_EXTENSIONS) if CLIPS.is_dir() else []
    if not clips:
        print(f"no clips in {CLIPS}", file=sys.stderr)
        return 1
    config = load_config(args.config).replace(data={"window_s": args.window_s},
                                              train={"batch_size": args.batch_size})
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {len(clips)} clips; "
          f"{config.model.name} (n_filters {config.model.n_filters}, n_dense {config.model.n_dense}), "
          f"window {args.window_s} s, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        shard_dir = Path(tmp)
        start = time.perf_counter()
        write_real_shards(shard_dir, clips)
        print(f"shards written in {time.perf_counter() - start:.1f} s")
        input_rate = input_examples_per_s(shard_dir, config, args.input_steps)
        print(f"input pipeline alone:   {input_rate:8.1f} examples/s")
        rates = {}
        for loop in args.order:
            rates[loop] = training_examples_per_s(shard_dir, config, loop, args.steps, args.epochs)
            print(f"training, --loop {loop:6s}: {rates[loop]:8.2f} examples/s")
    ratio = rates["custom"] / rates["fit"]
    headroom = input_rate / max(rates.values())
    print(f"custom/fit ratio:       {ratio:8.2f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    print(f"input/training ratio:   {headroom:8.1f}  (target >= 5: {'met' if headroom >= 5 else 'NOT met'})")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
