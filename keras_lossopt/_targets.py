"""Target and prediction conventions shared by the losses and the metrics.

* Multiclass (softmax) losses accept sparse integer targets of shape `y_pred.shape[:-1]`
  (or with a trailing 1) and dense one-hot/soft targets of shape `y_pred.shape`.
* Binary and multilabel (sigmoid) losses take targets of shape `y_pred.shape`; 1-D inputs
  are treated as `(N, 1)` so that each sample gets its own loss value.
* Log-probabilities come from logits through `log_softmax` / `log_sigmoid`, never by
  clipping probabilities; probability inputs are clipped to `[eps, 1 - eps]` exactly like
  Keras' own cross-entropies, so our values agree with Keras' where the formulas meet.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._validation import check_shapes_match
from keras_lossopt._value_checks import binary_target_poison, sparse_label_poison


def _epsilon(dtype):
    return ops.cast(keras.config.epsilon(), dtype)


def is_sparse_target(y_true, y_pred) -> bool:
    """Whether `y_true` holds class indices for the class axis of `y_pred`."""
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank - 1:
        return True
    return true_rank == pred_rank and y_true.shape[-1] == 1 and y_pred.shape[-1] is not None and y_pred.shape[-1] != 1


def classes_first(x):
    """`x` with its last (class) axis moved to the front: `(N, ..., C)` -> `(C, N, ...)`."""
    rank = len(x.shape)
    return ops.transpose(x, (rank - 1, *range(rank - 1)))


def multiclass_targets(y_true, y_pred, *, label_smoothing=0.0, ignore_index=None, class_axis=-1):
    """Dense float targets for a softmax loss, and the validity mask for `ignore_index`.

    `class_axis=0` gives the targets with the class axis first, `(C, N, ...)`, for a loss
    that works class by class (Lovasz): sparse labels are one-hot encoded straight into that
    layout, dense targets are transposed.

    Returns:
        `(targets, valid)`: `targets` has the dtype of `y_pred` and its shape (class axis
        last) or `(C, N, ...)` (`class_axis=0`); `valid` is a float mask of shape
        `y_pred.shape[:-1]` (None when nothing is ignored).
    """
    y_true, poison = checked_multiclass_targets(y_true, y_pred, ignore_index=ignore_index)
    return encoded_multiclass_targets(
        y_true, y_pred, poison, label_smoothing=label_smoothing, ignore_index=ignore_index, class_axis=class_axis
    )


def checked_multiclass_targets(y_true, y_pred, *, ignore_index=None):
    """The checking half of `multiclass_targets`: shapes, and sparse labels' values.

    Returns:
        `(y_true, poison)`: sparse labels without a trailing 1 (dense targets unchanged), and
        what `sparse_label_poison` returns for them (None for dense targets).

    Raises:
        ValueError: for mismatched shapes, an unknown class axis, `ignore_index` with dense
            targets, or (eagerly) a label out of range.
    """
    if not is_sparse_target(y_true, y_pred):
        check_shapes_match(y_true.shape, y_pred.shape, tuple(y_pred.shape), what="one-hot or soft targets")
        if ignore_index is not None:
            raise ValueError(
                f"`ignore_index={ignore_index}` needs sparse integer targets of shape y_pred.shape[:-1]; "
                f"received dense targets: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}."
            )
        return y_true, None
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    check_shapes_match(y_true.shape, y_pred.shape, tuple(y_pred.shape[:-1]), what="sparse class indices")
    if y_pred.shape[-1] is None:
        raise ValueError(f"The class axis of `y_pred` must be known. Received: y_pred.shape={tuple(y_pred.shape)}")
    return y_true, sparse_label_poison(y_true, y_pred.shape[-1], ignore_index=ignore_index)


def encoded_multiclass_targets(y_true, y_pred, poison, *, label_smoothing=0.0, ignore_index=None, class_axis=-1):
    """The encoding half of `multiclass_targets`, for what `checked_multiclass_targets` returned.

    Returns:
        `(targets, valid)` as `multiclass_targets`.
    """
    num_classes = y_pred.shape[-1]
    valid = None
    if len(y_true.shape) == len(y_pred.shape) - 1:
        labels = ops.cast(y_true, "int32")
        if ignore_index is not None:
            keep = ops.not_equal(labels, ignore_index)
            valid = ops.cast(keep, y_pred.dtype)
            labels = ops.where(keep, labels, 0)
        targets = ops.one_hot(labels, num_classes, axis=class_axis, dtype=y_pred.dtype)
        if valid is not None:
            targets = targets * (valid if class_axis == 0 else ops.expand_dims(valid, -1))
        if poison is not None:
            # NaN for the whole batch when a label is out of range and no error can be raised (XLA).
            targets = targets + ops.cast(poison, targets.dtype)
    else:
        targets = ops.cast(y_true, y_pred.dtype)
        if class_axis == 0:
            targets = classes_first(targets)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
        if valid is not None:
            targets = targets * (valid if class_axis == 0 else ops.expand_dims(valid, -1))
    return targets, valid


def binary_targets(y_true, y_pred, *, label_smoothing=0.0):
    """Float targets for a sigmoid loss, with rank-1 inputs lifted to `(N, 1)`.

    Targets must lie in [0, 1]; others raise (eagerly), fail an assertion (graph) or make
    the loss NaN (XLA): see `binary_target_poison`.

    Returns:
        `(targets, y_pred)` of equal shape.
    """
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    check_shapes_match(y_true.shape, y_pred.shape, tuple(y_pred.shape), what="binary/multilabel targets")
    poison = binary_target_poison(y_true)
    targets = ops.cast(y_true, y_pred.dtype)
    if poison is not None:
        # NaN for the whole batch when a target is outside [0, 1] and no error can be raised (XLA).
        targets = targets + ops.cast(poison, targets.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return targets, y_pred


def softmax_log_probs(y_pred, from_logits):
    """Log-probabilities over the last axis: log-softmax of logits, or log of clipped probabilities."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    eps = _epsilon(y_pred.dtype)
    return ops.log(ops.clip(probs, eps, 1.0 - eps))


