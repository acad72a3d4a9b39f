"""What an attack maximizes: class scores, cross-entropy, margin, KL, and Keras losses per sample.

Every attack in this package *maximizes* a per-sample objective. For an untargeted attack
it is the loss of the true label; for a targeted attack it is minus the loss of the target
label, so one ascent loop serves both.

Models may output logits or probabilities. `class_scores` turns either into log-probability
scores of shape `(N, C)` (a binary output of shape `(N, 1)` becomes two classes), from
which predictions, cross-entropy and the Carlini-Wagner margin follow without caring what
the model emitted:

* `from_logits=True`: outputs are logits (`log_softmax` of them gives log-probabilities);
* `from_logits=False`: outputs are probabilities (logs are taken of values floored at the
  smallest normal float, so saturated outputs give finite scores);
* `from_logits=None` (auto): a model whose last layer applies a softmax or sigmoid is taken
  to output probabilities, one whose last layer is linear to output logits; for any other
  model the decision is made per batch inside the graph: outputs that are all in [0, 1]
  (and, for several classes, sum to 1 per sample within 1e-3) are read as probabilities.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._models import detect_from_logits  # noqa: F401  (the attacks import it from here)

# Internal to keras_lossopt.adversarial: the attacks, the training step and the callback
# share these functions; the package exports none of them.
__all__: list[str] = []

BUILTIN_LOSSES = ("cross_entropy", "margin")


def _tiny(dtype) -> float:
    return float(np.finfo(keras.backend.standardize_dtype(dtype)).tiny)


def _looks_like_probabilities(y_pred):
    in_range = ops.logical_and(ops.all(y_pred >= 0.0), ops.all(y_pred <= 1.0))
    if y_pred.shape[-1] == 1:
        return in_range
    sums = ops.sum(y_pred, axis=-1)
    return ops.logical_and(in_range, ops.all(ops.abs(sums - 1.0) < 1e-3))


def class_scores(y_pred, from_logits):
    """Log-probability scores `(N, C)` from logits or probabilities (see the module docstring).

    Args:
        y_pred: model outputs of shape `(N, C)`, or `(N, 1)` / `(N,)` for a binary output.
        from_logits: True, False or None (auto-detect per batch).

    Returns:
        Float32 scores of shape `(N, max(C, 2))` whose softmax is the model's class distribution.
    """
    y_pred = ops.cast(y_pred, "float32")
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    binary = y_pred.shape[-1] == 1
    tiny = _tiny("float32")

    def from_logit_values(z):
        if binary:
            return ops.concatenate([ops.log_sigmoid(-z), ops.log_sigmoid(z)], axis=-1)
        return ops.log_softmax(z, axis=-1)

    def from_probability_values(p):
        if binary:
            return ops.concatenate([ops.log(ops.maximum(1.0 - p, tiny)), ops.log(ops.maximum(p, tiny))], axis=-1)
        return ops.log(ops.maximum(p, tiny))

    if from_logits is True:
        return from_logit_values(y_pred)
    if from_logits is False:
        return from_probability_values(y_pred)
    # Auto: both branches are cheap; `where` keeps the graph free of control flow (XLA).
    # The probability branch sees values clipped to [0, 1] so that logits outside that
    # range cannot produce NaN gradients in the branch that is not taken.
    safe_p = ops.clip(y_pred, 0.0, 1.0)
    return ops.where(_looks_like_probabilities(y_pred), from_probability_values(safe_p), from_logit_values(y_pred))


def sparse_labels(y_true, num_scores):
    """Class indices `(N,)` from sparse labels, `(N, 1)` labels, one-hot or binary 0/1 targets."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) >= 2 and y_true.shape[-1] not in (None, 1) and y_true.shape[-1] == num_scores:
        return ops.cast(ops.argmax(y_true, axis=-1), "int32")
    if len(y_true.shape) >= 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if not keras.backend.standardize_dtype(y_true.dtype).startswith(("int", "uint")):
        y_true = ops.round(y_true)
    return ops.cast(y_true, "int32")


