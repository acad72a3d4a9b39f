"""TrainingDiagnostics: each check against an independent NumPy float64 computation."""

import copy

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks import TrainingDiagnostics, TrainingProblemError

L = keras.layers


def quiet(**kwargs):
    kwargs.setdefault("on_problem", lambda finding: None)
    return TrainingDiagnostics(**kwargs)


def attach(diagnostics, model, optimizer=None):
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.01), loss="mse")
    diagnostics.set_model(model)
    diagnostics.on_train_begin()
    return diagnostics


def relu_model(bias):
    # The activation checks watch hidden layers only (an output's activation is the loss' link).
    return keras.Sequential(
        [
            keras.Input((3,)),
            L.Dense(len(bias), activation="relu", bias_initializer=keras.initializers.Constant(bias), name="relu"),
            L.Dense(1, name="out"),
        ]
    )


def move_weights(model):
    """Moves the weights by their own norm, as training would (the stall and oscillation
    rules judge a still model apart)."""
    for variable in model.trainable_variables:
        variable.assign(variable * 2.0 + 0.1)


@pytest.mark.parametrize("dead_units, fires", [(3, True), (2, False)])
def test_dead_relu_share_matches_numpy(rng, dead_units, fires):
    bias = np.array([-50.0] * dead_units + [0.0] * (4 - dead_units))
    model = relu_model(bias)
    probe = rng.normal(size=(32, 3)).astype("float32")
    diagnostics = attach(quiet(probe_x=probe), model)
    diagnostics.on_epoch_end(0)
    kernel, b = (np.asarray(v.numpy(), np.float64) for v in model.layers[0].weights)
    outputs = np.maximum(probe.astype(np.float64) @ kernel + b, 0)
    expected = np.mean(np.all(outputs <= 0, axis=0))
    found = [f for f in diagnostics.findings if f.kind == "dying_relu"]
    assert bool(found) == fires == (expected >= 0.7)
    if fires:
        # Dead from the starting weights: a problem, found before the first step.
        assert found[0].severity == "problem" and found[0].step == 0
        assert found[0].layers == ("relu",)
        assert found[0].evidence["relu.dead_share"] == pytest.approx(expected)
        assert found[0].causes[0].key == "negative_bias" and f"relu (mean bias {bias.mean():.3g}" in found[0].cause


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturated_share_matches_the_pre_activations(rng, activation):
    model = keras.Sequential(
        [
            keras.Input((8,)),
            L.Dense(
                16, activation=activation, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0), name="sat"
            ),
            L.Dense(1, activation=activation, name="out"),
        ]
    )
    probe = rng.normal(size=(64, 8)).astype("float32")
    diagnostics = attach(quiet(probe_x=probe, saturation_share=0.1), model)
    diagnostics.on_epoch_end(0)
    kernel, bias = (np.asarray(v.numpy(), np.float64) for v in model.layers[0].weights)
    z = probe.astype(np.float64) @ kernel + bias
    expected = np.mean(np.abs(z) > 5.0)
    assert 0.1 < expected < 0.9  # a meaningful case: neither none nor all saturated
    finding = next(f for f in diagnostics.findings if f.kind == "saturation")
    # Read from the output: at most the float32 rounding of values at the edge differs.
    assert finding.evidence["sat.saturated_share"] == pytest.approx(expected, abs=2 / z.size)
    assert finding.layers == ("sat",) and finding.severity == "problem"  # from the start


def test_units_that_die_during_training_are_information_and_outputs_are_not_checked(rng):
    model = relu_model(np.zeros(4))
    probe = rng.normal(size=(32, 3)).astype("float32")
    diagnostics = attach(quiet(probe_x=probe), model)
    assert diagnostics.findings == []  # alive at the start
    model.layers[0].bias.assign(np.full(4, -50.0, "float32"))  # killed by the updates
    diagnostics.on_epoch_end(0)
    [finding] = diagnostics.findings
    assert (finding.kind, finding.severity, finding.action) == ("dying_relu", "information", "noted")
    # A saturated sigmoid output is a confident classifier, not a finding.
    confident = keras.Sequential(
        [keras.Input((3,)), L.Dense(4, activation="relu"), L.Dense(1, activation="sigmoid", name="out")]
    )
    confident.layers[-1].bias.assign(np.array([50.0], "float32"))
    checked = attach(quiet(probe_x=probe), confident)
    checked.on_epoch_end(0)
    assert [f.kind for f in checked.findings] == []


