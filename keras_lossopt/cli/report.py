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
    "OTHER_COLOR",
    "RECOMMENDED_COLOR",
    "TIED_HATCH",
    "atomic_folder",
    "backend_info",
    "class_legend",
    "curves_figure",
    "describe_backend",
    "markdown_table",
    "metrics_figure",
    "named_counts",
    "plot_curves",
    "plot_metrics",
    "scores",
    "write_csv",
    "write_json",
]


_FRAMEWORKS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def backend_info() -> dict[str, str]:
    """The Keras backend that ran (`KERAS_BACKEND`) and the versions, for the report.

    Returns:
        `{"name": ..., "keras": ..., "framework": ...}` (the framework's installed version).
    """
    from importlib import metadata

    import keras

    name = keras.backend.backend()
    try:
        framework = metadata.version(_FRAMEWORKS.get(name, name))
    except metadata.PackageNotFoundError:
        framework = "unknown"
    return {"name": name, "keras": keras.__version__, "framework": framework}


def describe_backend(info: Mapping[str, str]) -> str:
    """One line for the report and the terminal, e.g. `backend: jax 0.10.2 (Keras 3.15.1)`."""
    return f"backend: {info['name']} {info['framework']} (Keras {info['keras']})"


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


#: Bar colours of `metrics_figure`: the recommended loss stands out, tied losses are hatched.
RECOMMENDED_COLOR, OTHER_COLOR, TIED_HATCH = "tab:orange", "tab:blue", "//"


def metrics_figure(
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    recommended: str | None = None,
    tied: Sequence[str] = (),
):
    """Bar chart, one panel per metric: mean per loss with a standard-deviation error bar.

    Args:
        summary: loss -> metric -> (mean, standard deviation).
        recommended: the recommended loss: its bars are orange and its name bold. Default None.
        tied: the losses tied with it (hatched bars). Default ().

    Returns:
        The matplotlib `Figure`, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    from matplotlib.patches import Patch

    names = list(summary)
    metrics = list(next(iter(summary.values())))
    # Room for the rotated names: a single panel (a search's trials) gets the width of one and a half.
    width = max(4 * len(metrics), 6, 0.6 * len(names) * len(metrics) + 2)
    figure, axes = plt.subplots(1, len(metrics), figsize=(width, 3.8), squeeze=False)
    colors = [RECOMMENDED_COLOR if n == recommended else OTHER_COLOR for n in names]
    hatches = [TIED_HATCH if n in tied and n != recommended else "" for n in names]
    for axis, metric in zip(axes[0], metrics):
        means = [summary[n][metric][0] for n in names]
        spreads = [summary[n][metric][1] for n in names]
        bars = axis.bar(range(len(names)), means, yerr=spreads, capsize=4, color=colors, alpha=0.85)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        for label in axis.get_xticklabels():
            label.set_fontweight("bold" if label.get_text() == recommended else "normal")
        axis.set_title(metric)
        axis.set_ylim(0, 1)
    if recommended is not None:
        handles = [Patch(facecolor=RECOMMENDED_COLOR, label=f"recommended: {recommended}")]
        if len(tied) > 1:
            handles.append(Patch(facecolor=OTHER_COLOR, hatch=TIED_HATCH, label="tied with it (within the noise)"))
        figure.legend(handles=handles, fontsize=9, loc="upper center", ncol=len(handles), frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.92 if recommended is not None else 1))
    return figure


def plot_metrics(
    path: pathlib.Path,
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    recommended: str | None = None,
    tied: Sequence[str] = (),
) -> bool:
    """Writes `metrics_figure` to `path`; False (nothing written) without matplotlib."""
    return _save(metrics_figure(summary, recommended=recommended, tied=tied), path)


def curves_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    seeds: Sequence[int],
    recommended: str | None = None,
):
    """Training curves: one panel per logged series, one line per loss (mean over `seeds`).

    The training-loss panel is on a log scale when every value is positive: the losses'
    scales differ by orders of magnitude (LDAM starts near 13 where cross-entropy starts
    near 2), and a linear axis flattens all but the largest. Every panel has a legend and
    says which seeds its lines average.

    Args:
        curves: loss -> series name (`"loss"`, `"val_macro_f1"`, ...) -> value per epoch.
        seeds: the seeds the curves average.
        recommended: the recommended loss: drawn thicker, "(recommended)" in the legend. Default None.

    Returns:
        The matplotlib `Figure`, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    series = list(dict.fromkeys(key for by_series in curves.values() for key in by_series))
    figure, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.8), squeeze=False)
    over = f"mean over seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {', '.join(map(str, seeds))}"
    for axis, key in zip(axes[0], series):
        values = []
        for name, by_series in curves.items():
            if key in by_series:
                chosen = name == recommended
                axis.plot(
                    range(1, len(by_series[key]) + 1),
                    by_series[key],
                    label=f"{name} (recommended)" if chosen else name,
                    linewidth=2.6 if chosen else 1.3,
                )
                values += list(by_series[key])
        logarithmic = key == "loss" and values and min(values) > 0
        if logarithmic:
            axis.set_yscale("log")
        what = "training loss" + (" (log scale; scales differ between losses)" if logarithmic else "")
        axis.set_title(f"{what if key == 'loss' else 'validation ' + key.removeprefix('val_')}\n{over}", fontsize=10)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def plot_curves(
    path: pathlib.Path,
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    seeds: Sequence[int],
    recommended: str | None = None,
) -> bool:
    """Writes `curves_figure` to `path`; False (nothing written) without matplotlib."""
    return _save(curves_figure(curves, seeds=seeds, recommended=recommended), path)


def _save(figure, path: pathlib.Path) -> bool:
    if figure is None:
        return False
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
