"""`keras.metrics.Metric` twins of the losses, usable in `compile(metrics=...)` and as tuner objectives."""

from keras_lossopt.metrics.boundary import HausdorffDistance, SurfaceDice, hausdorff_distance, surface_dice
from keras_lossopt.metrics.classification import ClassRecall, ConfusionMatrixMetric, MacroF1, WorstClassRecall
from keras_lossopt.metrics.segmentation import DiceScore, IoUScore, SegmentationScore

__all__: list[str] = [
    "ClassRecall",
    "ConfusionMatrixMetric",
    "DiceScore",
    "HausdorffDistance",
    "IoUScore",
    "MacroF1",
    "SegmentationScore",
    "SurfaceDice",
    "WorstClassRecall",
    "hausdorff_distance",
    "surface_dice",
]
