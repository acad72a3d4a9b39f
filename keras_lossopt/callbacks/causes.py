"""Causes of a training problem, ranked by the evidence for each.

A symptom (exploding gradients, a dead layer, a stalled loss) has several possible causes;
the remedy depends on which one it is. `rank_causes` weighs the candidates for a finding's
kind against the evidence the callbacks hold:

* the checks made before training (`pretraining.check_training_setup`): data with
  NaN/inf, the first layer whose forward pass overflows at the starting weights, input and
  target scale, a loss that does not fit the output activation;
* the model as it was when training began (`TrainingStart`, captured in
  `on_train_begin`): the initial weight scale against Glorot's, initial biases; never the
  weights after a divergence, which describe the wreck, not its cause;
* the learning rate measured against the weights: the relative size of the updates
  (`||w_after - w_before|| / ||w_before||` per step from `GradientMonitor`, or how far the
  weights moved since the start), not the learning rate's value alone;
* the current weights where the cause is their state now (biases pushed negative), and the
  activations (`_model_state_causes`).

Each `Cause` carries its numbers and a remedy that fits it; causes without evidence are
not listed. The strength is a prior for the pair (finding kind, cause), scaled by how far
the evidence lies past its threshold; it orders the list and is not a probability.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import keras

from keras_lossopt._models import activation_name, flat_layers
from keras_lossopt._validation import check_choice, check_int
from keras_lossopt.callbacks._model_state_causes import evidence_severity, negative_biases, saturating_activations
from keras_lossopt.callbacks.findings import FINDING_KINDS, Finding, learning_rate_of
from keras_lossopt.callbacks.loss_trends import STILL_WEIGHTS
from keras_lossopt.callbacks.pretraining import SETUP_FINDING_KINDS
from keras_lossopt.callbacks.training_start import TrainingStart, layer_scale

__all__ = ["CAUSE_KEYS", "Cause", "describe_causes", "rank_causes"]

CAUSE_KEYS = (
    "non_finite_data",
    "non_finite_forward",
    "input_scale",
    "target_scale",
    "loss_mismatch",
    "initial_weight_scale",
    "learning_rate_high",
    "learning_rate_low",
    "negative_bias",
    "saturating_activations",
    "dead_relu",
    "missing_normalization",
    "shuffled_labels",
)
"""Every cause `rank_causes` can name, as the `key` of a `Cause`."""

# Prior strength of each cause per finding kind (absent: not a cause of that kind).
_PRIORS: Mapping[str, Mapping[str, float]] = {
    "non_finite": {
        "non_finite_data": 1.0,
        "non_finite_forward": 1.0,
        # Regression targets in natural units train fine (the independent set: RMS
        # 24-178); the measured update ratio says what the steps did. The ported AUTOTRAINER
        # case reg20_sgd_explode (targets RMS 179, SGD 0.1) changed its weights by 5.7x their
        # norm in its first step: below the learning rate's 0.75 at full severity.
        "target_scale": 0.6,
        "input_scale": 0.9,
        # Kernels 10x off Glorot's scale blow the first gradients up by themselves, and the
        # update ratio of those first steps measures the gradients, not the step size: on the
        # calibration half (even seeds) three bad-initialization runs (std 8.5-23, SGD 0.013 to
        # 1.6) exploded at step 1 with the learning rate ranked first at 0.8 (strengths 0.52-0.75
        # against 0.51-0.67); no learning-rate-too-large run has an off-scale initialization.
        "initial_weight_scale": 0.95,
        "learning_rate_high": 0.75,
        "missing_normalization": 0.2,
    },
    "vanishing": {
        "loss_mismatch": 0.95,
        # An initial scale 10x off Glorot's explains vanishing by itself (and makes every
        # update large relative to tiny weights): it outranks the learning rate.
        "initial_weight_scale": 0.9,
        # Steps that change the weights by more than their norm saturate or kill the units
        # below: the corpus' calibration run learning_rate_too_large/100026 (RMSprop 5.3)
        # changed its weights by 66x their norm at step 0 and had all six tanh layers
        # saturated at step 1 and vanishing gradients at step 2 (blamed on the tanh stack).
        "learning_rate_high": 0.85,
        "saturating_activations": 0.8,
        "dead_relu": 0.7,
        "input_scale": 0.6,
        "missing_normalization": 0.2,
    },
    "dying_relu": {
        "negative_bias": 0.9,
        "learning_rate_high": 0.7,
        "input_scale": 0.5,
        "initial_weight_scale": 0.4,
        "missing_normalization": 0.2,
    },
    "saturation": {
        "input_scale": 0.9,
        "initial_weight_scale": 0.85,
        "learning_rate_high": 0.5,
        "missing_normalization": 0.3,
    },
    "oscillating_loss": {
        "learning_rate_high": 0.9,
        "target_scale": 0.7,
        "input_scale": 0.6,
        "loss_mismatch": 0.3,
    },
    "stalled_loss": {
        "loss_mismatch": 0.95,
        "learning_rate_low": 0.85,
        "dead_relu": 0.5,
        "saturating_activations": 0.5,
        "target_scale": 0.4,
        "input_scale": 0.3,
    },
    "learning_rate": {"learning_rate_high": 1.0, "learning_rate_low": 1.0},
}
_PRIORS = {
    **_PRIORS,
    "exploding": _PRIORS["non_finite"],
    "stalled_metric": _PRIORS["stalled_loss"],
    "overfitting": {"missing_normalization": 0.1},
    # The weights moved and the validation loss never beat the trivial baseline: a check
    # before training that failed (the loss against the output, the data) comes first.
    "no_signal": {"loss_mismatch": 1.0, "non_finite_data": 1.0, "shuffled_labels": 0.9, "input_scale": 0.5},
}

# Thresholds of the evidence (each with its reason).
#: Kernel std above this multiple of Glorot's (or below its inverse) is an initial-scale cause.
WEIGHT_SCALE_FACTOR = 10.0
#: Per-step relative update ||dw|| / ||w|| above which the learning rate is too high; the
#: usual healthy range is about 1e-4..1e-2 (1e-3 is the common rule of thumb).
HIGH_UPDATE_RATIO = 0.05
#: A single step whose update is this large against the weights replaced them: for the kinds
#: that a step's damage causes (`_DAMAGE_KINDS`), the largest recorded ratio, not the typical
#: one, is the learning rate's evidence.
REPLACING_UPDATE_RATIO = 1.0
_DAMAGE_KINDS = ("vanishing", "saturation", "dying_relu")
#: Per-step relative update below which the learning rate is too small to make progress.
LOW_UPDATE_RATIO = 1e-5
#: Total relative weight change since the start below which a stalled run has barely moved:
#: the stall rules' own threshold (the measured rate that set it is in `loss_trends`).
LOW_TOTAL_MOVEMENT = STILL_WEIGHTS


@dataclasses.dataclass(frozen=True)
class Cause:
    """One candidate cause of a finding, with its evidence.

    Attributes:
        key: one of `CAUSE_KEYS`.
        strength: orders the causes (prior for the finding kind x severity of the evidence).
        description: what was measured, with the numbers.
        remedy: what to change for this cause.
        evidence: the numbers behind it.
    """

    key: str
    strength: float
    description: str
    remedy: str
    evidence: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.description} ({self.key})"


def rank_causes(
    kind: str,
    model: keras.Model,
    layers: Sequence[str] = (),
    *,
    start: TrainingStart | None = None,
    update_ratio: float | None = None,
    step: int | None = None,
) -> list[Cause]:
    """The likely causes of a finding, strongest first.

    Args:
        kind: the finding's kind (`Finding.kind`).
        model: the model being trained.
        layers: the layers the finding names.
        start: the fit's `TrainingStart` (from `training_start(model)`); without it only
            the model's current state is used.
        update_ratio: the typical per-step relative update ||dw|| / ||w|| before the
            finding; by default the median of the last records before `step` that
            `GradientMonitor` left in `start` (None without a monitor).
        step: the optimizer step of the finding (0-based); with `start` it says how many
            steps the weights had to move and whether the problem came at the first step.

    Returns:
        A list of `Cause`, strongest first (empty when no candidate has evidence, and for
        the kinds of the checks before training, which are their own cause).

    Raises:
        ValueError: for an unknown `kind`.
    """
    check_choice("kind", kind, (*FINDING_KINDS, *_PRIORS, *SETUP_FINDING_KINDS))
    priors = _PRIORS.get(kind)
    if priors is None:
        return []  # a check before training: the finding is its own cause
    found: dict[str, Cause] = {}

    def add(key: str, severity: float, description: str, remedy: str, evidence: Mapping[str, float]) -> None:
        if key in priors:
            strength = priors[key] * severity
            if key not in found or found[key].strength < strength:
                found[key] = Cause(key, strength, description, remedy, dict(evidence))

    steps = None
    if start is not None and step is not None:
        steps = step - start.step + 1  # steps done, the finding's included
        if update_ratio is None:
            update_ratio = start.update_ratio_before(step)
            largest = start.largest_update_ratio_before(step)
            if kind in _DAMAGE_KINDS and largest is not None and largest >= REPLACING_UPDATE_RATIO:
                # One step that replaced the weights does the damage the later, typical steps
                # do not show (the corpus' lr-too-large/100026: 66x at step 0, 0.08 after).
                update_ratio = max(update_ratio or 0.0, largest)
    all_layers = flat_layers(model)
    setup = start.setup_findings if start is not None else []
    for finding in setup:
        _from_setup(finding, add)
    if start is not None:
        _initial_weight_scale(start, add)
        if kind == "non_finite" and steps == 1 and (start.first_loss is None or math.isfinite(start.first_loss)):
            add(
                "non_finite_forward",
                0.95,
                "the very first step, from the starting weights, already has non-finite gradients: no update caused it",
                "lowering the learning rate or clipping cannot help: check the initializers, the input scale and "
                "the data for NaN/inf",
                {"steps": 1},
            )
        if start.first_loss is not None and not math.isfinite(start.first_loss):
            add(
                "non_finite_forward",
                1.0,
                f"the loss of the very first batch, at the starting weights, was {start.first_loss}: no update "
                "caused it",
                "lowering the learning rate or clipping cannot help: check the initializers, the input scale and "
                "the data for NaN/inf (pass a batch to TrainingDiagnostics(probe_x=, probe_y=) to find the layer)",
                {"first_loss": start.first_loss},
            )
    _learning_rate(kind, model, start, update_ratio, steps, add)
    if kind in ("vanishing", "stalled_loss", "stalled_metric"):
        saturating_activations(all_layers, add)
        relu_layers = [layer.name for layer in all_layers if activation_name(layer) == "relu" and layer.name in layers]
        if relu_layers:
            add(
                "dead_relu",
                0.8,
                f"ReLU units that output zero in {', '.join(relu_layers)}",
                "use LeakyReLU/ELU/GELU or He initialization, and check the biases and learning rate",
                {"relu_layers": len(relu_layers)},
            )
    if kind == "dying_relu":
        negative_biases(all_layers, layers, start, add)
    if kind == "no_signal":
        add(
            "shuffled_labels",
            1.0,
            "the weights moved, yet the validation loss never got below the loss of a constant prediction (the "
            "trivial baseline): the labels do not follow the inputs as the model sees them (shuffled or "
            "misaligned labels, or inputs without signal for them)",
            "check that inputs and labels are shuffled and split together, the label column, and the features",
            {},
        )
    hidden = [layer for layer in all_layers if layer.trainable_weights]
    normalized = any("Normalization" in type(layer).__name__ for layer in all_layers)
    if not normalized and len(hidden) >= 4:
        add(
            "missing_normalization",
            0.5 + 0.05 * min(len(hidden), 10),
            f"no normalization layer in {len(hidden)} trainable layers",
            "add BatchNormalization or LayerNormalization between layers",
            {"trainable_layers": len(hidden)},
        )
    return sorted(found.values(), key=lambda c: -c.strength)


def _from_setup(finding: Finding, add) -> None:
    evidence = {k: v for k, v in finding.evidence.items() if isinstance(v, (int, float))}
    where = f" (layer {', '.join(finding.layers)})" if finding.layers else ""
    description = f"before training: {finding.cause}{where}"
    if finding.kind in ("non_finite_data", "non_finite_forward", "loss_mismatch"):
        add(finding.kind, 1.0, description, finding.remedy, evidence)
    elif finding.kind in ("input_scale", "target_scale"):
        # Data scale saturates its severity within one decade past the limit: a gradient
        # inflated by the data makes every update look too large, so the data, not the
        # learning rate, comes first.
        value = finding.evidence.get("input_rms", finding.evidence.get("target_rms", 10.0))
        ratio = value / finding.evidence.get("limit", 10.0)
        add(finding.kind, min(1.0, 0.5 + 0.5 * math.log10(max(ratio, 1.0))), description, finding.remedy, evidence)


def _initial_weight_scale(start: TrainingStart, add) -> None:
    big, small, evidence = [], [], {}
    worst = 1.0
    for name, scale in start.layer_scales.items():
        if not math.isfinite(scale.kernel_std) or scale.glorot_std <= 0:
            continue
        ratio = scale.kernel_std / scale.glorot_std
        if ratio > WEIGHT_SCALE_FACTOR:
            big.append(f"{name} (std {scale.kernel_std:.3g} vs Glorot {scale.glorot_std:.3g})")
            worst = max(worst, ratio / WEIGHT_SCALE_FACTOR)
            evidence[f"{name}.initial_std_over_glorot"] = ratio
        elif 0 < ratio < 1 / WEIGHT_SCALE_FACTOR:
            small.append(f"{name} (std {scale.kernel_std:.3g} vs Glorot {scale.glorot_std:.3g})")
            worst = max(worst, 1 / (ratio * WEIGHT_SCALE_FACTOR))
            evidence[f"{name}.initial_std_over_glorot"] = ratio
    if big or small:
        parts = []
        if big:
            parts.append("far above the Glorot/He scale in " + ", ".join(big))
        if small:
            parts.append("far below the Glorot/He scale in " + ", ".join(small))
        add(
            "initial_weight_scale",
            evidence_severity(worst),
            "initial weights (at the start of training) " + "; ".join(parts),
            "use the default glorot_uniform or he_normal kernel_initializer in those layers",
            evidence,
        )


_STALLS = ("stalled_loss", "stalled_metric", "learning_rate")


def _learning_rate(kind, model, start, update_ratio, steps, add) -> None:
    lr = learning_rate_of(getattr(model, "optimizer", None))
    lr_text = f"learning rate {lr:.3g}" if lr is not None else "the learning-rate schedule"
    evidence: dict[str, float] = {} if lr is None else {"learning_rate": lr}
    measured = update_ratio is not None and math.isfinite(update_ratio)
    # How far the weights moved since the start: the evidence of a stall, and of large
    # steps when no update was measured (the net displacement per step understates the
    # steps, so a high value is conclusive).
    moved = start.moved(model) if start is not None and steps and (not measured or kind in _STALLS) else None
    if update_ratio is not None and math.isfinite(update_ratio):
        evidence["update_ratio"] = update_ratio
        if update_ratio > HIGH_UPDATE_RATIO:
            grown = _weight_growth(model, start) if start is not None else None
            growth_text = ""
            if grown is not None:
                name, before, now = grown
                evidence[f"{name}.kernel_std_start"] = before
                evidence[f"{name}.kernel_std_now"] = now
                growth_text = f"; the weights of {name} grew from std {before:.3g} at the start to {now:.3g} now"
            add(
                "learning_rate_high",
                evidence_severity(update_ratio / HIGH_UPDATE_RATIO),
                f"{lr_text} makes each step change the weights by {update_ratio:.2g} of their norm (healthy: "
                f"about 1e-4..1e-2){growth_text}",
                "lower the learning rate (e.g. 10x) or clip gradients (global_clipnorm=1.0)",
                evidence,
            )
        elif update_ratio < LOW_UPDATE_RATIO:
            add(
                "learning_rate_low",
                evidence_severity(LOW_UPDATE_RATIO / max(update_ratio, 1e-30)),
                f"{lr_text} changes the weights by only {update_ratio:.2g} of their norm per step (healthy: "
                "about 1e-4..1e-2)",
                "raise the learning rate (e.g. 10-100x; Adam usually 1e-4..1e-2)",
                evidence,
            )
    if moved is not None and steps:
        evidence["relative_weight_change"] = moved
        evidence["steps"] = steps
        if not measured and moved / steps > HIGH_UPDATE_RATIO and kind not in _STALLS:
            add(
                "learning_rate_high",
                evidence_severity(moved / steps / HIGH_UPDATE_RATIO),
                f"{lr_text} moved the weights by {moved:.2g} of their norm in {steps} steps (healthy per step: "
                "about 1e-4..1e-2)",
                "lower the learning rate (e.g. 10x) or clip gradients (global_clipnorm=1.0)",
                evidence,
            )
        if moved < LOW_TOTAL_MOVEMENT and steps >= 20 and kind in _STALLS:
            add(
                "learning_rate_low",
                evidence_severity(LOW_TOTAL_MOVEMENT / max(moved, 1e-12)),
                f"{lr_text} is too small for the weights' scale: in {steps} steps they moved {moved:.2g} of "
                "their norm in all",
                "raise the learning rate (e.g. 10-100x; Adam usually 1e-4..1e-2)",
                evidence,
            )
    judged = "update_ratio" in evidence or (moved is not None and steps is not None and steps >= 20)
    if lr is not None and not judged:
        # Without measured updates only the value itself: a weaker signal.
        adaptive = not isinstance(getattr(model, "optimizer", None), keras.optimizers.SGD)
        high, low = (1e-2, 1e-5) if adaptive else (0.5, 1e-4)
        if lr > high:
            add("learning_rate_high", 0.6, f"a large {lr_text}", "lower the learning rate (e.g. 10x)", evidence)
        elif lr < low * (1 - 1e-6):  # float32 learning rates: 1e-5 reads back as 9.99999975e-06
            add("learning_rate_low", 0.6, f"a very small {lr_text}", "raise the learning rate (e.g. 10-100x)", evidence)


def _weight_growth(model: keras.Model, start: TrainingStart) -> tuple[str, float, float] | None:
    worst = None
    for layer in flat_layers(model):
        scale = start.layer_scales.get(layer.name)
        current = layer_scale(layer)
        if scale is None or current is None or scale.kernel_std <= 0:
            continue
        growth = current.kernel_std / scale.kernel_std if math.isfinite(current.kernel_std) else math.inf
        if worst is None or growth > worst[0]:
            worst = (growth, layer.name, scale.kernel_std, current.kernel_std)
    if worst is None or worst[0] < 2:
        return None
    return worst[1], worst[2], worst[3]


def describe_causes(causes: Sequence[Cause], limit: int = 3) -> tuple[str, str]:
    """The text of a finding's cause and remedy from its ranked causes.

    Args:
        causes: ranked causes (`rank_causes`).
        limit: at most this many causes are named.

    Returns:
        `(cause, remedy)` strings; the cause lists the causes strongest first.

    Raises:
        ValueError: when `limit` is below 1.
    """
    limit = check_int("limit", limit, minimum=1)
    if not causes:
        return "no single cause visible in the model, the data checks or the updates", ""
    shown = list(causes[:limit])
    cause = "; ".join(f"{i + 1}. {c.description}" for i, c in enumerate(shown))
    remedies = []
    for c in shown:
        if c.remedy not in remedies:
            remedies.append(c.remedy)
    return cause, "; ".join(remedies)
