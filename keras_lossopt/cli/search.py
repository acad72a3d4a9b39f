"""`keras-lossopt search`: a keras-tuner search over the loss, its parameters and the learning rate.

The search is stored in `--directory` and resumes there (keras-tuner's `overwrite=False`):
rerunning the same command after an interruption keeps every finished trial. The best
loss is written as a config that `keras_lossopt.losses.get(...)` loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_lossopt import losses
from keras_lossopt.cli import report
from keras_lossopt.cli.distributed import SearchRole
from keras_lossopt.cli.part_gains import measure_part_gains, part_gains_table
from keras_lossopt.cli.search_report import (
    configuration_lines,
    leaderboard_rows,
    leaderboard_table,
    recommend_trial,
    write_search_report,
)
from keras_lossopt.cli.training import targets, train_configuration
from keras_lossopt.datasets import Dataset
from keras_lossopt.tuning import (
    LossSearchHyperModel,
    advise,
    check_search_objective,
    configuration_from_hyperparameters,
    configured_loss,
    cross_validate_configuration,
    default_objective,
    make_tuner,
    search_summary,
)
from keras_lossopt.tuning._command import check_labels, split_hyperparameters

__all__ = ["pooled", "run_search"]


def _trial_line(
    number: int, total: Any, trial, metrics: Mapping[str, float], objective_name: str, who: str = ""
) -> str:
    """One line for a finished trial: loss, parameters, score, folds, time (and the worker that ran it)."""
    values = trial.hyperparameters.values
    shown = ", ".join(f"{k.split('/')[-1]}={_fmt(v)}" for k, v in values.items() if not k.startswith("tuner/"))
    if total is None:  # a worker: its own count; the search's total is the chief's
        header = f"[trial {number} on {who}] {shown}"
    else:
        header = f"[trial {number}/{total}{', ' + who if who else ''}] {shown}"
    if objective_name not in metrics:
        return f"{header}: no score ({str(getattr(trial, 'status', 'failed')).lower()})"
    folds = ""
    if "folds_run" in metrics:
        folds = f" ± {metrics['fold_std']:.4f} over {int(metrics['folds_run'])} fold(s)"
        folds += ", stopped: trails the best" if metrics.get("pruned") else ""
    seconds = f" ({metrics['seconds']:.1f}s)" if "seconds" in metrics else ""
    return f"{header}: {objective_name}={metrics[objective_name]:.4f}{folds}{seconds}"


class _Progress:
    """One printed line per finished trial, numbered from the trials finished before."""

    def __init__(self, print_fn: Callable[[str], None], total: Any, objective_name: str):
        self.print_fn, self.total, self.objective_name = print_fn, total, objective_name
        self.trials = 0
        #: The tuner id when this process is a worker of a distributed search.
        self.worker: str | None = None

    def on_trial_result(self, trial, metrics: Mapping[str, float], who: str = "") -> None:
        """The tuner hook: called by the process that trained the trial."""
        self.trials += 1
        if self.worker is not None:  # its own count; the search's total is the chief's
            line = _trial_line(self.trials, None, trial, metrics, self.objective_name, who=self.worker)
        else:
            line = _trial_line(self.trials, self.total, trial, metrics, self.objective_name, who=who)
        self.print_fn(line)

    def watch_chief(self, oracle) -> None:
        """Makes the chief's oracle print a line per trial a worker finishes (the chief trains none).

        keras-tuner's `OracleServicer.EndTrial` calls `oracle.end_trial(trial)` for every
        finished trial; the instance attribute set here wraps it and names the worker from
        `oracle.ongoing_trials` (the trials each tuner id is running).
        """
        end_trial = oracle.end_trial

        def end_trial_and_print(trial):
            who = next((tid for tid, t in oracle.ongoing_trials.items() if t.trial_id == trial.trial_id), "")
            result = end_trial(trial)
            stored = oracle.trials.get(trial.trial_id, trial)
            metrics = {
                name: float(stored.metrics.get_last_value(name))
                for name in stored.metrics.metrics
                if stored.metrics.get_last_value(name) is not None
            }
            self.on_trial_result(stored, metrics, who=who)
            return result

        oracle.end_trial = end_trial_and_print


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pooled(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation data together (inputs, targets), for cross-validation."""
    x = np.concatenate([dataset.x_train, dataset.x_val])
    return x, np.concatenate([targets(dataset, "train"), targets(dataset, "val")])


