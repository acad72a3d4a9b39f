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
    "is_concrete",
    "sparse_label_poison",
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


def is_concrete(x: Any) -> bool:
    """True when `x` holds real values we may inspect in Python (eager execution).

    Used to run data checks (e.g. sparse labels in range) in eager mode only; inside a
    compiled graph the values are unknown and the check is skipped.
    """
    if isinstance(x, np.ndarray):
        return True
    import keras  # here, not at the top: the command checks its arguments with this module before Keras starts

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    return True


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


def _bad_label_message(num_classes: int, ignore_index: int | None, what: str) -> str:
    hint = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
    return f"Sparse labels in `{what}` must be integers in [0, {num_classes}){hint} for {num_classes} classes."


def _raise_for_bad_labels(values: np.ndarray, num_classes: int, ignore_index: int | None, what: str) -> None:
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer) and not np.issubdtype(values.dtype, np.bool_):
        fractional = ~np.isfinite(values) | (values != np.round(values))
        if np.any(fractional):
            bad = values[fractional].ravel()[0]
            raise ValueError(f"{_bad_label_message(num_classes, ignore_index, what)} Received a label {bad}.")
    if ignore_index is not None:
        values = values[values != ignore_index]
    out_of_range = (values < 0) | (values >= num_classes)
    if np.any(out_of_range):
        bad = sorted(set(values[out_of_range].astype(np.int64).tolist()))[:5]
        raise ValueError(f"{_bad_label_message(num_classes, ignore_index, what)} Received labels {bad}.")


def sparse_label_poison(labels: Any, num_classes: int, *, ignore_index: int | None = None, what: str = "y_true"):
    """Checks class indices everywhere a loss or metric can run; returns what to add to its values.

    * Eagerly (concrete values): raises a ValueError naming the bad labels; returns None.
    * In a TensorFlow graph (`fit` without XLA): a `tf.debugging.Assert` raises
      `InvalidArgumentError` with the same message at run time.
    * Under XLA (`jit_compile=True`) and JAX tracing there is no run-time error: XLA compiles
      assertions away (measured: `tf.debugging.Assert` and `check_numerics` pass silently).
      The returned 0-d value is NaN when a label is bad (else 0), so the caller adds it to its
      targets and the loss of that batch is NaN - exactly what Keras'
      `SparseCategoricalCrossentropy` gives under XLA - instead of a finite, wrong value.

    Args:
        labels: sparse class indices (integer or float dtype).
        num_classes: the number of classes; valid labels are `0 .. num_classes - 1`.
        ignore_index: a label that is also allowed (masked by the caller), or None.
        what: the argument named in the message.

    Returns:
        None (checked eagerly), or a float32 0-d tensor: 0.0 or NaN.

    Raises:
        ValueError: eagerly, for a fractional, negative or too large label.
    """
    import keras  # here, not at the top: see is_concrete
    from keras import ops

    if is_concrete(labels):
        _raise_for_bad_labels(np.asarray(ops.convert_to_numpy(labels)), num_classes, ignore_index, what)
        return None
    dtype = keras.backend.standardize_dtype(labels.dtype)
    values = ops.cast(labels, "float32")
    ok = ops.logical_and(values >= 0.0, values < float(num_classes))
    if not (dtype.startswith("int") or dtype.startswith("uint") or dtype == "bool"):
        ok = ops.logical_and(ok, ops.equal(ops.floor(values), values))
    if ignore_index is not None:
        ok = ops.logical_or(ok, ops.equal(values, float(ignore_index)))
    return _assert_or_poison(
        ops.all(ok), values, ok, _bad_label_message(num_classes, ignore_index, what), "Received a label"
    )


def _assert_or_poison(all_ok: Any, values: Any, ok: Any, message: str, received: str):
    """The graph half of the value checks: an assertion (graph) and a 0-d NaN-or-0 (XLA)."""
    import keras
    from keras import ops

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        first_bad = ops.take(ops.reshape(values, (-1,)), ops.argmin(ops.cast(ops.reshape(ok, (-1,)), "int32")))
        tf.debugging.Assert(all_ok, [message, received, first_bad])
    return ops.where(all_ok, 0.0, float("nan"))


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
        import keras  # here, not at the top: see `is_concrete`

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
    from keras import ops  # here, not at the top: see `is_concrete`

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


def _bad_target_message(what: str) -> str:
    return (
        f"Binary and multi-label targets in `{what}` must lie in [0, 1] (0/1 labels or soft targets) for a "
        "sigmoid loss; class indices need mode='multiclass'."
    )


