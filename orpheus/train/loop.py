"""Training: a shard folder -> a run directory (`orpheus.formats.rundir`), with `model.fit` or a custom loop.

Input: `--tfrecords-dir` written by `tfrecords/preprocessing.py` (shards + `dataset.json`) and a JSON
config (`configs/`). Output, in `--run-dir`:

    config.json   the resolved Config        run.json      tags in output order, window, normalisation
    checkpoints/  epoch-N (tf.train.Checkpoint: model, optimizer, epoch), callbacks.json, best.weights.h5
    logs/         TensorBoard                history.csv   per-epoch metrics
    model.keras   the best epoch's model (by val_crop_pr_auc), which `test` and `predict` use
    last.keras    the last epoch's model

Both loops share the strategy, the datasets (`orpheus.train.input_pipeline`), the model registry, the
checkpoint layout and the Keras callbacks (checkpoints, best by val_crop_pr_auc, TensorBoard,
early stopping, ReduceLROnPlateau, CSV log); only the step differs. The custom loop drives the same
callbacks through a `CallbackList`.

Reproducibility: `keras.utils.set_random_seed(train.seed)` and `enable_op_determinism()`; the input
of epoch e depends on (seed, e) only, and model, optimizer (its step counter drives the schedule),
epoch and callback states are checkpointed, so `--resume` ends where an uninterrupted run ends.

Fine-tuning (`--init-from MODEL_OR_RUN_DIR`, `--freeze PART`; config `train.init_from`, `train.freeze`):
the model starts from a pretrained model or a run directory, with a new output layer; see `orpheus.train.finetune`.
`orpheus wise-ft RUN_DIR OUT_DIR` then mixes a fine-tuned run with its source (WiSE-FT).

Precision (`train.precision`, `orpheus.train.precision`): float32, bfloat16 (fast on CPUs with bf16
instructions), float16 (GPU) or auto. Variables, the loss and the outputs stay float32, and `model.keras`
and `last.keras` are saved in float32 whatever the run computed in. XLA (`train.xla`) compiles the step on
any device.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import tensorflow as tf
from tqdm import tqdm

from orpheus.train import input_pipeline as data_input

from orpheus.train import finetune
from orpheus.train.callbacks import BEST_WEIGHTS, MONITOR, make_callbacks
from orpheus.config import Config, load_config
from orpheus.errors import ConfigError, DataFormatError, OutputExistsError
from orpheus.files import atomic_path, mark, write_json_atomic, writing_to
from orpheus.models.registry import build_model, model_entry
from orpheus.models.layers import copy_model
from orpheus.ownership import ForeignOutputError, claim
from orpheus.train.precision import POLICIES, resolve_precision
from orpheus.formats.rundir import LAST_MODEL_FILE, MODEL_FILE, RUN_DIRECTORY, RunInfo, read_run_info, write_run_info
from orpheus.train.schedules import make_schedule
from orpheus.train.strategy import choose_strategy, is_chief, worker_count
from orpheus.formats.dataset import DatasetInfo, read_dataset_info

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ run dir
def check_config(config: Config, fmt: str) -> None:
    """Raise `ConfigError` for a config that cannot train on `fmt` features; run before creating anything."""
    entry = model_entry(config.model.name)  # an unknown name: the message lists the known ones
    if fmt not in entry.formats:
        raise ConfigError(f"model.name {config.model.name!r} does not take {fmt} input; "
                          f"pick a model for it (orpheus models)")
    train = config.train
    if train.reduce_lr_patience and train.schedule != "constant":
        raise ConfigError('train.reduce_lr_patience needs train.schedule "constant" (a schedule owns the rate)')


def prepare_run_dir(run_dir: Path, shard_dir: Path, config: Config, *, resume: bool, overwrite: bool,
                    source: finetune.Source | None = None, kept_info: DatasetInfo | None = None) -> RunInfo:
    """Create (or, with `resume`, check) the run directory; returns its RunInfo (checked against and
    adapted to the fine-tuning `source`, if any). `kept_info`: `data_input.kept_dataset_info`, when known.

    Everything that can refuse the run (an existing folder, a config the shards cannot take, a source
    model whose features differ) is checked before the folder is created, so a refused run leaves no
    stub behind.
    """
    inputs = [(shard_dir, "shard folder")]
    init_from = config.train.init_from
    if init_from and Path(init_from).exists():
        inputs.append((init_from, "run directory it starts from (--init-from)"))
    if resume:
        claim(run_dir, RUN_DIRECTORY, resume=True, inputs=inputs, flag="--run-dir")
        saved = run_dir / "config.json"
        if not saved.is_file():
            raise ConfigError(f"{saved}: not found; --resume needs a run directory of an earlier run")
        if load_config(saved).to_json() != config.to_json():   # as configs: a renamed key reads the same
            raise ConfigError(f"{saved}: differs from --config; resume with the run's own config "
                              f"(--config {saved}) or start a new --run-dir")
        run_info = read_run_info(run_dir)
        check_config(config, run_info.features.format)
        return run_info
    try:
        claimed = claim(run_dir, RUN_DIRECTORY, overwrite=overwrite, inputs=inputs, flag="--run-dir")
    except ForeignOutputError:
        raise
    except OutputExistsError as err:
        raise OutputExistsError(f"{run_dir}: run directory exists; pass --resume to continue it or "
                                "--overwrite to start again") from err
    run_info = data_input.make_run_info(shard_dir, config, kept_info=kept_info)
    check_config(config, run_info.features.format)
    if source is not None:
        run_info = finetune.adapt_run_info(run_info, source, config.model.name)
    with writing_to(run_dir):
        if claimed == "replace":   # a run directory Orpheus wrote (never anything else)
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        mark(run_dir, RUN_DIRECTORY)
        write_json_atomic(run_dir / "config.json", config.to_json())
        write_run_info(run_dir, run_info)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a half-written run folder would ask for --overwrite
        raise
    return run_info


def _model_layers(layer) -> Iterator[keras.layers.Layer]:
    """Every layer inside `layer`, nested models' layers included (public `layers` attributes only)."""
    for inner in getattr(layer, "layers", ()):
        yield inner
        yield from _model_layers(inner)


