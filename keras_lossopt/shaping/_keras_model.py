"""Adapter: the Keras model internals that loss shaping relies on.

Four behaviours of Keras' trainers, checked against Keras 3.15.1 with TensorFlow 2.21, JAX
0.10.2 and PyTorch 2.13 (tests/test_private_adapters.py and tests/shaping/test_model_kinds.py
fail when one changes):

* `fit` builds its compiled step from `model.train_step` when it makes the train function
  (`make_train_function(force=True)` rebuilds it), so an instance attribute `train_step`
  wraps the class' method: GradNorm takes the per-term gradients this way, inside the step.
  The step is `train_step(data)` on TensorFlow and PyTorch and `train_step(state, data)` on
  JAX, whose state is `(trainable, non_trainable, optimizer, metrics)` variable values in
  the order of the model's lists (Keras' guide to a custom JAX `train_step`);
* `fit` and `evaluate` reuse `model.train_function` / `model.test_function` until they are
  None: a loss whose formula changed (uncertainty weighting adds log-variances) resets them;
* a `keras.Sequential` model keeps its layer stack in the private `_layers`, which its
  `__init__` rebinds after the tracker exists (`sequential_state_holder`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def wrap_train_step(model: Any, wrapper: Callable[..., Any]) -> None:
    """Makes `fit` run `wrapper(original_train_step, *arguments)` as the model's train step.

    The arguments are the trainer's: `(data,)`, or `(state, data)` on JAX.
    """
    original = model.train_step
    model.train_step = lambda *arguments: wrapper(original, *arguments)
    model.make_train_function(force=True)


def step_data_and_variables(model: Any, arguments: tuple) -> tuple[Any, list[tuple[Any, Any]]]:
    """The batch of a wrapped train step's arguments and the variable values the step runs with.

    On JAX the step is a pure function of its state (the model's variables hold no values
    during `fit`), so every variable is paired with its value in the state; on TensorFlow
    and PyTorch the variables hold their values and the list is empty.

    Returns:
        `(data, state_mapping)` for `keras.StatelessScope(state_mapping)`.
    """
    if len(arguments) == 1:
        return arguments[0], []
    state, data = arguments
    trainable, non_trainable, _, metrics = state
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    mapping += list(zip(model.metrics_variables, metrics))
    return data, mapping


def unwrap_train_step(model: Any) -> None:
    """Restores the class' `train_step` after `wrap_train_step`."""
    if "train_step" in vars(model):
        del model.train_step
        model.make_train_function(force=True)


def retrace_steps(model: Any) -> None:
    """Makes the next `fit` / `evaluate` trace new train and test functions."""
    model.train_function = None
    model.test_function = None


def sequential_state_holder(model: keras.Model) -> keras.layers.Layer | None:
    """For a `keras.Sequential` model: the layer of its stack that must also hold the loss-term states.

    Private attribute `_layers` (behaviour checked with Keras 3.15): a layer set
    as a model attribute is tracked through the model's tracker, whose layer list is the
    model's `_layers` for functional and subclassed models. `keras.Sequential.__init__` rebinds
    `_layers` to its own layer stack after the tracker exists, so on a Sequential model the
    attached layer lands in a list nothing reads: its variables are neither trained nor part
    of the model's state and its metrics never reach the logs. A layer of the stack is walked
    like any sublayer, so the states are attached to one as well: the `InputLayer` (not in
    `model.layers`, so not in the summary or the config), or, for a model not built yet (no
    `keras.Input`; `fit` builds it only when it traces its first step), the first layer.
    `TermWeightCallback.on_train_begin` checks that the states are reachable (a frozen first
    layer would hide them). `tests/shaping/test_model_kinds.py` has a test that fails when
    Keras stops dropping attribute layers on Sequential models.

    Returns:
        The holding layer, or None for a model that is not Sequential (or has no layer).
    """
    if not isinstance(model, keras.Sequential):
        return None
    stack = list(getattr(model, "_layers", None) or [])
    return stack[0] if stack else None
