"""Hausdorff-distance losses (Karimi and Salcudean 2019): distance-transform and erosion forms.

Both penalize errors by how far they lie from the boundaries, a differentiable stand-in for
the Hausdorff distance (which itself has no useful gradient). Both are per-position losses:
`call` returns one value per image position (the mean over classes), so Keras' reductions,
per-pixel `sample_weight` and masks apply as for any per-position loss, and the default
`"sum_over_batch_size"` reduction is the mean over images, positions and classes that MONAI
and kornia return with `reduction="mean"`.

Targets: sparse class indices or one-hot targets in `"multiclass"` mode (softmax), 0/1
targets in `"binary"` / `"multilabel"` mode (sigmoids), as for `DiceLoss`. Images are 2-D
`(N, H, W, C)` or 3-D `(N, D, H, W, C)` with static spatial sizes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._targets import OVERLAP_MODES, overlap_inputs
from keras_lossopt._validation import check_choice, check_int, check_positive
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.losses.contract import FamilyFromMode
from keras_lossopt.losses.distance_maps import foreground_and_background_distances, spatial_shape
from keras_lossopt.losses.region import select_classes
from keras_lossopt.losses.registry import register_alias

__all__ = ["HausdorffDTLoss", "HausdorffERLoss", "hausdorff_dt_loss", "hausdorff_er_loss"]


def dense_inputs(y_true, y_pred, mode, from_logits):
    """Dense targets and probabilities `(N, *spatial, C)` of a 2-D or 3-D segmentation, checked."""
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    targets, probs, _ = overlap_inputs(y_true, y_pred, mode=mode, from_logits=from_logits)
    spatial_shape(y_pred)
    return targets, probs


def distance_field(probabilities):
    """MONAI's `distance_field`: distance to the nearest position of the other side of the 0.5 level set.

    0 for an image-channel that is all foreground or all background (no boundary).
    """
    foreground = ops.stop_gradient(probabilities) > 0.5
    to_background, to_foreground, has_both = foreground_and_background_distances(foreground)
    return ops.where(has_both, to_background + to_foreground, 0.0)


def hausdorff_dt_loss(y_true, y_pred, *, alpha=2.0, mode="multiclass", from_logits=False, include_background=True):
    """Per-position Hausdorff distance-transform loss. See `HausdorffDTLoss`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        alpha: exponent of the distances.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        include_background: count channel 0.

    Returns:
        `(N, *spatial)` values: the mean over classes at each position.
    """
    targets, probs = dense_inputs(y_true, y_pred, mode, from_logits)
    distances = ops.power(distance_field(probs), alpha) + ops.power(distance_field(targets), alpha)
    per_class = ops.square(probs - targets) * ops.cast(distances, probs.dtype)
    per_class, _ = select_classes(per_class, y_pred, include_background)
    return ops.mean(per_class, axis=-1)


def _cross_kernel(rank, dtype):
    """kornia's erosion kernel: the centre and its 2*rank face neighbours, normalized to sum 1."""
    kernel = np.zeros((3,) * rank, np.float64)
    kernel[(1,) * rank] = 1.0
    for axis in range(rank):
        for side in (0, 2):
            index = [1] * rank
            index[axis] = side
            kernel[tuple(index)] = 1.0
    kernel /= kernel.sum()
    return ops.convert_to_tensor(kernel.reshape((*kernel.shape, 1, 1)), dtype=dtype)


def hausdorff_er_loss(
    y_true, y_pred, *, alpha=2.0, erosions=10, mode="multiclass", from_logits=False, include_background=True
):
    """Per-position Hausdorff erosion loss. See `HausdorffERLoss`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities, or logits with `from_logits=True`.
        alpha: exponent of the erosion index.
        erosions: number of erosions.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        include_background: count channel 0.

    Returns:
        `(N, *spatial)` values: the mean over classes at each position.
    """
    targets, probs = dense_inputs(y_true, y_pred, mode, from_logits)
    spatial = tuple(probs.shape[1:-1])
    rank, channels = len(spatial), probs.shape[-1]
    # Every class is eroded on its own: classes go into the batch axis, one input channel.
    bound = ops.reshape(ops.moveaxis(ops.square(probs - targets), -1, 1), (-1, *spatial, 1))
    kernel = _cross_kernel(rank, probs.dtype)
    spatial_axes = tuple(range(1, rank + 1))
    eroded = ops.zeros_like(bound)
    for k in range(erosions):
        erosion = ops.relu(ops.conv(bound, kernel, padding="same") - 0.5)
        largest = ops.max(erosion, axis=spatial_axes, keepdims=True)
        smallest = ops.min(erosion, axis=spatial_axes, keepdims=True)
        spread = largest - smallest
        # Normalized to [0, 1] per image and class where it varies (kornia); the safe
        # divisor keeps the unused branch of `where` from sending NaN gradients.
        varies = spread != 0
        erosion = ops.where(varies, (erosion - smallest) / ops.where(varies, spread, 1.0), erosion)
        eroded = eroded + erosion * float((k + 1) ** alpha)
        bound = erosion
    per_class = ops.moveaxis(ops.reshape(eroded, (-1, channels, *spatial)), 1, -1)
    # NaN targets (a label out of range under XLA) must give a NaN loss, and relu(NaN) is 0 on
    # some CPUs: carry the NaN past the erosions explicitly.
    per_class = per_class + 0.0 * targets
    per_class, _ = select_classes(per_class, y_pred, include_background)
    return ops.mean(per_class, axis=-1)


