"""Search objectives that carry their direction, and the refusal to rank losses by `val_loss`.

Two keras-tuner 1.4 pitfalls live here:

* keras-tuner infers an objective's direction from its name and falls back to "min" for
  metrics it does not list: `objective="val_f1_score"` is *minimized*, so a search ranks
  F1 0.42 above 0.93 without a warning. Every objective built here is a
  `keras_tuner.Objective` with an explicit direction.
* `val_loss` cannot compare different losses: focal loss is smaller than cross-entropy
  on the same predictions by construction, Poly-1 adds `epsilon (1 - p_t)`, penalties
  inflate it. A loss search ranked by it picks the loss with the smallest scale, not the
  best model. `check_search_objective` refuses it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keras_lossopt._validation import check_choice, check_int

if TYPE_CHECKING:
    import keras_tuner

__all__ = [
    "check_search_objective",
    "class_recall_objective",
    "default_metrics",
    "default_objective",
    "macro_f1_objective",
    "objective",
    "robust_accuracy_objective",
    "segmentation_objective",
    "worst_class_recall_objective",
]

MAXIMIZED_METRICS = (
    "macro_f1",
    "worst_class_recall",
    "accuracy",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
    "f1_score",
    "fbeta_score",
    "auc",
    "precision",
    "recall",
    "mean_iou",
    "iou",
    "iou_score",
    "dice",
    "dice_score",
    "robust_accuracy",
)
"""Metric names (without `val_`) that a search maximizes."""
DEFAULT_METRIC_NAMES: Mapping[str, tuple[str, ...]] = {
    "binary": ("macro_f1", "worst_class_recall", "accuracy"),
    "multiclass": ("macro_f1", "worst_class_recall", "accuracy"),
    "multilabel": ("auc",),
    "segmentation": ("iou_score", "dice_score", "worst_class_recall", "accuracy"),
}
"""Task -> the names of the metrics `default_metrics(task, ...)` compiles (logged as `<name>` and
`val_<name>`), in order. Kept here, without Keras, so that the command can check an objective before
TensorFlow starts; a test ties it to `default_metrics`."""
_CLASS_RECALL = re.compile(r"recall_class_\d+")
_LOSS_NAMES = ("loss", "val_loss")


def _metric_name(name: str) -> str:
    return name[len("val_") :] if name.startswith("val_") else name


def _refuse_loss(name: str) -> None:
    if name in _LOSS_NAMES or name.endswith("_loss"):
        raise ValueError(
            f"A loss search cannot rank trials by {name!r}: each trial trains with a different loss, "
            "and loss values of different losses are on different scales (focal loss is smaller "
            "than cross-entropy on the same predictions, Poly-1 adds epsilon*(1-p_t), penalties "
            "inflate it), so the smallest value names the loss with the smallest scale, not the best "
            "model. Rank by a metric instead, e.g. keras_lossopt.tuning.macro_f1_objective() "
            "(val_macro_f1, maximized)."
        )


def _closest(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def objective_direction(name: str) -> str:
    """Whether a search maximizes or minimizes the logged metric `name`; no Keras needed.

    Args:
        name: the logged metric, e.g. `"val_macro_f1"` or `"val_recall_class_3"`.

    Returns:
        `"max"` for the names in `MAXIMIZED_METRICS` and `recall_class_<k>` (with or
        without `val_`).

    Raises:
        ValueError: for `loss`/`val_loss` (or any `*_loss`), which cannot compare losses,
            and for a name whose direction is unknown (suggesting the closest known name).

    Examples:
        >>> objective_direction("val_worst_class_recall")
        'max'
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"An objective must be a non-empty metric name. Received: {name!r}")
    _refuse_loss(name)
    metric = _metric_name(name)
    if metric in MAXIMIZED_METRICS or _CLASS_RECALL.fullmatch(metric):
        return "max"
    known = [*MAXIMIZED_METRICS, *(f"val_{m}" for m in MAXIMIZED_METRICS)]
    raise ValueError(
        f"Cannot tell whether {name!r} should be maximized or minimized: pass "
        f"direction='max' or 'min'. Known maximized metrics: {list(MAXIMIZED_METRICS)} "
        f"and recall_class_<k>.{_closest(name, known)}"
    )


def check_logged_objective(name: str, logged: Sequence[str]) -> str:
    """Checks that a search objective is among the metric names a model logs.

    A tuner whose objective is never logged fails every trial (keras-tuner reports each
    one, then stops with `RuntimeError`); this check says so before any training.

    Args:
        name: the objective, e.g. `"val_macro_f1"`.
        logged: the names the model logs per epoch, e.g. `["loss", "macro_f1",
            "val_loss", "val_macro_f1"]`.

    Returns:
        `name`, when it is logged and its direction is known.

    Raises:
        ValueError: for a loss (see `objective_direction`), or a name that is not logged,
            listing the logged names a search can rank by and suggesting the closest.

    Examples:
        >>> check_logged_objective("val_macro_f1", ["loss", "val_loss", "macro_f1", "val_macro_f1"])
        'val_macro_f1'
    """
    rankable = [n for n in logged if not (n in _LOSS_NAMES or n.endswith("_loss"))]
    if name not in logged:
        _refuse_loss(name)
        raise ValueError(
            f"The objective {name!r} is never logged, so no trial could be ranked by it. "
            f"Logged metrics: {', '.join(rankable)}.{_closest(name, rankable)}"
        )
    objective_direction(name)
    return name


