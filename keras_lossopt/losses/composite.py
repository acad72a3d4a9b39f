"""`CompositeLoss`: a weighted sum of named loss terms, with weights that can change during training.

A composite holds named terms (any `keras.losses.Loss`, a keras-lossopt or Keras loss
name, a config, or a function `(y_true, y_pred) -> per-sample loss`) and returns

    loss = sum_i sign_i * w_i * L_i(y_true, y_pred, sample_weight)

where each term `L_i` is reduced by its own contract with the composite's `reduction`
(a per-pixel cross-entropy and a per-image Dice each keep their masks and divisors), and
`sign_i` is -1 for rewards (`RewardTerm`) and +1 otherwise. With `reduction="none"` the
result has one value per sample: per-position terms are averaged over each sample's valid
positions and a batch-level term (one scalar, e.g. a batch Dice) is added to every sample.

The weights `w_i` are non-trainable `keras.Variable`s held, with one `keras.metrics.Mean`
per term (the unweighted term value), in a small `CompositeLossState` layer. A compiled
train step reads the variables, so assigning a new weight takes effect at the next step
without retracing, also with `jit_compile=True`. On backends whose compiled step only sees
the state that the model tracks (JAX), the state layer must be attached to the model:
`keras_lossopt.shaping.track_loss_terms(model)` does that, and every shaping callback
calls it in `set_model`. Attached, the per-term means also appear in the training and
validation logs as `loss_<term>` / `val_loss_<term>` (and so in `History`, `CSVLogger`,
TensorBoard).

Arithmetic (`LossArithmetic`, inherited by every keras-lossopt loss) builds the same object:
`FocalLoss() + 0.5 * DiceLoss()` equals
`CompositeLoss({"focal": FocalLoss(), "dice": DiceLoss()}, weights={"focal": 1.0, "dice": 0.5})`.
Term names come from the loss names without their `_loss` suffix. The operators belong to
keras-lossopt losses: a Keras loss joins with `+` next to one of them (`FocalLoss() +
keras.losses.MeanSquaredError()`), but `0.5 * keras.losses.MeanSquaredError()` needs
`CompositeLoss` (Keras' class defines no operators).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._reduction import REDUCTIONS, replicas_in_sync
from keras_lossopt._validation import check_arguments_accepted, check_choice, check_function, check_per_sample
from keras_lossopt.losses._composite_state import CompositeLossState
from keras_lossopt.losses._terms import (
    ARITHMETIC,
    check_term_weight,
    child_loss,
    own_mask,
    scale_factor,
    shown_operands,
    term_name_of,
)
from keras_lossopt.losses.contract import LossContract, merge_masks
from keras_lossopt.losses.registry import get as get_loss

__all__ = ["CompositeLoss", "FunctionTerm"]


class LossArithmetic:
    """`+` and `*` on losses: `FocalLoss() + 0.5 * DiceLoss()` is a `CompositeLoss`.

    A mixin of `LossFunctionBase` and `CompositeLoss`; 0 is the identity of `+`, so
    `sum(losses)` works.
    """

    def __add__(self, other):
        return CompositeLoss.from_operands(self, other)

    def __radd__(self, other):
        return CompositeLoss.from_operands(other, self)

    def __mul__(self, factor):
        return CompositeLoss.scaled(self, factor)

    __rmul__ = __mul__

    def __sub__(self, other):
        raise TypeError(f"Losses cannot be subtracted: {ARITHMETIC}. Received: {shown_operands(self, '-', other)}")

    def __rsub__(self, other):
        raise TypeError(f"Losses cannot be subtracted: {ARITHMETIC}. Received: {shown_operands(other, '-', self)}")

    def __neg__(self):
        raise TypeError(f"Losses cannot be negated: {ARITHMETIC}. Received: -{type(self).__name__}")

    def __truediv__(self, other):
        raise TypeError(f"Losses cannot be divided: {ARITHMETIC}. Received: {shown_operands(self, '/', other)}")

    def __rtruediv__(self, other):
        raise TypeError(f"Losses cannot be divided: {ARITHMETIC}. Received: {shown_operands(other, '/', self)}")


def _as_term(name: str, term: Any, reduction: Any) -> keras.losses.Loss:
    """A loss object for `term`, reduced with `reduction`."""
    if isinstance(term, CompositeLoss):
        raise ValueError(
            f"Term {name!r} is itself a CompositeLoss; combine composites with `+` (which merges their terms) "
            "or list their terms in one CompositeLoss."
        )
    if isinstance(term, (str, dict)):
        term = get_loss(term)
    if isinstance(term, keras.layers.Layer):
        raise ValueError(
            f"Term {name!r} is a Keras layer ({type(term).__name__}), not a loss: a term must be a "
            "keras.losses.Loss, a loss name or config, or a function (y_true, y_pred) -> per-sample loss "
            "(a cost of the model's output alone: OutputPenalty(fn))."
        )
    if not isinstance(term, keras.losses.Loss):
        if callable(term) and not isinstance(term, type):
            check_arguments_accepted(f"terms[{name!r}]", term, ["y_true", "y_pred"])
            return FunctionTerm(term, reduction=reduction, name=name)
        raise ValueError(
            f"Term {name!r} must be a keras.losses.Loss, a loss name or config, or a function "
            f"(y_true, y_pred) -> per-sample loss. Received: {term!r} of type {type(term).__name__}"
        )
    config = term.get_config()
    if config.get("reduction", reduction) == reduction:
        return term
    return type(term).from_config({**config, "reduction": reduction})


@keras.saving.register_keras_serializable(package="keras_lossopt")
class CompositeLoss(LossArithmetic, LossContract):
    """Weighted sum of named loss terms; weights can be scheduled or balanced during training.

    Use it to add secondary terms to a primary loss (a Dice term beside cross-entropy, a
    confidence penalty, an application cost, a reward) and to change their weights during
    training with `LossWeightScheduler` or the adaptive callbacks (`UncertaintyWeighting`,
    `DynamicWeightAveraging`, `GradNorm`).

    Formula:
        `loss = sum_i sign_i * w_i * L_i(y_true, y_pred, sample_weight)`, each `L_i`
        reduced with `reduction`; `sign_i = -1` for reward terms. With uncertainty
        weighting (Kendall et al. 2018) `loss = sum_i exp(-s_i) * L_i + s_i`.

    Args:
        terms: `{name: term}` or a list of terms (named after the losses). A term is a
            `keras.losses.Loss`, a loss name or config (`keras_lossopt.losses.get`), or a
            function `(y_true, y_pred) -> per-sample loss` (wrapped in `FunctionTerm`).
        weights: `{name: weight}` (or a list in the order of `terms`), each finite and >= 0.
            Missing names take the term's own `weight` attribute (e.g. `RewardTerm(fn, weight)`),
            else 1.0. Default None.
        reduction: Keras reduction, applied to every term. Default `"sum_over_batch_size"`.
        name: loss name. Default `"composite_loss"`.
        dtype: computation dtype. Default None.

    Returns:
        A scalar, or one value per sample for `reduction="none"`.

    Note:
        The per-term logs (`loss_<term>`, `val_loss_<term>`) and, on JAX, weight changes
        inside `fit` need the model to track the composite's state: every shaping callback
        does it; without one call `track_loss_terms(model)` after `compile`.

    Raises:
        ValueError: for no terms, a term that is not a loss or function, unknown or
            duplicate names, a negative or non-finite weight, or a nested composite.

    Examples:
        >>> import numpy as np
        >>> from keras_lossopt.losses import DiceLoss, FocalLoss
        >>> loss = FocalLoss() + 0.5 * DiceLoss()
        >>> loss.term_names, loss.weights_dict()
        (('focal', 'dice'), {'focal': 1.0, 'dice': 0.5})
        >>> y_true = np.array([[0, 1, 1, 2]])
        >>> probs = np.eye(3)[[[0, 1, 1, 2]]] * 0.8 + 0.2 / 3
        >>> parts = float(FocalLoss()(y_true, probs)) + 0.5 * float(DiceLoss()(y_true, probs))
        >>> bool(np.isclose(float(loss(y_true, probs)), parts))
        True

    References:
        Kendall, Gal, Cipolla (2018). Multi-task learning using uncertainty to weigh losses
        for scene geometry and semantics. CVPR.
    """

    def __init__(
        self,
        terms: Mapping[str, Any] | list[Any] | tuple[Any, ...],
        weights: Mapping[str, float] | list[float] | tuple[float, ...] | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "composite_loss",
        dtype: Any = None,
    ):
        check_choice("reduction", reduction, REDUCTIONS)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        named = self._named_terms(terms)
        self.terms = {term: _as_term(term, loss, reduction) for term, loss in named.items()}
        initial = self._initial_weights(weights, named)
        self.state = CompositeLossState(initial, name=f"{name}_state")
        self._assigned_weights: dict[str, float] = dict(initial)
        self._last_term_values: dict[str, Any] = {}

    @staticmethod
    def _named_terms(terms: Any) -> dict[str, Any]:
        if isinstance(terms, Mapping):
            named = dict(terms)
            for term in named:
                if not isinstance(term, str) or not term.isidentifier():
                    raise ValueError(
                        f"Term names must be identifiers (they become log names such as loss_<term>). "
                        f"Received: {term!r}"
                    )
        elif isinstance(terms, (list, tuple)):
            named = {}
            for loss in terms:
                base = term_name_of(loss if not isinstance(loss, str) else get_loss(loss))
                term, index = base, 2
                while term in named:
                    term, index = f"{base}_{index}", index + 1
                named[term] = loss
        else:
            raise ValueError(
                f"`terms` must be a dict {{name: loss}} or a list of losses. Received: {terms!r} "
                f"of type {type(terms).__name__}"
            )
        if not named:
            raise ValueError("`terms` must name at least one loss term. Received: an empty collection")
        return named

    @staticmethod
    def _initial_weights(weights: Any, named: Mapping[str, Any]) -> dict[str, float]:
        if weights is None:
            weights = {}
        elif isinstance(weights, (list, tuple)):
            if len(weights) != len(named):
                raise ValueError(
                    f"`weights` has {len(weights)} values for {len(named)} terms {list(named)}. Received: {weights!r}"
                )
            weights = dict(zip(named, weights))
        elif not isinstance(weights, Mapping):
            raise ValueError(f"`weights` must be a dict {{term: weight}} or a list. Received: {weights!r}")
        unknown = [term for term in weights if term not in named]
        if unknown:
            check_choice("weights key", unknown[0], list(named))
        return {
            term: check_term_weight(term, weights[term] if term in weights else getattr(loss, "weight", 1.0))
            for term, loss in named.items()
        }

    # -- introspection ---------------------------------------------------------------------

    @property
    def term_names(self) -> tuple[str, ...]:
        """The term names, in order."""
        return tuple(self.terms)

    def weights_dict(self) -> dict[str, float]:
        """Current term weights as Python floats (reads the variables)."""
        weights = {}
        for term, variable in self.state.term_weights.items():
            value = ops.convert_to_numpy(variable)
            # The variable is float32; report the float that was assigned when it still holds it,
            # so configs keep 0.7 rather than 0.699999988 (in-graph updates report the variable).
            given = self._assigned_weights.get(term)
            weights[term] = given if given is not None and np.float32(given) == value else float(value)
        return weights

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Assigns new term weights; a compiled step uses them from its next call.

        Args:
            weights: `{term: weight}` for some or all terms, each finite and >= 0.
        """
        for term, value in weights.items():
            check_choice("term", term, self.term_names)
            value = check_term_weight(term, value)
            self.state.term_weights[term].assign(value)
            self._assigned_weights[term] = value

    @property
    def last_term_values(self) -> dict[str, Any]:
        """`{term: scalar}` of the latest call: tensors of the step being traced (what GradNorm differentiates)."""
        return dict(self._last_term_values)

    def sign(self, term: str) -> float:
        """-1.0 for a reward term (subtracted), else 1.0."""
        return float(getattr(self.terms[term], "sign", 1.0))

    @property
    def uncertainty_weighting(self) -> bool:
        """Whether the terms are weighted by learned log-variances (see `UncertaintyWeighting`)."""
        return bool(self.state.log_variances)

    # -- the loss: the reduction step of the loss contract -----------------------------------

    def term_values(self, y_true, y_pred, sample_weight=None, mask=None) -> dict[str, Any]:
        """Each term's unweighted value, reduced by the term with the composite's reduction.

        Args:
            y_true: targets.
            y_pred: predictions.
            sample_weight: optional weights, passed to every term.
            mask: optional input mask (the Keras mask of `y_pred`), passed to every term.

        Returns:
            `{term: value}`: scalars, or one value per sample for `reduction="none"`.
        """
        values = {}
        for term, loss in self.terms.items():
            value = ops.cast(child_loss(loss, y_true, y_pred, sample_weight, mask), self.dtype)
            if self.reduction in (None, "none"):
                value = self._per_sample(term, loss, value, y_true, y_pred, mask)
            values[term] = value
        return values

    def _per_sample(self, term, loss, value, y_true, y_pred, mask):
        """One value per sample from a term's unreduced values (see the module docstring)."""
        if len(value.shape) == 0:
            return ops.broadcast_to(value, ops.shape(y_pred)[:1])
        if value.shape[0] is not None and y_pred.shape[0] is not None and value.shape[0] != y_pred.shape[0]:
            raise ValueError(
                f"Term {term!r} returned values of shape {tuple(value.shape)}, which cannot be reduced to one "
                f"value per sample of y_pred with shape {tuple(y_pred.shape)}."
            )
        axes = tuple(range(1, len(value.shape)))
        if not axes:
            return value
        valid = merge_masks(value.dtype, mask, own_mask(loss, y_true, y_pred))
        if valid is None:
            return ops.mean(value, axis=axes)
        valid = ops.broadcast_to(valid, ops.shape(value))
        return ops.sum(value, axis=axes) / ops.maximum(ops.sum(valid, axis=axes), 1.0)

    def combine(self, values: Mapping[str, Any]):
        """The weighted sum of term values (as in the formula of the class docstring).

        Args:
            values: `{term: value}` as returned by `term_values`.

        Returns:
            The composite loss.
        """
        total = None
        for term, value in values.items():
            if self.uncertainty_weighting:
                log_variance = ops.cast(self.state.log_variances[term], value.dtype)
                part = ops.exp(-log_variance) * value + log_variance
            else:
                part = ops.cast(self.state.term_weights[term], value.dtype) * value
                if self.sign(term) < 0:
                    part = -part
            total = part if total is None else total + part
        return total

    def _record(self, values: Mapping[str, Any], y_pred) -> None:
        """Updates the per-term means (unweighted; undoing Keras' per-replica loss scaling)."""
        replicas, _ = replicas_in_sync()
        batch = ops.cast(ops.shape(y_pred)[0], "float32")
        latest = {}
        for term, value in values.items():
            scalar = ops.mean(value) if len(value.shape) else value
            latest[term] = scalar
            self.state.term_trackers[term].update_state(scalar * float(replicas), sample_weight=batch)
        self._last_term_values = latest

    def standardize_inputs(self, y_true, y_pred):
        # Each term standardizes for itself; y_true may be None when every term reads y_pred only.
        y_pred = ops.convert_to_tensor(y_pred)
        return (y_true if y_true is None else ops.convert_to_tensor(y_true)), y_pred

    def compute_reduced_loss(self, y_true, y_pred, sample_weight, mask):
        values = self.term_values(y_true, y_pred, sample_weight, mask)
        self._record(values, y_pred)
        return self.combine(values)

    def call(self, y_true, y_pred):
        """Per-sample weighted sum without `sample_weight` or masks (the `reduction="none"` values)."""
        values = {}
        for term, loss in self.terms.items():
            value = ops.cast(child_loss(loss, y_true, y_pred, None, None), self.dtype)
            values[term] = self._per_sample(term, loss, value, y_true, y_pred, None)
        return self.combine(values)

    # -- arithmetic: FocalLoss() + 0.5 * DiceLoss() --------------------------------------

    @classmethod
    def from_operands(cls, left: Any, right: Any) -> Any:
        """`left + right` for losses and composites (0 is the identity, so `sum(losses)` works)."""
        if isinstance(left, (int, float)) and left == 0:
            return right
        if isinstance(right, (int, float)) and right == 0:
            return left
        for operand in (left, right):
            if not isinstance(operand, keras.losses.Loss):
                raise TypeError(
                    f"Only losses can be added to a loss; multiply by a number to weight one. "
                    f"Received: {operand!r} of type {type(operand).__name__}"
                )
        terms: dict[str, Any] = {}
        weights: dict[str, float] = {}
        for operand in (left, right):
            parts = (
                [(t, operand.terms[t], w) for t, w in operand.weights_dict().items()]
                if isinstance(operand, CompositeLoss)
                else [(term_name_of(operand), operand, float(getattr(operand, "weight", 1.0)))]
            )
            for base, loss, weight in parts:
                term, index = base, 2
                while term in terms:
                    term, index = f"{base}_{index}", index + 1
                terms[term], weights[term] = loss, weight
        reduction = left.reduction if isinstance(left, CompositeLoss) else "sum_over_batch_size"
        return cls(terms, weights, reduction=reduction)

    @classmethod
    def scaled(cls, loss: Any, factor: Any) -> CompositeLoss:
        """`factor * loss`: a composite whose weights are multiplied by `factor` (>= 0)."""
        factor = scale_factor(factor)
        factor = check_term_weight("<scale factor>", factor)
        if isinstance(loss, CompositeLoss):
            weights = {t: w * factor for t, w in loss.weights_dict().items()}
            return cls(dict(loss.terms), weights, reduction=loss.reduction, name=loss.name)
        term = term_name_of(loss)
        return cls({term: loss}, {term: float(getattr(loss, "weight", 1.0)) * factor})

    # -- serialization ---------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "terms": {term: keras.saving.serialize_keras_object(loss) for term, loss in self.terms.items()},
            "weights": self.weights_dict(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["terms"] = {
            term: keras.saving.deserialize_keras_object(loss) if isinstance(loss, dict) else loss
            for term, loss in config["terms"].items()
        }
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_lossopt")
class FunctionTerm(LossArithmetic, LossContract):
    """A loss term from a function `(y_true, y_pred) -> per-sample loss`.

    `CompositeLoss` wraps plain functions in it. The function's output is checked at each
    call (one value per sample).

    Args:
        fn: the function; saved by name, so register it with
            `keras.saving.register_keras_serializable` to reload without `custom_objects`.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default: the function's name.
        dtype: computation dtype. Default None.

    Raises:
        TypeError: for a `fn` that cannot take two positional arguments (`y_true`, `y_pred`).
        ValueError: when `fn` is not a function, or returns a scalar or values without the batch axis.

    Examples:
        >>> import numpy as np
        >>> from keras import ops
        >>> def abs_error(y_true, y_pred):
        ...     return ops.mean(ops.abs(y_true - y_pred), axis=-1)
        >>> float(FunctionTerm(abs_error)(np.zeros((2, 3)), np.ones((2, 3))))
        1.0
    """

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None):
        fn = check_function("fn", fn)
        check_arguments_accepted(
            "fn", fn, ["y_true", "y_pred"], hint="; for a cost of the prediction alone use OutputPenalty(fn)."
        )
        super().__init__(name=name or getattr(fn, "__name__", "function_term"), reduction=reduction, dtype=dtype)
        self.fn = fn

    def call(self, y_true, y_pred):
        return check_per_sample(self.name, self.fn(y_true, y_pred), y_pred)

    def get_config(self):
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}