def _search_trials(
    tuner: keras_tuner.Tuner,
    dataset: Dataset,
    *,
    folds: int,
    epochs: int,
    batch_size: int,
    progress: _Progress,
    print_fn: Callable[[str], None],
    role: SearchRole | None,
) -> None:
    """Runs the trials that are not finished yet; a rerun in the same folder keeps the finished ones.

    A worker of a distributed search holds no trials (its oracle is the chief's, over gRPC):
    it counts only those it trains.
    """
    if role is None or role.is_chief:
        finished_before = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        if finished_before:
            print_fn(f"resuming the search in {tuner.project_dir}: {finished_before} finished trials kept")
        progress.trials = finished_before
    if role is not None and role.is_chief:
        progress.watch_chief(tuner.oracle)
        print_fn(
            f"chief: serving the search at {role.address}; the workers (the same command with their own "
            "KERASTUNER_TUNER_ID) train the trials"
        )
    elif role is not None:
        progress.worker = role.tuner_id
        print_fn(f"worker {role.tuner_id}: training trials from the chief at {role.address}")
    tuner.on_trial_result = progress.on_trial_result
    if folds > 1:
        x, y = pooled(dataset)
        tuner.search(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
        return
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


def _evaluate_best_trial(
    tuner: keras_tuner.Tuner,
    hypermodel: LossSearchHyperModel,
    best_trial,
    dataset: Dataset,
    *,
    folds: int,
    make_model: Callable[[], keras.Model],
    epochs: int,
    batch_size: int,
    seed: int,
) -> tuple[keras.losses.Loss, dict[str, float]]:
    """The best trial's loss (its label smoothing included, its weight penalty left out) and its test-split scores.

    A cross-validated trial trained one model per fold and kept none, so the best
    configuration (loss, optimizer, regularization) is trained once more on the training
    split (as `compare` trains); so is the best of a distributed search whose workers kept
    their checkpoints on their own disks (no shared `--directory`).
    """
    configuration = configuration_from_hyperparameters(hypermodel, best_trial.hyperparameters)
    best_loss = configured_loss(configuration)
    best_model = None
    if folds == 1:
        try:
            with warnings.catch_warnings():
                # The checkpoint holds the optimizer's slots; the rebuilt model has none yet. Harmless here.
                warnings.simplefilter("ignore", UserWarning)
                best_model = tuner.load_model(best_trial)
        except (OSError, ValueError):
            best_model = None  # no checkpoint on this machine: trained again below
    if best_model is not None:
        outputs = best_model.predict(dataset.x_test, batch_size=256, verbose=0)
        return best_loss, report.scores(dataset.task, dataset.y_test, outputs, dataset.num_classes)
    scores, _ = train_configuration(dataset, make_model, configuration, seed=seed, epochs=epochs, batch_size=batch_size)
    return best_loss, scores


def _check_resumed_space(tuner: keras_tuner.Tuner, space: Sequence[str], project_dir: str) -> None:
    """A resumed search must vary the parts its stored trials varied: else their scores do not compare."""
    for trial in tuner.oracle.trials.values():
        parts = split_hyperparameters(trial.hyperparameters.values)
        stored = ["loss"] + ["optimizer"] * (parts["optimizer"] is not None)
        stored += ["regularization"] * (parts["regularization"] is not None)
        if stored != list(space):
            raise ValueError(
                f"the trials in {project_dir} searched --space {','.join(stored)}, not {','.join(space)}: rerun "
                f"with --space {','.join(stored)}, or start another search with --project-name or --overwrite"
            )


def _measure_part_gains(
    configuration, dataset: Dataset, make_model, *, folds: int, epochs: int, batch_size: int, seed: int,
    objective: keras_tuner.Objective, print_fn,
) -> dict[str, Any]:  # fmt: skip
    """The gain of each searched part, on the folds and seed of the search (`part_gains`)."""
    if folds < 2:
        return {
            "skipped": "Not measured: the gain of a part is judged paired over cross-validation folds, and this "
            "search ranked on a fixed validation split (--folds 1); rerun with --folds 3 to measure it."
        }
    x, y = pooled(dataset)
    steps = len(configuration["space"])
    print_fn(f"measuring what each searched part adds: {steps} configurations x {folds} folds")

    def score(step):
        return cross_validate_configuration(
            make_model, step, x, y, num_classes=dataset.num_classes, folds=folds, epochs=epochs,
            batch_size=batch_size, objective=objective.name, seed=seed,
        ).scores  # fmt: skip

    return measure_part_gains(configuration, score, direction=objective.direction)


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
    folds: int = 1,
    print_fn: Callable[[str], None] = print,
    role: SearchRole | None = None,
    space: Sequence[str] = ("loss",),
) -> dict[str, Any]:
    """Runs (or resumes) the search from the advisor's picks, prints the leaderboard, writes the report folder.

    `space` names the searched parts (`space.SPACE_PARTS`): the loss always, the optimizer and
    the regularization when named. The report gives the recommended trial's whole
    configuration (also written to `configuration.json`) and, for more than one part, what
    each part adds on the search's folds (`part_gains`).

    In keras-tuner's distributed mode (`role`, from `distributed.search_role`) the chief serves
    the trials, waits for the workers to finish them and alone writes the report; a worker
    trains the trials the chief gives it and returns `{"command": "search", "role": "worker",
    "tuner_id": ..., "trials_run": ...}` without writing anything.
    """
    search_objective = check_search_objective(objective) if objective else default_objective(dataset.task)
    x_all = np.concatenate([dataset.x_train, dataset.x_val])
    labels = np.concatenate([dataset.y_train, dataset.y_val])
    check_labels(labels, dataset.task, folds=folds)
    counts = None
    if dataset.task != "segmentation":
        # With folds every model trains on part of train+val; the priors are those of the pool.
        counts = np.bincount(labels.ravel(), minlength=dataset.num_classes) if folds > 1 else dataset.class_counts()
    space = list(space)
    hypermodel = LossSearchHyperModel(
        make_model,
        task=dataset.task,
        candidates=loss_names,
        class_counts=counts,
        search_optimizer="optimizer" in space,
        search_regularization="regularization" in space,
    )
    advice = advise(
        labels if folds > 1 else dataset.y_train,
        dataset.task,
        x=x_all if folds > 1 else dataset.x_train,
        candidates=[c.name for c in hypermodel.candidates],
        num_classes=dataset.num_classes,
    )
    progress = _Progress(print_fn, "?" if tuner_name == "hyperband" else max_trials, search_objective.name)
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
        "folds": folds,
        "space": space,
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
        folds=folds,
        starting_points=hypermodel.starting_points(advice),
    )
    if role is None or role.is_chief:  # a worker's oracle holds no trials
        _check_resumed_space(tuner, space, tuner.project_dir)
    print_fn(dataset.summary())
    legend = report.class_legend(dataset.class_names)
    if legend:
        print_fn(legend)
    print_fn(
        f"model: {model_description}; losses: {', '.join(c.name for c in hypermodel.candidates)}; "
        f"searched: {', '.join(space)}; tuner: {tuner_name}; "
        f"objective: {search_objective.name} ({search_objective.direction}); "
        + (f"{folds}-fold cross-validation" if folds > 1 else "validation split")
    )
    print_fn(f"advisor: {advice.profile.summary()}; first trials: {', '.join(a.candidate for a in advice.ranked)}")
    backend = report.backend_info()
    print_fn(report.describe_backend(backend))
    _search_trials(
        tuner,
        dataset,
        folds=folds,
        epochs=epochs,
        batch_size=batch_size,
        progress=progress,
        print_fn=print_fn,
        role=role,
    )
    if role is not None and not role.is_chief:
        print_fn(
            f"worker {role.tuner_id}: trained {progress.trials} trial(s); the search is done, the chief "
            f"writes the report to {output}"
        )
        return {"command": "search", "role": "worker", "tuner_id": role.tuner_id, "trials_run": progress.trials}
    ranked = _finished_trials(tuner, search_objective)
    leaderboard = leaderboard_rows(ranked, search_objective.name)
    recommended = recommend_trial(leaderboard, search_objective)
    timing = search_summary(tuner)
    best_trial = ranked[recommended["rank"] - 1]
    configuration = configuration_from_hyperparameters(hypermodel, best_trial.hyperparameters)
    best_loss, test_scores = _evaluate_best_trial(
        tuner,
        hypermodel,
        best_trial,
        dataset,
        folds=folds,
        make_model=make_model,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    table = leaderboard_table(leaderboard, search_objective.name, recommended)
    print_fn("")
    print_fn(table)
    shown = ", ".join(f"{k}={v:.3f}" for k, v in test_scores.items())
    print_fn(f"\nrecommended: trial {recommended['summary']}")
    print_fn(f"  (rule: {recommended['rule']})")
    print_fn("the recommended configuration:\n" + "\n".join(configuration_lines(configuration)))
    print_fn(f"the recommended configuration ({type(best_loss).__name__}) on the test split: {shown}")
    print_fn(
        f"search wall time {timing['seconds']:.0f} s over {timing['trials_run']} trials; the final best was first "
        f"reached at trial {timing.get('best_found_at', '-')}"
    )
    gains = None
    if len(space) > 1:
        gains = _measure_part_gains(
            configuration, dataset, make_model, folds=folds, epochs=epochs, batch_size=batch_size, seed=seed,
            objective=search_objective, print_fn=print_fn,
        )  # fmt: skip
        if "skipped" in gains:
            print_fn(gains["skipped"])
        else:
            print_fn(part_gains_table(gains, search_objective.name))
            print_fn(f"parts: {gains['recommended']['summary']}")
    results = {
        "command": "search",
        "backend": backend,
        "dataset": {
            "name": dataset.name,
            "task": dataset.task,
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
        },
        "model": model_description,
        "settings": settings,
        "leaderboard": leaderboard,
        "recommended": recommended,
        "best_loss": losses.serialize(best_loss),
        "configuration": configuration,
        "part_gains": gains,
        "best_test_scores": test_scores,
        "timing": {k: v for k, v in timing.items() if k != "trials"},
        "trials": timing["trials"],
        "advice": {**advice.to_dict(), "table": advice.table(), "profile_summary": advice.profile.summary()},
    }
    write_search_report(output, results, table, finished=len(ranked))
    print_fn(f"report, best_loss.json and configuration.json written to {output}")
    return results
