"""GradientMonitor: recorded statistics against an independent reference on the same step
(same weights, same batch): the backend's own gradient function (tf.GradientTape, jax.grad,
torch.autograd) and NumPy float64, across model kinds, jit_compile, MirroredStrategy, mixed
precision and clipping; logs, TensorBoard, actions, report/plot, config and deepcopy. Every
test runs on the backend of KERAS_BACKEND."""

import copy
import glob
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.callbacks import Finding, GradientMonitor, TrainingProblemError
from tests.backends import BACKEND, jit_compile_setting, loss_gradients, tensorflow_only
from tests.callbacks.problem_bench import CASES, run_case

L = keras.layers
N, BATCH = 64, 16
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 6)).astype("float32"), rng.integers(0, 3, size=N)


def sequential():
    return keras.Sequential(
        [keras.Input((6,)), L.Dense(8, activation="tanh", name="hidden"), L.Dense(3, name="head")], name="seq"
    )


def functional():
    inputs = keras.Input((6,))
    a = L.Dense(8, activation="relu", name="left")(inputs)
    b = L.Dense(4, activation="tanh", name="right")(inputs)
    merged = L.Concatenate(name="concat")([a, b])
    outputs = L.Dense(3, name="head")(merged)
    return keras.Model(inputs, outputs, name="func")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.block = keras.Sequential([L.Dense(8, activation="relu", name="inner")], name="block")
        self.head = L.Dense(3, name="head")
        self.temperature = self.add_weight(shape=(), initializer="ones", name="temperature")

    def call(self, x):
        return self.head(self.block(x)) * self.temperature


GROUPS = {
    "sequential": (sequential, ["hidden", "head"]),
    "functional": (functional, ["left", "right", "head"]),
    "subclassed": (lambda: Subclassed(), ["block/inner", "head", "sub"]),
}


class WeightsBeforeEachStep(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append(current_weights(self.model))

    def on_train_end(self, logs=None):
        self.weights.append(current_weights(self.model))


def current_weights(model):
    return [keras.ops.convert_to_numpy(v).astype("float64") for v in model.trainable_variables]


def owner_index(model, monitor):
    """Group index of every trainable variable, from the layer names (independent of the hook)."""
    index = {}
    for group, name in enumerate(monitor.history.layers):
        layer = model
        for part in name.split("/"):
            layer = layer if part == model.name else layer.get_layer(part)
        variables = layer.trainable_variables if layer is not model else []
        for v in variables:
            index.setdefault(id(v), group)
    return [index.get(id(v), len(monitor.history.layers) - 1) for v in model.trainable_variables]


def reference_gradients(model, weights, x, y):
    """The gradients at `weights`, by the backend's own gradient function."""
    for v, w in zip(model.trainable_variables, weights):
        v.assign(w.astype("float32"))
    return loss_gradients(model, LOSS, x, y)


def per_group(values, owners, groups, reduce):
    out = np.zeros(groups)
    for value, g in zip(values, owners):
        out[g] = reduce(out[g], value)
    return out


def fit(model, monitor, *, epochs=1, extra=(), jit_compile="auto", optimizer=None, x=None, y=None):
    # "auto": what a user gets by default (jax.jit on JAX, eager torch, no XLA for TensorFlow on CPU).
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.05), loss=LOSS, jit_compile=jit_compile)
    if x is None:
        x, y = data()
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, callbacks=[monitor, *extra])


