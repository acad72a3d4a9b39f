"""keras-tuner's tuners, extended for a loss search: folds, racing, early stopping and starting points.

* **Cross-validated trials** (`folds >= 2`): `search(x, y, ...)` scores each configuration
  by stratified k-fold cross-validation on `x, y` (`tuning.validation`); the trial's score
  is the mean over folds and its metrics keep every fold's score and their spread.
* **Racing**: the folds are the same for every trial, so after each fold a configuration
  is compared with the best one so far on the same folds; one that trails by more than
  `prune_margin` stops there (successive halving over folds). With `folds=1`,
  `tuner="hyperband"` prunes by epochs instead (keras-tuner's Hyperband).
* **Early stopping** of every model on the search objective (`patience` epochs).
* **Starting points**: the first trials take given hyperparameter values (the advisor's
  picks, `advice_starting_points`), then the oracle's own method continues; a point already
  tried (a resumed search) is skipped. How the oracles serve them is the adapter
  `tuning/_keras_tuner.py`.

Every trial records its wall time (`seconds` in its metrics); `search_summary(tuner)`
gives the search's wall time and the trial at which the final best was first reached.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_lossopt._validation import check_int, check_non_negative
from keras_lossopt.tuning._keras_tuner import BayesianOracle, HyperbandOracle, RandomOracle, init_tuner
from keras_lossopt.tuning.search_space import LOSS_HP, loss_hyperparameter_name
from keras_lossopt.tuning.validation import (
    best_epoch_score,
    cross_validate,
    early_stopping,
    stratified_folds,
    validation_weights,
)

__all__ = [
    "LossSearchBayesian",
    "LossSearchGrid",
    "LossSearchHyperband",
    "LossSearchRandom",
    "advice_starting_points",
    "search_summary",
]

LEARNING_RATE_HP = "learning_rate"


class _LossSearch:
    """Tuner mixin: cross-validated trials with racing, early stopping and trial timing."""

    def _configure(self, folds: int, split_seed: int, prune_margin: float, patience: int | None, balanced: bool = True):
        self.folds = check_int("folds", folds, minimum=1)
        self.balanced = bool(balanced)
        self.split_seed = int(split_seed)
        self.prune_margin = check_non_negative("prune_margin", prune_margin)
        self.patience = None if patience is None else check_int("patience", patience, minimum=1)
        self._splits_cache: tuple[Any, list] | None = None
        #: Called as `on_trial_result(trial, metrics)` after each trial (e.g. a progress line).
        self.on_trial_result = None

    def _objective(self) -> keras_tuner.Objective:
        objective = self.oracle.objective
        if hasattr(objective, "objectives"):  # keras-tuner's MultiObjective
            raise keras_tuner.errors.FatalValueError("A loss search ranks by one objective; received several.")
        return objective

    def _early_stopping(self, epochs: int) -> keras.callbacks.EarlyStopping:
        objective = self._objective()
        return early_stopping(objective.name, objective.direction, epochs=epochs, patience=self.patience)

    def run_trial(self, trial, *args, **kwargs):
        started = time.perf_counter()
        callbacks = list(kwargs.pop("callbacks", None) or [])
        stopper = self._early_stopping(int(kwargs.get("epochs", 1)))
        if self.folds == 1:
            histories = super().run_trial(trial, *args, callbacks=[*callbacks, stopper], **kwargs)
            metrics = {**self._best_epoch_metrics(histories), "seconds": time.perf_counter() - started}
        else:
            metrics = self._run_folds(trial, args, kwargs, [*callbacks, stopper], started)
        if self.on_trial_result is not None:
            self.on_trial_result(trial, metrics)
        return metrics

    def _best_epoch_metrics(self, histories) -> dict[str, float]:
        """Each logged metric at the objective's best epoch, averaged over executions (as keras-tuner does)."""
        objective = self._objective()
        rows = []
        for history in histories:
            logs = history.history
            values = np.asarray(logs[objective.name], "float64")
            best = int(np.nanargmax(values) if objective.direction == "max" else np.nanargmin(values))
            rows.append({name: float(v[best]) for name, v in logs.items() if len(v) > best})
        return {name: float(np.mean([r[name] for r in rows if name in r])) for name in rows[0]}

    def _splits(self, y) -> list:
        # The folds depend only on the labels and the seed: identical for every trial.
        if self._splits_cache is None or self._splits_cache[0] is not y:
            task = getattr(self.hypermodel, "task", "multiclass")
            labels = np.asarray(y)
            if task == "binary":
                labels = labels.reshape(len(labels), -1)[:, 0]
            self._splits_cache = (y, stratified_folds(labels, self.folds, task=task, seed=self.split_seed))
        return self._splits_cache[1]

    def _incumbent(self) -> list[float] | None:
        best = self.oracle.get_best_trials(1)
        if not best or not best[0].metrics.exists("pruned") or best[0].metrics.get_last_value("pruned"):
            return None
        names = [f"fold_{k}" for k in range(self.folds)]
        if not all(best[0].metrics.exists(name) for name in names):
            return None
        return [float(best[0].metrics.get_last_value(name)) for name in names]

    def _run_folds(self, trial, args, kwargs, callbacks, started):
        x = args[0] if args else kwargs.pop("x", None)
        y = args[1] if len(args) > 1 else kwargs.pop("y", None)
        if kwargs.get("validation_data") is not None or kwargs.get("validation_split"):
            raise keras_tuner.errors.FatalValueError(
                f"With folds={self.folds} the validation folds come from x and y: pass the training and validation "
                "data together as x, y and no validation_data (or use folds=1 to keep a fixed validation split)."
            )
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise keras_tuner.errors.FatalValueError(
                "A cross-validated search takes NumPy arrays x and y (it indexes them per fold); "
                f"received {type(x).__name__} and {type(y).__name__}."
            )
        objective = self._objective()
        hp = trial.hyperparameters

        task = getattr(self.hypermodel, "task", "multiclass")

        def score_fold(train, validation, number):
            model = self._try_build(hp)
            weights = validation_weights(y[validation], task) if self.balanced else None
            fold_kwargs = dict(
                kwargs, validation_data=(x[validation], y[validation]) + (() if weights is None else (weights,))
            )
            fold_kwargs["callbacks"] = [copy.deepcopy(c) for c in callbacks]
            history = self.hypermodel.fit(hp, model, x[train], y[train], **fold_kwargs)
            return best_epoch_score(history, objective.name, objective.direction)

        result = cross_validate(
            score_fold,
            self._splits(y),
            incumbent=self._incumbent(),
            margin=self.prune_margin,
            direction=objective.direction,
        )
        return {
            objective.name: result.score,
            "fold_mean": result.mean,
            "fold_std": result.std,
            "folds_run": float(len(result.scores)),
            "pruned": float(result.pruned),
            **{f"fold_{k}": s for k, s in enumerate(result.scores)},
            "seconds": time.perf_counter() - started,
        }


