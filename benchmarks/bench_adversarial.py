"""Adversarial training benchmark: robust accuracy and epoch cost of clean, fast and Madry training.

Data: the built-in 5,000 MNIST digits (4,000 train, 1,000 test, stratified and shuffled by
`--seed`). Model: a small CNN with logits. Training: clean, fast (FGSM from a random start,
step 1.25 * eps; Wong et al. 2020), Madry (PGD-k, random start, step 2.5 * eps / k) and
TRADES (beta 6, PGD-k on the KL term; Zhang et al. 2019),
each at every `--eps`, with eps ramped up over the first `--warmup-epochs` (default 2).
Evaluation: PGD-20 (L-inf, random start, step 2.5 * eps / 20) on the cross-entropy, plus
the worst case per sample of PGD-20 on the cross-entropy and on the margin loss. The cost
of an epoch is the median CPU time (and wall time) of epochs 2..n (epoch 1 includes
tracing), relative to clean training.

    python -m benchmarks.bench_adversarial                 # the documented run
    python -m benchmarks.bench_adversarial --epochs 1 --eval-samples 100 --no-write   # smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from benchmarks.report import markdown_table, write_section
from keras_lossopt.adversarial import (
    AdversarialModel,
    FastGradientMethod,
    ProjectedGradientDescent,
    evaluate_robustness,
)
from keras_lossopt.datasets import load_mnist

ANCHORS = (
    "Anchors from the issue: on this setup (8 epochs, eps 0.1) about 96% clean / 70% PGD-20 for clean "
    "training and about 88% PGD-20 for fast training at 2.2x the epoch cost. Published, full MNIST at "
    "eps 0.3: Madry PGD-40 98.5% / 89.6% at about 41x the cost; fast FGSM with random init 98.5% / 88.8% "
    "at about 2x; TRADES 99.5% / 95.6%."
)


def small_cnn(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="small_cnn",
    )


class EpochTimer(keras.callbacks.Callback):
    """Wall time and CPU time (all threads of this process) of each epoch.

    The machine is shared: other processes stretch wall time but hardly the CPU time this
    process spends, so the cost ratios use CPU time.
    """

    def on_train_begin(self, logs=None):
        self.wall, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])

    @property
    def epoch_cost(self) -> tuple[float, float]:
        """Median (CPU, wall) seconds of epochs 2..n (epoch 1 includes tracing)."""
        return statistics.median(self.cpu[1:] or self.cpu), statistics.median(self.wall[1:] or self.wall)


def train(method: str, eps: float, data, args) -> tuple[keras.Model, float]:
    inner = small_cnn(args.seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    warmup = round(args.warmup_epochs * -(-len(data.x_train) // args.batch_size))
    if method == "clean":
        model = inner
    elif method == "fast":
        attack = FastGradientMethod(eps, random_start=True, step_size=1.25 * eps)
        model = AdversarialModel(inner, attack, "fast", warmup_steps=warmup, seed=args.seed)
    else:
        attack = ProjectedGradientDescent(eps, steps=args.train_steps)
        model = AdversarialModel(inner, attack, method, beta=args.beta, warmup_steps=warmup, seed=args.seed)
    model.compile(keras.optimizers.Adam(args.lr), loss, metrics=["accuracy"], jit_compile=args.jit)
    timer = EpochTimer()
    model.fit(
        data.x_train,
        data.y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=0,
        callbacks=[timer],
    )
    return inner, timer.epoch_cost


def evaluate(model, eps: float, x, y, seed: int) -> dict[str, float]:
    ce = ProjectedGradientDescent(eps, steps=20, loss="cross_entropy", seed=seed)
    margin = ProjectedGradientDescent(eps, steps=20, loss="margin", seed=seed + 1)
    single = evaluate_robustness(model, (x, y), ce, batch_size=500)
    worst = evaluate_robustness(model, (x, y), [ce, margin], batch_size=500)
    return {
        "clean": single["clean_accuracy"],
        "pgd20": single["robust_accuracy"],
        "worst": worst["robust_accuracy"],
    }


def comparison(rows) -> str:
    """How the measured rows compare with the issue's anchors, in words."""
    found = {(r[0].split(" ")[0], r[1]): r for r in rows}
    lines = ["How this compares with the anchors:"]
    clean = found.get(("clean", 0.1))
    if clean:
        lines.append(
            f"* Clean training at eps 0.1: {100 * clean[2]:.1f}% clean (anchor about 96%) but "
            f"{100 * clean[3]:.1f}% under PGD-20, far below the anchor's 70%. Our PGD-20 keeps every "
            "iterate in the eps-ball and the [0, 1] range (tested) and is the standard attack; an "
            "undefended CNN keeping 70% at eps 0.1 would point to a weaker attack in that measurement, "
            "so we do not try to match it."
        )
    fast = found.get(("fast", 0.1))
    if fast:
        gap = 100 * fast[3] - 88.0
        lines.append(
            f"* Fast training at eps 0.1: {100 * fast[3]:.1f}% under PGD-20, {abs(gap):.1f} points "
            f"{'above' if gap >= 0 else 'below'} the anchor of about 88%, at {fast[5]:.2f}x the CPU time "
            f"of a clean epoch (limit 2.2x); clean accuracy {100 * fast[2]:.1f}%."
        )
    strong = [r for key, r in found.items() if key[1] == 0.3 and key[0] != "clean"]
    if strong:
        parts = ", ".join(f"{r[0].split(' (')[0]} {100 * r[3]:.1f}%" for r in strong)
        lines.append(
            f"* At eps 0.3 the robust accuracies ({parts}) stay well below the published full-MNIST "
            "figures (89.6% Madry, 88.8% fast, 95.6% TRADES): those train on 60,000 images for tens of "
            "epochs, this run on 4,000 images for 8 epochs. Fast training at eps 0.3 gains robustness "
            "slowly here rather than collapsing; `RobustnessEvaluation(collapse_fraction=...)` guards "
            "longer runs."
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--train-steps", type=int, default=7, help="PGD steps of Madry and TRADES training")
    methods = ["fast", "madry", "trades"]
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument("--beta", type=float, default=6.0, help="TRADES beta")
    parser.add_argument("--eval-samples", type=int, default=1000, help="test images attacked by PGD-20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--warmup-epochs", type=float, default=2.0, help="epochs over which adversarial training ramps eps up"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", action="store_true", help="compile the train steps with XLA")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args(argv)

    data = load_mnist(seed=args.seed, validation_split=0.0, test_split=0.2)
    x_test, y_test = data.x_test[: args.eval_samples], data.y_test[: args.eval_samples]
    print(f"train {len(data.x_train)}, test {len(data.x_test)} (attacked: {len(x_test)})")

    start = time.perf_counter()
    clean_model, clean_cost = train("clean", 0.0, data, args)
    rows = []
    for eps in args.eps:
        result = evaluate(clean_model, eps, x_test, y_test, args.seed)
        rows.append(["clean", eps, result["clean"], result["pgd20"], result["worst"], 1.0, 1.0, "-"])
        print(rows[-1], f"{time.perf_counter() - start:.0f}s", flush=True)
    for method in args.methods:
        for eps in args.eps:
            model, cost = train(method, eps, data, args)
            result = evaluate(model, eps, x_test, y_test, args.seed)
            # The limits: fast 2.2x; PGD-k 1.1 x (k + 1). TRADES has none (k + 2 passes).
            limit = {"fast": 2.2, "madry": 1.1 * (args.train_steps + 1)}.get(method)
            ratio, wall_ratio = cost[0] / clean_cost[0], cost[1] / clean_cost[1]
            name = {
                "fast": "fast (FGSM-RS, 1.25 eps)",
                "madry": f"Madry (PGD-{args.train_steps})",
                "trades": f"TRADES (beta {args.beta:g}, PGD-{args.train_steps} on KL)",
            }[method]
            verdict = "no limit set" if limit is None else f"{'yes' if ratio <= limit else 'NO'} (<= {limit:.1f}x)"
            rows.append([name, eps, result["clean"], result["pgd20"], result["worst"], ratio, wall_ratio, verdict])
            print(rows[-1], f"{time.perf_counter() - start:.0f}s", flush=True)
    total = time.perf_counter() - start

    def pct(v):
        return f"{100 * v:.1f}%"

    table = markdown_table(
        [
            "training",
            "eps",
            "clean acc.",
            "PGD-20 acc.",
            "worst of PGD-20 CE + margin",
            "epoch CPU time vs clean",
            "epoch wall time vs clean",
            "CPU-time ratio within the issue's limit",
        ],
        [[r[0], r[1], pct(r[2]), pct(r[3]), pct(r[4]), f"{r[5]:.2f}x", f"{r[6]:.2f}x", r[7]] for r in rows],
    )
    body = (
        f"{len(data.x_train)} training and {len(x_test)} attacked test images of the built-in MNIST set "
        f"(seed {args.seed}); small CNN of Wong et al. 2020 "
        f"(two strided 4x4 convolutions, 16 and 32 filters, dense 100, logits); Adam {args.lr:g}, "
        f"batch {args.batch_size}, {args.epochs} epochs for every run; XLA "
        f"{'on' if args.jit else 'off'}. PGD-20: L-inf, random start, step 2.5 * eps / 20, one restart. "
        f"The worst-case column also runs PGD-20 on the margin loss and counts a sample as robust only "
        f"when both attacks fail. Epoch cost: median CPU time (all threads of the process) and wall time "
        f"of epochs 2..{args.epochs} relative to clean training ({clean_cost[0]:.2f} s CPU, "
        f"{clean_cost[1]:.2f} s wall per clean epoch); the machine is shared by other jobs, which "
        f"stretches wall time, so the limits (the issue's: fast 2.2x, PGD-k 1.1 x (k + 1)) are checked "
        f"on CPU time. Adversarial runs ramp eps up linearly over the first {args.warmup_epochs:g} "
        f"epochs (`warmup_steps`). Whole benchmark: {total / 60:.1f} min.\n\n{table}\n\n{ANCHORS}\n\n"
        f"{comparison(rows)}\n"
    )
    print(body)
    if not args.no_write:
        command = "python -m benchmarks.bench_adversarial " + " ".join(argv or [])
        write_section("adversarial", "Adversarial training (MNIST, PGD-20)", body, command.strip())


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
