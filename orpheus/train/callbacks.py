"""The training callbacks shared by both loops of `orpheus.training` (`model.fit` and the custom loop).

`make_callbacks` returns, in order: the learning-rate logger, the best-model checkpoint (by
validation crop PR-AUC, `checkpoints/best.weights.h5`), TensorBoard scalars (`logs/`), early stopping and
ReduceLROnPlateau when configured, the CSV log (`history.csv`) and, last, `RunState`, which
checkpoints model, optimizer, epoch and the other callbacks' states each epoch (`checkpoints/`)
and restores them on `--resume`.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from orpheus.config import Config
from orpheus.files import write_json_atomic

MONITOR = "val_crop_pr_auc"   # Keras's PR-AUC of the centred crop per track (training.make_metrics)
BEST_WEIGHTS = "best.weights.h5"        # in RUN_DIR/checkpoints/: the weights of the best epoch by MONITOR


class RunState(keras.callbacks.Callback):
    """Checkpoints model, optimizer and epoch each epoch (tf.train.CheckpointManager) and the states
    of its sibling callbacks (callbacks.json); restores them all on resume. Put it last."""

    STATE = {"EarlyStopping": ("wait", "best", "best_epoch"),
             "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
             "ModelCheckpoint": ("best",)}

    def __init__(self, directory: Path, model: keras.Model, optimizer, siblings: list) -> None:
        super().__init__()
        self.directory, self.siblings = directory, siblings
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Keras leaves the random-seed states (dropout) out of a model's checkpoint; resuming needs them.
        seeds = [v.value for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch, seeds=seeds)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=2,
                                                  checkpoint_name="epoch")
        self.saved_states: dict = {}

    def restore(self, source: Path | None = None) -> int:
        """Load the latest checkpoint of `source` (default: this run's checkpoints/), if any;
        returns the next epoch to run (0 when none)."""
        source = source or self.directory
        latest = tf.train.latest_checkpoint(str(source))
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        states = source / "callbacks.json"
        self.saved_states = json.loads(states.read_text(encoding="utf-8")) if states.is_file() else {}
        return int(self.epoch.numpy())

    def on_train_begin(self, logs=None) -> None:  # after the siblings have reset themselves
        for callback in self.siblings:
            for key, value in self.saved_states.get(type(callback).__name__, {}).items():
                setattr(callback, key, value)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        states = {type(cb).__name__: {key: _plain(getattr(cb, key)) for key in self.STATE[type(cb).__name__]}
                  for cb in self.siblings if type(cb).__name__ in self.STATE}
        write_json_atomic(self.directory / "callbacks.json", states)
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def _plain(value):
    return float(value) if hasattr(value, "__float__") else value


class TensorBoardLog(keras.callbacks.Callback):
    """Epoch metrics as TensorBoard scalars in logs/train and logs/validation.

    Written with the core `tf.summary.write` op and the scalars plugin's metadata, because
    `tf.summary.scalar` (and so Keras's TensorBoard callback) needs the `tensorboard` package.
    """

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.writers: dict = {}
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        for name, value in (logs or {}).items():
            split = "validation" if name.startswith("val_") else "train"
            if split not in self.writers:
                self.writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
            with self.writers[split].as_default():
                tf.summary.write(f"epoch_{name.removeprefix('val_')}", tf.constant(float(value), tf.float32),
                                 step=epoch, metadata=self.metadata)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


class LogLearningRate(keras.callbacks.Callback):
    """Adds the optimizer's current rate to the epoch logs (CSV and TensorBoard), in both loops."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def make_callbacks(run_dir: Path, config: Config, model, optimizer, *, resume: bool) -> tuple[list, RunState]:
    """The callbacks of both loops, RunState last."""
    train = config.train
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    callbacks: list = [LogLearningRate(),
                       keras.callbacks.ModelCheckpoint(str(checkpoints / BEST_WEIGHTS), monitor=MONITOR,
                                                       mode="max", save_best_only=True, save_weights_only=True),
                       TensorBoardLog(run_dir / "logs")]
    if train.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(MONITOR, mode="max", patience=train.early_stopping_patience))
    if train.reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(MONITOR, mode="max", factor=0.5,
                                                           patience=train.reduce_lr_patience,
                                                           min_lr=train.min_learning_rate))
    callbacks.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume))
    state = RunState(checkpoints, model, optimizer, callbacks)
    return callbacks + [state], state
