"""`keras-lossopt search`'s results: the leaderboard, the recommended trial, its configuration, the report folder.

The leaderboard has one row per finished trial, its hyperparameters sorted into the parts of
the search (`split_hyperparameters`): the loss and its parameters, the
learning rate, the optimizer family and its parameters, the regularization strengths. The
recommended trial is chosen by `recommendation.recommend` (a tie inside the noise of the same
folds goes to the lowest spread); its whole configuration is written to `configuration.json`
(`tuning.compile_arguments` rebuilds its compile), its loss to `best_loss.json`, and the gain
of each searched part (`part_gains`) to the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner

from keras_lossopt.cli import report
from keras_lossopt.cli.part_gains import part_gains_table
from keras_lossopt.cli.recommendation import recommend
from keras_lossopt.tuning._command import split_hyperparameters

__all__ = [
    "configuration_lines",
    "leaderboard_rows",
    "leaderboard_table",
    "recommend_trial",
    "write_search_report",
]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())


def leaderboard_rows(ranked: Sequence, objective_name: str) -> list[dict[str, Any]]:
    """One row per trial: rank, trial id, loss, its parameters, learning rate, optimizer, regularization, scores."""
    rows = []
    for rank, trial in enumerate(ranked, start=1):
        parts = split_hyperparameters(trial.hyperparameters.values)

        def metric(name, trial=trial):
            return float(trial.metrics.get_last_value(name)) if trial.metrics.exists(name) else None

        rows.append(
            {
                "rank": rank,
                "trial": trial.trial_id,
                "loss": parts["loss"],
                "learning_rate": parts["learning_rate"],
                "parameters": parts["loss_parameters"],
                "optimizer": parts["optimizer"],
                "optimizer_parameters": parts["optimizer_parameters"],
                "regularization": parts["regularization"],
                objective_name: float(trial.score),
                "fold_std": metric("fold_std"),
                "folds_run": metric("folds_run"),
                "fold_scores": [metric(f"fold_{k}") for k in range(int(metric("folds_run") or 0))],
            }
        )
    return rows


def csv_rows(leaderboard: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The leaderboard flattened for `results.csv`: one column per parameter, prefixed by its part."""
    flat = []
    for row in leaderboard:
        cells = {k: v for k, v in row.items() if k not in ("parameters", "optimizer_parameters", "regularization")}
        cells.update(row["parameters"])
        cells.update({f"{row['optimizer']}/{k}": v for k, v in (row.get("optimizer_parameters") or {}).items()})
        cells.update({f"regularization/{k}": v for k, v in (row.get("regularization") or {}).items()})
        flat.append(cells)
    return flat


def recommend_trial(leaderboard: Sequence[Mapping[str, Any]], objective: keras_tuner.Objective) -> dict[str, Any]:
    """The trial to recommend: the best score, or a tie inside the noise of the same folds.

    `recommendation.recommend` pairs the trials over the folds they share (each trial's
    `fold_<k>` scores); a trial raced out after fewer folds never ties. With a fixed
    validation split (folds=1) there is one score per trial and no tie can be judged.
    """
    labels = {f"#{row['rank']} {row['loss']}": row for row in leaderboard}
    scores = {label: row["fold_scores"] or [row[objective.name]] for label, row in labels.items()}
    pick = recommend(
        scores, direction=objective.direction, ranking={label: row[objective.name] for label, row in labels.items()}
    )
    row = labels[pick.chosen]
    return {
        **pick.to_dict(),
        "label": pick.chosen,
        "rank": row["rank"],
        "trial": row["trial"],
        "loss": row["loss"],
        "summary": pick.describe(),
    }


def leaderboard_table(
    leaderboard: Sequence[Mapping[str, Any]], objective_name: str, recommended: Mapping[str, Any]
) -> str:
    """The markdown table of `leaderboard_rows`, the recommended and tied trials marked.

    The optimizer and regularization columns appear when the search varied them.
    """
    tied = recommended["tie"] or []
    with_optimizer = any(row.get("optimizer") for row in leaderboard)
    with_regularization = any(row.get("regularization") for row in leaderboard)

    def decision(row):
        label = f"#{row['rank']} {row['loss']}"
        return "recommended" if label == recommended["label"] else ("tied" if label in tied else "")

    rows = []
    for row in leaderboard:
        cells = [
            row["rank"],
            row["loss"],
            _shown(row["parameters"]) or "-",
            _fmt(row["learning_rate"]) if row["learning_rate"] is not None else "-",
        ]
        if with_optimizer:
            cells.append(f"{row['optimizer']} ({_shown(row['optimizer_parameters'])})".replace(" ()", ""))
        if with_regularization:
            cells.append(_shown(row.get("regularization") or {}) or "-")
        cells += [
            f"{row[objective_name]:.4f}"
            + (f" ± {row['fold_std']:.4f} ({int(row['folds_run'])} folds)" if row["fold_std"] is not None else ""),
            decision(row),
        ]
        rows.append(cells)
    header = ["rank", "loss", "parameters", "learning_rate"]
    header += ["optimizer"] * with_optimizer + ["regularization"] * with_regularization
    return report.markdown_table([*header, objective_name, "decision"], rows)


