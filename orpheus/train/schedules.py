"""Learning-rate schedules of `TrainConfig.schedule`, as serialisable Keras schedules.

The optimizer's step counter (`optimizer.iterations`) drives every schedule and is saved in the
checkpoints, so a resumed run continues at the same point of its schedule.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from orpheus.config import TrainConfig
from orpheus.errors import ConfigError

PACKAGE = "orpheus"


class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Base: stores its constructor arguments as floats and serialises them."""

    def __init__(self, **params: float) -> None:
        self._params = {k: float(v) for k, v in params.items()}
        for key, value in self._params.items():
            setattr(self, key, value)

    def get_config(self) -> dict:
        return dict(self._params)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConstantRate(_Schedule):
    """`learning_rate` at every step."""

    def __init__(self, learning_rate: float) -> None:
        super().__init__(learning_rate=learning_rate)

    def __call__(self, step):
        return ops.cast(ops.zeros_like(step), "float32") + self.learning_rate


@keras.saving.register_keras_serializable(package=PACKAGE)
class StepDecay(_Schedule):
    """`learning_rate * decay_rate ** floor(step / decay_steps)`."""

    def __init__(self, learning_rate: float, decay_rate: float, decay_steps: float) -> None:
        super().__init__(learning_rate=learning_rate, decay_rate=decay_rate, decay_steps=decay_steps)

    def __call__(self, step):
        drops = ops.floor(ops.cast(step, "float32") / self.decay_steps)
        return self.learning_rate * ops.power(self.decay_rate, drops)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Triangular(_Schedule):
    """Cyclic rate: linearly from `min_learning_rate` up to `learning_rate` in `half_cycle_steps`, and back."""

    def __init__(self, min_learning_rate: float, learning_rate: float, half_cycle_steps: float) -> None:
        super().__init__(min_learning_rate=min_learning_rate, learning_rate=learning_rate,
                         half_cycle_steps=half_cycle_steps)

    def __call__(self, step):
        position = ops.mod(ops.cast(step, "float32") / self.half_cycle_steps, 2.0)
        height = 1.0 - ops.abs(position - 1.0)
        return self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * height


@keras.saving.register_keras_serializable(package=PACKAGE)
class OneCycle(_Schedule):
    """One cycle over `total_steps`: linear warm-up from `min_learning_rate` to `learning_rate` over
    the first `warmup_fraction` of the steps, then cosine annealing back to `min_learning_rate`
    (held there after `total_steps`)."""

    def __init__(self, min_learning_rate: float, learning_rate: float, total_steps: float,
                 warmup_fraction: float = 0.3) -> None:
        super().__init__(min_learning_rate=min_learning_rate, learning_rate=learning_rate,
                         total_steps=total_steps, warmup_fraction=warmup_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = max(self.total_steps * self.warmup_fraction, 1.0)
        span = self.learning_rate - self.min_learning_rate
        rising = self.min_learning_rate + span * ops.minimum(step / warmup, 1.0)
        progress = ops.clip((step - warmup) / max(self.total_steps - warmup, 1.0), 0.0, 1.0)
        falling = self.min_learning_rate + span * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, rising, falling)


def make_schedule(train: TrainConfig, steps_per_epoch: int, epochs: int) -> _Schedule:
    """The schedule of `train.schedule`; `decay_epochs` counts epochs of `steps_per_epoch` steps.

    "one_cycle" spans `epochs` epochs (so resume with the same --epochs to keep its shape).
    """
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError("steps per epoch and epochs must be at least 1")
    period = train.decay_epochs * steps_per_epoch
    if train.schedule == "constant":
        return ConstantRate(train.learning_rate)
    if train.schedule == "step":
        return StepDecay(train.learning_rate, train.decay_rate, period)
    if train.schedule == "cyclic":
        return Triangular(train.min_learning_rate, train.learning_rate, period)
    if train.schedule == "one_cycle":
        return OneCycle(train.min_learning_rate, train.learning_rate, epochs * steps_per_epoch)
    raise ConfigError(f"train.schedule {train.schedule!r} is unknown")
