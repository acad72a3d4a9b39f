"""Lovasz losses (Berman et al. 2018): the convex Lovasz extension of the Jaccard loss.

The Jaccard loss of a set of mispredicted pixels is submodular; its Lovasz extension is
a convex, piecewise-linear function of a vector of pixel errors: sort the errors in
decreasing order, and weight each by the increase of the Jaccard loss when its pixel is
added to the set of mispredictions (`lovasz_gradient`). Sorting uses `keras.ops.top_k`
over the whole axis, on the errors' bit patterns read as integers (the same order, a faster
sort), so the losses compile with XLA; the sort permutation carries no gradient, exactly as
in the paper's reference implementation. From logits with sparse labels, each target rides
in its sort key's lowest bit, and the sort hands back the sorted targets without a gather.

On CPU, XLA's sort is 2-3x slower than TensorFlow's TopK kernel, so under
`jit_compile=True` a Lovasz step costs about twice what it costs in `tf.function`: on CPU,
compile a model that trains with a Lovasz loss with `jit_compile=False` (docs/benchmarks.md,
"Lovasz-softmax against segmentation_models_pytorch": there, one CPU thread, a Lovasz-softmax step
costs 0.82-0.94x segmentation_models_pytorch's in `tf.function` and 0.96-1.16x eagerly).

Ignored pixels (`ignore_index`, or masked by a Keras mask) get error 0 and target 0:
every pixel with a positive error sorts before them, and they change neither the weights
of those pixels nor the loss, so no mask shrinks the arrays (which would give dynamic shapes).

Per-sample convention as for the overlap losses (`keras_lossopt.losses.overlap`):
`per_image=True` gives one value per image and `reduction`/`sample_weight` apply to them;
`per_image=False` gives one value for the batch and takes no `sample_weight`. Under
`tf.distribute` a batch Lovasz loss is computed on each replica's share of the batch and
averaged over replicas: a global sort would need every replica's pixels, so the
replicated batch loss is the mean of the per-shard losses, not the single-device value.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_lossopt._targets import (
    checked_multiclass_targets,
    classes_first,
    encoded_multiclass_targets,
    is_sparse_target,
    overlap_inputs,
)
from keras_lossopt._validation import check_choice, check_ignore_index
from keras_lossopt.losses._eager_graph import eager_graph_call
from keras_lossopt.losses.region import RegionLoss
from keras_lossopt.losses.registry import register_alias

__all__ = ["LovaszHingeLoss", "LovaszSoftmaxLoss", "lovasz_hinge_loss", "lovasz_softmax_loss"]

CLASS_SETS = ("present", "all")


def lovasz_gradient(sorted_targets):
    """Jaccard-loss increments for targets sorted by decreasing error (last axis).

    Args:
        sorted_targets: 0/1 foreground indicators, sorted like the errors; shape `(..., P)`.

    Returns:
        `g` of the same shape with `g_k = J(k) - J(k-1)`, where `J(k)` is the Jaccard loss
        of mispredicting the first `k` pixels.
    """
    sorted_targets = ops.convert_to_tensor(sorted_targets)
    increments, _ = _jaccard_increments(sorted_targets)
    return ops.cast(increments, sorted_targets.dtype)


def _jaccard_increments(sorted_targets):
    """`lovasz_gradient` in float32 (float64 for float64 targets), and the targets' sum over the last axis."""
    counts = "float64" if keras.backend.standardize_dtype(sorted_targets.dtype) == "float64" else "float32"
    targets = ops.cast(sorted_targets, counts)
    total = ops.sum(targets, axis=-1, keepdims=True)
    # With k pixels mispredicted, intersection = total - found and union = total + (k - found),
    # so J(k) = 1 - intersection / union = k / union, and union >= k >= 1 for targets in [0, 1]:
    # one cumulative sum (of the background) and one division.
    union = _cumulative_sum(1.0 - targets, offset=total)
    rank = ops.arange(1, ops.shape(targets)[-1] + 1, dtype=counts)
    jaccard = rank / union
    increments = ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
    return increments, ops.squeeze(total, -1)


