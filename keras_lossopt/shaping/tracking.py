"""How a model sees the state of its composite losses: `track_loss_terms` and the callback base.

`model.compile(loss=...)` does not tell a loss which model uses it, and a compiled step
only updates the state that the model tracks (on JAX a variable the model does not track
is a constant of the compiled step). `track_loss_terms(model)` finds every `CompositeLoss`
the model was compiled with (one loss, or one per output in a list or dict) and attaches
their `CompositeLossState` layers to the model in one container layer,
`model.loss_term_states` (functional and Sequential models allow attaching layers outside
the graph of layers; a subclassed model must do it before it is built; a Sequential model's
input layer holds the container too, see `_sequential_state_holder`). From then on:

* the term weights are non-trainable variables of the model (in `model.non_trainable_variables`),
  and uncertainty weighting's log-variances trainable ones;
* every `WeightPenalty` term penalizes this model's kernels;
* the per-term means are model metrics: `loss_<term>` in the training logs, `val_loss_<term>`
  in the validation logs, reset at each epoch like Keras' own trackers.

Every shaping callback calls it in `set_model`, so passing the callback to `fit` is enough.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_lossopt._validation import check_choice
from keras_lossopt.losses.composite import CompositeLoss
from keras_lossopt.losses.weight_penalty import WeightPenalty
from keras_lossopt.shaping._keras_model import sequential_state_holder
from keras_lossopt.shaping.terms import RewardTerm

__all__ = ["TermWeightCallback", "composite_losses", "track_loss_terms"]

CONTAINER_ATTRIBUTE = "loss_term_states"


class _LossTermStates(keras.layers.Layer):
    """Container layer for the `CompositeLossState`s attached to a model."""

    def __init__(self, name: str = "loss_term_states"):
        super().__init__(name=name)
        self.states = []
        #: term -> (the fit's History, the callback, its description): who sets each weight.
        self.weight_owners: dict[str, tuple[Any, int, str]] = {}
        self.built = True

    @property
    def metrics(self):
        # The states' per-term means reach the model once, through its walk over every sublayer
        # (Layer.metrics is recursive, and so is the model's walk: the container adds nothing).
        return []

    def call(self, *args, **kwargs):  # pragma: no cover - state only
        raise NotImplementedError("loss_term_states holds state and is not called.")


def composite_losses(model: keras.Model) -> list[CompositeLoss]:
    """The `CompositeLoss` objects a compiled model uses (single loss, list or dict of losses).

    Args:
        model: a compiled Keras model.

    Returns:
        The composites, in output order.

    Raises:
        ValueError: when the model is not compiled.
    """
    if not getattr(model, "compiled", False):
        raise ValueError("The model must be compiled (with a CompositeLoss) before loss terms can be tracked.")
    losses = model.loss
    if isinstance(losses, dict):
        losses = list(losses.values())
    elif not isinstance(losses, (list, tuple)):
        losses = [losses]
    found, seen = [], set()
    for loss in losses:
        if isinstance(loss, CompositeLoss) and id(loss) not in seen:
            found.append(loss)
            seen.add(id(loss))
    return found


def track_loss_terms(model: keras.Model) -> list[CompositeLoss]:
    """Attaches the state of the model's composite losses to the model (idempotent).

    Args:
        model: a compiled model.

    Returns:
        The model's composites.

    Raises:
        ValueError: when the model is not compiled, two composites share a term name (their
            logs would collide), a NumPy reward term meets `jit_compile=True` on TensorFlow, or the model
            cannot take new layers (a built subclassed model).
    """
    composites = composite_losses(model)
    if getattr(model, "jit_compile", False) and keras.backend.backend() == "tensorflow":
        numpy_rewards = [
            term
            for composite in composites
            for term, loss in composite.terms.items()
            if isinstance(loss, RewardTerm) and not loss.differentiable
        ]
        if numpy_rewards:
            raise ValueError(
                f"Reward terms {numpy_rewards} call NumPy (differentiable=False), which XLA cannot compile: compile "
                f"the model with jit_compile=False. Received: jit_compile={model.jit_compile!r}"
            )
    owner: dict[str, str] = {}
    for composite in composites:
        for term in composite.term_names:
            if term in owner:
                raise ValueError(
                    f"Term name {term!r} is used by two composite losses ({owner[term]!r} and {composite.name!r}); "
                    "term names must be unique across a model's losses because they name the logs "
                    "(loss_<term>) and the weights."
                )
            owner[term] = composite.name
    container = getattr(model, CONTAINER_ATTRIBUTE, None)
    if container is None:
        container = _LossTermStates()
        try:
            setattr(model, CONTAINER_ATTRIBUTE, container)
        except ValueError as error:
            raise ValueError(
                "Cannot attach the composite losses' state to this model (a built subclassed model does not "
                "accept new layers). Call keras_lossopt.shaping.track_loss_terms(model) after compile and "
                f"before the model is built, or assign composite.state in the model's __init__. Keras said: {error}"
            ) from None
    holder = sequential_state_holder(model)
    if holder is not None and getattr(holder, CONTAINER_ATTRIBUTE, None) is not container:
        setattr(holder, CONTAINER_ATTRIBUTE, container)
    attached = {id(state) for state in container.states}
    for composite in composites:
        if id(composite.state) not in attached:
            container.states.append(composite.state)
        for loss in composite.terms.values():
            if isinstance(loss, WeightPenalty):
                loss.bind(model)
    return composites


class TermWeightCallback(keras.callbacks.Callback):
    """Base of the callbacks that change term weights; tracks the terms and logs the weights.

    Subclasses read `self.composites` / `self.term_index` after `set_model` and assign
    weights through `self.assign(term, value)`. At each epoch end the current weights go
    into the logs as `weight_<term>` (History, CSVLogger and TensorBoard see them when they
    come after this callback in the list; Keras' `History` always does).
    """

    def __init__(self) -> None:
        super().__init__()
        self.composites: list[CompositeLoss] = []
        self.term_index: dict[str, CompositeLoss] = {}

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.composites = track_loss_terms(model)
        if not self.composites:
            raise ValueError(
                f"{type(self).__name__} needs a model compiled with CompositeLoss terms (one composite, or one per "
                "output: keras_lossopt.shaping.task_losses({...})). Received: loss="
                f"{getattr(model, 'loss', None)!r}"
            )
        self.term_index = {term: composite for composite in self.composites for term in composite.term_names}
        self._claim_weights(model)

    #: Whether the callback weighs terms through the composites' log-variances (UncertaintyWeighting).
    weighs_by_uncertainty = False

    def managed_terms(self) -> list[str]:
        """The terms whose weight this callback sets (default: every term of the model's composites)."""
        return self.term_names

    def _describe(self) -> str:
        return type(self).__name__

    def _claim_weights(self, model: keras.Model) -> None:
        """One weight, one owner: refuses a second callback that sets the same term weight in one fit.

        Two callbacks writing one weight would silently override each other (a schedule's 0
        replaced by uncertainty weighting's exp(-s), or by GradNorm's next step). A fit is
        told apart by its `History` (Keras' CallbackList sets `model.history` before it calls
        each callback's `set_model`), so a callback used in an earlier fit does not count.
        """
        container = getattr(model, CONTAINER_ATTRIBUTE)
        run = getattr(model, "history", None)
        for term in self.managed_terms():
            if self.term_index[term].uncertainty_weighting and not self.weighs_by_uncertainty:
                raise ValueError(
                    f"Term {term!r} is weighted by uncertainty (an UncertaintyWeighting added log-variances to its "
                    f"composite), which ignores the term weights {self._describe()} would set. Compile a new "
                    "CompositeLoss to weight its terms another way."
                )
            owner = container.weight_owners.get(term)
            if owner is not None and owner[0] is run and owner[1] != id(self):
                raise ValueError(
                    f"Term {term!r} would have its weight set by two callbacks, {owner[2]} and {self._describe()}, "
                    "and one would silently override the other. Use one weight method per term: schedule the terms "
                    "that no adaptive method weights (e.g. put them in another output's composite), or let the "
                    "adaptive method alone set them."
                )
            container.weight_owners[term] = (run, id(self), self._describe())

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Checks that the model trains and logs the composites' state (see `_sequential_state_holder`)."""
        trainable = {id(v) for v in self.model.trainable_variables}
        every = {id(v) for v in self.model.variables}
        for composite in self.composites:
            learned = {id(v) for v in composite.state.log_variances.values()}
            hidden = [
                v.name for v in composite.state.weights if id(v) not in (trainable if id(v) in learned else every)
            ]
            if hidden:
                raise ValueError(
                    f"The state of composite loss {composite.name!r} ({hidden}) is not among the model's "
                    f"{'trainable ' if learned else ''}variables, so it would not be trained or logged (a frozen "
                    "layer holding it?). On a keras.Sequential model start it with keras.Input(shape): the state "
                    "then attaches to the input layer, which no freezing reaches."
                )

    def on_train_end(self, logs: dict | None = None) -> None:
        container = getattr(self.model, CONTAINER_ATTRIBUTE, None)
        if container is not None:
            for term in self.managed_terms():
                if container.weight_owners.get(term, (None, None))[1] == id(self):
                    del container.weight_owners[term]

    @property
    def term_names(self) -> list[str]:
        """All term names of the model's composites, in order."""
        return list(self.term_index)

    def check_terms(self, argument: str, names: Any) -> None:
        """Raises a ValueError naming the closest known term for each unknown name."""
        for name in names:
            check_choice(f"{argument} term", name, self.term_names)

    def sync_state(self) -> None:
        """Makes the model's variables current before they are read or assigned in a callback.

        On JAX, `fit` carries the model state outside the variables between steps;
        `model.jax_state_sync()` writes it back and makes the next step read the variables
        again, so an assigned weight is used. Other backends update the variables in place.
        """
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def current_weights(self) -> dict[str, float]:
        """`{term: weight}` now (the effective weight `exp(-s)` under uncertainty weighting)."""
        self.sync_state()
        weights = {}
        for composite in self.composites:
            if composite.uncertainty_weighting:
                for term, log_variance in composite.state.log_variances.items():
                    weights[term] = float(keras.ops.exp(-keras.ops.convert_to_numpy(log_variance)))
            else:
                weights.update(composite.weights_dict())
        return weights

    def assign(self, term: str, value: float) -> None:
        """Sets one term's weight (a variable assignment; the compiled step is not retraced)."""
        self.sync_state()
        self.term_index[term].set_weights({term: value})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for term, weight in self.current_weights().items():
            logs[f"weight_{term}"] = weight
