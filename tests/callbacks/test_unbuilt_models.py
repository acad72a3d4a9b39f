"""The callbacks on a subclassed model that was never called before `fit`.

On TensorFlow, `fit` builds such a model in its first step's trace, after `on_train_begin`:
the callbacks must still measure how far the weights moved, the probe's trivial baseline and
the starting kernel scales, as they do on a Sequential model (they measured none of them,
and every stall then read as a problem)."""

import math

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks import GradientMonitor, TrainingDiagnostics
from keras_lossopt.callbacks.training_start import training_start

L = keras.layers
RNG = np.random.default_rng(0)
X = RNG.normal(size=(256, 4)).astype("float32")
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("float32")


class Net(keras.Model):
    def __init__(self, kernel_initializer="glorot_uniform"):
        super().__init__(name="net")
        self.hidden = L.Dense(16, activation="tanh", kernel_initializer=kernel_initializer, name="hidden")
        self.out = L.Dense(1, activation="sigmoid", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def fit(model, callbacks, epochs=3):
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    assert not model.trainable_variables  # never called: built by fit
    return model.fit(X, Y, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks)


def relative_change(before, model):
    now = [v.numpy().astype("float64") for v in model.trainable_variables]
    change = sum(float(np.sum((a - b) ** 2)) for a, b in zip(now, before))
    return math.sqrt(change / sum(float(np.sum(b**2)) for b in before))


def test_diagnostics_with_a_probe_measure_movement_and_baseline_from_the_start():
    keras.utils.set_random_seed(0)
    model = Net()
    diagnostics = TrainingDiagnostics(probe_x=X[:64], probe_y=Y[:64])
    fit(model, [diagnostics], epochs=1)
    start = diagnostics._start
    # Captured before the first step (the probe's forward pass built the model).
    initial = [start._weights[id(v)].astype("float64") for v in model.trainable_variables]
    assert diagnostics._weight_change() == pytest.approx(relative_change(initial, model), rel=1e-5)
    share = float(np.mean(Y[:64]))
    bce = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert diagnostics._trends.baseline_loss == pytest.approx(bce, rel=1e-5)
    assert diagnostics._trends.baseline_accuracy == pytest.approx(max(share, 1 - share))


@pytest.mark.parametrize("with_probe", [True, False])
def test_a_healthy_subclassed_run_raises_no_problem(with_probe):
    keras.utils.set_random_seed(0)
    probe = {"probe_x": X[:64], "probe_y": Y[:64]} if with_probe else {}
    monitor, diagnostics = GradientMonitor(), TrainingDiagnostics(**probe)
    history = fit(Net(), [monitor, diagnostics], epochs=8)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    problems = [f.kind for f in monitor.findings + diagnostics.findings if f.severity == "problem"]
    assert problems == []
    assert diagnostics._weight_change() is not None  # captured after the first step without a probe


def test_the_monitor_captures_the_starting_kernel_scales_of_an_unbuilt_model():
    # The scales the initial-weight-scale cause reads; alone, the monitor captures them at
    # its first read, after one step (Adam at 0.01 moves a std of 2.7 by well under 1%).
    scales = {}
    for kind in ("subclassed", "sequential"):
        keras.utils.set_random_seed(0)
        init = keras.initializers.RandomNormal(stddev=3.0)
        if kind == "subclassed":
            model = Net(kernel_initializer=init)
        else:
            model = keras.Sequential(
                [
                    keras.Input((4,)),
                    L.Dense(16, activation="tanh", kernel_initializer=init, name="hidden"),
                    L.Dense(1, activation="sigmoid", name="out"),
                ]
            )
        monitor = GradientMonitor()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
        scales[kind] = training_start(model, id(monitor.params)).layer_scales
    assert set(scales["subclassed"]) == {"hidden", "out"}
    for layer in ("hidden", "out"):
        got, want = scales["subclassed"][layer], scales["sequential"][layer]
        assert got.kernel_std == pytest.approx(want.kernel_std, rel=1e-2)
        assert got.glorot_std == pytest.approx(want.glorot_std) and got.fan_in == want.fan_in
