"""`keras-lossopt compare`: the same model trained with several losses over several seeds.

Each (loss, seed) run builds a fresh model, trains it on the training split with the
validation split for the curves, and is scored on the test split from its predictions.
The table gives mean and standard deviation over seeds of accuracy, macro-F1 and
worst-class recall (mean IoU first for segmentation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_lossopt import losses
from keras_lossopt.cli import report
from keras_lossopt.cli.training import targets, train_once
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import build_loss, default_objective, resolve_candidates
from keras_lossopt.tuning.validation import check_labels, cross_validate_loss

__all__ = ["run_compare"]


def _build_candidate_losses(dataset: Dataset, loss_names: Sequence[str] | None) -> dict[str, keras.losses.Loss]:
    """Candidate name -> the loss built for `dataset` (logits out, training class counts)."""
    candidates = resolve_candidates(dataset.task, loss_names)
    counts = dataset.class_counts("train") if dataset.task != "segmentation" else None
    return {
        c.name: build_loss(c, from_logits=True, class_counts=counts if c.needs_class_counts else None)
        for c in candidates
    }


def _train_every_loss(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    built: dict[str, keras.losses.Loss],
    *,
    seeds: int,
    print_fn: Callable[[str], None],
    **training: Any,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Trains every (loss, seed) pair; returns one row of test scores per run and each loss'
    curves averaged over seeds."""
    runs, curves_by_loss = [], {}
    total = len(built) * seeds
    for name, loss in built.items():
        runs_curves = []
        for seed in range(seeds):
            run_start = time.perf_counter()
            loss_copy = losses.get(losses.serialize(loss))  # a fresh loss per run; no shared state
            scores, curves = train_once(dataset, make_model, loss_copy, seed=seed, **training)
            seconds = time.perf_counter() - run_start
            runs.append({"loss": name, "seed": seed, **scores, "seconds": round(seconds, 2)})
            runs_curves.append(curves)
            shown = ", ".join(f"{k}={v:.3f}" for k, v in scores.items())
            print_fn(f"[{len(runs)}/{total}] {name} seed={seed}: {shown} ({seconds:.1f}s)")
        curves_by_loss[name] = {key: np.mean([c[key] for c in runs_curves], axis=0).tolist() for key in runs_curves[0]}
    return runs, curves_by_loss


