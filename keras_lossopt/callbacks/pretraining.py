"""Checks before training: faults visible in the model, its loss and one batch of data.

Many training failures are decided before the first step: raw 0-255 pixels or unscaled
regression targets, a loss that does not fit the output layer (mean squared error after a
softmax, a softmax applied twice or over one unit, `from_logits` set the wrong way,
cross-entropy on a ReLU output), or starting weights whose forward pass already overflows.
`check_training_setup(model, x, y)` finds them with one forward pass over one batch and
returns `Finding` records that name the layer or the data and the fix.

A Keras 3 callback sees no training data (`fit` keeps its data iterator to itself), so the
checks take the batch explicitly: call the function before `fit`, or pass a batch of the
training data to `TrainingDiagnostics(probe_x=..., probe_y=...)`, which runs them in
`on_train_begin`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_lossopt._validation import check_int, check_numeric_tensor, check_positive
from keras_lossopt.callbacks.findings import BEFORE_TRAINING, Finding
from keras_lossopt.callbacks.loss_fit import (
    check_loss_fit,
    check_loss_value,
    check_target_scale,
    loss_family,
    root_mean_square,
)

__all__ = ["SETUP_FINDING_KINDS", "check_training_setup"]

SETUP_FINDING_KINDS = ("non_finite_data", "input_scale", "target_scale", "loss_mismatch", "non_finite_forward")
"""The finding kinds `check_training_setup` reports (at step -1)."""

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


def check_training_setup(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    max_samples: int = 256,
    input_scale_limit: float = 10.0,
    target_scale_limit: float = 10.0,
) -> list[Finding]:
    """Checks the data, the loss and the starting weights on one batch, before training.

    Use it once before `fit` (or through `TrainingDiagnostics(probe_x=, probe_y=)`, which
    calls it in `on_train_begin`) with a batch of the *training* data as the model will
    see it. It costs one forward pass over at most `max_samples` samples.

    Checks (findings are made at step -1, "before training"):

    * non_finite_data: NaN or inf entries in `x` or `y`.
    * non_finite_forward: the forward pass at the starting weights turns non-finite; the
      finding names the first layer (in topological order) whose output has a NaN/inf
      while its input is finite, with the largest input and weight magnitudes. Lowering
      the learning rate or clipping gradients cannot help then: the starting point is
      already broken. Also a non-finite loss from finite outputs (the loss named).
    * input_scale: the input of the first layer with trainable weights (after any
      `Rescaling`/`Normalization` preprocessing layers in the model) has a root mean
      square above `input_scale_limit` (10). Initializers (Glorot, He) assume inputs of
      order 1; at 10x the pre-activations and the first layer's gradients are 10x
      larger, and sigmoid/tanh units saturate. Integer values in 0..255 are named as
      raw pixels. Skipped when the first weighted layer is an `Embedding` or a
      normalization layer.
    * target_scale: with a regression loss (squared, absolute, Huber, log-cosh error),
      the targets have a root mean square above `target_scale_limit` (10). The output
      layer starts near 0 with weights of order 1, so the first losses and gradients
      scale with the targets (MSE: their square) and a learning rate that suits
      standardized targets makes the run diverge or crawl. Severity "information": most
      regressions in natural units train fine (the corpus' healthy runs with targets in
      the thousands), and when they do not, the exploding or stalled finding that
      follows ranks this check as its cause.
    * loss_mismatch: the loss does not fit the output activations: a softmax (or
      sigmoid) applied twice; a softmax over one unit (always 1, zero gradient);
      `from_logits=True` after a softmax/sigmoid output; `from_logits=False` on an
      output that is not a probability; cross-entropy on a ReLU output; a regression loss
      after a softmax (or after a sigmoid with 0/1 targets); binary cross-entropy after
      a multi-unit softmax; categorical cross-entropy after a multi-unit sigmoid.
      Read from the layers between the output and the last layer with weights (activation
      arguments, `Activation`/`Softmax`/`ReLU` layers) of a single-output model, and
      from the values of the outputs for models whose layers are not visible.

    Args:
        model: a built Keras model. The loss checks need it compiled (`model.loss`);
            without a loss they are skipped.
        x: one batch of inputs, as `model(x)` accepts it (an array or a structure of
            arrays).
        y: the matching targets (an array), or `None` to skip the target and loss checks.
        max_samples: at most this many samples of the batch are used. Default 256.
        input_scale_limit: root mean square of the first weighted layer's input above
            which `input_scale` is reported. Default 10.0.
        target_scale_limit: root mean square of regression targets above which
            `target_scale` is reported. Default 10.0.

    Returns:
        A list of `Finding` records (empty when nothing is wrong), data first, then the
        forward pass, scales and loss.

    Raises:
        ValueError: for an invalid argument, a `model` that is not a Keras model, or
            `x` and `y` with different numbers of samples.
        TypeError: for text in `x` where the model's input is not a string input, or text
            targets `y` for a compiled model (every Keras loss needs numeric targets).

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", name="out")])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> x, y = np.ones((8, 4), "float32"), np.eye(3, dtype="float32")[[0, 1] * 4]
        >>> [(f.kind, f.layers) for f in check_training_setup(model, x, y)]
        [('loss_mismatch', ('out',))]
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model of type {type(model).__name__}")
    max_samples = check_int("max_samples", max_samples, minimum=1)
    input_scale_limit = check_positive("input_scale_limit", input_scale_limit)
    target_scale_limit = check_positive("target_scale_limit", target_scale_limit)
    if x is None:
        raise ValueError("`x` must be a batch of inputs (an array or a structure of arrays). Received: x=None")
    x = keras.tree.map_structure(lambda a: _as_array(a)[:max_samples], x)
    n = len(keras.tree.flatten(x)[0])
    if y is not None:
        y = _as_array(y)[:max_samples]
        if len(y) != n:
            raise ValueError(
                f"`x` and `y` must have the same number of samples. Received: {n} inputs and {len(y)} targets "
                f"(y.shape={y.shape})"
            )
    _check_input_dtypes(model, x)
    if y is not None and getattr(model, "loss", None) is not None:
        # Every Keras loss casts its targets to float; text labels fail inside fit otherwise.
        check_numeric_tensor("y", y)
    findings: list[Finding] = []
    data_finite = _check_data(x, y, findings)
    forward = _Forward.run(model, x)
    if data_finite:
        _check_forward(model, forward, findings)
        _check_input_scale(model, forward, input_scale_limit, findings)
    loss = getattr(model, "loss", None)
    if y is None or loss is None or not _single_output(model, forward):
        return findings
    family, from_logits, loss_name = loss_family(loss)
    if family == "regression" and data_finite:
        check_target_scale(y, loss_name, target_scale_limit, findings)
    if data_finite and forward.prediction is not None:
        check_loss_fit(model, family, from_logits, loss_name, forward.prediction, y, findings)
        if forward.finite and not any(f.kind in ("non_finite_forward", "loss_mismatch") for f in findings):
            check_loss_value(model, y, forward.prediction, loss_name, findings)
    return findings


