"""Boundary metrics of segmentations: the (95th-percentile) Hausdorff distance and the normalized surface Dice.

Both compare the *edges* of the hard predicted and target masks, per image and class, as
MONAI's `compute_hausdorff_distance` and `compute_surface_dice` do: the edge of a mask is
the mask minus its erosion by the cross (face neighbours; positions outside the image count
as background, so a mask touching the border has an edge there), and each edge position's
distance is the Euclidean distance to the nearest edge position of the other mask (exact,
in the graph: `keras_lossopt.losses.distance_to_nearest`). `spacing` (MONAI's) gives the
pixel or voxel size per spatial axis for anisotropic data; distances and tolerances are then
in its units.

Predictions are made hard like `DiceScore`'s (arg-max for softmax outputs, a threshold for
sigmoid outputs); targets follow the loss conventions (`keras_lossopt._targets.overlap_inputs`).
The metrics average the per-image, per-class values over every batch, skipping undefined
(NaN) values - an image and class empty in both masks - as MONAI's `"mean"` reduction does.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import overlap_inputs
from keras_lossopt._validation import check_choice, check_in_range, check_per_class, check_spacing
from keras_lossopt.losses.distance_maps import distance_to_nearest

__all__ = ["HausdorffDistance", "SurfaceDice", "hausdorff_distance", "surface_dice"]

MODES = ("multiclass", "binary", "multilabel")  # the modes of the overlap losses


def hard_masks(y_true, y_pred, *, mode="multiclass", from_logits=False, threshold=0.5, include_background=False):
    """Boolean target and predicted masks `(N, *spatial, C)` (channel 0 dropped if asked, multiclass only)."""
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    targets, probs, _ = overlap_inputs(y_true, y_pred, mode=mode, from_logits=False)
    if len(probs.shape) not in (4, 5):
        raise ValueError(
            "`y_pred` must be a batch of 2-D images (N, H, W, C) or 3-D volumes (N, D, H, W, C). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    if mode == "multiclass":
        predicted = ops.one_hot(ops.argmax(probs, axis=-1), probs.shape[-1], dtype="bool")
    else:
        predicted = (ops.sigmoid(probs) if from_logits else probs) > threshold
    true = targets > 0.5
    if not include_background and mode == "multiclass":
        if probs.shape[-1] == 1:
            raise ValueError(
                "`include_background=False` needs more than one channel: channel 0 is the background. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        true, predicted = true[..., 1:], predicted[..., 1:]
    return true, predicted


def mask_edges(mask):
    """`mask` minus its erosion by the cross, positions outside the image counting as background.

    Args:
        mask: booleans `(N, *spatial, C)`.

    Returns:
        Booleans of the same shape: the edge positions (SciPy's `binary_erosion(m) ^ m`).
    """
    eroded = mask
    for axis in range(1, len(mask.shape) - 1):
        pad = [(0, 0)] * len(mask.shape)
        pad[axis] = (1, 1)
        padded = ops.pad(ops.cast(mask, "int8"), pad) > 0
        size = mask.shape[axis]
        index = [slice(None)] * len(mask.shape)
        index[axis] = slice(0, size)
        before = padded[tuple(index)]
        index[axis] = slice(2, size + 2)
        after = padded[tuple(index)]
        eroded = ops.logical_and(eroded, ops.logical_and(before, after))
    return ops.logical_and(mask, ops.logical_not(eroded))


def _surface_distances(true, predicted, spacing=None):
    """Edges and, at every position, the distance to the nearest edge of the other mask (inf if none)."""
    true_edges, predicted_edges = mask_edges(true), mask_edges(predicted)
    return (
        true_edges,
        predicted_edges,
        distance_to_nearest(true_edges, spacing),
        distance_to_nearest(predicted_edges, spacing),
    )


def _flat(x):
    """`(N, *spatial, C)` -> `(N, C, P)`."""
    return ops.transpose(ops.reshape(x, (ops.shape(x)[0], -1, x.shape[-1])), (0, 2, 1))


def _masked_percentile(values, keep, percentile):
    """NumPy's linear-interpolation percentile of `values[keep]` over the last axis (or the max for None).

    `values` must be finite where `keep` holds; the result for an empty selection is arbitrary
    (the caller overrides it).
    """
    count = ops.sum(ops.cast(keep, "int32"), axis=-1)
    if percentile is None:
        return ops.max(ops.where(keep, values, 0.0), axis=-1)
    ordered = ops.sort(ops.where(keep, values, float("inf")), axis=-1)
    position = ops.cast(ops.maximum(count - 1, 0), values.dtype) * (percentile / 100.0)
    lower = ops.floor(position)
    upper = ops.minimum(lower + 1.0, ops.cast(ops.maximum(count - 1, 0), values.dtype))
    low_value = ops.take_along_axis(ordered, ops.expand_dims(ops.cast(lower, "int32"), -1), axis=-1)[..., 0]
    high_value = ops.take_along_axis(ordered, ops.expand_dims(ops.cast(upper, "int32"), -1), axis=-1)[..., 0]
    # Where lower == upper the two values are equal; the product then is 0, never inf * 0.
    return low_value + ops.where(upper > lower, (high_value - low_value) * (position - lower), 0.0)


def hausdorff_distance(
    y_true,
    y_pred,
    *,
    percentile=95.0,
    mode="multiclass",
    from_logits=False,
    threshold=0.5,
    include_background=False,
    spacing=None,
):
    """Per-image, per-class (percentile) Hausdorff distance between the mask edges. See `HausdorffDistance`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities or logits, class axis last.
        percentile: the percentile of the surface distances in [0, 100], or None for the maximum.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether sigmoid outputs are logits.
        threshold: probability above which a sigmoid output is foreground.
        include_background: in multiclass mode, also score channel 0.
        spacing: pixel or voxel size, one value or one per spatial axis; None for unit spacing.

    Returns:
        float32 `(N, C)` distances (in the units of `spacing`): NaN where both masks are
        empty, inf where one is.
    """
    true, predicted = hard_masks(
        y_true,
        y_pred,
        mode=mode,
        from_logits=from_logits,
        threshold=threshold,
        include_background=include_background,
    )
    true_edges, predicted_edges, to_true, to_predicted = (
        _flat(x) for x in _surface_distances(true, predicted, spacing)
    )
    has_true, has_predicted = ops.any(true_edges, axis=-1), ops.any(predicted_edges, axis=-1)
    both = ops.logical_and(has_true, has_predicted)
    # Distances to an empty edge set are inf; zeroed here, the result is overridden below.
    safe_to_true = ops.where(ops.expand_dims(both, -1), to_true, 0.0)
    safe_to_predicted = ops.where(ops.expand_dims(both, -1), to_predicted, 0.0)
    distance = ops.maximum(
        _masked_percentile(safe_to_true, predicted_edges, percentile),
        _masked_percentile(safe_to_predicted, true_edges, percentile),
    )
    neither = ops.logical_not(ops.logical_or(has_true, has_predicted))
    return ops.where(both, distance, ops.where(neither, float("nan"), float("inf")))


def surface_dice(
    y_true,
    y_pred,
    *,
    tolerance=1.0,
    mode="multiclass",
    from_logits=False,
    threshold=0.5,
    include_background=False,
    spacing=None,
):
    """Per-image, per-class normalized surface Dice at a tolerance. See `SurfaceDice`.

    Args:
        y_true: targets (see `overlap_inputs`).
        y_pred: probabilities or logits, class axis last.
        tolerance: the accepted distance (in the units of `spacing`), one value or one per scored class.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether sigmoid outputs are logits.
        threshold: probability above which a sigmoid output is foreground.
        include_background: in multiclass mode, also score channel 0.
        spacing: pixel or voxel size, one value or one per spatial axis; None for unit spacing.

    Returns:
        float32 `(N, C)` values in [0, 1]: NaN where both masks are empty, 0 where one is.
    """
    true, predicted = hard_masks(
        y_true,
        y_pred,
        mode=mode,
        from_logits=from_logits,
        threshold=threshold,
        include_background=include_background,
    )
    true_edges, predicted_edges, to_true, to_predicted = (
        _flat(x) for x in _surface_distances(true, predicted, spacing)
    )
    classes = true_edges.shape[1]
    if isinstance(tolerance, (list, tuple)) and classes is not None and len(tolerance) != classes:
        raise ValueError(
            f"`tolerance` has {len(tolerance)} values but {classes} classes are scored "
            f"(include_background={include_background}): y_pred.shape={tuple(ops.shape(y_pred))}."
        )
    limit = ops.reshape(ops.convert_to_tensor(tolerance, dtype="float32"), (-1, 1))
    close = ops.logical_and(predicted_edges, to_true <= limit)
    covered = ops.logical_and(true_edges, to_predicted <= limit)
    correct = ops.sum(ops.cast(close, "float32"), axis=-1) + ops.sum(ops.cast(covered, "float32"), axis=-1)
    total = ops.sum(ops.cast(predicted_edges, "float32"), axis=-1) + ops.sum(ops.cast(true_edges, "float32"), axis=-1)
    return ops.where(total > 0, correct / ops.maximum(total, 1.0), float("nan"))


class BoundaryScore(keras.metrics.Metric):
    """The mean of per-image, per-class boundary values over every batch, NaNs skipped."""

    def __init__(self, mode, from_logits, threshold, include_background, spacing, name, dtype):
        super().__init__(name=name, dtype=dtype)
        self.mode = check_choice("mode", mode, MODES)
        self.from_logits = bool(from_logits)
        self.threshold = check_in_range("threshold", threshold, 0.0, 1.0)
        self.include_background = bool(include_background)
        self.spacing = check_spacing(spacing)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def values(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def shared_arguments(self):
        return {
            "mode": self.mode,
            "from_logits": self.from_logits,
            "threshold": self.threshold,
            "include_background": self.include_background,
            "spacing": self.spacing,
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        values = self.values(y_true, y_pred)
        weight = ops.ones_like(values)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            if len(sample_weight.shape) == 2 and sample_weight.shape[-1] == 1:
                sample_weight = ops.squeeze(sample_weight, -1)
            if len(sample_weight.shape) != 1:
                raise ValueError(
                    "`sample_weight` of a boundary metric must hold one weight per image, shape (N,). "
                    f"Received: sample_weight.shape={tuple(sample_weight.shape)}, y_pred.shape={tuple(y_pred.shape)}"
                )
            weight = weight * ops.expand_dims(sample_weight, -1)
        defined = ops.logical_not(ops.isnan(values))
        # Labels out of range under XLA make the targets NaN (see sparse_label_poison); the hard
        # masks would hide that and NaN values are skipped here, so the total is poisoned instead.
        targets, _, _ = overlap_inputs(ops.convert_to_tensor(y_true), y_pred, mode=self.mode)
        poison = ops.where(ops.any(ops.isnan(targets)), float("nan"), 0.0)
        self.total.assign_add(ops.sum(ops.where(defined, values * weight, 0.0)) + poison)
        self.count.assign_add(ops.sum(ops.where(defined, weight, 0.0)))

    def result(self):
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1e-12), float("nan"))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        spacing = list(self.spacing) if isinstance(self.spacing, tuple) else self.spacing
        return {**super().get_config(), **self.shared_arguments(), "spacing": spacing}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class HausdorffDistance(BoundaryScore):
    """The 95th-percentile Hausdorff distance (HD95) between predicted and target boundaries.

    Use it to watch how far the worst boundary errors lie, which overlap scores (Dice, IoU)
    hide: `model.compile(..., metrics=[HausdorffDistance()])`. Lower is better.

    Formula:
        per image and class, `d(A, B)` = the distances from each edge position of `A` to the
        nearest edge position of `B`; `HD = max(P_q d(pred, true), P_q d(true, pred))` with
        `P_q` NumPy's linear-interpolation percentile (`q = 95`; the maximum for None).
        NaN where both masks are empty (skipped in the mean), inf where only one is (the
        mean becomes inf, as MONAI's does).

    Same values as MONAI's `compute_hausdorff_distance(y_pred, y, percentile=95)` on the
    one-hot hard masks (channel-last; `spacing` as MONAI's, one for the whole batch; the edge and distance computations
    in `keras.ops`, compiled with the step, instead of SciPy/cuCIM), except where exactly
    one mask is empty: MONAI then returns NaN for a percentile (NumPy interpolates between
    infinities), which its mean skips, so a class the model misses entirely would vanish
    from the score; we return inf, as MONAI does for the maximum. MONAI also takes
    `percentile=0` for the maximum; here it is the minimum.

    Args:
        percentile: percentile in [0, 100] of the surface distances, or None for the maximum
            (the classical Hausdorff distance). Default 95.0.
        mode: `"multiclass"` (arg-max; default), `"binary"` or `"multilabel"` (thresholds).
        from_logits: whether sigmoid outputs are logits. Default False.
        threshold: probability above which a sigmoid output is foreground. Default 0.5.
        include_background: in multiclass mode, also score channel 0, whose edges include
            the image border. Default False (MONAI's). Sigmoid channels are all scored.
        spacing: the pixel or voxel size, one value or one per spatial axis (MONAI's
            `spacing` for every image of the batch); distances are then in its units.
            Default None: unit spacing.
        name: metric name. Default `"hausdorff_distance"`.
        dtype: dtype of the result.

    Returns:
        The mean distance in pixels over the (image, class) pairs seen; NaN before any
        defined pair.

    Raises:
        ValueError: for an unknown `mode`, a `percentile` outside [0, 100], a `threshold`
            outside [0, 1], outputs that are not 2-D or 3-D images, or a `sample_weight`
            that is not one weight per image.

    Examples:
        >>> import numpy as np
        >>> y_true = np.zeros((1, 8, 8), np.int64)
        >>> y_true[0, 2:6, 2:6] = 1
        >>> shifted = np.eye(2)[np.roll(y_true, 2, axis=2)]
        >>> metric = HausdorffDistance()
        >>> metric.update_state(y_true, shifted)
        >>> round(float(metric.result()), 4)
        2.0

    References:
        Huttenlocher, Klanderman, Rucklidge (1993). Comparing images using the Hausdorff
        distance. IEEE TPAMI.
    """

    def __init__(
        self,
        percentile=95.0,
        mode="multiclass",
        from_logits=False,
        threshold=0.5,
        include_background=False,
        spacing=None,
        name="hausdorff_distance",
        dtype=None,
    ):
        super().__init__(mode, from_logits, threshold, include_background, spacing, name, dtype)
        self.percentile = None if percentile is None else check_in_range("percentile", percentile, 0.0, 100.0)

    def values(self, y_true, y_pred):
        return hausdorff_distance(y_true, y_pred, percentile=self.percentile, **self.shared_arguments())

    def get_config(self):
        return {**super().get_config(), "percentile": self.percentile}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class SurfaceDice(BoundaryScore):
    """Normalized surface Dice (NSD): the share of both boundaries within a tolerance of the other.

    Use it when boundary placement matters up to an accepted deviation (radiotherapy
    contours, vessel walls): `SurfaceDice(tolerance=2.0)`. Higher is better, 1 at best.

    Formula:
        per image and class, `NSD = (|{d(pred, true) <= tau}| + |{d(true, pred) <= tau}|) /
        (|edges(pred)| + |edges(true)|)`; NaN where both masks are empty (skipped), 0 where
        only one is.

    Same values as MONAI's `compute_surface_dice(y_pred, y, class_thresholds)` without
    sub-voxel areas (channel-last; `spacing` as MONAI's, one for the whole batch; in `keras.ops`).

    Args:
        tolerance: accepted distance `tau` (pixels, or the units of `spacing`), >= 0: one value, or one per scored
            class. Default 1.0.
        mode: `"multiclass"` (arg-max; default), `"binary"` or `"multilabel"` (thresholds).
        from_logits: whether sigmoid outputs are logits. Default False.
        threshold: probability above which a sigmoid output is foreground. Default 0.5.
        include_background: in multiclass mode, also score channel 0. Default False (MONAI's).
        spacing: the pixel or voxel size, one value or one per spatial axis (MONAI's
            `spacing`); `tolerance` is then in its units. Default None: unit spacing.
        name: metric name. Default `"surface_dice"`.
        dtype: dtype of the result.

    Returns:
        The mean NSD over the (image, class) pairs seen; NaN before any defined pair.

    Raises:
        ValueError: as `HausdorffDistance`, and for a negative `tolerance` or one whose
            length differs from the number of scored classes.

    Examples:
        >>> import numpy as np
        >>> y_true = np.zeros((1, 8, 8), np.int64)
        >>> y_true[0, 2:6, 2:6] = 1
        >>> shifted = np.eye(2)[np.roll(y_true, 2, axis=2)]
        >>> metric = SurfaceDice(tolerance=1.0)
        >>> metric.update_state(y_true, shifted)
        >>> round(float(metric.result()), 4)
        0.6667

    References:
        Nikolov, Blackwell, Zverovitch, et al. (2021). Clinically Applicable Segmentation of
        Head and Neck Anatomy for Radiotherapy: Deep Learning Algorithm Development and
        Validation Study. JMIR.
    """

    def __init__(
        self,
        tolerance=1.0,
        mode="multiclass",
        from_logits=False,
        threshold=0.5,
        include_background=False,
        spacing=None,
        name="surface_dice",
        dtype=None,
    ):
        super().__init__(mode, from_logits, threshold, include_background, spacing, name, dtype)
        checked = check_per_class("tolerance", tolerance, minimum=0.0)
        if checked is None:
            raise ValueError("`tolerance` must be a distance >= 0 or one per class. Received: tolerance=None")
        self.tolerance = list(checked) if isinstance(checked, tuple) else checked

    def values(self, y_true, y_pred):
        tolerance = tuple(self.tolerance) if isinstance(self.tolerance, list) else self.tolerance
        return surface_dice(y_true, y_pred, tolerance=tolerance, **self.shared_arguments())

    def get_config(self):
        return {**super().get_config(), "tolerance": self.tolerance}
