"""The state of a `CompositeLoss`: term weights, optional log-variances and per-term running means.

The state is a small layer, so that a model can track it (`keras_lossopt.shaping.track_loss_terms`):
its variables then belong to the model's state (a compiled step reads the current weights
without retracing, also on JAX) and its metrics to the model's metrics (`loss_<term>` logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras


class TermMean(keras.metrics.Mean):
    """Running mean of one term's unweighted value; restarts every epoch, so it is not saved."""

    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass


class CompositeLossState(keras.layers.Layer):
    """The state of one `CompositeLoss`: term weights, optional log-variances, per-term means.

    A layer so that a model can track it (`track_loss_terms`): its variables then belong to
    the model's state and its metrics to the model's metrics. It has no `call`.

    Args:
        weights: `{term name: initial weight}`.
        name: layer name.
    """

    def __init__(self, weights: Mapping[str, float], name: str = "composite_loss_state"):
        super().__init__(name=name)
        self.term_names = tuple(weights)
        self.term_weights = {
            term: self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                dtype="float32",
                name=f"weight_{term}",
            )
            for term, value in weights.items()
        }
        self.term_trackers = {term: TermMean(name=f"loss_{term}") for term in self.term_names}
        self.log_variances: dict[str, Any] = {}
        # A layer without inputs: built once its variables exist (Keras rebuilds unbuilt layers).
        self.built = True

    def add_log_variances(self, initial: float = 0.0) -> dict[str, Any]:
        """Creates (once) one trainable log-variance per term for uncertainty weighting."""
        if not self.log_variances:
            self.log_variances = {
                term: self.add_weight(
                    shape=(),
                    initializer=keras.initializers.Constant(initial),
                    trainable=True,
                    dtype="float32",
                    name=f"log_variance_{term}",
                )
                for term in self.term_names
            }
        return self.log_variances

    def save_own_variables(self, store):
        """Saves the weights, then the log-variances: the order `load_own_variables` reads.

        Keras' default order is trainable variables first, which put the log-variances where
        the weights are read back (a reloaded model got weights such as -0.04).
        """
        for index, variable in enumerate([*self.term_weights.values(), *self.log_variances.values()]):
            store[str(index)] = variable

    def load_own_variables(self, store):
        """Loads the weights (and log-variances) saved with a model; keeps the config's when none were saved.

        A `.keras` file may hold a composite's config without its state (the `DiceCELoss`
        and `DiceFocalLoss` files of tests/shaping/data do): the weights then come from the
        config alone.
        """
        saved = len(store.keys())
        if saved == 0:
            return
        if saved > len(self.term_names) and not self.log_variances:
            self.add_log_variances()
        own = list(self.term_weights.values()) + list(self.log_variances.values())
        if saved != len(own):
            raise ValueError(
                f"{self.name} expected {len(own)} saved variables (weights of {list(self.term_names)}"
                f"{' and log-variances' if self.log_variances else ''}), found {saved}."
            )
        for index, variable in enumerate(own):
            variable.assign(store[str(index)])

    def call(self, *args, **kwargs):  # pragma: no cover - state only
        raise NotImplementedError("CompositeLossState holds state and is not called.")
