"""`TrainingStart`: the model as it was when training began, shared by the callbacks of one `fit`.

A cause of a training problem names the *initial* weights (their scale against Glorot's,
the initial biases) and the relative size of the updates before the problem, never the
weights after a divergence, which describe the wreck. The first callback that asks
captures them (`training_start`); `rank_causes` (`causes.py`) reads them.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any

import keras
import numpy as np

from keras_lossopt._models import flat_layers
from keras_lossopt.callbacks.findings import Finding

__all__ = ["TrainingStart", "training_start"]


@dataclasses.dataclass(frozen=True)
class LayerScale:
    kernel_std: float
    glorot_std: float
    fan_in: int
    bias_mean: float | None


class TrainingStart:
    """The model as it was when training began, and the checks made then.

    Captured once per `fit` by the first callback that asks (`training_start`), so that a
    cause names the *initial* weights, not the weights after a divergence.

    Attributes:
        step: `optimizer.iterations` when captured.
        layer_scales: per layer with a kernel: kernel std, Glorot std, fan-in, mean bias
            (`kernel_scales`: a recurrent layer's recurrent kernel under
            `"<layer>/recurrent_kernel"`).
        setup_findings: findings of `check_training_setup` made for this fit (filled in by
            the callback that ran the checks).
        first_loss: the loss of the first batch of the fit (None until seen).
    """

    def __init__(self, model: keras.Model, token: Any = None):
        self.token = token
        optimizer = getattr(model, "optimizer", None)
        self.step = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0
        self.layer_scales: dict[str, LayerScale] = {}
        self._weights: dict[int, np.ndarray] = {}
        self._model = weakref.ref(model)
        self.ensure_captured()
        self.setup_findings: list[Finding] = []
        self.first_loss: float | None = None
        self._update_steps: list[np.ndarray] = []
        self._update_ratios: list[np.ndarray] = []

    def ensure_captured(self) -> None:
        """Captures the weights and kernel scales, unless done. On TensorFlow, `fit` builds a
        subclassed model that was never called in its first step's trace, after
        `on_train_begin`: such a model is captured at the first call that finds its
        variables (once the checks before training built it, or after its first step)."""
        model = self._model()
        if self._weights or model is None:
            return
        for variable in model.trainable_variables:
            self._weights[id(variable)] = np.array(keras.ops.convert_to_numpy(variable), dtype="float32")
        if self._weights:
            for layer in flat_layers(model):
                self.layer_scales.update(kernel_scales(layer))

    def record_updates(self, steps: np.ndarray, ratios: np.ndarray) -> None:
        """Keeps the measured per-step relative updates (`GradientMonitor` adds them at each read).

        Args:
            steps: `(k,)` the recorded steps.
            ratios: `(k,)` ||w_after - w_before|| / ||w_before|| over the whole model.
        """
        self.ensure_captured()
        self._update_steps.append(np.asarray(steps, dtype="int64").reshape(-1))
        self._update_ratios.append(np.asarray(ratios, dtype="float64").reshape(-1))

    def update_ratio_before(self, step: int, records: int = 10) -> float | None:
        """The median finite relative update of the last `records` recorded steps before `step`.

        The update of the step that blew up (and those after it) describes the wreck, not
        the learning rate that led there, so only earlier steps count.

        Args:
            step: the step of the finding.
            records: how many recorded steps before it to take the median of.

        Returns:
            The median ratio, or None when no finite one was recorded before `step`.
        """
        if not self._update_steps:
            return None
        steps = np.concatenate(self._update_steps)
        ratios = np.concatenate(self._update_ratios)
        keep = (steps < step) & np.isfinite(ratios)
        recent = ratios[keep][-records:]
        return float(np.median(recent)) if recent.size else None

    def largest_update_ratio_before(self, step: int) -> float | None:
        """The largest finite relative update recorded before `step` (None when none was).

        Args:
            step: the step of the finding.

        Returns:
            The largest ratio, or None.
        """
        if not self._update_steps:
            return None
        steps = np.concatenate(self._update_steps)
        ratios = np.concatenate(self._update_ratios)
        keep = (steps < step) & np.isfinite(ratios)
        return float(ratios[keep].max()) if keep.any() else None

    def moved(self, model: keras.Model) -> float | None:
        """||w_now - w_start|| / ||w_start|| over all trainable weights (None if unknown)."""
        change = norm = 0.0
        for variable in model.trainable_variables:
            start = self._weights.get(id(variable))
            if start is None:
                continue
            now = np.asarray(keras.ops.convert_to_numpy(variable), dtype="float64")
            change += float(np.sum(np.square(now - start)))
            norm += float(np.sum(np.square(start.astype("float64"))))
        if norm <= 0 or not math.isfinite(change):
            return None
        return math.sqrt(change / norm)


_STARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def training_start(model: keras.Model, token: Any = None) -> TrainingStart:
    """The `TrainingStart` of the current fit of `model`, captured on the first call.

    Callbacks of one `fit` share `self.params` (one dict), so passing
    `token=id(self.params)` makes the second callback reuse the first one's capture and a
    later fit take a new one.

    Args:
        model: the model being trained.
        token: identifies the fit; a different token (or optimizer step) captures anew.

    Returns:
        The shared `TrainingStart`.
    """
    start = _STARTS.get(model)
    optimizer = getattr(model, "optimizer", None)
    step = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0
    if start is None or start.token != token or start.step != step:
        start = TrainingStart(model, token)
        _STARTS[model] = start
    return start


def _kernels(layer: Any) -> list[tuple[str, Any, Any]]:
    """`(suffix, kernel, bias)` of each kernel of a layer: its own `kernel`, or a recurrent
    layer's cell kernel and recurrent kernel (LSTM, GRU, SimpleRNN keep them in `layer.cell`;
    a Bidirectional wrapper in its forward and backward layers)."""
    out = []
    for direction in ("forward", "backward"):
        inner = getattr(layer, f"{direction}_layer", None)
        if inner is not None and inner is not layer:
            out += [(f"/{direction}{suffix}", kernel, bias) for suffix, kernel, bias in _kernels(inner)]
    if out:
        return out
    owner = layer if getattr(layer, "kernel", None) is not None else getattr(layer, "cell", None)
    if owner is None or getattr(owner, "kernel", None) is None:
        return []
    out.append(("", owner.kernel, getattr(owner, "bias", None)))
    recurrent = getattr(owner, "recurrent_kernel", None)
    if recurrent is not None:
        out.append(("/recurrent_kernel", recurrent, None))
    return out


def kernel_scales(layer: Any) -> dict[str, LayerScale]:
    """The scale of each kernel of a layer, by name: `layer.name` for its (input) kernel and
    `"<layer.name>/recurrent_kernel"` for a recurrent layer's recurrent kernel.

    Args:
        layer: a Keras layer.

    Returns:
        `{name: LayerScale}`; empty for a layer without a kernel of rank 2 or more.
    """
    scales = {}
    for suffix, kernel, bias in _kernels(layer):
        scale = _scale(kernel, bias)
        if scale is not None:
            scales[layer.name + suffix] = scale
    return scales


def layer_scale(layer: Any) -> LayerScale | None:
    """Kernel std against Glorot's, fan-in and mean bias of a layer with a kernel (None otherwise).

    A recurrent layer's input kernel (in its cell) counts as its kernel; the first
    direction's for a Bidirectional wrapper.

    Args:
        layer: a Keras layer.

    Returns:
        The `LayerScale`, or None.
    """
    kernels = _kernels(layer)
    return _scale(kernels[0][1], kernels[0][2]) if kernels else None


def _scale(kernel: Any, bias: Any) -> LayerScale | None:
    if kernel is None or len(kernel.shape) < 2:
        return None
    w = np.asarray(keras.ops.convert_to_numpy(kernel), dtype="float64")
    receptive = int(np.prod(w.shape[:-2])) if w.ndim > 2 else 1
    fan_in, fan_out = w.shape[-2] * receptive, w.shape[-1] * receptive
    bias_mean = None
    if bias is not None:
        b = np.asarray(keras.ops.convert_to_numpy(bias), dtype="float64")
        bias_mean = float(b.mean()) if b.size else None
    return LayerScale(
        kernel_std=float(w.std()),
        glorot_std=math.sqrt(2.0 / (fan_in + fan_out)),
        fan_in=int(fan_in),
        bias_mean=bias_mean,
    )
