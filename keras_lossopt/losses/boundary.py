"""Boundary loss (Kervadec et al. 2019): predicted probabilities times signed distance maps.

The loss is linear in the probabilities: each pixel's probability of a class is weighted by
its signed distance to that class' target contour (negative inside, positive outside), so
the loss falls as probability mass moves inside the target regions, more so far from the
contour. The maps depend on the targets only, so they can be computed once, before training:

* in the input pipeline, with `signed_distance_maps` (pure `keras.ops`, no SciPy), and
  `BoundaryLoss(targets="distance_maps")`, which then receives the maps as `y_true`:

      maps = signed_distance_maps(labels, num_classes=3)              # NumPy arrays
      dataset = dataset.map(lambda x, y: (x, signed_distance_maps(y, num_classes=3)))  # tf.data

* or in the step, from ordinary labels, with `BoundaryLoss()` (`targets="labels"`; about
  one exact distance transform per image and class per step).

A per-position loss: `call` returns the mean over classes at each position, so the default
reduction is the reference's `mean` over images, classes and positions, and per-pixel
`sample_weight` and masks apply as for any per-position loss.
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

from keras_lossopt._validation import check_choice, check_shapes_match, check_spacing
from keras_lossopt.losses.distance_maps import axis_spacing, signed_maps_of_targets, spatial_shape
from keras_lossopt.losses.hausdorff import DistanceLoss, dense_inputs
from keras_lossopt.losses.region import select_classes
from keras_lossopt.losses.registry import register_alias

__all__ = ["BoundaryLoss", "boundary_loss"]

TARGET_KINDS = ("labels", "distance_maps")


def boundary_loss(
    y_true, y_pred, *, targets="labels", mode="multiclass", from_logits=False, include_background=True, spacing=None
):
    """Per-position boundary loss. See `BoundaryLoss` for the arguments and the formula.

    Args:
        y_true: labels (see `overlap_inputs`), or signed distance maps of the shape of
            `y_pred` with `targets="distance_maps"`.
        y_pred: probabilities, or logits with `from_logits=True`.
        targets: `"labels"` or `"distance_maps"`.
        mode: `"multiclass"`, `"binary"` or `"multilabel"`.
        from_logits: whether `y_pred` holds logits.
        include_background: count channel 0.
        spacing: pixel or voxel size for the maps computed from labels; None for unit spacing.

    Returns:
        `(N, *spatial)` values: the mean over classes at each position.
    """
    if targets == "distance_maps":
        y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
        check_shapes_match(y_true.shape, y_pred.shape, tuple(y_pred.shape), what="signed distance maps")
        spatial_shape(y_pred)
        maps = ops.cast(y_true, y_pred.dtype)
        if not from_logits:
            probs = y_pred
        else:
            probs = ops.softmax(y_pred, axis=-1) if mode == "multiclass" else ops.sigmoid(y_pred)
    else:
        dense_targets, probs = dense_inputs(y_true, y_pred, mode, from_logits)
        # `+ 0 * targets`: NaN targets (a label out of range under XLA) make the loss NaN; the
        # maps alone, from `targets > 0.5`, would be finite and wrong.
        axis_spacing(spacing, spatial_shape(probs), what="y_pred")
        maps = signed_maps_of_targets(dense_targets, spacing) + 0.0 * dense_targets
    per_class, _ = select_classes(probs * maps, y_pred, include_background)
    return ops.mean(per_class, axis=-1)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class BoundaryLoss(DistanceLoss):
    """Boundary loss (Kervadec et al. 2019): probabilities weighted by signed distance maps.

    Use it for highly unbalanced segmentation, always next to a regional loss (the authors
    pair it with generalized Dice, `GeneralizedDiceLoss() + w * BoundaryLoss()`, and raise
    `w` over training, e.g. with `keras_lossopt.shaping.LossWeightScheduler`): alone, its
    minimum predicts every class everywhere inside its region but it gives no signal for
    classes absent from an image.

    Formula:
        `phi_c` = signed distance map of class `c` (`signed_distance_maps`: outside the
        class, the distance to it; inside, `-(distance to the outside - 1)`; zeros for a
        class absent from the image or covering all of it);
        `loss(x) = mean_c p_c(x) phi_c(x)`.

    Same values as the authors' `SurfaceLoss` with `one_hot2dist` maps
    (LIVIAETS/boundary-loss; `idc` = all classes, or all but 0 with
    `include_background=False`). Differences: the maps are exact Euclidean transforms in
    `keras.ops` (in the step, or in the input pipeline with `signed_distance_maps`) instead of
    SciPy in the data loader; `spacing` is the reference's `resolution`; a class covering
    the whole image gets a zero map (SciPy has no background to measure to there and returns
    distances to a point outside the image).

    Args:
        targets: `"labels"` (class indices or one-hot targets; the maps are computed in the
            step; default) or `"distance_maps"` (`y_true` holds maps of the shape of `y_pred`,
            e.g. from `signed_distance_maps` in the input pipeline).
        mode: `"multiclass"` (softmax; default), `"binary"` or `"multilabel"` (sigmoids).
        from_logits: whether `y_pred` holds logits. Default False.
        include_background: count channel 0. Default True.
        spacing: the pixel or voxel size of the maps computed in the step, one value or one
            per spatial axis (anisotropic volumes; the reference's `resolution`). Default
            None: unit spacing. Precomputed maps carry their own spacing
            (`signed_distance_maps(..., spacing=...)`), so it is ignored, with a warning, for
            `targets="distance_maps"`.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"boundary_loss"`.
        dtype: computation dtype. Default None (float32 also under mixed precision).

    Returns:
        The reduced loss; `(N, *spatial)` values for `reduction="none"`.

    Raises:
        ValueError: for an unknown `targets` or `mode`, inputs that are not 2-D or 3-D
            images, or mismatched shapes.

    Examples:
        >>> import numpy as np
        >>> y_true = np.zeros((1, 1, 5), np.int64)
        >>> y_true[0, 0, 1:4] = 1
        >>> perfect, inverted = np.eye(2)[y_true], np.eye(2)[1 - y_true]
        >>> loss = BoundaryLoss()
        >>> round(float(loss(y_true, perfect)), 4), round(float(loss(y_true, inverted)), 4)
        (-0.1, 0.6)

    References:
        Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed (2019). Boundary loss for
        highly unbalanced segmentation. MIDL (Medical Image Analysis 2021).
    """

    def __init__(
        self,
        targets="labels",
        mode="multiclass",
        from_logits=False,
        include_background=True,
        spacing=None,
        reduction="sum_over_batch_size",
        name="boundary_loss",
        dtype=None,
    ):
        super().__init__(mode, from_logits, include_background, reduction, name, dtype)
        self.targets = check_choice("targets", targets, TARGET_KINDS)
        self.spacing = check_spacing(spacing)
        if self.spacing is not None and self.targets == "distance_maps":
            warnings.warn(
                "`spacing` is ignored with targets='distance_maps': pass it to `signed_distance_maps` "
                f"where the maps are computed. Received: spacing={spacing!r}",
                stacklevel=2,
            )

    def call(self, y_true, y_pred):
        return boundary_loss(
            y_true,
            y_pred,
            targets=self.targets,
            mode=self.mode,
            from_logits=self.from_logits,
            include_background=self.include_background,
            spacing=self.spacing,
        )

    def get_config(self):
        spacing = list(self.spacing) if isinstance(self.spacing, tuple) else self.spacing
        return {**super().get_config(), "targets": self.targets, "spacing": spacing}


register_alias("boundary", BoundaryLoss)
register_alias("surface", BoundaryLoss)
