"""Probabilities and log-probabilities from logits with one exponential per element.

The classification losses need both `p` and `log p` (and their gradients). Computing them
as `log_softmax` followed by `exp` (or two `log_sigmoid`s and two `exp`s) costs several
transcendental functions per element in the forward pass and again in the backward pass,
which is what made our losses up to 2.7x slower than Keras' fused cross-entropies on a
(256, 1000) batch. Here every quantity derives from a single `exp` per element whose output
the backward pass reuses (the gradient of `exp` is its output), so XLA fuses the whole loss
into a few passes over the logits. Probability inputs keep Keras' clipping convention.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._targets import is_sparse_target, sigmoid_log_probs, softmax_log_probs

__all__ = ["cross_entropy", "focal_modulator", "one_hot_rows", "power", "sigmoid_parts", "softmax_parts"]

_MAX_INTEGER_POWER = 8


def focal_modulator(one_minus_p, gamma):
    """`(1 - p) ** gamma`, with finite gradients also for `gamma < 1` at `p == 1`.

    The true derivative of `(1 - p(z)) ** gamma` with respect to the logit is 0 where `p`
    saturates, but `pow` evaluates `gamma * 0 ** (gamma - 1) * 0 = inf * 0`. Flooring the
    base at the smallest normal number keeps the value (to within 1e-38) and makes the
    floored branch carry no gradient.
    """
    tiny = float(np.finfo(keras.backend.standardize_dtype(one_minus_p.dtype)).tiny)
    return ops.power(ops.maximum(one_minus_p, ops.cast(tiny, one_minus_p.dtype)), gamma)


def softmax_parts(y_pred, from_logits, stabilizer=None):
    """`(logits, logsumexp, expect)` of a softmax output, with one `exp` per element.

    `log p = logits - logsumexp[..., None]`, and `expect(w)` is `sum_c w_c p_c` computed
    as `sum_c w_c exp(z_c - m) / sum_c exp(z_c - m)`: one division per row instead of
    forming `p` (about 20% of a step). For probability inputs, `logits` are the
    log-probabilities (normalized, clipped at epsilon like Keras) and `logsumexp` is 0.

    Args:
        stabilizer: optional value subtracted inside the `exp` instead of the row maximum
            of `y_pred`, shape `y_pred.shape[:-1] + (1,)`. Losses that shift or scale
            the logits pass a bound derived from the unshifted logits, so that XLA need not
            materialize the shifted logits to find their maximum. Any value within ~80 of
            the row maximum is exact.
    """
    # The function forms accept NumPy arrays; torch tensors do not mix with them in `-`.
    y_pred = ops.convert_to_tensor(y_pred)
    if not from_logits:
        log_p = softmax_log_probs(y_pred, from_logits)
        probs = ops.exp(log_p)
        return log_p, ops.zeros_like(log_p[..., 0]), lambda weights: ops.sum(weights * probs, axis=-1)
    # The stabilizer only keeps the exponent in range; its gradient cancels exactly.
    if stabilizer is None:
        stabilizer = ops.max(y_pred, axis=-1, keepdims=True)
    stabilizer = ops.stop_gradient(stabilizer)
    exps = ops.exp(y_pred - stabilizer)
    total = ops.sum(exps, axis=-1)
    logsumexp = ops.squeeze(stabilizer, axis=-1) + ops.log(total)
    return y_pred, logsumexp, lambda weights: ops.sum(weights * exps, axis=-1) / total


def one_hot_rows(y_true, y_pred, label_smoothing):
    """Whether every target row is one-hot (or all zero where ignored), known from the shapes.

    Sparse labels without smoothing are; dense targets may be soft, so they are not assumed
    to be. For one-hot rows `sum_c y_c f(p_c) = f(p_y)` and `p_y = exp(-CE)`: per-sample
    terms then cost one transcendental per sample instead of one per class.
    """
    return is_sparse_target(y_true, y_pred) and not label_smoothing


def cross_entropy(targets, logits, logsumexp):
    """`-sum_c y_c log p_c` written as `logsumexp * sum_c y_c - sum_c y_c z_c`.

    Equal for any targets; it never materializes `log p`, which saves a pass over the
    classes forward and backward (within about 10% of Keras' fused cross-entropy kernel).
    """
    return logsumexp * ops.sum(targets, axis=-1) - ops.sum(targets * logits, axis=-1)


def sigmoid_parts(y_pred, from_logits):
    """`(p, 1 - p, log p, log(1 - p))` of a sigmoid output, finite for logits of any size."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not from_logits:
        log_p, log_1mp = sigmoid_log_probs(y_pred, from_logits)
        return ops.exp(log_p), ops.exp(log_1mp), log_p, log_1mp
    # With t = exp(-|z|) <= 1: p = 1/(1+t) for z >= 0 and t/(1+t) otherwise, and
    # log p = min(z, 0) - log1p(t); nothing overflows and nothing is clipped. `where`
    # instead of abs/minimum keeps the gradient right at z == 0 (abs' would be 0 there).
    positive = y_pred >= 0
    t = ops.exp(ops.where(positive, -y_pred, y_pred))
    log1p_t = ops.log1p(t)
    inverse = 1.0 / (1.0 + t)
    p = ops.where(positive, inverse, t * inverse)
    one_minus_p = ops.where(positive, t * inverse, inverse)
    log_p = ops.where(positive, 0.0, y_pred) - log1p_t
    log_1mp = ops.where(positive, -y_pred, 0.0) - log1p_t
    return p, one_minus_p, log_p, log_1mp


def power(base, exponent):
    """`base ** exponent` for `base` in [0, 1]: small integer exponents by multiplication.

    `pow` costs a `log` and an `exp` per element; integer exponents (the common focusing
    parameters 1, 2, 4) need only multiplications, with exact, finite gradients at 0.
    Other exponents go through `focal_modulator`, which keeps gradients finite below 1.
    """
    if isinstance(exponent, (int, float)) and float(exponent).is_integer() and 0 <= exponent <= _MAX_INTEGER_POWER:
        n = int(exponent)
        if n == 0:
            return ops.ones_like(base)
        result, square = None, base
        while n:
            if n & 1:
                result = square if result is None else result * square
            n >>= 1
            if n:
                square = square * square
        return result
    return focal_modulator(base, exponent)