# ---------------------------------------------------------------------------------------- model
def make_metrics(n_tags: int) -> list:
    """Macro ROC-AUC and PR-AUC over the tags, of one crop per track (random in training, centred in
    validation), Keras's estimates over 200 thresholds (PR interpolated): named `crop_*` apart from `test`'s
    per-track scores over every window (scikit-learn; PR-AUC there is average precision). `num_labels`
    creates their variables now, in the scope (created lazily inside the replicated step, they break
    multi-replica tracing)."""
    return [keras.metrics.AUC(curve="ROC", multi_label=True, num_labels=n_tags, name="crop_roc_auc"),
            keras.metrics.AUC(curve="PR", multi_label=True, num_labels=n_tags, name="crop_pr_auc")]


def build_training_model(config: Config, run_info: RunInfo, steps_per_epoch: int, epochs: int, *,
                         precision: str = "float32", source: finetune.Source | None = None):
    """Model and optimizer (built, so checkpoints restore at once); call inside `strategy.scope()`.
    `precision` is a resolved one ("float32", "bfloat16" or "float16": `orpheus.train.precision`). With a
    fine-tuning `source`, the model starts from its weights (`orpheus.train.finetune.initialise`). The config
    was checked against the shards (`check_config`) by `prepare_run_dir`."""
    bins = run_info.features.n_bins
    input_shape = (run_info.window_frames,) + ((bins,) if bins else ())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        model = build_model(config.model, input_shape, len(run_info.tags))
    finally:
        keras.config.set_dtype_policy(previous)
    train = config.train
    if train.batch_norm_momentum is not None:  # faster-tracking running statistics for short runs
        for layer in _model_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = train.batch_norm_momentum
    if source is not None:  # before the optimizer: it tracks the trainable (unfrozen) weights only
        finetune.initialise(model, source, run_info.tags, config.model.name, train.freeze)
    # A plain rate (constant schedule) stays settable by ReduceLROnPlateau.
    rate = train.learning_rate if train.schedule == "constant" else make_schedule(train, steps_per_epoch, epochs)
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    if precision == "float16":  # bf16 has float32's range: no loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(), metrics=make_metrics(len(run_info.tags)),
                  jit_compile=train.xla)
    return model, optimizer


# ---------------------------------------------------------------------------------------- loops
def fit_loop(model, train_data, valid_data, callbacks, *, start_epoch: int, epochs: int, steps: int,
             quiet: bool) -> None:
    with warnings.catch_warnings(), _fit_across_workers(model, model.distribute_strategy):
        warnings.filterwarnings("ignore", message="Your input ran out of data")  # validation: one pass, by design
        model.fit(train_data, validation_data=valid_data, epochs=epochs, initial_epoch=start_epoch,
                  steps_per_epoch=steps, callbacks=callbacks, shuffle=False, verbose=0 if quiet else 2)