def test_activation_checks_during_an_epoch_read_the_weights_being_trained(rng):
    # The initializers make every unit dead; the weights set before fit keep them alive and
    # a zero learning rate keeps them there. A check that read the variables without the
    # running fit's state (emptied during a JAX epoch) would see the initializers' dead units.
    model = keras.Sequential(
        [
            keras.Input((3,)),
            L.Dense(4, activation="relu", kernel_initializer="zeros", bias_initializer="zeros", name="relu"),
            L.Dense(1, name="out"),
        ]
    )
    model.layers[0].set_weights([np.zeros((3, 4), "float32"), np.ones(4, "float32")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    probe = rng.normal(size=(32, 3)).astype("float32")
    diagnostics = quiet(probe_x=probe, probe_every_n_steps=1)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[diagnostics])
    assert [f.kind for f in diagnostics.findings if f.kind == "dying_relu"] == []


def feed(diagnostics, losses, start=0):
    """Feeds per-batch losses as Keras does: the running mean over the epoch."""
    for k, _ in enumerate(losses, start=1):
        diagnostics.on_train_batch_end(k - 1, {"loss": float(np.mean(losses[:k]))})


def test_per_batch_losses_are_recovered_from_the_running_mean(rng):
    diagnostics = attach(quiet(), relu_model([0.0]))
    losses = rng.uniform(0.5, 2.5, size=30)
    diagnostics.on_epoch_begin(0)
    feed(diagnostics, losses)
    np.testing.assert_allclose(diagnostics.batch_losses, losses, rtol=1e-9)


def test_oscillating_loss():
    model = relu_model([0.0])
    diagnostics = attach(quiet(), model)
    move_weights(model)
    diagnostics.on_epoch_begin(0)
    # Swings that climb from the start (1, 3) to (3, 6): steps too large, not batch noise.
    losses = np.array([1.0, 3.0, 1.0, 3.0, 1.0] + [3.0, 6.0] * 15)
    feed(diagnostics, losses)
    finding = next(f for f in diagnostics.findings if f.kind == "oscillating_loss")
    assert finding.step == 19  # the first full window of 20 batches
    swing = np.mean(np.abs(np.diff(losses[:20]))) / np.mean(losses[:5])
    assert finding.evidence["mean_abs_change_over_start_loss"] == pytest.approx(swing)


def test_stalled_and_decreasing_losses(rng):
    stalled = attach(quiet(), relu_model([0.0]))
    stalled.on_epoch_begin(0)
    feed(stalled, 2.3 + 0.01 * rng.normal(size=60))
    finding = next(f for f in stalled.findings if f.kind == "stalled_loss")
    assert finding.step == 49
    healthy = attach(quiet(), relu_model([0.0]))
    healthy.on_epoch_begin(0)
    feed(healthy, 2.3 * np.exp(-np.arange(60) / 40) + 0.05 * rng.normal(size=60))
    assert healthy.findings == []


@pytest.mark.parametrize("lr, fires", [(5.0, True), (1e-8, True), (1e-3, False)])
def test_learning_rate_range(lr, fires):
    diagnostics = attach(quiet(), relu_model([0.0]), keras.optimizers.SGD(lr))
    found = [f for f in diagnostics.findings if f.kind == "learning_rate"]
    assert bool(found) == fires
    if fires:
        assert found[0].evidence["learning_rate"] == pytest.approx(lr)
        assert found[0].severity == "information" and found[0].action == "noted"


def test_subclassed_models_skip_activation_checks():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2, activation="relu", bias_initializer=keras.initializers.Constant(-50.0))

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 3), "float32"))
    diagnostics = attach(quiet(probe_x=np.ones((4, 3), "float32")), model)
    diagnostics.on_epoch_end(0)
    assert diagnostics.findings == []
    assert "skipped" in diagnostics.report()


