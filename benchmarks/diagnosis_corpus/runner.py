"""Runs corpus specs with the default `GradientMonitor` and `TrainingDiagnostics`, in parallel, cached.

`run_spec(spec)` trains one run as a new user would (default callbacks; the diagnostics'
probe batch is the first 128 training samples with their targets) and returns a record:
the findings of both callbacks (kind, severity, step, layers, the causes ranked first),
whether the run trained (its validation metric against the task's trivial baseline), the
epoch logs and the time the fit took. `run_corpus` runs many specs over worker processes
(2 by default: one per core of the shared machine) and appends each record to a JSON-lines
cache as it arrives; a spec already in the cache under the same `CORPUS_VERSION` is not
trained again (its decisions are replayed under the current rules, see `replay.py`), so the
analysis re-runs without retraining.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import pathlib
import time
import traceback
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from benchmarks.diagnosis_corpus.data import TASKS, load_task
from benchmarks.diagnosis_corpus.space import RunSpec, current_spec, split_of

__all__ = ["RESULTS", "load_records", "rules_version", "run_corpus", "run_spec"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "diagnosis_corpus" / "results.jsonl"
#: Per-run gradient tables (`GradientMonitor.history`, float32), one compressed file per
#: run, so that the gradient rules can be re-decided without training (see `replay`).
TRACES = ROOT / "benchmarks" / "diagnosis_corpus" / "traces"
#: Bumped when the corpus' way of running changes (the rules' own changes are hashed).
#: 4: records carry the per-batch losses and the weights' movement, and traces are written.
CORPUS_VERSION = 4
_TRACE_FIELDS = ("grad_norm", "nonfinite_share", "update_ratio", "weight_norm", "max_abs")
#: Margin over the trivial baseline a healthy run must reach to count as trained: accuracy
#: gained (classification), or the share of the baseline's squared error left (regression).
ACCURACY_MARGIN = 0.05
REGRESSION_SHARE = 0.8
#: Training samples in the diagnostics' probe batch.
PROBE = 128


def recorded_version(record: dict) -> int | None:
    """The `CORPUS_VERSION` a record was made under (4: the first with per-batch losses, before the field)."""
    if "corpus_version" in record:
        return int(record["corpus_version"])
    return 4 if record.get("batch_losses") else None


def rules_version() -> str:
    """A hash of the callbacks' sources (and the corpus version): records of other rules are stale."""
    digest = hashlib.sha1(str(CORPUS_VERSION).encode())
    for path in sorted((ROOT / "keras_lossopt" / "callbacks").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _targets(spec: RunSpec, y: np.ndarray, num_classes: int, units: int) -> np.ndarray:
    kind = TASKS[spec.task][0]
    if kind == "regression":
        return y.astype("float32").reshape(-1, 1)
    if units == 1:
        return y.astype("float32").reshape(-1, 1)
    if spec.loss in ("categorical_ce", "binary_ce_onehot", "mse", "mae", "huber"):
        return np.eye(num_classes, dtype="float32")[y.astype(int)]
    return y.astype("int64")


def _loss(name: str):
    import keras

    return {
        "sparse_ce_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "sparse_ce": "sparse_categorical_crossentropy",
        "categorical_ce": "categorical_crossentropy",
        "binary_ce": "binary_crossentropy",
        "binary_ce_onehot": "binary_crossentropy",
        "mse": "mse",
        "mae": "mae",
        "huber": "huber",
    }[name]


def _optimizer(spec: RunSpec):
    import keras

    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(spec.learning_rate, momentum=spec.momentum)
    if spec.optimizer == "adam":
        return keras.optimizers.Adam(spec.learning_rate)
    return keras.optimizers.RMSprop(spec.learning_rate)


def _score(kind: str, units: int, prediction: np.ndarray, y_val: np.ndarray) -> float:
    if kind == "regression":
        return float(np.mean((prediction.reshape(-1) - y_val.reshape(-1)) ** 2))
    labels = (prediction.reshape(-1) > 0.5).astype(int) if units == 1 else np.argmax(prediction, axis=-1)
    return float(np.mean(labels == y_val.astype(int)))


def _finding_record(finding, source: str) -> dict:
    causes = [c.key for c in getattr(finding, "causes", ())][:3]
    strengths = [round(float(c.strength), 4) for c in getattr(finding, "causes", ())][:3]
    return {
        "cause_strengths": strengths,
        "kind": finding.kind,
        "severity": getattr(finding, "severity", "problem"),
        "step": int(finding.step),
        "layers": list(finding.layers),
        "causes": causes,
        "source": source,
        "evidence": {k: float(v) for k, v in finding.evidence.items() if isinstance(v, (int, float)) and k[:40]},
    }


def _movement_recorder(diagnostics):
    """A callback recording, after each batch, how far the weights moved since the start
    (`TrainingDiagnostics`' own measure), so the stall rules replay without training."""
    import keras

    class MovementRecorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.moved: list[float | None] = []

        def on_train_batch_end(self, batch, logs=None):
            self.moved.append(diagnostics._weight_change())

    return MovementRecorder()


def _round(values, digits: int = 6) -> list:
    out = []
    for v in values:
        v = float("nan") if v is None else float(v)
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else (None if math.isnan(v) else v))
    return out


