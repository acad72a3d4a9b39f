"""Keras callbacks: gradient monitoring, training diagnostics and robustness evaluation."""

from keras_lossopt.callbacks.findings import Finding, TrainingProblemError, TrainingProblemWarning
from keras_lossopt.callbacks.gradient_monitor import GradientHistory, GradientMonitor

__all__: list[str] = [
    "Finding",
    "GradientHistory",
    "GradientMonitor",
    "TrainingProblemError",
    "TrainingProblemWarning",
]
