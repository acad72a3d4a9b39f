"""The eager checks every attack makes before any compiled code runs: arguments, model, batch.

Each check raises at the earliest point it can (construction for arguments, the first call
for what needs the model or the data) with a message that names the argument and the fix.
`Attack.__call__` runs the batch checks on every call; the model checks run once per model.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice, check_class_labels
from keras_lossopt.adversarial.objectives import detect_from_logits

__all__: list[str] = []

_NORMS = {"linf": "linf", "inf": "linf", "l_inf": "linf", "l2": "l2", "2": "l2"}


# --------------------------------------------------------------------- arguments
def check_norm(norm: Any) -> str:
    """`"linf"` or `"l2"` from `"linf"`, `"inf"`, `np.inf`, `"l2"` or `2`; ValueError otherwise."""
    key = norm
    if isinstance(norm, (int, float, np.integer, np.floating)) and not isinstance(norm, bool):
        key = "linf" if math.isinf(norm) else str(int(norm)) if float(norm) == int(norm) else str(norm)
    if isinstance(key, str) and key.strip().lower().replace("-", "_") in _NORMS:
        return _NORMS[key.strip().lower().replace("-", "_")]
    return check_choice("norm", norm, ["linf", "l2"])


def check_clip(clip):
    """`None` or a `(low, high)` pair of floats with `low < high`."""
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"`clip` must be None or a pair (low, high). Received: clip={clip!r}") from None
    if not low < high:
        raise ValueError(f"`clip` must satisfy low < high. Received: clip={clip!r}")
    return (low, high)


def check_from_logits_argument(from_logits):
    if from_logits not in (None, True, False):
        raise ValueError(f"`from_logits` must be None (auto), True or False. Received: from_logits={from_logits!r}")
    return from_logits


# --------------------------------------------------------------------- the model
def check_single_input_output(model, who="Attacks"):
    """Raises unless `model` is a keras.Model with one input tensor and one output (when known)."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    for kind, tensors in (("input", inputs), ("output", outputs)):
        if tensors and len(tensors) != 1:
            names = [getattr(t, "name", "?") for t in tensors]
            raise ValueError(
                f"{who} support models with one input tensor and one output; model {model.name!r} has "
                f"{len(tensors)} {kind}s {names}. Wrap the part to attack in a single-input, single-output "
                "keras.Model (e.g. fix the other inputs inside it)."
            )


def output_classes(model, x=None):
    """The number of classes of `model`'s output (2 for a single sigmoid/logit unit); None if unknown without `x`."""
    outputs = getattr(model, "outputs", None)
    if outputs:
        shape = outputs[0].shape
    elif x is not None:
        shape = model(x[:1], training=False).shape
    else:
        return None
    width = shape[-1] if len(shape) > 1 else 1
    return max(int(width), 2)


def check_from_logits(model, from_logits, who, outputs=None):
    """Raises when `from_logits` contradicts the model: the last layer's activation, or the outputs seen.

    The attacks read outputs as logits or probabilities (`objectives.class_scores`); a wrong
    setting gives a wrong objective and an overstated robust accuracy, silently (measured:
    APGD with `from_logits=False` on a logit model left 0.844 robust against 0.742). The
    same evidence decides `from_logits=None`: the last layer's activation, then the values.

    Args:
        model: the Keras model.
        from_logits: the attack's setting (None: nothing to check).
        who: the attack, named in the message.
        outputs: the model's outputs on a first batch, or None.

    Raises:
        ValueError: for a linear (softmax) last layer with `from_logits=False` (True), or for
            `from_logits=False` with outputs that are not probabilities.
    """
    if from_logits is None:
        return
    detected = detect_from_logits(model)
    if detected is not None and detected != from_logits:
        last = model.layers[-1]
        reads = "logits" if detected else "probabilities"
        raise ValueError(
            f"{who} has from_logits={from_logits}, but the last layer of model {model.name!r} "
            f"({last.name!r}, {type(last).__name__}) outputs {reads}. Set from_logits={detected}, or None to "
            "detect it."
        )
    if outputs is None or from_logits is not False:
        return
    values = np.asarray(ops.convert_to_numpy(ops.cast(outputs, "float32")))
    if values.size == 0:
        return
    low, high = float(values.min()), float(values.max())
    sums = values.sum(axis=-1) if values.ndim > 1 and values.shape[-1] > 1 else None
    if low < 0.0 or high > 1.0 or (sums is not None and np.abs(sums - 1.0).max() > 1e-3):
        spread = "" if sums is None else f", rows summing to {float(sums.min()):.3g}..{float(sums.max()):.3g}"
        raise ValueError(
            f"{who} has from_logits=False, but model {model.name!r} outputs values in [{low:.3g}, {high:.3g}]"
            f"{spread}: not probabilities. Set from_logits=True for a model that outputs logits, or None to "
            "detect it."
        )


