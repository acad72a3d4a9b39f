"""Lovasz-softmax against segmentation_models_pytorch's, side by side on the same CPU and batch.

Times one forward+backward step (the loss and its gradient with respect to the logits) of our
`LovaszSoftmaxLoss` and `DiceLoss` in three TensorFlow modes (eager, `tf.function`,
`tf.function(jit_compile=True)`) and of smp's `LovaszLoss` and `DiceLoss` (multiclass, from
logits, batch counts: the same losses) on the same arrays. smp runs
in its own Python environment (`--peer-python`; torch and segmentation-models-pytorch are
never a dependency of keras-lossopt) as a worker process started once and driven round by
round (`benchmarks/lovasz_peer_worker.py`), so each round times ours and then the peer back to
back under the same load. Both libraries get the same number of threads (`--threads`).

Reported per batch shape: median milliseconds per step over the rounds (wall and CPU time of
the process), each Lovasz's ratio to its own library's Dice in the same mode, and ours over
the peer's (medians of the per-round ratios).

    python -m benchmarks.bench_lovasz_peer --peer-python /tmp/smp/bin/python --threads 1 --json /tmp/t1.json
    python -m benchmarks.bench_lovasz_peer --peer-python /tmp/smp/bin/python --threads 2 --json /tmp/t2.json
    python -m benchmarks.bench_lovasz_peer --assemble /tmp/t1.json /tmp/t2.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.report import load_results, markdown_table, write_section

SHAPES = ((16, 128, 128, 5), (8, 48, 48, 4))
MODES = ("eager", "tf.function", "jit_compile")
WORKER = pathlib.Path(__file__).with_name("lovasz_peer_worker.py")


def make_batch(shape, seed=0):
    """Sparse labels (80% background) and N(0, 2) logits, as `bench_losses`."""
    rng = np.random.default_rng(seed)
    batch, height, width, classes = shape
    labels = rng.integers(1, classes, size=(batch, height, width))
    labels[rng.uniform(size=labels.shape) < 0.8] = 0
    return labels.astype("int32"), rng.normal(scale=2.0, size=shape).astype("float32")


def our_steps():
    """name -> {mode -> step(labels, logits) returning (loss, gradient)}."""
    import tensorflow as tf

    from keras_lossopt import losses

    def step_of(loss):
        def step(labels, logits):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = loss(labels, logits)
            return value, tape.gradient(value, logits)

        return step

    steps = {}
    ours = (
        ("lovasz", losses.LovaszSoftmaxLoss(from_logits=True)),
        ("dice", losses.DiceLoss(from_logits=True, per_image=False)),
    )
    for name, loss in ours:
        step = step_of(loss)
        steps[name] = {
            "eager": step,
            "tf.function": tf.function(step),
            "jit_compile": tf.function(step, jit_compile=True),
        }
    return steps


def _time(step, arguments, number):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(number):
        _, gradient = step(*arguments)
        gradient.numpy()
    return {
        "wall_ms": 1e3 * (time.perf_counter() - wall) / number,
        "cpu_ms": 1e3 * (time.process_time() - cpu) / number,
    }


def run_shape(shape, *, peer_python, threads, rounds, number):
    import tensorflow as tf

    labels, logits = make_batch(shape)
    arguments = (tf.constant(labels), tf.constant(logits))
    steps = our_steps()
    values = {name: float(modes["eager"](*arguments)[0]) for name, modes in steps.items()}
    for modes in steps.values():
        for step in modes.values():
            step(*arguments)  # trace and compile outside the timed rounds
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "batch.npz")
        np.savez(path, labels=labels, logits=logits)
        worker = subprocess.Popen(
            [peer_python, str(WORKER), path, str(threads), str(number)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = json.loads(worker.stdout.readline())
        timings = []
        for _ in range(rounds):
            ours = {
                f"{name} {mode}": _time(step, arguments, number)
                for name, m in steps.items()
                for mode, step in m.items()
            }
            worker.stdin.write("round\n")
            worker.stdin.flush()
            peer = json.loads(worker.stdout.readline())
            timings.append({**ours, "smp lovasz": peer["lovasz"], "smp dice": peer["dice"]})
        worker.stdin.write("quit\n")
        worker.stdin.flush()
        worker.wait(timeout=60)
    return {
        "shape": list(shape),
        "threads": threads,
        "timings": timings,
        "values": values,
        "peer_values": ready["values"],
        "versions": {"torch": ready["torch"], "smp": ready["smp"]},
    }


def summarize(result, clock):
    """Rows: (implementation, ms per step, ratio to its Dice, ratio to smp's Lovasz)."""
    rounds = result["timings"]

    def series(key):
        return np.array([r[key][clock] for r in rounds])

    peer = series("smp lovasz")
    rows = []
    for mode in MODES:
        ours, dice = series(f"lovasz {mode}"), series(f"dice {mode}")
        rows.append((f"ours, {mode}", np.median(ours), np.median(ours / dice), np.median(ours / peer)))
    rows.append(("smp (torch eager)", np.median(peer), np.median(peer / series("smp dice")), 1.0))
    return rows


READING = """Reading. With one thread each (like for like), ours costs 0.94x smp's step in `tf.function` on the
large batch and 0.82x on the small one: the target ("at most as slow as smp") is met in `tf.function`, the path
Keras' `fit` takes by default, at both sizes. Eagerly: 0.96x on the large batch (met) and 1.16x on the small one;
under `jit_compile=True` 2.2x and 1.9x. The previous table (same command, the code before 2026-12-07's second
session) read 1.08x / 0.88x in `tf.function`, 1.27x / 2.40x eager and 2.44x / 1.82x with `jit_compile`. What
changed, each measured on its own (one thread, CPU time, large batch): the loss works with the class axis first
from the start, so each class' errors are one contiguous row for the sort and neither the errors nor their
gradient are transposed; from logits the softmax runs over that first axis (TensorFlow's softmax kernel took
6.4 ms for the 1.3 M values on a last axis of length 5, the exponentials over the first axis 3.1 ms) with its
gradient written out (2.2 ms against 3.6 ms by autodiff); the Jaccard increments use J(k) = k / union(k), one
cumulative sum of the background, taken as a product with a 32 x 32 triangular matrix of ones per block plus a
cumulative sum of the block totals (1.9 ms against 7.7 ms for TensorFlow's Cumsum), in float32; eagerly on
TensorFlow, the whole loss past its label checks runs as one `tf.function` call (small batch, eager step, the old
and the new code run alternately: 12.3 -> 8.5 ms). In `tf.function` the changes save about 8% (alternating runs of
the old and the new code: 141 -> 131 ms twice; a third, under heavier load, read 134 and 136 ms).
Tried without a gain: errors as t + (1 - 2t) p instead of |t - p| (fewer gradient ops; 135.1 against 133.1 ms,
within noise); undoing the sort by `invert_permutation` and a gather instead of one scatter (147.8 against 141.9
ms); eagerly, computing the value and the gradient in one graph call (8.2 against 8.0 ms on the small batch) or
binding the static arguments once per graph function (no measurable change); blocks of 64 or 128 for the
cumulative sum (2.2 and 3.0 ms against 1.9 ms). The sort is unchanged and is now about three quarters of our
step: TensorFlow's TopK kernel sorts the 5 x 262,144 int32 keys (each error's bit pattern with its target in the
lowest bit) in about 100 ms of CPU, where torch.sort takes about 88 ms on the same float32 values; the scatter
that undoes the sort costs 6 ms, and the rest of our step now costs less than smp's. XLA's CPU sort (a compiled
comparator called per comparison) took 220-300 ms whatever the key type, so under `jit_compile=True` on CPU the
Lovasz step stays about 2x smp's: on the whole training step, in a probe with a three-layer convolutional model
on the large batch (one thread, `train_on_batch`), a Lovasz step took 216 ms of CPU with `jit_compile=False` and
457 ms with `jit_compile=True` (Dice: 85 and 132 ms), so on CPU train with a Lovasz loss outside XLA (Keras'
default `jit_compile="auto"` already does on a CPU-only TensorFlow machine). With two threads ours sorts the
classes in parallel in one op while smp loops over the classes in Python; torch's two OpenMP threads also
spin-wait under this machine's load (smp's CPU time per step rises from about 145 ms to 940 ms), so the
two-thread rows overstate our advantage and are not the like-for-like figure."""


def assemble(results, command):
    lines = []
    for result in results:
        shape = "x".join(str(s) for s in result["shape"])
        for clock in ("cpu_ms", "wall_ms"):
            rows = [
                [
                    shape,
                    result["threads"],
                    clock.split("_")[0],
                    name,
                    f"{ms:.1f}",
                    f"{to_dice:.1f}",
                    f"{to_peer:.2f}" + (" (met)" if name.startswith("ours") and to_peer <= 1.0 else ""),
                ]
                for name, ms, to_dice, to_peer in summarize(result, clock)
            ]
            lines += rows
    versions = results[0]["versions"]
    header = ["batch (N, H, W, C)", "threads", "clock", "Lovasz", "ms/step", "ratio to its Dice", "ratio to smp"]
    agreement = max(abs(r["values"]["lovasz"] - r["peer_values"]["lovasz"]) for r in results)
    body = "\n".join(
        [
            "One step = the loss and its gradient with respect to the logits. Ours: "
            "`LovaszSoftmaxLoss(from_logits=True)` (batch, classes present) and "
            "`DiceLoss(from_logits=True, per_image=False)` on sparse labels, eager (`tf.GradientTape`), in "
            "`tf.function` and in `tf.function(jit_compile=True)`; smp "
            f"{versions['smp']} on torch {versions['torch']} (run on the CPU), in its own environment: "
            "`LovaszLoss('multiclass', per_image=False)` (its `lovasz_softmax` after a softmax; it applies the "
            "softmax whatever `from_logits` says, hence logits for both) and "
            "`DiceLoss('multiclass', from_logits=True)`, eager (torch's default). Same arrays "
            "(labels 80% background, N(0, 2) logits), same thread count for both libraries. "
            f"Each of {len(results[0]['timings'])} rounds times every implementation back to back (ours, then "
            "smp's worker process); the table gives medians over rounds, and ratios are medians of the "
            "per-round ratios. `cpu` is the process CPU time per step (robust to other jobs when one thread "
            "runs), `wall` the elapsed time. The machine (2 cores) was shared: a corpus recording ran niced in "
            "the background and other sessions ran tests (load average 5-7), so wall times are measured under load; "
            "the CPU times are the fairer comparison. "
            f"Both losses agree on the value: largest difference {agreement:.1e}.",
            "",
            markdown_table(header, lines),
            "",
            READING,
        ]
    )
    write_section("bench_lovasz_peer", "Lovasz-softmax against segmentation_models_pytorch", body, command)
    print(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", help="a Python with torch and segmentation-models-pytorch")
    parser.add_argument("--threads", type=int, default=1, help="threads of both libraries (one count per process)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=3, help="steps per implementation per round")
    parser.add_argument("--json", help="write the raw timings here instead of docs/benchmarks.md")
    parser.add_argument("--assemble", nargs="+", help="JSON files to write into docs/benchmarks.md")
    parser.add_argument("--command", help="the command line to record with --assemble")
    args = parser.parse_args()
    if args.assemble:
        assemble(load_results(args.assemble), args.command)
        return
    if not args.peer_python:
        parser.error("--peer-python is required to measure")
    import tensorflow as tf

    # TensorFlow fixes its thread pools at its first op: one thread count per process.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    results = []
    for shape in SHAPES:
        results.append(
            run_shape(shape, peer_python=args.peer_python, threads=args.threads, rounds=args.rounds, number=args.number)
        )
        print(json.dumps(summarize(results[-1], "cpu_ms")), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    else:
        assemble(results, args.command)


if __name__ == "__main__":
    main()
