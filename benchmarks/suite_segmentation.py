"""Segmentation cases of `benchmarks.bench_losses` on a (16, 128, 128, 5) batch.

Keras' `Dice` and `Tversky` compute one overlap over the axes they are given, with no
softmax, no smoothing and no class handling; the fair baselines are `Dice(axis=(1, 2))`
(one Dice per image and class, averaged: our per-image Dice on probabilities) and
`Dice(axis=(0, 1, 2))` (our batch Dice). Keras' `Tversky` weights false negatives by
`alpha`, so our `TverskyLoss(alpha=0.3, beta=0.7)` is timed against
`Tversky(alpha=0.7, beta=0.3)`. Losses with no Keras counterpart (Jaccard, generalized
Dice, focal Tversky, Lovasz) report their ratio to the closest Keras loss named in the
baseline column. The float64 references are the test suite's, vectorized for this size.
"""

from __future__ import annotations

import keras
import numpy as np

from benchmarks.bench_losses import BenchCase
from keras_lossopt import losses
from tests.losses import overlap_references as oref
from tests.losses import references as ref

BATCH, SIZE, CLASSES = 16, 128, 5
SECTION = (
    "bench_losses_segmentation",
    f"Segmentation losses: speed against Keras, ({BATCH}, {SIZE}, {SIZE}, {CLASSES}) batch",
)
NOTES = """
Keras baselines: `Dice(axis=(1, 2))` / `Dice(axis=(0, 1, 2))` and `Tversky(alpha=0.7, beta=0.3,
axis=(1, 2))` on one-hot targets and probabilities (Keras' `alpha` weights false negatives, so
these match our `TverskyLoss(alpha=0.3, beta=0.7)`). Our losses do more per step than the
baselines: smoothing, the class mean and, in the "sparse labels, logits" row, the one-hot
expansion of the labels inside the step (the Keras baseline gets one-hot targets prepared
outside the step, and a softmax in front of its Dice). Lovasz sorts
every class' errors (O(P log P) per class), so it is expected to be slower than Dice; its ratio
is reported for information.
"""


def _labels(rng):
    labels = rng.integers(1, CLASSES, size=(BATCH, SIZE, SIZE))
    labels[rng.uniform(size=labels.shape) < 0.8] = 0  # mostly background
    return labels


def onehot_probs(rng):
    labels = _labels(rng)
    logits = rng.normal(scale=2.0, size=(BATCH, SIZE, SIZE, CLASSES))
    probs = np.exp(ref.log_softmax(logits))
    return np.eye(CLASSES, dtype="float32")[labels], probs.astype("float32")


def sparse_logits(rng):
    return _labels(rng).astype("int32"), rng.normal(scale=2.0, size=(BATCH, SIZE, SIZE, CLASSES)).astype("float32")


def binary_scores(rng):
    labels = (rng.uniform(size=(BATCH, SIZE, SIZE, 1)) < 0.2).astype("float32")
    return labels, rng.normal(scale=2.0, size=labels.shape).astype("float32")


def to_onehot(labels):
    return np.eye(CLASSES, dtype="float32")[labels]


def lovasz_softmax_fast(y_true, y_pred, per_image=False):
    """Float64 Lovasz-softmax (classes present), vectorized with NumPy for the benchmark size."""
    targets, probs, _ = oref.inputs(y_true, y_pred)
    groups = len(probs) if per_image else 1
    t = targets.reshape(groups, -1, CLASSES).transpose(0, 2, 1)
    e = np.abs(t - probs.reshape(groups, -1, CLASSES).transpose(0, 2, 1))
    order = np.argsort(-e, axis=-1, kind="stable")
    e, t = np.take_along_axis(e, order, -1), np.take_along_axis(t, order, -1)
    total = t.sum(-1, keepdims=True)
    jaccard = 1 - (total - np.cumsum(t, -1)) / (total + np.cumsum(1 - t, -1))
    gradient = np.concatenate([jaccard[..., :1], np.diff(jaccard, axis=-1)], -1)
    per_class = (e * gradient).sum(-1)
    present = (total[..., 0] > 0).astype(float)
    values = (per_class * present).sum(-1) / np.maximum(present.sum(-1), 1)
    return values if per_image else values[0]


