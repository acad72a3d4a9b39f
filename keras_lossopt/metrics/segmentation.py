"""Dice and IoU scores over whole datasets: the metric twins of `DiceLoss` and `JaccardLoss`.

The metrics accumulate hard true positives, false positives and false negatives per class
over every batch (not a mean of per-batch scores), so the result is the dataset-level
score; under `tf.distribute` Keras sums the count variables across replicas.
Predictions are made hard (arg-max for softmax outputs, a threshold for sigmoid outputs);
targets follow the loss conventions (`keras_lossopt._targets.overlap_inputs`).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._targets import overlap_inputs
from keras_lossopt._validation import check_choice, check_ignore_index, check_int, check_probability

__all__ = ["DiceScore", "IoUScore", "SegmentationScore"]

AVERAGES = (None, "macro", "micro")
MODES = ("multiclass", "binary", "multilabel")  # the modes of the overlap losses


class SegmentationScore(keras.metrics.Metric):
    """Accumulates hard per-class TP/FP/FN; subclasses turn them into a score."""

    def __init__(
        self,
        num_classes,
        mode="multiclass",
        from_logits=False,
        threshold=0.5,
        ignore_index=None,
        include_background=True,
        average="macro",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.mode = check_choice("mode", mode, MODES)
        self.from_logits = bool(from_logits)
        self.threshold = check_probability("threshold", threshold)
        self.ignore_index = check_ignore_index(ignore_index)
        self.include_background = bool(include_background)
        if not self.include_background and self.num_classes == 1:
            raise ValueError("`include_background=False` needs num_classes > 1: class 0 is the background.")
        self.average = check_choice("average", average, AVERAGES)
        self.true_positives = self.add_variable((self.num_classes,), initializer="zeros", name="true_positives")
        self.false_positives = self.add_variable((self.num_classes,), initializer="zeros", name="false_positives")
        self.false_negatives = self.add_variable((self.num_classes,), initializer="zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        y_true = ops.convert_to_tensor(y_true)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes and len(y_pred.shape) > 1:
            raise ValueError(
                f"y_pred has {y_pred.shape[-1]} classes on its last axis but the metric was built with "
                f"num_classes={self.num_classes}. Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        targets, probs, weight = overlap_inputs(
            y_true, y_pred, mode=self.mode, from_logits=False, ignore_index=self.ignore_index
        )
        if self.mode == "multiclass":
            hard = ops.one_hot(ops.argmax(probs, axis=-1), self.num_classes, dtype=probs.dtype)
        else:
            # On logits the threshold moves to log(t / (1 - t)); sigmoid is monotonic.
            cut = self.threshold
            if self.from_logits:
                cut = float("inf") if cut == 1.0 else float("-inf") if cut == 0.0 else _logit(cut)
            hard = ops.cast(probs > cut, probs.dtype)
        if sample_weight is not None:
            sw = ops.cast(ops.convert_to_tensor(sample_weight), probs.dtype)
            while len(sw.shape) < len(probs.shape):
                sw = ops.expand_dims(sw, -1)
            weight = sw if weight is None else weight * sw
        if weight is None:
            weight = ops.ones_like(hard[..., :1])
        axes = tuple(range(len(probs.shape) - 1))
        self.true_positives.assign_add(ops.sum(weight * hard * targets, axis=axes))
        self.false_positives.assign_add(ops.sum(weight * hard * (1.0 - targets), axis=axes))
        self.false_negatives.assign_add(ops.sum(weight * (1.0 - hard) * targets, axis=axes))

    def score(self, tp, fp, fn):  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        if not self.include_background:
            tp, fp, fn = tp[1:], fp[1:], fn[1:]
        if self.average == "micro":
            return _safe_score(self.score, ops.sum(tp), ops.sum(fp), ops.sum(fn), empty=0.0)
        per_class = _safe_score(self.score, tp, fp, fn, empty=float("nan"))
        if self.average is None:
            return per_class
        defined = ops.logical_not(ops.isnan(per_class))
        count = ops.sum(ops.cast(defined, per_class.dtype))
        total = ops.sum(ops.where(defined, per_class, 0.0))
        return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "mode": self.mode,
            "from_logits": self.from_logits,
            "threshold": self.threshold,
            "ignore_index": self.ignore_index,
            "include_background": self.include_background,
            "average": self.average,
        }


def _logit(p):
    import math

    return math.log(p / (1.0 - p))


def _safe_score(score, tp, fp, fn, empty):
    tp, fp, fn = (ops.convert_to_tensor(x) for x in (tp, fp, fn))
    denominator = tp + fp + fn
    positive = denominator > 0
    value = score(tp, fp, fn, ops.where(positive, denominator, ops.ones_like(denominator)))
    return ops.where(positive, value, empty)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class DiceScore(SegmentationScore):
    """Dice score (F1 of the pixels) per class, accumulated over every batch.

    Use it to monitor segmentation trained with `DiceLoss` or any other loss:
    `model.compile(..., metrics=[DiceScore(num_classes=5)])`.

    Formula:
        `dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)` with hard predictions.

    Args:
        num_classes: number of channels of `y_pred` (1 for a binary sigmoid output).
        mode: `"multiclass"` (arg-max over the last axis; default), `"binary"` or
            `"multilabel"` (each channel thresholded).
        from_logits: whether sigmoid outputs are logits (the threshold is applied on the
            logit scale); arg-max needs no activation. Default False.
        threshold: probability above which a sigmoid output is foreground. Default 0.5.
        ignore_index: a label whose pixels count nowhere. Default None.
        include_background: report class 0 too. Default True.
        average: `"macro"` (mean over classes with any target or predicted pixel; default),
            `"micro"` (from counts summed over classes) or None (one score per class; NaN
            for a class with neither target nor predicted pixels).
        name: metric name. Default `"dice_score"`.
        dtype: dtype of the result.

    Returns:
        The score in [0, 1] (a vector of `num_classes` values, minus the background if
        excluded, for `average=None`).

    Raises:
        ValueError: for an unknown `mode` or `average`, a `threshold` outside [0, 1], or a
            `y_pred` whose class axis does not match `num_classes`.

    Examples:
        >>> import numpy as np
        >>> metric = DiceScore(num_classes=3)
        >>> metric.update_state(np.array([[0, 1, 1, 2]]), np.eye(3)[[[0, 1, 2, 2]]])
        >>> round(float(metric.result()), 4)
        0.7778

    References:
        Dice (1945). Measures of the Amount of Ecologic Association Between Species. Ecology.
    """

    def __init__(
        self,
        num_classes,
        mode="multiclass",
        from_logits=False,
        threshold=0.5,
        ignore_index=None,
        include_background=True,
        average="macro",
        name="dice_score",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            mode=mode,
            from_logits=from_logits,
            threshold=threshold,
            ignore_index=ignore_index,
            include_background=include_background,
            average=average,
            name=name,
            dtype=dtype,
        )

    def score(self, tp, fp, fn, denominator):
        return 2.0 * tp / (denominator + tp)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class IoUScore(SegmentationScore):
    """Intersection over union (Jaccard index) per class, accumulated over every batch.

    Use it as the standard segmentation metric (mean IoU with `average="macro"`).

    Formula:
        `iou_c = TP_c / (TP_c + FP_c + FN_c)` with hard predictions.

    Args:
        num_classes: number of channels of `y_pred` (1 for a binary sigmoid output).
        mode: `"multiclass"` (arg-max over the last axis; default), `"binary"` or
            `"multilabel"` (each channel thresholded).
        from_logits: whether sigmoid outputs are logits (the threshold is applied on the
            logit scale); arg-max needs no activation. Default False.
        threshold: probability above which a sigmoid output is foreground. Default 0.5.
        ignore_index: a label whose pixels count nowhere. Default None.
        include_background: report class 0 too. Default True.
        average: `"macro"` (mean over classes with any target or predicted pixel; default),
            `"micro"` (from counts summed over classes) or None (one score per class; NaN
            for a class with neither target nor predicted pixels).
        name: metric name. Default `"iou_score"`.
        dtype: dtype of the result.

    Returns:
        The score in [0, 1] (a vector of `num_classes` values, minus the background if
        excluded, for `average=None`).

    Raises:
        ValueError: for an unknown `mode` or `average`, a `threshold` outside [0, 1], or a
            `y_pred` whose class axis does not match `num_classes`.

    Examples:
        >>> import numpy as np
        >>> metric = IoUScore(num_classes=3)
        >>> metric.update_state(np.array([[0, 1, 1, 2]]), np.eye(3)[[[0, 1, 2, 2]]])
        >>> round(float(metric.result()), 4)
        0.6667

    References:
        Jaccard (1912). The distribution of the flora in the alpine zone. New Phytologist.
    """

    def __init__(
        self,
        num_classes,
        mode="multiclass",
        from_logits=False,
        threshold=0.5,
        ignore_index=None,
        include_background=True,
        average="macro",
        name="iou_score",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            mode=mode,
            from_logits=from_logits,
            threshold=threshold,
            ignore_index=ignore_index,
            include_background=include_background,
            average=average,
            name=name,
            dtype=dtype,
        )

    def score(self, tp, fp, fn, denominator):
        return tp / denominator
