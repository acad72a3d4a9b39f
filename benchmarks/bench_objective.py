"""Loss-only search against the joint search (loss + optimizer + regularization) at equal trial budgets.

For each data set and seed, two keras-tuner BayesianOptimization searches run as the
command runs them (`keras-lossopt search --space loss` and `--space
loss,optimizer,regularization`): the advisor's picks first, stratified 3-fold
cross-validation on train+validation with racing and early stopping, the search's seed for
the oracle and the folds. A search's first k trials do not depend on its `max_trials`
(starting points, two random trials, then the Gaussian process fitted on the trials so far,
racing against the best so far), so one search of B trials gives the incumbent at every
budget k <= B; each budget's incumbent is retrained on the training split with the seed and
scored on the balanced test split (macro-F1). For the joint search's final incumbent, the
gain of each part is measured as the command measures it (`cli.part_gains`: the loss alone,
+ its optimizer, + its regularization, cross-validated on the search's folds).

    nice -n 10 python -m benchmarks.bench_objective --datasets breast-cancer-1:10 --seeds 0 --json /tmp/seed0.json
    python -m benchmarks.bench_objective --assemble /tmp/seed*.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from benchmarks.report import load_results, markdown_table, write_section
from keras_lossopt.cli.models import model_builder
from keras_lossopt.cli.part_gains import measure_part_gains
from keras_lossopt.cli.training import targets, train_configuration
from keras_lossopt.datasets import load_breast_cancer, load_dataset
from keras_lossopt.tuning import (
    LossSearchHyperModel,
    advice_starting_points,
    advise,
    configuration_from_hyperparameters,
    cross_validate_configuration,
    make_tuner,
)

STARTING_LEARNING_RATE = 3e-3
STARTING_PENALTY = 1e-4
SPACES = {"loss only": (False, False), "joint": (True, True)}

# name -> (loader, epochs, batch size)
SETTINGS = {
    "digits-imbalanced": (lambda: load_dataset("digits-imbalanced", seed=0), 20, 64),
    "breast-cancer-1:10": (lambda: load_breast_cancer(imbalance=0.17, seed=0), 20, 32),
}


def _search(dataset, make_model, space, *, seed, trials, epochs, batch_size, folds, log):
    """One search; returns its hypermodel, trials in start order (id, score, seconds) and the pool."""
    search_optimizer, search_regularization = SPACES[space]
    x_pool = np.concatenate([dataset.x_train, dataset.x_val])
    y_pool = np.concatenate([targets(dataset, "train"), targets(dataset, "val")])
    labels = np.concatenate([dataset.y_train, dataset.y_val])
    counts = np.bincount(labels.ravel(), minlength=dataset.num_classes)
    hypermodel = LossSearchHyperModel(
        make_model,
        task=dataset.task,
        class_counts=counts,
        search_optimizer=search_optimizer,
        search_regularization=search_regularization,
    )
    advice = advise(labels, dataset.task, x=x_pool, num_classes=dataset.num_classes, folds=folds)
    points = advice_starting_points(
        advice,
        hypermodel.candidates,
        learning_rate=STARTING_LEARNING_RATE,
        optimizer="adam" if search_optimizer else None,
        weight_penalty=STARTING_PENALTY if search_regularization else None,
    )
    with tempfile.TemporaryDirectory() as directory:
        keras.utils.set_random_seed(seed)
        tuner = make_tuner(
            hypermodel, "bayesian", max_trials=trials, directory=directory, project_name="search", seed=seed,
            folds=folds, starting_points=points,
        )  # fmt: skip
        tuner.on_trial_result = lambda trial, m: log(
            f"  {space} trial {trial.trial_id} {trial.hyperparameters.values.get('loss')}: "
            f"{m[tuner.oracle.objective.name]:.4f} ({int(m.get('folds_run', 1))} folds, {m['seconds']:.0f}s)"
        )
        started = time.perf_counter()
        tuner.search(x_pool, y_pool, epochs=epochs, batch_size=batch_size, verbose=0)
        wall = time.perf_counter() - started
        rows = []
        for trial_id in tuner.oracle.start_order:
            trial = tuner.oracle.trials[trial_id]
            seconds = trial.metrics.get_last_value("seconds") if trial.metrics.exists("seconds") else None
            rows.append({"trial": trial_id, "score": trial.score, "seconds": seconds, "hp": trial.hyperparameters})
    return hypermodel, rows, wall, (x_pool, y_pool)


def _incumbents(rows, budgets):
    """The best trial (by the search's score) among the first k, for each budget k."""
    chosen = {}
    for k in budgets:
        scored = [r for r in rows[:k] if r["score"] is not None]
        chosen[k] = max(scored, key=lambda r: r["score"]) if scored else None
    return chosen


def run_dataset(name, *, seeds, trials, budgets, folds, log, epochs=None):
    """Yields the data set's results after each seed (`seeds`: the seeds to run)."""
    loader, default_epochs, batch_size = SETTINGS[name]
    epochs = epochs or default_epochs
    dataset = loader()
    make_model, description = model_builder(dataset)
    budgets = sorted({b for b in budgets if b <= trials} | {trials})
    result = {"name": name, "description": description, "epochs": epochs, "batch_size": batch_size,
              "folds": folds, "trials": trials, "budgets": budgets, "seeds": []}  # fmt: skip
    for seed in seeds:
        per_seed = {"seed": seed}
        for space in SPACES:
            log(f"{name} seed {seed}: {space} search, {trials} trials")
            hypermodel, rows, wall, (x_pool, y_pool) = _search(
                dataset, make_model, space, seed=seed, trials=trials, epochs=epochs, batch_size=batch_size,
                folds=folds, log=log,
            )  # fmt: skip
            tested = {}
            at_budget = {}
            for k, row in _incumbents(rows, budgets).items():
                if row["trial"] not in tested:
                    configuration = configuration_from_hyperparameters(hypermodel, row["hp"])
                    scores, _ = train_configuration(
                        dataset, make_model, configuration, seed=seed, epochs=epochs, batch_size=batch_size
                    )
                    tested[row["trial"]] = {"configuration": configuration, "test": scores["macro_f1"]}
                at_budget[str(k)] = {
                    "trial": row["trial"],
                    "cv_score": float(row["score"]),
                    "test_macro_f1": tested[row["trial"]]["test"],
                    "seconds": float(sum(r["seconds"] or 0.0 for r in rows[:k])),
                    "configuration": tested[row["trial"]]["configuration"],
                }
                log(f"{name} seed {seed} {space} at {k} trials: test macro-F1 {tested[row['trial']]['test']:.4f}")
            per_seed[space] = {"wall_seconds": wall, "at_budget": at_budget}
            if space == "joint":
                final = at_budget[str(budgets[-1])]["configuration"]

                def score(step, x_pool=x_pool, y_pool=y_pool, seed=seed):
                    return cross_validate_configuration(
                        make_model, step, x_pool, y_pool, num_classes=dataset.num_classes, folds=folds,
                        epochs=epochs, batch_size=batch_size, seed=seed,
                    ).scores  # fmt: skip

                started = time.perf_counter()
                per_seed["gains"] = measure_part_gains(final, score)
                per_seed["gains_seconds"] = time.perf_counter() - started
                shown = [(g["part"], g["gain"], g["verdict"]) for g in per_seed["gains"]["gains"]]
                log(f"{name} seed {seed} gains: {shown}")
        result["seeds"].append(per_seed)
        yield result


def _describe(configuration):
    loss = configuration["loss"]
    optimizer = configuration["optimizer"]
    parts = [loss["name"] + (" (" + ", ".join(f"{k}={_fmt(v)}" for k, v in loss["parameters"].items()) + ")"
                             if loss["parameters"] else "")]  # fmt: skip
    parts.append(optimizer["family"] + " " + ", ".join(f"{k}={_fmt(v)}" for k, v in optimizer["parameters"].items()))
    regularization = configuration.get("regularization")
    if regularization:
        parts.append(", ".join(f"{k}={_fmt(v)}" for k, v in regularization.items() if v is not None))
    return "; ".join(parts)


def _fmt(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _merge(results):
    """One entry per data set: the seeds of runs made in separate processes joined, in seed order."""
    merged = {}
    for r in results:
        if r["name"] in merged:
            merged[r["name"]]["seeds"] += r["seeds"]
        else:
            merged[r["name"]] = {**r, "seeds": list(r["seeds"])}
    for r in merged.values():
        r["seeds"].sort(key=lambda s: s["seed"])
    return list(merged.values())


def _paired(seeds, k, key):
    """Joint minus loss-only per seed at budget k: mean, standard error, verdict (one-standard-error rule)."""
    paired = [s["joint"]["at_budget"][str(k)][key] - s["loss only"]["at_budget"][str(k)][key] for s in seeds]
    error = float(np.std(paired, ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else float("nan")
    mean = float(np.mean(paired))
    verdict = "tie" if not abs(mean) > error else ("joint ahead" if mean > 0 else "loss-only ahead")
    return mean, error, verdict


def assemble(results, command, note=""):
    results = _merge(results)
    rows, notes, summaries = [], [], []
    for r in results:
        seeds = r["seeds"]
        beaten_at = None
        for k in r["budgets"]:
            cells = [r["name"], k]
            for space in SPACES:
                test = [s[space]["at_budget"][str(k)]["test_macro_f1"] for s in seeds]
                cv = [s[space]["at_budget"][str(k)]["cv_score"] for s in seeds]
                minutes = [s[space]["at_budget"][str(k)]["seconds"] / 60 for s in seeds]
                cells += [f"{np.mean(test):.3f} ± {np.std(test):.3f}", f"{np.mean(cv):.3f}", f"{np.mean(minutes):.1f}"]
            mean, error, verdict = _paired(seeds, k, "test_macro_f1")
            cells.append(f"{mean:+.3f} (SE {error:.3f}): {verdict}")
            if verdict == "joint ahead" and beaten_at is None:
                beaten_at = k
            rows.append(cells)
        walls = {space: np.mean([s[space]["wall_seconds"] for s in seeds]) / 60 for space in SPACES}
        summaries.append(
            f"- `{r['name']}` ({r['description']}, {r['epochs']} epochs, batch {r['batch_size']}, {len(seeds)} seeds "
            f"{[s['seed'] for s in seeds]}): "
            + (
                f"the joint search beats the loss-only search on the test split from {beaten_at} trials on"
                if beaten_at is not None
                else f"the joint search does not beat the loss-only search up to {r['budgets'][-1]} trials "
                "(paired over seeds, within one standard error or behind)"
            )
            + f"; wall time of a whole search {walls['loss only']:.1f} min (loss only) and {walls['joint']:.1f} min "
            "(joint), under load."
        )
        for s in seeds:
            final = s["joint"]["at_budget"][str(r["budgets"][-1])]
            loss_only = s["loss only"]["at_budget"][str(r["budgets"][-1])]
            gains = s["gains"]
            steps = ", ".join(f"{st['label']} {st['mean']:.3f} ± {st['std']:.3f}" for st in gains["steps"])
            verdicts = "; ".join(
                f"{g['part']} {g['gain']:+.3f} (SE {g['standard_error']:.3f}, {g['verdict']})" for g in gains["gains"]
            )
            notes.append(
                f"- `{r['name']}` seed {s['seed']}: loss-only winner {_describe(loss_only['configuration'])} "
                f"(test {loss_only['test_macro_f1']:.3f}); joint winner {_describe(final['configuration'])} "
                f"(test {final['test_macro_f1']:.3f}). Its parts, {r['folds']}-fold CV on the search's folds: "
                f"{steps}; {verdicts}; the one-standard-error rule keeps: {gains['recommended']['label']} "
                f"(the ladder took {s['gains_seconds'] / 60:.1f} min)."
            )
    header = ["data set", "trials", "loss only: test macro-F1", "CV", "min", "joint: test macro-F1", "CV", "min",
              "joint minus loss only (test), paired over seeds"]  # fmt: skip
    first = results[0]
    body = "\n".join(
        [
            "Test macro-F1 on the balanced test split, mean ± sd over seeds (the seed of the oracle, the folds and "
            "the weights; the data split is fixed), of each search's incumbent after k trials, retrained on the "
            "training split with the seed. Both searches run as `keras-lossopt search --space loss` and "
            "`--space loss,optimizer,regularization` run them: BayesianOptimization from the advisor's picks (the "
            f"joint search's starts add Adam at 3e-3 and an L2 penalty of {STARTING_PENALTY:g}), "
            f"{first['folds']}-fold cross-validation on train+validation with racing and early stopping, the "
            "default MLP. `CV`: the incumbent's cross-validated score (what the search ranks by); `min`: the "
            "search's trial minutes up to k. The last column pairs the two searches seed by seed; a difference "
            "within one standard error is a tie. Wall times were measured under heavy load (the shared 2-core "
            "machine ran other sessions' tests, load average 14-24; these runs at nice 10, one process per seed): "
            "compare the two searches with each other, not with other sections.",
            "",
            markdown_table(header, rows),
            "",
            *summaries,
            "",
            "What each part of the joint winner contributed (`cli.part_gains`, as `keras-lossopt search` reports "
            "it: the winner with its regularization, then its optimizer removed, each cross-validated on the "
            "search's folds):",
            "",
            *notes,
            *(["", note] if note else []),
        ]
    )
    write_section("bench_objective", "Joint search of the training objective against the loss-only search", body,
                  command)  # fmt: skip
    print(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SETTINGS))
    parser.add_argument(
        "--seeds", default="0,1,2", help="the seeds to run (one process per seed runs them side by side)"
    )
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budgets", default="4,8", help="smaller budgets read off the same searches")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="override every data set's epochs (a quick check)")
    parser.add_argument("--json", help="write the results here (after every seed)")
    parser.add_argument("--assemble", nargs="+", help="JSON files to write into docs/benchmarks.md")
    parser.add_argument("--command", help="the command line to record with --assemble")
    parser.add_argument("--note", default="", help="a paragraph appended to the section with --assemble")
    args = parser.parse_args()
    if args.assemble:
        assemble(load_results(args.assemble), args.command, args.note)
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    done = []
    for name in args.datasets.split(","):
        for partial in run_dataset(
            name,
            seeds=[int(seed) for seed in args.seeds.split(",")],
            trials=args.trials,
            budgets=[int(b) for b in args.budgets.split(",") if b],
            folds=args.folds,
            log=lambda text: print(text, flush=True),
            epochs=args.epochs,
        ):
            if args.json:
                with open(args.json, "w") as f:
                    json.dump([*done, partial], f, indent=1, default=str)
        done.append(partial)
    if not args.json:
        assemble(done, None)


if __name__ == "__main__":
    main()
