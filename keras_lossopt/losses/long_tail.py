"""Losses for long-tailed labels: logit adjustment (Menon et al. 2021) and LDAM (Cao et al. 2019)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._targets import multiclass_targets
from keras_lossopt._validation import check_ignore_index, check_in_range, check_non_negative, check_positive
from keras_lossopt.losses._probabilities import cross_entropy, softmax_parts
from keras_lossopt.losses.base import SparseTargetLoss
from keras_lossopt.losses.class_balanced import check_class_counts, check_num_classes
from keras_lossopt.losses.registry import register_alias

__all__ = ["LDAMLoss", "LogitAdjustedLoss", "ldam_loss", "ldam_margins", "logit_adjusted_loss"]


def _cross_entropy_from_logits(targets, logits, stabilizer):
    logits, logsumexp, _ = softmax_parts(logits, from_logits=True, stabilizer=stabilizer)
    return cross_entropy(targets, logits, logsumexp)


def logit_adjusted_loss(y_true, y_pred, *, log_priors, tau=1.0, label_smoothing=0.0, ignore_index=None):
    """Per-sample logit-adjusted softmax cross-entropy. See `LogitAdjustedLoss`.

    Args:
        log_priors: `log(pi_c)`, one value per class of `y_pred`.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`; 0 where the sparse label is `ignore_index`.
    """
    y_pred = ops.convert_to_tensor(y_pred)  # NumPy input: torch tensors do not mix with arrays in `+`
    targets, _ = multiclass_targets(y_true, y_pred, label_smoothing=label_smoothing, ignore_index=ignore_index)
    shift = np.asarray(log_priors, np.float64) * tau
    # max(z) plus the middle of the shifts keeps every exponent within half their spread
    # (tau * log(max prior / min prior)) of 0, without a max over the shifted logits.
    middle = 0.5 * (shift.max() + shift.min())
    stabilizer = ops.max(y_pred, axis=-1, keepdims=True) + middle
    return _cross_entropy_from_logits(targets, y_pred + ops.convert_to_tensor(shift, y_pred.dtype), stabilizer)


def ldam_margins(class_counts, max_margin=0.5) -> np.ndarray:
    """LDAM's per-class margins `m_c ~ n_c**(-1/4)`, rescaled so that the largest is `max_margin`.

    Examples:
        >>> ldam_margins([10000, 100, 1]).round(4).tolist()
        [0.05, 0.1581, 0.5]
    """
    counts = np.asarray(check_class_counts("class_counts", class_counts), np.float64)
    margins = counts**-0.25
    return margins * (check_positive("max_margin", max_margin) / margins.max())


def ldam_loss(y_true, y_pred, *, class_counts, max_margin=0.5, s=30.0, ignore_index=None):
    """Per-sample LDAM loss. See `LDAMLoss` for the arguments and the formula.

    Args:
        y_true: sparse class indices `(N, ...)` or one-hot targets of the shape of `y_pred`.
        y_pred: logits `(N, ..., C)`.
        class_counts: training samples per class (the margins follow `ldam_margins`).
        max_margin: the largest margin, the rarest class'. Default 0.5.
        s: logit scale. Default 30.0.
        ignore_index: sparse label whose positions are 0. Default None.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`; 0 where the sparse label is `ignore_index`.
    """
    margins = ldam_margins(check_class_counts("class_counts", class_counts), check_positive("max_margin", max_margin))
    return _ldam_from_margins(y_true, y_pred, margins, check_positive("s", s), check_ignore_index(ignore_index))


def _ldam_from_margins(y_true, y_pred, margins, scale, ignore_index):
    y_pred = ops.convert_to_tensor(y_pred)  # NumPy input: torch tensors do not mix with arrays in `-`
    targets, _ = multiclass_targets(y_true, y_pred, ignore_index=ignore_index)
    largest = float(np.max(margins))
    margins = ops.convert_to_tensor(np.asarray(margins, np.float64), dtype=y_pred.dtype)
    # For one-hot targets `targets * margins` subtracts m_y from the true-class logit only,
    # exactly the official `torch.where(index, x - m_y, x)`. Margins lower logits by at most
    # the largest one, so s * (max(z) - largest / 2) keeps the exponents within
    # s * largest / 2 of 0 (7.5 with the defaults).
    stabilizer = scale * (ops.max(y_pred, axis=-1, keepdims=True) - 0.5 * largest)
    return _cross_entropy_from_logits(targets, scale * (y_pred - targets * margins), stabilizer)


def _check_classes(name, values, y_true, y_pred, ignore_index):
    if y_pred.shape[-1] is not None and y_pred.shape[-1] != len(values):
        # A y_true that does not fit y_pred is the more basic error: report it first.
        multiclass_targets(y_true, y_pred, ignore_index=ignore_index)
        check_num_classes(name, values, y_pred)


def _priors_from(class_counts, class_priors):
    if (class_counts is None) == (class_priors is None):
        raise ValueError(
            "Give exactly one of `class_counts` and `class_priors`. "
            f"Received: class_counts={class_counts!r}, class_priors={class_priors!r}"
        )
    if class_counts is not None:
        counts = check_class_counts("class_counts", class_counts)
        return counts, None, np.asarray(counts) / np.sum(counts)
    priors = check_class_counts("class_priors", class_priors)
    return None, priors, np.asarray(priors) / np.sum(priors)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class LogitAdjustedLoss(SparseTargetLoss):
    """Logit-adjusted softmax cross-entropy for long-tailed (imbalanced) classes.

    Use it when the training labels are imbalanced but the metric weights classes equally
    (balanced error, macro-F1): adding `tau * log(prior)` to the logits during training
    makes the plain `argmax` of the trained model approximate the balanced-error optimum,
    without re-weighting or re-sampling. Predict with the raw logits.

    Formula:
        `loss = -sum_c y_c log softmax(z + tau * log(pi))_c` with `pi_c = n_c / sum(n)`.
        With uniform priors (or `tau = 0`) it equals softmax cross-entropy.

    Args:
        class_counts: training samples per class (positive), one per class. Give this or
            `class_priors`.
        class_priors: class priors (positive; normalized to sum to one). Default None.
        tau: temperature of the adjustment, >= 0. Default 1.0 (the paper's choice).
        label_smoothing: in [0, 1). Default 0.
        ignore_index: sparse label that counts nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"logit_adjusted_loss"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Note:
        `y_pred` must be logits (the loss shifts them); targets are sparse or one-hot.

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: unless exactly one of `class_counts`/`class_priors` is given with
            positive values; for a negative `tau`; when the number of classes differs from
            `y_pred`'s (naming both); for mismatched shapes or out-of-range labels.

    Examples:
        >>> import numpy as np
        >>> loss = LogitAdjustedLoss(class_counts=[90, 10])
        >>> round(float(loss(np.array([1]), np.array([[0.0, 0.0]]))), 4)
        2.3026

    References:
        Menon, Jayasumana, Rawat, Jain, Veit, Kumar (2021). Long-Tail Learning via Logit
        Adjustment. ICLR.
    """

    loss_family = "softmax_ce"

    def __init__(
        self,
        class_counts=None,
        class_priors=None,
        tau=1.0,
        label_smoothing=0.0,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="logit_adjusted_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_counts, self.class_priors, priors = _priors_from(class_counts, class_priors)
        self.log_priors = np.log(priors)
        self.tau = check_non_negative("tau", tau)
        self.label_smoothing = check_in_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        given = "class_counts" if self.class_counts is not None else "class_priors"
        _check_classes(given, self.class_counts or self.class_priors, y_true, y_pred, self.ignore_index)
        return logit_adjusted_loss(
            y_true,
            y_pred,
            log_priors=self.log_priors,
            tau=self.tau,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "class_counts": None if self.class_counts is None else list(self.class_counts),
            "class_priors": None if self.class_priors is None else list(self.class_priors),
            "tau": self.tau,
            "label_smoothing": self.label_smoothing,
            "ignore_index": self.ignore_index,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class LDAMLoss(SparseTargetLoss):
    """Label-distribution-aware margin (LDAM) loss for long-tailed classes.

    Use it for imbalanced training sets: rare classes get larger margins, which the paper
    shows tightens their generalization bound. It is usually paired with deferred
    re-weighting (DRW: plain LDAM first, then class-balanced weights; e.g. wrap it in
    `ClassBalancedLoss` for the late epochs). The paper scales cosine logits of normalized
    features; with unnormalized logits consider a smaller `s`.

    Formula (as in the official implementation):
        `m_c = max_margin * n_c**(-1/4) / max_k n_k**(-1/4)`

        `loss = CE(y, softmax(s * (z - y * m)))`: the true-class logit is lowered by its
        margin, then all logits are scaled by `s`. With equal counts every margin is
        `max_margin`.

    Args:
        class_counts: training samples per class (positive), one per class.
        max_margin: the largest margin (of the rarest class), > 0. Default 0.5.
        s: logit scale, > 0. Default 30.0.
        ignore_index: sparse label that counts nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"ldam_loss"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Note:
        `y_pred` must be logits; targets are sparse or one-hot.

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for counts that are not positive, `max_margin <= 0` or `s <= 0`; when
            the number of classes differs from `y_pred`'s (naming both); for mismatched
            shapes or out-of-range labels.

    Examples:
        >>> import numpy as np
        >>> loss = LDAMLoss(class_counts=[100, 1], s=1.0)
        >>> round(float(loss(np.array([1]), np.array([[0.0, 0.0]]))), 4)
        0.9741

    References:
        Cao, Wei, Gaidon, Arechiga, Ma (2019). Learning Imbalanced Datasets with
        Label-Distribution-Aware Margin Loss. NeurIPS.
    """

    loss_family = "softmax_ce"

    def __init__(
        self,
        class_counts,
        max_margin=0.5,
        s=30.0,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="ldam_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_counts = check_class_counts("class_counts", class_counts)
        self.max_margin = check_positive("max_margin", max_margin)
        self.s = check_positive("s", s)
        self.margins = ldam_margins(self.class_counts, self.max_margin)
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        _check_classes("class_counts", self.class_counts, y_true, y_pred, self.ignore_index)
        return _ldam_from_margins(y_true, y_pred, self.margins, self.s, self.ignore_index)

    def get_config(self):
        return {
            **super().get_config(),
            "class_counts": list(self.class_counts),
            "max_margin": self.max_margin,
            "s": self.s,
            "ignore_index": self.ignore_index,
        }


register_alias("logit_adjusted", LogitAdjustedLoss)
register_alias("logit_adjustment", LogitAdjustedLoss)
register_alias("la", LogitAdjustedLoss)
register_alias("ldam", LDAMLoss)
