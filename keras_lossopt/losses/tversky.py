"""Tversky and focal Tversky losses: overlap losses that weigh false positives and false negatives apart.

On the soft counts of `region.py` (see there for the per-sample convention).
"""

from __future__ import annotations

import keras

from keras_lossopt._validation import (
    check_non_negative,
    check_probability,
)
from keras_lossopt.losses._probabilities import focal_modulator
from keras_lossopt.losses.region import (
    OverlapLoss,
    overlap_values,
    smoothed_ratio,
)
from keras_lossopt.losses.registry import register_alias

__all__ = ["FocalTverskyLoss", "TverskyLoss", "focal_tversky_loss", "tversky_loss"]


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

    return overlap_values(
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


register_alias("tversky", TverskyLoss)
register_alias("focal_tversky", FocalTverskyLoss)
