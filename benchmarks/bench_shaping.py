"""Adaptive task weighting on a two-task digits model: fixed weights, uncertainty, DWA, GradNorm.

One network reads scikit-learn's 8x8 digits and has two heads: the digit (10-way softmax,
cross-entropy) and the image's ink (mean pixel intensity in [0, 1]) scaled 100x (mean
squared error). Unweighted, the regression loss is thousands of times larger than the
cross-entropy and its gradients dominate the shared layers. Each method trains the same
model for the same epochs over 3 seeds; the table gives both heads' test metrics and the
training-time overhead of each method relative to fixed weights (CPU time of the process
and wall time, median epoch after the first).

Run: `nice -n 10 python -m benchmarks.bench_shaping` (about 10 minutes on 2 busy cores);
`--quick` for a smoke run that does not write docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from benchmarks.report import markdown_table, write_section
from keras_lossopt.datasets import load_dataset
from keras_lossopt.shaping import DynamicWeightAveraging, GradNorm, UncertaintyWeighting, task_losses, track_loss_terms

METHODS = ("fixed", "uncertainty", "dwa", "gradnorm")
INK_SCALE = 100.0


class EpochTimer(keras.callbacks.Callback):
    """Wall time and CPU time (all threads of this process) of each epoch."""

    def on_train_begin(self, logs=None):
        self.wall, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def two_task_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(64, activation="relu", name="trunk")(inputs)
    shared = keras.layers.Dense(32, activation="relu", name="shared")(hidden)
    digit = keras.layers.Dense(10, name="digit")(shared)
    ink = keras.layers.Dense(1, name="ink")(shared)
    return keras.Model(inputs, {"digit": digit, "ink": ink})


def targets(data_x, data_y):
    return {"digit": data_y, "ink": (INK_SCALE * data_x.mean(axis=1, keepdims=True)).astype("float32")}


def callback_for(method: str):
    return {
        "fixed": None,
        "uncertainty": UncertaintyWeighting(),
        "dwa": DynamicWeightAveraging(temperature=2.0),
        "gradnorm": GradNorm(alpha=0.5, learning_rate=0.025, shared_layer="shared"),
    }[method]


def run(method: str, seed: int, data, epochs: int, batch_size: int):
    model = two_task_model(seed)
    callback = callback_for(method)
    loss = task_losses({"digit": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "ink": "mse"})
    model.compile(keras.optimizers.Adam(3e-3), loss=loss)
    # Every method logs the term losses (the callbacks attach them); so does the fixed baseline.
    track_loss_terms(model)
    timer = EpochTimer()
    callbacks = [timer] + ([callback] if callback is not None else [])
    gc.collect()
    history = model.fit(
        data.x_train,
        targets(data.x_train, data.y_train),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=callbacks,
    ).history
    predictions = model.predict(data.x_test, verbose=0, batch_size=512)
    truth = targets(data.x_test, data.y_test)
    accuracy = float(np.mean(np.argmax(predictions["digit"], axis=-1) == data.y_test))
    rmse = float(np.sqrt(np.mean((predictions["ink"] - truth["ink"]) ** 2)))
    result = {
        "accuracy": accuracy,
        "rmse": rmse,
        "cpu": statistics.median(timer.cpu[1:]),
        "wall": statistics.median(timer.wall[1:]),
        "weight_digit": history.get("weight_digit", [1.0])[-1],
        "weight_ink": history.get("weight_ink", [1.0])[-1],
    }
    return result, model, callback


def step_costs(trained: dict, data, batch_size: int, rounds: int) -> dict[str, float]:
    """Median CPU time of one pass of `train_on_batch` over the training batches, per method.

    The methods take turns round after round, each in every position of the order, so a
    change of load on the shared machine reaches all of them alike (separate fits of ~30 s
    each differ by about 10% on their own).
    GradNorm's step wrapper is installed as in `fit` (`on_train_begin`). Epoch-level work
    (DWA's weights, the weight logs) is a few variable reads per epoch and is left out.
    """
    y = targets(data.x_train, data.y_train)
    batches = [
        (data.x_train[i : i + batch_size], {k: v[i : i + batch_size] for k, v in y.items()})
        for i in range(0, len(data.x_train) - batch_size + 1, batch_size)
    ]
    for model, callback in trained.values():
        if isinstance(callback, GradNorm):
            callback.on_train_begin()
        model.train_on_batch(*batches[0])  # trace outside the timing
    costs: dict[str, list[float]] = {method: [] for method in trained}
    order = list(trained)
    gc.collect()
    gc.disable()  # a collection would land on whichever method runs at that moment
    try:
        for round_index in range(rounds):
            shift = round_index % len(order)  # each method takes each position in turn
            for method in order[shift:] + order[:shift]:
                model = trained[method][0]
                start = time.process_time()
                for x, target in batches:
                    model.train_on_batch(x, target)
                costs[method].append(time.process_time() - start)
    finally:
        gc.enable()
    for _model, callback in trained.values():
        if isinstance(callback, GradNorm):
            callback.on_train_end()
    return {method: statistics.median(values) for method, values in costs.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=25, help="interleaved timing rounds per seed")
    parser.add_argument("--quick", action="store_true", help="3 epochs, 1 seed, no docs update")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 3
    results: dict[str, list[dict[str, float]]] = {method: [] for method in METHODS}
    start = time.perf_counter()
    for seed in range(args.seeds):
        data = load_dataset("digits", seed=seed)
        # Interleave the methods within a seed so that machine load affects them alike.
        trained = {}
        for method in METHODS:
            outcome, model, callback = run(method, seed, data, args.epochs, args.batch_size)
            results[method].append(outcome)
            trained[method] = (model, callback)
        for method, cost in step_costs(trained, data, args.batch_size, args.rounds).items():
            results[method][-1]["step_cpu"] = cost
        for method in METHODS:
            print(method, seed, {k: round(v, 4) for k, v in results[method][-1].items()}, flush=True)
        keras.backend.clear_session(free_memory=False)
    minutes = (time.perf_counter() - start) / 60
    ink_std = float(np.std(targets(data.x_test, data.y_test)["ink"]))
    fixed_cpu = [r["cpu"] for r in results["fixed"]]
    noise = float(np.std(fixed_cpu) / np.mean(fixed_cpu)) if len(fixed_cpu) > 1 else float("nan")
    steps_per_pass = len(data.x_train) // args.batch_size

    def mean_sd(values):
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    base_step = [r["step_cpu"] for r in results["fixed"]]
    base_wall = [r["wall"] for r in results["fixed"]]
    limits = {"fixed": None, "uncertainty": 0.05, "dwa": 0.05, "gradnorm": 0.50}
    rows = []
    for method in METHODS:
        runs = results[method]
        step_ratio = np.mean([r["step_cpu"] / b for r, b in zip(runs, base_step)])
        wall_ratio = np.mean([r["wall"] / b for r, b in zip(runs, base_wall)])
        limit = limits[method]
        verdict = "-" if limit is None else ("yes" if step_ratio - 1 < limit else "no") + f" (< {limit:.0%})"
        rows.append(
            [
                method,
                mean_sd([100 * r["accuracy"] for r in runs]),
                mean_sd([r["rmse"] for r in runs]),
                f"{np.mean([r['weight_digit'] for r in runs]):.3g} / {np.mean([r['weight_ink'] for r in runs]):.3g}",
                f"{100 * (step_ratio - 1):+.1f}%",
                f"{100 * (wall_ratio - 1):+.1f}%",
                verdict,
            ]
        )
    table = markdown_table(
        [
            "weighting",
            "digit test accuracy (%)",
            "ink test RMSE (x100 scale)",
            "final weights digit / ink",
            "training-step CPU time vs fixed (interleaved)",
            "epoch wall time vs fixed (separate fits)",
            "overhead within the issue's limit",
        ],
        rows,
    )
    print(table)
    if args.quick:
        return
    body = f"""
scikit-learn digits (1,797 images, stratified 64/16/20% split per seed), inputs in [0, 1]; one network,
Dense(64, relu) -> Dense(32, relu) ("shared", the last shared layer for GradNorm) -> two heads: digit
(10 logits, sparse cross-entropy) and ink (the image's mean intensity x {INK_SCALE:g}, mean squared error). Every
method compiles `task_losses({{"digit": ..., "ink": "mse"}})` and trains with Adam 3e-3, batch {args.batch_size},
{args.epochs} epochs; seeds 0..{args.seeds - 1} (split and initialization); mean ± standard deviation over seeds.
Fixed: both weights 1, with the per-term logs like the other methods (`track_loss_terms`).
Uncertainty: `UncertaintyWeighting()` (learned log-variances). DWA:
`DynamicWeightAveraging(temperature=2)`. GradNorm: `GradNorm(alpha=0.5, learning_rate=0.025,
shared_layer="shared")`. Overhead: after the four fits of a seed, the trained models take turns,
{args.rounds} rounds, each one pass of `train_on_batch` over the {steps_per_pass} training batches (the compiled step
with the method's loss formula, GradNorm's wrapped step included); the column gives the median CPU time of a
pass (all threads of the process) as a ratio to the fixed model's, averaged over seeds, and the limits are
checked on it. The wall-time column compares the median epoch (after the first) of the separate fits; other
jobs on the shared machine stretch single fits, so it is not a cost measure.
Whole benchmark: {minutes:.1f} min.

{table}

Reading the table: the ink target has a test standard deviation of {ink_std:.2f} (x100 scale), so every
method fits it closely; its squared error starts thousands of times larger than the cross-entropy and
dominates the shared layers early on, which costs the digit head accuracy under fixed equal weights.
Each method's final weights show how it reacts: GradNorm equalizes the two heads' gradient norms on the
shared layer and gives the ink loss a small weight; uncertainty weighting sets each weight to about the
inverse of its loss, and the ink error becomes small late in training, so it does not down-weight ink;
DWA reacts to the ratio of successive epoch losses, which stays near 1 for both heads, so its weights
stay near 1. Timing separate fits is not precise enough for a 5% limit on this shared machine: the median
epoch CPU time of the fixed fits alone varies by {100 * noise:.1f}% between seeds; hence the interleaved
measurement.
"""
    write_section(
        "shaping", "Adaptive task weighting (two-task digits)", body, "nice -n 10 python -m benchmarks.bench_shaping"
    )


if __name__ == "__main__":
    main()
