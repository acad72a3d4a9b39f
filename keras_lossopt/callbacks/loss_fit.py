"""Checks of the loss before training: does it fit the model's output and the targets?

`loss_family` says what a loss expects of the output (keras-lossopt losses declare it,
`LossContract.loss_family`; Keras' losses are known by name), `output_activations` which
activations the model applies after its last layer with weights; `check_training_setup`
(`pretraining.py`) reports a mismatch between them (mean squared error after a softmax, a
softmax applied twice or over one unit, `from_logits` set the wrong way), unscaled
regression targets and a non-finite first loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_lossopt._models import activation_name, flat_layers
from keras_lossopt.callbacks.findings import BEFORE_TRAINING, Finding

__all__ = ["loss_family", "output_activations"]


def root_mean_square(array: np.ndarray) -> float:
    """The root mean square of `array` in float64 (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(array.astype("float64"))))) if array.size else 0.0


# Layers that pass values through unchanged (or only reshape them): the output chain
# is followed through them.
_PASS_THROUGH = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "AlphaDropout",
    "Flatten",
    "Reshape",
    "Identity",
    "ActivityRegularization",
)
_NORMALIZING = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
)
_PROBABILITY = ("softmax", "sigmoid", "hard_sigmoid", "log_softmax")


# -- targets and the loss ------------------------------------------------------------------

_REGRESSION_WORDS = ("squared", "absolute", "huber", "cosh", "mse", "mae", "msle", "mape")


def loss_family(loss: Any) -> tuple[str, bool | None, str]:
    """What kind of loss `model.loss` is: `(family, from_logits, name)`.

    Args:
        loss: a loss as given to `compile` (a name, a `keras.losses.Loss`, a function).

    Returns:
        `family` is `"softmax_ce"` (categorical/sparse cross-entropy and their focal
        variants), `"sigmoid_ce"` (binary cross-entropy, focal), `"regression"`
        (squared/absolute/Huber/log-cosh errors) or `"other"`; `from_logits` is the loss'
        setting (`False` for names, `None` when unknown); `name` is a readable name.
    """
    from_logits: bool | None = None
    if isinstance(loss, str):
        name, from_logits = loss.lower(), False
    elif isinstance(loss, keras.losses.Loss):
        config = _safe_config(loss)
        name = type(loss).__name__
        if name == "LossFunctionWrapper":
            fn = getattr(loss, "fn", None)
            name = getattr(fn, "__name__", config.get("name", name))
        from_logits = config.get("from_logits", getattr(loss, "from_logits", None))
    elif callable(loss):
        name = getattr(loss, "__name__", type(loss).__name__)
        from_logits = False
    else:
        return "other", None, type(loss).__name__
    # keras-lossopt losses declare their family (`LossContract.loss_family`); Keras' losses,
    # loss names and functions are recognised by Keras' names.
    declared = getattr(loss, "loss_family", None) if isinstance(loss, keras.losses.Loss) else None
    key = name.lower().replace("_", "")
    if declared is not None:
        family = declared
    elif "crossentropy" in key or "focal" in key:
        family = "sigmoid_ce" if "binary" in key else "softmax_ce"
    elif any(word in key for word in _REGRESSION_WORDS):
        family = "regression"
    else:
        family = "other"
    return family, (None if from_logits is None else bool(from_logits)), name


def _safe_config(loss: keras.losses.Loss) -> Mapping[str, Any]:
    try:
        return loss.get_config() or {}
    except (NotImplementedError, TypeError):
        return {}


def output_activations(model: keras.Model) -> list[tuple[str, str]]:
    """The activations applied between the last layer with weights and the output.

    Args:
        model: a single-output Sequential or functional model (nested models are
            followed into).

    Returns:
        `(layer name, activation)` pairs, input side first, e.g.
        `[("out", "softmax"), ("softmax", "softmax")]` for a softmax applied twice;
        `"linear"` for a layer without activation; empty when the layers are not visible.
    """
    chain: list[tuple[str, str]] = []
    try:
        tensor = model.outputs[0]
    except (AttributeError, IndexError, TypeError, ValueError):
        return chain
    layers = flat_layers(model, with_nested_models=True)
    for _ in range(len(layers)):
        producer = next((layer for layer in layers if _output_of(layer) is tensor), None)
        if producer is None:
            break
        name = _activation(producer)
        if name is not None:
            chain.append((producer.name, name))
        if producer.trainable_weights or (name is None and type(producer).__name__ not in _PASS_THROUGH):
            break
        try:
            tensor = producer.input
        except (AttributeError, ValueError):
            break
    return chain[::-1]


