"""Independent NumPy float64 references for the overlap and Lovasz losses, and a contract extension.

Nothing here calls the library: the soft counts, the class handling and the Lovasz
extension are written again in float64 (the Lovasz extension by its definition, with
ignored pixels removed rather than zeroed).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses import references as ref
from tests.losses.contract import REDUCTIONS, LossContract, _data, _loss_value


def sigmoid(z):
    return np.exp(ref.log_sigmoid(z))


def inputs(y_true, y_pred, mode="multiclass", from_logits=False, ignore_index=None):
    """(targets, probs, weight) in float64, weight of shape (..., 1) or per channel."""
    y_pred = np.asarray(y_pred, np.float64)
    if mode == "multiclass":
        targets, valid = ref.one_hot_targets(y_true, y_pred.shape[-1], 0.0, ignore_index)
        probs = np.exp(ref.log_softmax(y_pred)) if from_logits else y_pred
        return targets, probs, valid[..., None].astype(np.float64)
    y = np.asarray(y_true, np.float64)
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    if y.ndim == y_pred.ndim - 1:
        y = y[..., None]
    valid = np.ones_like(y) if ignore_index is None else (y != ignore_index).astype(np.float64)
    targets = np.where(valid > 0, y, 0.0)
    probs = sigmoid(y_pred) if from_logits else y_pred
    return targets, probs, valid


def counts(targets, probs, weight, per_image=True, squared=False):
    axes = tuple(range(1 if per_image else 0, probs.ndim - 1))
    power = 2 if squared else 1
    tp = (weight * probs * targets).sum(axis=axes)
    pred_volume = (weight * probs**power).sum(axis=axes)
    true_volume = (weight * targets**power).sum(axis=axes)
    return tp, pred_volume - tp, true_volume - tp


def ratio(num, den):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def per_class_loss(kind, tp, fp, fn, snr, sdr, alpha=0.5, beta=0.5, gamma=1.0, log_dice=False):
    if kind == "dice":
        score = ratio(2 * tp + snr, 2 * tp + fp + fn + sdr)
        return -np.log(np.maximum(score, 1e-7)) if log_dice else 1 - score
    if kind == "jaccard":
        return 1 - ratio(tp + snr, tp + fp + fn + sdr)
    tversky = ratio(tp + snr, tp + alpha * fp + beta * fn + sdr)
    return (1 - tversky) ** gamma


def overlap(
    y_true,
    y_pred,
    kind="dice",
    *,
    mode="multiclass",
    from_logits=False,
    ignore_index=None,
    per_image=True,
    squared=False,
    log_dice=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    include_background=True,
    class_weights=None,
    alpha=0.5,
    beta=0.5,
    gamma=1.0,
    sample_weight=None,
):
    """Per-image values `(N,)` or the batch value (a float) of Dice / Jaccard / (focal) Tversky."""
    targets, probs, weight = inputs(y_true, y_pred, mode, from_logits, ignore_index)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        weight = weight * sw.reshape(sw.shape + (1,) * (probs.ndim - sw.ndim))
    tp, fp, fn = counts(targets, probs, weight, per_image, squared)
    loss = per_class_loss(kind, tp, fp, fn, smooth_nr, smooth_dr, alpha, beta, gamma, log_dice)
    w = np.ones(loss.shape[-1]) if class_weights is None else np.asarray(class_weights, np.float64)
    if not include_background:
        loss, w = loss[..., 1:], w[1:]
    return (loss * w).sum(-1) / w.sum()


def generalized_dice(
    y_true,
    y_pred,
    *,
    from_logits=False,
    ignore_index=None,
    per_image=True,
    weight_type="square",
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    include_background=True,
    sample_weight=None,
):
    targets, probs, weight = inputs(y_true, y_pred, "multiclass", from_logits, ignore_index)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        weight = weight * sw.reshape(sw.shape + (1,) * (probs.ndim - sw.ndim))
    tp, fp, fn = counts(targets, probs, weight, per_image)
    if not include_background:
        tp, fp, fn = tp[..., 1:], fp[..., 1:], fn[..., 1:]
    volume = tp + fn
    power = {"square": 2, "simple": 1, "uniform": 0}[weight_type]
    with np.errstate(divide="ignore"):
        w = np.where(volume > 0, 1.0 / np.where(volume > 0, volume, 1.0) ** power, 0.0)
    w = np.where(volume > 0, w, w.max(axis=-1, keepdims=True)) if power else np.ones_like(volume)
    num = 2 * (w * tp).sum(-1) + smooth_nr
    den = (w * (2 * tp + fp + fn)).sum(-1) + smooth_dr
    return 1 - ratio(num, den)


def jaccard_set_loss(targets, mispredicted):
    """The Jaccard loss of a set of mispredicted pixels (Berman et al., eq. 2)."""
    union = np.sum((targets > 0.5) | mispredicted)
    return 0.0 if union == 0 else np.sum(mispredicted) / union


def lovasz_extension(errors, targets):
    """By definition: sum_i e_(i) * (Delta({1..i}) - Delta({1..i-1})) over decreasing errors."""
    order = np.argsort(-errors, kind="stable")
    total, previous = 0.0, 0.0
    mispredicted = np.zeros(errors.shape, bool)
    for i in order:
        mispredicted[i] = True
        current = jaccard_set_loss(targets, mispredicted)
        total += errors[i] * (current - previous)
        previous = current
    return total


def lovasz_softmax(y_true, y_pred, *, from_logits=False, ignore_index=None, per_image=False, classes="present"):
    targets, probs, weight = inputs(y_true, y_pred, "multiclass", from_logits, ignore_index)
    num_classes = probs.shape[-1]
    groups = [slice(i, i + 1) for i in range(len(probs))] if per_image else [slice(None)]
    values = []
    for group in groups:
        t = targets[group].reshape(-1, num_classes)
        p = probs[group].reshape(-1, num_classes)
        keep = weight[group].reshape(-1) > 0
        t, p = t[keep], p[keep]
        losses = []
        for c in range(num_classes):
            if classes == "present" and t[:, c].sum() == 0:
                continue
            losses.append(lovasz_extension(np.abs(t[:, c] - p[:, c]), t[:, c]) if len(t) else 0.0)
        values.append(np.mean(losses) if losses else 0.0)
    return np.array(values) if per_image else values[0]


def lovasz_hinge(y_true, y_pred, *, ignore_index=None, per_image=True):
    targets, scores, weight = inputs(y_true, y_pred, "binary", False, ignore_index)
    groups = [slice(i, i + 1) for i in range(len(scores))] if per_image else [slice(None)]
    values = []
    for group in groups:
        keep = weight[group].reshape(-1) > 0
        t = targets[group].reshape(-1)[keep]
        s = scores[group].reshape(-1)[keep]
        errors = np.maximum(1 - s * (2 * t - 1), 0.0)
        values.append(lovasz_extension(errors, t) if len(t) else 0.0)
    return np.array(values) if per_image else values[0]


class CompactLossContract(LossContract):
    """`LossContract` with its parametrized cheap checks looped inside one test per case.

    Same checks, same data; pytest's per-test set-up and Keras session reset cost more
    than these checks themselves, and the segmentation suites have many cases.
    """

    def test_reductions_and_sample_weight(self, case):
        for reduction in REDUCTIONS:
            for weighted in (False, True):
                LossContract.test_reductions_and_sample_weight(self, case, reduction, weighted)

    def test_extreme_logits_are_finite(self, case):
        if case.from_logits:
            for magnitude in (30.0, 100.0):
                LossContract.test_extreme_logits_are_finite(self, case, magnitude)

    def test_mixed_precision_computes_in_float32(self, case):
        for policy in ("mixed_float16", "mixed_bfloat16"):
            LossContract.test_mixed_precision_computes_in_float32(self, case, policy)


class BatchRegionContract(CompactLossContract):
    """The contract for losses that return ONE value for the batch (`per_image=False`).

    Every reduction gives that value; `sample_weight` weights pixels inside the counts, so
    cases give `reference(y_true, y_pred, sample_weight=None)`. Cases whose loss takes no
    batch `sample_weight` (Lovasz) set `weighted_reference=None` on the test class.
    """

    takes_sample_weight = True

    def test_reductions_and_sample_weight(self, case):
        for reduction in REDUCTIONS:
            for weighted in (False, True):
                self.check_batch_reduction(case, reduction, weighted)

    def check_batch_reduction(self, case, reduction, weighted):
        y_true, y_pred = _data(case)
        sample_weight = np.random.default_rng(5).uniform(0.1, 2.0, size=y_pred.shape[0]) if weighted else None
        loss = case.make_loss(reduction=reduction)
        if weighted and not self.takes_sample_weight:
            with pytest.raises(ValueError, match="sample_weight"):
                _loss_value(loss, y_true, y_pred, sample_weight)
            return
        expected = case.reference(y_true, y_pred, sample_weight=sample_weight)
        got = _loss_value(loss, y_true, y_pred, sample_weight)
        assert got.shape == ()
        np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=1e-6)
