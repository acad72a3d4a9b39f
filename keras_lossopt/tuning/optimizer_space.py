"""The optimizer search space: which optimizer family a search may pick, and each one's own parameters.

Like the loss table (`search_space`), the optimizer table is data: an `OptimizerCandidate`
names a Keras optimizer class, its own learning-rate range and the `Param`s a search
varies. `choose_optimizer` declares the family as `hp.Choice("optimizer", names)` and every
family's learning rate and parameters inside `hp.conditional_scope("optimizer", [name])`,
for every family on every build, so a parameter is active exactly when its family is
chosen (the same rule as `choose_loss`).

The learning-rate range belongs to the family, not to the search: SGD needs rates about
ten times Adam's for the same step size on a normalized problem, and AdaGrad's rate is
divided by an accumulator that only grows.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any

from keras_lossopt._validation import check_choice
from keras_lossopt.tuning.search_space import Param

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "OPTIMIZER_CANDIDATES",
    "OptimizerCandidate",
    "build_optimizer",
    "choose_optimizer",
    "select_optimizers",
]

OPTIMIZER_HP = "optimizer"


@dataclasses.dataclass(frozen=True)
class OptimizerCandidate:
    """An optimizer family a search may choose, with its learning-rate range and tunable `Param`s.

    Attributes:
        name: the value of the `optimizer` hyperparameter (and the name in reports).
        optimizer: the `keras.optimizers` class name.
        learning_rate: the family's learning-rate `Param` (log-uniform).
        params: the other tunable constructor arguments.
    """

    name: str
    optimizer: str
    learning_rate: Param
    params: tuple[Param, ...] = ()

    @property
    def all_params(self) -> tuple[Param, ...]:
        """The learning rate followed by the family's own parameters."""
        return (self.learning_rate, *self.params)


def optimizer_hyperparameter_name(family: str, argument: str) -> str:
    """The keras-tuner name of a family's parameter, e.g. `"sgd/momentum"`."""
    return f"{family}/{argument}"


def _rate(low: float, high: float, default: float) -> Param:
    return Param("learning_rate", low=low, high=high, sampling="log", default=default)


# Ranges around each family's usual defaults (Keras' and the papers'): Adam's betas 0.8-0.95 and
# 0.99-0.9999 (Kingma & Ba 2015 use 0.9 / 0.999), AdamW's decoupled decay 1e-5..0.1 (Loshchilov &
# Hutter 2019 sweep 1e-4..0.1 normalized), RMSprop's rho 0.8-0.99 (Hinton's lecture uses 0.9),
# SGD momentum 0-0.99 with or without Nesterov, AdaGrad's initial accumulator 1e-3..1.
_ADAM_BETAS = (
    Param("beta_1", low=0.8, high=0.95, default=0.9),
    Param("beta_2", low=0.99, high=0.9999, sampling="reverse_log", default=0.999),
)
OPTIMIZER_CANDIDATES: dict[str, OptimizerCandidate] = {
    "adam": OptimizerCandidate("adam", "Adam", _rate(1e-4, 1e-2, 1e-3), _ADAM_BETAS),
    "adamw": OptimizerCandidate(
        "adamw",
        "AdamW",
        _rate(1e-4, 1e-2, 1e-3),
        (*_ADAM_BETAS, Param("weight_decay", low=1e-5, high=1e-1, sampling="log", default=4e-3)),
    ),
    "sgd": OptimizerCandidate(
        "sgd",
        "SGD",
        _rate(1e-3, 1e-1, 1e-2),
        (
            Param("momentum", low=0.0, high=0.99, default=0.9),
            Param("nesterov", kind="choice", values=(False, True), default=False),
        ),
    ),
    "rmsprop": OptimizerCandidate(
        "rmsprop", "RMSprop", _rate(1e-4, 1e-2, 1e-3), (Param("rho", low=0.8, high=0.99, default=0.9),)
    ),
    "adagrad": OptimizerCandidate(
        "adagrad",
        "Adagrad",
        _rate(1e-3, 1e-1, 1e-2),
        (Param("initial_accumulator_value", low=1e-3, high=1.0, sampling="log", default=0.1),),
    ),
}
"""Family name -> `OptimizerCandidate`: every optimizer a search can choose from."""