# Block length of `_cumulative_sum`: measured fastest among 16-128 on CPU.
_SCAN_BLOCK = 32


def _cumulative_sum(values, offset):
    """`offset + cumsum(values)` over the last axis, as a matrix product per block of `_SCAN_BLOCK` values.

    TensorFlow's CPU `Cumsum` runs at about 6 ns per value; a product with a triangular
    matrix of ones per block of 32 values, then the cumulative sum of the block totals
    (32 times shorter), costs about a quarter of that (docs/benchmarks.md, "Lovasz-softmax
    against segmentation_models_pytorch"). The Lovasz weights sum 0/1 targets, which every
    matrix product (float32, TF32 or bfloat16 inputs) adds exactly.

    Args:
        values: float array `(..., P)`.
        offset: added to every sum, broadcastable to `(..., 1)`.

    Returns:
        The running sums, of the shape of `values`.
    """
    shape = ops.shape(values)
    length = values.shape[-1] if values.shape[-1] is not None else shape[-1]
    padding = (-length) % _SCAN_BLOCK
    rows = ops.reshape(values, (-1, length))
    if not isinstance(padding, int) or padding:
        rows = ops.pad(rows, [[0, 0], [0, padding]])
    blocks = ops.reshape(rows, (ops.shape(rows)[0], -1, _SCAN_BLOCK))
    within = ops.matmul(blocks, ops.triu(ops.ones((_SCAN_BLOCK, _SCAN_BLOCK), dtype=values.dtype)))
    block_totals = within[..., -1]
    before = ops.cumsum(block_totals, axis=-1) - block_totals + ops.reshape(offset, (-1, 1))
    sums = ops.reshape(within + ops.expand_dims(before, -1), (ops.shape(rows)[0], -1))
    return ops.reshape(sums[:, :length], shape)


def lovasz_extension(errors, targets):
    """The Lovasz extension of the Jaccard loss over the last axis.

    Args:
        errors: non-negative pixel errors (or hinge margins), `(..., P)`.
        targets: 0/1 foreground indicators of the same shape.

    Returns:
        `sum_k errors_sorted[k] * g_k`, shape `errors.shape[:-1]`.
    """
    return _lovasz_extension(errors, targets, binary_targets=False)[0]


def _lovasz_extension(errors, targets, *, binary_targets):
    """`lovasz_extension` and the targets' sums; `binary_targets=True` promises 0/1 targets and errors below 2."""
    # The same sum taken in the pixels' own order, `sum_i errors_i * w_i` with `w_i` the
    # increment at pixel i's rank: the errors are never gathered, so their gradient is `w`
    # elementwise instead of a scatter through the sort. Per step this is one sort, at most
    # one gather (the targets) and one scatter (the increments), the work of the reference
    # code's torch.sort, fg[perm] and the sort's backward (docs/benchmarks.md, "Lovasz-softmax
    # against segmentation_models_pytorch").
    errors, targets = ops.convert_to_tensor(errors), ops.convert_to_tensor(targets)
    weights, totals = _lovasz_weights(ops.stop_gradient(errors), ops.stop_gradient(targets), binary_targets)
    return ops.sum(errors * ops.stop_gradient(weights), axis=-1), totals


@eager_graph_call
def _lovasz_weights(errors, targets, binary_targets):
    """Each error's weight in the Lovasz extension (its rank's increment, in the errors' order), and the target sums."""
    length = errors.shape[-1] if errors.shape[-1] is not None else ops.shape(errors)[-1]
    if binary_targets:
        # The target rides in the sort key's lowest bit, so the sort hands back the sorted
        # targets with the order and no gather is needed. Errors below 2 have bit patterns
        # below 2**30 (2**62 in float64): the shift keeps the key non-negative and drops the
        # sign bit. Equal errors then sort foreground first, a subgradient as valid as any.
        bits = _float_bits(errors)
        keys = ops.bitwise_or(ops.left_shift(bits, 1), ops.cast(targets, bits.dtype))
        sorted_keys, order = ops.top_k(keys, length)
        sorted_targets = ops.bitwise_and(sorted_keys, 1)
        positions = _flat_positions(order)
    else:
        order = ops.top_k(_order_bits(errors), length)[1]
        positions = _flat_positions(order)
        flat_targets = ops.reshape(targets, (-1,))
        sorted_targets = ops.reshape(ops.take(flat_targets, positions, axis=0), ops.shape(order))
    increments, totals = _jaccard_increments(sorted_targets)
    # The sort undone by one scatter: weights[..., order[..., k]] = increments[..., k].
    total = math.prod(errors.shape) if None not in errors.shape else ops.size(errors)
    weights = ops.segment_sum(ops.reshape(increments, (-1,)), positions, num_segments=total)
    return ops.cast(ops.reshape(weights, ops.shape(errors)), errors.dtype), totals


