"""The core of the region losses: soft confusion counts, and the `RegionLoss` / `OverlapLoss` bases.

The overlap losses (Dice, Jaccard: `overlap.py`; Tversky, focal Tversky: `tversky.py`;
generalized Dice: `generalized_dice.py`) are formulas on one set of *soft confusion counts*: per class,
`TP = sum(w * p * t)`, `FP = sum(w * p) - TP` and `FN = sum(w * t) - TP`, summed over
the spatial axes of each image (`per_image=True`) or over the whole batch (batch Dice).
`soft_confusion_counts` computes them once; each loss class only says how it turns the
counts into a per-class loss. `RegionLoss` is also the base of the Lovasz losses (`lovasz.py`).

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

from keras import ops

from keras_lossopt._reduction import reduce_loss_values, replicas_in_sync
from keras_lossopt._targets import OVERLAP_MODES, overlap_inputs, per_class_vector
from keras_lossopt._validation import (
    check_choice,
    check_ignore_index,
    check_non_negative,
    check_per_class,
)
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.losses.contract import FamilyFromMode

__all__: list[str] = []  # bases and helpers of the region loss modules

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


def merge_weights(weight, valid):
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


def overlap_values(
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
    counts = soft_confusion_counts(targets, probs, merge_weights(weight, valid), per_image=per_image, squared=squared)
    per_class, weights = select_classes(per_class_loss(counts), y_pred, include_background, class_weights)
    if weights is None:
        return ops.mean(per_class, axis=-1)
    return ops.sum(per_class * weights, axis=-1) / ops.sum(weights)


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

    loss_family = FamilyFromMode()

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
        self.ignore_index = check_ignore_index(ignore_index)

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
