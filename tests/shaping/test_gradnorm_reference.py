"""GradNorm's per-term gradient norms and weight updates on every backend, against NumPy float64.

The model does not move (learning rate 0), so every step sees the same losses and raw
gradient norms; GradNorm's own Adam steps on the term weights can then be replayed exactly
in NumPy. The norms come from each backend's own autodiff (shaping/_backend_gradients.py).
"""

import keras
import numpy as np
import pytest

from keras_lossopt.shaping import GradNorm, task_losses, track_loss_terms
from tests.backends import jit_compile_setting

N, D, H = 12, 3, 4
rng = np.random.default_rng(7)
X = rng.normal(size=(N, D)).astype("float32")
Y_FIRST = rng.normal(size=(N, 1)).astype("float32")
Y_SECOND = (30.0 * rng.normal(size=(N, 1))).astype("float32")


def _model(kind):
    keras.utils.set_random_seed(0)
    trunk = keras.layers.Dense(H, activation="tanh", name="trunk")
    first, second = keras.layers.Dense(1, name="first"), keras.layers.Dense(1, name="second")
    if kind == "functional":
        inputs = keras.Input((D,))
        hidden = trunk(inputs)
        return keras.Model(inputs, {"first": first(hidden), "second": second(hidden)})

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.trunk, self.first, self.second = trunk, first, second

        def call(self, x):
            hidden = self.trunk(x)
            return {"first": self.first(hidden), "second": self.second(hidden)}

    return TwoHeads()


def _reference(model, steps, alpha, learning_rate):
    """Losses, raw norms and GradNorm's weights after each step, in float64 (Keras' Adam, epsilon 1e-7)."""
    kernel, bias = (np.asarray(v, np.float64) for v in model.get_layer("trunk").weights)
    pre = X.astype(np.float64) @ kernel + bias
    hidden = np.tanh(pre)
    losses, raw = [], []
    for head, target in (("first", Y_FIRST), ("second", Y_SECOND)):
        a, c = (np.asarray(v, np.float64) for v in model.get_layer(head).weights)
        residual = hidden @ a + c - target
        losses.append(np.mean(residual**2))
        d_pre = (2.0 / N) * residual @ a.T * (1.0 - hidden**2)
        raw.append(np.sqrt(np.sum((X.T @ d_pre) ** 2) + np.sum(d_pre.sum(axis=0) ** 2)))
    losses, raw = np.array(losses), np.array(raw)
    weights, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    rows = []
    for t in range(1, steps + 1):
        norms = weights * raw
        target = norms.mean() * np.ones(2)  # the losses do not move: every rate is 1
        gradient = np.sign(norms - target) * raw
        m += (gradient - m) * (1 - 0.9)
        v += (gradient**2 - v) * (1 - 0.999)
        step_size = learning_rate * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        weights = np.maximum(weights - step_size * m / (np.sqrt(v) + 1e-7), 1e-6)
        weights = weights * 2 / weights.sum()
        rows.append((weights.copy(), norms, target))
    return rows


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_gradnorm_weights_and_norms_match_a_float64_replay(kind):
    model = _model(kind)
    model.compile(
        keras.optimizers.SGD(0.0),
        loss=task_losses({"first": "mse", "second": "mse"}),
        jit_compile=jit_compile_setting(),
    )
    if kind == "subclassed":
        track_loss_terms(model)  # before the model is built (documented)
        model(X[:1])
    expected = _reference(model, steps=3, alpha=1.5, learning_rate=0.1)
    targets = {"first": Y_FIRST, "second": Y_SECOND}
    callback = GradNorm(alpha=1.5, learning_rate=0.1, shared_layer="trunk")
    history = model.fit(X, targets, batch_size=N, epochs=3, shuffle=False, verbose=0, callbacks=[callback]).history
    for epoch, (weights, norms, target) in enumerate(expected):
        got_weights = [history["weight_first"][epoch], history["weight_second"][epoch]]
        np.testing.assert_allclose(got_weights, weights, rtol=1e-5)
        got_norms = [history["grad_norm_first"][epoch], history["grad_norm_second"][epoch]]
        np.testing.assert_allclose(got_norms, norms, rtol=1e-4)
        got_target = [history["grad_norm_target_first"][epoch], history["grad_norm_target_second"][epoch]]
        np.testing.assert_allclose(got_target, target, rtol=1e-4)
    assert not any(key.startswith("gradnorm_step_") for key in history)
    # The larger task's weight falls; the weights keep summing to the number of terms.
    assert history["weight_second"][-1] < 1.0 < history["weight_first"][-1]


def test_a_term_that_does_not_reach_the_shared_layer_is_refused():
    model = _model("functional")
    model.compile(
        keras.optimizers.SGD(0.0),
        loss=task_losses({"first": "mse", "second": "mse"}),
        jit_compile=jit_compile_setting(),
    )
    callback = GradNorm(shared_layer="first")  # the second head's loss does not depend on the first head
    with pytest.raises(ValueError, match=r"GradNorm: .*'second'.*shared layer 'first'"):
        model.fit(X, {"first": Y_FIRST, "second": Y_SECOND}, batch_size=N, epochs=1, verbose=0, callbacks=[callback])
