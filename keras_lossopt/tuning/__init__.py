"""keras-tuner integration: search over the loss and its parameters.

* `choose_loss(hp, task, candidates)` - the loss as an `hp.Choice` with each candidate's
  parameters as conditional hyperparameters; returns the chosen loss.
* `LossSearchHyperModel(build_model, task, ...)` and `make_tuner(...)` - any model becomes
  a loss search with RandomSearch, BayesianOptimization, Hyperband or GridSearch.
* Objectives that carry their direction (`macro_f1_objective()`, ...); `val_loss` is refused.

Distributed search uses keras-tuner's own chief/worker mode: run the same script in one
process with `KERASTUNER_TUNER_ID=chief` and in each worker with `KERASTUNER_TUNER_ID=tuner0`,
`tuner1`, ..., all with `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set to the chief's
address (see docs/architecture.md).
"""

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

__all__ = [
    "DEFAULT_CANDIDATES",
    "LOSS_CANDIDATES",
    "MAXIMIZED_METRICS",
    "TASKS",
    "TUNERS",
    "LossCandidate",
    "LossSearchHyperModel",
    "Param",
    "build_loss",
    "check_search_objective",
    "choose_loss",
    "class_recall_objective",
    "default_metrics",
    "default_objective",
    "loss_hyperparameter_name",
    "macro_f1_objective",
    "make_tuner",
    "objective",
    "resolve_candidates",
    "robust_accuracy_objective",
    "segmentation_objective",
    "worst_class_recall_objective",
]
