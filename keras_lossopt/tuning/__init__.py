"""keras-tuner integration: search over the loss and its parameters.

* `choose_loss(hp, task, candidates)` - the loss as an `hp.Choice` with each candidate's
  parameters as conditional hyperparameters; returns the chosen loss.
* `LossSearchHyperModel(build_model, task, ...)` and `make_tuner(...)` - any model becomes
  a loss search with RandomSearch, BayesianOptimization, Hyperband or GridSearch.
* `advise(y, x=x)` - the loss advisor: label profile, ranked losses with parameters from the data.
* Honest selection: `make_tuner(..., folds=3)` scores trials by stratified k-fold
  cross-validation (`tuning.validation`), races hopeless trials over folds, stops every
  model early, and starts from given points (`advice_starting_points`).
* Objectives that carry their direction (`macro_f1_objective()`, ...); `val_loss` is refused.

Distributed search uses keras-tuner's own chief/worker mode: run the same script in one
process with `KERASTUNER_TUNER_ID=chief` and in each worker with `KERASTUNER_TUNER_ID=tuner0`,
`tuner1`, ..., all with `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set to the chief's
address (see docs/architecture.md).
"""

from keras_lossopt.tuning.advisor import Advice, LabelProfile, LossAdvice, advise, class_balanced_beta, profile_labels
from keras_lossopt.tuning.hypermodel import (
    TUNERS,
    LossSearchHyperModel,
    default_metrics,
    default_objective,
    make_tuner,
)
from keras_lossopt.tuning.objectives import (
    MAXIMIZED_METRICS,
    check_search_objective,
    class_recall_objective,
    macro_f1_objective,
    objective,
    robust_accuracy_objective,
    segmentation_objective,
    worst_class_recall_objective,
)
from keras_lossopt.tuning.search_space import (
    DEFAULT_CANDIDATES,
    LOSS_CANDIDATES,
    TASKS,
    LossCandidate,
    Param,
    build_loss,
    choose_loss,
    loss_hyperparameter_name,
    resolve_candidates,
)
from keras_lossopt.tuning.tuners import advice_starting_points, search_summary
from keras_lossopt.tuning.validation import FoldScores, check_labels, cross_validate, stratified_folds

__all__ = [
    "DEFAULT_CANDIDATES",
    "LOSS_CANDIDATES",
    "MAXIMIZED_METRICS",
    "TASKS",
    "TUNERS",
    "Advice",
    "FoldScores",
    "LabelProfile",
    "LossAdvice",
    "LossCandidate",
    "LossSearchHyperModel",
    "Param",
    "advice_starting_points",
    "advise",
    "build_loss",
    "check_labels",
    "check_search_objective",
    "choose_loss",
    "class_balanced_beta",
    "class_recall_objective",
    "cross_validate",
    "default_metrics",
    "default_objective",
    "loss_hyperparameter_name",
    "macro_f1_objective",
    "make_tuner",
    "objective",
    "profile_labels",
    "resolve_candidates",
    "robust_accuracy_objective",
    "search_summary",
    "segmentation_objective",
    "stratified_folds",
    "worst_class_recall_objective",
]
