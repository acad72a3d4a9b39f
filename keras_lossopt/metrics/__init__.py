"""`keras.metrics.Metric` twins of the losses, usable in `compile(metrics=...)` and as tuner objectives."""

__all__: list[str] = []
