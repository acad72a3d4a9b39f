"""Speed and float16 accuracy of each keras-lossopt loss against its closest Keras built-in.

For every case it times one compiled forward+backward step computing the loss and its gradient
with respect to `y_pred` (`tf.function(jit_compile=True)` on TensorFlow, `jax.jit` on JAX, eager
`torch.autograd` on PyTorch, as Keras' `fit` runs there), for our loss and for the Keras
baseline on the same batch, on the backend of `--backend` (default TensorFlow). Timing
alternates between the two functions round by round (so load on a shared machine hits both
alike) and reports the median time per step and the median of the per-round ratios
ours / Keras. Target: no loss slower than 1.10x its Keras counterpart.

It also reports the relative error of our loss computed from float16 inputs (the loss itself
computes in float32, as under a `mixed_float16` policy) against the float64 NumPy reference on
the unrounded inputs, and the same error from float32 inputs as a check of the reference.

Run from the repository root:

    python -m benchmarks.bench_losses [--suite classification|segmentation|all] [--repeats 31] [--number 10]
        [--backend tensorflow|jax|torch]

Suite interface
---------------
Each entry of `SUITES` names a module; a module that does not exist (yet) is skipped with a
message. A suite module defines:

* `CASES`: a list of `BenchCase` (defined here; import it with
  `from benchmarks.bench_losses import BenchCase`). Fields:

  - `name`: row label;
  - `make_ours()`: returns our loss (default `reduction="sum_over_batch_size"`);
  - `make_keras()`: returns the Keras baseline, or `None` when Keras has no counterpart
    (the row then shows `baseline` and no ratio);
  - `baseline`: label of the baseline column (defaults to the Keras class name);
  - `make_batch(rng)`: `rng -> (y_true, y_pred)` NumPy arrays, `y_pred` float32;
  - `keras_targets(y_true)`: optional conversion of `y_true` for the Keras loss (e.g. sparse
    labels to one-hot, since Keras has no sparse focal loss); default identity;
  - `reference(y_true, y_pred)`: float64 NumPy per-sample (per-position) values of our loss;
    their mean is the reference of the `sum_over_batch_size` loss;
  - `reference_mask(y_true, y_pred)`: optional boolean mask of counted positions
    (`ignore_index`); the reference then averages over the counted positions only.

* `SECTION = (name, title)`: the `docs/benchmarks.md` section the suite writes with
  `benchmarks.report.write_section` (e.g. `("bench_losses_classification", "...")`).
* optionally `NOTES`: markdown appended below the suite's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

SUITES = {
    "classification": "benchmarks.suite_classification",
    "segmentation": "benchmarks.suite_segmentation",
}
TARGET_RATIO = 1.10


@dataclasses.dataclass
class BenchCase:
    """One row of a loss benchmark suite (see the module docstring)."""

    name: str
    make_ours: Callable[[], object]
    make_keras: Callable[[], object] | None
    make_batch: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray]
    baseline: str | None = None
    keras_targets: Callable[[np.ndarray], np.ndarray] | None = None
    reference_mask: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


@dataclasses.dataclass
class BenchResult:
    name: str
    baseline: str
    ours_ms: float
    keras_ms: float | None
    ratio: float | None
    f16_error: float
    f32_error: float


BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def _step(loss):
    """`(y_true, y_pred) -> (loss, d loss / d y_pred)` by the backend's compiler and autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(lambda y_true, y_pred: jax.value_and_grad(lambda z: loss(y_true, z))(y_pred))
    if backend == "torch":
        import torch

        def eager_step(y_true, y_pred):
            y_pred = y_pred.detach().requires_grad_(True)
            value = loss(y_true, y_pred)
            (gradient,) = torch.autograd.grad(value, y_pred)
            return value.detach(), gradient

        return eager_step
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def _wait(tensor):
    """Blocks until `tensor` is computed (asynchronous dispatch on TensorFlow and JAX)."""
    import keras

    keras.ops.convert_to_numpy(tensor)


def _time_pair(functions, repeats, number):
    """Per-step seconds of each function, one list entry per round, rounds interleaved."""
    for fn, args in functions:  # compile and warm up
        for _ in range(3):
            out = fn(*args)
        _wait(out[1])
    times = [[] for _ in functions]
    for _ in range(repeats):
        for i, (fn, args) in enumerate(functions):
            start = time.perf_counter()
            for _ in range(number):
                out = fn(*args)
            _wait(out[1])  # wait for the last step
            times[i].append((time.perf_counter() - start) / number)
    return times


def _reference_loss(case, y_true, y_pred):
    values = np.asarray(case.reference(y_true, np.asarray(y_pred, np.float64)), np.float64)
    if case.reference_mask is None:
        return float(values.mean())
    mask = np.broadcast_to(case.reference_mask(y_true, y_pred), values.shape)
    return float(values[mask].sum() / max(mask.sum(), 1))