def lovasz_hinge_fast(y_true, y_pred):
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    s = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    e = np.maximum(1 - s * (2 * t - 1), 0)
    order = np.argsort(-e, axis=-1, kind="stable")
    e, t = np.take_along_axis(e, order, -1), np.take_along_axis(t, order, -1)
    total = t.sum(-1, keepdims=True)
    jaccard = 1 - (total - np.cumsum(t, -1)) / (total + np.cumsum(1 - t, -1))
    gradient = np.concatenate([jaccard[..., :1], np.diff(jaccard, axis=-1)], -1)
    return (e * gradient).sum(-1)


def _dice_keras(axis=(1, 2)):
    return lambda: keras.losses.Dice(axis=axis)


def _softmax_dice_keras():
    dice = keras.losses.Dice(axis=(1, 2))
    return lambda y_true, logits: dice(y_true, keras.ops.softmax(logits, axis=-1))


def _tversky_keras():
    return keras.losses.Tversky(alpha=0.7, beta=0.3, axis=(1, 2))


CASES = [
    BenchCase(
        "DiceLoss per image",
        lambda: losses.DiceLoss(),
        _dice_keras(),
        onehot_probs,
        lambda y, p: oref.overlap(y, p),
        baseline="Dice(axis=(1, 2))",
    ),
    BenchCase(
        "DiceLoss batch",
        lambda: losses.DiceLoss(per_image=False),
        _dice_keras((0, 1, 2)),
        onehot_probs,
        lambda y, p: oref.overlap(y, p, per_image=False),
        baseline="Dice(axis=(0, 1, 2))",
    ),
    BenchCase(
        "DiceLoss sparse labels, logits",
        lambda: losses.DiceLoss(from_logits=True),
        _softmax_dice_keras,
        sparse_logits,
        lambda y, p: oref.overlap(y, p, from_logits=True),
        baseline="softmax + Dice(axis=(1, 2)), one-hot",
        keras_targets=to_onehot,
    ),
    BenchCase(
        "TverskyLoss(0.3, 0.7) per image",
        lambda: losses.TverskyLoss(alpha=0.3, beta=0.7),
        _tversky_keras,
        onehot_probs,
        lambda y, p: oref.overlap(y, p, "tversky", alpha=0.3, beta=0.7),
        baseline="Tversky(0.7, 0.3, axis=(1, 2))",
    ),
    BenchCase(
        "FocalTverskyLoss per image",
        lambda: losses.FocalTverskyLoss(),
        _tversky_keras,
        onehot_probs,
        lambda y, p: oref.overlap(y, p, "tversky", alpha=0.3, beta=0.7, gamma=0.75),
        baseline="Tversky(0.7, 0.3, axis=(1, 2))",
    ),
    BenchCase(
        "JaccardLoss per image",
        lambda: losses.JaccardLoss(),
        _dice_keras(),
        onehot_probs,
        lambda y, p: oref.overlap(y, p, "jaccard"),
        baseline="Dice(axis=(1, 2))",
    ),
    BenchCase(
        "GeneralizedDiceLoss per image",
        lambda: losses.GeneralizedDiceLoss(),
        _dice_keras(),
        onehot_probs,
        lambda y, p: oref.generalized_dice(y, p),
        baseline="Dice(axis=(1, 2))",
    ),
    BenchCase(
        "LovaszSoftmaxLoss batch",
        lambda: losses.LovaszSoftmaxLoss(),
        _dice_keras((0, 1, 2)),
        onehot_probs,
        lambda y, p: lovasz_softmax_fast(y, p),
        baseline="Dice(axis=(0, 1, 2))",
    ),
    BenchCase(
        "LovaszSoftmaxLoss per image",
        lambda: losses.LovaszSoftmaxLoss(per_image=True),
        _dice_keras(),
        onehot_probs,
        lambda y, p: lovasz_softmax_fast(y, p, per_image=True),
        baseline="Dice(axis=(1, 2))",
    ),
    BenchCase(
        "LovaszHingeLoss per image (1 channel)",
        lambda: losses.LovaszHingeLoss(),
        _dice_keras(),
        binary_scores,
        lovasz_hinge_fast,
        baseline="Dice(axis=(1, 2))",
    ),
]
