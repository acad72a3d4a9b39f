"""Honest validation for a loss search: stratified k-fold scores and the checks that make them possible.

Why folds: on small, imbalanced data a held-out validation split holds one or two samples
of each rare class (digits-imbalanced: one), so every loss scores about the same on it and
a search ranks by noise. Stratified k-fold cross-validation puts every sample in a
validation fold once; the score of a configuration is the mean over folds, and the folds'
spread says how far apart two configurations must be to differ.

The folds are the same for every trial of a search (they depend only on the labels and
`seed`), so two configurations are compared on the same splits: a paired comparison,
which is what lets `LossSearchTuner` stop a hopeless trial after its first fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from keras_lossopt._validation import check_choice, check_class_labels, check_int
from keras_lossopt.tuning.objectives import default_metrics, default_objective

__all__ = [
    "FoldScores",
    "cross_validate_loss",
    "stratified_folds",
]

_TASKS = ("binary", "multiclass", "multilabel", "segmentation")


def check_labels(y, task: str | None = None, *, folds: int = 1) -> np.ndarray:
    """Checks that `y` holds class labels a loss search can use; returns them as integers.

    Args:
        y: labels: `(N,)` or `(N, 1)` class indices, `(N, L)` 0/1 multi-label targets,
            or `(N, H, W)` per-pixel class indices.
        task: the task, or None to accept any of the above.
        folds: the number of cross-validation folds; every class (every stratification
            key, see `stratification_key`) needs at least this many samples. Default 1.

    Returns:
        The labels as an int64 array of the same shape.

    Raises:
        ValueError: one line naming the problem and the fix, for labels that are empty,
            hold NaN or infinity, look continuous, hold negative values, have a single
            class, or have a class with fewer samples than `folds`.
    """
    labels = check_class_labels(y)
    task = _infer_task(labels) if task is None else check_choice("task", task, _TASKS)
    _check_class_rows(labels, task)
    key = stratification_key(labels, task)
    present = np.unique(labels if task != "multilabel" else key)
    if task == "multilabel":
        if labels.max() > 1:
            raise ValueError(f"multi-label targets must be 0/1; found the value {int(labels.max())}.")
    elif len(present) < 2:
        raise ValueError(
            f"the labels hold a single class ({int(present[0])}): a loss comparison needs at least two classes."
        )
    folds = check_int("folds", folds, minimum=1)
    if folds > 1:
        classes, counts = np.unique(key, return_counts=True)
        if counts.min() < folds:
            rare = classes[np.argmin(counts)]
            what = "images containing class" if task == "segmentation" else "samples of class"
            raise ValueError(
                f"only {int(counts.min())} {what} {int(rare)}, fewer than folds={folds}: use folds="
                f"{max(1, int(counts.min()))} (or fewer), or add samples of class {int(rare)}."
            )
    return labels


def _one_hot_classes(labels: np.ndarray) -> np.ndarray | None:
    """The class indices of one-hot rows, or None when `labels` is not one-hot.

    One-hot means shape `(N, C)` with `C > 1` and exactly one 1 (the rest 0) in every row.
    Such labels are one class per sample, so the tuning tools read them as class indices;
    multi-label targets (rows with zero or several positives) stay as they are.

    Args:
        labels: integer labels (see `check_class_labels`).

    Returns:
        An int64 array of shape `(N,)`, or None.
    """
    if labels.ndim != 2 or labels.shape[1] < 2 or labels.max() > 1:
        return None
    if not np.all(labels.sum(axis=1) == 1):
        return None
    return labels.argmax(axis=1).astype("int64")


def _infer_task(labels: np.ndarray) -> str:
    if labels.ndim >= 3:
        return "segmentation"
    if labels.ndim == 2 and labels.shape[1] > 1:
        indices = _one_hot_classes(labels)
        if indices is None:
            return "multilabel"
        return "binary" if labels.shape[1] == 2 else "multiclass"
    return "binary" if labels.max() <= 1 else "multiclass"


def _check_class_rows(labels: np.ndarray, task: str) -> None:
    """Binary and multiclass labels of shape `(N, C)`, C > 1, must be one-hot rows."""
    if task not in ("binary", "multiclass") or labels.ndim != 2 or labels.shape[1] < 2:
        return
    if _one_hot_classes(labels) is not None:
        if task == "binary" and labels.shape[1] != 2:
            raise ValueError(
                f"task='binary' with one-hot labels needs 2 columns; found {labels.shape[1]}: "
                "pass task='multiclass' (or None to infer it)."
            )
        return
    positives = (labels > 0).sum(axis=1) if labels.max() <= 1 else None
    if positives is None:
        raise ValueError(
            f"task={task!r} takes class indices of shape (N,) or one-hot rows of shape (N, C); "
            f"found labels of shape {labels.shape} with the value {int(labels.max())}."
        )
    row = int(np.argmax(positives != 1))
    raise ValueError(
        f"task={task!r} takes class indices of shape (N,) or one-hot rows (exactly one 1 per row); "
        f"row {row} holds {int(positives[row])} positive labels: pass task='multilabel' for multi-label targets."
    )


def stratification_key(y, task: str) -> np.ndarray:
    """One integer per sample that the folds keep in proportion.

    binary/multiclass: the class. multilabel: the sample's rarest positive label (the
    number of labels for a sample without one). segmentation: the rarest class present in
    the image (0, the background, for an image without foreground), so that images with a
    rare class are spread over the folds.

    Args:
        y: the labels (see `check_labels`).
        task: `"binary"`, `"multiclass"`, `"multilabel"` or `"segmentation"`.

    Returns:
        An int64 array of shape `(N,)`.
    """
    task = check_choice("task", task, _TASKS)
    labels = np.asarray(y)
    if task in ("binary", "multiclass"):
        indices = _one_hot_classes(labels)
        if indices is not None:
            return indices
        return labels.reshape(len(labels), -1)[:, 0].astype("int64")
    if task == "multilabel":
        positives = labels.reshape(len(labels), -1) > 0
        frequency = positives.sum(axis=0)
        # Rank labels by frequency; a sample takes the rarest of its positive labels.
        order = np.where(positives, frequency[None, :], np.inf)
        key = np.argmin(order, axis=1)
        key[~positives.any(axis=1)] = positives.shape[1]
        return key.astype("int64")
    flat = labels.reshape(len(labels), -1).astype("int64")
    pixels = np.bincount(flat.ravel())
    present = np.zeros((len(flat), len(pixels)), bool)
    for cls in range(1, len(pixels)):
        present[:, cls] = (flat == cls).any(axis=1)
    rank = np.where(present, pixels[None, :], np.inf)
    rank[:, 0] = np.inf
    key = np.argmin(rank, axis=1)
    key[~present[:, 1:].any(axis=1)] = 0
    return key.astype("int64")


def stratified_folds(
    y, folds: int = 3, *, task: str = "multiclass", seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold `(train, validation)` index pairs.

    Each class (stratification key) is shuffled with `seed` and dealt round-robin over
    the folds, continuing where the previous class stopped, so every fold holds
    `floor` or `ceil` of `count / folds` samples of each class and the fold sizes differ
    by at most one.

    Args:
        y: the labels (see `check_labels`).
        folds: number of folds, at least 2. Default 3.
        task: `"binary"`, `"multiclass"` (default), `"multilabel"` or `"segmentation"`.
        seed: the shuffle's seed. Default 0.

    Returns:
        `folds` pairs of sorted int64 index arrays; the validation parts partition `range(N)`.

    Raises:
        ValueError: for `folds < 2` or labels `check_labels` refuses.

    Examples:
        >>> [val.tolist() for _, val in stratified_folds([0, 0, 0, 1, 1, 1], 3, seed=0)]
        [[2, 5], [0, 4], [1, 3]]
    """
    folds = check_int("folds", folds, minimum=2)
    labels = check_labels(y, task, folds=folds)
    key = stratification_key(labels, task)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(key), "int64")
    offset = 0
    for cls in np.unique(key):
        members = rng.permutation(np.flatnonzero(key == cls))
        fold_of[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    everything = np.arange(len(key))
    return [(everything[fold_of != k], everything[fold_of == k]) for k in range(folds)]


@dataclasses.dataclass(frozen=True)
class FoldScores:
    """The validation scores of one configuration, one per fold that was run.

    Attributes:
        scores: the score of each fold run, in fold order.
        folds: the number of folds of the cross-validation.
        pruned: whether the remaining folds were skipped as hopeless.
        estimate: the score a search ranks by: the mean over folds; for a pruned run, the
            incumbent's mean plus the paired difference on the folds both ran.
    """

    scores: tuple[float, ...]
    folds: int
    pruned: bool = False
    estimate: float | None = None

    @property
    def mean(self) -> float:
        """Mean over the folds run."""
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Standard deviation over the folds run (0 for one fold)."""
        return float(np.std(self.scores))

    @property
    def score(self) -> float:
        """The ranking score: `estimate` when set, else `mean`."""
        return self.mean if self.estimate is None else float(self.estimate)


def balanced_weights(labels) -> np.ndarray:
    """Per-sample weights that make every class weigh the same (mean weight 1).

    A validation fold of imbalanced data holds few samples of a rare class, so its macro-F1
    is dominated by how many common samples are predicted as rare: the precision of the
    rare classes. A loss built for balanced error (logit adjustment, LDAM) trades exactly
    that precision for rare-class recall and scores low there, although it scores best on a
    balanced test split. Weighted by these weights, the fold's confusion counts are those
    of a balanced fold, so validation estimates what a balanced test measures (the balanced
    error of Menon et al. 2021).

    Args:
        labels: `(N,)` class indices.

    Returns:
        float32 weights of shape `(N,)`: `N / (C * n_c)` for a sample of class `c`, with `C`
        the classes present.

    Examples:
        >>> balanced_weights([0, 0, 0, 1]).tolist()
        [0.6666666865348816, 0.6666666865348816, 0.6666666865348816, 2.0]
    """
    labels = np.asarray(labels).reshape(-1)
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (len(labels) / (len(classes) * counts[index])).astype("float32")


def validation_weights(y, task: str) -> np.ndarray | None:
    """`balanced_weights` for binary and multiclass labels; None (unweighted) for other tasks."""
    if task not in ("binary", "multiclass"):
        return None
    return balanced_weights(stratification_key(y, task))


def best_epoch_score(history, metric: str, direction: str = "max") -> float:
    """The best value of `metric` over the epochs of a `keras.callbacks.History` (or its dict).

    Raises:
        ValueError: when the history did not log `metric`, naming the metrics it has.
    """
    logs = getattr(history, "history", history)
    if metric not in logs:
        raise ValueError(f"training did not log {metric!r}; logged metrics: {sorted(logs)}")
    values = np.asarray(logs[metric], "float64")
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan")
    return float(values.max() if check_choice("direction", direction, ("max", "min")) == "max" else values.min())


def cross_validate(
    score_fold: Callable[[np.ndarray, np.ndarray, int], float],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    incumbent: Sequence[float] | None = None,
    margin: float = 0.05,
    direction: str = "max",
) -> FoldScores:
    """Scores one configuration on every fold, stopping early when it cannot win.

    Racing (paired successive halving over folds): after each fold but the last, when the
    configuration's mean over the folds run so far trails the `incumbent`'s mean over the
    same folds by more than `margin`, the remaining folds are skipped and the estimate is
    the incumbent's full mean plus that paired difference.

    Args:
        score_fold: `score_fold(train_indices, validation_indices, fold_number)` trains a
            fresh model and returns its validation score.
        splits: the `(train, validation)` pairs, e.g. from `stratified_folds`.
        incumbent: the best configuration's fold scores so far, or None (no racing).
        margin: how far behind (in score units) a configuration may trail before it is
            stopped. Default 0.05.
        direction: `"max"` (default) or `"min"`.

    Returns:
        A `FoldScores`.
    """
    sign = 1.0 if check_choice("direction", direction, ("max", "min")) == "max" else -1.0
    scores: list[float] = []
    for number, (train, validation) in enumerate(splits):
        scores.append(float(score_fold(train, validation, number)))
        last = number == len(splits) - 1
        if incumbent is not None and not last and len(incumbent) == len(splits):
            behind = sign * (np.mean(incumbent[: len(scores)]) - np.mean(scores))
            if behind > margin:
                estimate = float(np.mean(incumbent)) - sign * behind
                return FoldScores(tuple(scores), len(splits), pruned=True, estimate=estimate)
    return FoldScores(tuple(scores), len(splits))


def early_stopping(monitor: str, direction: str = "max", *, epochs: int, patience: int | None = None):
    """The early stopping of every model a search (or `cross_validate_loss`) trains.

    Args:
        monitor: the objective, e.g. `"val_macro_f1"`.
        direction: `"max"` (default) or `"min"`.
        epochs: the training budget.
        patience: epochs without improvement before stopping. Default: max(3, epochs // 4).

    Returns:
        A `keras.callbacks.EarlyStopping`.
    """
    import keras

    patience = max(3, epochs // 4) if patience is None else check_int("patience", patience, minimum=1)
    mode = check_choice("direction", direction, ("max", "min"))
    return keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience)


def cross_validate_loss(
    make_model: Callable,
    loss,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    num_classes: int,
    folds: int = 3,
    epochs: int = 30,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    objective: str | None = None,
    seed: int = 0,
    balanced: bool = True,
) -> FoldScores:
    """The cross-validated score of one fixed loss: the estimate a search ranks trials by.

    Same folds (`stratified_folds(y, folds, seed=seed)`), same early stopping and the same
    best-epoch score as a search with `folds`, so `keras-lossopt compare` recommends a loss
    by the estimate the search uses, never by the test split.

    Args:
        make_model: returns a fresh, uncompiled model with logits out.
        loss: a `keras.losses.Loss` (serialized and rebuilt for every fold).
        x: inputs (training and validation data together).
        y: targets in the form the loss takes (`(N, 1)` floats for binary).
        task: `"binary"`, `"multiclass"`, `"multilabel"` or `"segmentation"`.
        num_classes: classes of the task (2 for binary).
        folds: number of folds, at least 2. Default 3.
        epochs: the most epochs per fold. Default 30.
        batch_size: Default 64.
        learning_rate: Adam's rate. Default 3e-3.
        objective: the metric, e.g. `"val_macro_f1"`. Default: the task's search objective.
        seed: seed of the folds and of the weights. Default 0.
        balanced: weigh every class equally in the validation folds (`balanced_weights`;
            binary and multiclass only). Default True.

    Returns:
        A `FoldScores`.
    """
    import keras

    from keras_lossopt import losses

    config = losses.serialize(loss)

    def compile_fold(model):
        return {"optimizer": keras.optimizers.Adam(learning_rate), "loss": losses.get(config)}

    return cross_validate_compiled(
        make_model, compile_fold, x, y, task=task, num_classes=num_classes, folds=folds, epochs=epochs,
        batch_size=batch_size, objective=objective, seed=seed, balanced=balanced,
    )  # fmt: skip


def cross_validate_compiled(
    make_model, compile_fold, x, y, *, task, num_classes, folds, epochs, batch_size, objective, seed, balanced
) -> FoldScores:
    """Trains one model per fold, compiled with `compile_fold(model)` (a dict of `compile` arguments)."""
    import keras

    target = default_objective(task) if objective is None else None
    name = objective or target.name
    direction = "max" if target is None else target.direction
    labels = np.asarray(y)
    strata = labels.reshape(len(labels), -1)[:, 0] if task == "binary" else labels
    splits = stratified_folds(strata, folds, task=task, seed=seed)

    def score_fold(train, validation, number):
        keras.utils.set_random_seed(seed + number)
        model = make_model()
        model.compile(
            **compile_fold(model),
            weighted_metrics=default_metrics(task, num_classes),  # the balanced weights reach them
        )
        weights = validation_weights(y[validation], task) if balanced else None
        history = model.fit(
            x[train],
            y[train],
            validation_data=(x[validation], y[validation]) + (() if weights is None else (weights,)),
            epochs=epochs,
            batch_size=batch_size,
            callbacks=[early_stopping(name, direction, epochs=epochs)],
            verbose=0,
        )
        keras.backend.clear_session()
        return best_epoch_score(history, name, direction)

    return cross_validate(score_fold, splits, direction=direction)