# The plain (un-jitted) JAX step compiles op by op; one model kind shows it, the TensorFlow run has all.
_SLOW_OFF_TENSORFLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "kind, jit_compile",
    [
        ("sequential", False),
        ("sequential", True),
        pytest.param("functional", False, marks=_SLOW_OFF_TENSORFLOW),
        ("functional", True),
        pytest.param("subclassed", False, marks=_SLOW_OFF_TENSORFLOW),
        ("subclassed", True),
    ],
    ids=[
        "sequential-plain",
        "sequential-compiled",
        "functional-plain",
        "functional-compiled",
        "subclassed-plain",
        "subclassed-compiled",
    ],
)
def test_recorded_statistics_equal_the_backends_own_gradients_on_the_same_step(kind, jit_compile):
    # "compiled": XLA on TensorFlow and JAX; torch trains eagerly (Keras' default there).
    jit_compile = jit_compile and jit_compile_setting()
    build, names = GROUPS[kind]
    model = build()
    monitor, weights = GradientMonitor(), WeightsBeforeEachStep()
    x, y = data()
    fit(model, monitor, extra=[weights], jit_compile=jit_compile)
    h = monitor.history
    assert list(h.layers) == names
    assert h.steps.tolist() == [0, 1, 2, 3]
    owners = owner_index(model, monitor)
    groups = len(names)
    # Step 1, not 0: an unbuilt subclassed model has no weights before its first step.
    for step in (1, 3):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        grads = reference_gradients(model, weights.weights[step], x[batch], y[batch])
        sumsq = per_group([np.sum(g**2) for g in grads], owners, groups, lambda a, b: a + b)
        maxabs = per_group([np.max(np.abs(g)) for g in grads], owners, groups, max)
        np.testing.assert_allclose(h.grad_norm[step], np.sqrt(sumsq), rtol=2e-5)
        np.testing.assert_allclose(h.max_abs[step], maxabs, rtol=2e-5)
        np.testing.assert_allclose(h.global_grad_norm[step], np.sqrt(sumsq.sum()), rtol=2e-5)
        np.testing.assert_array_equal(h.nonfinite_share[step], 0.0)
        # The real update between the weights before this step and before the next.
        before, after = weights.weights[step], weights.weights[step + 1]
        update = per_group([np.sum((a - b) ** 2) for a, b in zip(after, before)], owners, groups, lambda a, b: a + b)
        norm = per_group([np.sum(b**2) for b in before], owners, groups, lambda a, b: a + b)
        np.testing.assert_allclose(h.update_ratio[step], np.sqrt(update / norm), rtol=1e-3)
        np.testing.assert_allclose(h.global_update_ratio[step], math.sqrt(update.sum() / norm.sum()), rtol=1e-3)


@tensorflow_only
def test_mirrored_strategy_records_the_reduced_gradient(two_device_strategy):
    with two_device_strategy.scope():
        model = sequential()
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    x, y = data()
    initial = current_weights(model)
    monitor = GradientMonitor(every_n_steps=2)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.history.steps.tolist() == [0, 2]
    reference = sequential()
    reference.build((None, 6))
    grads = reference_gradients(reference, initial, x[:BATCH], y[:BATCH])
    expected = [
        math.sqrt(np.sum(grads[0] ** 2) + np.sum(grads[1] ** 2)),
        math.sqrt(np.sum(grads[2] ** 2) + np.sum(grads[3] ** 2)),
    ]
    # Each replica sees half the batch; the sum over replicas is the full-batch gradient.
    np.testing.assert_allclose(monitor.history.grad_norm[0], expected, rtol=2e-5)
    assert "apply" not in vars(model.optimizer)


