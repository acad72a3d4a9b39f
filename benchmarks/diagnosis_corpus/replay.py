"""Re-decides a corpus run's findings with the current rules from what the run recorded, without training.

Thresholds are set on the calibration half; re-training 250 runs for each candidate
threshold would take an hour on the shared 2-core machine. The rules that read recorded
signals are pure NumPy, so a run's record (per-batch losses, how far the weights had moved
after each batch, the epoch logs) and its trace (the `GradientMonitor` tables, see
`runner.TRACES`) replay them exactly:

The traces stay on the machine that ran the corpus (about 17 KB per run, ignored by git;
the regression guard's are in tests/benchmarks/data): without its trace a run's gradient
findings keep their recorded decision.

* `GradientDetector` (vanishing, exploding, non-finite gradients) over the trace's rows,
  read in blocks of 16 as `GradientMonitor` reads them, with each row's batch loss and
  the regression loss scale the monitor sets from the first loss;
* `LossTrendDetector` (oscillating, stalled loss, stalled metric, overfitting, no learning
  signal) over the per-batch losses, with the recorded weight movement and the epoch logs,
  and the trivial baselines of the probe targets (`runner.probe_baselines`), as
  `TrainingDiagnostics` passes them.

The other findings (checks before training, dead and saturated units, non-finite losses
and weights found outside the gradient rows) keep their recorded decision. A replayed
finding takes the ranked causes that the run recorded for the same kind (or for a kind
with the same causes); causes need the model, which a replay does not rebuild. The cause
priors changed since the corpus ran (`RECORDED_PRIORS`) are re-applied to the recorded
strengths (a strength is prior x severity), and the learning rate's cause of a vanishing
finding is added from the trace's update ratios, as `causes.rank_causes` does.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from benchmarks.diagnosis_corpus.runner import TRACES, trace_path
from keras_lossopt.callbacks import causes as causes_module
from keras_lossopt.callbacks.detection import GradientDetector
from keras_lossopt.callbacks.loss_trends import LossTrendDetector

__all__ = ["REPLAYED_KINDS", "load_trace", "replay_gradients", "replay_record", "replay_trends", "replayed_records"]

#: The kinds whose decisions a replay re-makes (the others keep their recorded decision).
REPLAYED_KINDS = ("vanishing", "exploding", "oscillating_loss", "stalled_loss", "stalled_metric", "overfitting")
_GRADIENT_REPLAYED = ("vanishing", "exploding")
_REGRESSION_LOSSES = ("mse", "mae", "huber")
_READ_EVERY = 16  # GradientMonitor's default detect_every_n_steps
#: (finding kind, cause) -> the prior the corpus' runs were ranked with (rules version
#: 2479f66f0134), where `causes._PRIORS` has changed since.
RECORDED_PRIORS = {
    ("non_finite", "target_scale"): 0.9,
    ("exploding", "target_scale"): 0.9,
    ("non_finite", "initial_weight_scale"): 0.8,
    ("exploding", "initial_weight_scale"): 0.8,
    ("vanishing", "initial_weight_scale"): 0.6,
    ("vanishing", "learning_rate_high"): None,  # not a cause of vanishing then
}
# Kinds with the same causes (causes.py's _PRIORS), to borrow ranked causes from.
_SAME_CAUSES = {
    "exploding": ("non_finite",),
    "non_finite": ("exploding",),
    "stalled_loss": ("stalled_metric", "no_signal"),
    "stalled_metric": ("stalled_loss", "no_signal"),
}


def load_trace(run_id: str, root: pathlib.Path = TRACES) -> dict[str, np.ndarray] | None:
    """A run's gradient trace, or None when it was not recorded."""
    path = trace_path(run_id, root)
    if not path.exists():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def replay_gradients(record: Mapping, trace: Mapping[str, np.ndarray], **detector_args) -> list:
    """`GradientDetector`'s findings over a recorded trace (blocks of 16 rows)."""
    layers = [str(name) for name in trace["layers"]]
    detector = GradientDetector(layers, **detector_args)
    losses = record.get("batch_losses") or []
    if record["spec"]["loss"] in _REGRESSION_LOSSES and losses and losses[0] is not None:
        first = float(losses[0])
        if math.isfinite(first):
            detector.loss_scale = max(1.0, math.sqrt(abs(first)))
            detector.scale_with_start = True
    steps = np.asarray(trace["steps"], dtype="int64")
    batch_losses = np.array([math.nan if v is None else float(v) for v in losses] + [math.nan], dtype="float64")
    row_losses = batch_losses[np.minimum(steps, len(batch_losses) - 1)]
    findings = []
    for begin in range(0, len(steps), _READ_EVERY):
        rows = slice(begin, begin + _READ_EVERY)
        block = {key: np.asarray(trace[key][rows], dtype="float64") for key in ("grad_norm", "nonfinite_share")}
        block["weight_norm"] = np.asarray(trace["weight_norm"][rows], dtype="float64")
        block["loss"] = row_losses[rows]
        findings.extend(detector.update(steps[rows], block))
    return findings


