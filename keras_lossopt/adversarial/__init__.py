"""Adversarial examples: attacks, adversarial training inside `fit`, robustness evaluation.

* Attacks (`attack(model, x, y)` returns the adversarial batch): `FastGradientMethod`,
  `ProjectedGradientDescent`, `MomentumIterativeMethod`; `StrongestAttack` takes the worst
  case per sample over several attacks.
* Training: `AdversarialModel(model, attack, method="madry" | "fast" | "mixed" | "trades")`.
* Evaluation: `robust_accuracy`, `evaluate_robustness`, `generate_adversarial`,
  `default_evaluation_attacks`; the callback `RobustnessEvaluation` (also re-exported by
  `keras_lossopt.callbacks`) and its figure `plot_adversarial_grid`.

The attacks and the training step use the TensorFlow backend.
"""

from keras_lossopt.adversarial.attacks import FastGradientMethod, MomentumIterativeMethod, ProjectedGradientDescent
from keras_lossopt.adversarial.base import Attack, NotDifferentiableError
from keras_lossopt.adversarial.callback import RobustnessEvaluation, plot_adversarial_grid
from keras_lossopt.adversarial.evaluation import (
    StrongestAttack,
    default_evaluation_attacks,
    evaluate_robustness,
    generate_adversarial,
    robust_accuracy,
)
from keras_lossopt.adversarial.training import METHODS, AdversarialModel

__all__ = [
    "METHODS",
    "AdversarialModel",
    "Attack",
    "FastGradientMethod",
    "MomentumIterativeMethod",
    "NotDifferentiableError",
    "ProjectedGradientDescent",
    "RobustnessEvaluation",
    "StrongestAttack",
    "default_evaluation_attacks",
    "evaluate_robustness",
    "generate_adversarial",
    "plot_adversarial_grid",
    "robust_accuracy",
]