def _summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Loss -> metric -> (mean, standard deviation) over its seeds, losses in run order."""
    metric_names = [k for k in runs[0] if k not in ("loss", "seed", "seconds")]
    names = list(dict.fromkeys(r["loss"] for r in runs))
    return {
        name: {
            m: (
                float(np.mean([r[m] for r in runs if r["loss"] == name])),
                float(np.std([r[m] for r in runs if r["loss"] == name])),
            )
            for m in metric_names
        }
        for name in names
    }


def _summary_table(summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> str:
    """The markdown table of `_summarize`: one row per loss, "mean ± std" per metric."""
    metric_names = list(next(iter(summary.values())))
    rows = [[name, *(f"{by[m][0]:.3f} ± {by[m][1]:.3f}" for m in metric_names)] for name, by in summary.items()]
    return report.markdown_table(["loss", *metric_names], rows)


def _recommend(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    built: Mapping[str, keras.losses.Loss],
    curves: Mapping[str, Mapping[str, list[float]]],
    *,
    folds: int,
    print_fn: Callable[[str], None],
    **training: Any,
) -> dict[str, Any]:
    """The loss to recommend, chosen by validation (never by test).

    With `folds >= 2`, by the estimate a search ranks by: stratified k-fold
    cross-validation on train+validation (`tuning.cross_validate_loss`); with `folds=1`,
    by the best epoch of the seeds' mean validation curve.
    """
    objective = default_objective(dataset.task).name
    estimates: dict[str, dict[str, float]] = {}
    if folds > 1:
        x = np.concatenate([dataset.x_train, dataset.x_val])
        y = np.concatenate([targets(dataset, "train"), targets(dataset, "val")])
        for name, loss in built.items():
            started = time.perf_counter()
            result = cross_validate_loss(
                make_model,
                loss,
                x,
                y,
                task=dataset.task,
                num_classes=dataset.num_classes,
                folds=folds,
                **training,
            )
            estimates[name] = {"mean": result.mean, "std": result.std}
            print_fn(
                f"[cv] {name}: {objective}={result.mean:.4f} ± {result.std:.4f} over {folds} folds "
                f"({time.perf_counter() - started:.1f}s)"
            )
        method = f"stratified {folds}-fold cross-validation on the training and validation splits"
    else:
        for name in built:
            curve = curves.get(name, {}).get(objective)
            if curve:
                estimates[name] = {"mean": float(np.max(curve)), "std": None}
        method = "the best epoch of the mean validation curve over seeds"
    if not estimates:
        return {"loss": None, "objective": objective, "method": method, "estimates": {}}
    best = max(estimates, key=lambda n: estimates[n]["mean"])
    return {"loss": best, "objective": objective, "method": method, "estimates": estimates}


def _write_report(output: str, results: Mapping[str, Any], summary, table: str) -> None:
    settings, dataset = results["settings"], results["dataset"]
    with report.atomic_folder(output) as folder:
        report.write_json(folder / "results.json", results)
        report.write_csv(folder / "results.csv", results["runs"])
        plotted = report.plot_metrics(folder / "metrics.png", summary)
        report.plot_curves(folder / "curves.png", results["curves"])
        lines = [
            f"# Loss comparison on {dataset['name']}",
            "",
            f"Task: {dataset['task']}, {dataset['num_classes']} classes; training class counts "
            f"{report.named_counts(dataset['class_names'], dataset['train_class_counts'])}. "
            f"Model: {results['model']}. "
            f"{settings['seeds']} seeds x {settings['epochs']} epochs, batch {settings['batch_size']}, "
            f"Adam({settings['learning_rate']:g}). Scores on the test split: mean ± standard deviation over seeds.",
            "",
            table,
            "",
        ]
        recommended = results["recommended"]
        if recommended["loss"] is not None:
            lines += [
                f"Recommended: `{recommended['loss']}`, the best {recommended['objective']} by "
                f"{recommended['method']} (never by the test split):",
                "",
                report.markdown_table(
                    ["loss", f"validation {recommended['objective']}"],
                    [
                        [name, f"{e['mean']:.4f}" + ("" if e["std"] is None else f" ± {e['std']:.4f}")]
                        for name, e in recommended["estimates"].items()
                    ],
                ),
                "",
            ]
        if plotted:
            lines += ["![metrics per loss](metrics.png)", "", "![training curves](curves.png)", ""]
        (folder / "report.md").write_text("\n".join(lines))


def run_compare(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    model_description: str,
    *,
    loss_names: Sequence[str] | None,
    seeds: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    output: str,
    folds: int = 1,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the comparison, prints the table and the recommendation, writes the report folder."""
    started = time.perf_counter()
    if folds > 1:
        check_labels(np.concatenate([dataset.y_train, dataset.y_val]), dataset.task, folds=folds)
    built = _build_candidate_losses(dataset, loss_names)
    print_fn(dataset.summary())
    legend = report.class_legend(dataset.class_names)
    if legend:
        print_fn(legend)
    print_fn(f"model: {model_description}; losses: {', '.join(built)}; seeds: {seeds}; epochs: {epochs}")
    settings = {"seeds": seeds, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    runs, curves = _train_every_loss(
        dataset,
        make_model,
        built,
        seeds=seeds,
        print_fn=print_fn,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    summary = _summarize(runs)
    table = _summary_table(summary)
    print_fn("")
    print_fn(table)
    recommended = _recommend(
        dataset,
        make_model,
        built,
        curves,
        folds=folds,
        print_fn=print_fn,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    if recommended["loss"] is not None:
        print_fn(f"recommended: {recommended['loss']} (best {recommended['objective']} by {recommended['method']})")
    results = {
        "command": "compare",
        "dataset": {
            "name": dataset.name,
            "task": dataset.task,
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "train_class_counts": dataset.class_counts("train").tolist(),
        },
        "model": model_description,
        "settings": {**settings, "folds": folds},
        "recommended": recommended,
        "losses": {name: losses.serialize(loss) for name, loss in built.items()},
        "summary": {name: {m: {"mean": v[0], "std": v[1]} for m, v in by.items()} for name, by in summary.items()},
        "runs": runs,
        "curves": curves,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write_report(output, results, summary, table)
    print_fn(f"\nreport written to {output}")
    return results
