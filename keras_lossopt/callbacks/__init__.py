"""Keras callbacks: gradient monitoring, training diagnostics and robustness evaluation."""

from keras_lossopt.callbacks.diagnostics import TrainingDiagnostics
from keras_lossopt.callbacks.findings import Finding, TrainingProblemError, TrainingProblemWarning
from keras_lossopt.callbacks.gradient_monitor import GradientHistory, GradientMonitor
from keras_lossopt.callbacks.pretraining import check_training_setup
from keras_lossopt.callbacks.robustness import RobustnessEvaluation, plot_adversarial_grid

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
