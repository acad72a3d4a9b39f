"""Findings: what a monitor saw, why it likely happened, and what to do about it.

A `Finding` is a small frozen record shared by `GradientMonitor` and
`TrainingDiagnostics`, so programs and tests read both the same way. Its causes are ranked
by `causes.rank_causes` from the evidence the callbacks hold; every kind also has generic
remedies (`REMEDIES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

__all__ = [
    "FINDING_KINDS",
    "SEVERITIES",
    "Finding",
    "TrainingProblemError",
    "TrainingProblemWarning",
]

#: "problem": training is failing; the policy warns, acts or raises. "information": worth
#: knowing (a plateau after real progress, a noisy small-batch loss, overfitting, targets in
#: their natural units); shown in `report()` and logged, never acted on by default.
SEVERITIES = ("problem", "information")

FINDING_KINDS = (
    "vanishing",
    "exploding",
    "non_finite",
    "dying_relu",
    "saturation",
    "oscillating_loss",
    "stalled_loss",
    "stalled_metric",
    "learning_rate",
    "overfitting",
    "no_signal",
    # Checks before training (`pretraining.check_training_setup`), made at step -1.
    "non_finite_data",
    "non_finite_forward",
    "input_scale",
    "target_scale",
    "loss_mismatch",
)
"""Every kind of `Finding` the callbacks and `check_training_setup` report."""

REMEDIES: Mapping[str, str] = {
    "vanishing": (
        "use ReLU/GELU-family activations instead of sigmoid/tanh in hidden layers, He (he_normal) "
        "initialization, BatchNormalization or LayerNormalization between layers, residual "
        "connections, or a shallower network"
    ),
    "exploding": (
        "lower the learning rate (e.g. 10x), clip gradients (optimizer global_clipnorm=1.0), add "
        "normalization layers, and check the initial weight scale (glorot/he initializers)"
    ),
    "non_finite": (
        "lower the learning rate, clip gradients, compute losses from logits (from_logits=True) "
        "instead of log(probabilities), guard divisions/log/sqrt with an epsilon, and keep loss "
        "scaling on under mixed precision"
    ),
    "dying_relu": (
        "lower the learning rate, use LeakyReLU/ELU/GELU, initialize biases at zero or slightly "
        "positive with He initialization, or add BatchNormalization before the activation"
    ),
    "saturation": (
        "normalize the inputs, add BatchNormalization before the activation, use smaller initial "
        "weights (glorot), or switch hidden activations to ReLU-family"
    ),
    "oscillating_loss": "lower the learning rate, increase the batch size, or use a learning-rate schedule",
    "stalled_loss": (
        "raise the learning rate (it may be far too small), check that the labels match the "
        "loss (sparse vs one-hot, from_logits), and check for dead or saturated layers"
    ),
    "stalled_metric": (
        "raise the learning rate (e.g. 10x), check the loss against the output layer and the data scale, "
        "and check for dead or saturated layers"
    ),
    "learning_rate": "use a learning rate in the usual range (Adam ~1e-4..1e-2, SGD ~1e-3..1e-1)",
    "no_signal": (
        "check that the inputs and the labels are aligned (shuffle them together, never separately; the right "
        "label column; the same order after a merge or a split), and that the inputs carry signal for the labels"
    ),
    "overfitting": (
        "stop at the best validation epoch (EarlyStopping(restore_best_weights=True)), add regularization "
        "(Dropout, weight decay, data augmentation), use a smaller model or more data"
    ),
}


#: Step of a finding made before the first training step.
BEFORE_TRAINING = -1


@dataclasses.dataclass(frozen=True)
class Finding:
    """One training problem seen by a monitor.

    Attributes:
        kind: one of `FINDING_KINDS`.
        step: the optimizer step (0-based `optimizer.iterations`) at which it was seen.
        layers: names of the layers involved, input side first (empty when the whole
            run is concerned, e.g. the loss).
        evidence: the numbers behind the finding (norms, ratios, shares, losses).
        cause: the likely causes, strongest first, with their numbers.
        remedy: concrete things to try, for those causes.
        action: what the monitor did (`"warned"`, `"stopped"`, `"clipped"`, ...).
        causes: the ranked `causes.Cause` records behind `cause` (their `key` says which
            cause, e.g. `"learning_rate_high"`); empty for the checks before training,
            which are their own cause.
        severity: `"problem"` (training is failing: warned, acted on or raised by the
            policy) or `"information"` (shown in `report()` and the logs only); see
            `SEVERITIES`.
        stopped_training: whether the policy stopped training on this finding (set by
            `ProblemPolicy.handle`; `action` says it in words).
    """

    kind: str
    step: int
    layers: tuple[str, ...]
    evidence: Mapping[str, float]
    cause: str
    remedy: str
    action: str = ""
    causes: tuple[Any, ...] = ()
    severity: str = "problem"
    stopped_training: bool = False

    def __str__(self) -> str:
        layers = ", ".join(self.layers) if self.layers else "-"
        numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        label = self.kind if self.severity == "problem" else f"{self.kind}, information"
        text = f"[{label}] step {self.step}; layers: {layers}; evidence: {numbers}. Likely cause: {self.cause}."
        text += f" Remedy: {self.remedy}."
        if self.action:
            text += f" Action: {self.action}."
        return text


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


class TrainingProblemWarning(UserWarning):
    """Issued by the monitors when they see a training problem (`on_problem="warn"`)."""


class TrainingProblemError(RuntimeError):
    """Raised by the monitors when `on_problem="raise"`; `.finding` holds the record."""

    def __init__(self, finding: Finding):
        super().__init__(str(finding))
        self.finding = finding


# -- reading the model -------------------------------------------------------------------


def learning_rate_of(optimizer: Any) -> float | None:
    """The optimizer's current learning rate as a float, or None for a schedule."""
    if optimizer is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # a schedule or a callable not evaluable here
        return None


def format_report(title: str, findings: Sequence[Finding], extra_lines: Sequence[str] = ()) -> str:
    """The text of `report()`: a header, summary lines, then one paragraph per finding."""
    lines = [title, "=" * len(title), *extra_lines]
    problems = [f for f in findings if f.severity == "problem"]
    information = [f for f in findings if f.severity != "problem"]
    if not problems:
        lines.append("No problem found.")
    else:
        lines.append(f"{len(problems)} finding(s):")
        lines.extend(f"- {f}" for f in problems)
    if information:
        lines.append(f"{len(information)} information finding(s) (not problems; nothing was done about them):")
        lines.extend(f"- {f}" for f in information)
    return "\n".join(lines)
