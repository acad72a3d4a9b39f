"""Ranked causes: each cause ranked first with its evidence, and its twin without it."""

import math

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks.causes import describe_causes, rank_causes
from keras_lossopt.callbacks.pretraining import check_training_setup
from keras_lossopt.callbacks.training_start import training_start

L = keras.layers


def compiled(*layers, optimizer=None, inputs=8):
    m = keras.Sequential([keras.Input((inputs,)), *layers])
    m.compile(optimizer=optimizer or keras.optimizers.SGD(0.01), loss="mse")
    return m


def keys(causes):
    return [c.key for c in causes]


@pytest.mark.parametrize("bias, blamed", [(-20.0, True), (-6e-6, False)])
def test_dead_relu_blames_biases_only_when_materially_negative(bias, blamed):
    m = compiled(L.Dense(16, activation="relu", bias_initializer=keras.initializers.Constant(bias), name="h"))
    start = training_start(m)
    causes = rank_causes("dying_relu", m, ("h",), start=start)
    assert ("negative_bias" in keys(causes)) == blamed
    if blamed:
        first = causes[0]
        assert first.key == "negative_bias"
        kernel = m.get_layer("h").kernel.numpy().astype(np.float64)
        typical = kernel.std() * math.sqrt(kernel.shape[0])
        assert first.evidence["h.typical_preactivation"] == pytest.approx(typical)
        assert first.evidence["h.mean_bias"] == pytest.approx(bias)
        assert "bias_initializer" in first.description  # negative from the start


def test_biases_pushed_down_during_training_are_attributed_to_the_updates():
    m = compiled(L.Dense(16, activation="relu", name="h"))
    start = training_start(m)
    m.get_layer("h").bias.assign(np.full(16, -20.0, "float32"))
    cause = rank_causes("dying_relu", m, ("h",), start=start)[0]
    assert cause.key == "negative_bias" and "pushed them down" in cause.description


def test_weights_after_a_divergence_are_never_called_initial():
    m = compiled(L.Dense(16, activation="relu", name="h"), L.Dense(1, name="out"))
    start = training_start(m)
    m.get_layer("h").kernel.assign(
        np.random.default_rng(0).normal(size=(8, 16)).astype("float32") * 3e30
    )  # the wreck after divergence
    causes = rank_causes("exploding", m, ("h",), start=start, update_ratio=0.8)
    assert "initial_weight_scale" not in keys(causes)
    first = causes[0]
    assert first.key == "learning_rate_high"
    assert first.evidence["update_ratio"] == 0.8
    assert "grew from std" in first.description and "h.kernel_std_now" in first.evidence


@pytest.mark.parametrize("stddev, blamed", [(3.0, True), (None, False)])
def test_initial_weight_scale_compares_the_start_with_glorot(stddev, blamed):
    init = keras.initializers.RandomNormal(stddev=stddev) if stddev else "glorot_uniform"
    m = compiled(L.Dense(32, activation="tanh", kernel_initializer=init, name="h"), L.Dense(1, name="out"))
    start = training_start(m)
    causes = rank_causes("saturation", m, ("h",), start=start)
    assert (keys(causes)[:1] == ["initial_weight_scale"]) == blamed
    if blamed:
        kernel = m.get_layer("h").kernel.numpy().astype(np.float64)
        glorot = math.sqrt(2 / (8 + 32))
        assert causes[0].evidence["h.initial_std_over_glorot"] == pytest.approx(kernel.std() / glorot)


@pytest.mark.parametrize(
    "rnn, where, stddev",
    [
        (L.LSTM, "recurrent_kernel", 1e-4),  # below Glorot's (0.079 for 32 units x 128)
        (L.GRU, "recurrent_kernel", 3.0),
        (L.GRU, "kernel", 1e-4),
        (L.LSTM, None, None),  # Keras' defaults: glorot_uniform kernel, orthogonal recurrent kernel
    ],
)
def test_initial_weight_scale_counts_the_kernels_of_a_recurrent_cell(rnn, where, stddev):
    # A recurrent layer keeps its kernels in its cell (`layer.cell.kernel`,
    # `layer.cell.recurrent_kernel`), which the check did not read.
    argument = {"kernel": "kernel_initializer", "recurrent_kernel": "recurrent_initializer"}.get(where)
    init = {} if where is None else {argument: keras.initializers.RandomNormal(stddev=stddev)}
    m = keras.Sequential([keras.Input((6, 8)), rnn(32, name="rnn", **init), L.Dense(1, name="out")])
    m.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    causes = rank_causes("vanishing", m, ("rnn",), start=training_start(m))
    assert ("initial_weight_scale" in keys(causes)) == (where is not None)
    if where is not None:
        name = "rnn" if where == "kernel" else "rnn/recurrent_kernel"
        kernel = getattr(m.get_layer("rnn").cell, where).numpy().astype(np.float64)
        glorot = math.sqrt(2 / sum(kernel.shape))
        evidence = next(c for c in causes if c.key == "initial_weight_scale").evidence
        assert evidence == {f"{name}.initial_std_over_glorot": pytest.approx(kernel.std() / glorot)}


