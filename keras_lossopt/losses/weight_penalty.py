"""`WeightPenalty`: an L1/L2 penalty on a model's kernels as a term of a `CompositeLoss`.

Keras' `kernel_regularizer` adds `l1 * sum|W| + l2 * sum W^2` of each regularized kernel to
the total loss, outside the compiled loss: its strength is fixed when the layer is built
and it never shows in the logs. As a loss term the same penalty has a name
(`loss_weight_penalty` in the logs), a weight that a `LossWeightScheduler` or an adaptive
weighting can change during training, and strengths a search can vary without touching the
model builder.

A loss does not know the model it trains, so the term is bound to one: `track_loss_terms`
(which every shaping callback calls, and which a composite needs after `compile` anyway)
binds every `WeightPenalty` of the model's composites, and `penalty.bind(model)` does it by
hand. The kernels are looked up at each trace, so a model built by its first `fit` step
(a subclassed model, a Sequential model without `keras.Input`) is penalized too.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_lossopt._validation import check_non_negative
from keras_lossopt.losses.contract import LossContract

__all__ = ["WeightPenalty"]

# Keras names the main weight matrix of Dense, EinsumDense, Conv* and their kind "kernel";
# `kernel_regularizer` regularizes exactly that variable, so the term picks the same ones.
KERNEL_NAME = "kernel"


def _walk_layers(layer: Any):
    yield layer
    for sublayer in getattr(layer, "layers", None) or []:
        yield from _walk_layers(sublayer)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class WeightPenalty(LossContract):
    """L1 and/or L2 penalty on the trainable kernels of a model (all, or those of chosen layers).

    Formula:
        `penalty = sum over kernels W of (l1 * sum|W| + l2 * sum W^2)`, the value of Keras'
        `keras.regularizers.L1L2(l1, l2)` as a `kernel_regularizer` on the same layers. The
        value does not depend on the batch: with any reduction and any `sample_weight` the
        reduced term is `penalty` (added once to the loss, as Keras adds its regularization
        losses); `reduction="none"` gives `penalty` for every sample.

    Args:
        l1: L1 strength, >= 0. Default 0.0.
        l2: L2 strength, >= 0. Default 0.0. At least one strength must be positive.
        layers: names of the layers whose kernels are penalized (a layer's own kernel and
            those of its sublayers); None penalizes every trainable kernel. Default None.
        weight: default weight in a `CompositeLoss`, >= 0. Default 1.0 (the penalty is
            exactly Keras' regularization loss).
        reduction: Keras reduction (see the formula). Default `"sum_over_batch_size"`.
        name: loss name; the term and its log are named after it. Default `"weight_penalty"`.
        dtype: computation dtype. Default None.

    Raises:
        ValueError: for a negative or non-numeric strength, both strengths 0, or `layers`
            not a list of names; at the first call, for a penalty not bound to a model, an
            unknown layer name or a layer without a trainable kernel.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
        >>> penalty = WeightPenalty(l1=0.1, l2=0.5).bind(model)
        >>> round(float(penalty(None, model(keras.ops.ones((1, 2))))), 4)  # 0.1 * 2 + 0.5 * 2
        1.2
    """

    # The penalty reads the weights, not y_pred: it says nothing about what y_pred is.
    loss_family = "other"

    def __init__(
        self,
        l1=0.0,
        l2=0.0,
        layers=None,
        weight=1.0,
        reduction="sum_over_batch_size",
        name="weight_penalty",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.l1 = check_non_negative("l1", l1)
        self.l2 = check_non_negative("l2", l2)
        if self.l1 == 0 and self.l2 == 0:
            raise ValueError("WeightPenalty needs `l1` > 0 or `l2` > 0. Received: l1=0.0, l2=0.0")
        if layers is not None:
            if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
                raise ValueError(f"`layers` must be a non-empty list of layer names, or None. Received: {layers!r}")
            if not all(isinstance(item, str) for item in layers):
                raise ValueError(f"`layers` must hold layer names (strings). Received: {layers!r}")
            layers = list(layers)
        self.layers = layers
        self.weight = check_non_negative("weight", weight)
        self._model_ref = None

    def bind(self, model: keras.Model) -> WeightPenalty:
        """Makes the term penalize the kernels of `model`; returns the term.

        Args:
            model: the model whose kernels are penalized.

        Returns:
            This term.

        Raises:
            ValueError: when `model` is not a `keras.Model`.
        """
        if not isinstance(model, keras.Model):
            raise ValueError(f"WeightPenalty.bind needs a keras.Model. Received: {type(model).__name__}")
        self._model_ref = weakref.ref(model)
        return self

    def bound_model(self) -> keras.Model | None:
        """The bound model, or None.

        A method, not a property: Keras' saving walks a loss' public attributes, and a model
        reached from its own loss would be walked forever.
        """
        return None if self._model_ref is None else self._model_ref()

    def kernels(self) -> list[Any]:
        """The trainable kernel variables the term penalizes now.

        Raises:
            ValueError: when the term is not bound, names an unknown layer, or a named layer
                has no trainable kernel.
        """
        model = self.bound_model()
        if model is None:
            raise ValueError(
                f"WeightPenalty {self.name!r} is not bound to a model: call "
                "keras_lossopt.shaping.track_loss_terms(model) after compile (every shaping callback does), "
                "or penalty.bind(model)."
            )
        if self.layers is None:
            return [v for v in model.trainable_variables if v.name == KERNEL_NAME]
        by_name = {layer.name: layer for layer in _walk_layers(model)}
        kernels = []
        for layer_name in self.layers:
            if layer_name not in by_name:
                known = sorted(name for name in by_name if name != model.name)
                raise ValueError(
                    f"WeightPenalty layers: no layer named {layer_name!r} in model {model.name!r}. Layers: {known}"
                )
            own = [v for v in by_name[layer_name].trainable_variables if v.name == KERNEL_NAME]
            if not own:
                raise ValueError(
                    f"WeightPenalty layers: layer {layer_name!r} has no trainable kernel (a frozen layer, or one "
                    "without weight matrix)."
                )
            kernels.extend(v for v in own if all(v is not seen for seen in kernels))
        return kernels

    def penalty(self):
        """The penalty of the bound model's current kernels (a scalar in the term's dtype)."""
        total = ops.zeros((), dtype=self.dtype)
        for kernel in self.kernels():
            values = ops.cast(kernel, self.dtype)
            if self.l1:
                total = total + self.l1 * ops.sum(ops.abs(values))
            if self.l2:
                total = total + self.l2 * ops.sum(ops.square(values))
        return total

    def standardize_inputs(self, y_true, y_pred):
        # Only the batch size of y_pred is read; y_true may be None.
        return y_true, ops.convert_to_tensor(y_pred)

    def compute_reduced_loss(self, y_true, y_pred, sample_weight, mask):
        if self.reduction in (None, "none"):
            return self.call(y_true, y_pred)
        return self.penalty()

    def call(self, y_true, y_pred):
        return ops.broadcast_to(self.penalty(), ops.shape(y_pred)[:1])

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2, "layers": self.layers, "weight": self.weight}
