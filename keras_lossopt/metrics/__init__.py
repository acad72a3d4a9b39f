"""`keras.metrics.Metric` twins of the losses, usable in `compile(metrics=...)` and as tuner objectives."""

from keras_lossopt.metrics.classification import ClassRecall, ConfusionMatrixMetric, MacroF1, WorstClassRecall
from keras_lossopt.metrics.segmentation import DiceScore, IoUScore, SegmentationScore

__all__: list[str] = [
    "ClassRecall",
    "ConfusionMatrixMetric",
    "DiceScore",
    "IoUScore",
    "MacroF1",
    "SegmentationScore",
    "WorstClassRecall",
]
