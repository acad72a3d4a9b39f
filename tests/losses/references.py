"""Independent NumPy float64 building blocks for loss references.

These mirror the *conventions* of the library (Keras' probability clipping at 1e-7, label
smoothing, sparse targets) but none of its code: every reference formula is written here
again in float64.
"""

import numpy as np

EPS = 1e-7


def log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def softmax_log_probs(y_pred, from_logits):
    y_pred = np.asarray(y_pred, np.float64)
    if from_logits:
        return log_softmax(y_pred)
    p = y_pred / y_pred.sum(axis=-1, keepdims=True)
    return np.log(np.clip(p, EPS, 1 - EPS))


def log_sigmoid(z):
    z = np.asarray(z, np.float64)
    return -np.logaddexp(0.0, -z)


def sigmoid_log_probs(y_pred, from_logits):
    """(log p, log(1-p)) in float64."""
    y_pred = np.asarray(y_pred, np.float64)
    if from_logits:
        return log_sigmoid(y_pred), log_sigmoid(-y_pred)
    p = np.clip(y_pred, EPS, 1 - EPS)
    return np.log(p), np.log(1 - p)


def one_hot_targets(y_true, num_classes, label_smoothing=0.0, ignore_index=None):
    """Dense float64 targets and a boolean validity mask from sparse or dense labels."""
    y_true = np.asarray(y_true)
    if y_true.ndim >= 1 and y_true.shape[-1] == num_classes and np.issubdtype(y_true.dtype, np.floating):
        targets = y_true.astype(np.float64)
        valid = np.ones(targets.shape[:-1], bool)
    else:
        labels = y_true.astype(np.int64)
        if labels.ndim >= 1 and labels.shape[-1] == 1 and num_classes != 1:
            labels = labels[..., 0]
        valid = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
        targets = np.eye(num_classes)[np.where(valid, labels, 0)] * valid[..., None]
    if label_smoothing:
        targets = (targets * (1 - label_smoothing) + label_smoothing / num_classes) * valid[..., None]
    return targets, valid


def reduce(values, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Keras' reduction semantics, in float64."""
    values = np.asarray(values, np.float64)
    weight = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        sw = sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))
        weight = np.broadcast_to(sw, values.shape)
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, np.float64), values.shape)
        weight = m if weight is None else weight * m
    if weight is not None:
        values = values * weight
    if reduction in (None, "none"):
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        divisor = weight.sum()
    elif mask is not None:
        divisor = np.broadcast_to(mask, values.shape).sum()
    else:
        divisor = values.size
    return total / divisor if divisor else 0.0


def numerical_gradient(fn, x, h=1e-6):
    """Central finite differences of a scalar float64 function."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = fn(x)
        flat[i] = old - h
        down = fn(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad
