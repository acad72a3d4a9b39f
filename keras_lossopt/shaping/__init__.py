"""Loss shaping: reward and penalty terms, scheduled and adaptive term weights for composite losses.

* `CompositeLoss` - named terms with weights that change during training (`FocalLoss() + 0.5 * DiceLoss()`),
  defined with the other losses in `keras_lossopt.losses` and re-exported here (so is
  `WeightPenalty`, which the search space uses as well);
  `task_losses` - one composite per output of a multi-output model.
* Terms: `RewardTerm` (subtracted; NumPy rewards through a score-function estimator),
  `ConfidencePenalty`, `OutputPenalty`, `WeightPenalty` (L1/L2 on the kernels, exactly Keras'
  `kernel_regularizer` as a term); a plain function becomes a `FunctionTerm`.
* `LossWeightScheduler` with `LinearWarmup`, `CosineSchedule`, `StepSchedule` or any function.
* Adaptive weighting: `UncertaintyWeighting`, `DynamicWeightAveraging`, `GradNorm`.
* `track_loss_terms(model)` - attaches the weights and per-term logs to the model (the callbacks do it).
"""

from keras_lossopt.losses.composite import CompositeLoss, FunctionTerm
from keras_lossopt.losses.weight_penalty import WeightPenalty
from keras_lossopt.shaping.adaptive import DynamicWeightAveraging, GradNorm, UncertaintyWeighting, dwa_weights
from keras_lossopt.shaping.schedules import (
    CosineSchedule,
    LinearWarmup,
    LossWeightScheduler,
    StepSchedule,
    WeightSchedule,
)
from keras_lossopt.shaping.tasks import task_losses
from keras_lossopt.shaping.terms import ConfidencePenalty, OutputPenalty, RewardTerm
from keras_lossopt.shaping.tracking import TermWeightCallback, composite_losses, track_loss_terms

__all__ = [
    "CompositeLoss",
    "ConfidencePenalty",
    "CosineSchedule",
    "DynamicWeightAveraging",
    "FunctionTerm",
    "GradNorm",
    "LinearWarmup",
    "LossWeightScheduler",
    "OutputPenalty",
    "RewardTerm",
    "StepSchedule",
    "TermWeightCallback",
    "UncertaintyWeighting",
    "WeightPenalty",
    "WeightSchedule",
    "composite_losses",
    "dwa_weights",
    "task_losses",
    "track_loss_terms",
]