def test_raise_and_report(rng):
    # The learning-rate value alone is information (never raised); a stall of a still
    # model is a problem, and raises.
    diagnostics = TrainingDiagnostics(on_problem="raise")
    model = relu_model([0.0])
    model.compile(optimizer=keras.optimizers.SGD(3.0), loss="mse")
    diagnostics.set_model(model)
    diagnostics.on_train_begin()
    diagnostics.on_epoch_begin(0)
    with pytest.raises(TrainingProblemError, match="stalled_loss"):
        feed(diagnostics, 2.3 + 0.01 * rng.normal(size=60))
    report = diagnostics.report()
    assert "[learning_rate, information]" in report and "[stalled_loss]" in report


def test_config_round_trip_and_deepcopy(rng):
    probe = rng.normal(size=(4, 3)).astype("float32")
    diagnostics = TrainingDiagnostics(
        probe_x=probe,
        probe_y=np.arange(4),
        probe_every_n_steps=7,
        on_problem="stop",
        dead_relu_share=0.6,
        saturation_share=0.4,
        saturation_input=4.0,
        loss_window=10,
        oscillation_threshold=0.3,
        stall_steps=30,
        stall_tolerance=0.02,
        lr_range=(1e-5, 0.5),
    )
    config = diagnostics.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(diagnostics))
    assert isinstance(restored, TrainingDiagnostics)
    assert {k: v for k, v in restored.get_config().items() if k != "probe_x"} == {
        k: v for k, v in config.items() if k != "probe_x"
    }
    np.testing.assert_allclose(restored.probe_x, probe)
    np.testing.assert_array_equal(restored.probe_y, np.arange(4))
    clone = copy.deepcopy(diagnostics)
    assert clone.probe_every_n_steps == 7 and clone.probe_x is not probe
    np.testing.assert_array_equal(clone.probe_x, probe)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dead_relu_share": 1.5}, "dead_relu_share"),
        ({"on_problem": "clip"}, "on_problem"),
        ({"lr_range": (1.0, 0.1)}, "lr_range"),
        ({"loss_window": 2}, "loss_window"),
        ({"saturation_input": 0}, "saturation_input"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingDiagnostics(**kwargs)


@pytest.mark.parametrize("activation, fires", [("softmax", True), (None, False)])
def test_checks_before_training_run_on_the_probe_batch(rng, activation, fires):
    model = keras.Sequential([keras.Input((3,)), L.Dense(3, activation=activation, name="out")])
    model.compile(optimizer="sgd", loss="mse")
    probe_x = rng.normal(size=(16, 3)).astype("float32")
    probe_y = np.eye(3, dtype="float32")[np.arange(16) % 3]
    diagnostics = quiet(probe_x=probe_x, probe_y=probe_y)
    diagnostics.set_model(model)
    diagnostics.on_train_begin()
    found = [f for f in diagnostics.findings if f.kind == "loss_mismatch"]
    assert bool(found) == fires
    if fires:
        assert found[0].step == -1 and found[0].layers == ("out",) and "mse after the softmax" in found[0].cause


def test_a_stalled_validation_loss_is_reported_with_a_small_learning_rate_as_cause(rng):
    diagnostics = attach(quiet(), relu_model([0.0]), keras.optimizers.Adam(1e-5))
    diagnostics.on_epoch_begin(0)
    feed(diagnostics, 2.37 + 0.001 * rng.normal(size=30))
    for epoch, value in enumerate([2.350, 2.348, 2.346]):
        diagnostics.on_epoch_end(epoch, {"val_loss": value})
    finding = next(f for f in diagnostics.findings if f.kind == "stalled_metric")
    assert finding.evidence["val_loss_now"] == 2.346
    # The weights did not move at all here (no optimizer step ran): a learning rate too small.
    assert finding.causes[0].key == "learning_rate_low"
