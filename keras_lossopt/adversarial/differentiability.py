"""Whether an attack can use the model's input gradient, and which layer blocks it when not.

Gradient attacks need a differentiable path from the input to the output. `argmax`, rounding,
integer casts and `stop_gradient` cut it; the attack would then return its input unchanged and
report a robust accuracy that only measures the cut. `check_differentiable` runs once per
model on (a slice of) the first batch, eagerly, and raises `NotDifferentiableError` naming the
first layer that blocks the gradient (found by probing the sub-models of a functional or
Sequential model).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from keras_lossopt.adversarial._backend import is_traced, value_and_input_gradient

__all__ = ["NotDifferentiableError"]


class NotDifferentiableError(ValueError):
    """The model's output has no usable gradient with respect to its input."""


def check_output_dtype(model, y_pred, x=None):
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise NotDifferentiableError(
            f"Cannot attack model {model.name!r}: its output has dtype {dtype}, and an integer output "
            f"carries no gradient with respect to the input.{_blocking_hint(model, x)}"
        )


def not_differentiable_message(model, x, reason):
    return (
        f"Cannot attack model {model.name!r}: its output has no gradient with respect to its input "
        f"({reason}). Attacks need a differentiable path from input to output; argmax, rounding, "
        f"integer casts and stop_gradient cut it.{_blocking_hint(model, x)}"
    )


def _blocking_hint(model, x):
    found = _first_blocking_layer(model, x)
    if found is None:
        return ""
    layer, why = found
    return f" First layer that blocks it: {layer.name!r} ({type(layer).__name__}: {why})."


def _first_blocking_layer(model, x):
    """The first layer of a functional/Sequential model whose output has no input gradient."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or x is None:
        return None
    eager = not is_traced(x)
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            probe = keras.Model(inputs, layer.output)
        except Exception:  # layers used twice, nested inputs: we cannot probe them
            continue
        dtype = keras.backend.standardize_dtype(layer.output.dtype)
        if not dtype.startswith(("float", "bfloat")):
            return layer, f"outputs {dtype}"
        _, gradient = value_and_input_gradient(lambda x, probe=probe: _probe_total(probe, x), x)
        if gradient is None:
            return layer, "passes no gradient"
        if eager and not np.any(ops.convert_to_numpy(gradient)):
            return layer, "passes an all-zero gradient"
    return None


def _probe_total(model, x):
    out = ops.cast(model(x, training=False), "float32")
    return ops.sum(out * _probe_weights(out)), ()


def _probe_weights(out):
    # Fixed pseudo-random weights: a plain sum of softmax outputs has zero gradient.
    size = int(np.prod(out.shape[1:])) if all(d is not None for d in out.shape[1:]) else 1
    weights = np.random.default_rng(0).normal(size=max(size, 1)).astype("float32")
    return ops.reshape(ops.convert_to_tensor(weights), (1, *out.shape[1:])) if size > 1 else weights[0]


def check_differentiable(model, x, y, objective):
    """Raises `NotDifferentiableError` when the input gradient of the objective is structurally absent.

    Runs eagerly on (a slice of) the first batch. A `None` gradient (argmax, rounding,
    integer casts, stop_gradient) is an error. A gradient that is zero everywhere is an
    error only when a weightless layer (a `Lambda` computing `sign`, say) is the first to
    pass zeros; a layer with weights can be zero numerically (dead ReLUs, a saturated
    softmax), which only warns: the attack then cannot move those samples.
    """
    x = x[:16]
    y = y[:16]
    # An integer output first, on concrete values: inside a JAX gradient the input is a tracer, and the
    # search for the blocking layer needs concrete values to name it.
    check_output_dtype(model, model(x, training=False), x)

    def total(x):
        y_pred = model(x, training=False)
        check_output_dtype(model, y_pred, x)
        return ops.sum(objective(y, y_pred)), ()

    _, gradient = value_and_input_gradient(total, x)
    if gradient is None:
        raise NotDifferentiableError(not_differentiable_message(model, x, "the gradient is None"))
    if np.any(ops.convert_to_numpy(gradient)):
        return
    _, probe_gradient = value_and_input_gradient(lambda x: _probe_total(model, x), x)
    if probe_gradient is not None and np.any(ops.convert_to_numpy(probe_gradient)):
        return  # only the loss is flat here (e.g. a saturated softmax)
    found = _first_blocking_layer(model, x)
    if found is not None and not found[0].weights:
        raise NotDifferentiableError(not_differentiable_message(model, x, "the gradient is zero everywhere"))
    warnings.warn(
        f"The output of model {model.name!r} has an all-zero gradient with respect to its input on the first "
        f"batch (dead or saturated units?{_blocking_hint(model, x)}); the attack cannot move these samples.",
        stacklevel=3,
    )
