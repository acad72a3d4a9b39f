"""clDice (Shit et al. 2021): topology-preserving losses for thin, tubular structures.

The soft skeleton of a probability map is taken by iterated soft erosions (min-pooling) and
openings (min- then max-pooling); clDice compares each skeleton with the other mask:
topology precision (how much of the predicted skeleton lies inside the target) and topology
sensitivity (how much of the target skeleton the prediction covers). Overlap losses such as
Dice weigh every pixel alike, so a one-pixel break in a vessel costs almost nothing; the
skeleton terms make such breaks expensive.

Region losses like Dice (`keras_lossopt.losses.overlap`): `per_image=True` gives one value
per image and `reduction`/`sample_weight` apply to them; `per_image=False` gives one value
for the batch from sums over the batch, with `sample_weight` (per image or per pixel) inside
the sums. The skeletons are computed from whole images; weights and masks act in the sums.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import OVERLAP_MODES
from keras_lossopt._validation import check_choice, check_int, check_non_negative, check_probability
from keras_lossopt.losses.contract import FamilyFromMode
from keras_lossopt.losses.hausdorff import dense_inputs
from keras_lossopt.losses.region import RegionLoss, select_classes, smoothed_ratio, soft_confusion_counts
from keras_lossopt.losses.registry import register_alias

__all__ = ["SoftClDiceLoss", "SoftDiceClDiceLoss", "soft_cldice_loss", "soft_dice_cldice_loss", "soft_skeleton"]


def _window_extreme(x, axis, reduce):
    """`reduce` (ops.minimum or ops.maximum) over a window of 3 along `axis`, ignoring positions outside the image.

    The edge value is repeated instead of padding, which leaves the min and max unchanged.
    Shifted slices rather than `max_pool`: TensorFlow's 3-D max-pooling gradient sends the
    gradient to every tied maximum, and an eroded image repeats values (measured: wrong
    clDice gradients in 3-D); `ops.minimum`/`ops.maximum` send it to one.
    """
    if x.shape[axis] == 1:
        return x

    def part(start, stop):
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(start, stop)
        return x[tuple(index)]

    previous = ops.concatenate([part(0, 1), part(0, -1)], axis=axis)
    following = ops.concatenate([part(1, None), part(-1, None)], axis=axis)
    return reduce(reduce(x, previous), following)


def _soft_erode(x):
    """Minimum over the cross neighbourhood (the reference's min of one-axis min-pools)."""
    eroded = None
    for axis in range(1, len(x.shape) - 1):
        pooled = _window_extreme(x, axis, ops.minimum)
        eroded = pooled if eroded is None else ops.minimum(eroded, pooled)
    return eroded


def _soft_dilate(x):
    """Maximum over the 3x3 (3x3x3) box: one axis after the other (a box max is separable)."""
    for axis in range(1, len(x.shape) - 1):
        x = _window_extreme(x, axis, ops.maximum)
    return x


def soft_skeleton(probabilities, iterations=3):
    """The soft skeleton of probability maps (Shit et al. 2021, Algorithm 1).

    Use it to build topology-aware scores; `SoftClDiceLoss` uses it on predictions and targets.

    Formula:
        `open(x) = dilate(erode(x))`; `skel = relu(x - open(x))`; then `iterations` times:
        `x = erode(x)`, `delta = relu(x - open(x))`, `skel = skel + relu(delta - skel * delta)`.
        `erode` is the minimum over the cross neighbourhood, `dilate` the maximum over the
        3x3 (3x3x3) window; positions outside the image never win a min or max.

    Args:
        probabilities: values in [0, 1] of shape `(N, H, W, C)` or `(N, D, H, W, C)`.
        iterations: number of erosions; at least the half-width of the thickest structure
            to be reduced to its centre line. Default 3 (the authors' PyTorch default).

    Returns:
        The soft skeleton, of the shape of `probabilities`.

    Raises:
        ValueError: for inputs that are not 2-D or 3-D images.

    Examples:
        >>> import numpy as np
        >>> bar = np.zeros((1, 5, 7, 1))
        >>> bar[0, 1:4, 1:6] = 1.0  # a bar 3 pixels wide
        >>> np.asarray(soft_skeleton(bar))[0, :, :, 0].astype(int)[2].tolist()
        [0, 0, 1, 1, 1, 0, 0]

    References:
        Shit, Paetzold, Sekuboyina, et al. (2021). clDice - a Novel Topology-Preserving Loss
        Function for Tubular Structure Segmentation. CVPR.
    """
    x = ops.convert_to_tensor(probabilities)
    if len(x.shape) not in (4, 5):
        raise ValueError(
            "`probabilities` must be (N, H, W, C) images or (N, D, H, W, C) volumes. "
            f"Received: probabilities.shape={tuple(x.shape)}"
        )
    opened = _soft_dilate(_soft_erode(x))
    skeleton = ops.relu(x - opened)
    for _ in range(iterations):
        x = _soft_erode(x)
        opened = _soft_dilate(_soft_erode(x))
        delta = ops.relu(x - opened)
        skeleton = skeleton + ops.relu(delta - skeleton * delta)
    return skeleton


def _cldice_terms(y_true, y_pred, iterations, smooth, mode, from_logits, per_image, weight):
    """Per-class `(cl_dice_loss, dice_loss)`, shape `(N, C)` or `(C,)`.

    Every sum is a soft count of `overlap.soft_confusion_counts` (which also sums batch
    counts across `tf.distribute` replicas): `TP(t, S_p)` and `TP + FP` give topology
    precision, `TP(S_t, p)` and `TP + FN` topology sensitivity.
    """
    targets, probs = dense_inputs(y_true, y_pred, mode, from_logits)
    skeleton_pred, skeleton_true = soft_skeleton(probs, iterations), soft_skeleton(targets, iterations)
    on_target = soft_confusion_counts(targets, skeleton_pred, weight, per_image=per_image)
    covered = soft_confusion_counts(skeleton_true, probs, weight, per_image=per_image)
    precision = smoothed_ratio(on_target.tp + smooth, on_target.tp + on_target.fp + smooth)
    sensitivity = smoothed_ratio(covered.tp + smooth, covered.tp + covered.fn + smooth)
    harmonic = smoothed_ratio(2.0 * precision * sensitivity, precision + sensitivity)
    tp, fp, fn = soft_confusion_counts(targets, probs, weight, per_image=per_image)
    dice = smoothed_ratio(2.0 * tp + smooth, 2.0 * tp + fp + fn + smooth)
    return 1.0 - harmonic, 1.0 - dice


def soft_cldice_loss(
    y_true,
    y_pred,
    *,
    iterations=3,
    smooth=1.0,
    mode="multiclass",
    from_logits=False,
    per_image=True,
    include_background=True,
    weight=None,
):
    """Per-image (or batch) soft clDice loss. See `SoftClDiceLoss` for the arguments and the formula.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        iterations: soft-skeleton iterations.
        smooth: added to the numerators and denominators of topology precision and sensitivity.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        weight: optional per-image or per-position weight inside the sums (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    cl_dice, _ = _cldice_terms(y_true, y_pred, iterations, smooth, mode, from_logits, per_image, weight)
    cl_dice, _ = select_classes(cl_dice, y_pred, include_background)
    return ops.mean(cl_dice, axis=-1)


def soft_dice_cldice_loss(
    y_true,
    y_pred,
    *,
    alpha=0.5,
    iterations=3,
    smooth=1.0,
    mode="multiclass",
    from_logits=False,
    per_image=True,
    include_background=True,
    weight=None,
):
    """Per-image (or batch) `(1 - alpha) * soft Dice + alpha * soft clDice`. See `SoftDiceClDiceLoss`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        alpha: weight of the clDice term, in [0, 1].
        iterations: soft-skeleton iterations.
        smooth: smoothing of the Dice and clDice ratios.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        per_image: `(N,)` values (True) or one value for the batch (False).
        include_background: count channel 0.
        weight: optional per-image or per-position weight inside the sums (a mask).

    Returns:
        `(N,)` per-image values, or a 0-d value for `per_image=False`.
    """
    cl_dice, dice = _cldice_terms(y_true, y_pred, iterations, smooth, mode, from_logits, per_image, weight)
    combined, _ = select_classes((1.0 - alpha) * dice + alpha * cl_dice, y_pred, include_background)
    return ops.mean(combined, axis=-1)


class _ClDiceBase(RegionLoss):
    loss_family = FamilyFromMode()

    def __init__(self, iterations, smooth, mode, from_logits, per_image, include_background, reduction, name, dtype):
        super().__init__(per_image=per_image, reduction=reduction, name=name, dtype=dtype)
        self.iterations = check_int("iterations", iterations, minimum=0)
        self.smooth = check_non_negative("smooth", smooth)
        self.mode = check_choice("mode", mode, OVERLAP_MODES)
        self.from_logits = bool(from_logits)
        self.include_background = bool(include_background)

    def shared_arguments(self):
        return {
            "iterations": self.iterations,
            "smooth": self.smooth,
            "mode": self.mode,
            "from_logits": self.from_logits,
            "per_image": self.per_image,
            "include_background": self.include_background,
        }

    def get_config(self):
        config = {**super().get_config(), **self.shared_arguments()}
        return config


@keras.saving.register_keras_serializable(package="keras_lossopt")
class SoftClDiceLoss(_ClDiceBase):
    """Soft clDice loss (Shit et al. 2021): Dice between soft skeletons and masks.

    Use it for thin, connected structures (vessels, roads, neurons, cracks), normally through
    `SoftDiceClDiceLoss`: alone it only sees the skeletons and does not fit the widths.

    Formula:
        per class, `S_p = soft_skeleton(p)`, `S_t = soft_skeleton(t)`;
        `Tprec = (sum(S_p t) + s) / (sum(S_p) + s)`, `Tsens = (sum(S_t p) + s) / (sum(S_t) + s)`;
        `loss = mean_c 1 - 2 Tprec Tsens / (Tprec + Tsens)`.

    Same values as the authors' `soft_cldice` (jocpae/clDice, PyTorch) for one channel and
    `per_image=False`. Differences: several channels give one clDice per class, averaged
    (the reference pools all channels into one sum); `per_image=True` (default) takes one
    value per image, the reference one for the batch; the reference's `exclude_background`
    is `include_background=False`; channel-last.

    Args:
        iterations: soft-skeleton iterations; at least the half-width of the thickest
            structure. Default 3 (the reference's).
        smooth: added to the numerators and denominators, >= 0. Default 1.0 (the reference's).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0. Default True.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"soft_cldice_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        `(N,)` per-image values reduced by `reduction` (per_image=True), or one value for
        the batch (per_image=False).

    Raises:
        ValueError: for an unknown `mode`, negative `iterations` or `smooth`, inputs that
            are not 2-D or 3-D images, or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> vessel = np.zeros((1, 7, 7, 1))
        >>> vessel[0, 3, :] = 1.0
        >>> broken = vessel.copy()
        >>> broken[0, 3, 3] = 0.0
        >>> loss = SoftClDiceLoss(mode="binary", smooth=0.0)
        >>> round(float(loss(vessel, vessel)), 4), round(float(loss(vessel, broken)), 4)
        (0.0, 0.0769)

    References:
        Shit, Paetzold, Sekuboyina, et al. (2021). clDice - a Novel Topology-Preserving Loss
        Function for Tubular Structure Segmentation. CVPR.
    """

    def __init__(
        self,
        iterations=3,
        smooth=1.0,
        mode="multiclass",
        from_logits=False,
        per_image=True,
        include_background=True,
        reduction="sum_over_batch_size",
        name="soft_cldice_loss",
        dtype=None,
    ):
        super().__init__(iterations, smooth, mode, from_logits, per_image, include_background, reduction, name, dtype)

    def region_loss(self, y_true, y_pred, weight):
        return soft_cldice_loss(y_true, y_pred, weight=weight, **self.shared_arguments())


@keras.saving.register_keras_serializable(package="keras_lossopt")
class SoftDiceClDiceLoss(_ClDiceBase):
    """Soft Dice plus soft clDice (Shit et al. 2021): the authors' training loss.

    Use it for thin structures whose connectivity matters; `alpha` trades the volume fit
    (Dice) for the topology (clDice).

    Formula:
        per class, `loss_c = (1 - alpha) (1 - dice_c) + alpha clDice_loss_c` with
        `dice_c = (2 sum(p t) + s) / (sum(p) + sum(t) + s)` and clDice as in
        `SoftClDiceLoss`; `loss = mean_c loss_c`.

    Same values as the authors' `soft_dice_cldice` (jocpae/clDice, PyTorch) for one channel
    and `per_image=False`; differences as in `SoftClDiceLoss`.

    Args:
        alpha: weight of the clDice term, in [0, 1]. Default 0.5 (the reference's).
        iterations: soft-skeleton iterations. Default 3.
        smooth: smoothing of both ratios, >= 0. Default 1.0.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        per_image: one value per image (True; default) or one for the batch (False).
        include_background: count channel 0. Default True.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"soft_dice_cldice_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        As `SoftClDiceLoss`.

    Raises:
        ValueError: as `SoftClDiceLoss`, and for `alpha` outside [0, 1].

    Examples:
        >>> import numpy as np
        >>> vessel = np.zeros((1, 7, 7, 1))
        >>> vessel[0, 3, :] = 1.0
        >>> broken = vessel.copy()
        >>> broken[0, 3, 3] = 0.0
        >>> round(float(SoftDiceClDiceLoss(mode="binary", smooth=0.0)(vessel, broken)), 4)
        0.0769

    References:
        Shit, Paetzold, Sekuboyina, et al. (2021). clDice - a Novel Topology-Preserving Loss
        Function for Tubular Structure Segmentation. CVPR.
    """

    def __init__(
        self,
        alpha=0.5,
        iterations=3,
        smooth=1.0,
        mode="multiclass",
        from_logits=False,
        per_image=True,
        include_background=True,
        reduction="sum_over_batch_size",
        name="soft_dice_cldice_loss",
        dtype=None,
    ):
        super().__init__(iterations, smooth, mode, from_logits, per_image, include_background, reduction, name, dtype)
        self.alpha = check_probability("alpha", alpha)

    def region_loss(self, y_true, y_pred, weight):
        return soft_dice_cldice_loss(y_true, y_pred, alpha=self.alpha, weight=weight, **self.shared_arguments())

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


register_alias("cldice", SoftClDiceLoss)
register_alias("soft_cldice", SoftClDiceLoss)
register_alias("dice_cldice", SoftDiceClDiceLoss)
