"""The trivial baseline loss: what a model that ignores its inputs reaches.

A model that predicts the same output for every sample, the best such constant (the class
frequencies for a cross-entropy, the mean or median of the targets for a regression),
reaches the trivial baseline loss. A network whose validation loss never gets below it has
learned nothing that carries to new data: the labels do not depend on the inputs (shuffled
or misaligned labels), or the inputs carry no signal for them. `TrainingDiagnostics`
measures it once, on its probe targets, for the `no_signal` rule of
`loss_trends.LossTrendDetector`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_lossopt.callbacks.loss_fit import loss_family

__all__ = ["trivial_accuracy", "trivial_loss"]

_EDGE = 1e-7  # Keras' probability clip: a class absent from the probe is not log(0)


def trivial_loss(loss: Any, y_true: Any, output_units: int) -> float | None:
    """The loss of the best constant prediction of `y_true`, under `loss`.

    Args:
        loss: the loss as given to `compile` (a name, a `keras.losses.Loss`, a function).
        y_true: the targets of a batch: integer class labels `(n,)` or `(n, 1)` for a
            sparse loss with several output units, else `(n, output_units)` (or `(n,)`
            for one unit).
        output_units: the size of the model output's last axis.

    Returns:
        The mean loss of the constant prediction (class frequencies, as logits when the
        loss takes logits; for a regression loss the better of the targets' mean and
        median), or None when it cannot be computed (a structure of targets, shapes that
        do not fit, a loss that fails on the constant).

    Examples:
        >>> import numpy as np
        >>> round(trivial_loss("sparse_categorical_crossentropy", np.array([0, 1, 1, 1]), 2), 4)
        0.5623
    """
    try:
        y = np.asarray(y_true)
    except (TypeError, ValueError):
        return None
    if y.dtype == object or y.size == 0 or not np.issubdtype(y.dtype, np.number) or output_units < 1:
        return None
    y = y.astype("float64")
    if not np.isfinite(y).all():
        return None
    family, from_logits, _ = loss_family(loss)
    sparse = output_units > 1 and (y.ndim == 1 or y.shape[-1] == 1) and np.all(y == np.round(y))
    if sparse:
        labels = y.reshape(-1).astype("int64")
        if labels.min() < 0 or labels.max() >= output_units:
            return None
        constants = [np.bincount(labels, minlength=output_units) / len(labels)]
    else:
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if y.shape[-1] != output_units:
            return None
        flat = y.reshape(-1, output_units)
        constants = [flat.mean(axis=0)]
        if family == "regression":
            constants.append(np.median(flat, axis=0))
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    values = []
    for constant in constants:
        prediction = constant
        if family in ("softmax_ce", "sigmoid_ce"):
            p = np.clip(constant, _EDGE, 1 - _EDGE)
            if from_logits:
                prediction = np.log(p) if family == "softmax_ce" and output_units > 1 else np.log(p / (1 - p))
            else:
                prediction = p
        shape = (len(y), output_units)
        batch = np.broadcast_to(prediction, shape).astype("float32")
        target = y.reshape(-1).astype("float32") if sparse else y.reshape(shape).astype("float32")
        try:
            value = float(np.mean(keras.ops.convert_to_numpy(fn(target, batch))))
        except Exception:  # a loss that does not take this target form: no baseline
            return None
        if math.isfinite(value):
            values.append(value)
    return min(values) if values else None


def trivial_accuracy(y_true: Any, output_units: int) -> float | None:
    """The accuracy of always predicting the most frequent class of `y_true`.

    Args:
        y_true: class targets: integer labels `(n,)` or `(n, 1)`, one-hot rows
            `(n, output_units)`, or 0/1 targets of one sigmoid unit.
        output_units: the size of the model output's last axis.

    Returns:
        The majority class' share, or None when the targets are not class labels (a
        regression, soft or multi-label targets).

    Examples:
        >>> import numpy as np
        >>> trivial_accuracy(np.array([0, 1, 1, 1]), 2)
        0.75
    """
    try:
        y = np.asarray(y_true, dtype="float64")
    except (TypeError, ValueError):
        return None
    if y.size == 0 or not np.isfinite(y).all() or np.any(y != np.round(y)) or output_units < 1:
        return None
    if output_units == 1:
        if y.size != len(y) or not np.isin(y, (0.0, 1.0)).all():
            return None
        share = float(np.mean(y))
        return max(share, 1.0 - share)
    if y.ndim == 1 or y.shape[-1] == 1:
        labels = y.reshape(-1).astype("int64")
        if labels.min() < 0 or labels.max() >= output_units:
            return None
        return float(np.bincount(labels, minlength=output_units).max() / len(labels))
    rows = y.reshape(-1, y.shape[-1])
    if rows.shape[-1] != output_units or not np.isin(rows, (0.0, 1.0)).all() or np.any(rows.sum(axis=-1) != 1):
        return None
    return float(rows.sum(axis=0).max() / len(rows))
