"""Dice plus a per-pixel loss: `DiceCELoss` and `DiceFocalLoss`, the combinations used in practice.

Both are `CompositeLoss`es with two terms, `"dice"` and `"ce"` (or
`"focal"`): `dice_weight * dice(y, p, w) + other_weight * other(y, p, w)`, each child
reduced by the compound's `reduction` with the same `sample_weight` and input mask. Both
children keep their own contracts (the Dice part is per image or per batch, the
cross-entropy part per pixel), so the sum is exact under every reduction and under
`tf.distribute`. With `reduction="none"` the result has one value per image: the
per-pixel part is averaged over each image's valid pixels and added to the per-image Dice
(a batch Dice, a single value, is added to every image).

Being composites, their weights can be scheduled or balanced during training
(`LossWeightScheduler({"dice": ...})`) and each part is logged (`loss_dice`, `loss_ce`)
once the model tracks the terms. Their configs name the two children and their weights
(`dice`, `cross_entropy`/`focal`, `dice_weight`, ...), not the composite's `terms`/`weights`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import sparse_valid_mask
from keras_lossopt._validation import check_choice, check_ignore_index, check_non_negative
from keras_lossopt.losses.composite import CompositeLoss
from keras_lossopt.losses.contract import FamilyFromMode
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.overlap import DiceLoss, dice_loss
from keras_lossopt.losses.region import MODES
from keras_lossopt.losses.registry import register_alias

__all__ = ["DiceCELoss", "DiceFocalLoss", "dice_ce_loss", "dice_focal_loss"]


def _dice_plus_pixel_loss(y_true, y_pred, dice_weight, pixel_weight, *, gamma, mode, from_logits, ignore_index):
    """`dice_weight * dice + pixel_weight * focal`, one value per image (the composite's "none" values)."""
    mode = check_choice("mode", mode, MODES)
    ignore_index = check_ignore_index(ignore_index, mode)
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    dice = dice_loss(y_true, y_pred, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    pixels = focal_loss(y_true, y_pred, mode=mode, gamma=gamma, from_logits=from_logits, ignore_index=ignore_index)
    axes = tuple(range(1, len(pixels.shape)))
    if axes:
        # The per-pixel part averaged over each image's valid pixels, as a composite does.
        valid = sparse_valid_mask(y_true, y_pred, ignore_index)
        if valid is None:
            pixels = ops.mean(pixels, axis=axes)
        else:
            valid = ops.broadcast_to(ops.cast(valid, pixels.dtype), ops.shape(pixels))
            pixels = ops.sum(pixels * valid, axis=axes) / ops.maximum(ops.sum(valid, axis=axes), 1.0)
    return check_non_negative("dice_weight", dice_weight) * dice + pixel_weight * pixels


def dice_ce_loss(
    y_true, y_pred, *, dice_weight=1.0, ce_weight=1.0, mode="multiclass", from_logits=False, ignore_index=None
):
    """Per-image soft Dice plus cross-entropy. See `DiceCELoss` for the arguments and the formula.

    Args:
        y_true: sparse labels `(N, H, W)` or targets of the shape of `y_pred`.
        y_pred: probabilities or logits `(N, H, W, C)`.
        dice_weight: weight of the Dice part, >= 0. Default 1.0.
        ce_weight: weight of the cross-entropy part, >= 0. Default 1.0.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        from_logits: whether `y_pred` holds logits. Default False.
        ignore_index: sparse label counted nowhere (multiclass). Default None.

    Returns:
        `(N,)` values: the per-image Dice plus the cross-entropy averaged over each image's
        valid pixels (what `DiceCELoss(reduction="none")` gives).
    """
    ce_weight = check_non_negative("ce_weight", ce_weight)
    return _dice_plus_pixel_loss(
        y_true, y_pred, dice_weight, ce_weight, gamma=0.0, mode=mode, from_logits=from_logits, ignore_index=ignore_index
    )


def dice_focal_loss(
    y_true,
    y_pred,
    *,
    dice_weight=1.0,
    focal_weight=1.0,
    gamma=2.0,
    mode="multiclass",
    from_logits=False,
    ignore_index=None,
):
    """Per-image soft Dice plus focal loss. See `DiceFocalLoss` for the arguments and the formula.

    Args:
        y_true: sparse labels `(N, H, W)` or targets of the shape of `y_pred`.
        y_pred: probabilities or logits `(N, H, W, C)`.
        dice_weight: weight of the Dice part, >= 0. Default 1.0.
        focal_weight: weight of the focal part, >= 0. Default 1.0.
        gamma: focusing parameter of the focal part. Default 2.0.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        from_logits: whether `y_pred` holds logits. Default False.
        ignore_index: sparse label counted nowhere (multiclass). Default None.

    Returns:
        `(N,)` values, as `DiceFocalLoss(reduction="none")` gives.
    """
    focal_weight = check_non_negative("focal_weight", focal_weight)
    return _dice_plus_pixel_loss(
        y_true,
        y_pred,
        dice_weight,
        focal_weight,
        gamma=gamma,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
    )


def _child(loss, what):
    if isinstance(loss, dict):
        loss = keras.saving.deserialize_keras_object(loss)
    if not isinstance(loss, keras.losses.Loss):
        raise ValueError(f"`{what}` must be a keras.losses.Loss or its config. Received: {what}={loss!r}")
    return loss


class CompoundLoss(CompositeLoss):
    """A two-term composite, Dice plus a per-pixel loss, configured by its two children and their weights."""

    loss_family = FamilyFromMode()

    other_key = "other"

    def __init__(self, dice, other, dice_weight, other_weight, reduction, name, dtype):
        weights = {
            "dice": check_non_negative("dice_weight", dice_weight),
            self.other_key: check_non_negative(f"{self.other_key}_weight", other_weight),
        }
        terms = {"dice": _child(dice, "dice"), self.other_key: _child(other, self.other_key)}
        super().__init__(terms, weights, reduction=reduction, name=name, dtype=dtype)

    @property
    def dice(self) -> keras.losses.Loss:
        """The Dice term."""
        return self.terms["dice"]

    @property
    def other(self) -> keras.losses.Loss:
        """The per-pixel term (cross-entropy or focal)."""
        return self.terms[self.other_key]

    @property
    def dice_weight(self) -> float:
        """The current weight of the Dice term."""
        return self.weights_dict()["dice"]

    @property
    def other_weight(self) -> float:
        """The current weight of the per-pixel term."""
        return self.weights_dict()[self.other_key]

    def get_config(self):
        # The two children and their weights by name (no "terms"/"weights"): the arguments of __init__.
        weights = self.weights_dict()
        return {
            "name": self.name,
            "reduction": self.reduction,
            "dtype": self.dtype,
            "dice": keras.saving.serialize_keras_object(self.dice),
            self.other_key: keras.saving.serialize_keras_object(self.other),
            "dice_weight": weights["dice"],
            f"{self.other_key}_weight": weights[self.other_key],
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _default_children(mode, from_logits, ignore_index, dtype, gamma):
    mode = check_choice("mode", mode, MODES)
    ignore_index = check_ignore_index(ignore_index, mode)
    dice = DiceLoss(mode=mode, from_logits=from_logits, ignore_index=ignore_index, dtype=dtype)
    other = FocalLoss(mode=mode, gamma=gamma, from_logits=from_logits, ignore_index=ignore_index, dtype=dtype)
    return dice, other


@keras.saving.register_keras_serializable(package="keras_lossopt")
class DiceCELoss(CompoundLoss):
    """Soft Dice plus cross-entropy, the usual default for semantic segmentation.

    Use it when Dice alone trains slowly or unstably: cross-entropy gives every pixel a
    gradient from the start, Dice keeps small classes from being ignored.

    Formula:
        `loss = dice_weight * Dice(y, p) + ce_weight * CE(y, p)`, each part reduced by
        `reduction` with the same `sample_weight` (see the module docstring).

    Args:
        dice_weight: weight of the Dice part, >= 0. Default 1.0.
        ce_weight: weight of the cross-entropy part, >= 0. Default 1.0.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        from_logits: whether `y_pred` holds logits. Default False.
        ignore_index: sparse label counted nowhere (multiclass). Default None.
        dice: a Dice loss to use instead of `DiceLoss(mode, from_logits, ignore_index)`
            (an instance or its config). Default None.
        cross_entropy: a per-pixel loss to use instead of the cross-entropy, i.e.
            `FocalLoss(gamma=0, ...)`. Default None.
        reduction: Keras reduction, applied to both parts. Default `"sum_over_batch_size"`.
        name: loss name. Default `"dice_ce_loss"`.
        dtype: computation dtype. Default None.

    Returns:
        A scalar, or `(N,)` per-image values for `reduction="none"`.

    Raises:
        ValueError: for negative weights, an unknown `mode`, or children that are not losses.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> round(float(DiceCELoss()(y_true, probs)), 4)
        0.2851

    References:
        Isensee, Jaeger, Kohl, Petersen, Maier-Hein (2021). nnU-Net: a self-configuring
        method for deep learning-based biomedical image segmentation. Nature Methods.
    """

    other_key = "ce"

    def __init__(
        self,
        dice_weight=1.0,
        ce_weight=1.0,
        mode="multiclass",
        from_logits=False,
        ignore_index=None,
        dice=None,
        cross_entropy=None,
        reduction="sum_over_batch_size",
        name="dice_ce_loss",
        dtype=None,
    ):
        default_dice, default_ce = _default_children(mode, from_logits, ignore_index, dtype, gamma=0.0)
        self.mode, self.from_logits, self.ignore_index = mode, bool(from_logits), ignore_index
        super().__init__(
            default_dice if dice is None else dice,
            default_ce if cross_entropy is None else cross_entropy,
            dice_weight,
            ce_weight,
            reduction,
            name,
            dtype,
        )

    def get_config(self):
        config = super().get_config()
        config["cross_entropy"] = config.pop("ce")
        return {**config, "mode": self.mode, "from_logits": self.from_logits, "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class DiceFocalLoss(CompoundLoss):
    """Soft Dice plus focal loss, for segmentation with many easy background pixels.

    Formula:
        `loss = dice_weight * Dice(y, p) + focal_weight * Focal_gamma(y, p)`, each part
        reduced by `reduction` with the same `sample_weight`.

    Args:
        dice_weight: weight of the Dice part, >= 0. Default 1.0.
        focal_weight: weight of the focal part, >= 0. Default 1.0.
        gamma: focusing parameter of the default focal part. Default 2.0.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        from_logits: whether `y_pred` holds logits. Default False.
        ignore_index: sparse label counted nowhere (multiclass). Default None.
        dice: a Dice loss to use instead of the default (instance or config). Default None.
        focal: a focal loss to use instead of `FocalLoss(gamma, ...)`. Default None.
        reduction: Keras reduction, applied to both parts. Default `"sum_over_batch_size"`.
        name: loss name. Default `"dice_focal_loss"`.
        dtype: computation dtype. Default None.
        dtype: computation dtype. Default None.

    Returns:
        A scalar, or `(N,)` per-image values for `reduction="none"`.

    Raises:
        ValueError: as `DiceCELoss`.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> round(float(DiceFocalLoss(focal_weight=2.0)(y_true, probs)), 4)
        0.1471

    References:
        Zhu et al. (2019). AnatomyNet: Deep learning for fast and fully automated whole-volume
        segmentation of head and neck anatomy. Medical Physics.
    """

    other_key = "focal"

    def __init__(
        self,
        dice_weight=1.0,
        focal_weight=1.0,
        gamma=2.0,
        mode="multiclass",
        from_logits=False,
        ignore_index=None,
        dice=None,
        focal=None,
        reduction="sum_over_batch_size",
        name="dice_focal_loss",
        dtype=None,
    ):
        default_dice, default_focal = _default_children(mode, from_logits, ignore_index, dtype, gamma=gamma)
        self.mode, self.from_logits, self.ignore_index = mode, bool(from_logits), ignore_index
        self.gamma = default_focal.gamma
        super().__init__(
            default_dice if dice is None else dice,
            default_focal if focal is None else focal,
            dice_weight,
            focal_weight,
            reduction,
            name,
            dtype,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "mode": self.mode,
            "from_logits": self.from_logits,
            "ignore_index": self.ignore_index,
        }


register_alias("dice_ce", DiceCELoss)
register_alias("dice_focal", DiceFocalLoss)
