"""The Difference of Logits Ratio (DLR) losses of Croce and Hein (2020), untargeted and targeted.

The cross-entropy can be made flat by rescaling the logits (a saturated softmax gives a zero
gradient) without changing a single prediction. DLR divides a logit difference by another
logit difference, so it is invariant to shifting and to positive rescaling of the logits,
and a defence cannot hide behind the softmax's saturation. Both losses are maximized by the
attack (positive means misclassified in the untargeted case).

Log-softmax scores give the same values as the logits (it shifts all logits of a sample by the
same amount), so the attacks apply these functions to `objectives.class_scores`.

The formulas follow the authors' code, fra31/auto-attack, `autoattack/autopgd_base.py`
(`dlr_loss`, `dlr_loss_targeted`), including the `1e-12` in the denominator.
"""

from __future__ import annotations

from keras import ops

__all__ = ["dlr_loss", "targeted_dlr_loss"]

_DENOMINATOR_FLOOR = 1e-12


def _check_classes(logits, minimum, name):
    classes = logits.shape[-1]
    if classes is not None and classes < minimum:
        raise ValueError(
            f"`{name}` needs at least {minimum} classes (it compares the {minimum - 1} largest logits with the "
            f"label's). Received logits of shape {tuple(logits.shape)}."
        )


def dlr_loss(labels, logits):
    """Per-sample untargeted DLR loss, to maximize.

    Formula:
        `DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)`, where
        `z_pi1 >= z_pi2 >= z_pi3` are the three largest logits. Positive exactly when the
        sample is misclassified.

    Args:
        labels: true class indices, shape `(N,)`.
        logits: logits (or log-probabilities), shape `(N, C)` with `C >= 3`; the result has
            their dtype (float64 in, float64 out).

    Returns:
        Shape `(N,)`.

    Raises:
        ValueError: for fewer than 3 classes.

    Examples:
        >>> import numpy as np
        >>> z = np.array([[3.0, 1.0, 0.0, -1.0]])
        >>> round(float(dlr_loss(np.array([0]), z)[0]), 6)  # -(3 - 1) / (3 - 0)
        -0.666667

    References:
        Croce, Hein (2020). Reliable evaluation of adversarial robustness with an ensemble of
            diverse parameter-free attacks. ICML.
    """
    logits = ops.convert_to_tensor(logits)
    _check_classes(logits, 3, "dlr_loss")
    top = ops.top_k(logits, 3, sorted=True)[0]
    true_logit = ops.take_along_axis(logits, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1)[:, 0]
    # The largest other logit: the runner-up when the label is on top, else the top one
    # (the reference's sort-based form, which keeps its handling of ties).
    label_on_top = ops.cast(ops.equal(ops.argmax(logits, axis=-1), ops.cast(labels, "int64")), logits.dtype)
    best_other = top[:, 1] * label_on_top + top[:, 0] * (1.0 - label_on_top)
    return -(true_logit - best_other) / (top[:, 0] - top[:, 2] + _DENOMINATOR_FLOOR)


def targeted_dlr_loss(labels, targets, logits):
    """Per-sample targeted DLR loss, to maximize (it pushes the target's logit above the label's).

    Formula:
        `DLR_t(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)` with the
        logits sorted decreasingly `z_pi1 >= z_pi2 >= ...`.

    Args:
        labels: true class indices, shape `(N,)`.
        targets: target class indices, shape `(N,)`.
        logits: logits (or log-probabilities), shape `(N, C)` with `C >= 4`; the result has
            their dtype.

    Returns:
        Shape `(N,)`.

    Raises:
        ValueError: for fewer than 4 classes.

    Examples:
        >>> import numpy as np
        >>> z = np.array([[3.0, 1.0, 0.0, -1.0]])
        >>> round(float(targeted_dlr_loss(np.array([0]), np.array([1]), z)[0]), 6)  # -(3 - 1) / (3 + 0.5)
        -0.571429

    References:
        Croce, Hein (2020). Reliable evaluation of adversarial robustness with an ensemble of
            diverse parameter-free attacks. ICML.
    """
    logits = ops.convert_to_tensor(logits)
    _check_classes(logits, 4, "targeted_dlr_loss")
    top = ops.top_k(logits, 4, sorted=True)[0]
    true_logit = ops.take_along_axis(logits, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1)[:, 0]
    target_logit = ops.take_along_axis(logits, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1)[:, 0]
    return -(true_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DENOMINATOR_FLOOR)
