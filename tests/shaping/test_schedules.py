"""Schedules against their formulas; LossWeightScheduler changes the loss at exactly the scheduled steps."""

import math

import keras
import numpy as np
import pytest

from keras_lossopt.shaping import CompositeLoss, CosineSchedule, LinearWarmup, LossWeightScheduler, StepSchedule
from tests.backends import jit_compile_setting


@pytest.mark.parametrize(
    ("schedule", "formula"),
    [
        (LinearWarmup(2.0, steps=4, start=0.5), lambda t: 0.5 + 1.5 * min(t / 4, 1.0)),
        (CosineSchedule(3.0, 1.0, steps=5), lambda t: 1.0 + 2.0 * 0.5 * (1 + math.cos(math.pi * min(t, 5) / 5))),
        (StepSchedule([2, 5], [1.0, 0.25, 4.0]), lambda t: 1.0 if t < 2 else 0.25 if t < 5 else 4.0),
    ],
    ids=["linear_warmup", "cosine", "step"],
)
def test_schedules_follow_their_formulas(schedule, formula):
    for t in range(9):
        assert schedule(t) == pytest.approx(formula(t), abs=1e-12)


class _BatchLosses(keras.callbacks.Callback):
    """Per-step losses recovered from Keras' running epoch mean (equal batch sizes)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.previous = 0.0

    def on_train_begin(self, logs=None):
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        running = logs["loss"]
        self.values.append((batch + 1) * running - batch * self.previous)
        self.previous = running


@pytest.mark.parametrize("by", ["step", "epoch"])
def test_scheduler_changes_the_loss_at_the_scheduled_steps_under_xla(by, rng):
    x = rng.normal(size=(24, 3)).astype("float32")
    y = rng.normal(size=(24, 2)).astype("float32")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    loss = CompositeLoss({"mse": "mean_squared_error", "mae": "mean_absolute_error"}, weights=[1.0, 1.0])
    # Learning rate 0: the predictions stay fixed, so each step's loss depends only on the weights.
    model.compile(keras.optimizers.SGD(0.0), loss=loss, jit_compile=jit_compile_setting())
    prediction = model.predict(x, verbose=0).astype(np.float64)
    batches = [slice(i, i + 8) for i in range(0, 24, 8)]
    mse = [np.mean((prediction[b] - y[b]) ** 2) for b in batches]
    mae = [np.mean(np.abs(prediction[b] - y[b])) for b in batches]

    schedules = {"mse": LinearWarmup(1.0, steps=4), "mae": StepSchedule([3, 5], [0.0, 2.0, 7.0])}
    recorder = _BatchLosses()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[LossWeightScheduler(schedules, by=by), recorder],
    )
    expected = []
    for step in range(9):
        epoch, batch = divmod(step, 3)
        t = step if by == "step" else epoch
        expected.append(schedules["mse"](t) * mse[batch] + schedules["mae"](t) * mae[batch])
    np.testing.assert_allclose(recorder.values, expected, rtol=1e-4, atol=1e-6)


def test_scheduler_accepts_a_user_function():
    loss = CompositeLoss({"mse": "mean_squared_error", "mae": "mean_absolute_error"})
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", loss=loss)
    scheduler = LossWeightScheduler({"mae": lambda epoch: 0.5**epoch})
    history = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["weight_mae"] == [1.0, 0.5, 0.25]
