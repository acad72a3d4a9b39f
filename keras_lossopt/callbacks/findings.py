"""Findings: what a monitor saw, why it likely happened, and what to do about it.

A `Finding` is a small frozen record shared by `GradientMonitor` and
`TrainingDiagnostics`, so programs and tests read both the same way. The likely cause is
read off the model (activations, normalization layers, initial weight scale, learning
rate), and every kind comes with concrete remedies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

__all__ = [
    "FINDING_KINDS",
    "Finding",
    "TrainingProblemError",
    "TrainingProblemWarning",
    "likely_cause",
]

FINDING_KINDS = (
    "vanishing",
    "exploding",
    "non_finite",
    "dying_relu",
    "saturation",
    "oscillating_loss",
    "stalled_loss",
    "learning_rate",
)

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
    "learning_rate": "use a learning rate in the usual range (Adam ~1e-4..1e-2, SGD ~1e-3..1e-1)",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One training problem seen by a monitor.

    Attributes:
        kind: one of `FINDING_KINDS`.
        step: the optimizer step (0-based `optimizer.iterations`) at which it was seen.
        layers: names of the layers involved, input side first (empty when the whole
            run is concerned, e.g. the loss).
        evidence: the numbers behind the finding (norms, ratios, shares, losses).
        cause: a likely cause read off the model and optimizer.
        remedy: concrete things to try.
        action: what the monitor did (`"warned"`, `"stopped"`, `"clipped"`, ...).
    """

    kind: str
    step: int
    layers: tuple[str, ...]
    evidence: Mapping[str, float]
    cause: str
    remedy: str
    action: str = ""

    def __str__(self) -> str:
        layers = ", ".join(self.layers) if self.layers else "-"
        numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        text = f"[{self.kind}] step {self.step}; layers: {layers}; evidence: {numbers}. Likely cause: {self.cause}."
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

_SATURATING = ("sigmoid", "tanh", "softsign", "hard_sigmoid")
_NORMALIZATION = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization")


def activation_name(layer: Any) -> str | None:
    """Name of the activation a layer applies (`"relu"`, `"sigmoid"`, ...), or None."""
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def flat_layers(model: Any) -> list[Any]:
    """The model's layers with nested models expanded, input side first."""
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def learning_rate_of(optimizer: Any) -> float | None:
    """The optimizer's current learning rate as a float, or None for a schedule."""
    if optimizer is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # a schedule or a callable not evaluable here
        return None


def likely_cause(kind: str, model: Any, layers: Sequence[str] = ()) -> str:
    """A short, model-specific explanation of a finding's likely cause."""
    all_layers = flat_layers(model)
    activations = [activation_name(layer) for layer in all_layers]
    saturating = [layer.name for layer, a in zip(all_layers, activations) if a in _SATURATING]
    hidden = [layer for layer in all_layers if layer.trainable_weights]
    normalized = any(type(layer).__name__ in _NORMALIZATION for layer in all_layers)
    lr = learning_rate_of(getattr(model, "optimizer", None))
    reasons: list[str] = []
    if kind in ("vanishing", "saturation"):
        if len(saturating) >= 3:
            reasons.append(f"{len(saturating)} saturating (sigmoid/tanh) activations stacked in a deep network")
        elif saturating:
            reasons.append(f"saturating activations in {', '.join(saturating)}")
        dead = [layer.name for layer, a in zip(all_layers, activations) if a == "relu" and layer.name in layers]
        if dead:
            reasons.append(f"ReLU units that output zero in {', '.join(dead)}")
        if not normalized and len(hidden) >= 4:
            reasons.append(f"no normalization layer in {len(hidden)} trainable layers")
        if lr is not None and lr < 1e-5:
            reasons.append(f"a very small learning rate ({lr:.3g})")
    elif kind in ("exploding", "non_finite", "oscillating_loss"):
        if lr is not None and lr > 0.05:
            reasons.append(f"a large learning rate ({lr:.3g})")
        big = _oversized_layers(all_layers)
        if big:
            reasons.append("initial weights far above the Glorot/He scale in " + ", ".join(big))
        if not normalized and len(hidden) >= 4:
            reasons.append(f"no normalization layer in {len(hidden)} trainable layers")
    elif kind == "dying_relu":
        if lr is not None and lr > 0.05:
            reasons.append(f"a large learning rate ({lr:.3g}) pushing biases negative")
        negative = _negative_bias_layers(all_layers, layers)
        if negative:
            reasons.append("negative biases in " + ", ".join(negative))
        if not normalized:
            reasons.append("no normalization before the ReLUs")
    elif kind == "stalled_loss":
        if lr is not None and lr < 1e-5:
            reasons.append(f"a very small learning rate ({lr:.3g})")
        if saturating:
            reasons.append("saturating activations")
    elif kind == "learning_rate":
        reasons.append(f"learning rate {lr:.3g}" if lr is not None else "the learning-rate schedule")
    return "; ".join(reasons) if reasons else "no single cause visible in the model's structure"


def _oversized_layers(layers: Sequence[Any]) -> list[str]:
    """Layers whose kernel standard deviation is over 10x the Glorot-uniform one."""
    names = []
    for layer in layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2:
            continue
        w = np.asarray(keras.ops.convert_to_numpy(kernel), dtype="float64")
        receptive = int(np.prod(w.shape[:-2])) if w.ndim > 2 else 1
        fan_in, fan_out = w.shape[-2] * receptive, w.shape[-1] * receptive
        glorot_std = math.sqrt(2.0 / (fan_in + fan_out))
        if np.isfinite(w).all() and w.std() > 10 * glorot_std:
            names.append(f"{layer.name} (std {w.std():.3g} vs {glorot_std:.3g})")
    return names


def _negative_bias_layers(layers: Sequence[Any], names: Sequence[str]) -> list[str]:
    out = []
    for layer in layers:
        bias = getattr(layer, "bias", None)
        if bias is None or layer.name not in names:
            continue
        b = np.asarray(keras.ops.convert_to_numpy(bias))
        if b.size and np.mean(b) < 0:
            out.append(f"{layer.name} (mean bias {b.mean():.3g})")
    return out


def format_report(title: str, findings: Sequence[Finding], extra_lines: Sequence[str] = ()) -> str:
    """The text of `report()`: a header, summary lines, then one paragraph per finding."""
    lines = [title, "=" * len(title), *extra_lines]
    if not findings:
        lines.append("No problem found.")
    else:
        lines.append(f"{len(findings)} finding(s):")
        for f in findings:
            lines.append(f"- {f}")
    return "\n".join(lines)
