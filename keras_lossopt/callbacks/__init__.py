"""Keras callbacks: gradient monitoring, training diagnostics and robustness evaluation.

The callbacks are `GradientMonitor` and `TrainingDiagnostics`; the parts they are built from
are public too, for use on recorded data or in other callbacks: `GradientDetector` (gradient
rules on recorded blocks, NumPy only), `LossTrendDetector` (loss trends), `ProblemPolicy`
(what happens on a problem), `check_training_setup` (checks before training) and
`rank_causes` (the likely causes of a `Finding`).

`RobustnessEvaluation` and `plot_adversarial_grid` live in `keras_lossopt.adversarial`
next to the attacks; they are re-exported here and load on first use, so that importing
the callbacks does not import the attacks.
"""

from typing import Any

from keras_lossopt.callbacks.causes import CAUSE_KEYS, Cause, describe_causes, rank_causes
from keras_lossopt.callbacks.detection import GRADIENT_KINDS, GradientDetector
from keras_lossopt.callbacks.diagnostics import TrainingDiagnostics
from keras_lossopt.callbacks.findings import (
    FINDING_KINDS,
    SEVERITIES,
    Finding,
    TrainingProblemError,
    TrainingProblemWarning,
)
from keras_lossopt.callbacks.gradient_history import GradientHistory
from keras_lossopt.callbacks.gradient_monitor import GradientMonitor
from keras_lossopt.callbacks.loss_fit import loss_family, output_activations
from keras_lossopt.callbacks.loss_trends import LOSS_KINDS, LossTrendDetector
from keras_lossopt.callbacks.policy import ON_PROBLEM, REMEDY_OPTIONS, ProblemPolicy, Remedies
from keras_lossopt.callbacks.pretraining import SETUP_FINDING_KINDS, check_training_setup
from keras_lossopt.callbacks.training_start import TrainingStart, training_start
from keras_lossopt.callbacks.trivial_baseline import trivial_accuracy, trivial_loss

_FROM_ADVERSARIAL = ("RobustnessEvaluation", "plot_adversarial_grid")

__all__: list[str] = [
    "CAUSE_KEYS",
    "FINDING_KINDS",
    "GRADIENT_KINDS",
    "LOSS_KINDS",
    "ON_PROBLEM",
    "REMEDY_OPTIONS",
    "SETUP_FINDING_KINDS",
    "SEVERITIES",
    "Cause",
    "Finding",
    "GradientDetector",
    "GradientHistory",
    "GradientMonitor",
    "LossTrendDetector",
    "ProblemPolicy",
    "Remedies",
    "RobustnessEvaluation",
    "TrainingDiagnostics",
    "TrainingProblemError",
    "TrainingProblemWarning",
    "TrainingStart",
    "check_training_setup",
    "describe_causes",
    "loss_family",
    "output_activations",
    "plot_adversarial_grid",
    "rank_causes",
    "training_start",
    "trivial_accuracy",
    "trivial_loss",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_ADVERSARIAL:
        from keras_lossopt.adversarial import callback

        value = getattr(callback, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_lossopt.callbacks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
