"""One model trained on a dataset's training split and scored on its test split (`compare` and `search`).

`targets` gives the labels in the form the losses take; `train_once` trains a fresh model
with one loss and Adam, `train_configuration` with a search's whole configuration (loss,
optimizer, regularization; `tuning.compile_arguments`); both score the test predictions
with `report.scores`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keras_lossopt.cli import report
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import compile_arguments, default_metrics

__all__ = ["targets", "train_configuration", "train_once"]


def targets(dataset: Dataset, split: str) -> np.ndarray:
    """Labels in the form the losses take: `(N, 1)` floats for binary, integers otherwise."""
    labels = getattr(dataset, f"y_{split}")
    if dataset.task == "binary":
        return labels.reshape(-1, 1).astype("float32")
    return labels


def _curve_keys(task: str) -> tuple[str, ...]:
    return ("loss", "val_iou_score") if task == "segmentation" else ("loss", "val_macro_f1")


def train_once(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    loss: keras.losses.Loss,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Trains one model with `loss` and Adam(`learning_rate`); returns its test scores and its per-epoch curves."""

    def compile_with(model):
        return {"optimizer": keras.optimizers.Adam(learning_rate), "loss": loss}

    return _train(dataset, make_model, compile_with, seed=seed, epochs=epochs, batch_size=batch_size)


def train_configuration(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    configuration,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Trains one model compiled from a search's configuration; returns its test scores and its per-epoch curves."""

    def compile_with(model):
        return compile_arguments(configuration, model)

    return _train(dataset, make_model, compile_with, seed=seed, epochs=epochs, batch_size=batch_size)


def _train(dataset: Dataset, make_model, compile_with, *, seed: int, epochs: int, batch_size: int):
    keras.utils.set_random_seed(seed)
    model = make_model()
    model.compile(**compile_with(model), metrics=default_metrics(dataset.task, dataset.num_classes))
    history = model.fit(
        dataset.x_train,
        targets(dataset, "train"),
        validation_data=(dataset.x_val, targets(dataset, "val")) if len(dataset.y_val) else None,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
    )
    outputs = model.predict(dataset.x_test, batch_size=256, verbose=0)
    scores = report.scores(dataset.task, dataset.y_test, outputs, dataset.num_classes)
    curves = {k: [float(v) for v in history.history[k]] for k in _curve_keys(dataset.task) if k in history.history}
    keras.backend.clear_session()
    return scores, curves
