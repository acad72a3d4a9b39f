"""keras-tuner integration: search over the loss and its parameters.

* `choose_loss(hp, task, candidates)` - the loss as an `hp.Choice` with each candidate's
  parameters as conditional hyperparameters; returns the chosen loss.
* `choose_optimizer(hp, optimizers)` - the optimizer family (Adam, AdamW, SGD, RMSprop,
  AdaGrad) the same way, each with its own learning-rate range and parameters.
* `LossSearchHyperModel(build_model, task, ...)` and `make_tuner(...)` - any model becomes
  a loss search with RandomSearch, BayesianOptimization, Hyperband or GridSearch.
* `configuration_from_hyperparameters(hypermodel, hp)` - a trial's loss, optimizer and
  regularization as a JSON-ready dict; `compile_arguments(configuration, model)` rebuilds
  its compile.
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

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it (each module's __all__). The names load on
# first use: the search space and the objective checks need neither Keras nor
# keras-tuner, so the command checks its arguments with them before TensorFlow starts.
# What only the command needs (its checks before TensorFlow starts, the parts of a trial)
# is not public: `keras_lossopt.tuning._command` hands it to the command.
_EXPORTS = {
    "Advice": "advisor",
    "LabelProfile": "advisor",
    "LossAdvice": "advisor",
    "advise": "advisor",
    "profile_labels": "advisor",
    "advice_starting_points": "tuners",
    "search_summary": "tuners",
    "FoldScores": "validation",
    "cross_validate_configuration": "configuration",
    "cross_validate_loss": "validation",
    "stratified_folds": "validation",
    "LossSearchBayesian": "tuners",
    "LossSearchGrid": "tuners",
    "LossSearchHyperband": "tuners",
    "LossSearchRandom": "tuners",
    "TUNERS": "hypermodel",
    "LossSearchHyperModel": "hypermodel",
    "default_metrics": "objectives",
    "default_objective": "objectives",
    "make_tuner": "hypermodel",
    "check_search_objective": "objectives",
    "class_recall_objective": "objectives",
    "macro_f1_objective": "objectives",
    "objective": "objectives",
    "robust_accuracy_objective": "objectives",
    "segmentation_objective": "objectives",
    "worst_class_recall_objective": "objectives",
    "DEFAULT_OPTIMIZERS": "optimizer_space",
    "OPTIMIZER_CANDIDATES": "optimizer_space",
    "OptimizerCandidate": "optimizer_space",
    "build_optimizer": "optimizer_space",
    "choose_optimizer": "optimizer_space",
    "select_optimizers": "optimizer_space",
    "choose_regularization": "regularization_space",
    "CONFIGURATION_FORMAT": "configuration",
    "compile_arguments": "configuration",
    "configuration_from_hyperparameters": "configuration",
    "configured_loss": "configuration",
    "DEFAULT_CANDIDATES": "search_space",
    "LOSS_CANDIDATES": "search_space",
    "TASKS": "search_space",
    "LossCandidate": "search_space",
    "Param": "search_space",
    "build_loss": "search_space",
    "choose_loss": "search_space",
    "resolve_candidates": "search_space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"keras_lossopt.tuning.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_lossopt.tuning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
