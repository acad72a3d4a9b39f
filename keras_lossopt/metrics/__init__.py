"""`keras.metrics.Metric` twins of the losses, usable in `compile(metrics=...)` and as tuner objectives."""

from keras_lossopt.metrics.classification import ClassRecall, ConfusionMatrixMetric, MacroF1, WorstClassRecall

__all__: list[str] = ["ClassRecall", "ConfusionMatrixMetric", "MacroF1", "WorstClassRecall"]