def _single_output(model: keras.Model, forward: _Forward) -> bool:
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None  # a subclassed model declares no outputs: judge by what its call returned
    if outputs:
        return len(outputs) == 1
    return forward.prediction is not None


# -- data ----------------------------------------------------------------------------------


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def _is_text(dtype: Any) -> bool:
    return getattr(dtype, "kind", None) in ("U", "S", "O") or str(dtype) in ("string", "object")


def _check_input_dtypes(model: keras.Model, x: Any) -> None:
    """Text in `x` for a model input that is not a string input: a TypeError naming both."""
    named = _named_inputs(x)
    if not any(_is_text(array.dtype) for _, array in named):
        return
    try:
        specs = list(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model not yet built: no declared inputs
        specs = []
    for index, (name, array) in enumerate(named):
        if not _is_text(array.dtype):
            continue
        expected = keras.backend.standardize_dtype(specs[index].dtype) if index < len(specs) else None
        if expected == "string":
            continue
        wanted = f"its input expects {expected}" if expected else "the model's layers compute with numbers"
        raise TypeError(
            f"`{name}` holds text (dtype {array.dtype}) but {wanted}: encode the features as numbers first "
            "(e.g. keras.layers.StringLookup or TextVectorization inside the model with keras.Input(dtype='string'), "
            "or sklearn.preprocessing.OrdinalEncoder)."
        )


def _check_data(x: Any, y: np.ndarray | None, findings: list[Finding]) -> bool:
    finite = True
    for name, array in [*_named_inputs(x), ("y", y)]:
        if array is None or not np.issubdtype(array.dtype, np.floating):
            continue
        bad = ~np.isfinite(array)
        if not bad.any():
            continue
        finite = False
        columns = np.flatnonzero(bad.reshape(len(array), -1).any(axis=0))
        findings.append(
            Finding(
                kind="non_finite_data",
                step=BEFORE_TRAINING,
                layers=(),
                evidence={
                    f"{name}.nan_count": int(np.isnan(array).sum()),
                    f"{name}.inf_count": int(np.isinf(array).sum()),
                    f"{name}.size": int(array.size),
                    f"{name}.columns_affected": int(columns.size),
                },
                cause=(
                    f"the batch's {name} contains NaN/inf values (flattened columns "
                    f"{_preview(columns)}); every loss and gradient computed from them is NaN"
                ),
                remedy=(
                    "clean the data before fit: find where the values come from (a division by a zero "
                    "standard deviation, log of 0, missing values read as NaN), impute or drop those "
                    "rows/columns (np.nan_to_num, sklearn SimpleImputer)"
                ),
            )
        )
    return finite


def _named_inputs(x: Any) -> list[tuple[str, np.ndarray]]:
    flat = keras.tree.flatten(x)
    if len(flat) == 1:
        return [("x", flat[0])]
    return [(f"x[{i}]", a) for i, a in enumerate(flat)]


def _preview(indices: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (f", ... ({indices.size} in all)" if indices.size > limit else "")


# -- the forward pass, layer by layer -------------------------------------------------------


class _Forward:
    """The outputs of every layer (and the inputs of each) on one batch."""

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.inputs: list[list[np.ndarray] | None] = []
        self.outputs: list[list[np.ndarray] | None] = []
        self.prediction: np.ndarray | None = None
        self.visible = False  # whether the per-layer values exist (Sequential / functional)

    @property
    def finite(self) -> bool:
        return self.prediction is not None and bool(np.isfinite(self.prediction).all())

    @classmethod
    def run(cls, model: keras.Model, x: Any) -> _Forward:
        forward = cls()
        layers, tensors, sizes = [], [], []
        try:
            for layer in model.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                layer_inputs = keras.tree.flatten(layer.input)
                layer_outputs = keras.tree.flatten(layer.output)
                layers.append(layer)
                sizes.append((len(layer_inputs), len(layer_outputs)))
                tensors.extend([*layer_inputs, *layer_outputs])
            inputs = model.inputs
            probe = keras.Model(inputs[0] if len(inputs) == 1 else inputs, tensors)
        except (AttributeError, ValueError, TypeError):
            probe = None  # a subclassed model: its layers' tensors do not exist
        values = None
        if probe is not None and layers:
            try:
                values = [_as_array(v) for v in keras.tree.flatten(probe(x, training=False))]
            except Exception:  # a graph the probe cannot replay (masks, shared state): the model alone
                values = None
        if values is not None:
            forward.visible = True
            forward.layers = layers
            at = 0
            for n_in, n_out in sizes:
                forward.inputs.append(values[at : at + n_in])
                forward.outputs.append(values[at + n_in : at + n_in + n_out])
                at += n_in + n_out
            producers = [
                i for i, layer in enumerate(layers) if len(model.outputs) == 1 and layer.output is model.outputs[0]
            ]
            prediction = forward.outputs[producers[0]][0] if producers else model(x, training=False)
        else:
            prediction = model(x, training=False)
        flat = keras.tree.flatten(prediction)
        forward.prediction = _as_array(flat[0]).astype("float64") if len(flat) == 1 else None
        return forward


def _check_forward(model: keras.Model, forward: _Forward, findings: list[Finding]) -> None:
    if forward.finite or (forward.prediction is None and not forward.visible):
        return
    for layer, inputs, outputs in zip(forward.layers, forward.inputs, forward.outputs):
        if all(np.isfinite(o).all() for o in outputs if np.issubdtype(o.dtype, np.floating)):
            continue
        if not all(np.isfinite(i).all() for i in inputs if np.issubdtype(i.dtype, np.floating)):
            continue  # inherited from an earlier layer (reported there)
        if isinstance(layer, keras.Model):
            inner = check_training_setup(layer, inputs[0] if len(inputs) == 1 else inputs)
            nested = [f for f in inner if f.kind == "non_finite_forward"]
            if nested:
                findings.append(
                    Finding(**{**nested[0].__dict__, "layers": tuple(f"{layer.name}/{n}" for n in nested[0].layers)})
                )
                return
        weights = [_as_array(w) for w in layer.weights]
        max_weight = max((float(np.max(np.abs(w))) for w in weights if w.size), default=0.0)
        max_input = max((float(np.max(np.abs(i))) for i in inputs if i.size), default=0.0)
        share = float(np.mean([np.mean(~np.isfinite(o)) for o in outputs]))
        findings.append(
            Finding(
                kind="non_finite_forward",
                step=BEFORE_TRAINING,
                layers=(layer.name,),
                evidence={
                    "max_abs_input": max_input,
                    "max_abs_weight": max_weight,
                    "nonfinite_output_share": share,
                },
                cause=(
                    f"the forward pass at the starting weights overflows in layer {layer.name!r}: its input is "
                    f"finite (largest |value| {max_input:.3g}) but its output has NaN/inf "
                    f"({share:.0%} of the values), with weights up to {max_weight:.3g}"
                ),
                remedy=(
                    "the loss is non-finite before any update, so a lower learning rate, gradient clipping or "
                    "restoring earlier weights cannot help: fix the starting point instead - use the default "
                    f"glorot/he initializers in {layer.name!r} and the layers before it (check "
                    "kernel_initializer), scale the inputs to order 1, or add normalization layers"
                ),
            )
        )
        return
    if forward.prediction is not None and not forward.finite:
        findings.append(
            Finding(
                kind="non_finite_forward",
                step=BEFORE_TRAINING,
                layers=(model.name,),
                evidence={"nonfinite_output_share": float(np.mean(~np.isfinite(forward.prediction)))},
                cause=(
                    f"the output of {model.name!r} at the starting weights has NaN/inf values; its layers are not "
                    "visible (a subclassed model), so the first one cannot be named"
                ),
                remedy=(
                    "lowering the learning rate or clipping cannot help: check the initializers and the "
                    "operations in call() (exp, log, division), and scale the inputs to order 1"
                ),
            )
        )


def _check_input_scale(model: keras.Model, forward: _Forward, limit: float, findings: list[Finding]) -> None:
    if not forward.visible:
        return
    for layer, inputs in zip(forward.layers, forward.inputs):
        if not layer.trainable_weights:
            continue
        if isinstance(layer, keras.layers.Embedding) or type(layer).__name__ in _NORMALIZING:
            return
        floats = [i for i in inputs if np.issubdtype(i.dtype, np.floating)]
        if not floats:
            return
        values = np.concatenate([i.reshape(-1) for i in floats]).astype("float64")
        rms = root_mean_square(values)
        if rms <= limit:
            return
        raw_pixels = values.min() >= 0 and 16 < values.max() <= 255 and np.all(values == np.round(values))
        per_column = np.sqrt(np.mean(np.square(floats[0].reshape(len(floats[0]), -1).astype("float64")), axis=0))
        what = "raw 0-255 pixel values" if raw_pixels else f"values of root mean square {rms:.3g}"
        remedy = (
            "divide the pixels by 255 (x / 255.0, or keras.layers.Rescaling(1 / 255) as the first layer)"
            if raw_pixels
            else "standardize each feature ((x - mean) / std from the training data; sklearn StandardScaler, or "
            "a keras.layers.Normalization layer adapted on the training data)"
        )
        findings.append(
            Finding(
                kind="input_scale",
                step=BEFORE_TRAINING,
                layers=(layer.name,),
                evidence={
                    "input_rms": rms,
                    "input_min": float(values.min()),
                    "input_max": float(values.max()),
                    "largest_feature_rms": float(per_column.max()),
                    "limit": limit,
                },
                cause=(
                    f"the input of {layer.name!r}, the first layer with weights, has {what} (limit {limit:g}); "
                    "initializers expect inputs of order 1, so pre-activations and gradients start "
                    f"{rms:.3g}x too large"
                ),
                remedy=remedy,
            )
        )
        return
