"""Does searching over the loss beat cross-entropy and the best fixed alternative?

On `digits-imbalanced` and `mnist-imbalanced` (classes 5-9 cut to 1:20 in train and
validation; balanced test split) this benchmark reports test macro-F1, mean and standard
deviation over seeds, for:

1. plain cross-entropy;
2. every fixed alternative of `keras-lossopt compare` (focal, Poly-1, class-balanced focal)
   with its default parameters; the "best fixed alternative" is the one with the best
   mean *validation* macro-F1 (choosing by test scores would flatter it);
3. the loss (and learning rate) found by a Bayesian keras-tuner search ranked by
   validation macro-F1, retrained from scratch with each seed.

The fixed losses use one fixed learning rate; the search tunes it as well, which is part
of what a search buys. Models are the command's defaults for the data (an MLP for the
8x8 digits vectors, a small CNN for MNIST images).

    python -m benchmarks.bench_search                      # full run (about 20 min, 2 CPU cores)
    python -m benchmarks.bench_search --mnist-trials 10    # fewer search trials on MNIST
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from benchmarks.report import markdown_table, write_section
from keras_lossopt import losses
from keras_lossopt.cli.compare import targets, train_once
from keras_lossopt.cli.models import model_builder
from keras_lossopt.datasets import load_dataset
from keras_lossopt.tuning import LossSearchHyperModel, build_loss, make_tuner, resolve_candidates

FIXED_LEARNING_RATE = 3e-3


def validation_f1(dataset, make_model, loss, *, seed, epochs, batch_size, learning_rate):
    """Test macro-F1 of one run, and its last-epoch validation macro-F1."""
    scores, curves = train_once(
        dataset, make_model, loss, seed=seed, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate
    )
    return scores["macro_f1"], float(curves["val_macro_f1"][-1])


def evaluate(dataset, make_model, loss_config, *, seeds, epochs, batch_size, learning_rate):
    test, val = [], []
    for seed in range(seeds):
        t, v = validation_f1(
            dataset,
            make_model,
            losses.get(loss_config),
            seed=seed,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
        )
        test.append(t)
        val.append(v)
    return np.array(test), np.array(val)


def run_dataset(name, *, trials, seeds, epochs, batch_size, log):
    dataset = load_dataset(name, seed=0)
    make_model, description = model_builder(dataset)
    counts = dataset.class_counts("train")
    rows = {}
    for candidate in resolve_candidates("multiclass"):
        loss = build_loss(candidate, class_counts=counts if candidate.needs_class_counts else None)
        started = time.perf_counter()
        test, val = evaluate(
            dataset,
            make_model,
            losses.serialize(loss),
            seeds=seeds,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=FIXED_LEARNING_RATE,
        )
        rows[candidate.name] = {"test": test, "val": val, "lr": FIXED_LEARNING_RATE, "config": "defaults"}
        seconds = time.perf_counter() - started
        log(f"{name} {candidate.name}: test macro-F1 {test.mean():.3f} ± {test.std():.3f} ({seconds:.0f}s)")

    started = time.perf_counter()
    hypermodel = LossSearchHyperModel(make_model, task="multiclass", class_counts=counts)
    with tempfile.TemporaryDirectory() as directory:
        keras.utils.set_random_seed(0)
        tuner = make_tuner(hypermodel, "bayesian", max_trials=trials, directory=directory, project_name=name, seed=0)
        tuner.search(
            dataset.x_train,
            targets(dataset, "train"),
            validation_data=(dataset.x_val, targets(dataset, "val")),
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
        )
        best = tuner.oracle.get_best_trials(1)[0]
        finished = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    best_hp = best.hyperparameters
    best_loss = hypermodel.loss_from_hyperparameters(best_hp)
    learning_rate = float(best_hp.get("learning_rate"))
    search_seconds = time.perf_counter() - started
    test, val = evaluate(
        dataset,
        make_model,
        losses.serialize(best_loss),
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    params = {k.split("/", 1)[1]: v for k, v in best_hp.values.items() if "/" in k}
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    rows["search"] = {
        "test": test,
        "val": val,
        "lr": learning_rate,
        "config": f"{best_hp.get('loss')}" + (f" ({shown})" if shown else ""),
        "trials": finished,
        "search_seconds": search_seconds,
        "best_val_score": float(best.score),
    }
    log(
        f"{name} search ({finished} trials, {search_seconds:.0f}s): {rows['search']['config']}, "
        f"lr={learning_rate:.2g}; test macro-F1 {test.mean():.3f} ± {test.std():.3f}"
    )
    return dataset, description, rows


def table_rows(name, rows):
    alternatives = [n for n in rows if n not in ("crossentropy", "search")]
    best_fixed = max(alternatives, key=lambda n: rows[n]["val"].mean())
    out = []

    def line(label, row):
        return [
            name,
            label,
            row["config"],
            f"{row['lr']:.2g}",
            f"{row['test'].mean():.3f} ± {row['test'].std():.3f}",
            f"{row['val'].mean():.3f}",
        ]

    out.append(line("cross-entropy", rows["crossentropy"]))
    for alternative in alternatives:
        label = f"**best fixed: {alternative}**" if alternative == best_fixed else f"fixed: {alternative}"
        out.append(line(label, rows[alternative]))
    search = rows["search"]
    cut = "" if search["trials"] >= 20 else " (cut from the 20 asked by the issue, for time)"
    out.append(line(f"**Bayesian search, {search['trials']} trials**{cut}", search))
    return out, best_fixed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--digits-trials", type=int, default=20)
    parser.add_argument("--mnist-trials", type=int, default=20)
    parser.add_argument("--digits-epochs", type=int, default=30)
    parser.add_argument("--mnist-epochs", type=int, default=10)
    parser.add_argument("--datasets", default="digits-imbalanced,mnist-imbalanced")
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    all_rows, notes = [], []
    for name in args.datasets.split(","):
        mnist = name.startswith("mnist")
        trials = args.mnist_trials if mnist else args.digits_trials
        epochs = args.mnist_epochs if mnist else args.digits_epochs
        dataset, description, rows = run_dataset(
            name, trials=trials, seeds=args.seeds, epochs=epochs, batch_size=64, log=print
        )
        table, best_fixed = table_rows(name, rows)
        all_rows += table
        counts = dataset.class_counts("train").tolist()
        search = rows["search"]
        gain_ce = search["test"].mean() - rows["crossentropy"]["test"].mean()
        gain_fixed = search["test"].mean() - rows[best_fixed]["test"].mean()
        best_on_test = max((n for n in rows if n != "search"), key=lambda n: rows[n]["test"].mean())
        hindsight = search["test"].mean() - rows[best_on_test]["test"].mean()
        notes.append(
            f"- `{name}`: {description}, {epochs} epochs, batch 64; training class counts {counts}. "
            f"Search: {search['trials']} trials in {search['search_seconds'] / 60:.1f} min, best validation "
            f"macro-F1 {search['best_val_score']:.3f}. Test macro-F1 of the found loss minus cross-entropy: "
            f"{gain_ce:+.3f}; minus the best fixed alternative ({best_fixed}, chosen by validation): "
            f"{gain_fixed:+.3f}. In hindsight the best fixed loss on test is {best_on_test} "
            f"({rows[best_on_test]['test'].mean():.3f}); the search is {hindsight:+.3f} from it"
            + (", i.e. validation did not point to it." if hindsight < 0 and best_on_test != best_fixed else ".")
        )
        print(markdown_table(["dataset", "loss", "parameters", "lr", "test macro-F1", "val macro-F1"], table))
    header = ["dataset", "loss", "parameters", "learning rate", f"test macro-F1 (mean ± std, {args.seeds} seeds)",
              "val macro-F1"]  # fmt: skip
    body = "\n".join(
        [
            "Test macro-F1 on the balanced test split; classes 5-9 are cut to 1:20 in training and validation.",
            f"Fixed losses use their default parameters and Adam({FIXED_LEARNING_RATE:g}); the search (keras-tuner "
            "`BayesianOptimization` over `DEFAULT_CANDIDATES['multiclass']`, their parameters and the learning "
            "rate, ranked by validation macro-F1) is run once with seed 0, and its best configuration is then "
            "retrained with each seed. The best fixed alternative is chosen by validation macro-F1, not test.",
            "",
            markdown_table(header, all_rows),
            "",
            *notes,
            "",
            "The validation splits are small and imbalanced too (digits: 1 sample per minority class), so "
            "validation macro-F1 is a noisy guide for both the search and the choice of the best fixed loss; "
            f"total time {(time.perf_counter() - started) / 60:.1f} min.",
        ]
    )
    if not args.no_write:
        command = (
            f"python -m benchmarks.bench_search --seeds {args.seeds} --digits-trials {args.digits_trials} "
            f"--mnist-trials {args.mnist_trials} --digits-epochs {args.digits_epochs} "
            f"--mnist-epochs {args.mnist_epochs}"
        )
        write_section("bench_search", "Loss search versus fixed losses (macro-F1)", body, command)
    print(body)


if __name__ == "__main__":
    main()
