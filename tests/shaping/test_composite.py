"""CompositeLoss: value and gradient against float64 references, arithmetic, saving, per-term logs."""

import csv
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses import DiceLoss, FocalLoss
from keras_lossopt.shaping import CompositeLoss, FunctionTerm, LinearWarmup, LossWeightScheduler, track_loss_terms
from tests.backends import jit_compile_setting, value_and_gradient


@keras.saving.register_keras_serializable(package="keras_lossopt_tests")
def cubic_error(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred) ** 3, axis=-1)


@keras.saving.register_keras_serializable(package="keras_lossopt_tests")
def logit_energy(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_pred), axis=-1)


def _reference_terms(y, z, w):
    """Float64 NumPy references of MSE, MAE and cubic error per sample, and their gradients in z."""
    diff = z - y
    mse, mae, cubic = (diff**2).mean(-1), np.abs(diff).mean(-1), (np.abs(diff) ** 3).mean(-1)
    d = diff.shape[-1]
    grads = {"mse": 2 * diff / d, "mae": np.sign(diff) / d, "cubic": 3 * diff * np.abs(diff) / d}
    values = {"mse": mse, "mae": mae, "cubic": cubic}
    return values, grads


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_value_and_gradient_are_the_weighted_sum(reduction, rng):
    y = rng.normal(size=(6, 3))
    z = rng.normal(size=(6, 3))
    sample_weight = rng.uniform(0.5, 2.0, size=(6,))
    weights = {"mse": 0.7, "mae": 1.9, "cubic": 0.25}
    loss = CompositeLoss(
        {"mse": keras.losses.MeanSquaredError(), "mae": "mean_absolute_error", "cubic": cubic_error},
        weights=weights,
        reduction=reduction,
    )
    value, gradient = value_and_gradient(
        lambda z_var: loss(y.astype("float32"), z_var, sample_weight=sample_weight.astype("float32")), z
    )

    values, grads = _reference_terms(y, z, None)
    per_sample = sum(weights[t] * values[t] for t in weights) * sample_weight
    per_sample_grad = sum(weights[t] * grads[t] for t in weights) * sample_weight[:, None]
    if reduction == "sum_over_batch_size":
        expected, expected_grad = per_sample.mean(), per_sample_grad / len(y)
    else:
        expected, expected_grad = (per_sample.sum() if reduction == "sum" else per_sample), per_sample_grad
    np.testing.assert_allclose(np.asarray(value), expected, rtol=2e-5)
    np.testing.assert_allclose(gradient, expected_grad, rtol=2e-4, atol=1e-6)


def test_arithmetic_builds_the_same_object():
    built = FocalLoss(gamma=1.0) + 0.5 * DiceLoss()
    explicit = CompositeLoss({"focal": FocalLoss(gamma=1.0), "dice": DiceLoss()}, weights={"focal": 1.0, "dice": 0.5})
    assert built.get_config() == explicit.get_config()
    assert (2.0 * built).weights_dict() == {"focal": 2.0, "dice": 1.0}
    merged = built + 3.0 * FocalLoss()
    assert merged.term_names == ("focal", "dice", "focal_2")
    assert sum([FocalLoss(), DiceLoss()]).term_names == ("focal", "dice")
    # Python function terms and list terms are named after the function / loss.
    assert CompositeLoss([cubic_error, DiceLoss(), DiceLoss()]).term_names == ("cubic_error", "dice", "dice_2")


def test_reduction_none_matches_per_sample_terms(rng):
    y = rng.integers(0, 3, size=(4, 5, 5))
    probs = rng.dirichlet(np.ones(3), size=(4, 5, 5)).astype("float32")
    loss = CompositeLoss({"focal": FocalLoss(gamma=0.0), "dice": DiceLoss()}, weights=[0.3, 2.0], reduction="none")
    per_image = np.asarray(loss(y, probs))
    ce = -np.log(np.take_along_axis(probs.astype(np.float64), y[..., None], axis=-1))[..., 0].mean(axis=(1, 2))
    dice = np.asarray(DiceLoss(reduction="none")(y, probs), dtype=np.float64)
    np.testing.assert_allclose(per_image, 0.3 * ce + 2.0 * dice, rtol=2e-5)


