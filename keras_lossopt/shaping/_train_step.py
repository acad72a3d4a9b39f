"""Adapter: the Keras trainer internals that adaptive weighting relies on (TensorFlow backend).

Two private behaviours of Keras' TensorFlow trainer, checked against Keras 3.15.1 with
TensorFlow 2.21 (tests/test_private_adapters.py fails when either changes):

* `fit` builds its compiled step from `model.train_step` when it makes the train function
  (`make_train_function(force=True)` rebuilds it), so an instance attribute `train_step`
  wraps the class' method: GradNorm takes the per-term gradients this way, inside the step;
* `fit` and `evaluate` reuse `model.train_function` / `model.test_function` until they are
  None: a loss whose formula changed (uncertainty weighting adds log-variances) resets them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def wrap_train_step(model: Any, wrapper: Callable[[Callable[[Any], Any], Any], Any]) -> None:
    """Makes `fit` run `wrapper(original_train_step, data)` as the model's train step."""
    original = model.train_step
    model.train_step = lambda data: wrapper(original, data)
    model.make_train_function(force=True)


def unwrap_train_step(model: Any) -> None:
    """Restores the class' `train_step` after `wrap_train_step`."""
    if "train_step" in vars(model):
        del model.train_step
        model.make_train_function(force=True)


def retrace_steps(model: Any) -> None:
    """Makes the next `fit` / `evaluate` trace new train and test functions."""
    model.train_function = None
    model.test_function = None
