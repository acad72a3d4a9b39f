"""`keras-lossopt search`: a keras-tuner search over the loss, its parameters and the learning rate.

The search is stored in `--directory` and resumes there (keras-tuner's `overwrite=False`):
rerunning the same command after an interruption keeps every finished trial. The best
loss is written as a config that `keras_lossopt.losses.get(...)` loads.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_lossopt import losses
from keras_lossopt.cli import report
from keras_lossopt.cli.compare import targets
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import LossSearchHyperModel, check_search_objective, default_objective, make_tuner

__all__ = ["run_search"]


class _ProgressHyperModel(LossSearchHyperModel):
    """Prints one line per finished trial: its loss, parameters and objective."""

    def __init__(self, *args, print_fn, total, objective_name, **kwargs):
        super().__init__(*args, **kwargs)
        self.print_fn, self.total, self.objective_name, self.count = print_fn, total, objective_name, 0

    def fit(self, hp, model, *args, **kwargs):
        started = time.perf_counter()
        history = super().fit(hp, model, *args, **kwargs)
        self.count += 1
        values = history.history.get(self.objective_name, [float("nan")])
        shown = ", ".join(f"{k.split('/')[-1]}={_fmt(v)}" for k, v in hp.values.items() if not k.startswith("tuner/"))
        self.print_fn(
            f"[trial {self.count}/{self.total}] {shown}: best {self.objective_name}={np.nanmax(values):.4f} "
            f"({time.perf_counter() - started:.1f}s)"
        )
        return history


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _search_trials(
    tuner: keras_tuner.Tuner,
    hypermodel: _ProgressHyperModel,
    dataset: Dataset,
    *,
    epochs: int,
    batch_size: int,
    print_fn: Callable[[str], None],
) -> None:
    """Runs the trials that are not finished yet; a rerun in the same folder keeps the finished ones."""
    finished_before = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    if finished_before:
        print_fn(f"resuming the search in {tuner.project_dir}: {finished_before} finished trials kept")
    hypermodel.count = finished_before
    tuner.search(
        dataset.x_train,
        targets(dataset, "train"),
        validation_data=(dataset.x_val, targets(dataset, "val")),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
    )


def _finished_trials(tuner: keras_tuner.Tuner, search_objective: keras_tuner.Objective) -> list:
    """The completed trials with a score, best first."""
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    if not finished:
        raise RuntimeError("the search finished no trial; see the messages above")
    return sorted(finished, key=lambda t: t.score, reverse=search_objective.direction == "max")


def _leaderboard_rows(ranked: Sequence, objective_name: str) -> list[dict[str, Any]]:
    """One row per trial: rank, trial id, loss, learning rate, the loss' parameters, score."""
    rows = []
    for rank, trial in enumerate(ranked, start=1):
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        rows.append(
            {
                "rank": rank,
                "trial": trial.trial_id,
                "loss": values.pop("loss"),
                "learning_rate": values.pop("learning_rate", None),
                "parameters": {k.split("/", 1)[-1]: v for k, v in values.items()},
                objective_name: float(trial.score),
            }
        )
    return rows


def _leaderboard_table(leaderboard: Sequence[Mapping[str, Any]], objective_name: str) -> str:
    """The markdown table of `_leaderboard_rows`."""
    rows = [
        [
            row["rank"],
            row["loss"],
            ", ".join(f"{k}={_fmt(v)}" for k, v in row["parameters"].items()) or "-",
            _fmt(row["learning_rate"]) if row["learning_rate"] is not None else "-",
            row[objective_name],
        ]
        for row in leaderboard
    ]
    return report.markdown_table(["rank", "loss", "parameters", "learning_rate", objective_name], rows)


def _evaluate_best_trial(
    tuner: keras_tuner.Tuner, hypermodel: LossSearchHyperModel, best_trial, dataset: Dataset
) -> tuple[keras.losses.Loss, dict[str, float]]:
    """The best trial's loss and the test-split scores of its model."""
    best_loss = hypermodel.loss_from_hyperparameters(best_trial.hyperparameters)
    with warnings.catch_warnings():
        # The checkpoint holds the optimizer's slots; the rebuilt model has none yet. Harmless here.
        warnings.simplefilter("ignore", UserWarning)
        best_model = tuner.load_model(best_trial)
    outputs = best_model.predict(dataset.x_test, batch_size=256, verbose=0)
    return best_loss, report.scores(dataset.task, dataset.y_test, outputs, dataset.num_classes)


