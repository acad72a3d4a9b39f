"""Poly-1 loss (Leng et al. 2022): cross-entropy or focal loss plus `epsilon * (1 - p_t)`."""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._validation import check_choice, check_non_negative
from keras_lossopt.losses._probabilities import cross_entropy, one_hot_rows, power, sigmoid_parts, softmax_parts
from keras_lossopt.losses.base import SparseTargetLoss
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.registry import register_alias
from keras_lossopt.losses.targets import (
    binary_targets,
    multiclass_targets,
    per_class_vector,
    softmax_log_probs,
)

__all__ = ["PolyLoss", "poly_loss"]

BASES = ("cross_entropy", "focal")


def poly_loss(
    y_true,
    y_pred,
    *,
    epsilon=1.0,
    base="cross_entropy",
    mode="multiclass",
    gamma=2.0,
    alpha=None,
    from_logits=False,
    label_smoothing=0.0,
    ignore_index=None,
):
    """Per-sample Poly-1 loss. See `PolyLoss` for the arguments and the formula.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`: one value per sample (and spatial position).
        Positions whose sparse label equals `ignore_index` are 0.
    """
    if base == "focal":
        # The leading term is the focal loss itself, so every target convention and
        # numerical safeguard of `focal_loss` applies unchanged.
        leading = focal_loss(
            y_true,
            y_pred,
            mode=mode,
            gamma=gamma,
            alpha=alpha,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
        )
        exponent = gamma + 1.0
    else:
        leading, exponent = None, 1.0
    if mode == "multiclass":
        targets, _ = multiclass_targets(y_true, y_pred, label_smoothing=label_smoothing, ignore_index=ignore_index)
        if leading is None:
            logits, logsumexp, expect = softmax_parts(y_pred, from_logits)
            alpha_c = per_class_vector("alpha", alpha, y_pred) if isinstance(alpha, tuple) else alpha
            if one_hot_rows(y_true, y_pred, label_smoothing):
                # 1 - p_y = -expm1(-CE) per sample; alpha_y picks the true class' weight.
                unweighted = cross_entropy(targets, logits, logsumexp)
                one_minus_pt = -ops.expm1(-unweighted)
                alpha_y = 1.0 if alpha is None else alpha_c
                if isinstance(alpha, tuple):
                    alpha_y = ops.sum(targets * alpha_c, axis=-1)
                leading = alpha_y * unweighted
            else:
                weighted = targets if alpha is None else targets * alpha_c
                leading = cross_entropy(weighted, logits, logsumexp)
                # sum_c y_c (1 - p_c): 1 - p_t for targets that sum to one, 0 for ignored positions.
                one_minus_pt = ops.sum(targets, axis=-1) - expect(targets)
        else:
            # Same log-probabilities as focal_loss (XLA computes them once); expm1 keeps
            # 1 - p_c accurate when p_c is close to 1, where the focal term is tiny.
            log_p = softmax_log_probs(y_pred, from_logits)
            one_minus_pt = ops.sum(targets * -ops.expm1(log_p), axis=-1)
        return leading + epsilon * power(one_minus_pt, exponent)

    targets, y_pred = binary_targets(y_true, y_pred, label_smoothing=label_smoothing)
    p, one_minus_p, log_p, log_1mp = sigmoid_parts(y_pred, from_logits)
    if leading is None:
        loss = -(targets * log_p + (1.0 - targets) * log_1mp)
        if alpha is not None:
            alpha_t = per_class_vector("alpha", alpha, y_pred) if isinstance(alpha, tuple) else alpha
            loss = (targets * alpha_t + (1.0 - targets) * (1.0 - alpha_t)) * loss
        leading = ops.mean(loss, axis=-1)
    one_minus_pt = targets * one_minus_p + (1.0 - targets) * p
    return leading + epsilon * ops.mean(power(one_minus_pt, exponent), axis=-1)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class PolyLoss(SparseTargetLoss):
    """Poly-1 loss: cross-entropy (or focal loss) plus a first-order polynomial term.

    Use it as a drop-in replacement for cross-entropy or focal loss with one extra knob:
    `epsilon > 0` adds gradient for confident-but-not-saturated predictions (the paper's
    choice for ImageNet classification, `epsilon=1`), `epsilon < 0` removes some (the
    paper's choice for detection with focal loss, `epsilon=-1`). With `epsilon=0` it
    equals the base loss exactly.

    Formula:
        `p_t = sum_c y_c p_c` (multiclass) or `y p + (1 - y)(1 - p)` (sigmoid).

        cross-entropy base: `loss = CE + epsilon * (1 - p_t)`

        focal base: `loss = FL_gamma + epsilon * (1 - p_t)**(gamma + 1)`

        Multiclass losses sum over the class axis like `CategoricalCrossentropy`; binary
        and multilabel losses average both terms over the last axis like
        `BinaryCrossentropy`. `alpha` weights the leading CE/focal term only, as in the
        paper's reference code. For multiclass, `1 - p_t` is computed as
        `sum_c y_c (1 - p_c)` (identical for targets that sum to one).

    Args:
        epsilon: coefficient of the polynomial term, >= -1 (the loss stays non-negative
            and monotone in `p_t`). Default 1.0.
        base: `"cross_entropy"` (default; Poly-1 CE) or `"focal"` (Poly-1 focal).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        gamma: focusing parameter >= 0 of the focal base; ignored for
            `base="cross_entropy"`. Default 2.0.
        alpha: class weight of the leading term, as in `FocalLoss`. Default None.
        from_logits: whether `y_pred` holds logits. Default False.
        label_smoothing: in [0, 1), as in `FocalLoss`; `p_t` uses the smoothed targets
            like the paper's code. Default 0.
        ignore_index: sparse multiclass label that counts nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"poly_loss"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for `epsilon < -1`, an unknown `base` or `mode`, a negative `gamma`,
            an invalid `alpha`, `label_smoothing` outside [0, 1), `ignore_index` outside
            multiclass mode, mismatched shapes or out-of-range sparse labels.

    Example:
        >>> import numpy as np
        >>> y_true = np.array([0, 2])
        >>> logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.2, 3.0]])
        >>> round(float(PolyLoss(epsilon=1.0, from_logits=True)(y_true, logits)), 4)
        0.2923
        >>> ce = float(PolyLoss(epsilon=0.0, from_logits=True)(y_true, logits))
        >>> round(ce, 4)
        0.1517

    References:
        Leng, Tan, Liu, Cubuk, Shi, Cheng, Anguelov, Tan (2022). PolyLoss: A Polynomial
        Expansion Perspective of Classification Loss Functions. ICLR.
    """

    def __init__(
        self,
        epsilon=1.0,
        base="cross_entropy",
        mode="multiclass",
        gamma=2.0,
        alpha=None,
        from_logits=False,
        label_smoothing=0.0,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="poly_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= -1.0:
            raise ValueError(f"`epsilon` must be a number >= -1. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.base = check_choice("base", base, BASES)
        self.gamma = check_non_negative("gamma", gamma)
        # FocalLoss validates the arguments the two losses share, so they stay
        # interchangeable (same allowed values, same messages).
        checked = FocalLoss(
            mode=mode, gamma=self.gamma, alpha=alpha, label_smoothing=label_smoothing, ignore_index=ignore_index
        )
        self.mode = checked.mode
        self.alpha = checked.alpha
        self.from_logits = bool(from_logits)
        self.label_smoothing = checked.label_smoothing
        self.ignore_index = checked.ignore_index

    def call(self, y_true, y_pred):
        return poly_loss(
            y_true,
            y_pred,
            epsilon=self.epsilon,
            base=self.base,
            mode=self.mode,
            gamma=self.gamma,
            alpha=self.alpha,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "base": self.base,
            "mode": self.mode,
            "gamma": self.gamma,
            "alpha": list(self.alpha) if isinstance(self.alpha, tuple) else self.alpha,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "ignore_index": self.ignore_index,
        }


register_alias("poly", PolyLoss)
register_alias("poly1", PolyLoss)
register_alias("poly1_ce", PolyLoss)
register_alias("poly1_focal", PolyLoss, base="focal")
register_alias("poly_focal", PolyLoss, base="focal")
register_alias("binary_poly1", PolyLoss, mode="binary")
register_alias("multilabel_poly1", PolyLoss, mode="multilabel")
