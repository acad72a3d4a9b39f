"""Adapter: where the loss search extends keras-tuner beyond its documented extension points.

Checked against keras-tuner 1.4.8 (tests/test_private_adapters.py fails when a behaviour
below changes):

* **Starting points** (the advisor's picks as the first trials). RandomSearch and
  BayesianOptimization get them through the public extension point
  `Oracle.populate_space`: a point is served while it has not been tried (no trial of
  `oracle.trials` holds its values, so a resumed search skips it), then the oracle's own
  method continues; a Bayesian search counts them among its `num_initial_points`.
  Hyperband decides in `populate_space` which bracket and round a trial belongs to, so
  there the points are served where its first rounds draw a new configuration: the
  private `Oracle._random_values`.
* **Our oracles inside keras-tuner's tuner classes.** `LossSearchBayesian` is a
  `keras_tuner.BayesianOptimization` (so `isinstance` checks and the class' methods hold)
  whose oracle serves starting points; keras-tuner's tuner constructors build their own
  oracle, so `init_tuner` calls the base `keras_tuner.Tuner.__init__` with ours, which is
  all the subclasses' constructors do besides building the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner
import numpy as np


def _within(hp, value):
    """`value` moved into the range (or options) of keras-tuner hyperparameter `hp`."""
    if isinstance(hp, keras_tuner.engine.hyperparameters.Choice):
        return value if value in hp.values else hp.default
    if isinstance(hp, (keras_tuner.engine.hyperparameters.Float, keras_tuner.engine.hyperparameters.Int)):
        return type(hp.default)(np.clip(value, hp.min_value, hp.max_value))
    return value


class StartingPoints:
    """Oracle mixin: serve `starting_points` (hyperparameter values) before the oracle's own choices."""

    def __init__(self, *args, starting_points: Sequence[Mapping[str, Any]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.starting_points = [dict(point) for point in starting_points]

    def _complete(self, point: Mapping[str, Any]) -> dict[str, Any]:
        # Walk the space as keras-tuner does, so that conditional parameters are active
        # exactly when their loss is chosen; unspecified ones take their defaults.
        hps = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = _within(hp, point[hp.name]) if hp.name in point else hp.default
        return hps.values

    def next_starting_point(self) -> dict[str, Any] | None:
        """The first starting point no trial has tried yet, or None."""
        # Hyperband adds its own "tuner/..." values to a trial's; they are no configuration.
        tried = [
            {name: value for name, value in trial.hyperparameters.values.items() if not name.startswith("tuner/")}
            for trial in self.trials.values()
        ]
        for point in self.starting_points:
            values = self._complete(point)
            if values not in tried:
                return values
        return None

    def populate_space(self, trial_id):
        values = self.next_starting_point()
        if values is None:
            return super().populate_space(trial_id)
        return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": values}


class BayesianOracle(StartingPoints, keras_tuner.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian oracle, starting from given points."""


class RandomOracle(StartingPoints, keras_tuner.oracles.RandomSearchOracle):
    """keras-tuner's random-search oracle, starting from given points."""


class HyperbandOracle(StartingPoints, keras_tuner.oracles.HyperbandOracle):
    """keras-tuner's Hyperband oracle; its first rounds draw from the starting points."""

    def populate_space(self, trial_id):
        return keras_tuner.oracles.HyperbandOracle.populate_space(self, trial_id)

    def _random_values(self):
        values = self.next_starting_point()
        return super()._random_values() if values is None else values


def init_tuner(tuner, oracle, hypermodel, **kwargs) -> None:
    """Initializes a subclass of a keras-tuner tuner class with our `oracle`."""
    keras_tuner.Tuner.__init__(tuner, oracle=oracle, hypermodel=hypermodel, **kwargs)
