import keras
import numpy as np
import pytest

from orpheus.config import TrainConfig
from orpheus.errors import ConfigError
from orpheus.train.schedules import ConstantRate, OneCycle, StepDecay, Triangular, make_schedule


def rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_constant():
    schedule = make_schedule(TrainConfig(learning_rate=0.01), steps_per_epoch=10, epochs=3)
    assert isinstance(schedule, ConstantRate)
    np.testing.assert_allclose(rates(schedule, [0, 7, 1000]), [0.01] * 3)


def test_step_decay_halves_every_period():
    config = TrainConfig(learning_rate=0.1, schedule="step", decay_rate=0.5, decay_epochs=2)
    schedule = make_schedule(config, steps_per_epoch=10, epochs=10)
    assert isinstance(schedule, StepDecay)
    np.testing.assert_allclose(rates(schedule, [0, 19, 20, 39, 40, 65]), [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])


def test_cyclic_triangle_between_min_and_max():
    config = TrainConfig(learning_rate=1e-2, min_learning_rate=1e-3, schedule="cyclic", decay_epochs=1)
    schedule = make_schedule(config, steps_per_epoch=10, epochs=5)
    assert isinstance(schedule, Triangular)
    np.testing.assert_allclose(rates(schedule, [0, 5, 10, 15, 20, 30]),
                               [1e-3, 5.5e-3, 1e-2, 5.5e-3, 1e-3, 1e-2], rtol=1e-5)


def test_one_cycle_warms_up_then_anneals():
    config = TrainConfig(learning_rate=1e-2, min_learning_rate=1e-4, schedule="one_cycle")
    schedule = make_schedule(config, steps_per_epoch=10, epochs=10)  # 100 steps, 30 of warm-up
    assert isinstance(schedule, OneCycle)
    values = rates(schedule, [0, 15, 30, 65, 100, 150])
    np.testing.assert_allclose(values, [1e-4, 5.05e-3, 1e-2, 5.05e-3, 1e-4, 1e-4], rtol=1e-4)
    rising, falling = rates(schedule, range(0, 31)), rates(schedule, range(30, 101))
    assert np.all(np.diff(rising) > 0) and np.all(np.diff(falling) < 0)


@pytest.mark.parametrize("schedule", [ConstantRate(0.1), StepDecay(0.1, 0.5, 20), Triangular(0.01, 0.1, 7),
                                      OneCycle(0.01, 0.1, 50)])
def test_serialisable_through_the_optimizer(schedule):
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    config = keras.optimizers.Adam.from_config(optimizer.get_config()).get_config()["learning_rate"]
    assert type(schedule).__name__ in config["class_name"]
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
    assert rates(restored, [0, 13, 40]) == pytest.approx(rates(schedule, [0, 13, 40]))


def test_bad_steps():
    with pytest.raises(ConfigError):
        make_schedule(TrainConfig(), steps_per_epoch=0, epochs=1)