def _order_bits(errors):
    """Integer sort keys that order non-negative float errors as their values do.

    `top_k` over the whole axis is a descending sort in which equal keys keep the lower index
    first. A non-negative float's bit pattern read as an integer grows with its value (NaN
    above infinity), and TensorFlow's TopK sorts int32 about 10% faster than float32 on CPU
    (docs/benchmarks.md). The sign bit is cleared so that -0.0 ties with 0.0. float16 and
    bfloat16 errors are widened to float32, which keeps their order exactly.
    """
    bits = _float_bits(errors)
    wide = keras.backend.standardize_dtype(bits.dtype) == "int64"
    return ops.bitwise_and(bits, ops.convert_to_tensor(2**63 - 1 if wide else 2**31 - 1, bits.dtype))


def _float_bits(errors):
    """The bit patterns of the errors as int64 (float64 errors) or int32 (the others, through float32)."""
    wide = keras.backend.standardize_dtype(errors.dtype) == "float64"
    # `view` checks the last axis' length in Python: give it a static one (a free reshape).
    column = ops.expand_dims(errors if wide else ops.cast(errors, "float32"), -1)
    return ops.squeeze(ops.view(column, "int64" if wide else "int32"), -1)


def _flat_positions(order):
    """The positions `order` points at in the flattened array: one index vector for the gather and the scatter."""
    length = ops.shape(order)[-1]
    rows = ops.reshape(order, (-1, length))
    offsets = ops.expand_dims(ops.arange(ops.shape(rows)[0], dtype=order.dtype) * length, -1)
    return ops.reshape(rows + offsets, (-1,))


def _merge_validity(valid, mask):
    """The ignore_index mask times the 0/1 position mask from the loss contract (Keras mask)."""
    if mask is None:
        return valid
    return mask if valid is None else valid * mask


