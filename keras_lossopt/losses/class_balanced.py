"""Class-balanced weighting (Cui et al. 2019): weights from the effective number of samples."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._targets import is_sparse_target
from keras_lossopt._validation import check_in_range, check_shapes_match
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.losses.registry import get as get_loss
from keras_lossopt.losses.registry import register_alias

__all__ = ["ClassBalancedLoss", "class_balanced_weights"]


def check_class_counts(name: str, counts: Any) -> tuple[float, ...]:
    """Validates per-class sample counts: a 1-D list of positive finite numbers, one per class.

    Returns:
        The counts as a tuple of floats (JSON round trips turn them into lists; we re-tuple).

    Raises:
        ValueError: for an empty or multi-dimensional value, or a count that is not > 0.
    """
    array = np.asarray(counts, dtype=object if counts is None else None)
    if counts is None or array.ndim != 1 or array.size == 0:
        raise ValueError(f"`{name}` must be a 1-D list with one positive count per class. Received: {name}={counts!r}")
    try:
        values = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must hold numbers. Received: {name}={counts!r}") from error
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"`{name}` must be > 0 for every class. Received: {name}[{i}]={values[i]:g}")
    return tuple(values.tolist())


def check_num_classes(name: str, values: tuple[float, ...], y_pred) -> None:
    """Raises a ValueError naming both sizes when `values` has not one entry per class of `y_pred`."""
    num_classes = y_pred.shape[-1]
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(
            f"`{name}` has {len(values)} values but y_pred has {num_classes} classes: "
            f"y_pred.shape={tuple(y_pred.shape)}, {name}={list(values)}."
        )


def class_balanced_weights(counts, beta=0.999) -> np.ndarray:
    """Class weights from the effective number of samples, normalized to sum to the class count.

    Use them to re-weight a loss on imbalanced data: pass them to `FocalLoss(alpha=...)`
    (multiclass per-class weights) or wrap any loss in `ClassBalancedLoss`.

    Formula:
        `w_c = (1 - beta) / (1 - beta**n_c)`, then `w <- C * w / sum(w)`.
        `beta = 0` gives equal weights; `beta -> 1` tends to inverse class frequency.

    Args:
        counts: samples per class, a 1-D list of positive numbers.
        beta: in [0, 1). The paper uses 0.9, 0.99, 0.999 or 0.9999. Default 0.999.

    Returns:
        float64 array of shape `(C,)` summing to `C`.

    Raises:
        ValueError: for `beta` outside [0, 1) or counts that are not positive.

    Examples:
        >>> class_balanced_weights([100, 10], beta=0.9).round(4).tolist()
        [0.7889, 1.2111]

    References:
        Cui, Jia, Lin, Song, Belongie (2019). Class-Balanced Loss Based on Effective Number
        of Samples. CVPR.
    """
    counts = np.asarray(check_class_counts("counts", counts), np.float64)
    beta = check_in_range("beta", beta, 0.0, 1.0, high_inclusive=False)
    # -expm1(n log beta) = 1 - beta**n without cancellation when beta is close to 1.
    effective = -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    weights = (1.0 - beta) / effective
    return weights * counts.size / weights.sum()


@keras.saving.register_keras_serializable(package="keras_lossopt")
class ClassBalancedLoss(LossFunctionBase):
    """Wraps a loss and weights each sample by the class-balanced weight of its true class.

    Use it to make any keras-lossopt loss (or a Keras loss class) class-balanced without a
    new flag on every loss. For multiclass focal loss you can instead pass the weights as
    `FocalLoss(alpha=class_balanced_weights(counts, beta).tolist())`, which gives the same
    values for one-hot targets.

    Formula:
        `loss = w_y * inner(y, p)` with `w = class_balanced_weights(class_counts, beta)`,
        and `w_y = sum_c y_c w_c` for one-hot or soft targets. Binary targets of shape
        `(N, 1)` with two counts `[negatives, positives]` use `w_y = (1 - y) w_0 + y w_1`.

    Args:
        loss: the inner loss: a loss instance, a short name (`"focal"`) or a config. Its
            own `reduction` is not used; the wrapper's is.
        class_counts: training samples per class (positive), one per class.
        beta: in [0, 1). Default 0.999.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"class_balanced_loss"`.
        dtype: computation dtype. Default None (float32 under any mixed policy).

    Returns:
        The reduced loss (a scalar), or per-sample values for `reduction="none"`.

    Raises:
        ValueError: for invalid counts or `beta`, an inner loss that is not a
            `keras.losses.Loss`, or counts that do not match the classes of `y_pred`.

    Examples:
        >>> import numpy as np
        >>> from keras_lossopt.losses import FocalLoss
        >>> loss = ClassBalancedLoss(FocalLoss(from_logits=True), class_counts=[90, 10], beta=0.9)
        >>> round(float(loss(np.array([0, 1]), np.array([[1.0, 0.0], [1.0, 0.0]]))), 4)
        0.434

    References:
        Cui, Jia, Lin, Song, Belongie (2019). Class-Balanced Loss Based on Effective Number
        of Samples. CVPR.
    """

    def __init__(
        self,
        loss,
        class_counts,
        beta=0.999,
        reduction="sum_over_batch_size",
        name="class_balanced_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(loss, (str, dict)):
            loss = get_loss(loss)
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(
                "`loss` must be a keras.losses.Loss instance, a loss name or a loss config. "
                f"Received: loss={loss!r} of type {type(loss).__name__}"
            )
        self.loss = loss
        self.class_counts = check_class_counts("class_counts", class_counts)
        self.beta = check_in_range("beta", beta, 0.0, 1.0, high_inclusive=False)
        self.class_weights = class_balanced_weights(self.class_counts, self.beta)

    def _true_class_weight(self, y_true, y_pred):
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        num_counts, num_classes = len(self.class_weights), y_pred.shape[-1]
        if num_classes == 1 and num_counts == 2:
            y = ops.cast(
                y_true if len(y_true.shape) == len(y_pred.shape) else ops.expand_dims(y_true, -1), weights.dtype
            )
            return ops.squeeze((1.0 - y) * weights[0] + y * weights[1], axis=-1)
        sparse = is_sparse_target(y_true, y_pred)
        # Checking shapes here, before the inner loss runs, gives the same message for
        # every inner loss (Keras' own losses word theirs differently).
        if sparse:
            labels = y_true if len(y_true.shape) < len(y_pred.shape) else ops.squeeze(y_true, axis=-1)
            check_shapes_match(labels.shape, y_pred.shape, tuple(y_pred.shape[:-1]), what="sparse class indices")
        else:
            check_shapes_match(y_true.shape, y_pred.shape, tuple(y_pred.shape), what="one-hot or soft targets")
        if num_classes is not None and num_classes != num_counts:
            raise ValueError(
                f"`class_counts` has {num_counts} values but y_pred has {num_classes} classes: "
                f"y_pred.shape={tuple(y_pred.shape)}, class_counts={list(self.class_counts)}."
            )
        if sparse:
            labels = ops.cast(labels, "int32")
            # Ignored labels (e.g. 255) are masked by the inner loss; clipping only keeps the gather in range.
            return ops.take(weights, ops.clip(labels, 0, num_counts - 1))
        return ops.sum(ops.cast(y_true, weights.dtype) * weights, axis=-1)

    def call(self, y_true, y_pred):
        weights = self._true_class_weight(y_true, y_pred)
        return self.loss.call(y_true, y_pred) * weights

    def compute_mask(self, y_true, y_pred):
        compute_mask = getattr(self.loss, "compute_mask", None)
        return None if compute_mask is None else compute_mask(y_true, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "loss": keras.saving.serialize_keras_object(self.loss),
            "class_counts": list(self.class_counts),
            "beta": self.beta,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


register_alias("class_balanced", ClassBalancedLoss)
register_alias("class_balanced_focal", ClassBalancedLoss, loss="focal")  # the loss search's candidate name