def _epoch_logs(history: Mapping[str, Sequence[float]], epoch: int) -> dict[str, float]:
    return {key: values[epoch] for key, values in history.items() if epoch < len(values)}


def replay_trends(record: Mapping, baselines: tuple = (None, None), **detector_args) -> list:
    """`LossTrendDetector`'s findings over the recorded per-batch losses and epoch logs."""
    losses = [math.nan if v is None else float(v) for v in record.get("batch_losses") or []]
    moved = [None if v is None else float(v) for v in record.get("weights_moved") or []]
    spec = record["spec"]
    per_epoch = -(-spec["n_train"] // spec["batch_size"])
    now = {"step": 0}

    def weight_change() -> float | None:
        i = now["step"]
        return moved[i] if i < len(moved) else None

    baseline_loss, baseline_accuracy = baselines
    if baseline_loss is not None and baseline_loss > 0:
        detector_args = {**detector_args, "baseline_loss": baseline_loss, "baseline_accuracy": baseline_accuracy}
    detector = LossTrendDetector(weight_change=weight_change, **detector_args)
    history = record.get("history") or {}
    findings = []
    for step, loss in enumerate(losses):
        now["step"] = step
        findings.extend(detector.update(step, loss))
        if (step + 1) % per_epoch == 0:
            findings.extend(detector.update_epoch(step, _epoch_logs(history, (step + 1) // per_epoch - 1)))
    findings.extend(detector.finish(len(losses) - 1))
    return findings


def _update_ratio_before(trace: Mapping[str, np.ndarray] | None, step: int, records: int = 10) -> float | None:
    """The learning rate's evidence for a vanishing finding, as `rank_causes` takes it from `TrainingStart`:
    the median whole-model ratio of the last records, or the largest earlier one if it replaced the weights."""
    if trace is None or not len(trace.get("steps", ())):
        return None
    ratios = np.asarray(trace["update_ratio"][:, -1], dtype="float64")
    keep = (np.asarray(trace["steps"]) < step) & np.isfinite(ratios)
    recent = ratios[keep][-records:]
    if not recent.size:
        return None
    largest = float(ratios[keep].max())
    typical = float(np.median(recent))
    return max(typical, largest) if largest >= causes_module.REPLACING_UPDATE_RATIO else typical


def rerank(finding: Mapping, trace: Mapping[str, np.ndarray] | None) -> dict:
    """The finding with its recorded causes re-ranked under the current priors (see the module docstring)."""
    keys, strengths = list(finding.get("causes") or []), list(finding.get("cause_strengths") or [])
    kind = finding["kind"]
    priors = causes_module._PRIORS.get(kind, {})
    if len(strengths) != len(keys) or not any(k == kind for k, _ in RECORDED_PRIORS):
        return dict(finding)
    ranked = {}
    for key, strength in zip(keys, strengths):
        old = RECORDED_PRIORS.get((kind, key))
        ranked[key] = strength * priors[key] / old if old and key in priors else strength
    if RECORDED_PRIORS.get((kind, "learning_rate_high"), 0) is None and "learning_rate_high" in priors:
        ratio = _update_ratio_before(trace, int(finding["step"]))
        if ratio is not None and ratio > causes_module.HIGH_UPDATE_RATIO:
            severity = causes_module.evidence_severity(ratio / causes_module.HIGH_UPDATE_RATIO)
            ranked["learning_rate_high"] = max(
                ranked.get("learning_rate_high", 0.0), priors["learning_rate_high"] * severity
            )
    order = sorted(ranked.items(), key=lambda item: -item[1])[:3]
    return {**finding, "causes": [k for k, _ in order], "cause_strengths": [round(v, 4) for _, v in order]}


def _as_record(finding, source: str, recorded: Sequence[Mapping]) -> dict:
    causes: list[str] = []
    strengths: list[float] = []
    for kind in (finding.kind, *_SAME_CAUSES.get(finding.kind, ())):
        match = [f for f in recorded if f["kind"] == kind and f.get("causes")]
        if match:
            causes, strengths = list(match[0]["causes"]), list(match[0].get("cause_strengths") or [])
            break
    if finding.kind == "no_signal":
        causes, strengths = ["shuffled_labels"], [1.0]
    return {
        "cause_strengths": strengths,
        "kind": finding.kind,
        "severity": finding.severity,
        "step": int(finding.step),
        "layers": list(finding.layers),
        "causes": causes,
        "source": source,
        "evidence": {k: float(v) for k, v in finding.evidence.items() if isinstance(v, (int, float))},
        "replayed": True,
    }


def replay_record(
    record: Mapping,
    trace: Mapping[str, np.ndarray] | None = None,
    baselines: tuple = (None, None),
    *,
    detector_args: Mapping | None = None,
    trend_args: Mapping | None = None,
) -> dict:
    """A copy of `record` whose findings the current rules re-decided (see the module docstring).

    A record without per-batch losses (recorded before they were) is returned unchanged;
    without a trace its gradient findings keep their recorded decision.
    """
    if not record.get("batch_losses"):
        return dict(record)
    recorded = list(record.get("findings", []))
    replayed_kinds = set(REPLAYED_KINDS) | {"no_signal"}
    if trace is None or not len(trace.get("steps", ())):
        replayed_kinds -= set(_GRADIENT_REPLAYED)
        gradient = []
    else:
        gradient = replay_gradients(record, trace, **dict(detector_args or {}))
        gradient = [f for f in gradient if f.kind in _GRADIENT_REPLAYED]
    trends = replay_trends(record, baselines, **dict(trend_args or {}))
    kept = [f for f in recorded if f["kind"] not in replayed_kinds]
    new = [_as_record(f, "monitor", recorded) for f in gradient]
    new += [_as_record(f, "diagnostics", recorded) for f in trends]
    return {**record, "findings": [rerank(f, trace) for f in kept + new], "replayed": True}


_BASELINES: dict[str, tuple] = {}


def replayed_records(
    records: Mapping[str, Mapping],
    traces: pathlib.Path = TRACES,
    *,
    detector_args: Mapping | None = None,
    trend_args: Mapping | None = None,
) -> dict[str, dict]:
    """`replay_record` over many records (the probe baselines computed once per run and kept)."""
    from benchmarks.diagnosis_corpus.runner import probe_baselines
    from benchmarks.diagnosis_corpus.space import RunSpec

    out = {}
    for run_id, record in records.items():
        if not record.get("batch_losses"):
            out[run_id] = dict(record)
            continue
        if run_id not in _BASELINES:
            _BASELINES[run_id] = probe_baselines(RunSpec.from_dict(record["spec"]))
        out[run_id] = replay_record(
            record,
            load_trace(run_id, traces),
            _BASELINES[run_id],
            detector_args=detector_args,
            trend_args=trend_args,
        )
    return out
