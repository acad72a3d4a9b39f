"""Poly-1 loss (Leng et al. 2022): cross-entropy or focal loss plus `epsilon * (1 - p_t)`."""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import (
    binary_targets,
    multiclass_targets,
    per_class_vector,
    softmax_log_probs,
)
from keras_lossopt._validation import check_choice, check_non_negative
from keras_lossopt.losses._probabilities import cross_entropy, one_hot_rows, power, sigmoid_parts, softmax_parts
from keras_lossopt.losses.base import SparseTargetLoss
from keras_lossopt.losses.contract import FamilyFromMode
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.registry import register_alias

__all__ = ["PolyLoss", "poly1_term", "poly_loss"]

BASES = ("cross_entropy", "focal")


def poly1_term(
    y_true,
    y_pred,
    *,
    exponent=1.0,
    mode="multiclass",
    alpha=None,
    from_logits=False,
    label_smoothing=0.0,
    ignore_index=None,
):
    """Per-sample Poly-1 term `alpha_t * (1 - p_t) ** exponent` (without `epsilon`).

    Args:
        y_true: targets, as for `FocalLoss`.
        y_pred: predictions (probabilities, or logits with `from_logits=True`).
        exponent: power of `1 - p_t`: 1 on a cross-entropy, `gamma + 1` on a focal loss.
        mode: `"multiclass"` (softmax), `"binary"` or `"multilabel"` (sigmoid).
        alpha: class weight as in `FocalLoss`; `alpha_t` is `y alpha + (1 - y)(1 - alpha)`
            (sigmoid) or `sum_c y_c alpha_c` (multiclass; a scalar alpha scales). None: 1.
        from_logits: whether `y_pred` holds logits.
        label_smoothing: smoothing of the targets that define `p_t`.
        ignore_index: sparse multiclass label whose positions get 0.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`: sigmoid terms averaged over the last axis,
        multiclass `1 - p_t = sum_c y_c (1 - p_c)`.
    """
    if mode == "multiclass":
        targets, _ = multiclass_targets(y_true, y_pred, label_smoothing=label_smoothing, ignore_index=ignore_index)
        if one_hot_rows(y_true, y_pred, label_smoothing):
            # 1 - p_y = -expm1(-CE): one expm1 per sample instead of one per class.
            logits, logsumexp, _ = softmax_parts(y_pred, from_logits)
            one_minus_pt = -ops.expm1(-cross_entropy(targets, logits, logsumexp))
        elif exponent == 1.0:
            # sum_c y_c - sum_c y_c p_c from the softmax' own exps (no p tensor).
            _, _, expect = softmax_parts(y_pred, from_logits)
            one_minus_pt = ops.sum(targets, axis=-1) - expect(targets)
        else:
            # expm1 keeps 1 - p_c accurate when p_c is close to 1, where the focal term is tiny.
            one_minus_pt = ops.sum(targets * -ops.expm1(softmax_log_probs(y_pred, from_logits)), axis=-1)
        term = power(one_minus_pt, exponent)
        if alpha is None:
            return term
        if isinstance(alpha, tuple):
            return ops.sum(targets * per_class_vector("alpha", alpha, y_pred), axis=-1) * term
        return alpha * term
    targets, y_pred = binary_targets(y_true, y_pred, label_smoothing=label_smoothing)
    p, one_minus_p, _, _ = sigmoid_parts(y_pred, from_logits)
    term = power(targets * one_minus_p + (1.0 - targets) * p, exponent)
    if alpha is not None:
        alpha_t = per_class_vector("alpha", alpha, y_pred) if isinstance(alpha, tuple) else alpha
        term = (targets * alpha_t + (1.0 - targets) * (1.0 - alpha_t)) * term
    return ops.mean(term, axis=-1)


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
    """Per-sample Poly-1 loss: the base loss plus `epsilon` times `poly1_term`.

    See `PolyLoss` for the arguments and the formula. The cross-entropy base is the focal
    loss with `gamma=0`.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`: one value per sample (and spatial position).
        Positions whose sparse label equals `ignore_index` are 0.
    """
    gamma = gamma if base == "focal" else 0.0
    shared = dict(mode=mode, alpha=alpha, from_logits=from_logits, label_smoothing=label_smoothing)
    shared["ignore_index"] = ignore_index
    return focal_loss(y_true, y_pred, gamma=gamma, **shared) + epsilon * poly1_term(
        y_true, y_pred, exponent=gamma + 1.0, **shared
    )


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

        With `alpha`, both terms are weighted by `alpha_t` (sigmoid:
        `alpha_t = y alpha + (1 - y)(1 - alpha)`; multiclass: `alpha_t = sum_c y_c alpha_c`,
        or the scalar): `loss = FL_alpha + epsilon * alpha_t * (1 - p_t)**(gamma + 1)`. This
        follows the Poly-1 focal listing of the paper (Leng et al. 2022, appendix code:
        `Poly1 = FL + epsilon * tf.math.pow(1 - pt, gamma + 1) * weight`) and nnDetection's
        `poly1_focal_loss_with_logits` / `poly1_bce_with_logits` (MIC-DKFZ/nnDetection,
        `nndet/losses/classification/functional/poly1.py`), which weight the whole loss by
        `alpha_t`; the listing defines the sigmoid case, and multiclass uses the same rule.

        Multiclass losses sum over the class axis like `CategoricalCrossentropy`; binary
        and multilabel losses average both terms over the last axis like
        `BinaryCrossentropy`. For multiclass, `1 - p_t` is computed as
        `sum_c y_c (1 - p_c)` (identical for targets that sum to one).

        The loss is built by composition: its base is a `FocalLoss` (`gamma=0` for the
        cross-entropy base) and `poly1_term` is added on top, as optax' `poly_loss_cross_entropy`
        adds one line to its cross-entropy.

    Args:
        epsilon: coefficient of the polynomial term, >= -1 (the loss stays non-negative
            and monotone in `p_t`). Default 1.0.
        base: `"cross_entropy"` (default; Poly-1 CE) or `"focal"` (Poly-1 focal).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoid).
        gamma: focusing parameter >= 0 of the focal base; ignored for
            `base="cross_entropy"`. Default 2.0.
        alpha: class weight, as in `FocalLoss`; weights both terms (see Formula). Default None.
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

    Examples:
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

    loss_family = FamilyFromMode()

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
        # The base loss is the leading term; it also validates the arguments the two
        # losses share, so they report the same allowed values and messages.
        self.base_loss = FocalLoss(
            mode=mode,
            gamma=self.gamma if self.base == "focal" else 0.0,
            alpha=alpha,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
            dtype=dtype,
        )
        self.mode = self.base_loss.mode
        self.alpha = self.base_loss.alpha
        self.from_logits = self.base_loss.from_logits
        self.label_smoothing = self.base_loss.label_smoothing
        self.ignore_index = self.base_loss.ignore_index

    def call(self, y_true, y_pred):
        poly1 = poly1_term(
            y_true,
            y_pred,
            exponent=self.base_loss.gamma + 1.0,
            mode=self.mode,
            alpha=self.alpha,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )
        return self.base_loss.call(y_true, y_pred) + self.epsilon * poly1

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