def test_mixed_precision_records_the_unscaled_gradients():
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="tanh"), L.Dense(3, dtype="float32")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = data()
    grads = loss_gradients(model, LOSS, x[:BATCH], y[:BATCH])
    expected = math.sqrt(sum(float(np.sum(g**2)) for g in grads))
    monitor = GradientMonitor()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    # The loss scale is 2**15: a scaled gradient would be ~32768 times larger.
    assert monitor.history.global_grad_norm[0] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    "clip, reference",
    [
        pytest.param(
            {"clipnorm": 0.05}, lambda gs: [g * min(1.0, 0.05 / np.linalg.norm(g)) for g in gs], marks=pytest.mark.slow
        ),
        (
            {"global_clipnorm": 0.1},
            lambda gs: [g * 0.1 / max(math.sqrt(sum(np.sum(h**2) for h in gs)), 0.1) for g in gs],
        ),
        pytest.param({"clipvalue": 0.01}, lambda gs: [np.clip(g, -0.01, 0.01) for g in gs], marks=pytest.mark.slow),
    ],
    ids=["clipnorm", "global_clipnorm", "clipvalue"],
)
def test_norm_after_clipping(clip, reference):
    model = sequential()
    x, y = data()
    model.build((None, 6))
    initial = current_weights(model)
    grads = reference_gradients(sequential_like(model), initial, x[:BATCH], y[:BATCH])
    clipped = reference(grads)
    monitor = GradientMonitor(every_n_steps=4)
    fit(model, monitor, optimizer=keras.optimizers.SGD(0.05, **clip))
    h = monitor.history
    expected = [
        math.sqrt(np.sum(clipped[0] ** 2) + np.sum(clipped[1] ** 2)),
        math.sqrt(np.sum(clipped[2] ** 2) + np.sum(clipped[3] ** 2)),
    ]
    np.testing.assert_allclose(h.grad_norm_clipped[0], expected, rtol=2e-5)
    assert h.global_grad_norm[0] > h.global_grad_norm_clipped[0]


def sequential_like(model):
    twin = sequential()
    twin.build((None, 6))
    return twin


@pytest.mark.parametrize("detect_every", [1, 16])
def test_every_n_steps_logs_and_history_callback(detect_every):
    model = sequential()
    monitor = GradientMonitor(every_n_steps=3, detect_every_n_steps=detect_every)

    class Seen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.batches = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append(logs.get("grad_norm"))

    seen = Seen()
    history = fit(model, monitor, epochs=3, extra=[seen])
    h = monitor.history
    assert h.steps.tolist() == [0, 3, 6, 9]
    recorded = [b for b in seen.batches if b is not None]
    assert len(seen.batches) == 12
    if detect_every == 1:
        # Read at every step: the batch logs of each recorded step carry its norm.
        np.testing.assert_allclose(recorded, h.global_grad_norm, rtol=1e-6)
        assert [i for i, b in enumerate(seen.batches) if b is not None] == [0, 3, 6, 9]
    else:
        # Four steps per epoch: the records are read at the epoch ends only.
        assert recorded == []
    # Epoch logs: the mean of the epoch's recorded steps (epoch 0: steps 0, 3; 1: 6; 2: 9).
    np.testing.assert_allclose(
        history.history["grad_norm"], [h.global_grad_norm[:2].mean(), h.global_grad_norm[2], h.global_grad_norm[3]]
    )
    assert {"grad_norm_max", "update_ratio"} <= set(history.history)


