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
from keras_lossopt.cli.recommendation import recommend
from keras_lossopt.cli.training import targets, train_once
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import build_loss, default_objective, resolve_candidates
from keras_lossopt.tuning._command import check_labels
from keras_lossopt.tuning.validation import cross_validate_loss

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
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, list[float]]]]]:
    """Trains every (loss, seed) pair; returns one row of test scores per run and each loss'
    curves, one dict of curves per seed."""
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
        curves_by_loss[name] = runs_curves
    return runs, curves_by_loss


def _mean_curves(curves: Mapping[str, Sequence[Mapping[str, list[float]]]]) -> dict[str, dict[str, list[float]]]:
    """Each loss' curves averaged over its seeds, epoch by epoch."""
    return {
        name: {key: np.mean([c[key] for c in per_seed], axis=0).tolist() for key in per_seed[0]}
        for name, per_seed in curves.items()
    }


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
    curves: Mapping[str, Sequence[Mapping[str, list[float]]]],
    *,
    folds: int,
    print_fn: Callable[[str], None],
    **training: Any,
) -> dict[str, Any]:
    """The loss to recommend, chosen by validation (never by test), a tie when the noise allows.

    With `folds >= 2`, by the estimate a search ranks by: stratified k-fold
    cross-validation on train+validation (`tuning.cross_validate_loss`), the losses paired
    over the same folds; with `folds=1`, by each seed's best validation epoch, paired over
    the seeds. `recommendation.recommend` applies the rule (a tie within one standard error
    of the paired difference goes to the lower spread).
    """
    objective = default_objective(dataset.task).name
    estimates: dict[str, dict[str, Any]] = {}
    units = "folds"
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
            estimates[name] = {"mean": result.mean, "std": result.std, "scores": list(result.scores)}
            print_fn(
                f"[cv] {name}: {objective}={result.mean:.4f} ± {result.std:.4f} over {folds} folds "
                f"({time.perf_counter() - started:.1f}s)"
            )
        method = f"stratified {folds}-fold cross-validation on the training and validation splits"
    else:
        units = "seeds"
        for name in built:
            best_epochs = [float(np.max(c[objective])) for c in curves.get(name, ()) if c.get(objective)]
            if best_epochs:
                estimates[name] = {"mean": float(np.mean(best_epochs)), "std": float(np.std(best_epochs))}
                estimates[name]["scores"] = best_epochs
        method = "the best epoch of each seed's validation curve (the validation split)"
    scored = {name: e["scores"] for name, e in estimates.items() if np.all(np.isfinite(e["scores"]))}
    if not scored:
        return {"loss": None, "objective": objective, "method": method, "estimates": estimates, "decision": None}
    pick = recommend(scored, units=units)
    decision = {**pick.to_dict(), "summary": pick.describe()}
    return {"loss": pick.chosen, "objective": objective, "method": method, "estimates": estimates, "decision": decision}


def _recommendation_lines(recommended: Mapping[str, Any]) -> list[str]:
    """The report's recommendation: the decision in a sentence, the rule, and the validation table."""
    decision = recommended["decision"]
    comparisons = {c["candidate"]: c for c in decision["comparisons"]}
    tied = decision["tie"] or [decision["loss"]]
    rows = []
    for name, e in recommended["estimates"].items():
        paired = comparisons.get(name)
        if name == decision["leader"]:
            versus = "leader"
        elif paired is None or paired["difference"] is None:
            versus = "not compared"
        else:
            versus = f"{paired['difference']:.4f} ± {paired['standard_error']:.4f}"
        mark = "recommended" if name == decision["loss"] else ("tied" if name in tied else "")
        rows.append([name, f"{e['mean']:.4f} ± {e['std']:.4f}", versus, mark])
    return [
        f"Recommended: `{decision['loss']}`, by {recommended['objective']} on {recommended['method']} "
        "(never by the test split).",
        "",
        f"Decision: {decision['summary']}.",
        "",
        f"Rule: {decision['rule']}.",
        "",
        report.markdown_table(
            [
                "loss",
                f"validation {recommended['objective']}",
                "behind the leader (paired ± standard error)",
                "decision",
            ],
            rows,
        ),
        "",
    ]


def _write_report(output: str, results: Mapping[str, Any], summary, table: str) -> None:
    settings, dataset = results["settings"], results["dataset"]
    with report.atomic_folder(output) as folder:
        report.write_json(folder / "results.json", results)
        report.write_csv(folder / "results.csv", results["runs"])
        recommended = results["recommended"]
        tied = (recommended["decision"] or {}).get("tie") or ()
        plotted = report.plot_metrics(folder / "metrics.png", summary, recommended=recommended["loss"], tied=tied)
        seeds = list(range(settings["seeds"]))
        report.plot_curves(folder / "curves.png", results["curves"], seeds=seeds, recommended=recommended["loss"])
        lines = [
            f"# Loss comparison on {dataset['name']}",
            "",
            f"Task: {dataset['task']}, {dataset['num_classes']} classes; training class counts "
            f"{report.named_counts(dataset['class_names'], dataset['train_class_counts'])}. "
            f"Model: {results['model']}. "
            f"{settings['seeds']} seeds x {settings['epochs']} epochs, batch {settings['batch_size']}, "
            f"Adam({settings['learning_rate']:g}). Scores on the test split: mean ± standard deviation over seeds.",
            "",
            f"Keras {report.describe_backend(results['backend'])}.",
            "",
            table,
            "",
        ]
        if recommended["loss"] is not None:
            lines += _recommendation_lines(recommended)
        if plotted:
            lines += [
                "![metrics per loss](metrics.png)",
                "",
                "![training curves](curves.png)",
                "",
            ]
            if settings["folds"] > 1:
                lines += [
                    "The curves' validation panel scores the fixed validation split, every sample weighing the "
                    "same; the recommendation scores cross-validation folds that weigh every class the same.",
                    "",
                ]
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
    backend = report.backend_info()
    print_fn(report.describe_backend(backend))
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
        print_fn(f"recommended: {recommended['decision']['summary']}")
        print_fn(f"  ({recommended['objective']} by {recommended['method']}; rule: {recommended['decision']['rule']})")
    results = {
        "command": "compare",
        "backend": backend,
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
        "curves": _mean_curves(curves),
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write_report(output, results, summary, table)
    print_fn(f"\nreport written to {output}")
    return results
