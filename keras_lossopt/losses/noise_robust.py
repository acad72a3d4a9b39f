"""Losses robust to label noise: generalized (Zhang & Sabuncu 2018) and symmetric (Wang et al. 2019) CE."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._targets import multiclass_targets
from keras_lossopt._validation import check_ignore_index, check_in_range, check_non_negative
from keras_lossopt.losses._probabilities import cross_entropy, one_hot_rows, softmax_parts
from keras_lossopt.losses.base import SparseTargetLoss
from keras_lossopt.losses.registry import register_alias

__all__ = [
    "GeneralizedCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
    "generalized_cross_entropy_loss",
    "symmetric_cross_entropy_loss",
]


def generalized_cross_entropy_loss(y_true, y_pred, *, q=0.7, from_logits=False, label_smoothing=0.0, ignore_index=None):
    """Per-sample generalized cross-entropy. See `GeneralizedCrossEntropyLoss`.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`; 0 where the sparse label is `ignore_index`.
    """
    targets, _ = multiclass_targets(y_true, y_pred, label_smoothing=label_smoothing, ignore_index=ignore_index)
    logits, logsumexp, _ = softmax_parts(y_pred, from_logits)
    # (1 - p**q) / q = -expm1(q log p) / q: exact from log-probabilities, no cancellation
    # for small q, and it tends to -log p as q -> 0.
    if one_hot_rows(y_true, y_pred, label_smoothing):
        # One-hot rows: sum_c y_c f(log p_c) = f(log p_y) with log p_y = -CE: one expm1
        # per sample instead of one per class (ignored rows give f(0) = 0).
        return -ops.expm1(-q * cross_entropy(targets, logits, logsumexp)) / q
    log_p = logits - ops.expand_dims(logsumexp, -1)
    return ops.sum(targets * (-ops.expm1(q * log_p) / q), axis=-1)


def symmetric_cross_entropy_loss(
    y_true, y_pred, *, alpha=0.1, beta=1.0, log_zero=-4.0, from_logits=False, label_smoothing=0.0, ignore_index=None
):
    """Per-sample symmetric cross-entropy. See `SymmetricCrossEntropyLoss`.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`; 0 where the sparse label is `ignore_index`.
    """
    targets, valid = multiclass_targets(y_true, y_pred, label_smoothing=label_smoothing, ignore_index=ignore_index)
    logits, logsumexp, expect = softmax_parts(y_pred, from_logits)
    forward = cross_entropy(targets, logits, logsumexp)
    if one_hot_rows(y_true, y_pred, label_smoothing) and from_logits:
        # One-hot rows: log y_k is 0 on the label and A elsewhere, so RCE = -A (1 - p_y)
        # with p_y = exp(-CE) (softmax probabilities sum to one; ignored rows give 0).
        reverse = log_zero * ops.expm1(-forward)
    elif one_hot_rows(y_true, y_pred, label_smoothing):
        # Clipped probability inputs need not sum to one: RCE = -A (sum_k p_k - p_y).
        reverse = -log_zero * (expect(ops.ones_like(targets)) - expect(targets))
    else:
        # log y_k floored at A: log 0 = A for one-hot labels, and soft labels below exp(A)
        # count as 0 too (the official code's clamp of the labels at exp(A)).
        log_targets = ops.log(ops.maximum(targets, ops.cast(float(np.exp(log_zero)), targets.dtype)))
        reverse = -expect(log_targets)
    if valid is not None:
        reverse = reverse * valid
    return alpha * forward + beta * reverse


@keras.saving.register_keras_serializable(package="keras_lossopt")
class GeneralizedCrossEntropyLoss(SparseTargetLoss):
    """Generalized cross-entropy (L_q loss): between cross-entropy and MAE, robust to label noise.

    Use it when a share of the training labels is wrong: `q` trades the fast training of
    cross-entropy (`q -> 0`) for the noise robustness of MAE (`q = 1`). Multiclass
    (softmax) outputs; sparse or one-hot targets.

    Formula:
        `loss = sum_c y_c (1 - p_c**q) / q` (for one-hot targets `(1 - p_y**q) / q`),
        with `p_c**q = exp(q log p_c)` from the log-softmax. `q = 1` gives `1 - p_y`
        (MAE up to a factor 2) and `q -> 0` cross-entropy.

    Args:
        q: in (0, 1]. Default 0.7 (the paper's choice).
        from_logits: whether `y_pred` holds logits. Default False.
        label_smoothing: in [0, 1). Default 0.
        ignore_index: sparse label that counts nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"generalized_cross_entropy"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for `q` outside (0, 1], `label_smoothing` outside [0, 1), mismatched
            shapes or out-of-range sparse labels.

    Examples:
        >>> import numpy as np
        >>> loss = GeneralizedCrossEntropyLoss(q=1.0)
        >>> round(float(loss(np.array([0]), np.array([[0.8, 0.2]]))), 4)
        0.2

    References:
        Zhang, Sabuncu (2018). Generalized Cross Entropy Loss for Training Deep Neural
        Networks with Noisy Labels. NeurIPS.
    """

    loss_family = "softmax_ce"

    def __init__(
        self,
        q=0.7,
        from_logits=False,
        label_smoothing=0.0,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="generalized_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.q = check_in_range("q", q, 0.0, 1.0, low_inclusive=False)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_in_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        return generalized_cross_entropy_loss(
            y_true,
            y_pred,
            q=self.q,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "q": self.q,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "ignore_index": self.ignore_index,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class SymmetricCrossEntropyLoss(SparseTargetLoss):
    """Symmetric cross-entropy: cross-entropy plus reverse cross-entropy, robust to label noise.

    Use it when training labels are noisy: the reverse term `-sum_k p_k log y_k` is
    bounded and noise tolerant, and the small cross-entropy term keeps fitting hard
    classes. Multiclass (softmax) outputs; sparse or one-hot targets.

    Formula:
        `loss = alpha * CE(y, p) + beta * RCE(y, p)`, `RCE = -sum_k p_k log y_k` with
        `log 0` replaced by `A = log_zero`; for one-hot targets `RCE = -A (1 - p_y)`.
        Soft targets below `exp(A)` count as 0 (the official code clamps the labels at
        `1e-4`, i.e. `A = log(1e-4) ~ -9.21`; the paper uses `A = -4`).

    Args:
        alpha: weight of the cross-entropy term, >= 0. Default 0.1 (the paper's CIFAR-10
            setting).
        beta: weight of the reverse cross-entropy term, >= 0. Default 1.0.
        log_zero: the value `A` that replaces `log 0`, < 0. Default -4.0.
        from_logits: whether `y_pred` holds logits. Default False.
        label_smoothing: in [0, 1). Default 0.
        ignore_index: sparse label that counts nowhere. Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"symmetric_cross_entropy"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for a negative `alpha` or `beta`, `log_zero >= 0`, `label_smoothing`
            outside [0, 1), mismatched shapes or out-of-range sparse labels.

    Examples:
        >>> import numpy as np
        >>> loss = SymmetricCrossEntropyLoss(alpha=0.0, beta=1.0)
        >>> round(float(loss(np.array([0]), np.array([[0.8, 0.2]]))), 4)
        0.8

    References:
        Wang, Ma, Chen, Luo, Yi, Bailey (2019). Symmetric Cross Entropy for Robust Learning
        with Noisy Labels. ICCV.
    """

    loss_family = "softmax_ce"

    def __init__(
        self,
        alpha=0.1,
        beta=1.0,
        log_zero=-4.0,
        from_logits=False,
        label_smoothing=0.0,
        ignore_index=None,
        reduction="sum_over_batch_size",
        name="symmetric_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = check_non_negative("alpha", alpha)
        self.beta = check_non_negative("beta", beta)
        if isinstance(log_zero, bool) or not isinstance(log_zero, (int, float)) or not -np.inf < log_zero < 0:
            raise ValueError(f"`log_zero` must be a finite number < 0. Received: log_zero={log_zero!r}")
        self.log_zero = float(log_zero)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_in_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        return symmetric_cross_entropy_loss(
            y_true,
            y_pred,
            alpha=self.alpha,
            beta=self.beta,
            log_zero=self.log_zero,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "log_zero": self.log_zero,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "ignore_index": self.ignore_index,
        }


register_alias("generalized_cross_entropy", GeneralizedCrossEntropyLoss)
register_alias("gce", GeneralizedCrossEntropyLoss)
register_alias("generalized_ce", GeneralizedCrossEntropyLoss)  # the loss search's candidate name
register_alias("symmetric_cross_entropy", SymmetricCrossEntropyLoss)
register_alias("sce", SymmetricCrossEntropyLoss)
register_alias("symmetric_ce", SymmetricCrossEntropyLoss)
