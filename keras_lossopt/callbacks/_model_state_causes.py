"""Causes read from the model as it is now: its activations and its current biases.

`causes.rank_causes` weighs these next to the checks made before training and the measured
updates; each function here adds its candidate through the `add` callback it is given, with
a strength from `evidence_severity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keras_lossopt._models import activation_name
from keras_lossopt.callbacks.training_start import TrainingStart, layer_scale

__all__ = ["NEGATIVE_BIAS_FACTOR", "evidence_severity", "negative_biases", "saturating_activations"]

#: A mean bias below -this x the typical pre-activation (kernel std x sqrt(fan_in) x input rms)
#: switches most units off: "materially negative". Small negative biases are normal.
NEGATIVE_BIAS_FACTOR = 0.5


def evidence_severity(ratio: float) -> float:
    """Maps how far evidence lies past its threshold (ratio >= 1) to [0.5, 1] on a log scale."""
    if not math.isfinite(ratio):
        return 1.0
    return min(1.0, 0.5 + 0.25 * math.log10(max(ratio, 1.0)))


_SATURATING = ("sigmoid", "tanh", "softsign", "hard_sigmoid")


def saturating_activations(all_layers: Sequence[Any], add) -> None:
    saturating = [layer.name for layer in all_layers if activation_name(layer) in _SATURATING]
    if len(saturating) >= 3:
        add(
            "saturating_activations",
            1.0,
            f"{len(saturating)} saturating (sigmoid/tanh) activations stacked: each multiplies the gradient by "
            "at most 0.25 (sigmoid) or 1 (tanh)",
            "use ReLU/GELU-family activations in hidden layers with He initialization, add normalization or "
            "residual connections, or make the network shallower",
            {"saturating_layers": len(saturating)},
        )
    elif saturating:
        add(
            "saturating_activations",
            0.6,
            f"saturating activations in {', '.join(saturating)}",
            "use ReLU/GELU-family activations in hidden layers, or add normalization before them",
            {"saturating_layers": len(saturating)},
        )


def negative_biases(all_layers: Sequence[Any], names: Sequence[str], start: TrainingStart | None, add) -> None:
    input_rms = 1.0
    if start is not None:
        for finding in start.setup_findings:
            if finding.kind == "input_scale":
                input_rms = float(finding.evidence.get("input_rms", 1.0))
    parts, evidence, worst = [], {}, 0.0
    for layer in all_layers:
        if layer.name not in names:
            continue
        scale = layer_scale(layer)
        if scale is None or scale.bias_mean is None:
            continue
        typical = scale.kernel_std * math.sqrt(scale.fan_in) * input_rms
        if not typical > 0 or scale.bias_mean >= -NEGATIVE_BIAS_FACTOR * typical:
            continue
        worst = max(worst, -scale.bias_mean / (NEGATIVE_BIAS_FACTOR * typical))
        initial = start.layer_scales.get(layer.name) if start is not None else None
        origin = ""
        if initial is not None and initial.bias_mean is not None:
            origin = (
                " (so from the start: check bias_initializer)"
                if initial.bias_mean < -NEGATIVE_BIAS_FACTOR * typical
                else f" (they started at {initial.bias_mean:.3g}: the updates pushed them down)"
            )
            evidence[f"{layer.name}.initial_mean_bias"] = initial.bias_mean
        parts.append(f"{layer.name} (mean bias {scale.bias_mean:.3g} vs typical pre-activation {typical:.3g}){origin}")
        evidence[f"{layer.name}.mean_bias"] = scale.bias_mean
        evidence[f"{layer.name}.typical_preactivation"] = typical
    if parts:
        add(
            "negative_bias",
            evidence_severity(worst),
            "biases negative enough to switch the units off in " + "; ".join(parts),
            "initialize biases at zero (bias_initializer='zeros') or slightly positive, use LeakyReLU/ELU, "
            "and lower the learning rate if the updates pushed them down",
            evidence,
        )
