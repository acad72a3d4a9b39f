"""The problem bench: small models with known training problems, and healthy baselines.

Each case trains on scikit-learn's digits (the built-in `load_digits`) for a few epochs
at most, possibly transformed (raw 0-255 pixels, regression targets in dollars, an
even/odd binary task). `expected` is the finding kind that must be reported, `layers`
the layers it must name (all of them, possibly among others), and `cause` the planted
cause (a `causes.CAUSE_KEYS` key) that should be ranked first; healthy cases expect no
finding at any seed. `TrainingDiagnostics` gets 128 validation samples with their targets
as its probe batch, so the checks before training run in `on_train_begin`.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_lossopt.callbacks import GradientMonitor, TrainingDiagnostics
from keras_lossopt.datasets import load_digits

L = keras.layers
SCE = "sparse_ce"
SETUP_KINDS = ("non_finite_data", "input_scale", "target_scale", "loss_mismatch", "non_finite_forward")


@functools.lru_cache(maxsize=2)
def digits(as_images: bool = False):
    return load_digits(as_images=as_images)


def mlp(
    depth: int,
    activation,
    *,
    width: int = 32,
    kernel_initializer="glorot_uniform",
    dead_layer=None,
    name=None,
    out_units: int = 10,
    out_activation=None,
    after=(),
):
    layers = [keras.Input((64,))]
    for i in range(depth):
        bias = keras.initializers.Constant(-20.0 if i == dead_layer else 0.0)
        layers.append(
            L.Dense(
                width,
                activation=activation,
                kernel_initializer=kernel_initializer,
                bias_initializer=bias,
                name=f"dense_{i}",
            )
        )
    layers.append(L.Dense(out_units, activation=out_activation, name="out"))
    layers.extend(layer() for layer in after)
    return keras.Sequential(layers, name=name)


def small_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(8, 3, activation="relu", padding="same", name="conv1"),
            L.MaxPooling2D(),
            L.Conv2D(16, 3, activation="relu", padding="same", name="conv2"),
            L.Flatten(),
            L.Dense(10, name="out"),
        ]
    )


@dataclasses.dataclass(frozen=True)
class BenchCase:
    id: str
    build: Callable[[], keras.Model]
    optimizer: Callable[[], keras.optimizers.Optimizer]
    expected: str | None
    layers: tuple[str, ...] = ()
    loss: Any = SCE  # SCE (from logits), a Keras loss name, or a function returning a loss
    images: bool = False
    epochs: int = 1
    cause: str | None = None  # the planted cause, ranked first when the diagnosis is right
    data: str = "digits"  # see `bench_data`
    batch_size: int = 32
    validation: bool = False  # pass validation data to fit (the stalled-metric check reads it)
    within_epochs: int = 1  # the expected finding must come within this many epochs


def bench_data(case: BenchCase, samples: int | None = None):
    """`(x_train, y_train, x_val, y_val)` for a case.

    `digits`: pixels in [0, 1], integer labels (one-hot for a loss other than `SCE` on a
    10-unit output); `raw_pixels`: the same images as 0-255 integers; `binary`: the
    even/odd task with `(N, 1)` float targets; `regression`: the digit's value as a
    standardized float target; `regression_dollars`: the same target as a price in
    dollars (value x 10,000 + 50,000), unscaled.
    """
    data = digits(case.images)
    x_train, x_val = data.x_train[:samples], data.x_val
    y_train, y_val = data.y_train[:samples], data.y_val
    if case.data == "raw_pixels":
        x_train, x_val = (np.round(v * 255).astype("float32") for v in (x_train, x_val))
    if case.data == "binary":
        y_train, y_val = ((v % 2).astype("float32")[:, None] for v in (y_train, y_val))
    elif case.data == "regression":
        y_train, y_val = (((v - 4.5) / 2.87).astype("float32")[:, None] for v in (y_train, y_val))
    elif case.data == "regression_dollars":
        y_train, y_val = ((v * 1e4 + 5e4).astype("float32")[:, None] for v in (y_train, y_val))
    elif case.loss != SCE and case.data == "digits" and "sparse" not in str(case.loss):
        y_train, y_val = (np.eye(10, dtype="float32")[v] for v in (y_train, y_val))
    return x_train, y_train, x_val, y_val


def _loss(case: BenchCase):
    if case.loss == SCE:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return case.loss() if callable(case.loss) else case.loss


def _huge_mlp():
    return mlp(4, "relu", kernel_initializer=keras.initializers.RandomNormal(stddev=1e10))


CASES = [
    BenchCase(
        "deep_sigmoid_mlp",
        lambda: mlp(10, "sigmoid"),
        lambda: keras.optimizers.SGD(0.1),
        "vanishing",
        layers=("dense_0", "dense_1", "dense_2"),
    ),
    BenchCase(
        "huge_initial_weights",
        lambda: mlp(4, "relu", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0)),
        lambda: keras.optimizers.SGD(1e-4),
        "exploding",
        layers=("out",),
    ),
    BenchCase(
        # A linear MLP on a squared error diverges at this learning rate: its norms
        # explode within 4 steps and turn NaN at step 4.
        "huge_learning_rate_to_nan",
        lambda: mlp(2, None),
        lambda: keras.optimizers.SGD(1.0),
        "non_finite",
        layers=("dense_0", "dense_1", "out"),
        loss="mse",
    ),
    BenchCase(
        "dead_relu_layer",
        lambda: mlp(3, "relu", dead_layer=1),
        lambda: keras.optimizers.Adam(1e-3),
        "dying_relu",
        layers=("dense_1",),
    ),
    BenchCase(
        "saturated_tanh",
        lambda: mlp(2, "tanh", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0)),
        lambda: keras.optimizers.SGD(0.01),
        "saturation",
        layers=("dense_0", "dense_1"),
    ),
    BenchCase(
        "oscillating_tanh",
        lambda: mlp(1, "tanh"),
        lambda: keras.optimizers.SGD(5.0),
        "oscillating_loss",
    ),
    # Faults visible before training (the checks on the first batch), and what they do.
    BenchCase(
        "unscaled_regression_targets",
        lambda: mlp(2, "relu", out_units=1),
        lambda: keras.optimizers.Adam(1e-3),
        "target_scale",
        loss="mse",
        data="regression_dollars",
        cause="target_scale",
    ),
    BenchCase(
        "raw_0_255_pixels",
        lambda: mlp(2, "relu"),
        lambda: keras.optimizers.SGD(0.05),
        "input_scale",
        layers=("dense_0",),
        data="raw_pixels",
        cause="input_scale",
    ),
    BenchCase(
        "mse_after_softmax",
        lambda: mlp(2, "relu", out_activation="softmax"),
        lambda: keras.optimizers.SGD(0.05),
        "loss_mismatch",
        layers=("out",),
        loss="mse",
        cause="loss_mismatch",
    ),
    BenchCase(
        "softmax_applied_twice",
        lambda: mlp(2, "relu", out_activation="softmax", after=[lambda: L.Softmax(name="softmax_again")]),
        lambda: keras.optimizers.Adam(1e-3),
        "loss_mismatch",
        layers=("out", "softmax_again"),
        loss="sparse_categorical_crossentropy",
        cause="loss_mismatch",
    ),
    BenchCase(
        "softmax_over_one_unit",
        lambda: mlp(2, "relu", out_units=1, out_activation="softmax"),
        lambda: keras.optimizers.Adam(1e-3),
        "loss_mismatch",
        layers=("out",),
        loss="binary_crossentropy",
        data="binary",
        cause="loss_mismatch",
    ),
    BenchCase(
        "ce_on_relu_output",
        lambda: mlp(2, "relu", out_activation="relu"),
        lambda: keras.optimizers.Adam(1e-3),
        "loss_mismatch",
        layers=("out",),
        cause="loss_mismatch",
    ),
    BenchCase(
        "from_logits_after_softmax",
        lambda: mlp(2, "relu", out_activation="softmax"),
        lambda: keras.optimizers.Adam(1e-3),
        "loss_mismatch",
        layers=("out",),
        cause="loss_mismatch",
    ),
    BenchCase(
        "overflow_at_init",
        _huge_mlp,
        lambda: keras.optimizers.SGD(0.01),
        "non_finite_forward",
        layers=("dense_3",),
        cause="non_finite_forward",
    ),
    BenchCase(
        # Adam at 1e-5: the loss falls by a few percent per epoch and validation accuracy
        # stays flat; the run never diverges.
        "slow_adam_1e-5",
        lambda: mlp(2, "relu"),
        lambda: keras.optimizers.Adam(1e-5),
        "stalled_metric",
        epochs=4,
        validation=True,
        within_epochs=4,
        cause="learning_rate_low",
    ),
    BenchCase("healthy_mlp_adam", lambda: mlp(2, "relu"), lambda: keras.optimizers.Adam(1e-3), None, epochs=3),
    BenchCase("healthy_mlp_sgd", lambda: mlp(3, "relu"), lambda: keras.optimizers.SGD(0.05), None, epochs=3),
    BenchCase("healthy_sigmoid_mlp", lambda: mlp(2, "sigmoid"), lambda: keras.optimizers.Adam(1e-3), None, epochs=3),
    BenchCase("healthy_cnn", small_cnn, lambda: keras.optimizers.Adam(1e-3), None, images=True, epochs=3),
    # Noisy but healthy: per-sample steps.
    BenchCase("healthy_batch1_sgd", lambda: mlp(2, "relu"), lambda: keras.optimizers.SGD(0.02), None, batch_size=1),
    BenchCase("healthy_batch1_adam", lambda: mlp(2, "relu"), lambda: keras.optimizers.Adam(1e-3), None, batch_size=1),
    BenchCase("healthy_batch2_sgd", lambda: mlp(2, "relu"), lambda: keras.optimizers.SGD(0.02), None, batch_size=2),
    BenchCase("healthy_batch2_adam", lambda: mlp(2, "relu"), lambda: keras.optimizers.Adam(1e-3), None, batch_size=2),
    # The healthy twins of the checks before training.
    BenchCase(
        "healthy_standardized_regression",
        lambda: mlp(2, "relu", out_units=1),
        lambda: keras.optimizers.Adam(1e-3),
        None,
        loss="mse",
        data="regression",
        epochs=3,
    ),
    BenchCase(
        "healthy_sigmoid_binary",
        lambda: mlp(2, "relu", out_units=1, out_activation="sigmoid"),
        lambda: keras.optimizers.Adam(1e-3),
        None,
        loss="binary_crossentropy",
        data="binary",
        epochs=3,
    ),
    BenchCase(
        "healthy_softmax_probabilities",
        lambda: mlp(2, "relu", out_activation="softmax"),
        lambda: keras.optimizers.Adam(1e-3),
        None,
        loss="sparse_categorical_crossentropy",
        epochs=3,
        validation=True,
    ),
]
PLANTED_CAUSES = {
    "deep_sigmoid_mlp": "saturating_activations",
    "huge_initial_weights": "initial_weight_scale",
    "huge_learning_rate_to_nan": "learning_rate_high",
    "dead_relu_layer": "negative_bias",
    "saturated_tanh": "initial_weight_scale",
    "oscillating_tanh": "learning_rate_high",
}
CASES = [dataclasses.replace(c, cause=c.cause or PLANTED_CAUSES.get(c.id)) for c in CASES]


def top_cause(finding) -> str | None:
    """The key of the cause a finding ranks first (a check before training is its own cause)."""
    if finding.kind in SETUP_KINDS:
        return finding.kind
    causes = getattr(finding, "causes", ())
    return causes[0].key if causes else None


@dataclasses.dataclass
class BenchRun:
    case: BenchCase
    model: keras.Model
    monitor: GradientMonitor
    diagnostics: TrainingDiagnostics
    history: keras.callbacks.History
    steps_per_epoch: int

    @property
    def findings(self):
        return self.monitor.findings + self.diagnostics.findings

    def expected_finding(self):
        """The first finding of the expected kind in time that names the expected layers, or None."""
        limit = self.case.within_epochs * self.steps_per_epoch
        hits = [f for f in self.findings if f.kind == self.case.expected and f.step < limit]
        if not hits:
            return None
        first = min(hits, key=lambda f: f.step)
        return first if set(self.case.layers) <= set(first.layers) else None


def compiled_model(case: BenchCase) -> keras.Model:
    model = case.build()
    model.compile(optimizer=case.optimizer(), loss=_loss(case))
    return model


def run_case(
    case: BenchCase,
    *,
    on_problem="warn",
    epochs=None,
    every_n_steps=1,
    batch_size=None,
    seed: int = 0,
    samples: int | None = None,
) -> BenchRun:
    keras.utils.set_random_seed(seed)
    x, y, x_val, y_val = bench_data(case, samples)
    batch_size = batch_size or case.batch_size
    model = compiled_model(case)
    monitor = GradientMonitor(on_problem=on_problem, every_n_steps=every_n_steps)
    diagnostics = TrainingDiagnostics(probe_x=x_val[:128], probe_y=y_val[:128])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs or case.epochs,
            shuffle=False,
            verbose=0,
            validation_data=(x_val, y_val) if case.validation else None,
            callbacks=[monitor, diagnostics],
        )
    steps = -(-len(x) // batch_size)
    return BenchRun(case, model, monitor, diagnostics, history, steps)
