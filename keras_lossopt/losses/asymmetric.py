"""Asymmetric loss (Ridnik et al. 2021) for multi-label classification."""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import binary_targets
from keras_lossopt._validation import check_in_range, check_non_negative
from keras_lossopt.losses._probabilities import power, sigmoid_parts
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.losses.registry import register_alias

__all__ = ["AsymmetricLoss", "asymmetric_loss"]


def asymmetric_loss(
    y_true,
    y_pred,
    *,
    gamma_pos=1.0,
    gamma_neg=4.0,
    clip=0.05,
    from_logits=False,
    label_smoothing=0.0,
):
    """Per-sample asymmetric loss. See `AsymmetricLoss` for the arguments and the formula.

    Returns:
        Tensor of shape `y_pred.shape[:-1]` (rank-1 inputs count as `(N, 1)`): the loss
        averaged over the last (label) axis.
    """
    targets, y_pred = binary_targets(y_true, y_pred, label_smoothing=label_smoothing)
    prob, one_minus_p, log_p, log_1mp = sigmoid_parts(y_pred, from_logits)
    positive = power(one_minus_p, gamma_pos) * log_p
    if clip > 0:
        # Shifted probability p_m = max(p - clip, 0): 1 - p_m = min(1 - p + clip, 1) is at
        # least `clip`, so its log is finite without any epsilon.
        shifted = ops.maximum(prob - clip, 0.0)
        log_1m_shifted = ops.log(ops.minimum(one_minus_p + clip, 1.0))
    else:
        shifted, log_1m_shifted = prob, log_1mp
    negative = power(shifted, gamma_neg) * log_1m_shifted
    loss = -(targets * positive + (1.0 - targets) * negative)
    return ops.mean(loss, axis=-1)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class AsymmetricLoss(LossFunctionBase):
    """Asymmetric loss (ASL): focal loss with separate focusing for positives and negatives.

    Use it for multi-label classification with many more negative than positive labels
    per sample (tagging, multi-label images): a large `gamma_neg` down-weights easy
    negatives, and the probability margin `clip` discards very easy negatives altogether
    (and rejects possibly mislabeled negatives), while `gamma_pos` stays small so that
    positives keep their gradient.

    Formula:
        `p_m = max(p - clip, 0)` (shifted probability, used for negatives only)

        `loss = mean_c -[ y (1 - p)**gamma_pos log(p) + (1 - y) p_m**gamma_neg log(1 - p_m) ]`

        averaged over the last axis like `keras.losses.BinaryCrossentropy`. The official
        implementation *sums* over labels (and over the batch); multiply by the number of
        labels to get its per-sample value. Its default also treats the focusing weights as
        constants in the backward pass (`disable_torch_grad_focal_loss`); here the full
        gradient of the formula is used. With `gamma_pos = gamma_neg = clip = 0` the loss
        equals binary cross-entropy.

    Args:
        gamma_pos: focusing parameter >= 0 of positive labels. Default 1.0 (the official
            implementation's default; the paper's experiments mostly use 0).
        gamma_neg: focusing parameter >= 0 of negative labels. Default 4.0.
        clip: probability margin in [0, 1) for negatives. Default 0.05.
        from_logits: whether `y_pred` holds logits (computed through log-sigmoid, finite
            for logits of any size). Default False.
        label_smoothing: in [0, 1); targets become `y*(1-ls) + ls/2`. Default 0.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"asymmetric_loss"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for a negative `gamma_pos`/`gamma_neg`, `clip` or `label_smoothing`
            outside [0, 1), or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[1.0, 0.0, 0.0, 1.0]])
        >>> logits = np.array([[2.0, -3.0, 0.5, 1.0]])
        >>> round(float(AsymmetricLoss(from_logits=True)(y_true, logits)), 4)
        0.0477

    References:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor (2021). Asymmetric
        Loss For Multi-Label Classification. ICCV.
    """

    def __init__(
        self,
        gamma_pos=1.0,
        gamma_neg=4.0,
        clip=0.05,
        from_logits=False,
        label_smoothing=0.0,
        reduction="sum_over_batch_size",
        name="asymmetric_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma_pos = check_non_negative("gamma_pos", gamma_pos)
        self.gamma_neg = check_non_negative("gamma_neg", gamma_neg)
        self.clip = check_in_range("clip", clip, 0.0, 1.0, high_inclusive=False)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_in_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)

    def call(self, y_true, y_pred):
        return asymmetric_loss(
            y_true,
            y_pred,
            gamma_pos=self.gamma_pos,
            gamma_neg=self.gamma_neg,
            clip=self.clip,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "gamma_pos": self.gamma_pos,
            "gamma_neg": self.gamma_neg,
            "clip": self.clip,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


register_alias("asymmetric", AsymmetricLoss)
register_alias("asl", AsymmetricLoss)