def run_case(case: BenchCase, repeats: int, number: int, seed: int = 0) -> BenchResult:
    import keras

    constant = keras.ops.convert_to_tensor
    y_true, y_pred = case.make_batch(np.random.default_rng(seed))
    y_pred = np.asarray(y_pred, np.float32)
    ours = case.make_ours()
    functions = [(_step(ours), (constant(y_true), constant(y_pred)))]
    keras_loss = case.make_keras() if case.make_keras is not None else None
    if keras_loss is not None:
        keras_true = case.keras_targets(y_true) if case.keras_targets is not None else y_true
        functions.append((_step(keras_loss), (constant(keras_true), constant(y_pred))))
    times = _time_pair(functions, repeats, number)
    ours_ms = 1e3 * statistics.median(times[0])
    keras_ms = ratio = None
    if keras_loss is not None:
        keras_ms = 1e3 * statistics.median(times[1])
        ratio = statistics.median(a / b for a, b in zip(times[0], times[1]))
    expected = _reference_loss(case, y_true, y_pred)
    f16 = float(ours(y_true, constant(y_pred.astype(np.float16))))
    f32 = float(ours(y_true, constant(y_pred)))
    baseline = case.baseline or (type(keras_loss).__name__ if keras_loss is not None else "-")
    return BenchResult(
        case.name,
        baseline,
        ours_ms,
        keras_ms,
        ratio,
        abs(f16 - expected) / abs(expected),
        abs(f32 - expected) / abs(expected),
    )


def results_table(results: list[BenchResult]) -> str:
    from benchmarks.report import markdown_table

    rows = []
    for r in results:
        verdict = "-" if r.ratio is None else ("ok" if r.ratio <= TARGET_RATIO else "SLOWER")
        rows.append(
            [
                r.name,
                r.baseline,
                f"{r.ours_ms:.3f}",
                "-" if r.keras_ms is None else f"{r.keras_ms:.3f}",
                "-" if r.ratio is None else f"{r.ratio:.2f}",
                verdict,
                f"{r.f16_error:.1e}",
                f"{r.f32_error:.1e}",
            ]
        )
    header = [
        "loss",
        "Keras baseline",
        "ours ms/step",
        "Keras ms/step",
        "ratio ours/Keras",
        f"<= {TARGET_RATIO:.2f}x",
        "float16-input rel. error",
        "float32-input rel. error",
    ]
    return markdown_table(header, rows)


def run_suite(
    key: str,
    module_name: str,
    repeats: int,
    number: int,
    write: bool,
    command: str,
    only: str | None = None,
    backend: str = "tensorflow",
) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"[{key}] suite module {module_name} does not exist yet: skipped")
        return False
    load = os.getloadavg()[0]
    results = []
    for case in module.CASES:
        if only and only.lower() not in case.name.lower():
            continue
        result = run_case(case, repeats, number)
        results.append(result)
        ratio = "-" if result.ratio is None else f"{result.ratio:.2f}x"
        keras_ms = "-" if result.keras_ms is None else f"{result.keras_ms:.3f}"
        print(
            f"[{key}] {result.name:32s} ours {result.ours_ms:8.3f} ms  keras {keras_ms:>8s} ms  ratio {ratio:>6s}  "
            f"f16 err {result.f16_error:.1e}  f32 err {result.f32_error:.1e}",
            flush=True,
        )
    body = results_table(results)
    slower = [r.name for r in results if r.ratio is not None and r.ratio > TARGET_RATIO]
    summary = f"\n\nTarget (no loss slower than {TARGET_RATIO:.2f}x its Keras counterpart): " + (
        "met by every loss." if not slower else f"missed by {', '.join(slower)}."
    )
    notes = getattr(module, "NOTES", "")
    if backend != "tensorflow":  # the suite's notes discuss the TensorFlow numbers
        notes = (
            f"Baselines, batches and float64 references as in the TensorFlow section `{module.SECTION[0]}`, "
            "whose notes discuss the TensorFlow numbers only."
        )
    body += summary + ("\n\n" + notes.strip() if notes else "")
    body += (
        f"\n\nTiming: median over {repeats} interleaved rounds of {number} steps each (ratio: median of the "
        f"per-round ratios); one step ({_step_description()}) computes the loss and its gradient with respect "
        "to `y_pred`."
        f" Load average when the suite started: {load:.1f} on {os.cpu_count()} CPUs (a shared machine under load "
        "slows both columns; the interleaved ratio less so)."
    )
    print(body)
    if write:
        from benchmarks.report import write_section

        name, title = module.SECTION
        if backend != "tensorflow":  # one section per backend; TensorFlow keeps the original one
            name, title = f"{name}_{backend}", f"{title} ({BACKENDS[backend]} backend)"
        write_section(name, title, body, command)
    return True


def _step_description() -> str:
    import keras

    return {
        "tensorflow": "`tf.function(jit_compile=True)`",
        "jax": "`jax.jit` of `jax.value_and_grad`",
        "torch": "eager `torch.autograd.grad`, as Keras' `fit` runs on PyTorch",
    }[keras.backend.backend()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=31, help="interleaved timing rounds (median taken)")
    parser.add_argument("--number", type=int, default=10, help="steps per round")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument(
        "--only", default=None, help="run only cases whose name contains this text (implies --no-write)"
    )
    parser.add_argument(
        "--backend", choices=list(BACKENDS), default=None, help="Keras backend (default: KERAS_BACKEND or tensorflow)"
    )
    args = parser.parse_args(argv)
    if args.backend is not None:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            parser.error(
                f"Keras is already loaded with another backend; run a fresh process for --backend {args.backend}"
            )
        os.environ["KERAS_BACKEND"] = args.backend
    backend = os.environ["KERAS_BACKEND"]
    keys = list(SUITES) if args.suite == "all" else [args.suite]
    for key in keys:
        # Each suite's section records the command that reproduces that section alone.
        command = f"python -m benchmarks.bench_losses --suite {key} --repeats {args.repeats} --number {args.number}"
        if backend != "tensorflow":
            command += f" --backend {backend}"
        write = not (args.no_write or args.only)
        run_suite(key, SUITES[key], args.repeats, args.number, write, command, args.only, backend)


if __name__ == "__main__":
    main()