def configuration_lines(configuration: Mapping[str, Any]) -> list[str]:
    """The recommended configuration in words, one line per setting (loss, optimizer, penalty, smoothing, dropout)."""
    loss, optimizer = configuration["loss"], configuration["optimizer"]
    regularization = configuration["regularization"]
    searched = "regularization" in configuration["space"]
    smoothing = configuration["label_smoothing"]
    if regularization and regularization["label_smoothing"] is not None:
        smoothing_text = f"{smoothing:.4g} (searched with the regularization)"
    elif smoothing is None:
        smoothing_text = "none (the loss takes no label smoothing)"
    elif "label_smoothing" in loss["parameters"]:
        smoothing_text = f"{smoothing:.4g} (a parameter of the loss)"
    else:
        smoothing_text = f"{smoothing:.4g} (the loss' default; not searched)"
    if regularization and regularization["dropout"] is not None:
        dropout_text = f"{regularization['dropout']:.4g} on every Dropout layer"
    elif searched:
        dropout_text = "not searched (the model has no Dropout layer)"
    else:
        dropout_text = "not searched (the model's own rates)"
    penalty_text = (
        f"L2 {regularization['l2']:.4g} on every kernel (the `weight_penalty` term of the loss)"
        if regularization
        else "none (not searched)"
    )
    return [
        f"- loss: {loss['name']}" + (f" ({_shown(loss['parameters'])})" if loss["parameters"] else ""),
        f"- optimizer: {optimizer['family']} ({_shown(optimizer['parameters'])})"
        + ("" if "optimizer" in configuration["space"] else ", Adam's learning rate searched with the loss"),
        f"- weight penalty: {penalty_text}",
        f"- label smoothing: {smoothing_text}",
        f"- dropout: {dropout_text}",
    ]


def _gains_lines(results: Mapping[str, Any]) -> list[str]:
    gains = results.get("part_gains")
    if gains is None:
        return []
    lines = ["## What each searched part adds", ""]
    if "skipped" in gains:
        return [*lines, gains["skipped"], ""]
    objective_name = results["settings"]["objective"]["name"]
    return [
        *lines,
        "The recommended configuration with its parts removed one at a time, each cross-validated on the folds and "
        "seeds of the search (the `loss only` row uses Adam at 3e-3, a loss-only search's start, when the optimizer "
        "was searched):",
        "",
        part_gains_table(gains, objective_name),
        "",
        f"Decision: {gains['recommended']['summary']}.",
        "",
        f"Rule: {gains['rule']}.",
        "",
    ]


def write_search_report(output: str, results: Mapping[str, Any], table: str, finished: int) -> None:
    """Writes the report folder: report.md, results.json/.csv, best_loss.json, configuration.json, trials.png."""
    settings, leaderboard, recommended = results["settings"], results["leaderboard"], results["recommended"]
    objective_name = settings["objective"]["name"]
    shown = ", ".join(f"{k}={v:.3f}" for k, v in results["best_test_scores"].items())
    with report.atomic_folder(output) as folder:
        report.write_json(folder / "results.json", results)
        report.write_json(folder / "best_loss.json", results["best_loss"])
        report.write_json(folder / "configuration.json", results["configuration"])
        report.write_csv(folder / "results.csv", csv_rows(leaderboard))
        plotted = report.plot_metrics(
            folder / "trials.png",
            {
                f"#{row['rank']} {row['loss']}": {objective_name: (row[objective_name], row["fold_std"] or 0.0)}
                for row in leaderboard
            },
            recommended=recommended["label"],
            tied=recommended["tie"] or (),
        )
        timing = results["timing"]
        legend = report.class_legend(results["dataset"]["class_names"])
        validation = (
            f"stratified {settings['folds']}-fold cross-validation on the training and validation splits "
            "(score: mean over folds ± spread)"
            if settings["folds"] > 1
            else "the validation split"
        )
        lines = [
            f"# Loss search on {results['dataset']['name']}",
            "",
            f"Tuner: {settings['tuner']}, searched: {', '.join(settings['space'])}; objective {objective_name} "
            f"({settings['objective']['direction']}) on {validation}, {finished} finished trials of at most "
            f"{settings['epochs']} epochs (early stopping). Model: {results['model']}.",
            "",
            f"Keras {report.describe_backend(results['backend'])}.",
            "",
            f"Wall time of the trials: {timing['seconds']:.0f} s; the final best was first reached at trial "
            f"{timing.get('best_found_at', '-')} of {timing['trials_run']}.",
            "",
            table,
            "",
            "## The advisor's picks (the first trials)",
            "",
            results["advice"]["profile_summary"],
            "",
            *([f"{legend[0].upper()}{legend[1:]}.", ""] if legend else []),
            results["advice"]["table"],
            "",
            f"Recommended: trial {recommended['label']}, config in `best_loss.json` "
            "(load it with `keras_lossopt.losses.get(json.load(open('best_loss.json')))`).",
            "",
            f"Decision: {recommended['summary']}.",
            "",
            f"Rule: {recommended['rule']}.",
            "",
            "## The recommended configuration",
            "",
            *configuration_lines(results["configuration"]),
            "",
            "Written to `configuration.json`; rebuild its compile with "
            "`model.compile(**keras_lossopt.tuning.compile_arguments(json.load(open('configuration.json')), model))`.",
            "",
            f"The recommended configuration on the test split: {shown}.",
            "",
            *_gains_lines(results),
        ]
        if plotted:
            lines += ["![objective per trial](trials.png)", ""]
        (folder / "report.md").write_text("\n".join(lines))
