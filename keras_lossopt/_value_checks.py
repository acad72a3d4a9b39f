"""Checks of tensor values inside the step: labels, binary targets, probabilities.

A bad value raises a `ValueError` naming it eagerly, fails a `tf.debugging.Assert` with the
same message in a TensorFlow graph, and under XLA or JAX tracing (where nothing can raise)
turns the loss or score NaN: the "poison" each check returns is 0 for good values and NaN
otherwise, added to the result by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["binary_target_poison", "is_concrete", "probability_poison", "sparse_label_poison"]


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
