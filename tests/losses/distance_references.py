"""Independent float64 references for the boundary and topology losses, ported from their authors' code.

Nothing here calls the library. Each function follows the reference implementation it names
(MONAI's `HausdorffDTLoss`, kornia's `HausdorffERLoss`, LIVIAETS/boundary-loss `one_hot2dist`
and `SurfaceLoss`, jocpae/clDice `soft_skel` / `soft_cldice`), channel-last, in NumPy float64,
with SciPy's `distance_transform_edt` for the distance transforms, as those references use.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.ndimage import distance_transform_edt

from tests.losses import overlap_references as oref


def dense(y_true, y_pred, mode="multiclass", from_logits=False):
    """(targets, probabilities) in float64, channel last."""
    targets, probs, _ = oref.inputs(y_true, y_pred, mode, from_logits)
    return targets, probs


def image_channels(x):
    """Yields (n, c) and the spatial array x[n, ..., c]."""
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[-1])):
        yield (n, c), x[n, ..., c]


def monai_distance_field(img):
    """MONAI HausdorffDTLoss.distance_field per image and channel."""
    field = np.zeros(img.shape, np.float64)
    for (n, c), channel in image_channels(img):
        fg = channel > 0.5
        if fg.any() and not fg.all():
            field[n, ..., c] = distance_transform_edt(fg) + distance_transform_edt(~fg)
    return field


def drop_background(values, include_background):
    return values if include_background else values[..., 1:]


def hausdorff_dt(y_true, y_pred, *, alpha=2.0, mode="multiclass", from_logits=False, include_background=True):
    """Per-position values: mean over classes of (p - t)**2 (d_p**alpha + d_t**alpha)."""
    t, p = dense(y_true, y_pred, mode, from_logits)
    distance = monai_distance_field(p) ** alpha + monai_distance_field(t) ** alpha
    return drop_background((p - t) ** 2 * distance, include_background).mean(-1)


def cross_kernel(rank):
    kernel = np.zeros((3,) * rank)
    center = (1,) * rank
    kernel[center] = 1
    for axis in range(rank):
        for side in (0, 2):
            index = list(center)
            index[axis] = side
            kernel[tuple(index)] = 1
    return kernel / kernel.sum()


def correlate_same(x, kernel):
    """Zero-padded 'same' cross-correlation of an n-D array with a 3x..x3 kernel (torch conv, padding=1)."""
    padded = np.pad(x, 1)
    out = np.zeros_like(x)
    for offset in itertools.product(range(3), repeat=x.ndim):
        if kernel[offset]:
            out += kernel[offset] * padded[tuple(slice(o, o + s) for o, s in zip(offset, x.shape))]
    return out


def kornia_erosion(pred, target, alpha, k):
    """kornia _HausdorffERLossBase.perform_erosion for one image and class."""
    bound = (pred - target) ** 2
    kernel = cross_kernel(pred.ndim)
    eroded = np.zeros_like(bound)
    for i in range(k):
        erosion = correlate_same(bound, kernel) - 0.5
        erosion[erosion < 0] = 0
        top, bottom = erosion.max(), erosion.min()
        if top - bottom != 0:
            erosion = (erosion - bottom) / (top - bottom)
        eroded = eroded + erosion * (i + 1) ** alpha
        bound = erosion
    return eroded


def hausdorff_er(
    y_true, y_pred, *, alpha=2.0, erosions=10, mode="multiclass", from_logits=False, include_background=True
):
    t, p = dense(y_true, y_pred, mode, from_logits)
    eroded = np.zeros_like(p)
    for (n, c), channel in image_channels(p):
        eroded[n, ..., c] = kornia_erosion(channel, t[n, ..., c], alpha, erosions)
    return drop_background(eroded, include_background).mean(-1)


def one_hot2dist(seg, resolution=None):
    """LIVIAETS one_hot2dist for one image `(*spatial, K)`; a class filling the image gets zeros.

    The reference computes `edt(posmask)` there too, which SciPy measures to a point outside
    the array; the library documents zeros for that case instead.
    """
    res = np.zeros(seg.shape, np.float64)
    for k in range(seg.shape[-1]):
        pos = seg[..., k] > 0.5
        if pos.any() and not pos.all():
            neg = ~pos
            res[..., k] = (
                distance_transform_edt(neg, sampling=resolution) * neg
                - (distance_transform_edt(pos, sampling=resolution) - 1) * pos
            )
    return res


def signed_maps(targets, resolution=None):
    return np.stack([one_hot2dist(image, resolution) for image in targets])


def boundary(
    y_true, y_pred, *, mode="multiclass", from_logits=False, include_background=True, maps=None, resolution=None
):
    """SurfaceLoss per position: mean over classes of p * dist_map."""
    t, p = dense(y_true if maps is None else np.zeros(np.shape(y_pred)), y_pred, mode, from_logits)
    if maps is None:
        maps = signed_maps(t, resolution)
    return drop_background(p * maps, include_background).mean(-1)


def _window_extreme(x, axis, fill, reduce):
    """min/max over a window of 3 along `axis` of `(N, *spatial, C)`, padded with `fill` (torch's -inf padding)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    padded = np.pad(x, pad, constant_values=fill)
    size = x.shape[axis]
    shifted = [np.take(padded, np.arange(o, o + size), axis=axis) for o in range(3)]
    return reduce(np.stack(shifted), axis=0)


def soft_erode(img):
    axes = range(1, img.ndim - 1)
    return np.min(np.stack([_window_extreme(img, a, np.inf, np.min) for a in axes]), axis=0)


def soft_dilate(img):
    for axis in range(1, img.ndim - 1):  # the max over a box is separable
        img = _window_extreme(img, axis, -np.inf, np.max)
    return img


def soft_skel(img, iterations):
    """jocpae/clDice soft_skel."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    img1 = soft_dilate(soft_erode(img))
    skel = relu(img - img1)
    for _ in range(iterations):
        img = soft_erode(img)
        img1 = soft_dilate(soft_erode(img))
        delta = relu(img - img1)
        skel = skel + relu(delta - skel * delta)
    return skel


def authors_soft_dice_cldice(y_true, y_pred, iterations=3, smooth=1.0, alpha=None):
    """jocpae/clDice soft_cldice (alpha None) or soft_dice_cldice, pooled over batch and channels."""
    skel_pred, skel_true = soft_skel(y_pred, iterations), soft_skel(y_true, iterations)
    tprec = (np.sum(skel_pred * y_true) + smooth) / (np.sum(skel_pred) + smooth)
    tsens = (np.sum(skel_true * y_pred) + smooth) / (np.sum(skel_true) + smooth)
    cl_dice = 1.0 - 2.0 * (tprec * tsens) / (tprec + tsens)
    if alpha is None:
        return cl_dice
    dice = 1.0 - (2.0 * np.sum(y_true * y_pred) + smooth) / (np.sum(y_true) + np.sum(y_pred) + smooth)
    return (1.0 - alpha) * dice + alpha * cl_dice


def _ratio(num, den):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def cldice(
    y_true,
    y_pred,
    *,
    alpha=None,
    iterations=3,
    smooth=1.0,
    mode="multiclass",
    from_logits=False,
    per_image=True,
    include_background=True,
    sample_weight=None,
):
    """The library's layout of (Dice +) clDice: one ratio per class (and image), averaged over classes."""
    t, p = dense(y_true, y_pred, mode, from_logits)
    weight = np.ones((*p.shape[:-1], 1))
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float64)
        weight = weight * sw.reshape(sw.shape + (1,) * (p.ndim - sw.ndim))
    axes = tuple(range(1 if per_image else 0, p.ndim - 1))

    def total(x):
        return (x * weight).sum(axis=axes)

    skel_pred, skel_true = soft_skel(p, iterations), soft_skel(t, iterations)
    tprec = _ratio(total(skel_pred * t) + smooth, total(skel_pred) + smooth)
    tsens = _ratio(total(skel_true * p) + smooth, total(skel_true) + smooth)
    loss = 1.0 - _ratio(2 * tprec * tsens, tprec + tsens)
    if alpha is not None:
        dice = _ratio(2 * total(p * t) + smooth, total(p) + total(t) + smooth)
        loss = (1 - alpha) * (1 - dice) + alpha * loss
    return drop_background(loss, include_background).mean(-1)