def _write_report(output: str, results: Mapping[str, Any], table: str, finished: int) -> None:
    settings, leaderboard = results["settings"], results["leaderboard"]
    objective_name = settings["objective"]["name"]
    shown = ", ".join(f"{k}={v:.3f}" for k, v in results["best_test_scores"].items())
    with report.atomic_folder(output) as folder:
        report.write_json(folder / "results.json", results)
        report.write_json(folder / "best_loss.json", results["best_loss"])
        report.write_csv(
            folder / "results.csv",
            [{**{k: v for k, v in row.items() if k != "parameters"}, **row["parameters"]} for row in leaderboard],
        )
        plotted = report.plot_metrics(
            folder / "trials.png",
            {f"#{row['rank']} {row['loss']}": {objective_name: (row[objective_name], 0.0)} for row in leaderboard},
        )
        lines = [
            f"# Loss search on {results['dataset']['name']}",
            "",
            f"Tuner: {settings['tuner']}, objective {objective_name} ({settings['objective']['direction']}), "
            f"{finished} finished trials of {settings['epochs']} epochs. Model: {results['model']}.",
            "",
            table,
            "",
            f"Best loss: `{leaderboard[0]['loss']}`, config in `best_loss.json` "
            "(load it with `keras_lossopt.losses.get(json.load(open('best_loss.json')))`).",
            f"Best model on the test split: {shown}.",
            "",
        ]
        if plotted:
            lines += ["![objective per trial](trials.png)", ""]
        (folder / "report.md").write_text("\n".join(lines))


def run_search(
    dataset: Dataset,
    make_model: Callable[[], keras.Model],
    model_description: str,
    *,
    loss_names: Sequence[str] | None,
    tuner_name: str,
    max_trials: int,
    epochs: int,
    batch_size: int,
    directory: str,
    project_name: str,
    overwrite: bool,
    seed: int,
    objective: str | None,
    output: str,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs (or resumes) the search, prints the leaderboard, writes the report folder."""
    search_objective = check_search_objective(objective) if objective else default_objective(dataset.task)
    hypermodel = _ProgressHyperModel(
        make_model,
        task=dataset.task,
        candidates=loss_names,
        class_counts=dataset.class_counts("train") if dataset.task != "segmentation" else None,
        print_fn=print_fn,
        total="?" if tuner_name == "hyperband" else max_trials,
        objective_name=search_objective.name,
    )
    keras.utils.set_random_seed(seed)
    settings = {
        "tuner": tuner_name,
        "max_trials": max_trials,
        "epochs": epochs,
        "batch_size": batch_size,
        "objective": {"name": search_objective.name, "direction": search_objective.direction},
        "directory": str(directory),
        "project_name": project_name,
        "seed": seed,
    }
    tuner = make_tuner(
        hypermodel,
        tuner_name,
        objective=search_objective,
        max_trials=max_trials,
        max_epochs=epochs,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
    )
    print_fn(dataset.summary())
    print_fn(
        f"model: {model_description}; losses: {', '.join(c.name for c in hypermodel.candidates)}; "
        f"tuner: {tuner_name}; objective: {search_objective.name} ({search_objective.direction})"
    )
    _search_trials(tuner, hypermodel, dataset, epochs=epochs, batch_size=batch_size, print_fn=print_fn)
    ranked = _finished_trials(tuner, search_objective)
    leaderboard = _leaderboard_rows(ranked, search_objective.name)
    best_loss, test_scores = _evaluate_best_trial(tuner, hypermodel, ranked[0], dataset)
    table = _leaderboard_table(leaderboard, search_objective.name)
    print_fn("")
    print_fn(table)
    shown = ", ".join(f"{k}={v:.3f}" for k, v in test_scores.items())
    print_fn(f"\nbest: {leaderboard[0]['loss']} ({type(best_loss).__name__}); best model on the test split: {shown}")
    results = {
        "command": "search",
        "dataset": {"name": dataset.name, "task": dataset.task, "num_classes": dataset.num_classes},
        "model": model_description,
        "settings": settings,
        "leaderboard": leaderboard,
        "best_loss": losses.serialize(best_loss),
        "best_test_scores": test_scores,
    }
    _write_report(output, results, table, finished=len(ranked))
    print_fn(f"report and best_loss.json written to {output}")
    return results
