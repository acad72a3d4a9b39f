"""Loss shaping: composite losses, reward and penalty terms, scheduled and adaptive term weights.

* `CompositeLoss` - named terms with weights that change during training (`FocalLoss() + 0.5 * DiceLoss()`);
  `task_losses` - one composite per output of a multi-output model.
* Terms: `RewardTerm` (subtracted; NumPy rewards through a score-function estimator),
  `ConfidencePenalty`, `OutputPenalty`, `FunctionTerm`.
* `LossWeightScheduler` with `LinearWarmup`, `CosineSchedule`, `StepSchedule` or any function.
* Adaptive weighting: `UncertaintyWeighting`, `DynamicWeightAveraging`, `GradNorm`.
* `track_loss_terms(model)` - attaches the weights and per-term logs to the model (the callbacks do it).
"""

# `losses.compound` builds DiceCELoss on CompositeLoss: loading `losses` first keeps one import
# order (losses -> shaping.composite) whichever package the user imports first.
import keras_lossopt.losses  # noqa: F401  (import order, see above)
from keras_lossopt.shaping.adaptive import DynamicWeightAveraging, GradNorm, UncertaintyWeighting, dwa_weights
from keras_lossopt.shaping.composite import (
    CompositeLoss,
    CompositeLossState,
    TermMean,
    child_loss,
    task_losses,
    term_name_of,
)
from keras_lossopt.shaping.schedules import (
    CosineSchedule,
    LinearWarmup,
    LossWeightScheduler,
    StepSchedule,
    WeightSchedule,
)
from keras_lossopt.shaping.terms import ConfidencePenalty, FunctionTerm, OutputPenalty, RewardTerm, check_per_sample
from keras_lossopt.shaping.tracking import TermWeightCallback, composite_losses, track_loss_terms

__all__ = [
    "CompositeLoss",
    "CompositeLossState",
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
    "TermMean",
    "TermWeightCallback",
    "UncertaintyWeighting",
    "WeightSchedule",
    "check_per_sample",
    "child_loss",
    "composite_losses",
    "dwa_weights",
    "task_losses",
    "term_name_of",
    "track_loss_terms",
]
