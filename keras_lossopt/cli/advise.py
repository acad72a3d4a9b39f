"""`keras-lossopt advise`: which loss to try first on this data, and with which parameters.

Reads the training and validation labels (and inputs, for duplicated inputs with
conflicting labels), prints the label profile and the advisor's ranked losses as a table,
and writes them to the report folder. Nothing is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from keras_lossopt.cli import report
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import advise

__all__ = ["run_advise"]


def run_advise(dataset: Dataset, *, folds: int, output: str, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Profiles the labels, prints the ranked losses and writes `report.md` and `advice.json`."""
    labels = np.concatenate([dataset.y_train, dataset.y_val])
    x = np.concatenate([dataset.x_train, dataset.x_val])
    advice = advise(labels, dataset.task, x=x, num_classes=dataset.num_classes, folds=folds)
    legend = report.class_legend(dataset.class_names)
    print_fn(dataset.summary())
    if legend:
        print_fn(legend)
    print_fn(f"labels: {advice.profile.summary()}")
    print_fn("")
    print_fn(advice.table())
    first = advice.first
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in first.parameters.items())
    print_fn(f"\nfirst pick: {first.candidate}" + (f" ({shown})" if shown else ""))
    results = {
        "command": "advise",
        "dataset": {"name": dataset.name, "task": dataset.task, "class_names": list(dataset.class_names)},
        **advice.to_dict(),
    }
    with report.atomic_folder(output) as folder:
        report.write_json(folder / "advice.json", results)
        lines = [
            f"# Loss advice for {dataset.name}",
            "",
            f"Labels (training and validation splits): {advice.profile.summary()}.",
            "",
            *([f"{legend[0].upper()}{legend[1:]}.", ""] if legend else []),
            advice.table(),
            "",
            "`keras-lossopt search` starts from these picks, in this order (its first trials).",
            "",
        ]
        (folder / "report.md").write_text("\n".join(lines))
    print_fn(f"report written to {output}")
    return results
