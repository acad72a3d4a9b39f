"""Per-class classification metrics: macro-F1, the recall of one class, the worst class' recall.

Accuracy hides what class imbalance does to a model: on a 1:20 split a model that never
predicts the rare classes still scores well. These metrics accumulate a confusion matrix
over every batch of an epoch (not a mean of per-batch scores, which is biased for F1) and
derive per-class scores from it, so they are the objectives a loss search should rank by.

Targets may be sparse integer labels (`(N,)`, `(N, 1)`, or `(N, H, W)` per pixel) or
one-hot (`y_pred.shape`); predictions may be logits or probabilities. With one output
unit (binary) the prediction is positive above `threshold` (a probability) or above
the logit of `threshold` when `from_logits=True`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_lossopt._validation import check_in_range, check_int, check_numeric_tensor
from keras_lossopt._value_checks import sparse_label_poison

__all__ = ["ClassRecall", "ConfusionMatrixMetric", "MacroF1", "WorstClassRecall"]


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base class: accumulates a `(num_classes, num_classes)` confusion matrix.

    Rows are true classes, columns predicted classes. Subclasses implement `result()`
    from `self.confusion`. The update is a one-hot matrix product, which compiles under
    XLA and sums across `tf.distribute` replicas like any metric variable.

    Args:
        num_classes: number of classes (2 for a binary model with one output unit).
        from_logits: for one output unit only, whether it holds a logit. Default False.
        threshold: for one output unit only, the probability above which the prediction
            is class 1. Default 0.5.
        name: metric name.
        dtype: dtype of the accumulator. Default None (float32).
    """

    def __init__(self, num_classes, from_logits=False, threshold=0.5, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.from_logits = bool(from_logits)
        self.threshold = check_in_range("threshold", threshold, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", name="confusion", dtype="float32"
        )

    def _labels_and_predictions(self, y_true, y_pred):
        """Sparse labels, their NaN poison (or None) and predicted classes (`(N,)` or `(N, H, W)`)."""
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        units = y_pred.shape[-1]
        if units == 1 or len(y_pred.shape) == 1:
            if self.num_classes != 2:
                raise ValueError(
                    f"A prediction with one output unit is binary, but num_classes={self.num_classes}. "
                    f"Received: y_pred.shape={tuple(y_pred.shape)}"
                )
            cut = math.log(self.threshold / (1.0 - self.threshold)) if self.from_logits else self.threshold
            if len(y_pred.shape) > 1:
                y_pred = ops.squeeze(y_pred, axis=-1)
            if len(y_true.shape) > len(y_pred.shape):
                y_true = ops.squeeze(y_true, axis=-1)
            return (*self._checked_labels(y_true, y_pred), ops.cast(y_pred > cut, "int32"))
        if units != self.num_classes:
            raise ValueError(
                f"The last axis of `y_pred` must have num_classes={self.num_classes} entries. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == units and units != 1:
            y_true = ops.argmax(y_true, axis=-1)  # one-hot
        elif len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        return (*self._checked_labels(y_true, y_pred), predicted)

    def _checked_labels(self, labels, y_pred):
        """`(int32 labels, poison)` after the count and range checks (see `sparse_label_poison`)."""
        expected = tuple(y_pred.shape[:-1]) if len(y_pred.shape) > 1 and y_pred.shape[-1] != 1 else None
        if expected is None:
            expected = tuple(y_pred.shape[:-1]) if len(y_pred.shape) > 1 else tuple(y_pred.shape)
        got = tuple(labels.shape)
        same = len(got) == len(expected) and all(a is None or b is None or a == b for a, b in zip(got, expected))
        if not same:
            raise ValueError(
                "`y_true` must hold one label per prediction (sparse) or match `y_pred` (one-hot). "
                f"Received {got} labels for {expected} predictions: "
                f"y_true.shape={got}, y_pred.shape={tuple(y_pred.shape)}"
            )
        return ops.cast(labels, "int32"), sparse_label_poison(labels, self.num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        check_numeric_tensor("y_true", y_true)
        labels, poison, predicted = self._labels_and_predictions(y_true, y_pred)
        true_rows = ops.one_hot(ops.reshape(labels, (-1,)), self.num_classes, dtype="float32")
        if sample_weight is not None:
            # A per-sample weight applies to every pixel of that sample.
            weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            if len(weight.shape) > len(labels.shape):
                weight = ops.squeeze(weight, axis=-1)
            while len(weight.shape) < len(labels.shape):
                weight = ops.expand_dims(weight, axis=-1)
            weight = ops.reshape(ops.broadcast_to(weight, ops.shape(labels)), (-1, 1))
            true_rows = true_rows * weight
        predicted_columns = ops.one_hot(ops.reshape(predicted, (-1,)), self.num_classes, dtype="float32")
        update = ops.matmul(ops.transpose(true_rows), predicted_columns)
        if poison is not None:
            # Under XLA a bad label cannot raise: it makes the matrix (and the score) NaN.
            update = update + poison
        self.confusion.assign_add(update)

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype="float32"))

    def _counts(self):
        confusion = ops.convert_to_tensor(self.confusion)
        true_positives = ops.diagonal(confusion)
        return true_positives, ops.sum(confusion, axis=0), ops.sum(confusion, axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "from_logits": self.from_logits,
            "threshold": self.threshold,
        }


@keras.saving.register_keras_serializable(package="keras_lossopt")
class MacroF1(ConfusionMatrixMetric):
    """Macro-averaged F1: the unweighted mean over classes of each class' F1 score.

    Use it to compare losses on imbalanced data, where every class should count the same
    however rare it is; it is the default objective of a loss search
    (`keras_lossopt.tuning.objective("val_macro_f1")`, direction "max").

    Formula:
        `F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)` from the confusion matrix accumulated over
        all batches; `macro_f1 = mean_c F1_c`. A class with no true and no predicted
        sample scores 0, as `sklearn.metrics.f1_score(..., labels=range(C), zero_division=0)`.

    Args:
        num_classes: number of classes (2 for a binary model with one output unit).
        from_logits: for one output unit only, whether it holds a logit. Default False.
        threshold: for one output unit only, the probability above which the prediction
            is class 1. Default 0.5.
        name: metric name. Default `"macro_f1"` (logged as `val_macro_f1`).
        dtype: dtype of the result. Default None.

    Returns:
        `result()`: a scalar in [0, 1].

    Raises:
        ValueError: for `num_classes < 2`, a `threshold` outside (0, 1), predictions
            whose class axis does not have `num_classes` entries, a label count that differs
            from the prediction count, or labels outside `[0, num_classes)` (eagerly and in
            a graph; under XLA the score becomes NaN instead, see `sparse_label_poison`).
        TypeError: for string labels.

    Examples:
        >>> import numpy as np
        >>> metric = MacroF1(num_classes=3)
        >>> metric.update_state(np.array([0, 1, 2, 2]), np.eye(3)[[0, 2, 2, 2]])
        >>> round(float(metric.result()), 4)
        0.6
    """

    def __init__(self, num_classes, from_logits=False, threshold=0.5, name="macro_f1", dtype=None):
        super().__init__(num_classes, from_logits=from_logits, threshold=threshold, name=name, dtype=dtype)

    def result(self):
        true_positives, predicted, actual = self._counts()
        return ops.mean(ops.divide_no_nan(2.0 * true_positives, predicted + actual))


@keras.saving.register_keras_serializable(package="keras_lossopt")
class ClassRecall(ConfusionMatrixMetric):
    """Recall of one class: the share of its samples the model finds.

    Use it to watch, or search for, the recall of a class that matters (a rare disease,
    a defect), e.g. `keras_tuner.Objective("val_recall_class_7", direction="max")`.

    Formula:
        `recall_k = TP_k / (TP_k + FN_k)`, 0 while class `k` has no sample.

    Args:
        class_id: the class whose recall is reported.
        num_classes: number of classes (2 for a binary model with one output unit).
        from_logits: for one output unit only, whether it holds a logit. Default False.
        threshold: for one output unit only, the probability threshold. Default 0.5.
        name: metric name. Default `"recall_class_{class_id}"`.
        dtype: dtype of the result. Default None.

    Returns:
        `result()`: a scalar in [0, 1].

    Raises:
        ValueError: for a `class_id` outside `[0, num_classes)`.

    Examples:
        >>> import numpy as np
        >>> metric = ClassRecall(class_id=2, num_classes=3)
        >>> metric.update_state(np.array([0, 2, 2, 2]), np.eye(3)[[0, 2, 1, 2]])
        >>> round(float(metric.result()), 4)
        0.6667
    """

    def __init__(self, class_id, num_classes, from_logits=False, threshold=0.5, name=None, dtype=None):
        class_id = check_int("class_id", class_id, minimum=0)
        if class_id >= check_int("num_classes", num_classes, minimum=2):
            raise ValueError(f"`class_id` must be in [0, {num_classes}). Received: class_id={class_id}")
        super().__init__(
            num_classes,
            from_logits=from_logits,
            threshold=threshold,
            name=name or f"recall_class_{class_id}",
            dtype=dtype,
        )
        self.class_id = class_id

    def result(self):
        true_positives, _, actual = self._counts()
        return ops.divide_no_nan(true_positives[self.class_id], actual[self.class_id])

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class WorstClassRecall(ConfusionMatrixMetric):
    """The lowest recall over the classes present in the targets seen so far.

    Use it when no class may be sacrificed: a loss that lifts macro-F1 by sacrificing one
    rare class shows up here. Classes with no true sample yet are left out (their recall
    is undefined), so a batch without some class does not report 0.

    Formula:
        `worst_class_recall = min_{c : TP_c + FN_c > 0} TP_c / (TP_c + FN_c)`.

    Args:
        num_classes: number of classes (2 for a binary model with one output unit).
        from_logits: for one output unit only, whether it holds a logit. Default False.
        threshold: for one output unit only, the probability threshold. Default 0.5.
        name: metric name. Default `"worst_class_recall"`.
        dtype: dtype of the result. Default None.

    Returns:
        `result()`: a scalar in [0, 1] (1 before any sample is seen).

    Examples:
        >>> import numpy as np
        >>> metric = WorstClassRecall(num_classes=3)
        >>> metric.update_state(np.array([0, 1, 1, 2]), np.eye(3)[[0, 1, 2, 2]])
        >>> round(float(metric.result()), 4)
        0.5
    """

    def __init__(self, num_classes, from_logits=False, threshold=0.5, name="worst_class_recall", dtype=None):
        super().__init__(num_classes, from_logits=from_logits, threshold=threshold, name=name, dtype=dtype)

    def result(self):
        true_positives, _, actual = self._counts()
        recall = ops.divide_no_nan(true_positives, actual)
        # Absent classes get recall 1 so that they never win the minimum.
        return ops.min(ops.where(actual > 0, recall, ops.ones_like(recall)))
