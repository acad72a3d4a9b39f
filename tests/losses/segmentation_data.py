"""Small seeded segmentation batches shared by the boundary- and topology-loss tests.

Labels are blocky (2x2 blocks) so that regions have interiors and boundaries; the cases
include a class absent from the whole batch, an image that is all background (its
background class covers the whole image) and 3-D volumes.
"""

from __future__ import annotations

import numpy as np

N, C = 4, 3  # an even batch: MirroredStrategy splits it over two replicas


def blocky_labels(rng, shape=(N, 3, 3), num_classes=C, block=2):
    labels = rng.integers(0, num_classes, size=shape)
    return np.kron(labels, np.ones((1,) + (block,) * (len(shape) - 1), np.int64))


def sparse_logits(rng):
    labels = blocky_labels(rng)
    return labels, rng.normal(scale=2.0, size=(*labels.shape, C))


def onehot_probs_with_empty_and_full_classes(rng):
    labels = blocky_labels(rng, num_classes=2)  # class 2 is absent from the batch
    labels[1] = 0  # image 1: all background, so class 0 covers the whole image
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=labels.shape)


def binary_volume_logits(rng):
    y = (blocky_labels(rng, shape=(2, 2, 3, 2), num_classes=2) > 0).astype("float32")[..., None]
    return y, rng.normal(scale=2.0, size=y.shape)


def binary_volume_probs(rng):
    y, logits = binary_volume_logits(rng)
    return y, 1.0 / (1.0 + np.exp(-logits))


def multilabel_logits(rng):
    y = np.stack([blocky_labels(rng, num_classes=2) for _ in range(2)], axis=-1).astype("float32")
    return y, rng.normal(scale=2.0, size=y.shape)