@pytest.mark.parametrize("kind", ["exploding", "non_finite"])
@pytest.mark.parametrize("stddev", [10.0, None])
def test_an_explosion_from_off_scale_initial_weights_names_them_before_the_learning_rate(kind, stddev):
    # The corpus' bad-initialization runs that exploded at step 1 (kernel std 8.5 to 23, SGD 0.013
    # to 1.6) had first updates of 0.29 to 1.5e8 of the weights' norm, driven by gradients of 1.2e3
    # to 1.4e13 at the starting weights: the weights' doing, not the step size's (the old prior
    # 0.8 ranked the learning rate first). With Glorot's scale the learning rate stays first.
    init = keras.initializers.RandomNormal(stddev=stddev) if stddev else "glorot_uniform"
    m = compiled(L.Dense(32, activation="relu", kernel_initializer=init, name="h"), L.Dense(1, name="out"))
    causes = rank_causes(kind, m, ("h",), start=training_start(m), update_ratio=0.6)
    assert keys(causes)[0] == ("initial_weight_scale" if stddev else "learning_rate_high")
    if stddev:
        learning_rate = next(c for c in causes if c.key == "learning_rate_high")
        assert learning_rate.evidence["update_ratio"] == 0.6  # still named, after the weights


def test_a_non_finite_forward_pass_at_the_start_outranks_the_learning_rate():
    huge = keras.initializers.RandomNormal(stddev=1e10)
    m = compiled(
        *(L.Dense(16, activation="relu", kernel_initializer=huge, name=f"d{i}") for i in range(4)),
        L.Dense(1, name="out"),
        optimizer=keras.optimizers.SGD(1.0),
    )
    start = training_start(m)
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    start.setup_findings = check_training_setup(m, x, np.zeros((16, 1), "float32"))
    causes = rank_causes("non_finite", m, (), start=start, update_ratio=0.5)
    assert causes[0].key == "non_finite_forward"
    assert "cannot help" in causes[0].remedy
    cause, remedy = describe_causes(causes)
    assert cause.startswith("1. before training") and "cannot help" in remedy


def test_a_non_finite_first_loss_is_a_starting_point_cause():
    m = compiled(L.Dense(1, name="out"))
    start = training_start(m)
    start.first_loss = float("nan")
    assert keys(rank_causes("non_finite", m, (), start=start))[:1] == ["non_finite_forward"]
    start.first_loss = 1.5
    assert "non_finite_forward" not in keys(rank_causes("non_finite", m, (), start=start))


@pytest.mark.parametrize("moved_by, blamed", [(1e-4, True), (0.3, False)])
def test_stalled_training_blames_a_small_learning_rate_from_how_far_the_weights_moved(moved_by, blamed):
    m = compiled(
        L.Dense(16, activation="relu", name="h"), L.Dense(1, name="out"), optimizer=keras.optimizers.Adam(1e-5)
    )
    start = training_start(m)
    before = [v.numpy() for v in m.trainable_variables]
    for v, w in zip(m.trainable_variables, before):
        v.assign(w * (1 + moved_by))
    causes = rank_causes("stalled_loss", m, (), start=start, step=49)
    assert (keys(causes)[:1] == ["learning_rate_low"]) == blamed
    if blamed:
        norm0 = math.sqrt(sum(float(np.sum(w.astype(np.float64) ** 2)) for w in before))
        assert causes[0].evidence["relative_weight_change"] == pytest.approx(moved_by, rel=1e-3)
        assert norm0 > 0


def test_a_stalled_run_with_a_mismatched_loss_names_the_loss_first():
    m = compiled(L.Dense(3, activation="softmax", name="out"))
    start = training_start(m)
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    start.setup_findings = check_training_setup(m, x, np.eye(3, dtype="float32")[np.arange(16) % 3])
    assert keys(rank_causes("stalled_loss", m, (), start=start, step=49))[:1] == ["loss_mismatch"]


def test_vanishing_in_a_deep_sigmoid_stack_names_the_saturating_activations():
    m = compiled(*(L.Dense(8, activation="sigmoid") for _ in range(5)), L.Dense(1))
    causes = rank_causes("vanishing", m, (), start=training_start(m))
    assert causes[0].key == "saturating_activations" and causes[0].evidence["saturating_layers"] == 5
    relu = compiled(*(L.Dense(8, activation="relu") for _ in range(2)), L.Dense(1))
    assert "saturating_activations" not in keys(rank_causes("vanishing", relu, (), start=training_start(relu)))


def test_training_start_is_shared_within_a_fit_and_fresh_for_the_next():
    m = compiled(L.Dense(1))
    params = {}
    first = training_start(m, token=id(params))
    assert training_start(m, token=id(params)) is first
    assert training_start(m, token=id({})) is not first


def test_describe_without_causes():
    cause, remedy = describe_causes([])
    assert "no single cause" in cause and remedy == ""
