"""Shared argument and shape checks.

Every public constructor validates its arguments here so that a bad value fails at
construction with a message that names the argument, says what is allowed and echoes
what was given, e.g. ``ValueError: `gamma` must be >= 0. Received: gamma=-1``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_choice",
    "check_class_labels",
    "check_function",
    "check_ignore_index",
    "check_in_range",
    "check_int",
    "check_non_negative",
    "check_numeric_tensor",
    "check_per_class",
    "check_per_sample",
    "check_positive",
    "check_probability",
    "check_shapes_match",
    "check_spacing",
]


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=10)
    return repr(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number. Received: {name}={_fmt(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value}")
    return value


def check_non_negative(name: str, value: Any) -> float:
    """Returns `value` as a float, raising if it is negative or not finite."""
    value = _as_float(name, value)
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value:g}")
    return value


def check_positive(name: str, value: Any) -> float:
    """Returns `value` as a float, raising unless it is > 0 and finite."""
    value = _as_float(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value:g}")
    return value


def check_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Returns `value` as a float, raising unless it lies in the given interval."""
    value = _as_float(name, value)
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ValueError(f"`{name}` must be in {left}{low:g}, {high:g}{right}. Received: {name}={value:g}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Returns `value` as a float in [0, 1]."""
    return check_in_range(name, value, 0.0, 1.0)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Returns `value` as an int, raising for non-integers and values below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={_fmt(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Returns `value` if it is one of `choices`; otherwise lists them and suggests the closest."""
    choices = list(choices)
    if value in choices:
        return value
    message = f"`{name}` must be one of {choices}. Received: {name}={value!r}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1)
        if close:
            message += f". Did you mean {close[0]!r}?"
    raise ValueError(message)


def check_per_class(
    name: str,
    value: Any,
    *,
    allow_scalar: bool = True,
    minimum: float | None = None,
    maximum: float | None = None,
    num_classes: int | None = None,
) -> float | tuple[float, ...] | None:
    """Validates a scalar-or-per-class hyperparameter such as `alpha` or `gamma`.

    Returns `None`, a float, or a tuple of floats (a tuple, not a list, so that configs
    compare equal after a JSON round trip turns them back into lists and we re-tuple).
    """
    if value is None:
        return None
    bounds = ""
    if minimum is not None and maximum is not None:
        bounds = f"in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        bounds = f">= {minimum:g}"
    elif maximum is not None:
        bounds = f"<= {maximum:g}"

    def _check_one(v: Any, label: str) -> float:
        v = _as_float(label, v)
        if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            raise ValueError(f"`{name}` must be {bounds}. Received: {label}={v:g}")
        return v

    if np.ndim(value) == 0:
        if not allow_scalar:
            raise ValueError(f"`{name}` must be a list with one value per class. Received: {name}={_fmt(value)}")
        return _check_one(value.item() if isinstance(value, np.ndarray) else value, name)
    array = np.asarray(value)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a scalar or a 1-D list with one value per class. "
            f"Received: {name} with shape {array.shape}"
        )
    if num_classes is not None and array.size != num_classes:
        raise ValueError(
            f"`{name}` must have one value per class ({num_classes} values). "
            f"Received {array.size} values: {name}={_fmt(array)}"
        )
    return tuple(_check_one(v, f"{name}[{i}]") for i, v in enumerate(array.tolist()))


def check_spacing(spacing: Any) -> float | tuple[float, ...] | None:
    """`spacing` checked at construction: None, one size > 0 for every axis, or one per spatial axis.

    Returns None, a float or a tuple of floats (a tuple, so that a configuration compares equal
    after a JSON round trip).
    """
    if spacing is None:
        return None
    checked = check_per_class("spacing", spacing)
    values = checked if isinstance(checked, tuple) else (checked,)
    if any(value <= 0 for value in values):
        raise ValueError(
            "`spacing` must be the size (> 0) of a pixel or voxel, one value or one per spatial axis. "
            f"Received: spacing={spacing!r}"
        )
    return checked


def check_class_labels(y: Any, num_classes: int | None = None, *, name: str | None = None,
                       allow_empty: bool = False) -> np.ndarray:  # fmt: skip
    """Checks that `y` holds class indices (the one rule for class labels); returns them as int64.

    Labels are numbers, finite, integer-valued and `>= 0`; with `num_classes`, also below it,
    and laid out as `(N,)` or `(N, 1)` indices or `(N, num_classes)` one-hot / probability rows
    (returned as given, unchecked). Without `num_classes` any shape is accepted (multi-label
    targets, per-pixel masks).

    Args:
        y: the labels.
        num_classes: the number of classes of the model, or None when not known.
        name: the argument the labels came in, named in the message (`"the labels in `y`"`);
            None says "the labels".
        allow_empty: accept an empty array. Default False.

    Returns:
        The labels as an int64 array (one-hot rows: as given).

    Raises:
        ValueError: one line naming the problem and the fix: empty, not numbers, NaN or
            infinity, fractional values, negative values, values `>= num_classes`, or a
            layout that is neither indices nor `num_classes`-wide rows.

    Examples:
        >>> check_class_labels([0.0, 1.0, 2.0]).tolist()
        [0, 1, 2]
    """
    what = "the labels" if name is None else f"the labels in `{name}`"
    labels = np.asarray(y)
    if labels.size == 0 and not allow_empty:
        raise ValueError(f"{what} are empty: pass at least two samples of each class.")
    if labels.dtype.kind not in "biuf":
        raise ValueError(
            f"{what} have dtype {labels.dtype}, not numbers: encode the classes as integers 0..C-1 "
            "(e.g. with numpy.unique(y, return_inverse=True))."
        )
    if num_classes is not None:
        if labels.ndim == 2 and labels.shape[-1] == num_classes and num_classes > 1:
            return labels  # one-hot or probability rows
        if labels.ndim == 2 and labels.shape[-1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(
                f"{what} must be class indices of shape (N,) or (N, 1), or one-hot rows of shape "
                f"(N, {num_classes}) for a model with {num_classes} classes. Received: shape {labels.shape}"
            )
    if labels.size == 0:
        return labels.astype("int64")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what} hold {int(bad.sum())} NaN or infinite value(s) (first at index {first}): "
                "drop those samples or fill in their class."
            )
        fractional = labels != np.round(labels)
        if fractional.any():
            example = float(labels[fractional].ravel()[0])
            raise ValueError(
                f"{what} look continuous (e.g. {example:g}): class labels are integer indices 0..C-1; bin the "
                "target into classes (e.g. numpy.digitize) or use a regression loss instead."
            )
    labels = labels.astype("int64")
    low, high = int(labels.min()), int(labels.max())
    if num_classes is not None and (low < 0 or high >= num_classes):
        raise ValueError(
            f"{what} range from {low} to {high}, outside the {num_classes} classes of the model (indices 0 to "
            f"{num_classes - 1}): pass class indices of the model's outputs."
        )
    if low < 0:
        raise ValueError(f"{what} hold negative values (e.g. {low}): encode the classes as 0..C-1.")
    return labels


def _known(shape: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def check_shapes_match(
    y_true_shape: Sequence[Any],
    y_pred_shape: Sequence[Any],
    expected: Sequence[Any],
    *,
    what: str,
) -> None:
    """Raises a ValueError naming both shapes when `y_true_shape` does not fit `expected`.

    Unknown (None) dimensions on either side are accepted.
    """
    got, want = _known(y_true_shape), _known(expected)
    ok = len(got) == len(want) and all(g is None or w is None or g == w for g, w in zip(got, want))
    if not ok:
        raise ValueError(
            f"Shapes of `y_true` and `y_pred` do not match ({what}): "
            f"y_true.shape={got}, y_pred.shape={_known(y_pred_shape)}; "
            f"expected y_true.shape={want}."
        )


def check_numeric_tensor(name: str, value: Any) -> None:
    """Raises a TypeError naming `name` when `value` holds strings (or other non-numbers).

    Keras would fail later with a raw backend error (`Cast string to float is not supported`).
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):
            return
    kind = getattr(dtype, "kind", None)
    text = str(getattr(dtype, "name", dtype))
    if kind in ("U", "S", "O") or text in ("string", "object"):
        raise TypeError(
            f"`{name}` must hold numbers (class indices or 0/1 / one-hot targets). Received dtype {text}. "
            "Encode string labels as integers first, e.g. with sklearn.preprocessing.LabelEncoder."
        )


def check_ignore_index(ignore_index: Any, mode: str | None = None) -> int | None:
    """`ignore_index` as an int (or None), checked once for every loss and metric that takes it.

    Args:
        ignore_index: the label whose positions count nowhere, or None.
        mode: the loss' mode when it has one; a label to ignore exists only for sparse
            multiclass targets.

    Raises:
        ValueError: for a non-integer, or an `ignore_index` with a mode other than `"multiclass"`.
    """
    if ignore_index is None:
        return None
    ignore_index = check_int("ignore_index", ignore_index)
    if mode is not None and mode != "multiclass":
        raise ValueError(
            f"`ignore_index` applies to sparse multiclass targets only. Received: "
            f"ignore_index={ignore_index} with mode={mode!r}"
        )
    return ignore_index


def check_function(name: str, fn: Any) -> Any:
    """`fn` (deserialized from its Keras config when given as one), after checking that it is a function.

    Raises:
        ValueError: naming `name` when `fn` is not callable or is a class.
    """
    if isinstance(fn, dict):
        import keras  # here, not at the top: the command checks its arguments before Keras starts

        fn = keras.saving.deserialize_keras_object(fn)
    if not callable(fn) or isinstance(fn, type):
        raise ValueError(f"`{name}` must be a function. Received: {name}={fn!r}")
    return fn


def check_per_sample(term: str, values: Any, y_pred: Any):
    """`values` as a tensor, after checking that it keeps the batch axis of `y_pred`.

    A loss term computed by a user's function must return one value per sample: a value
    already reduced over the batch cannot be weighted per sample, masked or averaged correctly.

    Args:
        term: the term's name, for the error message.
        values: what the term's function returned.
        y_pred: the predictions it was computed from.

    Returns:
        `values` as a tensor of shape `(N, ...)`.

    Raises:
        ValueError: when `values` is a scalar or its first axis is not the batch axis.
    """
    from keras import ops  # here, not at the top: the command checks its arguments before Keras starts

    values = ops.convert_to_tensor(values)
    if len(values.shape) == 0:
        raise ValueError(
            f"Term {term!r} returned a single value for the batch; a term must return one value per sample, "
            f"shape (N, ...), so that it can be weighted, masked and reduced. Received: a scalar for "
            f"y_pred of shape {tuple(y_pred.shape)}"
        )
    leading, batch = values.shape[0], y_pred.shape[0]
    # A per-sample value computed from a batch of unknown size has an unknown first axis too.
    if (batch is not None and leading is not None and leading != batch) or (batch is None and leading is not None):
        raise ValueError(
            f"Term {term!r} returned values of shape {tuple(values.shape)}, which cannot be reduced to one value "
            f"per sample of y_pred with shape {tuple(y_pred.shape)}; return one value per sample, shape (N, ...)."
        )
    return values


def check_arguments_accepted(name: str, fn: Any, arguments: Sequence[str], hint: str = "") -> None:
    """Raises a TypeError naming `name` when `fn` cannot be called with these positional arguments.

    Checked when the object holding `fn` is built, so that a function of the wrong form fails
    there and not inside a compiled training step. Callables whose signature Python cannot
    read (some builtins and C extensions) are accepted as they are.

    Args:
        name: the argument that holds `fn`, for the message.
        fn: the callable.
        arguments: the names of the positional arguments it will receive, in order.
        hint: a sentence added to the message (what to use instead). Default "".
    """
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*arguments)
    except TypeError:
        wanted = f"{len(arguments)} positional argument{'s' if len(arguments) != 1 else ''} ({', '.join(arguments)})"
        label = getattr(fn, "__name__", type(fn).__name__)
        raise TypeError(f"`{name}` must be a function of {wanted}. Received: {label}{signature}{hint}") from None