# --------------------------------------------------------------------- the batch
def prepare_batch(x, y):
    """`(x_tensor, y_tensor, to_output)`: a float copy of `x` and the labels as tensors.

    `to_output(result)` casts a result back to the dtype of `x`, and to NumPy when `x` was not
    a tensor (the cast in NumPy, so float64 input stays float64 also on JAX without x64);
    `to_output()` returns a copy of `x` itself. `x` is copied so that nothing downstream can
    write into the caller's array.

    Raises:
        TypeError: for inputs that are not numbers.
        ValueError: when `x` and `y` hold different numbers of samples.
    """
    numpy_in = not ops.is_tensor(x)
    x_array = np.asarray(x) if numpy_in else x
    if numpy_in and x_array.dtype.kind not in "biuf":
        raise TypeError(f"`x` must be a numeric array. Received: x of dtype {x_array.dtype}")
    in_dtype = keras.backend.standardize_dtype(x_array.dtype)
    work_dtype = in_dtype if in_dtype.startswith(("float", "bfloat")) else "float32"
    # A copy (`ops.copy`): nothing downstream may write into the caller's array.
    x_tensor = ops.copy(ops.cast(ops.convert_to_tensor(x_array), work_dtype))
    y_array = y if ops.is_tensor(y) else np.asarray(y)
    if len(y_array.shape) == 0 or len(x_tensor.shape) == 0 or y_array.shape[0] != x_tensor.shape[0]:
        raise ValueError(
            "`x` and `y` must hold the same number of samples (one label per input). "
            f"Received: x.shape={tuple(x_tensor.shape)}, y.shape={tuple(y_array.shape)}"
        )
    if not ops.is_tensor(y) and y_array.dtype.kind in "OSU":
        raise TypeError(f"`y` must hold numeric labels. Received: y of dtype {y_array.dtype}")
    y_tensor = ops.convert_to_tensor(y_array)

    def to_output(result=None):
        if result is None:
            return np.array(x_array, copy=True) if numpy_in else ops.copy(x)
        if numpy_in:
            return np.asarray(ops.convert_to_numpy(result)).astype(in_dtype)
        return ops.cast(result, in_dtype)

    return x_tensor, y_tensor, to_output


def check_input_range(x, clip, attack):
    """Raises when `x` holds NaN/inf, or values outside `clip` that the attack would silently move.

    Eager: one min and one max of `x` (on its device), before any compiled code runs.
    """
    if math.prod(x.shape) == 0:
        return
    low, high = float(ops.convert_to_numpy(ops.min(x))), float(ops.convert_to_numpy(ops.max(x)))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"`x` must be finite; it holds NaN or inf values (min={low}, max={high}).")
    if clip is None:
        return
    tolerance = 1e-6 * (clip[1] - clip[0])
    if low < clip[0] - tolerance or high > clip[1] + tolerance:
        name = type(attack).__name__
        raise ValueError(
            f"`x` has values in [{low:g}, {high:g}], outside the valid input range clip={tuple(clip)} of "
            f"{name}, which would clip them into that range (moving them by up to "
            f"{max(clip[0] - low, high - clip[1], 0.0):g}, beyond eps). Set `clip` to the range of your data, "
            f"e.g. {name}(..., clip=({low:g}, {high:g})), or clip=None for unbounded inputs; or scale the "
            f"data into {tuple(clip)}."
        )


def check_labels_for_model(y, model, x, name="y"):
    """Raises unless `y` holds class indices (or one-hot rows) of `model`'s classes (see `check_class_labels`)."""
    check_class_labels(np.asarray(ops.convert_to_numpy(y)), output_classes(model, x), name=name, allow_empty=True)