def test_optimizer_and_later_fits_are_left_clean(tmp_path):
    model = sequential()
    plain = sequential()
    plain.compile(optimizer="adam", loss=LOSS)
    x, y = data()
    plain.fit(x, y, epochs=1, verbose=0)
    monitor = GradientMonitor()
    fit(model, monitor, optimizer=keras.optimizers.Adam())
    assert len(model.optimizer.variables) == len(plain.optimizer.variables)
    assert "apply" not in vars(model.optimizer)
    recorded = len(monitor.history)
    model.fit(x, y, epochs=1, verbose=0)  # no monitor: nothing recorded, nothing breaks
    assert len(monitor.history) == recorded
    second = GradientMonitor(every_n_steps=2)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[second])
    assert second.history.steps.tolist() == [6, 8]  # iterations continue: 4 + 2 steps before
    path = str(tmp_path / "model.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras.models.load_model(path)


@pytest.mark.slow  # covered by the TensorFlow run; nothing backend-specific beyond the tests kept
def test_tensorboard_scalars_and_histograms(tmp_path):
    monitor = GradientMonitor(every_n_steps=2, log_dir=str(tmp_path))
    fit(sequential(), monitor)
    files = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert files
    scalars, histograms = {}, set()
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            tensor = tf.make_ndarray(value.tensor)
            if value.metadata.plugin_data.plugin_name == "scalars":
                scalars.setdefault(value.tag, []).append(float(tensor))
            elif value.metadata.plugin_data.plugin_name == "histograms":
                assert tensor.shape[1] == 3 and tensor[:, 2].sum() == len(monitor.history.layers)
                histograms.add(value.tag)
    np.testing.assert_allclose(scalars["gradients/global_norm"], monitor.history.global_grad_norm, rtol=1e-6)
    np.testing.assert_allclose(scalars["gradients/norm/hidden"], monitor.history.grad_norm[:, 0], rtol=1e-6)
    assert "updates/ratio/head" in scalars
    assert {"gradients/layer_norms", "updates/layer_ratios"} <= histograms


def exploding():
    return CASES[1]


@pytest.mark.slow  # trains on the problem bench; covered by the TensorFlow run
def test_stop_and_callable_actions():
    stopped = run_case(exploding(), on_problem="stop", epochs=2)
    assert stopped.monitor.findings[0].kind == "exploding"
    assert "stopped" in stopped.monitor.findings[0].action
    assert len(stopped.history.history["loss"]) == 1
    # Training stops at the read that finds the problem: at most 15 steps later (default 16).
    found = stopped.monitor.findings[0].step
    assert found <= stopped.monitor.history.steps[-1] < found + stopped.monitor.detect_every_n_steps
    received = []
    called = run_case(exploding(), on_problem=received.append)
    assert received and isinstance(received[0], Finding) and received[0].kind == "exploding"
    assert called.monitor.findings[0].action.startswith("called")
    assert not called.model.stop_training


def test_raise_action_unhooks_the_optimizer():
    model = sequential()
    monitor = GradientMonitor(on_problem="raise", exploding_norm=1e-3, detect_every_n_steps=1)
    with pytest.raises(TrainingProblemError, match="exploding") as info:
        fit(model, monitor)
    assert info.value.finding.kind == "exploding"
    assert "apply" not in vars(model.optimizer)
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # the model trains on without the hook


# A healthy run with thresholds that its norms cross: the rules (NumPy, tests/callbacks/test_detection.py)
# fire at known steps, so these check how findings reach the step on each backend: reads, stop, re-trace.
EXPLODING_AT_ONCE = {"exploding_norm": 1e-3, "detect_every_n_steps": 1}


@pytest.mark.parametrize("on_problem", ["stop", "callable"])
def test_an_exploding_finding_stops_or_calls_at_its_read(on_problem):
    received = []
    monitor = GradientMonitor(
        on_problem=received.append if on_problem == "callable" else on_problem, **EXPLODING_AT_ONCE
    )
    model = sequential()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = fit(model, monitor, epochs=2)
    finding = monitor.findings[0]
    assert finding.kind == "exploding" and finding.step == 1  # patience 2: steps 0 and 1
    if on_problem == "stop":
        assert "stopped" in finding.action and model.stop_training
        assert monitor.history.steps.tolist() == [0, 1] and len(history.history["loss"]) == 1
    else:
        assert received[0] is not None and received[0].kind == "exploding" and finding.action.startswith("called")
        assert not model.stop_training and len(monitor.history) == 8


def test_a_vanishing_finding_names_every_layer_below_the_floor():
    monitor = GradientMonitor(vanishing_floor=1e3, growth_window=2, detect_every_n_steps=1, on_problem=lambda f: None)
    fit(sequential(), monitor)
    finding = next(f for f in monitor.findings if f.kind == "vanishing")
    assert finding.step < 4 and finding.evidence


@pytest.mark.parametrize("targets, fires", [((2.0, 2.0), False), ((1.0, 3.0), True)])
def test_the_monitor_passes_batch_losses_so_a_fit_batch_is_not_vanishing(targets, fires):
    # One SGD step (rate 1/8) takes a zero-initialized linear model to the mean target: with
    # equal targets the loss is then exactly 0 (fit), with targets 1 and 3 it stays at 1 (of
    # a first loss of 5). Every norm is below the floor of 1e3 here: only the batch losses,
    # recovered from Keras' running mean, tell the two apart.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.125), loss="mse")
    y = np.tile(np.array(targets, "float32"), 4).reshape(8, 1)
    monitor = GradientMonitor(
        vanishing_floor=1e3, patience=1, growth_window=3, vanishing_share=1.0, on_problem=lambda f: None
    )
    x = np.ones((8, 3), "float32")
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[monitor])
    found = [f for f in monitor.findings if f.kind == "vanishing"]
    assert bool(found) == fires, [str(f) for f in monitor.findings]
    if fires:  # the first full window of 3 records
        assert found[0].step == 2 and found[0].evidence["floor"] == 1e3