def sigmoid_log_probs(y_pred, from_logits):
    """`(log p, log(1 - p))` for a sigmoid output, from logits or clipped probabilities."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    eps = _epsilon(y_pred.dtype)
    probs = ops.clip(y_pred, eps, 1.0 - eps)
    return ops.log(probs), ops.log(1.0 - probs)


def sparse_valid_mask(y_true, y_pred, ignore_index):
    """Float mask of the positions whose sparse label is not `ignore_index` (None if not applicable)."""
    if ignore_index is None or not is_sparse_target(y_true, y_pred):
        return None
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.cast(ops.not_equal(ops.cast(y_true, "int32"), ignore_index), y_pred.dtype)


OVERLAP_MODES = ("multiclass", "binary", "multilabel")


def overlap_inputs(y_true, y_pred, *, mode="multiclass", from_logits=False, ignore_index=None):
    """Dense targets, probabilities and a validity weight for an overlap loss or metric.

    Args:
        y_true: multiclass: class indices of shape `y_pred.shape[:-1]` (or with a trailing
            1) or one-hot/soft targets of shape `y_pred.shape`; binary/multilabel: 0/1 (or
            soft) targets of shape `y_pred.shape`, where `ignore_index` may mark void pixels.
        y_pred: probabilities, or logits with `from_logits=True`; class axis last.
        mode: `"multiclass"` (softmax), `"binary"` or `"multilabel"` (sigmoid).
        from_logits: whether `y_pred` holds logits.
        ignore_index: label of positions that count nowhere, or None.

    Returns:
        `(targets, probs, weight)`: `targets` and `probs` of the shape of `y_pred` (rank-1
        inputs lifted to `(N, 1)`); `weight` is None or a 0/1 mask broadcastable to them
        (`(..., 1)` for multiclass, per channel for sigmoid modes).
    """
    if mode == "multiclass":
        targets, valid = multiclass_targets(y_true, y_pred, ignore_index=ignore_index)
        probs = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
        return targets, probs, None if valid is None else ops.expand_dims(valid, -1)
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    weight = None
    if ignore_index is not None:
        keep = ops.not_equal(y_true, ops.cast(ignore_index, y_true.dtype))
        weight = ops.cast(keep, y_pred.dtype)
        y_true = ops.where(keep, y_true, ops.zeros_like(y_true))
    targets, y_pred = binary_targets(y_true, y_pred)
    probs = ops.sigmoid(y_pred) if from_logits else y_pred
    return targets, probs, weight


def per_class_vector(name, value, y_pred):
    """A per-class hyperparameter as a tensor over the class axis, checked against `y_pred`."""
    num_classes = y_pred.shape[-1]
    if isinstance(value, tuple) and num_classes is not None and len(value) != num_classes:
        raise ValueError(
            f"`{name}` has {len(value)} values but y_pred has {num_classes} classes: "
            f"y_pred.shape={tuple(y_pred.shape)}, {name}={list(value)}."
        )
    return ops.convert_to_tensor(value, dtype=y_pred.dtype)