DEFAULT_OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
"""The families a search uses when none are given."""


def select_optimizers(families: Sequence[str | OptimizerCandidate] | None = None) -> list[OptimizerCandidate]:
    """The `OptimizerCandidate`s that names refer to.

    Args:
        families: names from `OPTIMIZER_CANDIDATES` and/or `OptimizerCandidate`s. Default:
            `DEFAULT_OPTIMIZERS`.

    Returns:
        The candidates, in the given order.

    Raises:
        ValueError: for an empty list or an unknown or repeated name (listing the known
            families and suggesting the closest).

    Examples:
        >>> [c.optimizer for c in select_optimizers(["sgd", "adam"])]
        ['SGD', 'Adam']
    """
    names = DEFAULT_OPTIMIZERS if families is None else families
    if isinstance(names, (str, OptimizerCandidate)):
        names = [names]
    if not names:
        raise ValueError("`optimizers` must name at least one optimizer family. Received an empty list.")
    resolved = []
    for item in names:
        if isinstance(item, OptimizerCandidate):
            resolved.append(item)
        elif isinstance(item, str) and item.lower() in OPTIMIZER_CANDIDATES:
            resolved.append(OPTIMIZER_CANDIDATES[item.lower()])
        else:
            message = f"Unknown optimizer family {item!r}. Known families: {sorted(OPTIMIZER_CANDIDATES)}."
            close = difflib.get_close_matches(str(item).lower(), list(OPTIMIZER_CANDIDATES), n=1)
            raise ValueError(f"{message} Did you mean {close[0]!r}?" if close else message)
    seen = [c.name for c in resolved]
    if len(set(seen)) != len(seen):
        raise ValueError(f"`optimizers` names a family twice. Received: {seen}")
    return resolved


def build_optimizer(candidate: OptimizerCandidate, values: dict[str, Any] | None = None):
    """Builds the optimizer of `candidate` with the given parameter values.

    Args:
        candidate: the `OptimizerCandidate`.
        values: argument -> value (`{"learning_rate": 0.01, "momentum": 0.9}`); missing
            ones take the candidate's defaults.

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    import keras

    kwargs = {p.argument: p.default for p in candidate.all_params if p.default is not None}
    kwargs.update(values or {})
    return getattr(keras.optimizers, candidate.optimizer)(**kwargs)


def choose_optimizer(hp, optimizers: Sequence[str | OptimizerCandidate] | None = None, *, default: str | None = None):
    """Registers the choice of optimizer family (and each family's parameters) in `hp`; returns the optimizer.

    The family is `hp.Choice("optimizer", names)`; each family's learning rate and
    parameters are declared as `"<family>/<argument>"` (e.g. `"sgd/momentum"`,
    `"adam/learning_rate"`) inside `hp.conditional_scope("optimizer", [family])`, for
    every family on every call, so a parameter is active exactly when its family is chosen.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        optimizers: family names (see `OPTIMIZER_CANDIDATES`) or `OptimizerCandidate`s.
            Default: `DEFAULT_OPTIMIZERS`.
        default: the family of the first trial. Default: the first family.

    Returns:
        The chosen, configured `keras.optimizers.Optimizer` (a new one on every call).

    Raises:
        ValueError: for an unknown or repeated family, or a `default` not among them.

    Examples:
        >>> import keras_tuner
        >>> hp = keras_tuner.HyperParameters()
        >>> optimizer = choose_optimizer(hp, ["adam", "sgd"], default="sgd")
        >>> type(optimizer).__name__, hp.get("sgd/momentum"), hp.is_active("adam/beta_1")
        ('SGD', 0.9, False)
    """
    resolved = select_optimizers(optimizers)
    names = [c.name for c in resolved]
    chosen = hp.Choice(OPTIMIZER_HP, names, default=check_choice("default", default, names) if default else None)
    values: dict[str, Any] = {}
    for candidate in resolved:
        with hp.conditional_scope(OPTIMIZER_HP, [candidate.name]):
            for param in candidate.all_params:
                value = param.register(hp, optimizer_hyperparameter_name(candidate.name, param.argument))
                if candidate.name == chosen:
                    values[param.argument] = value
    return build_optimizer(resolved[names.index(chosen)], values)
