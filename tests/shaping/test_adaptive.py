"""Adaptive weighting on real numbers: uncertainty weighting, DWA and GradNorm."""

import keras
import numpy as np
import pytest

from keras_lossopt.shaping import (
    CompositeLoss,
    DynamicWeightAveraging,
    GradNorm,
    UncertaintyWeighting,
    dwa_weights,
    task_losses,
)


def _two_task_data(rng, n=2000, noise=(1.0, 4.0), scale=(1.0, 1.0)):
    x = rng.normal(size=(n, 4)).astype("float32")
    coefficients = rng.normal(size=(4, 2))
    clean = x @ coefficients
    y = (clean + rng.normal(size=(n, 2)) * np.asarray(noise)) * np.asarray(scale)
    return x, y.astype("float32")


def _two_head_model(shared_units=0):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(shared_units, activation="tanh", name="trunk")(inputs) if shared_units else inputs
    first = keras.layers.Dense(1, name="first")(hidden)
    second = keras.layers.Dense(1, name="second")(hidden)
    return keras.Model(inputs, {"first": first, "second": second})


def _column_mse(column):
    def mse(y_true, y_pred):
        return keras.ops.square(y_true[:, column] - y_pred[:, column])

    mse.__name__ = f"mse_{column}"
    return mse


@pytest.mark.parametrize("layout", ["multi_output", "one_output"])
def test_uncertainty_weighting_learns_the_noise_variance_ratio(layout, rng):
    x, y = _two_task_data(rng)
    if layout == "multi_output":
        model = _two_head_model()
        model.compile(keras.optimizers.Adam(0.05), loss=task_losses({"first": "mse", "second": "mse"}))
        targets = {"first": y[:, :1], "second": y[:, 1:]}
        names = ("first", "second")
    else:
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(keras.optimizers.Adam(0.05), loss=CompositeLoss([_column_mse(0), _column_mse(1)]))
        targets, names = y, ("mse_0", "mse_1")
    callback = UncertaintyWeighting()
    if keras.backend.backend() != "tensorflow":
        callback.set_model(model)  # JAX and PyTorch's fit builds the optimizer before the callbacks see the model
    history = model.fit(x, targets, epochs=6, batch_size=50, verbose=0, callbacks=[callback])
    log_variances = [history.history[f"log_variance_{name}"][-1] for name in names]
    ratio = np.exp(log_variances[1] - log_variances[0])
    assert ratio == pytest.approx(16.0, rel=0.2)
    assert history.history[f"weight_{names[1]}"][-1] == pytest.approx(np.exp(-log_variances[1]), rel=1e-6)


def test_dwa_weights_follow_the_formula_on_a_recorded_history():
    history = [[2.0, 1.0, 4.0], [1.5, 0.9, 3.9], [1.2, 0.85, 3.0]]
    for temperature in (0.5, 2.0, 10.0):
        ratios = np.array(history[-1]) / np.array(history[-2])
        expected = 3 * np.exp(ratios / temperature) / np.exp(ratios / temperature).sum()
        np.testing.assert_allclose(dwa_weights(history, temperature), expected, rtol=1e-12)
    np.testing.assert_array_equal(dwa_weights(history[:1]), np.ones(3))


def test_dwa_in_fit_uses_the_logged_epoch_losses(rng):
    x, y = _two_task_data(rng, n=200, scale=(1.0, 3.0))
    model = _two_head_model(shared_units=8)
    model.compile(keras.optimizers.Adam(0.02), loss=task_losses({"first": "mse", "second": "mse"}))
    history = model.fit(
        x,
        {"first": y[:, :1], "second": y[:, 1:]},
        epochs=4,
        batch_size=50,
        verbose=0,
        callbacks=[DynamicWeightAveraging(temperature=2.0)],
    ).history
    losses = np.array([history["loss_first"], history["loss_second"]], dtype=np.float64).T
    weights = np.array([history["weight_first"], history["weight_second"]]).T
    np.testing.assert_allclose(weights[:2], 1.0)
    for epoch in range(2, 4):
        ratios = losses[epoch - 1] / losses[epoch - 2]
        expected = 2 * np.exp(ratios / 2.0) / np.exp(ratios / 2.0).sum()
        np.testing.assert_allclose(weights[epoch], expected, rtol=1e-5)
        # The epoch loss is the weighted sum of the unweighted term logs.
        assert history["loss"][epoch] == pytest.approx(weights[epoch] @ losses[epoch], rel=1e-4)


def _gradnorm_run(learning_rate):
    x, y = _two_task_data(np.random.default_rng(0), n=512, noise=(0.5, 0.5), scale=(1.0, 100.0))
    keras.utils.set_random_seed(0)
    model = _two_head_model(shared_units=16)
    model.compile(keras.optimizers.Adam(0.01), loss=task_losses({"first": "mse", "second": "mse"}))
    callback = GradNorm(alpha=0.5, learning_rate=learning_rate, shared_layer="trunk")
    targets = {"first": y[:, :1], "second": y[:, 1:]}
    h = model.fit(x, targets, epochs=5, batch_size=32, verbose=0, callbacks=[callback]).history
    ratio = np.log(np.array(h["grad_norm_first"]) / h["grad_norm_second"])
    target = np.log(np.array(h["grad_norm_target_first"]) / h["grad_norm_target_second"])
    return np.abs(ratio - target), h


@pytest.mark.slow
def test_gradnorm_moves_the_gradient_norm_ratio_towards_its_target():
    fixed_gap, fixed = _gradnorm_run(learning_rate=0.0)  # the weights stay at 1
    balanced_gap, balanced = _gradnorm_run(learning_rate=0.05)
    assert fixed["weight_second"] == [1.0] * 5
    # Fixed weights: the 100x task's gradient norm stays over e^4 times the first one's, far from the target.
    assert fixed_gap[-3:].mean() > 4.0, fixed_gap
    assert balanced_gap[-3:].mean() < 0.25 * fixed_gap[-3:].mean(), (balanced_gap, fixed_gap)
    assert balanced["weight_first"][-1] + balanced["weight_second"][-1] == pytest.approx(2.0, rel=1e-5)
    assert balanced["weight_second"][-1] < 0.05 * balanced["weight_first"][-1]


@pytest.mark.parametrize("make_callback", [DynamicWeightAveraging, GradNorm], ids=["dwa", "gradnorm"])
def test_dwa_and_gradnorm_balance_the_terms_of_one_composite_output(make_callback, rng):
    x, y = _two_task_data(rng, n=96, scale=(1.0, 10.0))
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))  # GradNorm: the last layer is the shared one
    model.compile(keras.optimizers.Adam(0.01), loss=CompositeLoss([_column_mse(0), _column_mse(1)]))
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[make_callback()]).history
    weights = np.array([history["weight_mse_0"], history["weight_mse_1"]])
    np.testing.assert_allclose(weights.sum(axis=0), 2.0, rtol=1e-5)
    assert np.all(weights > 0) and len(history["loss_mse_1"]) == 3
    if make_callback is GradNorm:
        assert weights[1, -1] < weights[0, -1]  # the 10x column has the larger gradients