def _tuner_init(tuner, oracle, hypermodel, folds, split_seed, prune_margin, patience, kwargs):
    tuner._configure(folds, split_seed, prune_margin, patience, kwargs.pop("balanced_validation", True))
    init_tuner(tuner, oracle, hypermodel, **kwargs)


class LossSearchBayesian(_LossSearch, keras_tuner.BayesianOptimization):
    """keras-tuner's `BayesianOptimization` with folds, racing, early stopping and starting points.

    Args:
        hypermodel: the `LossSearchHyperModel`.
        objective: a directed `keras_tuner.Objective`.
        max_trials: trials in all, starting points included.
        starting_points: hyperparameter values of the first trials. Default ().
        num_initial_points: trials before the Gaussian process is fitted. Default: the
            starting points plus 2 (keras-tuner's default, 3 per hyperparameter, would make
            a short search random).
        folds: cross-validation folds (1: use `validation_data`). Default 1.
        split_seed: seed of the folds. Default 0.
        prune_margin: racing margin in objective units. Default 0.05.
        patience: early-stopping patience in epochs. Default: max(3, epochs // 4).
        seed: the oracle's seed. Default None.
        **kwargs: other `keras_tuner.Tuner` arguments (directory, project_name, overwrite, ...),
            and `balanced_validation` (default True: validation folds weigh every class
            equally, see `tuning.validation.balanced_weights`).
    """

    def __init__(
        self,
        hypermodel,
        objective,
        max_trials: int = 10,
        *,
        starting_points: Sequence[Mapping[str, Any]] = (),
        num_initial_points: int | None = None,
        folds: int = 1,
        split_seed: int = 0,
        prune_margin: float = 0.05,
        patience: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        oracle = BayesianOracle(
            objective=objective,
            max_trials=max_trials,
            num_initial_points=num_initial_points or len(starting_points) + 2,
            seed=seed,
            starting_points=starting_points,
        )
        _tuner_init(self, oracle, hypermodel, folds, split_seed, prune_margin, patience, kwargs)


class LossSearchRandom(_LossSearch, keras_tuner.RandomSearch):
    """keras-tuner's `RandomSearch` with folds, racing, early stopping and starting points.

    Args:
        hypermodel: the `LossSearchHyperModel`.
        objective: a directed `keras_tuner.Objective`.
        max_trials: trials in all, starting points included.
        starting_points: hyperparameter values of the first trials. Default ().
        folds: cross-validation folds (1: use `validation_data`). Default 1.
        split_seed: seed of the folds. Default 0.
        prune_margin: racing margin in objective units. Default 0.05.
        patience: early-stopping patience in epochs. Default: max(3, epochs // 4).
        seed: the oracle's seed. Default None.
        **kwargs: other `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        hypermodel,
        objective,
        max_trials: int = 10,
        *,
        starting_points: Sequence[Mapping[str, Any]] = (),
        folds: int = 1,
        split_seed: int = 0,
        prune_margin: float = 0.05,
        patience: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        oracle = RandomOracle(objective=objective, max_trials=max_trials, seed=seed, starting_points=starting_points)
        _tuner_init(self, oracle, hypermodel, folds, split_seed, prune_margin, patience, kwargs)


class LossSearchHyperband(_LossSearch, keras_tuner.Hyperband):
    """keras-tuner's `Hyperband` (successive halving over epochs) with early stopping and starting points.

    Hyperband continues a configuration's model from its checkpoint in the next round, one
    model per configuration, so it takes a fixed validation split (`folds=1`).

    Args:
        hypermodel: the `LossSearchHyperModel`.
        objective: a directed `keras_tuner.Objective`.
        max_epochs: the largest budget of one model.
        factor: the halving factor. Default 3.
        starting_points: hyperparameter values of the first models. Default ().
        patience: early-stopping patience in epochs. Default: max(3, epochs // 4).
        seed: the oracle's seed. Default None.
        **kwargs: other `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        hypermodel,
        objective,
        max_epochs: int = 20,
        *,
        factor: int = 3,
        starting_points: Sequence[Mapping[str, Any]] = (),
        patience: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        oracle = HyperbandOracle(
            objective=objective, max_epochs=max_epochs, factor=factor, seed=seed, starting_points=starting_points
        )
        _tuner_init(self, oracle, hypermodel, 1, 0, 0.0, patience, kwargs)


class LossSearchGrid(_LossSearch, keras_tuner.GridSearch):
    """keras-tuner's `GridSearch` with folds, racing and early stopping (no starting points: a grid is exhaustive).

    Args:
        hypermodel: the `LossSearchHyperModel`.
        objective: a directed `keras_tuner.Objective`.
        max_trials: the most grid points to run. Default 10.
        folds: cross-validation folds (1: use `validation_data`). Default 1.
        split_seed: seed of the folds. Default 0.
        prune_margin: racing margin in objective units. Default 0.05.
        patience: early-stopping patience in epochs. Default: max(3, epochs // 4).
        seed: the oracle's seed. Default None.
        **kwargs: other `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        hypermodel,
        objective,
        max_trials: int = 10,
        *,
        folds: int = 1,
        split_seed: int = 0,
        prune_margin: float = 0.05,
        patience: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        oracle = keras_tuner.oracles.GridSearchOracle(objective=objective, max_trials=max_trials, seed=seed)
        _tuner_init(self, oracle, hypermodel, folds, split_seed, prune_margin, patience, kwargs)


def advice_starting_points(
    advice,
    candidates=None,
    *,
    learning_rate: float | None = 3e-3,
    optimizer: str | None = None,
    weight_penalty: float | None = None,
) -> list[dict[str, Any]]:
    """The advisor's ranked losses as hyperparameter values for a search's first trials.

    Args:
        advice: an `Advice` from `tuning.advise`.
        candidates: the search's candidate names (or `LossCandidate`s); picks outside them
            are dropped. Default: all picks.
        learning_rate: the learning rate of every starting point, or None to leave the
            tuner's default. Default 3e-3.
        optimizer: for a search of the optimizer (`search_optimizer`), the family of every
            starting point (e.g. `"adam"`); its rate is then `"<family>/learning_rate"`.
            Default None.
        weight_penalty: for a search of the regularization, the L2 strength of every
            starting point (`"regularization/l2"`). Default None.

    Returns:
        A list of `{"loss": name, "<name>/<argument>": value, "learning_rate": ...}`.
    """
    names = None if candidates is None else [getattr(c, "name", c) for c in candidates]
    points = []
    for item in advice.ranked:
        if names is not None and item.candidate not in names:
            continue
        point: dict[str, Any] = {LOSS_HP: item.candidate}
        point.update({loss_hyperparameter_name(item.candidate, k): v for k, v in item.parameters.items()})
        if optimizer is not None:
            point["optimizer"] = optimizer
        if learning_rate is not None:
            point[LEARNING_RATE_HP if optimizer is None else f"{optimizer}/{LEARNING_RATE_HP}"] = float(learning_rate)
        if weight_penalty is not None:
            point["regularization/l2"] = float(weight_penalty)
        points.append(point)
    return points


def search_summary(tuner) -> dict[str, Any]:
    """The search's trials in start order, its wall time and when its final best was first reached.

    Returns:
        A dict: `trials` (id, loss, score, seconds, folds run, fold spread, pruned), `seconds`
        (sum of the trials' wall times), `best_trial`, `best_found_at` (1-based position in
        start order of the first trial that reached the final best score), `trials_run`.

    Raises:
        ValueError: on a worker of a distributed search, whose oracle is a client of the
            chief's and holds no trials: call it on the chief.
    """
    if not hasattr(tuner.oracle, "start_order"):
        raise ValueError(
            "search_summary needs the search's trials, which only the chief of a distributed search holds "
            "(a worker's oracle forwards to the chief over gRPC): call it on the chief (KERASTUNER_TUNER_ID "
            "containing 'chief') or in a search run in one process."
        )
    objective = tuner.oracle.objective
    sign = 1.0 if objective.direction == "max" else -1.0
    rows = []
    for trial_id in tuner.oracle.start_order:
        trial = tuner.oracle.trials[trial_id]

        def metric(name, trial=trial):
            return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None

        rows.append(
            {
                "trial": trial_id,
                "status": trial.status,
                "loss": trial.hyperparameters.values.get(LOSS_HP),
                "score": None if trial.score is None else float(trial.score),
                "seconds": metric("seconds"),
                "folds_run": metric("folds_run"),
                "fold_std": metric("fold_std"),
                "pruned": bool(metric("pruned") or 0.0),
            }
        )
    scored = [r for r in rows if r["score"] is not None]
    summary: dict[str, Any] = {
        "trials": rows,
        "trials_run": len(rows),
        "seconds": float(sum(r["seconds"] or 0.0 for r in rows)),
    }
    if scored:
        best = max(scored, key=lambda r: sign * r["score"])
        first = next(
            i for i, r in enumerate(rows) if r["score"] is not None and sign * r["score"] >= sign * best["score"]
        )
        summary.update(best_trial=best["trial"], best_score=best["score"], best_found_at=first + 1)
    return summary
