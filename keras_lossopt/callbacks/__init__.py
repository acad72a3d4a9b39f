"""Keras callbacks: gradient monitoring, training diagnostics and robustness evaluation.

`RobustnessEvaluation` and `plot_adversarial_grid` live in `keras_lossopt.adversarial`
next to the attacks; they are re-exported here and load on first use, so that importing
the callbacks does not import the attacks.
"""

from typing import Any

from keras_lossopt.callbacks.diagnostics import TrainingDiagnostics
from keras_lossopt.callbacks.findings import Finding, TrainingProblemError, TrainingProblemWarning
from keras_lossopt.callbacks.gradient_monitor import GradientHistory, GradientMonitor
from keras_lossopt.callbacks.pretraining import check_training_setup

_FROM_ADVERSARIAL = ("RobustnessEvaluation", "plot_adversarial_grid")

__all__: list[str] = [
    "Finding",
    "GradientHistory",
    "GradientMonitor",
    "RobustnessEvaluation",
    "TrainingDiagnostics",
    "TrainingProblemError",
    "TrainingProblemWarning",
    "check_training_setup",
    "plot_adversarial_grid",
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