def _gradient_trace(monitor) -> dict:
    history = monitor.history
    if history is None or not len(history):
        return {}
    tables = history.as_dict()
    out = {"layers": np.asarray(tables["layers"]).astype(str), "steps": np.asarray(tables["steps"], "int32")}
    for field in _TRACE_FIELDS:
        # The last column is the whole model, as in `GradientHistory.extend`'s blocks.
        out[field] = np.concatenate(
            [np.asarray(tables[field]), np.asarray(tables[f"global_{field}"])[:, None]], axis=1
        ).astype("float32")
    return out


def trace_path(run_id: str, root: pathlib.Path = TRACES) -> pathlib.Path:
    return root / (run_id.replace("/", "__") + ".npz")


def _prepared(spec: RunSpec):
    """The run's data as it trains: (data, x, y, output units, y_fit, y_val_fit)."""
    from benchmarks.diagnosis_corpus.models import output_units

    _, classes, _ = TASKS[spec.task]
    data = load_task(spec.task, spec.seed, spec.n_train)
    rng = np.random.default_rng(spec.seed + 1)
    x = data.x_train * spec.input_scale
    y = data.y_train
    if spec.shuffle_labels:
        y = rng.permutation(y)
    if spec.nan_share:
        x = x.copy()
        rows = rng.choice(len(x), size=max(1, round(spec.nan_share * len(x))), replace=False)
        flat = x.reshape(len(x), -1)
        flat[rows, rng.integers(flat.shape[1], size=len(rows))] = np.nan
        x = flat.reshape(x.shape)
    units = output_units(spec, classes)
    return data, x, y, units, _targets(spec, y, classes, units), _targets(spec, data.y_val, classes, units)


def probe_baselines(spec: RunSpec) -> tuple[float | None, float | None]:
    """The trivial baseline loss and accuracy of the run's probe targets (as `TrainingDiagnostics` measures them)."""
    from keras_lossopt.callbacks.trivial_baseline import trivial_accuracy, trivial_loss

    _, _, _, units, y_fit, _ = _prepared(spec)
    return trivial_loss(_loss(spec.loss), y_fit[:PROBE], units), trivial_accuracy(y_fit[:PROBE], units)


