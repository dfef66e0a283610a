"""Benchmark of training: the cost of a step of every zoo model (issue 24), the input pipeline and both loops
(issue 4).

Part "models" (no data needed): for each zoo model at its usual window (musicnn and vgg: 3 s, 187 frames of
96 mels, musicnn's preset; the other spectrogram models: 15 s, 469 frames; pons_waveform: 15 s of 16 kHz),
batch 16, random windows, `train_on_batch` with Adam: CPU seconds (user + system of this process) per step,
with the front end frozen (`train.freeze`: "frontend" where the model has one, vgg's first two blocks, else
"body") and unfrozen, in float32 and bf16 (`train.precision`; bf16 by default only where the CPU has bf16
instructions); beside each, the CPU time of a batch forward pass (`model(x, training=False)` compiled once,
in the same precision) and the ratio step / (3 x batch forward): a step's arithmetic is about three forward
passes (forward, gradient of the input, gradient of the weights). musicnn is also timed as it was before
issue 24 (Keras's own Conv2D and BatchNormalization, same weights): the baseline, side by side.

Part "loops" (needs ../shared/audio/clips): writes real shards from the clips (16 kHz log-mel, 96 mels, the
"db" preset, seeded random multi-hot tags), then prints
  1. input pipeline examples/s alone (`make_dataset`, training mode; no model);
  2. training examples/s of the Pons log-mel model with `--loop fit` and `--loop custom` (steady state: the
     first epoch, with tracing, is left out; validation is not timed);
  3. the ratio custom/fit (target >= 0.9) and input/training (target >= 5).

Example:
    python bench/training.py                       # both parts
    python bench/training.py --part models --models musicnn --steps 5
    python bench/training.py --part loops --window-s 15 --batch-size 64 --steps 5
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from orpheus.train import loop as training_loop  # noqa: E402

from orpheus.train import input_pipeline as data_input

from orpheus.train import finetune
from orpheus.audio.decode import AUDIO_EXTENSIONS, load_audio  # noqa: E402
from orpheus.audio.features import features  # noqa: E402
from orpheus.audio.settings import FeatureSettings  # noqa: E402
from orpheus.config import ModelConfig, load_config  # noqa: E402
from orpheus.models.registry import MODELS, WAVEFORM_FORMATS, build_model  # noqa: E402
from orpheus.models.layers import copy_model  # noqa: E402
from orpheus import cpu  # noqa: E402
from orpheus.train.precision import POLICIES  # noqa: E402
from orpheus.formats.dataset import DatasetInfo, shard_name, write_dataset_info  # noqa: E402
from orpheus.formats.tfrecord import serialize, to_example  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "audio" / "clips"
SAMPLE_RATE, N_MELS, N_TAGS = 16000, 96, 50
MUSICNN_FRAMES = 187           # 3 s at 16 kHz, hop 256 (musicnn's preset): musicnn and vgg
FRAMES_15S = 469               # 15 s at 16 kHz, hop 512: the other spectrogram models
FROZEN_PARTS = {"vgg": ("input_bn", "conv1", "conv2")}   # else "frontend" where the model has one, else "body"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def zoo_input_shape(name: str) -> tuple[int, ...]:
    if MODELS[name].formats == WAVEFORM_FORMATS:
        return (15 * SAMPLE_RATE,)
    return (MUSICNN_FRAMES if name in ("musicnn", "vgg") else FRAMES_15S, N_MELS)


def frozen_parts(name: str) -> tuple[str, ...]:
    return FROZEN_PARTS.get(name) or (("frontend",) if "frontend" in finetune.parts_of(name) else ("body",))


@dataclasses.dataclass(frozen=True)
class StepCost:
    model: str
    trained: str           # "all" or "all but PARTS"
    precision: str
    step_cpu_s: float      # per train_on_batch step
    forward_cpu_s: float   # per batch forward pass

    @property
    def ratio(self) -> float:
        return self.step_cpu_s / (3 * self.forward_cpu_s)


def step_cost(name: str, *, frozen: bool, precision: str, batch_size: int, steps: int,
              keras_layers: bool = False) -> StepCost:
    """CPU seconds of a `train_on_batch` step and of a batch forward pass of zoo model `name` (module docstring)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    entry = MODELS[name]
    config = dataclasses.replace(entry.reference_config or ModelConfig(), name=name)
    shape = zoo_input_shape(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        model = build_model(config, shape, N_TAGS)
        if keras_layers:   # musicnn before issue 24: Keras's own layers, same weights
            model = copy_model(model, keras_layers=True)
    finally:
        keras.config.set_dtype_policy(previous)
    parts = frozen_parts(name) if frozen else ()
    for layer_name in finetune.frozen_layers(model, name, parts):
        model.get_layer(layer_name).trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *shape)).astype("float32")
    y = (rng.random((batch_size, N_TAGS)) < 0.2).astype("float32")
    forward = tf.function(lambda batch: model(batch, training=False))
    for _ in range(2):   # warm-up: tracing, oneDNN primitive creation
        forward(x).numpy()
        model.train_on_batch(x, y)
    start = cpu_s()
    for _ in range(steps):
        forward(x).numpy()
    forward_s = (cpu_s() - start) / steps
    start = cpu_s()
    for _ in range(steps):
        model.train_on_batch(x, y)
    step_s = (cpu_s() - start) / steps
    trained = f"all but {'+'.join(parts)}" if parts else "all"
    return StepCost(name + (" (Keras layers)" if keras_layers else ""), trained, precision, step_s, forward_s)