def binary_target_poison(targets: Any, *, what: str = "y_true"):
    """Checks sigmoid-loss targets lie in [0, 1] everywhere a loss can run; returns what to add to them.

    Same policy as `sparse_label_poison` (one rule for every run mode): eagerly a ValueError;
    in a TensorFlow graph a `tf.debugging.Assert` with the same message; under XLA (which
    compiles assertions away) a 0-d NaN the caller adds to its targets, so the batch's loss
    is NaN instead of a finite value computed from a label such as 2.

    Args:
        targets: binary or multi-label targets (any numeric dtype).
        what: the argument named in the message.

    Returns:
        None (checked eagerly), or a float32 0-d tensor: 0.0 or NaN.

    Raises:
        ValueError: eagerly, for a target below 0, above 1 or NaN.
    """
    from keras import ops

    if is_concrete(targets):
        values = np.asarray(ops.convert_to_numpy(targets), dtype="float64")
        bad = ~((values >= 0.0) & (values <= 1.0))
        if np.any(bad):
            raise ValueError(f"{_bad_target_message(what)} Received values {_examples(values[bad])}.")
        return None
    values = ops.cast(targets, "float32")
    ok = ops.logical_and(values >= 0.0, values <= 1.0)
    return _assert_or_poison(ops.all(ok), values, ok, _bad_target_message(what), "Received a value")


#: How far the rows of a softmax output may sum from 1 and still be probabilities: float16
#: outputs carry a relative error of about 5e-4 per value, so their sums stay within 1e-3.
PROBABILITY_SUM_TOLERANCE = 1e-2


def _bad_probability_message(what: str, rows_sum_to_one: bool) -> str:
    rows = " with rows summing to 1" if rows_sum_to_one else ""
    return (
        f"`{what}` must hold probabilities in [0, 1]{rows} because from_logits=False; "
        "for a model that outputs logits (no softmax/sigmoid on the last layer) pass from_logits=True."
    )


def probability_poison(y_pred: Any, *, rows_sum_to_one: bool, what: str = "y_pred"):
    """Checks that outputs read as probabilities are probabilities; returns what to add to the loss.

    Logits read as probabilities give a finite, wrong value (a confidence penalty of -0.17
    on logits where the softmax gives -0.007). Same policy as `binary_target_poison`:
    eagerly a ValueError, in a TensorFlow graph an assertion, under XLA a 0-d NaN.

    Args:
        y_pred: the outputs, class axis last.
        rows_sum_to_one: also check that rows sum to 1 (softmax outputs), within
            `PROBABILITY_SUM_TOLERANCE`.
        what: the argument named in the message.

    Returns:
        None (checked eagerly), or a float32 0-d tensor: 0.0 or NaN.

    Raises:
        ValueError: eagerly, for a value outside [0, 1] or a row whose sum is not 1.
    """
    from keras import ops

    message = _bad_probability_message(what, rows_sum_to_one)
    if is_concrete(y_pred):
        values = np.asarray(ops.convert_to_numpy(y_pred), dtype="float64")
        bad = ~((values >= 0.0) & (values <= 1.0))
        if np.any(bad):
            raise ValueError(f"{message} Received values {_examples(values[bad])}.")
        if rows_sum_to_one and values.size:
            sums = values.sum(axis=-1)
            off = np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE
            if np.any(off):
                raise ValueError(f"{message} Received rows summing to {_examples(sums[off])}.")
        return None
    values = ops.cast(y_pred, "float32")
    ok = ops.logical_and(values >= 0.0, values <= 1.0)
    all_ok = ops.all(ok)
    poison = _assert_or_poison(all_ok, values, ok, message, "Received a value")
    if rows_sum_to_one:
        sums = ops.sum(values, axis=-1)
        sums_ok = ops.abs(sums - 1.0) <= PROBABILITY_SUM_TOLERANCE
        poison = poison + _assert_or_poison(ops.all(sums_ok), sums, sums_ok, message, "Received a row summing to")
    return poison


def _examples(values: np.ndarray, limit: int = 5) -> list[float]:
    """Up to `limit` distinct values, for a message."""
    seen: list[float] = []
    for value in values.ravel().tolist():
        if len(seen) == limit:
            break
        if not any(value == v or (value != value and v != v) for v in seen):
            seen.append(round(value, 6))
    return seen