def run_spec(spec: RunSpec) -> dict:
    """Trains `spec` with the default callbacks and returns its record (see the module docstring)."""
    import keras

    from benchmarks.diagnosis_corpus.models import build_model
    from keras_lossopt.callbacks import GradientMonitor, TrainingDiagnostics

    kind, classes, _ = TASKS[spec.task]
    data, x, _, units, y_fit, y_val_fit = _prepared(spec)
    x_val = data.x_val * spec.input_scale
    keras.utils.set_random_seed(spec.seed)
    model = build_model(spec, x.shape[1:], classes)
    metrics = ["accuracy"] if kind == "classification" else []
    model.compile(optimizer=_optimizer(spec), loss=_loss(spec.loss), metrics=metrics)
    monitor = GradientMonitor()
    diagnostics = TrainingDiagnostics(probe_x=x[:PROBE], probe_y=y_fit[:PROBE])
    movement = _movement_recorder(diagnostics)
    started = time.perf_counter()
    error = None
    history = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = model.fit(
                x,
                y_fit,
                batch_size=spec.batch_size,
                epochs=spec.epochs,
                validation_data=(x_val, y_val_fit),
                verbose=0,
                callbacks=[monitor, diagnostics, movement],
            )
            history = fit.history
        except Exception as exc:  # a run that breaks is recorded, not fatal to the corpus
            error = f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prediction = np.asarray(model.predict(x_val, verbose=0, batch_size=256), dtype="float64")
    finite = bool(np.isfinite(prediction).all())
    score = _score(kind, units, prediction, data.y_val) if finite else math.nan
    baseline = data.baseline
    if kind == "classification":
        trained = finite and score >= baseline + ACCURACY_MARGIN
    else:
        trained = finite and score <= REGRESSION_SHARE * baseline
    findings = [_finding_record(f, "monitor") for f in monitor.findings]
    findings += [_finding_record(f, "diagnostics") for f in diagnostics.findings]
    trace = _gradient_trace(monitor)
    batch_losses = _round(diagnostics.batch_losses)
    moved = _round(getattr(movement, "moved", []), 4)
    keras.backend.clear_session()
    return {
        "id": spec.id,
        "spec": spec.to_dict(),
        "split": split_of(spec),
        "rules": rules_version(),
        "corpus_version": CORPUS_VERSION,
        "metric": "accuracy" if kind == "classification" else "mse",
        "score": score,
        "baseline": baseline,
        "trained": bool(trained),
        "findings": findings,
        "history": {k: [round(float(v), 6) for v in vals] for k, vals in history.items()},
        "steps": int(spec.epochs * -(-spec.n_train // spec.batch_size)),
        "seconds": round(seconds, 3),
        "error": error,
        "batch_losses": batch_losses,
        "weights_moved": moved,
        "trace": trace,
    }


def _init_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _run_dict(spec_dict: dict) -> dict:
    spec = RunSpec.from_dict(spec_dict)
    try:
        return run_spec(spec)
    except Exception:
        return {
            "id": spec.id,
            "spec": spec.to_dict(),
            "split": split_of(spec),
            "rules": rules_version(),
            "error": traceback.format_exc()[-600:],
            "findings": [],
            "trained": False,
        }


def with_current_baseline(record: dict) -> dict:
    """The record with its classification baseline and `trained` under today's `TaskData.baseline`.

    Records made before the baseline became the validation majority share (it was the
    validation share of the training majority class) are judged again from their score, so
    that every record counts as trained by the same rule; the data are drawn again from the
    spec's seed, as the run drew them.
    """
    if record.get("metric") != "accuracy" or "spec" not in record:
        return record
    spec = RunSpec.from_dict(record["spec"])
    baseline = load_task(spec.task, spec.seed, spec.n_train).baseline
    score = record.get("score")
    finite = score is not None and math.isfinite(score)
    return {**record, "baseline": baseline, "trained": bool(finite and score >= baseline + ACCURACY_MARGIN)}


def load_records(path: pathlib.Path = RESULTS, rules: str | None = None) -> dict[str, dict]:
    """The cached records by run id (the last one of each), only those of `rules` when given
    and only those whose spec is what the space draws today for their id (`current_spec`);
    baselines as `with_current_baseline` gives them."""
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if rules is not None and record.get("rules") != rules:
            continue
        if "spec" in record and RunSpec.from_dict(record["spec"]) != current_spec(record["id"]):
            records.pop(record["id"], None)
            continue
        records[record["id"]] = with_current_baseline(record)
    return records


def _interleaved(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """The specs in an order whose every prefix keeps the corpus' proportions: each family's
    runs spread evenly (by their rank within the family), the ported peer cases first; a
    corpus cut short still covers every family and both groups."""
    by_family: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_family.setdefault(spec.family, []).append(spec)
    keyed = []
    for family, runs in by_family.items():
        for rank, spec in enumerate(runs):
            keyed.append((-1.0 if family == "peer" else (rank + 0.5) / len(runs), family, rank, spec))
    return [spec for *_, spec in sorted(keyed, key=lambda k: k[:3])]


def run_corpus(
    specs: Sequence[RunSpec], *, workers: int = 2, path: pathlib.Path = RESULTS, progress: bool = True
) -> dict[str, dict]:
    """Runs the specs not yet cached under the current `CORPUS_VERSION`; returns the records of all `specs`."""
    # Decisions are replayed from what a run recorded (`replay.py`), so a run is redone only
    # when what is recorded changed (`CORPUS_VERSION`), not when the rules did.
    cached = {k: r for k, r in load_records(path).items() if recorded_version(r) == CORPUS_VERSION}
    todo = [s.to_dict() for s in _interleaved(specs) if s.id not in cached]
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, maxtasksperchild=25) as pool, path.open("a") as out:
            results: Iterable[dict] = pool.imap_unordered(_run_dict, todo)
            for done, record in enumerate(results, 1):
                trace = record.pop("trace", None)
                if trace:
                    TRACES.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(trace_path(record["id"]), **trace)
                out.write(json.dumps(record) + "\n")
                out.flush()
                cached[record["id"]] = record
                if progress:
                    elapsed = time.perf_counter() - started
                    print(
                        f"[{done}/{len(todo)}] {record['id']}: trained={record.get('trained')} "
                        f"findings={[f['kind'] for f in record['findings']]} ({elapsed:.0f}s)",
                        flush=True,
                    )
    return {s.id: cached[s.id] for s in specs if s.id in cached}