def _output_of(layer: Any) -> Any:
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def _activation(layer: Any) -> str | None:
    if isinstance(layer, keras.Model):
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = activation_name(layer)
    if name is None and isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
        return "linear"
    return name


def check_target_scale(y: np.ndarray, loss_name: str, limit: float, findings: list[Finding]) -> None:
    if not np.issubdtype(y.dtype, np.number):
        return
    values = y.astype("float64")
    rms = root_mean_square(values)
    if rms <= limit:
        return
    mean, std = float(values.mean()), float(values.std())
    findings.append(
        Finding(
            kind="target_scale",
            step=BEFORE_TRAINING,
            layers=(),
            evidence={"target_rms": rms, "target_mean": mean, "target_std": std, "limit": limit},
            cause=(
                f"the regression targets are unscaled (mean {mean:.3g}, std {std:.3g}, root mean square "
                f"{rms:.3g}) while the output starts near 0: the first {loss_name} losses and gradients are "
                f"about {rms:.3g}x (squared errors: {rms**2:.3g}x) those of standardized targets"
            ),
            remedy=(
                f"standardize the targets: train on (y - {mean:.3g}) / {std:.3g} and map predictions back with "
                f"y_pred * {std:.3g} + {mean:.3g}; or keep the targets and add a final "
                "keras.layers.Rescaling, with a learning rate that suits that scale"
            ),
            severity="information",
        )
    )


def check_loss_fit(
    model: keras.Model,
    family: str,
    from_logits: bool | None,
    loss_name: str,
    prediction: np.ndarray,
    y: np.ndarray,
    findings: list[Finding],
) -> None:
    chain = output_activations(model)
    activations = [a for _, a in chain if a != "linear"]
    units = int(prediction.shape[-1]) if prediction.ndim > 1 else 1
    final = activations[-1] if activations else ("linear" if chain else None)
    names = tuple(n for n, a in chain if a != "linear") or tuple(n for n, _ in chain[-1:])
    finite = np.isfinite(prediction).all()
    evidence: dict[str, float] = {"units": units}
    if not chain and finite:
        # A subclassed model hides its layers' tensors: read the output's kind from its values.
        final = output_kind_from_values(prediction)
        names = (model.name,)
        evidence["inferred_from_values"] = 1.0
    if finite and prediction.size:
        evidence["output_min"] = float(prediction.min())
        evidence["output_max"] = float(prediction.max())
    problems: list[tuple[str, str]] = []
    squashing = [a for a in activations if a in _PROBABILITY]
    if len(squashing) >= 2:
        top = math.e / (math.e + units - 1) if squashing[-1] == "softmax" and units > 1 else None
        limit_text = f" (with {units} classes no probability can exceed {top:.3g})" if top else ""
        problems.append(
            (
                f"{' then '.join(squashing)} are applied one after the other in {', '.join(names)}: the second "
                f"squashes the first's probabilities towards a constant{limit_text}, so the loss cannot fall "
                "and its gradient is small",
                "keep one: remove the activation from the last layer or the extra Softmax/Activation layer "
                "(best: a linear output and the loss with from_logits=True)",
            )
        )
    if final == "softmax" and units == 1:
        problems.append(
            (
                f"a softmax over one unit in {names[-1]!r} outputs 1.0 for every sample, so its gradient is "
                "exactly zero and nothing trains",
                "for a binary task use Dense(1) with from_logits=True in binary_crossentropy (or "
                "activation='sigmoid'), or Dense(2) with softmax and (sparse_)categorical_crossentropy",
            )
        )
    if family in ("softmax_ce", "sigmoid_ce"):
        if final in _PROBABILITY and from_logits:
            problems.append(
                (
                    f"{loss_name} has from_logits=True but {names[-1]!r} already applies {final}: the loss "
                    f"applies its own {'softmax' if family == 'softmax_ce' else 'sigmoid'} on top of "
                    "probabilities",
                    "remove the output activation (a linear output, preferred for numerical stability) or "
                    "set from_logits=False",
                )
            )
        if final == "relu":
            problems.append(
                (
                    f"{loss_name} on the ReLU output of {names[-1]!r}: ReLU outputs are neither logits (they "
                    "cannot go negative, and a unit at 0 gets no gradient) nor probabilities",
                    "use a linear output layer (no activation) with from_logits=True",
                )
            )
        elif final == "linear" and from_logits is False and finite:
            outside = float(np.mean((prediction < 0) | (prediction > 1)))
            if outside > 0:
                evidence["share_outside_0_1"] = outside
                problems.append(
                    (
                        f"{loss_name} expects probabilities (from_logits=False) but {names[-1]!r} has no "
                        f"activation: {outside:.0%} of the outputs lie outside [0, 1] and are clipped",
                        "set from_logits=True in the loss (keep the linear output)",
                    )
                )
        if family == "sigmoid_ce" and final == "softmax" and units > 1:
            problems.append(
                (
                    f"{loss_name} treats each of the {units} outputs as an independent yes/no, but the softmax "
                    f"in {names[-1]!r} makes them compete",
                    "for one label per sample use (sparse_)categorical_crossentropy; for several labels per "
                    "sample use a sigmoid (or linear output with from_logits=True)",
                )
            )
        if family == "softmax_ce" and final == "sigmoid" and units > 1:
            problems.append(
                (
                    f"{loss_name} expects one distribution over the {units} classes, but the sigmoid in "
                    f"{names[-1]!r} gives independent probabilities that do not sum to 1",
                    "use activation='softmax' (or a linear output with from_logits=True); for multi-label "
                    "targets use binary_crossentropy",
                )
            )
    elif family == "regression" and final in ("softmax", "sigmoid"):
        binary_targets = np.issubdtype(y.dtype, np.number) and np.isin(y, (0, 1)).all()
        if final == "softmax" or binary_targets:
            problems.append(
                (
                    f"{loss_name} after the {final} of {names[-1]!r}: the squared error of probabilities "
                    "has a vanishing gradient where the output saturates, even when it is wrong",
                    "use categorical_crossentropy (softmax) or binary_crossentropy (sigmoid), best on a "
                    "linear output with from_logits=True",
                )
            )
    if not problems:
        return
    findings.append(
        Finding(
            kind="loss_mismatch",
            step=BEFORE_TRAINING,
            layers=names,
            evidence=evidence,
            cause="; ".join(p for p, _ in problems),
            remedy="; ".join(r for _, r in problems),
        )
    )