def objective(name: str, direction: str | None = None) -> keras_tuner.Objective:
    """A `keras_tuner.Objective` with the right direction for a metric name.

    Args:
        name: the logged metric, e.g. `"val_macro_f1"`, `"val_f1_score"`,
            `"val_recall_class_3"`, `"val_robust_accuracy"`.
        direction: `"max"` or `"min"`. Default None: `"max"` for the names in
            `MAXIMIZED_METRICS` and `recall_class_<k>` (with or without `val_`); any other
            name must say its direction.

    Returns:
        A `keras_tuner.Objective`.

    Raises:
        ValueError: for `loss`/`val_loss` (or any `*_loss`), which cannot compare losses;
            for an unknown name without `direction`; for a direction other than min/max.

    Examples:
        >>> objective("val_f1_score").direction
        'max'
    """
    import keras_tuner

    _refuse_loss(name)
    if direction is None:
        direction = objective_direction(name)
    return keras_tuner.Objective(name, direction=check_choice("direction", direction, ("max", "min")))


def macro_f1_objective(name: str = "val_macro_f1") -> keras_tuner.Objective:
    """Maximize macro-F1 (`keras_lossopt.metrics.MacroF1`), the default for classification."""
    return objective(name, "max")


def worst_class_recall_objective(name: str = "val_worst_class_recall") -> keras_tuner.Objective:
    """Maximize the lowest per-class recall (`keras_lossopt.metrics.WorstClassRecall`)."""
    return objective(name, "max")


def class_recall_objective(class_id: int, prefix: str = "val_") -> keras_tuner.Objective:
    """Maximize the recall of one class (`keras_lossopt.metrics.ClassRecall(class_id, ...)`)."""
    return objective(f"{prefix}recall_class_{check_int('class_id', class_id, minimum=0)}", "max")


def segmentation_objective(metric: str = "iou_score", prefix: str = "val_") -> keras_tuner.Objective:
    """Maximize a segmentation overlap metric: `"iou_score"` (default) or `"dice_score"`
    (`keras_lossopt.metrics.IoUScore` / `DiceScore`), `"mean_iou"` (Keras' `MeanIoU`), or
    `"macro_f1"` (per pixel, which is the dataset-level mean Dice)."""
    metric = check_choice("metric", metric, ("mean_iou", "iou_score", "dice_score", "iou", "dice", "macro_f1"))
    return objective(prefix + metric, "max")


def robust_accuracy_objective(name: str = "val_robust_accuracy") -> keras_tuner.Objective:
    """Maximize the adversarial accuracy logged by the `RobustnessEvaluation` callback."""
    return objective(name, "max")


def check_search_objective(value) -> keras_tuner.Objective | list[keras_tuner.Objective]:
    """Validates the objective of a loss search and gives it a direction.

    Args:
        value: a metric name, a `keras_tuner.Objective` or a list of them.

    Returns:
        `keras_tuner.Objective`(s); names get their direction from `objective`.

    Raises:
        ValueError: for `val_loss`/`loss` (see the module docstring), for a name whose
            direction is unknown, or for a value of another type.
    """
    import keras_tuner

    if isinstance(value, (list, tuple)):
        return [check_search_objective(v) for v in value]
    if isinstance(value, keras_tuner.Objective):
        _refuse_loss(value.name)
        return value
    if isinstance(value, str):
        return objective(value)
    raise ValueError(
        "`objective` must be a metric name or a keras_tuner.Objective. "
        f"Received: {value!r} of type {type(value).__name__}"
    )


def default_metrics(task: str, num_classes: int, *, from_logits: bool = True) -> list[Any]:
    """The metrics a loss search logs for a task (and ranks by, through `default_objective`).

    binary/multiclass: `macro_f1`, `worst_class_recall`, `accuracy`; multilabel: `auc`
    (macro over labels); segmentation: `iou_score` (mean IoU over classes), `dice_score`,
    per-pixel `worst_class_recall`, `accuracy`.
    """
    import keras  # here, not at the top: the command checks objectives before Keras starts

    from keras_lossopt import metrics

    if task == "multilabel":
        return [keras.metrics.AUC(multi_label=True, from_logits=from_logits, name="auc")]
    classes = 2 if task == "binary" else num_classes
    accuracy = (
        keras.metrics.BinaryAccuracy(threshold=0.0 if from_logits else 0.5, name="accuracy")
        if task == "binary"
        else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    )
    if task == "segmentation":
        return [
            metrics.IoUScore(num_classes, from_logits=from_logits),
            metrics.DiceScore(num_classes, from_logits=from_logits),
            metrics.WorstClassRecall(num_classes, from_logits=from_logits),
            accuracy,
        ]
    return [
        metrics.MacroF1(classes, from_logits=from_logits),
        metrics.WorstClassRecall(classes, from_logits=from_logits),
        accuracy,
    ]


def default_objective(task: str) -> keras_tuner.Objective:
    """`val_iou_score` for segmentation, `val_auc` for multilabel, `val_macro_f1` otherwise (all maximized)."""
    if task == "segmentation":
        return segmentation_objective("iou_score")
    if task == "multilabel":
        return objective("val_auc", "max")
    return macro_f1_objective()