def print_step_costs(models: list[str], precisions: list[str], batch_size: int, steps: int) -> list[StepCost]:
    """Time every (model, frozen, precision) and print one table row as each finishes."""
    print(f"\nstep cost, batch {batch_size}, random windows, CPU s of this process (user + system), "
          f"mean of {steps} steps after 2 warm-up steps")
    print(f"{'model':<26} {'window':<15} {'trained':<28} {'precision':<9} {'step CPU s':>10} "
          f"{'forward ms/window':>17} {'step/(3 fwd)':>12}  load")
    costs = []
    for name in models:
        variants = [(name, False)] + ([(name, True)] if name == "musicnn" else [])
        for (model_name, keras_layers) in variants:
            for frozen in (True, False):
                for precision in precisions:
                    cost = step_cost(model_name, frozen=frozen, precision=precision, batch_size=batch_size,
                                     steps=steps, keras_layers=keras_layers)
                    costs.append(cost)
                    shape = zoo_input_shape(name)
                    window = f"{shape[0]} samples" if len(shape) == 1 else f"{shape[0]}x{shape[1]}"
                    print(f"{cost.model:<26} {window:<15} {cost.trained:<28} {precision:<9} {cost.step_cpu_s:10.2f} "
                          f"{1000 * cost.forward_cpu_s / batch_size:17.1f} {cost.ratio:12.2f}  "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
    return costs


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
    strategy = training_loop.choose_strategy()
    run_info = data_input.make_run_info(shard_dir, config)
    with tempfile.TemporaryDirectory() as run_dir, strategy.scope():
        model, optimizer = training_loop.build_training_model(config, run_info, steps, epochs)
        callbacks, _ = training_loop.make_callbacks(Path(run_dir), config, model, optimizer, resume=False)
        timer = StepTimer()
        train_data = strategy.distribute_datasets_from_function(lambda ctx: data_input.make_dataset(
            shard_dir, "train", config, ctx, training=True, seed=0, run_info=run_info, epochs=(0, epochs),
            steps_per_epoch=steps))
        valid_data = strategy.distribute_datasets_from_function(lambda ctx: data_input.make_dataset(
            shard_dir, "valid", config, ctx, training=False, run_info=run_info))
        if loop == "fit":
            training_loop.fit_loop(model, train_data, valid_data, [timer] + callbacks, start_epoch=0, epochs=epochs,
                              steps=steps, quiet=True)
        else:
            training_loop.custom_loop(model, optimizer, strategy, train_data, valid_data, [timer] + callbacks,
                                 start_epoch=0, epochs=epochs, steps=steps, global_batch=config.train.batch_size,
                                 xla=False, quiet=True)
    steady = timer.epoch_s[1:]
    return len(steady) * steps * config.train.batch_size / sum(steady)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "models", "loops"), default="all")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        help="zoo models of the step-cost table")
    parser.add_argument("--precisions", nargs="+", choices=("float32", "bfloat16"), default=None,
                        help="default: float32, and bfloat16 where the CPU has bf16 instructions")
    parser.add_argument("--config", default=str(REPO / "configs" / "urop2019_log_mel.json"))
    parser.add_argument("--window-s", type=float, default=5.0, help="loops: crop length (the clips are 10 s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps per model (models) or per epoch (loops)")
    parser.add_argument("--epochs", type=int, default=3, help="loops: epochs per loop (the first is not timed)")
    parser.add_argument("--input-steps", type=int, default=60)
    parser.add_argument("--order", nargs=2, default=["fit", "custom"], choices=["fit", "custom"],
                        help="loops: which loop is timed first (the load of a shared machine drifts)")
    args = parser.parse_args()
    print(f"{cpu.describe()}; load average {os.getloadavg()[0]:.1f}")
    if args.part in ("all", "models"):
        precisions = args.precisions or (["float32", "bfloat16"] if cpu.has_bf16() else ["float32"])
        print_step_costs(args.models, precisions, args.batch_size, args.steps)
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
              f"load average {os.getloadavg()[0]:.1f}")
    if args.part in ("all", "loops"):
        return loops(args)
    return 0


def loops(args) -> int:
    clips = sorted(p for p in CLIPS.iterdir() if p.suffix in AUDIO_EXTENSIONS) if CLIPS.is_dir() else []
    if not clips:
        print(f"no clips in {CLIPS}: the loops part is skipped", file=sys.stderr)
        return 1
    config = load_config(args.config).replace(data={"window_s": args.window_s},
                                              train={"batch_size": args.batch_size})
    print(f"\nloops: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {len(clips)} clips; "
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