def _model(jit_compile=False, loss=None):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(keras.optimizers.Adam(0.01), loss=loss, jit_compile=jit_compile)
    return model


def test_term_values_in_history_csv_and_tensorboard(tmp_path, rng):
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 3, size=(32,))
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = _model(loss=CompositeLoss({"ce": ce, "focal": FocalLoss(from_logits=True)}, weights=[1.0, 0.5]))
    csv_path, board = tmp_path / "log.csv", tmp_path / "board"
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[
            LossWeightScheduler({"focal": LinearWarmup(2.0, steps=1)}),
            keras.callbacks.CSVLogger(str(csv_path)),
            keras.callbacks.TensorBoard(str(board)),
        ],
    )
    for key in ("loss_ce", "loss_focal", "val_loss_ce", "val_loss_focal", "weight_focal"):
        assert key in history.history, sorted(history.history)
    # The logged value is the unweighted term: the validation CE equals Keras' own CE of the final model.
    expected_ce = float(ce(y, model.predict(x, verbose=0)))
    assert history.history["val_loss_ce"][-1] == pytest.approx(expected_ce, rel=1e-5)
    # The epoch loss is the weighted sum of the term means (weight of focal: 0 then 2).
    for epoch, weight in enumerate([0.0, 2.0]):
        h = history.history
        assert h["val_loss"][epoch] == pytest.approx(
            h["val_loss_ce"][epoch] + weight * h["val_loss_focal"][epoch], rel=1e-5
        )
    with open(csv_path) as handle:
        header = next(csv.reader(handle))
    assert {"loss_ce", "val_loss_focal", "weight_focal"} <= set(header)
    tags = set()
    for path in glob.glob(str(board / "**" / "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_loss_ce", "epoch_loss_focal"} <= tags, tags


def test_state_is_tracked_by_the_model_and_saving_round_trips(tmp_path, rng):
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    loss = CompositeLoss(
        {"ce": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "energy": FunctionTerm(logit_energy)},
        weights={"ce": 1.0, "energy": 0.0},
    )
    model = _model(loss=loss)
    track_loss_terms(model)
    track_loss_terms(model)  # idempotent
    tracked = {id(v) for v in model.non_trainable_variables}
    assert all(id(v) in tracked for v in loss.state.term_weights.values())
    assert {m.name for m in model.metrics} >= {"loss_ce", "loss_energy"}
    model.fit(x, y, epochs=1, verbose=0)
    loss.set_weights({"energy": 0.125})
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects
    assert isinstance(restored.loss, CompositeLoss)
    assert restored.loss.weights_dict() == {"ce": 1.0, "energy": 0.125}
    np.testing.assert_allclose(
        float(restored.loss(y, restored.predict(x, verbose=0))), float(loss(y, model.predict(x, verbose=0))), rtol=1e-6
    )


def test_set_weight_takes_effect_in_a_jit_compiled_step_without_retracing(rng):
    traces = []

    def counted(y_true, y_pred):
        traces.append(1)  # Python side effect: runs only while tracing
        return keras.ops.mean(keras.ops.square(y_pred), axis=-1)

    x = rng.normal(size=(8, 4)).astype("float32")
    y = np.zeros((8, 3), "float32")
    loss = CompositeLoss({"zero": keras.losses.MeanSquaredError(), "square": counted}, weights=[0.0, 1.0])
    model = _model(jit_compile=jit_compile_setting(), loss=loss)
    track_loss_terms(model)  # on JAX a compiled step reads only the variables the model tracks
    model.optimizer.learning_rate.assign(0.0)
    square = float(np.mean(model.predict(x, verbose=0) ** 2))
    traced_by_first_step = None
    for weight in (16.0, 160.0, 1600.0):
        loss.set_weights({"square": weight})
        logs = model.train_on_batch(x, y, return_dict=True)
        assert logs["loss"] == pytest.approx(weight * square, rel=1e-5)
        traced_by_first_step = traced_by_first_step or len(traces)
    if jit_compile_setting():  # PyTorch's fit runs eagerly: no trace to reuse
        assert len(traces) == traced_by_first_step
