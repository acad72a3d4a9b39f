"""Adversarial examples: attacks, adversarial training inside `fit`, robustness evaluation.

* Attacks (`attack(model, x, y)` returns the adversarial batch): `FastGradientMethod`,
  `ProjectedGradientDescent`, `MomentumIterativeMethod`, `AutoProjectedGradientDescent` (APGD
  on cross-entropy, DLR or targeted DLR); `StrongestAttack` takes the worst case per sample over
  several attacks; `SquareAttack` is the gradient-free (black-box) check. The bases to extend:
  `Attack` (override `perturb`), `GradientAttack` (a gradient-ascent schedule) and
  `SurvivorAttack` (override `attack_round`: rounds on the samples still standing).
* Training: `AdversarialModel(model, attack, method="madry" | "fast" | "mixed" | "trades")`.
* Evaluation: `robust_accuracy(..., strength="pgd" | "fast" | "standard")`,
  `evaluate_robustness(..., strength="pgd" | "fast" | "standard")` (AutoAttack: `AutoAttack`,
  `autoattack_attacks`, `VERSIONS`; the sanity checks `run_sanity_checks` and its parts
  `zero_gradient_warning`, `black_box_warning`, `eps_growth_warning`, `more_iterations_warning`),
  `generate_adversarial`, `default_evaluation_attacks`, `evaluation_attack`; the callback
  `RobustnessEvaluation` (also re-exported by `keras_lossopt.callbacks`) and its figure
  `plot_adversarial_grid`.

The attacks, the evaluation and the training step run on TensorFlow, JAX and PyTorch: the
input gradient, the compiler and the training step's parameter gradient are each backend's own
(`_backend.py`), everything else is `keras.ops`.
"""

from keras_lossopt.adversarial.apgd import APGD_LOSSES, AutoProjectedGradientDescent, apgd_checkpoints
from keras_lossopt.adversarial.ascent import GradientAttack
from keras_lossopt.adversarial.attacks import FastGradientMethod, MomentumIterativeMethod, ProjectedGradientDescent
from keras_lossopt.adversarial.autoattack import VERSIONS, AutoAttack, autoattack_attacks
from keras_lossopt.adversarial.base import Attack
from keras_lossopt.adversarial.callback import RobustnessEvaluation, plot_adversarial_grid
from keras_lossopt.adversarial.differentiability import NotDifferentiableError
from keras_lossopt.adversarial.dlr import dlr_loss, targeted_dlr_loss
from keras_lossopt.adversarial.evaluation import (
    STRENGTHS,
    default_evaluation_attacks,
    evaluate_robustness,
    evaluation_attack,
    generate_adversarial,
    robust_accuracy,
)
from keras_lossopt.adversarial.sanity import (
    black_box_warning,
    eps_growth_warning,
    more_iterations_warning,
    run_sanity_checks,
    zero_gradient_warning,
)
from keras_lossopt.adversarial.square import SquareAttack, square_p_schedule
from keras_lossopt.adversarial.strongest import StrongestAttack
from keras_lossopt.adversarial.survivors import SurvivorAttack
from keras_lossopt.adversarial.training import METHODS, AdversarialModel

__all__ = [
    "APGD_LOSSES",
    "METHODS",
    "STRENGTHS",
    "VERSIONS",
    "AdversarialModel",
    "Attack",
    "AutoAttack",
    "AutoProjectedGradientDescent",
    "FastGradientMethod",
    "GradientAttack",
    "MomentumIterativeMethod",
    "NotDifferentiableError",
    "ProjectedGradientDescent",
    "RobustnessEvaluation",
    "SquareAttack",
    "StrongestAttack",
    "SurvivorAttack",
    "apgd_checkpoints",
    "autoattack_attacks",
    "black_box_warning",
    "default_evaluation_attacks",
    "dlr_loss",
    "eps_growth_warning",
    "evaluate_robustness",
    "evaluation_attack",
    "generate_adversarial",
    "more_iterations_warning",
    "plot_adversarial_grid",
    "robust_accuracy",
    "run_sanity_checks",
    "square_p_schedule",
    "targeted_dlr_loss",
    "zero_gradient_warning",
]
