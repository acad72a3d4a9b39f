"""Generalized Dice loss (Sudre et al. 2017): Dice with classes weighted by their inverse volume.

On the soft counts of `region.py` (see there for the per-sample convention).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import overlap_inputs
from keras_lossopt._validation import (
    check_choice,
)
from keras_lossopt.losses.region import (
    OverlapLoss,
    merge_weights,
    select_classes,
    smoothed_ratio,
    soft_confusion_counts,
)
from keras_lossopt.losses.registry import register_alias

__all__ = ["GeneralizedDiceLoss", "generalized_dice_loss"]


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
    tp, fp, fn = soft_confusion_counts(targets, probs, merge_weights(weight, valid), per_image=per_image)
    if not include_background:
        tp, fp, fn = (select_classes(x, y_pred, include_background=False)[0] for x in (tp, fp, fn))
    weights = _volume_weights(tp + fn, weight_type)
    numerator = 2.0 * ops.sum(weights * tp, axis=-1) + smooth_nr
    denominator = ops.sum(weights * (2.0 * tp + fp + fn), axis=-1) + smooth_dr
    return 1.0 - smoothed_ratio(numerator, denominator)


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


register_alias("generalized_dice", GeneralizedDiceLoss)