@ops.custom_gradient
def _softmax_over_first_axis(logits):
    """Softmax over axis 0, with the softmax's gradient written out.

    TensorFlow's softmax kernel works on the last axis; over a short class axis first, the
    exponentials run on long contiguous rows (half the CPU time of `ops.softmax` on the last
    axis for five classes), and the written-out gradient saves the autodiff of the division.
    """
    exponentials = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=0, keepdims=True)))
    probs = exponentials / ops.sum(exponentials, axis=0, keepdims=True)

    def gradient(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return probs * (upstream - ops.sum(upstream * probs, axis=0, keepdims=True))

    return probs, gradient


def _class_first_rows(x, per_image):
    """`(C, N, ...)` -> `(C, N, P)` per image, `(C, 1, N*P)` for the batch."""
    if per_image:
        return ops.reshape(x, (x.shape[0], ops.shape(x)[1], -1))
    return ops.reshape(x, (x.shape[0], 1, -1))


def lovasz_softmax_loss(
    y_true, y_pred, *, from_logits=False, per_image=False, classes="present", ignore_index=None, mask=None
):
    """Per-image (or batch) Lovasz-softmax loss. See `LovaszSoftmaxLoss` for the formula.

    Args:
        y_true: sparse class indices `(N, ...)` or one-hot targets of the shape of `y_pred`.
        y_pred: probabilities, or logits with `from_logits=True`; class axis last.
        from_logits: whether `y_pred` holds logits.
        per_image: `(N,)` values (True) or one value for the batch (False; default).
        classes: `"present"` or `"all"`.
        ignore_index: sparse label whose pixels count nowhere, or None.
        mask: optional 0/1 mask of the positions (`(N, ...)` or `(N, ..., 1)`), e.g. a Keras mask.

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    # Checks first, so that an eager caller gets their errors; the rest is one graph call
    # when TensorFlow runs eagerly (`_eager_graph.py`).
    sparse = is_sparse_target(y_true, y_pred)
    y_true, poison = checked_multiclass_targets(y_true, y_pred, ignore_index=ignore_index)
    mask = None if mask is None else ops.convert_to_tensor(mask)
    # Sparse labels give 0/1 targets (ignore_index included), and the softmax gives errors
    # |t - p| <= 1; a mask or probabilities from the caller could break either promise.
    return _lovasz_softmax_values(
        y_true,
        y_pred,
        poison,
        mask,
        from_logits=bool(from_logits),
        per_image=bool(per_image),
        classes=classes,
        ignore_index=ignore_index,
        binary_targets=sparse and bool(from_logits) and mask is None,
    )


@eager_graph_call(fixed_last_axis=True)
def _lovasz_softmax_values(
    y_true, y_pred, poison, mask, *, from_logits, per_image, classes, ignore_index, binary_targets
):
    """`lovasz_softmax_loss` for checked targets; `binary_targets` promises 0/1 targets and errors up to 1."""
    # Class axis first from the start: every class' errors are then one contiguous row to
    # sort, and no transpose of the errors (forward) or of their gradient (backward) is needed.
    targets, valid = encoded_multiclass_targets(y_true, y_pred, poison, ignore_index=ignore_index, class_axis=0)
    scores = classes_first(y_pred)
    probs = _softmax_over_first_axis(scores) if from_logits else scores
    if mask is not None:
        mask = classes_first(mask) if len(mask.shape) == len(y_pred.shape) else mask
    valid = _merge_validity(valid, mask)
    errors = ops.abs(targets - probs)
    if valid is not None:
        errors, targets = errors * valid, targets * valid
    errors, targets = _class_first_rows(errors, per_image), _class_first_rows(targets, per_image)
    per_class, totals = _lovasz_extension(errors, targets, binary_targets=binary_targets)
    if classes == "all":
        values = ops.mean(per_class, axis=0)
    else:
        present = ops.cast(totals > 0, per_class.dtype)
        values = ops.sum(per_class * present, axis=0) / ops.maximum(ops.sum(present, axis=0), 1.0)
        # NaN targets (labels out of range under XLA) make every class' value NaN, present or not.
        values = ops.where(ops.isnan(ops.sum(per_class, axis=0)), float("nan"), values)
    return values if per_image else values[0]


def lovasz_hinge_loss(y_true, y_pred, *, per_image=True, ignore_index=None, mask=None):
    """Per-image (or batch) Lovasz hinge loss. See `LovaszHingeLoss` for the formula.

    Args:
        y_true: 0/1 targets of the shape of `y_pred` (or without its trailing 1).
        y_pred: real-valued scores (logits).
        per_image: `(N,)` values (True; default) or one value for the batch (False).
        ignore_index: a target value whose pixels count nowhere, or None.
        mask: optional 0/1 mask of the positions, e.g. a Keras mask.

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    targets, scores, valid = overlap_inputs(y_true, y_pred, mode="binary", from_logits=False, ignore_index=ignore_index)
    valid = _merge_validity(valid, mask)
    errors = ops.relu(1.0 - scores * (2.0 * targets - 1.0))
    if valid is not None:
        errors, targets = errors * valid, targets * valid
    rows = ops.shape(errors)[0] if per_image else 1
    values = lovasz_extension(ops.reshape(errors, (rows, -1)), ops.reshape(targets, (rows, -1)))
    return values if per_image else values[0]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class LovaszSoftmaxLoss(RegionLoss):
    """Lovasz-softmax loss: a convex surrogate of the mean Jaccard (IoU) loss for multiclass output.

    Use it to optimize mean IoU directly, typically to fine-tune a model first trained
    with cross-entropy; it costs a sort of every class' errors.

    Formula:
        per class `c`: errors `e_i = |t_ic - p_ic|`, sorted decreasingly;
        `loss_c = sum_k e_(k) * g_k` with `g` from `lovasz_gradient`; the loss is the mean
        over the classes present in the target (`classes="present"`) or over all classes.

    Args:
        from_logits: whether `y_pred` holds logits (softmax applied here). Default False.
        per_image: one value per image, shape `(N,)`, or one value for the batch (default,
            as in the paper's code). See the module docstring.
        classes: `"present"` (average over the classes present in the target; default) or
            `"all"`. With `"present"` an image with no valid pixel scores 0.
        ignore_index: a sparse label whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"lovasz_softmax_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        `(N,)` per-image values reduced by `reduction`, or one value for the batch.

    Raises:
        ValueError: for an unknown `classes`, mismatched shapes, labels out of range, or a
            `sample_weight` with `per_image=False`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> round(float(LovaszSoftmaxLoss()(y_true, probs)), 4)
        0.1333

    References:
        Berman, Triki, Blaschko (2018). The Lovasz-Softmax loss: A tractable surrogate for
        the optimization of the intersection-over-union measure in neural networks. CVPR.
    """

    supports_batch_weights = False

    def __init__(
        self,
        from_logits=False,
        per_image=False,
        classes="present",
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="lovasz_softmax_loss",
        dtype=None,
    ):
        super().__init__(per_image=per_image, reduction=reduction, name=name, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.classes = check_choice("classes", classes, CLASS_SETS)
        self.ignore_index = check_ignore_index(ignore_index)

    def region_loss(self, y_true, y_pred, weight):
        return lovasz_softmax_loss(
            y_true,
            y_pred,
            from_logits=self.from_logits,
            per_image=self.per_image,
            classes=self.classes,
            ignore_index=self.ignore_index,
            mask=weight,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "classes": self.classes,
            "ignore_index": self.ignore_index,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class LovaszHingeLoss(RegionLoss):
    """Lovasz hinge loss: a convex surrogate of the Jaccard loss for binary segmentation.

    Use it for binary masks scored by IoU. `y_pred` are real-valued scores (logits); a
    pixel is correct with margin when `score * (2t - 1) >= 1`, and a prediction with all
    margins >= 1 has loss 0.

    Formula:
        hinge errors `e_i = 1 - s_i (2 t_i - 1)`, sorted decreasingly;
        `loss = sum_k relu(e_(k)) g_k` with `g` from `lovasz_gradient`. All non-batch
        positions of an image (all channels included) form one binary set.

    Args:
        per_image: one value per image, shape `(N,)` (default, as in the paper's code), or
            one value for the batch. See the module docstring.
        ignore_index: a target value whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"lovasz_hinge_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        `(N,)` per-image values reduced by `reduction`, or one value for the batch.

    Raises:
        ValueError: for mismatched shapes or a `sample_weight` with `per_image=False`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[1.0, 1.0, 0.0, 0.0]])
        >>> scores = np.array([[2.0, 1.0, -1.5, -3.0]])  # every margin >= 1
        >>> float(LovaszHingeLoss()(y_true, scores))
        0.0

    References:
        Berman, Triki, Blaschko (2018). The Lovasz-Softmax loss: A tractable surrogate for
        the optimization of the intersection-over-union measure in neural networks. CVPR.
    """

    supports_batch_weights = False

    def __init__(
        self,
        per_image=True,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="lovasz_hinge_loss",
        dtype=None,
    ):
        super().__init__(per_image=per_image, reduction=reduction, name=name, dtype=dtype)
        self.ignore_index = check_ignore_index(ignore_index)

    def region_loss(self, y_true, y_pred, weight):
        return lovasz_hinge_loss(y_true, y_pred, per_image=self.per_image, ignore_index=self.ignore_index, mask=weight)

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}


register_alias("lovasz_softmax", LovaszSoftmaxLoss)
register_alias("lovasz", LovaszSoftmaxLoss)
register_alias("lovasz_hinge", LovaszHingeLoss)