class DistanceLoss(LossFunctionBase):
    """Shared arguments of the per-position distance losses."""

    loss_family = FamilyFromMode()

    def __init__(self, mode, from_logits, include_background, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mode = check_choice("mode", mode, OVERLAP_MODES)
        self.from_logits = bool(from_logits)
        self.include_background = bool(include_background)

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "from_logits": self.from_logits,
            "include_background": self.include_background,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class HausdorffDTLoss(DistanceLoss):
    """Hausdorff distance loss, distance-transform form (Karimi and Salcudean 2019).

    Use it, usually next to Dice or cross-entropy, to pull in segmentation errors far from
    the true boundary, which overlap losses barely notice and which set the Hausdorff distance.

    Formula:
        per class, `d_p` and `d_t` are the distances of each position to the boundary of
        the thresholded prediction (`p > 0.5`) and of the target (0 for an image and class
        without boundary), with no gradient;
        `loss(x) = mean_c (p_c(x) - t_c(x))**2 * (d_p(x)**alpha + d_t(x)**alpha)`.

    Same values as MONAI's `HausdorffDTLoss` (channel-last instead of channel-first,
    `from_logits` instead of `sigmoid`/`softmax`). Differences: the distance transforms are
    exact Euclidean transforms computed in the graph with `keras.ops`
    (`keras_lossopt.losses.distance_to_nearest`, compiles with XLA) instead of SciPy/cuCIM
    outside it; `include_background` defaults to True as in the package's other losses
    (MONAI: False); the batch mean is Keras' reduction (MONAI's `batch=True` gives the
    same mean for images of equal size).

    Args:
        alpha: exponent > 0 of the distances. Default 2.0 (the paper's).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        include_background: count channel 0. Default True.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"hausdorff_dt_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        The reduced loss; `(N, *spatial)` values for `reduction="none"`.

    Raises:
        ValueError: for an unknown `mode`, `alpha <= 0`, inputs that are not 2-D or 3-D
            images, or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> y_true = np.zeros((1, 4, 4), np.int64)
        >>> y_true[0, 1:3, 1:3] = 1
        >>> probs = np.full((1, 4, 4, 2), 0.5)
        >>> round(float(HausdorffDTLoss()(y_true, probs)), 4)
        0.3125

    References:
        Karimi, Salcudean (2019). Reducing the Hausdorff Distance in Medical Image
        Segmentation with Convolutional Neural Networks. IEEE Transactions on Medical Imaging.
    """

    def __init__(
        self,
        alpha=2.0,
        mode="multiclass",
        from_logits=False,
        include_background=True,
        reduction="sum_over_batch_size",
        name="hausdorff_dt_loss",
        dtype=None,
    ):
        super().__init__(mode, from_logits, include_background, reduction, name, dtype)
        self.alpha = check_positive("alpha", alpha)

    def call(self, y_true, y_pred):
        return hausdorff_dt_loss(
            y_true,
            y_pred,
            alpha=self.alpha,
            mode=self.mode,
            from_logits=self.from_logits,
            include_background=self.include_background,
        )

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class HausdorffERLoss(DistanceLoss):
    """Hausdorff distance loss, morphological-erosion form (Karimi and Salcudean 2019).

    Use it like `HausdorffDTLoss` when no distance transform is wanted: the squared error
    map is eroded `erosions` times with a soft cross-shaped erosion, and what survives (the
    thick error regions, far from any boundary) is penalized with the erosion index.

    Formula:
        `b_0 = (p - t)**2` per class; for `k = 1..K`:
        `e_k = normalize(relu(conv(b_{k-1}, cross) - 0.5))`, `b_k = e_k`, where `cross` is
        the centre and its face neighbours weighted `1 / (2 rank + 1)` and `normalize` maps
        each image and class to [0, 1] by its min and max when they differ;
        `loss(x) = mean_c sum_k k**alpha e_k(x)`.

    Same values as kornia's `HausdorffERLoss` / `HausdorffERLoss3D` (kornia takes
    probabilities and sparse labels; here also logits with `from_logits`, one-hot targets
    and sigmoid modes). Differences: channel-last; `include_background=False` drops channel 0
    (kornia always keeps every class).

    Args:
        alpha: exponent > 0 of the erosion index `k`. Default 2.0.
        erosions: number of erosions `K >= 1`. Default 10.
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        include_background: count channel 0. Default True.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"hausdorff_er_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        The reduced loss; `(N, *spatial)` values for `reduction="none"`.

    Raises:
        ValueError: for an unknown `mode`, `alpha <= 0`, `erosions < 1`, inputs that are
            not 2-D or 3-D images, or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> y_true = np.zeros((1, 5, 5), np.int64)
        >>> y_true[0, 1:4, 1:4] = 1
        >>> probs = np.eye(2)[1 - y_true]  # every pixel wrong
        >>> round(float(HausdorffERLoss(erosions=3)(y_true, probs)), 4)
        2.4395

    References:
        Karimi, Salcudean (2019). Reducing the Hausdorff Distance in Medical Image
        Segmentation with Convolutional Neural Networks. IEEE Transactions on Medical Imaging.
    """

    def __init__(
        self,
        alpha=2.0,
        erosions=10,
        mode="multiclass",
        from_logits=False,
        include_background=True,
        reduction="sum_over_batch_size",
        name="hausdorff_er_loss",
        dtype=None,
    ):
        super().__init__(mode, from_logits, include_background, reduction, name, dtype)
        self.alpha = check_positive("alpha", alpha)
        self.erosions = check_int("erosions", erosions, minimum=1)

    def call(self, y_true, y_pred):
        return hausdorff_er_loss(
            y_true,
            y_pred,
            alpha=self.alpha,
            erosions=self.erosions,
            mode=self.mode,
            from_logits=self.from_logits,
            include_background=self.include_background,
        )

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "erosions": self.erosions}


register_alias("hausdorff_dt", HausdorffDTLoss)
register_alias("hausdorff", HausdorffDTLoss)
register_alias("hausdorff_er", HausdorffERLoss)
