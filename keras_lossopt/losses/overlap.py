"""Overlap losses for segmentation: soft Dice, generalized Dice, Tversky, focal Tversky, Jaccard.

Every loss here is a formula on one set of *soft confusion counts*: per class,
`TP = sum(w * p * t)`, `FP = sum(w * p) - TP` and `FN = sum(w * t) - TP`, summed over
the spatial axes of each image (`per_image=True`) or over the whole batch (batch Dice).
`soft_confusion_counts` computes them once; each loss class only says how it turns the
counts into a per-class loss.

Per-sample convention (these are not per-position losses):

* `per_image=True`: the loss returns one value per image, shape `(N,)`, and Keras'
  `reduction` and a per-image `sample_weight` apply to those values exactly as for any
  other loss (`"none"` returns the `(N,)` values).
* `per_image=False` (batch Dice): the counts are summed over the whole batch and the loss
  is ONE value for the batch, whatever the `reduction` (`"sum"`, the means and `"none"`
  all give that 0-d value: the loss has no per-sample values, and Keras returns such a
  value unreduced too, e.g. `keras.losses.Dice(axis=None, reduction="none")`; use
  `per_image=True` for one value per image). `sample_weight` (per image `(N,)` or per pixel `(N, H, W)`) then
  weights each pixel's contribution *inside* the counts, which is the weighted soft Dice;
  a weight of 0 removes an image. Under `tf.distribute` the counts are summed across
  replicas, so a replicated run gives the loss of the whole global batch.

A Keras mask on `y_pred` (see `keras_lossopt.losses.base`) removes the masked positions
from the counts, exactly like `ignore_index`.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from keras_lossopt._reduction import reduce_loss_values, replicas_in_sync
from keras_lossopt._targets import OVERLAP_MODES, overlap_inputs, per_class_vector
from keras_lossopt._validation import check_choice, check_int, check_non_negative, check_per_class, check_probability
from keras_lossopt.losses._probabilities import focal_modulator
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.losses.registry import register_alias

__all__ = [
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "tversky_loss",
]

MODES = OVERLAP_MODES


class SoftCounts(NamedTuple):
    """Per-class soft true positives, false positives and false negatives.

    Shapes are `(N, C)` for per-image counts and `(C,)` for batch counts. With squared
    denominators, `fp` and `fn` are `sum(p**2) - tp` and `sum(t**2) - tp`, so that the
    Dice denominator `2 tp + fp + fn` is `sum(p**2) + sum(t**2)`.
    """

    tp: object
    fp: object
    fn: object


def pixel_weight(sample_weight, y_pred, what="sample_weight"):
    """A per-image `(N,)` or per-position `(N, ...)` weight aligned with `y_pred` for the counts."""
    weight = ops.cast(ops.convert_to_tensor(sample_weight), y_pred.dtype)
    rank, pred_rank = len(weight.shape), len(y_pred.shape)
    if rank > pred_rank or (rank == pred_rank and weight.shape[-1] not in (1, y_pred.shape[-1])):
        raise ValueError(
            f"`{what}` must be per image (N,) or per position (N, ...) of y_pred.shape[:-1]. "
            f"Received: {what}.shape={tuple(weight.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    while len(weight.shape) < pred_rank:
        weight = ops.expand_dims(weight, -1)
    return weight


def _all_reduce_sum(tensor):
    """Sums a tensor of static shape across tf.distribute replicas (identity on one device).

    The sum goes element by element through scalar all-reduces. MirroredStrategy numbers
    its collectives from the same keys in every strategy object, and TensorFlow remembers
    each collective's shape per process: one all-reduce of shape `(3, C)` would clash with
    another strategy's scalar all-reduce of the same key (as in a test session). Scalars
    always agree, and the counts are a handful of numbers.
    """
    replicas, context = replicas_in_sync()
    if replicas == 1 or context is None:
        return tensor
    import tensorflow as tf

    shape = tuple(tensor.shape)
    flat = ops.reshape(tensor, (-1,))
    summed = [context.all_reduce(tf.distribute.ReduceOp.SUM, flat[i]) for i in range(flat.shape[0])]
    return ops.reshape(ops.stack(summed), shape)


def soft_confusion_counts(targets, probs, weight=None, *, per_image=True, squared=False, global_batch=True):
    """Soft TP, FP, FN per class, summed over each image or over the whole batch.

    Args:
        targets: dense targets `(N, ..., C)`.
        probs: probabilities of the same shape.
        weight: optional weight broadcastable to `probs` (validity mask, sample weights).
        per_image: sum over the spatial axes of each image (`(N, C)` counts) or over the
            batch too (`(C,)`). Default True.
        squared: use `p**2` and `t**2` in the volumes (Milletari et al. 2016). Default False.
        global_batch: for batch counts under `tf.distribute`, sum them across replicas.

    Returns:
        `SoftCounts(tp, fp, fn)`.
    """
    rank = len(probs.shape)
    axes = tuple(range(1 if per_image else 0, rank - 1))
    overlap = probs * targets
    pred_volume = probs * probs if squared else probs
    true_volume = targets * targets if squared else targets
    if weight is not None:
        overlap, pred_volume, true_volume = (x * weight for x in (overlap, pred_volume, true_volume))
    if axes:
        overlap, pred_volume, true_volume = (ops.sum(x, axis=axes) for x in (overlap, pred_volume, true_volume))
    if not per_image and global_batch:
        stacked = _all_reduce_sum(ops.stack([overlap, pred_volume, true_volume]))
        overlap, pred_volume, true_volume = stacked[0], stacked[1], stacked[2]
    return SoftCounts(overlap, pred_volume - overlap, true_volume - overlap)


def smoothed_ratio(numerator, denominator):
    """`numerator / denominator`, defined as 1 (perfect agreement) where the denominator is 0.

    A NaN denominator (a NaN prediction, or labels out of range under XLA) stays NaN.
    """
    positive = ops.logical_not(denominator <= 0)
    return ops.where(positive, numerator / ops.where(positive, denominator, ops.ones_like(denominator)), 1.0)


def _merge_weights(weight, valid):
    if valid is None:
        return weight
    return valid if weight is None else weight * valid


def select_classes(values, y_pred, include_background=True, class_weights=None):
    """Drops the background channel if asked; returns `(values, class weights or None)`."""
    weights = None if class_weights is None else per_class_vector("class_weights", tuple(class_weights), y_pred)
    if not include_background:
        if values.shape[-1] == 1:
            raise ValueError(
                "`include_background=False` needs more than one channel: channel 0 is the background. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        values = values[..., 1:]
        weights = None if weights is None else weights[1:]
    return values, weights


def _overlap_values(
    y_true,
    y_pred,
    per_class_loss,
    *,
    mode,
    from_logits,
    per_image,
    squared,
    include_background,
    class_weights,
    ignore_index,
    weight,
):
    """The shared body of the soft-count losses: counts -> per-class loss -> class mean."""
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    targets, probs, valid = overlap_inputs(
        y_true, y_pred, mode=mode, from_logits=from_logits, ignore_index=ignore_index
    )
    counts = soft_confusion_counts(targets, probs, _merge_weights(weight, valid), per_image=per_image, squared=squared)
    per_class, weights = select_classes(per_class_loss(counts), y_pred, include_background, class_weights)
    if weights is None:
        return ops.mean(per_class, axis=-1)
    return ops.sum(per_class * weights, axis=-1) / ops.sum(weights)


def dice_loss(
    y_true,
    y_pred,
    *,
    mode="multiclass",
    from_logits=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    squared=False,
    log_dice=False,
    per_image=True,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    weight=None,
):
    """Per-image soft Dice loss. See `DiceLoss` for the arguments and the formula.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        squared: square the volumes in the denominator.
        log_dice: `-log(dice)` instead of `1 - dice`.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        class_weights: one weight per class, or None.
        ignore_index: label whose positions count nowhere, or None.
        weight: optional per-image or per-position weight inside the counts (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """

    def per_class(counts):
        tp, fp, fn = counts
        dice = smoothed_ratio(2.0 * tp + smooth_nr, 2.0 * tp + fp + fn + smooth_dr)
        return -ops.log(ops.maximum(dice, 1e-7)) if log_dice else 1.0 - dice

    return _overlap_values(
        y_true,
        y_pred,
        per_class,
        mode=mode,
        from_logits=from_logits,
        per_image=per_image,
        squared=squared,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        weight=weight,
    )


def jaccard_loss(
    y_true,
    y_pred,
    *,
    mode="multiclass",
    from_logits=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    per_image=True,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    weight=None,
):
    """Per-image soft Jaccard (IoU) loss. See `JaccardLoss` for the arguments and the formula.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        class_weights: one weight per class, or None.
        ignore_index: label whose positions count nowhere, or None.
        weight: optional per-image or per-position weight inside the counts (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """

    def per_class(counts):
        tp, fp, fn = counts
        return 1.0 - smoothed_ratio(tp + smooth_nr, tp + fp + fn + smooth_dr)

    return _overlap_values(
        y_true,
        y_pred,
        per_class,
        mode=mode,
        from_logits=from_logits,
        per_image=per_image,
        squared=False,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        weight=weight,
    )


def tversky_loss(
    y_true,
    y_pred,
    *,
    alpha=0.3,
    beta=0.7,
    gamma=1.0,
    mode="multiclass",
    from_logits=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    per_image=True,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    weight=None,
):
    """Per-image Tversky loss, `(1 - TI) ** gamma` per class. See `TverskyLoss`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        alpha: weight of the false positives.
        beta: weight of the false negatives.
        gamma: exponent of the per-class loss (1: Tversky; see `focal_tversky_loss`).
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        class_weights: one weight per class, or None.
        ignore_index: label whose positions count nowhere, or None.
        weight: optional per-image or per-position weight inside the counts (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """

    def per_class(counts):
        tp, fp, fn = counts
        loss = 1.0 - smoothed_ratio(tp + smooth_nr, tp + alpha * fp + beta * fn + smooth_dr)
        # The floor in focal_modulator keeps the gradient finite at a perfect score for gamma < 1.
        return loss if gamma == 1.0 else focal_modulator(loss, gamma)

    return _overlap_values(
        y_true,
        y_pred,
        per_class,
        mode=mode,
        from_logits=from_logits,
        per_image=per_image,
        squared=False,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        weight=weight,
    )


def focal_tversky_loss(y_true, y_pred, *, alpha=0.3, beta=0.7, gamma=0.75, **kwargs):
    """Per-image focal Tversky loss. See `FocalTverskyLoss` for the arguments and the formula.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        alpha: weight of the false positives.
        beta: weight of the false negatives.
        gamma: exponent > 0 of the per-class Tversky loss.
        **kwargs: the other arguments of `tversky_loss`.

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    return tversky_loss(y_true, y_pred, alpha=alpha, beta=beta, gamma=gamma, **kwargs)


def _volume_weights(volume, weight_type):
    if weight_type == "uniform":
        return ops.ones_like(volume)
    present = volume > 0
    safe = ops.where(present, volume, ops.ones_like(volume))
    weights = ops.where(present, 1.0 / (safe * safe if weight_type == "square" else safe), 0.0)
    largest = ops.max(weights, axis=-1, keepdims=True)
    return ops.stop_gradient(ops.where(present, weights, largest))


def generalized_dice_loss(
    y_true,
    y_pred,
    *,
    weight_type="square",
    mode="multiclass",
    from_logits=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    per_image=True,
    include_background=True,
    ignore_index=None,
    weight=None,
):
    """Per-image generalized Dice loss. See `GeneralizedDiceLoss` for the arguments and the formula.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        weight_type: `"square"`, `"simple"` or `"uniform"`.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        ignore_index: label whose positions count nowhere, or None.
        weight: optional per-image or per-position weight inside the counts (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    targets, probs, valid = overlap_inputs(
        y_true, y_pred, mode=mode, from_logits=from_logits, ignore_index=ignore_index
    )
    tp, fp, fn = soft_confusion_counts(targets, probs, _merge_weights(weight, valid), per_image=per_image)
    if not include_background:
        tp, fp, fn = (select_classes(x, y_pred, include_background=False)[0] for x in (tp, fp, fn))
    weights = _volume_weights(tp + fn, weight_type)
    numerator = 2.0 * ops.sum(weights * tp, axis=-1) + smooth_nr
    denominator = ops.sum(weights * (2.0 * tp + fp + fn), axis=-1) + smooth_dr
    return 1.0 - smoothed_ratio(numerator, denominator)


class RegionLoss(LossFunctionBase):
    """Base of the losses computed over a region (an image or the batch) rather than per position.

    Implements the per-sample convention of the module docstring in the reduction step of
    the loss contract; subclasses define `region_loss(y_true, y_pred, weight)` returning
    `(N,)` values (per image) or a scalar.

    Args:
        per_image: one value per image (True) or one for the batch (False).
        reduction: Keras reduction.
        name: loss name.
        dtype: computation dtype.
    """

    supports_batch_weights = True

    def __init__(self, per_image, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.per_image = bool(per_image)

    def region_loss(self, y_true, y_pred, weight):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, y_true, y_pred):
        return self.region_loss(y_true, y_pred, None)

    def compute_reduced_loss(self, y_true, y_pred, sample_weight, mask):
        # The mask (Keras mask, merged by LossFunctionBase) removes positions inside the
        # counts, like ignore_index: a region loss has no per-position values to mask.
        weight = None if mask is None else pixel_weight(mask, y_pred, what="mask")
        if self.per_image:
            return reduce_loss_values(self.region_loss(y_true, y_pred, weight), sample_weight, None, self.reduction)
        if sample_weight is not None:
            if not self.supports_batch_weights:
                raise ValueError(
                    f"{type(self).__name__} with per_image=False computes one value for the whole batch "
                    "and takes no `sample_weight`; use per_image=True to weight images."
                )
            sample_weight = pixel_weight(sample_weight, y_pred)
            weight = sample_weight if weight is None else weight * sample_weight
        # One value for the batch whatever the reduction, "none" included: the loss has no
        # per-sample values, and Keras returns such a value unreduced (keras.losses.Dice(axis=None)).
        value = self.region_loss(y_true, y_pred, weight)
        replicas, _ = replicas_in_sync()
        # Keras sums the replicas' losses; each replica holds the global batch value.
        return value * (1.0 / replicas) if replicas > 1 else value

    def get_config(self):
        return {**super().get_config(), "per_image": self.per_image}


class OverlapLoss(RegionLoss):
    """Shared arguments of the soft-count losses (Dice, Tversky, Jaccard ...).

    Subclasses implement `region_loss` with their per-sample function.

    Args:
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        per_image: one value per image (True) or one for the batch (False).
        include_background: count channel 0.
        class_weights: one weight per class, or None.
        ignore_index: label whose positions count nowhere, or None.
        reduction: Keras reduction.
        name: loss name.
        dtype: computation dtype.
    """

    def __init__(
        self,
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        per_image=True,
        include_background=True,
        class_weights=None,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="overlap_loss",
        dtype=None,
    ):
        super().__init__(per_image=per_image, reduction=reduction, name=name, dtype=dtype)
        self.mode = check_choice("mode", mode, MODES)
        self.from_logits = bool(from_logits)
        self.smooth_nr = check_non_negative("smooth_nr", smooth_nr)
        self.smooth_dr = check_non_negative("smooth_dr", smooth_dr)
        self.include_background = bool(include_background)
        self.class_weights = check_per_class("class_weights", class_weights, allow_scalar=False, minimum=0.0)
        if self.class_weights is not None and sum(self.class_weights) <= 0:
            raise ValueError(f"`class_weights` must not all be 0. Received: class_weights={list(class_weights)}")
        self.ignore_index = None if ignore_index is None else check_int("ignore_index", ignore_index)

    def shared_arguments(self):
        """The arguments every soft-count per-sample function takes, from this loss."""
        return {
            "mode": self.mode,
            "from_logits": self.from_logits,
            "smooth_nr": self.smooth_nr,
            "smooth_dr": self.smooth_dr,
            "per_image": self.per_image,
            "include_background": self.include_background,
            "class_weights": self.class_weights,
            "ignore_index": self.ignore_index,
        }

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "from_logits": self.from_logits,
            "smooth_nr": self.smooth_nr,
            "smooth_dr": self.smooth_dr,
            "include_background": self.include_background,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "ignore_index": self.ignore_index,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class DiceLoss(OverlapLoss):
    """Soft Dice loss (Sorensen-Dice coefficient on probabilities).

    Use it for segmentation with class imbalance: every class counts equally, however few
    pixels it has. Often combined with cross-entropy (`DiceCELoss`). Alone, from an
    untrained softmax and with rare classes, plain `1 - dice` can collapse: the false
    positives on the background push the rare classes' probabilities towards 0 in the
    first epoch, where the softmax gradient `p (1 - p)` vanishes and they never recover
    (measured in docs/benchmarks.md: foreground IoU 0 on synthetic shapes, while
    `log_dice=True` reached 0.68 and `DiceCELoss` 0.57). Prefer `DiceCELoss` or
    `log_dice=True` when training from scratch.

    Formula:
        per class `c`: `dice_c = (2 TP_c + smooth_nr) / (2 TP_c + FP_c + FN_c + smooth_dr)`,
        i.e. `(2 sum(p t) + s_nr) / (sum(p) + sum(t) + s_dr)` (`p**2`, `t**2` with
        `squared=True`); `loss = mean_c w_c (1 - dice_c)` or, with `log_dice`,
        `mean_c w_c * -log(dice_c)`.

    Args:
        mode: `"multiclass"` (softmax over the last axis; default), `"binary"` or
            `"multilabel"` (independent sigmoids, one channel per label).
        from_logits: whether `y_pred` holds logits (softmax/sigmoid applied here). Default False.
        smooth_nr: added to the numerator. Default 1e-5.
        smooth_dr: added to the denominator; with `smooth_nr == smooth_dr > 0` a class that
            is empty in both target and prediction scores 1 (loss 0). A zero denominator is
            defined as a perfect score. Default 1e-5.
        squared: square the volumes in the denominator (Milletari et al. 2016). Default False.
        log_dice: `-log(dice)` instead of `1 - dice` (steeper for poor overlaps); the dice
            is floored at 1e-7. Default False.
        per_image: one value per image, shape `(N,)` (True; default), or one value for the
            batch from counts summed over the batch (False). See the module docstring for
            how `reduction` and `sample_weight` apply.
        include_background: count channel 0 (the background). Default True.
        class_weights: one non-negative weight per class (over all channels, also when
            the background is excluded); the loss is the weighted mean over classes.
            Default None (plain mean).
        ignore_index: a label whose pixels count nowhere (their predictions change neither
            the loss nor its gradient): a sparse class index in multiclass mode, a target
            value in sigmoid modes. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"dice_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        `(N,)` per-image values reduced by `reduction` (per_image=True), or one value for
        the batch (per_image=False).

    Raises:
        ValueError: for an unknown `mode`, negative smoothing, bad `class_weights`,
            mismatched shapes, sparse labels out of range, or `include_background=False`
            with one channel.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> round(float(DiceLoss()(y_true, probs)), 4)
        0.142

    References:
        Milletari, Navab, Ahmadi (2016). V-Net: Fully Convolutional Neural Networks for
        Volumetric Medical Image Segmentation. 3DV.
        Sudre, Li, Vercauteren, Ourselin, Cardoso (2017). Generalised Dice overlap as a deep
        learning loss function for highly unbalanced segmentations. DLMIA.
    """

    def __init__(
        self,
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        squared=False,
        log_dice=False,
        per_image=True,
        include_background=True,
        class_weights=None,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="dice_loss",
        dtype=None,
    ):
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            per_image=per_image,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.squared = bool(squared)
        self.log_dice = bool(log_dice)

    def region_loss(self, y_true, y_pred, weight):
        return dice_loss(
            y_true, y_pred, squared=self.squared, log_dice=self.log_dice, weight=weight, **self.shared_arguments()
        )

    def get_config(self):
        return {**super().get_config(), "squared": self.squared, "log_dice": self.log_dice}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class JaccardLoss(OverlapLoss):
    """Soft Jaccard (intersection over union) loss.

    Use it when the evaluation metric is IoU; it penalizes errors a little more than Dice.

    Formula:
        `iou_c = (TP_c + smooth_nr) / (TP_c + FP_c + FN_c + smooth_dr)`, `loss = mean_c w_c (1 - iou_c)`.

    Args:
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        smooth_nr: added to the numerator. Default 1e-5.
        smooth_dr: added to the denominator (a zero denominator is a perfect score). Default 1e-5.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0 (the background). Default True.
        class_weights: one non-negative weight per class. Default None (plain mean).
        ignore_index: a label whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"jaccard_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        As `DiceLoss`.

    Raises:
        ValueError: as `DiceLoss`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> round(float(JaccardLoss()(y_true, probs)), 4)
        0.2477

    References:
        Rahman, Wang (2016). Optimizing Intersection-Over-Union in Deep Neural Networks for
        Image Segmentation. ISVC.
    """

    def __init__(
        self,
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        per_image=True,
        include_background=True,
        class_weights=None,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="jaccard_loss",
        dtype=None,
    ):
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            per_image=per_image,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )

    def region_loss(self, y_true, y_pred, weight):
        return jaccard_loss(y_true, y_pred, weight=weight, **self.shared_arguments())


@keras.saving.register_keras_serializable(package="keras_lossopt")
class TverskyLoss(OverlapLoss):
    """Tversky loss: Dice with separate weights for false positives and false negatives.

    Use it to trade precision for recall on small structures: `beta > alpha` penalizes
    missed foreground (false negatives) more. `alpha = beta = 0.5` is Dice.

    Unlike `keras.losses.Tversky` (Keras 3.15 and older), where `alpha` multiplies the false
    negatives, `alpha` here weights the FALSE POSITIVES and `beta` the FALSE NEGATIVES, as
    in Salehi et al. (2017).

    Formula:
        `TI_c = (TP_c + smooth_nr) / (TP_c + alpha FP_c + beta FN_c + smooth_dr)`,
        `loss = mean_c w_c (1 - TI_c)`.

    Args:
        alpha: weight of the false positives, in [0, 1]. Default 0.3.
        beta: weight of the false negatives, in [0, 1]. Default 0.7 (the paper's best).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        smooth_nr: added to the numerator. Default 1e-5.
        smooth_dr: added to the denominator (a zero denominator is a perfect score). Default 1e-5.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0 (the background). Default True.
        class_weights: one non-negative weight per class. Default None (plain mean).
        ignore_index: a label whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"tversky_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        As `DiceLoss`.

    Raises:
        ValueError: as `DiceLoss`, and for `alpha` or `beta` outside [0, 1].

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[1.0], [1.0], [0.0], [0.0]])
        >>> over = np.array([[1.0], [1.0], [1.0], [1.0]])  # two false positives
        >>> tversky = TverskyLoss(alpha=0.7, beta=0.3, mode="binary", per_image=False)
        >>> round(float(tversky(y_true, over)), 4)
        0.4118

    References:
        Salehi, Erdogmus, Gholipour (2017). Tversky loss function for image segmentation
        using 3D fully convolutional deep networks. MLMI.
    """

    def __init__(
        self,
        alpha=0.3,
        beta=0.7,
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        per_image=True,
        include_background=True,
        class_weights=None,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="tversky_loss",
        dtype=None,
    ):
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            per_image=per_image,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.alpha = check_probability("alpha", alpha)
        self.beta = check_probability("beta", beta)

    def region_loss(self, y_true, y_pred, weight):
        return tversky_loss(y_true, y_pred, alpha=self.alpha, beta=self.beta, weight=weight, **self.shared_arguments())

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss: the Tversky loss of each class raised to a power `gamma`.

    Use it for small lesions: with `gamma < 1` classes whose overlap is already good
    contribute relatively less and hard, small classes more.

    Formula:
        `loss = mean_c w_c (1 - TI_c) ** gamma`, `TI_c` as in `TverskyLoss`. The paper
        writes the exponent as `1/gamma` with its `gamma = 4/3`, i.e. our `gamma = 0.75`.

    Args:
        alpha: weight of the false positives, in [0, 1]. Default 0.3.
        beta: weight of the false negatives, in [0, 1]. Default 0.7.
        gamma: exponent > 0. Default 0.75.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        smooth_nr: added to the numerator. Default 1e-5.
        smooth_dr: added to the denominator (a zero denominator is a perfect score). Default 1e-5.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0 (the background). Default True.
        class_weights: one non-negative weight per class. Default None (plain mean).
        ignore_index: a label whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"focal_tversky_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        As `DiceLoss`.

    Raises:
        ValueError: as `TverskyLoss`, and for `gamma <= 0`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[1.0], [1.0], [0.0], [0.0]])
        >>> probs = np.array([[0.9], [0.4], [0.2], [0.0]])
        >>> round(float(FocalTverskyLoss(mode="binary", per_image=False)(y_true, probs)), 4)
        0.4026

    References:
        Abraham, Khan (2019). A Novel Focal Tversky loss function with improved Attention
        U-Net for lesion segmentation. ISBI.
    """

    def __init__(
        self,
        alpha=0.3,
        beta=0.7,
        gamma=0.75,
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        per_image=True,
        include_background=True,
        class_weights=None,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="focal_tversky_loss",
        dtype=None,
    ):
        super().__init__(
            alpha,
            beta,
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            per_image=per_image,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.gamma = check_non_negative("gamma", gamma)
        if self.gamma == 0:
            raise ValueError(f"`gamma` must be > 0. Received: gamma={gamma}")

    def region_loss(self, y_true, y_pred, weight):
        return focal_tversky_loss(
            y_true, y_pred, alpha=self.alpha, beta=self.beta, gamma=self.gamma, weight=weight, **self.shared_arguments()
        )

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


GENERALIZED_WEIGHTS = ("square", "simple", "uniform")


@keras.saving.register_keras_serializable(package="keras_lossopt")
class GeneralizedDiceLoss(OverlapLoss):
    """Generalized Dice loss (Sudre et al. 2017): Dice with classes weighted by inverse volume.

    Use it for highly unbalanced multi-class segmentation: weighting each class by the
    inverse of its squared target volume makes small structures count as much as large ones.

    Formula:
        `w_c = 1 / (sum t_c)**2` (`weight_type="square"`), `1 / sum t_c` ("simple") or 1
        ("uniform"), computed per image or over the batch like the counts;
        `loss = 1 - (2 sum_c w_c TP_c + smooth_nr) / (sum_c w_c (2 TP_c + FP_c + FN_c) + smooth_dr)`.
        A class with an empty target would get an infinite weight; it gets the largest
        weight of the present classes instead (as MONAI does), and if no class is present
        all weights are 0 and the loss is `1 - smooth_nr / smooth_dr` (0 by default).

    Args:
        weight_type: `"square"` (default), `"simple"` or `"uniform"`.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        smooth_nr: added to the numerator. Default 1e-5.
        smooth_dr: added to the denominator (a zero denominator is a perfect score). Default 1e-5.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0 (the background). Default True.
        ignore_index: a label whose pixels count nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"generalized_dice_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        As `DiceLoss`.

    Raises:
        ValueError: as `DiceLoss`, and for an unknown `weight_type`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 0, 0, 1]])
        >>> probs = np.array([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]]])
        >>> round(float(GeneralizedDiceLoss()(y_true, probs)), 4)
        0.3906

    References:
        Sudre, Li, Vercauteren, Ourselin, Cardoso (2017). Generalised Dice overlap as a deep
        learning loss function for highly unbalanced segmentations. DLMIA.
    """

    def __init__(
        self,
        weight_type="square",
        mode="multiclass",
        from_logits=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        per_image=True,
        include_background=True,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="generalized_dice_loss",
        dtype=None,
    ):
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            per_image=per_image,
            include_background=include_background,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.weight_type = check_choice("weight_type", weight_type, GENERALIZED_WEIGHTS)

    def region_loss(self, y_true, y_pred, weight):
        arguments = self.shared_arguments()
        del arguments["class_weights"]
        return generalized_dice_loss(y_true, y_pred, weight_type=self.weight_type, weight=weight, **arguments)

    def get_config(self):
        config = super().get_config()
        del config["class_weights"]
        return {**config, "weight_type": self.weight_type}


register_alias("dice", DiceLoss)
register_alias("log_dice", DiceLoss, log_dice=True)  # -log(Dice): the configuration that trains from scratch
register_alias("generalized_dice", GeneralizedDiceLoss)
register_alias("tversky", TverskyLoss)
register_alias("focal_tversky", FocalTverskyLoss)
register_alias("jaccard", JaccardLoss)