def predicted_labels(scores):
    """The predicted class of each sample, `(N,)` int32."""
    return ops.cast(ops.argmax(scores, axis=-1), "int32")


def cross_entropy_from_scores(labels, scores):
    """Per-sample cross-entropy `-log p_y` from `class_scores`."""
    log_p = ops.log_softmax(scores, axis=-1)
    one_hot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    return -ops.sum(one_hot * log_p, axis=-1)


def margin_from_scores(labels, scores):
    """Per-sample Carlini-Wagner margin `max_{j != y} s_j - s_y` (positive: misclassified).

    On log-probability scores this equals the margin on the logits, since log-softmax
    shifts all logits of a sample by the same amount.
    """
    one_hot = ops.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    true_score = ops.sum(one_hot * scores, axis=-1)
    # Masking with a large negative number (not -inf) keeps the gradient finite.
    other = ops.max(scores - one_hot * 1e9, axis=-1)
    return other - true_score


def kl_divergence_from_scores(reference_scores, scores):
    """Per-sample `KL(p_ref || p)` between the class distributions of two `class_scores`."""
    log_ref = ops.log_softmax(reference_scores, axis=-1)
    log_p = ops.log_softmax(scores, axis=-1)
    return ops.sum(ops.exp(log_ref) * (log_ref - log_p), axis=-1)


def per_sample_loss(loss):
    """A callable `(y_true, y_pred) -> (N,)` from a Keras loss instance, function or name.

    Loss instances are rebuilt from their config with `reduction="none"` (so `FocalLoss`,
    `SparseCategoricalCrossentropy(from_logits=True)` and the like keep every argument);
    values with more than one axis (per pixel) are averaged per sample.
    """
    if isinstance(loss, str):
        from keras_lossopt.losses import get as get_loss

        loss = get_loss(loss)
    if isinstance(loss, keras.losses.Loss):
        loss = loss.__class__.from_config({**loss.get_config(), "reduction": "none"})
    elif isinstance(loss, (dict, list, tuple)):
        raise ValueError(
            "Attacks need a single loss for a single-output model. Received a loss structure "
            f"{type(loss).__name__}: {loss!r}. Pass `loss=` to the attack."
        )
    elif not callable(loss):
        raise ValueError(f"`loss` must be a Keras loss, a loss name or a callable. Received: loss={loss!r}")

    def values(y_true, y_pred):
        out = ops.cast(loss(y_true, y_pred), "float32")
        if len(out.shape) > 1:
            out = ops.mean(out, axis=tuple(range(1, len(out.shape))))
        return out

    return values


def make_objective(loss, from_logits, targeted):
    """The per-sample value an attack maximizes, and whether a result counts as a success.

    Args:
        loss: `"cross_entropy"`, `"margin"`, or anything `per_sample_loss` accepts.
        from_logits: True, False or None (auto), for the built-in losses and for success.
        targeted: whether `y_true` holds target classes (the objective is then negated).

    Returns:
        `(objective, success)`: `objective(y_true, y_pred) -> (N,)` float32 to maximize and
        `success(y_true, y_pred) -> (N,)` bool (misclassified, or classified as the target).
    """
    sign = -1.0 if targeted else 1.0
    if loss == "cross_entropy":

        def raw(y_true, y_pred):
            scores = class_scores(y_pred, from_logits)
            return cross_entropy_from_scores(sparse_labels(y_true, scores.shape[-1]), scores)

    elif loss == "margin":

        def raw(y_true, y_pred):
            scores = class_scores(y_pred, from_logits)
            return margin_from_scores(sparse_labels(y_true, scores.shape[-1]), scores)

    else:
        raw = per_sample_loss(loss)

    def objective(y_true, y_pred):
        return sign * raw(y_true, y_pred)

    def success(y_true, y_pred):
        scores = class_scores(y_pred, from_logits)
        hit = ops.equal(predicted_labels(scores), sparse_labels(y_true, scores.shape[-1]))
        return hit if targeted else ops.logical_not(hit)

    return objective, success
