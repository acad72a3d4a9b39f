"""TensorBoard records of the gradient statistics, written without the tensorboard package.

TensorBoard's summary ops live in the tensorboard package, which TensorFlow no longer
installs; `tf.summary.write` with the plugins' metadata writes the same records without it
(the scalars and histograms dashboards read them).
"""

from __future__ import annotations

import numpy as np


def write_gradient_row(writer, step: int, row: dict[str, np.ndarray], layers) -> None:
    """Writes one recorded row (per-layer values, the global value last) at `step`."""
    with writer.as_default(step=step):
        _scalar("gradients/global_norm", row["grad_norm"][-1], step)
        _scalar("gradients/global_norm_clipped", row["grad_norm_clipped"][-1], step)
        _scalar("updates/global_ratio", row["update_ratio"][-1], step)
        _scalar("gradients/nonfinite_share", row["nonfinite_share"][-1], step)
        for i, name in enumerate(layers):
            _scalar(f"gradients/norm/{name}", row["grad_norm"][i], step)
            _scalar(f"updates/ratio/{name}", row["update_ratio"][i], step)
        _histogram("gradients/layer_norms", row["grad_norm"][:-1], step)
        _histogram("updates/layer_ratios", row["update_ratio"][:-1], step)


def _metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def _scalar(tag: str, value: float, step: int) -> None:
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_metadata("scalars"))


def _histogram(tag: str, values: np.ndarray, step: int, bins: int = 20) -> None:
    import tensorflow as tf

    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    counts, edges = np.histogram(values, bins=bins if values.min() < values.max() else 1)
    buckets = np.stack([edges[:-1], edges[1:], counts.astype("float64")], axis=1)
    tf.summary.write(tag, tf.constant(buckets, tf.float64), step=step, metadata=_metadata("histograms"))