def output_kind_from_values(prediction: np.ndarray) -> str | None:
    """The output activation that finite outputs at the starting weights show, or None when
    they do not tell: "linear" with a negative value, "softmax" for rows of several
    probabilities summing to 1, "relu" for non-negative outputs with exact zeros (a sigmoid or
    a linear unit all but never gives exactly 0), "sigmoid" for outputs strictly in (0, 1)."""
    if not prediction.size:
        return None
    values = prediction.astype("float64")
    if (values < 0).any():
        return "linear"
    units = values.shape[-1] if values.ndim > 1 else 1
    if units > 1 and (values <= 1).all() and np.allclose(values.sum(axis=-1), 1.0, atol=1e-3):
        return "softmax"
    if (values == 0).any():
        return "relu" if (values > 0).any() else None
    if (values < 1).all():
        return "sigmoid"
    return None


def check_loss_value(
    model: keras.Model, y: np.ndarray, prediction: np.ndarray, loss_name: str, findings: list[Finding]
) -> None:
    try:
        value = float(keras.ops.convert_to_numpy(model.compute_loss(None, y, prediction.astype("float32"))))
    except Exception:  # a loss that needs more than (y, y_pred): not checked here
        return
    if math.isfinite(value):
        return
    findings.append(
        Finding(
            kind="non_finite_forward",
            step=BEFORE_TRAINING,
            layers=(),
            evidence={"loss": value},
            cause=f"the outputs are finite but {loss_name} at the starting weights is {value}",
            remedy=(
                "lowering the learning rate or clipping cannot help: compute the loss from logits "
                "(from_logits=True on a linear output) instead of log(probabilities), and check the "
                "targets' range for the loss (e.g. negative values in a log loss)"
            ),
        )
    )