@pytest.mark.parametrize(
    "steps_per_execution",
    [1, pytest.param(2, marks=pytest.mark.skipif(BACKEND == "torch", reason="torch: steps_per_execution=1 only"))],
)
def test_the_batch_losses_are_the_steps_own_losses_whatever_the_steps_per_execution(steps_per_execution):
    # A zero model that never moves (rate 0) scores target**2 on each batch; Keras logs the
    # running mean, once per call: with two steps per call the monitor gets their mean.
    targets = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 1.0], "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=steps_per_execution)
    monitor, received = GradientMonitor(on_problem=lambda f: None), {}

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            update = monitor._detector.update

            def capture(steps, block):
                received.update(zip(np.asarray(steps).tolist(), block["loss"].tolist()))
                return update(steps, block)

            monitor._detector.update = capture

    x, y = np.ones((12, 3), "float32"), np.repeat(targets, 2).reshape(12, 1)
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0, callbacks=[monitor, Capture()])
    per_step = np.tile(targets**2, 2)
    if steps_per_execution == 2:
        per_step = np.repeat(per_step.reshape(-1, 2).mean(axis=1), 2)
    logged = {step: loss for step, loss in received.items() if np.isfinite(loss)}
    assert sorted(logged) == list(range(steps_per_execution - 1, 12, steps_per_execution))
    np.testing.assert_allclose([logged[s] for s in sorted(logged)], per_step[sorted(logged)], rtol=1e-5)


def test_clip_turns_on_global_clipping_that_the_next_steps_apply():
    monitor = GradientMonitor(on_problem="clip", clip_norm=0.01, **EXPLODING_AT_ONCE)
    model = sequential()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(model, monitor, epochs=2)
    first = next(f for f in monitor.findings if f.kind == "exploding")
    assert "clipnorm" in first.action and model.optimizer.global_clipnorm == 0.01
    h = monitor.history
    later = h.steps > first.step
    assert later.any() and not model.stop_training
    # The re-traced step clips: the recorded norm after clipping is the clip norm.
    np.testing.assert_allclose(h.global_grad_norm_clipped[later], 0.01, rtol=1e-4)
    assert (h.global_grad_norm[later] > 0.01).all()


def test_reduce_lr_reaches_the_next_steps():
    monitor = GradientMonitor(on_problem="reduce_lr", lr_factor=0.1, **EXPLODING_AT_ONCE)
    model, weights = sequential(), WeightsBeforeEachStep()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(model, monitor, epochs=2, extra=[weights])
    findings = [f for f in monitor.findings if f.kind == "exploding"]
    assert findings and "learning rate" in findings[0].action
    h = monitor.history
    for index, step in enumerate(h.steps):
        # SGD: ||w_after - w_before|| = lr * ||g||, with the rate that the findings before this step left.
        update = math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights.weights[step + 1], weights.weights[step])))
        lr = 0.05 * 0.1 ** sum(f.step < step for f in findings)
        assert update / h.global_grad_norm[index] == pytest.approx(lr, rel=1e-2), step
    assert keras.ops.convert_to_numpy(model.optimizer.learning_rate) == pytest.approx(0.05 * 0.1 ** len(findings))


