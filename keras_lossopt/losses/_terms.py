"""The rules for one term of a `CompositeLoss`: its default name, its weight, and its reduced value.

Shared by the composite and its operators (`losses/composite.py`); no Keras loss class here.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_lossopt.losses._keras_mask import with_keras_mask
from keras_lossopt.losses.contract import LossContract

__all__: list[str] = []


#: What loss arithmetic supports, for the errors of the operators it does not.
ARITHMETIC = (
    "loss arithmetic has `loss + loss` (a CompositeLoss of both) and `number * loss` (a weight >= 0); "
    "to subtract a quantity use RewardTerm(fn), which the composite subtracts (weight * reward), and "
    "to divide multiply by 1/x"
)


def shown_operands(left: Any, operator: str, right: Any) -> str:
    def shown(value):
        return type(value).__name__ if isinstance(value, keras.losses.Loss) else repr(value)

    return f"{shown(left)} {operator} {shown(right)}"


def term_name_of(loss: Any) -> str:
    """The default term name of a loss or function: its name without a trailing `_loss`.

    Args:
        loss: a `keras.losses.Loss` or a function.

    Returns:
        `"focal"` for `FocalLoss()`, `"dice"` for `DiceLoss()`, the function's `__name__` for a function.
    """
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
    name = str(name)
    return name[: -len("_loss")] if name.endswith("_loss") and len(name) > len("_loss") else name


def own_mask(loss, y_true, y_pred):
    compute_mask = getattr(loss, "compute_mask", None)
    return None if compute_mask is None else compute_mask(y_true, y_pred)


def child_loss(loss, y_true, y_pred, sample_weight, mask):
    """A term's reduced loss, with the composite's input mask passed on.

    keras-lossopt terms take the mask through `masked_call`; a Keras loss reads it from
    `y_pred`, so the mask goes back onto the tensor (the attribute Keras reads).

    Args:
        loss: the term.
        y_true: targets.
        y_pred: predictions.
        sample_weight: optional weights.
        mask: optional input mask (the Keras mask of the composite's `y_pred`).

    Returns:
        What the term returns with its reduction.
    """
    if isinstance(loss, LossContract):
        return loss.masked_call(y_true, y_pred, sample_weight, mask)
    return loss(y_true, with_keras_mask(y_pred, mask), sample_weight=sample_weight)


def check_term_weight(term: str, weight: Any) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"The weight of term {term!r} must be a number. Received: {weight!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"The weight of term {term!r} must be finite and >= 0 (subtract a quantity with RewardTerm). "
            f"Received: {weight!r}"
        )
    return value


def scale_factor(factor: Any) -> float:
    """A loss's weight factor as a float: numbers, NumPy scalars and 0-d tensors; nothing else."""
    wanted = "A loss is weighted by a number, e.g. 0.5 * FocalLoss()"
    if isinstance(factor, str):
        raise TypeError(
            f"{wanted}. Received: {factor!r} of type str; convert text (a weight read from a config file) "
            f"with float({factor!r})."
        )
    if isinstance(factor, (bool, np.bool_)) or not hasattr(factor, "__float__"):
        raise TypeError(f"{wanted}; {ARITHMETIC}. Received: {factor!r} of type {type(factor).__name__}")
    try:
        return float(factor)
    except (TypeError, ValueError):
        raise TypeError(f"{wanted}. Received: {factor!r} of type {type(factor).__name__}") from None
