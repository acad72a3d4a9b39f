"""Topology scores of binary segmentations for the benchmarks: clDice score and Betti-number errors.

* clDice score (Shit et al. 2021): `2 Tprec Tsens / (Tprec + Tsens)` with `Tprec = |S(P) & T| / |S(P)|`
  and `Tsens = |S(T) & P| / |S(T)|`, per image, where `S` is a skeleton. The authors use
  skimage's thinning skeleton; here `keras_lossopt.losses.soft_skeleton` on the hard masks
  (10 iterations), which on 0/1 images is the morphological skeleton (Lantuejoul's formula):
  not identical to a thinning skeleton, and stated as such in the benchmark notes.
* Betti errors: `|b(P) - b(T)|` per image, `b0` = number of 8-connected foreground components,
  `b1` = number of holes (4-connected background components that do not touch the border).

SciPy (a dependency of scikit-learn) labels the components; the benchmarks only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from keras_lossopt.losses import soft_skeleton

_EIGHT = np.ones((3, 3), bool)


def betti_numbers(mask):
    """`(b0, b1)` of one 2-D boolean mask."""
    b0 = ndimage.label(mask, structure=_EIGHT)[1]
    background, count = ndimage.label(~mask)  # 4-connected, the dual of 8-connected foreground
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return b0, count - np.count_nonzero(border)


def cldice_score(true, predicted, iterations=10):
    """Per-image clDice scores of boolean masks `(N, H, W)`; 1 for an image where both skeletons are empty."""
    t, p = true.astype("float32")[..., None], predicted.astype("float32")[..., None]
    skeleton_true = np.asarray(soft_skeleton(t, iterations))[..., 0] > 0.5
    skeleton_pred = np.asarray(soft_skeleton(p, iterations))[..., 0] > 0.5
    axes = (1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(skeleton_pred.any(axes), (skeleton_pred & true).sum(axes) / skeleton_pred.sum(axes), 1.0)
        sensitivity = np.where(
            skeleton_true.any(axes), (skeleton_true & predicted).sum(axes) / skeleton_true.sum(axes), 1.0
        )
        score = np.where(precision + sensitivity > 0, 2 * precision * sensitivity / (precision + sensitivity), 0.0)
    return score


def topology_scores(true, predicted):
    """Mean clDice score and Betti errors over images of boolean masks `(N, H, W)`."""
    betti = np.array([[*betti_numbers(t), *betti_numbers(p)] for t, p in zip(true, predicted)])
    return {
        "cldice": float(np.mean(cldice_score(true, predicted))),
        "betti0_error": float(np.mean(np.abs(betti[:, 0] - betti[:, 2]))),
        "betti1_error": float(np.mean(np.abs(betti[:, 1] - betti[:, 3]))),
    }