@contextlib.contextmanager
def _fit_across_workers(model: keras.Model, strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Let `model.fit` run under a MultiWorkerMirroredStrategy of several workers.

    Keras 3's TensorFlow trainer fails there twice (keras-team/keras#20585, still so in Keras 3.15):
    before the first step it all-reduces a whole (windows, labels) batch to build the model, which the
    collective ops cannot take; and it averages each step's scalar logs "along axis 0". So, with several
    workers only: no such build (model, optimizer and metrics are built already, in the scope; Keras then
    takes the strategy from the scope), and the steps return their logs with shape [1]. An epoch's logs
    are still the metrics read across every replica, as with one worker.
    """
    if worker_count(strategy) == 1:
        yield
        return
    own = model._distribute_strategy
    steps = {name: getattr(model, name) for name in ("train_step", "test_step")}

    def rank_one(step):
        return lambda data: {key: tf.reshape(value, [1]) for key, value in step(data).items()}

    model._distribute_strategy = None
    for name, step in steps.items():
        setattr(model, name, rank_one(step))
    try:
        with strategy.scope():
            yield
    finally:
        model._distribute_strategy = own
        for name in steps:
            delattr(model, name)


def custom_loop(model, optimizer, strategy, train_data, valid_data, callbacks, *, start_epoch: int, epochs: int,
                steps: int, global_batch: int, xla: bool, quiet: bool) -> None:
    """A GradientTape loop under `strategy.run`, driving the same callbacks as `model.fit`."""
    n_tags = model.output_shape[-1]
    with strategy.scope():
        train_metrics = [keras.metrics.Mean(name="loss")] + make_metrics(n_tags)
        valid_metrics = [keras.metrics.Mean(name="loss")] + make_metrics(n_tags)
    scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_train(windows, labels):
        with tf.GradientTape() as tape:
            probabilities = model(windows, training=True)
            per_example = keras.losses.binary_crossentropy(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss) if scale_loss else loss
        optimizer.apply(tape.gradient(scaled, model.trainable_variables), model.trainable_variables)
        _update(train_metrics, labels, per_example, probabilities)

    if xla:  # as model.fit does: compile the replica step, inside strategy.run
        replica_train = tf.function(replica_train, jit_compile=True)

    def replica_valid(windows, labels):
        probabilities = model(windows, training=False)
        _update(valid_metrics, labels, keras.losses.binary_crossentropy(labels, probabilities), probabilities)

    @tf.function
    def train_step(iterator):
        strategy.run(replica_train, args=next(iterator))

    @tf.function
    def valid_step(batch):
        strategy.run(replica_valid, args=batch)

    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps, verbose=0)
    model.stop_training = False
    callback_list.on_train_begin()
    iterator = iter(train_data)
    for epoch in range(start_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        for metric in train_metrics + valid_metrics:
            metric.reset_state()
        for step in tqdm(range(steps), desc=f"epoch {epoch + 1}/{epochs}", disable=quiet, leave=False):
            callback_list.on_train_batch_begin(step)
            train_step(iterator)
            callback_list.on_train_batch_end(step)
        for batch in valid_data:
            valid_step(batch)
        logs = {m.name: float(m.result()) for m in train_metrics}
        logs.update({f"val_{m.name}": float(m.result()) for m in valid_metrics})
        callback_list.on_epoch_end(epoch, logs)
        log.info("epoch %d/%d: %s", epoch + 1, epochs, ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        if model.stop_training:
            break
    callback_list.on_train_end()


def _update(metrics, labels, per_example, probabilities) -> None:
    metrics[0].update_state(per_example)
    for metric in metrics[1:]:
        metric.update_state(labels, probabilities)


# ----------------------------------------------------------------------------------------- train
def train(tfrecords_dir: str | Path, config: Config, *, epochs: int, run_dir: str | Path,
          steps_per_epoch: int | None = None, resume: bool = False, overwrite: bool = False,
          feature_format: str | None = None,
          strategy: tf.distribute.Strategy | Callable[[], tf.distribute.Strategy] | None = None,
          cuda: Sequence[int] | None = None, quiet: bool = False) -> Path:
    """Train `config.model` on `tfrecords_dir` for epochs up to `epochs`; returns the run directory.

    Args:
        tfrecords_dir: shard folder (train and valid splits + dataset.json).
        config: the resolved run configuration (`config.train.loop` picks the loop).
        epochs: the epoch count to reach (a resumed run continues up to it).
        run_dir: output run directory (see module docstring).
        steps_per_epoch: global steps per epoch; None: one pass over the training split.
        resume: continue the run in `run_dir` from its last checkpoint.
        overwrite: replace an existing `run_dir` (without `resume`).
        feature_format: when given, the shards' format must match it.
        strategy: a tf.distribute strategy, or a function that makes one (called where `choose_strategy` would
            be, before anything starts TensorFlow's runtime); None: `choose_strategy(cuda)`.
        quiet: no progress output.
    """
    shard_dir, run_dir = Path(tfrecords_dir), Path(run_dir)
    requested = run_dir
    info = read_dataset_info(shard_dir)
    if feature_format is not None and feature_format != info.features.format:
        raise DataFormatError(f"{shard_dir}: holds {info.features.format} features, not {feature_format}; "
                              "pass the folder's format or another --tfrecords-dir")
    if epochs < 1:
        raise ConfigError("--epochs must be at least 1")
    train_config = config.train
    # The strategy first, as magenta/ddsp does: --cuda's device settings and MultiWorkerMirroredStrategy's
    # collective ops take effect only before TensorFlow's runtime starts, which loading a model does.
    if strategy is None:
        strategy = choose_strategy(cuda)
    elif not isinstance(strategy, tf.distribute.Strategy):
        strategy = strategy()
    keras.utils.set_random_seed(train_config.seed)
    tf.config.experimental.enable_op_determinism()
    # the source's weights as NumPy arrays; `finetune.initialise` sets them in the scope, with the model
    source = finetune.load_source(train_config.init_from) if train_config.init_from else None
    chief = is_chief(strategy)
    kept = data_input.kept_dataset_info(shard_dir, config.data, info)   # without data.exclude_tids
    with contextlib.ExitStack() as stack:
        if not chief:  # other workers write into a scratch folder (they must still save, in step)
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orpheus-worker-")))
        run_info = prepare_run_dir(run_dir, shard_dir, config, resume=resume and chief, overwrite=overwrite,
                                   source=source, kept_info=kept)
        if resume and not chief:  # resume from the chief's run directory (a shared filesystem)
            run_info = read_run_info(requested)
        steps = steps_per_epoch or data_input.steps_per_epoch(kept, train_config.batch_size)
        precision = resolve_precision(train_config.precision)
        try:
            with strategy.scope():
                model, optimizer = build_training_model(config, run_info, steps, epochs, precision=precision,
                                                        source=source)
                callbacks, state = make_callbacks(run_dir, config, model, optimizer, resume=resume)
                start_epoch = state.restore(requested / "checkpoints") if resume else 0
        except BaseException:
            if not resume:  # a run refused before its first step leaves no folder to --overwrite
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if resume:
            _trim_history(run_dir / "history.csv", start_epoch)
        if start_epoch >= epochs:
            log.info("%s: already trained for %d epochs", run_dir, start_epoch)
        else:
            seed = train_config.seed
            train_data = strategy.distribute_datasets_from_function(
                lambda ctx: data_input.make_dataset(shard_dir, "train", config, ctx, training=True, seed=seed,
                                                    run_info=run_info, epochs=(start_epoch, epochs),
                                                    steps_per_epoch=steps))
            valid_data = strategy.distribute_datasets_from_function(
                lambda ctx: data_input.make_dataset(shard_dir, "valid", config, ctx, training=False,
                                                    run_info=run_info))
            log.info("training %s on %s: %d steps x epochs %d..%d, %s loop, %d replica(s), %s", config.model.name,
                     shard_dir, steps, start_epoch + 1, epochs, train_config.loop, strategy.num_replicas_in_sync,
                     precision)
            if train_config.loop == "fit":
                fit_loop(model, train_data, valid_data, callbacks, start_epoch=start_epoch, epochs=epochs,
                         steps=steps, quiet=quiet)
            else:
                custom_loop(model, optimizer, strategy, train_data, valid_data, callbacks, start_epoch=start_epoch,
                            epochs=epochs, steps=steps, global_batch=train_config.batch_size, xla=train_config.xla,
                            quiet=quiet)
        _save_final_models(model, run_dir)
    return requested


def _save_final_models(model: keras.Model, run_dir: Path) -> None:
    """`last.keras`: the model as training left it; `model.keras`: the same with the best epoch's weights.
    Both compute in float32 (a bf16 or float16 run's model is saved as its float32 copy)."""
    _save_model(float32_model(model), run_dir / LAST_MODEL_FILE)
    best = run_dir / "checkpoints" / BEST_WEIGHTS
    if best.is_file():
        model.load_weights(best)
    else:
        log.warning("%s: no epoch set a validation %s; %s is the last epoch's model", run_dir, MONITOR, MODEL_FILE)
    _save_model(float32_model(model), run_dir / MODEL_FILE)


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself when every layer computes in float32, else an uncompiled float32 copy, same weights."""
    if all(layer.dtype_policy.name == "float32" for layer in _model_layers(model)):
        return model
    return copy_model(model, dtype="float32")


def _trim_history(path: Path, start_epoch: int) -> None:
    """Drop history rows of epochs after the restored checkpoint (written before an interruption).

    The rows keep their line endings as written (Keras's CSVLogger ends them with CRLF, as CSV does),
    so the rows the resumed run appends match them; text mode would turn the kept rows into LF.
    """
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines(keepends=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(lines[:1 + start_epoch]))


def _save_model(model: keras.Model, path: Path) -> None:
    """Save the `.keras` file atomically (Keras needs the .keras suffix on the temporary name too)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".saving-") as tmp:
        tmp_path = Path(tmp) / path.name
        model.save(tmp_path)
        os.replace(tmp_path, path)
