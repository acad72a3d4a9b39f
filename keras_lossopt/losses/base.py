"""`LossFunctionBase`, the base of every keras-lossopt loss: the loss contract plus the loss arithmetic.

The contract (Keras masks, `ignore_index` masks, `sample_weight`, reductions) is
`contract.LossContract`; the arithmetic (`FocalLoss() + 0.5 * DiceLoss()` builds a
`CompositeLoss`) is `composite.LossArithmetic`. A new loss subclasses `LossFunctionBase`
(or `SparseTargetLoss` for sparse labels with `ignore_index`) and implements `call`.
"""

from __future__ import annotations

from keras_lossopt._targets import sparse_valid_mask
from keras_lossopt.losses.composite import LossArithmetic
from keras_lossopt.losses.contract import LossContract

__all__ = ["LossFunctionBase", "SparseTargetLoss"]


class LossFunctionBase(LossArithmetic, LossContract):
    """Base class of every keras-lossopt loss (see `keras_lossopt.losses.contract` for the contract).

    Subclasses implement `call(y_true, y_pred)` returning one unreduced value per sample
    (and per spatial position); region and composite losses override
    `compute_reduced_loss` instead. `+` and `*` combine losses into a `CompositeLoss`.

    The constructor is `keras.losses.Loss`'s: `reduction` (default
    `"sum_over_batch_size"`), `name`, and `dtype` (default None: float32 under any mixed
    policy).
    """


class SparseTargetLoss(LossFunctionBase):
    """Base of the softmax losses that take sparse class indices with an `ignore_index`.

    Subclasses set `self.ignore_index` (None or an int); positions whose sparse label
    equals it are masked out of the reduction (mean reductions divide by the others).
    """

    ignore_index = None

    def compute_mask(self, y_true, y_pred):
        return sparse_valid_mask(y_true, y_pred, self.ignore_index)
