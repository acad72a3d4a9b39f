"""The problem bench: small models with known training problems, and healthy baselines.

Each case trains on scikit-learn's digits (the built-in `load_digits`) for a few epochs
at most. `expected` is the finding kind that must be reported, and `layers` the layers
it must name (all of them, possibly among others); healthy cases expect no finding.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

import keras
import numpy as np

from keras_lossopt.callbacks import GradientMonitor, TrainingDiagnostics
from keras_lossopt.datasets import load_digits

L = keras.layers
SCE = "sparse_ce"


@functools.lru_cache(maxsize=2)
def digits(as_images: bool = False):
    return load_digits(as_images=as_images)


def mlp(depth: int, activation, *, width: int = 32, kernel_initializer="glorot_uniform", dead_layer=None, name=None):
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
    layers.append(L.Dense(10, name="out"))
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
    loss: str = SCE
    images: bool = False
    epochs: int = 1


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
    BenchCase("healthy_mlp_adam", lambda: mlp(2, "relu"), lambda: keras.optimizers.Adam(1e-3), None, epochs=3),
    BenchCase("healthy_mlp_sgd", lambda: mlp(3, "relu"), lambda: keras.optimizers.SGD(0.05), None, epochs=3),
    BenchCase("healthy_sigmoid_mlp", lambda: mlp(2, "sigmoid"), lambda: keras.optimizers.Adam(1e-3), None, epochs=3),
    BenchCase("healthy_cnn", small_cnn, lambda: keras.optimizers.Adam(1e-3), None, images=True, epochs=3),
]


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


def run_case(case: BenchCase, *, on_problem="warn", epochs=None, every_n_steps=1, batch_size=32) -> BenchRun:
    keras.utils.set_random_seed(0)
    data = digits(case.images)
    model = case.build()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if case.loss == SCE else case.loss
    y = data.y_train if case.loss == SCE else np.eye(10, dtype="float32")[data.y_train]
    model.compile(optimizer=case.optimizer(), loss=loss)
    monitor = GradientMonitor(on_problem=on_problem, every_n_steps=every_n_steps)
    diagnostics = TrainingDiagnostics(probe_x=data.x_val[:128])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            data.x_train,
            y,
            batch_size=batch_size,
            epochs=epochs or case.epochs,
            shuffle=False,
            verbose=0,
            callbacks=[monitor, diagnostics],
        )
    steps = -(-len(data.x_train) // batch_size)
    return BenchRun(case, model, monitor, diagnostics, history, steps)
