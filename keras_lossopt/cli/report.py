"""Test scores of predictions, and the report folder written all at once.

A report folder appears only when it is complete: files go to a hidden temporary folder
beside the target, which is renamed into place at the end (an older report of the same
name is replaced only then). An interrupted run leaves no folder that looks like a result.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "atomic_folder",
    "class_legend",
    "markdown_table",
    "named_counts",
    "plot_curves",
    "plot_metrics",
    "scores",
    "write_csv",
    "write_json",
]


def scores(task: str, labels: np.ndarray, outputs: np.ndarray, num_classes: int) -> dict[str, float]:
    """Test-split scores of model outputs (logits), from the same metric objects training logs.

    Accuracy, macro-F1 and worst-class recall (`keras_lossopt.metrics`); mean IoU first
    for segmentation (`IoUScore`, the mean over classes present in the labels or the
    predictions). Each metric sees the whole split at once, so the scores are
    dataset-level, like the validation scores of `fit`.

    Args:
        task: `"binary"`, `"multiclass"` or `"segmentation"`.
        labels: integer labels, `(N,)` or `(N, H, W)`.
        outputs: the model's logits, `(N, 1)` for binary, else `(..., num_classes)`.
        num_classes: the number of classes (2 for binary).

    Returns:
        Metric name -> score in [0, 1].
    """
    import keras

    from keras_lossopt import metrics

    if task == "binary":
        accuracy = keras.metrics.BinaryAccuracy(threshold=0.0)
        labels = labels.reshape(-1, 1)
    else:
        accuracy = keras.metrics.SparseCategoricalAccuracy()
    named = {
        "accuracy": accuracy,
        "macro_f1": metrics.MacroF1(num_classes, from_logits=True),
        "worst_class_recall": metrics.WorstClassRecall(num_classes, from_logits=True),
    }
    if task == "segmentation":
        named = {"mean_iou": metrics.IoUScore(num_classes, from_logits=True), **named}
    result = {}
    for name, metric in named.items():
        metric.update_state(labels, outputs)
        result[name] = float(metric.result())
    return result


def named_counts(class_names: Sequence[str], counts: Sequence[int]) -> str:
    """`"cat: 30, dog: 40"`: each class' count after its name (its label text, or its index)."""
    return ", ".join(f"{name}: {int(count)}" for name, count in zip(class_names, counts))


def class_legend(class_names: Sequence[str]) -> str | None:
    """`"classes: 0 = cat, 1 = dog"`, the names behind the class indices of the tables; None when
    the names are the indices themselves (numeric labels 0..K-1)."""
    if list(class_names) == [str(i) for i in range(len(class_names))]:
        return None
    return "classes: " + ", ".join(f"{i} = {name}" for i, name in enumerate(class_names))


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary folder that becomes `target` only if the block succeeds."""
    target = pathlib.Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def write_json(path: pathlib.Path, payload: Any) -> None:
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")


def write_csv(path: pathlib.Path, rows: Sequence[Mapping[str, Any]]) -> None:
    header = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - exercised only without the [plot] extra
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(path: pathlib.Path, summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> bool:
    """Bar chart, one panel per metric: mean per loss with a standard-deviation error bar."""
    plt = _pyplot()
    if plt is None:
        return False
    names = list(summary)
    metrics = list(next(iter(summary.values())))
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        means = [summary[n][metric][0] for n in names]
        spreads = [summary[n][metric][1] for n in names]
        axis.bar(range(len(names)), means, yerr=spreads, capsize=4, color="tab:blue", alpha=0.8)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axis.set_title(metric)
        axis.set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_curves(path: pathlib.Path, curves: Mapping[str, Mapping[str, Sequence[float]]]) -> bool:
    """Training curves: one panel per logged series, one line per loss (mean over seeds)."""
    plt = _pyplot()
    if plt is None:
        return False
    series = list(dict.fromkeys(key for by_series in curves.values() for key in by_series))
    figure, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for axis, key in zip(axes[0], series):
        for name, by_series in curves.items():
            if key in by_series:
                axis.plot(range(1, len(by_series[key]) + 1), by_series[key], label=name)
        axis.set_title("training loss (scales differ between losses)" if key == "loss" else key, fontsize=10)
        axis.set_xlabel("epoch")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
