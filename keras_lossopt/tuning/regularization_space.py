"""The regularization search space: weight penalty, label smoothing and dropout strengths.

`choose_regularization(hp, model, loss, ...)` declares, on every build:

* `"regularization/l2"`: the strength of an L2 `shaping.WeightPenalty` on every trainable
  kernel, log-uniform (a term of the loss, bound to the trial's model here);
* `"regularization/label_smoothing"`: only when the chosen loss takes `label_smoothing` and
  the loss search does not vary it already (declared under
  `hp.conditional_scope("loss", those losses)`);
* `"regularization/dropout"`: only when the model has `keras.layers.Dropout` layers (the model
  builder exposes dropout by using them); the rate is set on each of them before the model
  is compiled, which is when Keras reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_lossopt.losses.composite import CompositeLoss
from keras_lossopt.losses.weight_penalty import WeightPenalty

__all__ = ["choose_regularization"]

PENALTY_HP = "regularization/l2"
LABEL_SMOOTHING_HP = "regularization/label_smoothing"
DROPOUT_HP = "regularization/dropout"
PENALTY_RANGE = (1e-6, 1e-2)
"""Log-uniform range of the searched L2 strength."""
STARTING_PENALTY = 1e-4
"""The L2 strength of the first trials (a common weight decay)."""


def smoothable_candidates(candidates: Sequence[Any], build) -> list[str]:
    """The candidates whose loss takes `label_smoothing` and whose search does not vary it yet.

    Args:
        candidates: `LossCandidate`s.
        build: `candidate -> loss` (a loss built with the search's task arguments), or None when
            it cannot be built here (a candidate needing class counts).

    Returns:
        Their names.
    """
    names = []
    for candidate in candidates:
        if any(p.argument == "label_smoothing" for p in candidate.params):
            continue
        loss = build(candidate)
        if loss is not None and "label_smoothing" in loss.get_config():
            names.append(candidate.name)
    return names


def _dropout_layers(model: keras.Model) -> list[keras.layers.Dropout]:
    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.Dropout):
            found.append(layer)
        stack.extend(getattr(layer, "layers", None) or [])
    return found


def with_label_smoothing(loss, smoothing: float):
    """The loss rebuilt from its config with `label_smoothing` set (the loss must take it)."""
    return type(loss).from_config({**loss.get_config(), "label_smoothing": float(smoothing)})


def set_dropout_rate(model: keras.Model, rate: float) -> int:
    """Sets `rate` on every `keras.layers.Dropout` of `model` (nested models too); returns how many.

    Keras reads a Dropout layer's rate when the model's step is traced, so it is set before
    the model is compiled.
    """
    dropouts = _dropout_layers(model)
    for layer in dropouts:
        layer.rate = float(rate)
    return len(dropouts)


def penalized_loss(loss, l2: float, model: keras.Model, name: str = ""):
    """`CompositeLoss({name: loss, "weight_penalty": WeightPenalty(l2=l2)})`, the penalty bound to `model`."""
    penalty = WeightPenalty(l2=l2).bind(model)
    return CompositeLoss({name or "loss": loss, "weight_penalty": penalty})


def choose_regularization(hp, model: keras.Model, loss, *, smoothable: Sequence[str] = (), chosen_loss: str = ""):
    """Declares the regularization strengths in `hp`, applies the dropout rate; returns the loss to compile.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        model: the trial's model (its Dropout layers get the searched rate).
        loss: the chosen loss.
        smoothable: the loss candidates that take an extra label smoothing
            (`smoothable_candidates`). Default ().
        chosen_loss: the chosen candidate's name (the value of the `loss` hyperparameter).

    Returns:
        The loss to compile, `CompositeLoss({<chosen_loss>: loss, "weight_penalty": WeightPenalty(l2=...)})`,
        its penalty bound to `model` (`shaping.track_loss_terms(model)` after `compile` adds the
        per-term logs; a search ranks by its metrics and needs none).
    """
    if smoothable:
        with hp.conditional_scope("loss", list(smoothable)):
            smoothing = hp.Float(LABEL_SMOOTHING_HP, 0.0, 0.2, default=0.0)
        if chosen_loss in smoothable:
            loss = with_label_smoothing(loss, smoothing)
    dropouts = _dropout_layers(model)
    if dropouts:
        set_dropout_rate(model, hp.Float(DROPOUT_HP, 0.0, 0.6, default=float(dropouts[0].rate)))
    strength = hp.Float(PENALTY_HP, *PENALTY_RANGE, sampling="log", default=STARTING_PENALTY)
    return penalized_loss(loss, strength, model, chosen_loss)