@pytest.mark.slow  # covered by the TensorFlow run; nothing backend-specific beyond the tests kept
def test_report_and_plot_after_a_stopped_run():
    import matplotlib

    matplotlib.use("Agg")
    run = run_case(CASES[2], epochs=2)  # diverges to NaN: restored and stopped
    text = run.monitor.report()
    assert "non_finite" in text and "exploding" in text and "stopped" in text
    for name in run.monitor.history.layers:
        assert name in text
    figure = run.monitor.plot()
    assert len(figure.axes) == 4  # heatmap + colorbar, global norm, update ratio
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (len(run.monitor.history.layers), len(run.monitor.history))
    matplotlib.pyplot.close(figure)


@pytest.mark.slow  # covered by the TensorFlow run; nothing backend-specific beyond the tests kept
def test_config_round_trip_and_deepcopy():
    monitor = GradientMonitor(
        every_n_steps=5,
        on_problem="reduce_lr",
        patience=4,
        vanishing_ratio=1e-4,
        vanishing_floor=1e-9,
        vanishing_share=0.6,
        exploding_norm=50.0,
        exploding_growth=20.0,
        growth_window=3,
        clip_norm=2.0,
        lr_factor=0.5,
        min_lr=1e-5,
        log_dir="/tmp/logs",
    )
    config = monitor.get_config()
    assert GradientMonitor.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(monitor))
    assert isinstance(restored, GradientMonitor) and restored.get_config() == config
    fit(sequential(), monitor)
    clone = copy.deepcopy(monitor)
    assert clone.get_config() == config and clone is not monitor
    np.testing.assert_array_equal(clone.history.grad_norm, monitor.history.grad_norm)
    clone_model = sequential()
    fit(clone_model, clone)  # the copy trains its own model
    assert len(clone.history) == 1 and clone.history.steps.tolist() == [0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"on_problem": "clipp"}, "Did you mean 'clip'"),
        ({"patience": 0}, "patience"),
        ({"vanishing_ratio": -1.0}, "vanishing_ratio"),
        ({"vanishing_share": 0.0}, r"`vanishing_share` must be in \(0, 1\]"),
        ({"vanishing_share": 1.5}, "vanishing_share=1.5"),
        ({"exploding_norm": 0}, "exploding_norm"),
        ({"lr_factor": 1.5}, "lr_factor"),
        ({"detect_every_n_steps": 0}, "detect_every_n_steps"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(**kwargs)


def test_uncompiled_model_is_a_clear_error():
    monitor = GradientMonitor()
    model = sequential()
    monitor.set_model(model)
    with pytest.raises(ValueError, match="compile"):
        monitor.on_train_begin()


TORCH_ONE_STEP = pytest.mark.skipif(BACKEND == "torch", reason="Keras' torch trainer allows steps_per_execution=1 only")


@TORCH_ONE_STEP
def test_steps_per_execution_records_inside_the_graph():
    # With several steps per call the recording is decided by a cond on the iteration.
    x, y = data()
    keras.utils.set_random_seed(3)
    model = sequential()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS, steps_per_execution=2)
    keras.utils.set_random_seed(3)
    reference = sequential()
    reference.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    reference.set_weights(model.get_weights())
    chunked, single = GradientMonitor(every_n_steps=2), GradientMonitor(every_n_steps=2)
    model.fit(x, y, batch_size=BATCH // 2, epochs=1, shuffle=False, verbose=0, callbacks=[chunked])
    reference.fit(x, y, batch_size=BATCH // 2, epochs=1, shuffle=False, verbose=0, callbacks=[single])
    assert chunked.history.steps.tolist() == single.history.steps.tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(chunked.history.grad_norm, single.history.grad_norm, rtol=1e-5)
    np.testing.assert_allclose(chunked.history.update_ratio, single.history.update_ratio, rtol=1e-4)


@pytest.mark.slow  # covered by the TensorFlow run; nothing backend-specific beyond the tests kept
def test_reading_every_16_steps_keeps_every_record_of_reading_at_each_step():
    # The records wait in a ring buffer between reads; a read must return each exactly once.
    x, y = data()
    histories = []
    for detect_every in (1, 16, 3):
        keras.utils.set_random_seed(5)
        model = sequential()
        monitor = GradientMonitor(detect_every_n_steps=detect_every)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
        model.fit(x, y, batch_size=BATCH // 4, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
        histories.append(monitor.history)
    assert histories[0].steps.tolist() == list(range(32))
    for other in histories[1:]:
        assert other.steps.tolist() == histories[0].steps.tolist()
        np.testing.assert_allclose(other.grad_norm, histories[0].grad_norm, rtol=1e-5)
        np.testing.assert_allclose(other.update_ratio, histories[0].update_ratio, rtol=1e-4)


@pytest.mark.slow  # test_steps_per_execution_records_inside_the_graph covers the path on every backend
@TORCH_ONE_STEP
def test_several_steps_per_call_keep_each_recorded_step():
    x, y = data()
    keras.utils.set_random_seed(3)
    model = sequential()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS, steps_per_execution=4)
    monitor = GradientMonitor(every_n_steps=1)
    model.fit(x, y, batch_size=BATCH // 2, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.history.steps.tolist() == list(range(8))
    assert np.isfinite(monitor.history.grad_norm).all()


def test_restored_weights_are_the_weights_before_a_good_snapshot_step():
    from tests.callbacks.problem_bench import CASES, digits

    case = CASES[2]  # diverges to NaN within the first epoch
    keras.utils.set_random_seed(0)
    d = digits(case.images)
    model = case.build()
    model.compile(optimizer=case.optimizer(), loss=LOSS)
    monitor, weights = GradientMonitor(on_problem="stop"), WeightsBeforeEachStep()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(d.x_train, d.y_train, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[weights, monitor])
    step = monitor.restored_step
    # Snapshots are kept every 10 steps (every_n_steps=1), at steps whose gradients were good.
    assert step is not None and step >= 0 and step % 10 == 0
    h = monitor.history
    assert h.global_grad_norm[h.steps == step][0] <= monitor.exploding_norm
    for restored, before in zip(model.get_weights(), weights.weights[step]):
        np.testing.assert_array_equal(restored, before.astype("float32"))


def relu_dropping_nan(x):
    """ReLU that maps a NaN pre-activation to 0 by an explicit select.

    Whether `relu(nan)` is 0 or NaN depends on how the CPU's max instruction treats NaN
    (NaN on some AMD and Intel parts, 0 on others), so the test does not rely on it.
    """
    return keras.ops.where(keras.ops.isnan(x), 0.0, keras.ops.relu(x))


def relu_run_with_a_nan_input(nan_step, **monitor_args):
    """A ReLU network whose input holds one NaN feature in the batch of `nan_step`.

    The hidden activation maps the NaN pre-activation to 0, so the loss stays finite, but
    the first layer's kernel gradient (input x upstream gradient, and NaN * 0 is NaN in
    IEEE arithmetic on every CPU) is NaN and spoils its weights.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12 * BATCH, 6)).astype("float32")
    y = rng.integers(0, 3, size=12 * BATCH)
    x[nan_step * BATCH + 5, 2] = np.nan
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((6,)), L.Dense(8, activation=relu_dropping_nan, name="hidden"), L.Dense(3, name="head")]
    )
    monitor, weights = GradientMonitor(**monitor_args), WeightsBeforeEachStep()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = fit(model, monitor, extra=[weights], x=x, y=y)
    return model, monitor, weights, history


@pytest.mark.parametrize(
    "every_n_steps, nan_step, found_at",
    [
        (1, 3, 3),  # recorded: the gradient row is non-finite
        (4, 5, 8),  # not recorded: the weights of the next recorded step are non-finite
        (4, 10, 11),  # after the last recorded step: the weights at the end of training
    ],
    ids=["recorded", "not-recorded", "after-the-last-record"],
)
def test_a_nan_with_a_finite_loss_is_found_and_only_finite_weights_are_restored(
    every_n_steps, nan_step, found_at, nan_max_convention
):
    model, monitor, weights, history = relu_run_with_a_nan_input(nan_step, every_n_steps=every_n_steps)
    assert all(math.isfinite(v) for v in history.history["loss"])  # the loss never shows it
    finding = next(f for f in monitor.findings if f.kind == "non_finite")
    assert finding.step == found_at and finding.layers == ("hidden",)
    # Only step 0 had finite weights and gradients among the snapshot steps (multiples of
    # 10 or 12) before the NaN; the weights before step 10 were NaN and are never kept.
    assert monitor.restored_step == 0 and "restored the weights from before step 0" in finding.action
    for restored, before in zip(model.get_weights(), weights.weights[0]):
        np.testing.assert_array_equal(restored, before.astype("float32"))
    assert not any(f.kind == "vanishing" for f in monitor.findings)  # rows of NaN weights are not vanishing


def test_restore_option_skips_the_bad_step_and_trains_on(nan_max_convention):
    model, monitor, _, _ = relu_run_with_a_nan_input(5, every_n_steps=4, on_problem="restore")
    finding = next(f for f in monitor.findings if f.kind == "non_finite")
    assert finding.action == "restored the weights from before step 0; trained on"
    assert not model.stop_training and monitor.history.steps.tolist() == [0, 4, 8]
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_no_restore_is_claimed_without_finite_weights(nan_max_convention):
    model = sequential()
    model.build((None, 6))
    kernel, *rest = model.get_weights()
    kernel[0, 0] = np.nan
    model.set_weights([kernel, *rest])
    monitor = GradientMonitor(on_problem="stop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(model, monitor)
    finding = next(f for f in monitor.findings if f.kind == "non_finite")
    assert monitor.restored_step is None
    # NaN starting weights fail at the first step: nothing to restore, and no remedy helps.
    assert finding.action.startswith("nothing restored: the first step already failed")
    assert "restored the" not in finding.action
    assert "restored" not in finding.remedy


@pytest.mark.parametrize("on_problem", ["warn", pytest.param("clip", marks=pytest.mark.slow)])
def test_a_run_whose_starting_weights_overflow_is_stopped_without_restore_or_remedy(on_problem, nan_max_convention):
    huge = keras.initializers.RandomNormal(stddev=1e10)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        # Linear layers: the overflow to inf and then inf - inf = NaN is IEEE arithmetic on every CPU,
        # where relu(NaN) would depend on the CPU's max instruction.
        [keras.Input((8,)), *(L.Dense(16, kernel_initializer=huge) for _ in range(4)), L.Dense(3)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = np.arange(64) % 3
    monitor = GradientMonitor(on_problem=on_problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    finding = next(f for f in monitor.findings if f.kind == "non_finite")
    assert finding.step == 0 and monitor.restored_step is None
    assert finding.action.startswith("nothing restored: the first step already failed") and "stopped" in finding.action
    assert finding.causes[0].key == "non_finite_forward" and "cannot help" in finding.remedy
    assert model.optimizer.global_clipnorm is None  # no remedy applied
    assert len(monitor.findings) == 1


@pytest.mark.slow  # covered by the TensorFlow run; nothing backend-specific beyond the tests kept
def test_the_monitor_names_the_layer_the_checks_before_training_found():
    from keras_lossopt.callbacks import TrainingDiagnostics

    huge = keras.initializers.RandomNormal(stddev=1e10)
    keras.utils.set_random_seed(0)
    layers = [L.Dense(16, activation="relu", kernel_initializer=huge, name=f"d{i}") for i in range(4)]
    model = keras.Sequential([keras.Input((8,)), *layers, L.Dense(3, name="out")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = np.arange(64) % 3
    monitor = GradientMonitor()
    diagnostics = TrainingDiagnostics(probe_x=x[:32], probe_y=y[:32], on_problem=lambda finding: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor, diagnostics])
    setup = next(f for f in diagnostics.findings if f.kind == "non_finite_forward")
    finding = next(f for f in monitor.findings if f.kind == "non_finite")
    assert finding.causes[0].key == "non_finite_forward"
    assert f"layer {setup.layers[0]!r}" in finding.causes[0].description
