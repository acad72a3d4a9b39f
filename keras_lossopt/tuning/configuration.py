"""A trial's whole training objective as data: written to a file, rebuilt for `compile`.

`configuration_from_hyperparameters(hypermodel, hp)` turns a trial's hyperparameters (the
recommended trial of `keras-lossopt search`, or `tuner.get_best_hyperparameters()[0]`) into
a JSON-ready dict with one entry per searched part:

* `loss`: the candidate's name, its searched parameters and the loss' config
  (`keras_lossopt.losses.serialize`, loadable by `keras_lossopt.losses.get`);
* `optimizer`: the family, its parameters and the optimizer's config
  (`keras.optimizers.serialize`);
* `regularization`: the L2 strength of the `WeightPenalty` term, the label smoothing the
  regularization search added, and the Dropout rate (None when that part was not searched,
  a strength None when it did not apply: a loss without label smoothing, a model without
  Dropout layers);
* `label_smoothing`: the label smoothing the trial trained with, wherever it came from (a
  loss parameter or the regularization), for reports.

`compile_arguments(configuration, model)` rebuilds the loss and the optimizer: the weight
penalty needs the model it penalizes, so the configuration stores its strength and the
penalty is bound to the given model; the Dropout rate is set on the model's Dropout layers
(before `compile`, when Keras reads it). The rebuilt compile gives the trial's loss value and
optimizer config (tested).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from keras_lossopt.tuning.validation import FoldScores, cross_validate_compiled

__all__ = [
    "CONFIGURATION_FORMAT",
    "compile_arguments",
    "configuration_from_hyperparameters",
    "configured_loss",
    "cross_validate_configuration",
]

CONFIGURATION_FORMAT = 1
"""The version of the configuration's layout (its `format` entry)."""

_REGULARIZATION_PREFIX = "regularization/"
_PARTS = ("loss", "optimizer", "regularization")


def split_hyperparameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Sorts a trial's active hyperparameter values into the parts of the search (no Keras needed).

    Args:
        values: `trial.hyperparameters.values` (keras-tuner keeps only the active ones).

    Returns:
        A dict: `loss` (the candidate), `loss_parameters` (`{argument: value}`), `optimizer`
        (the family, None when the optimizer was not searched), `learning_rate` (Adam's
        searched rate or the family's), `optimizer_parameters` (the family's other
        parameters), `regularization` (`{"l2", "label_smoothing", "dropout"}` for the keys
        present, None when not searched).
    """
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    family = values.pop("optimizer", None)
    learning_rate = values.pop("learning_rate", None)
    optimizer_parameters: dict[str, Any] = {}
    regularization: dict[str, Any] | None = None
    loss_parameters: dict[str, Any] = {}
    loss = values.pop("loss", None)
    for name, value in values.items():
        if family is not None and name.startswith(f"{family}/"):
            argument = name[len(family) + 1 :]
            if argument == "learning_rate":
                learning_rate = value
            else:
                optimizer_parameters[argument] = value
        elif name.startswith(_REGULARIZATION_PREFIX):
            regularization = regularization or {}
            regularization[name[len(_REGULARIZATION_PREFIX) :]] = value
        else:
            loss_parameters[name.split("/", 1)[-1]] = value
    return {
        "loss": loss,
        "loss_parameters": loss_parameters,
        "optimizer": family,
        "learning_rate": learning_rate,
        "optimizer_parameters": optimizer_parameters,
        "regularization": regularization,
    }


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (JSON)."""
    return value.item() if hasattr(value, "item") else value


def _without_name(serialized: dict[str, Any]) -> dict[str, Any]:
    # Keras numbers the names of the optimizers made in one process ("sgd", "sgd_1", ...): not a setting.
    return {**serialized, "config": {k: v for k, v in serialized["config"].items() if k != "name"}}


def configuration_from_hyperparameters(hypermodel, hp) -> dict[str, Any]:
    """The whole training objective a trial's hyperparameters describe, as a JSON-ready dict.

    Args:
        hypermodel: the `LossSearchHyperModel` of the search.
        hp: the trial's `keras_tuner.HyperParameters` (e.g. `trial.hyperparameters`).

    Returns:
        A dict with `format`, `task`, `space` (the searched parts), `loss`, `optimizer`,
        `regularization`, `label_smoothing` and `hyperparameters` (see the module docstring);
        `compile_arguments` rebuilds the compile from it.

    Raises:
        ValueError: when `hp` holds no `loss`, or misses a part the hypermodel searches (a
            trial of another search space).

    Examples:
        >>> import keras, keras_tuner
        >>> from keras_lossopt.tuning import LossSearchHyperModel
        >>> hypermodel = LossSearchHyperModel(
        ...     lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        ...     candidates=["focal"], search_optimizer=["sgd"])
        >>> hp = keras_tuner.HyperParameters()
        >>> _ = hypermodel.build(hp)
        >>> configuration = configuration_from_hyperparameters(hypermodel, hp)
        >>> configuration["loss"]["name"], configuration["optimizer"]["family"]
        ('focal', 'sgd')
    """
    import keras

    from keras_lossopt import losses
    from keras_lossopt.tuning.optimizer_space import OPTIMIZER_HP

    values = dict(hp.values)
    parts = split_hyperparameters(values)
    space = ["loss"]
    if parts["loss"] is None:
        raise ValueError(f"The hyperparameters hold no `loss`: not a loss search's trial. Received: {values}")
    if hypermodel.optimizers is not None:
        space.append("optimizer")
        if parts["optimizer"] is None:
            raise ValueError(
                f"The hypermodel searches the optimizer but the hyperparameters hold no `{OPTIMIZER_HP}` "
                f"(a trial of a search without it?). Received: {values}"
            )
    if hypermodel.search_regularization:
        space.append("regularization")
        if parts["regularization"] is None or "l2" not in parts["regularization"]:
            raise ValueError(
                "The hypermodel searches the regularization but the hyperparameters hold no "
                f"'{_REGULARIZATION_PREFIX}l2' (a trial of a search without it?). Received: {values}"
            )
    loss = hypermodel.loss_from_hyperparameters(hp)
    optimizer = hypermodel.optimizer_from_hyperparameters(hp)
    family = parts["optimizer"] or "adam"
    optimizer_parameters = {"learning_rate": float(optimizer.get_config()["learning_rate"])}
    optimizer_parameters.update({k: _plain(v) for k, v in parts["optimizer_parameters"].items()})
    regularization = None
    if "regularization" in space:
        searched = parts["regularization"]
        regularization = {
            "l2": float(searched["l2"]),
            "label_smoothing": None if "label_smoothing" not in searched else float(searched["label_smoothing"]),
            "dropout": None if "dropout" not in searched else float(searched["dropout"]),
        }
    configuration = {
        "format": CONFIGURATION_FORMAT,
        "task": hypermodel.task,
        "space": space,
        "loss": {
            "name": parts["loss"],
            "parameters": {k: _plain(v) for k, v in parts["loss_parameters"].items()},
            "config": losses.serialize(loss),
        },
        "optimizer": {
            "family": family,
            "parameters": optimizer_parameters,
            "config": _without_name(keras.optimizers.serialize(optimizer)),
        },
        "regularization": regularization,
        "hyperparameters": {k: _plain(v) for k, v in values.items()},
    }
    smoothing = configured_loss(configuration).get_config().get("label_smoothing")
    configuration["label_smoothing"] = None if smoothing is None else float(smoothing)
    return configuration


def _check_configuration(configuration: Mapping[str, Any]) -> None:
    if not isinstance(configuration, Mapping):
        raise ValueError(
            f"`configuration` must be a dict (e.g. json.load of configuration.json). Received: {type(configuration)}"
        )
    if configuration.get("format") != CONFIGURATION_FORMAT:
        raise ValueError(
            f"`configuration` has format {configuration.get('format')!r}; this version reads format "
            f"{CONFIGURATION_FORMAT} (written by `configuration_from_hyperparameters`)."
        )
    for part in _PARTS:
        if part not in configuration:
            raise ValueError(f"`configuration` has no {part!r} entry. Received keys: {sorted(configuration)}")
    for part in ("loss", "optimizer"):
        if not isinstance(configuration[part], Mapping) or "config" not in configuration[part]:
            raise ValueError(f"`configuration[{part!r}]` must hold the {part}'s `config`.")


def configured_loss(configuration: Mapping[str, Any]):
    """The configuration's loss with its label smoothing, without the weight penalty (which needs a model).

    Args:
        configuration: a dict from `configuration_from_hyperparameters` (or its JSON file).

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ValueError: for a dict that is not such a configuration.
    """
    from keras_lossopt import losses
    from keras_lossopt.tuning.regularization_space import with_label_smoothing

    _check_configuration(configuration)
    loss = losses.get(copy.deepcopy(dict(configuration["loss"]["config"])))
    smoothing = (configuration["regularization"] or {}).get("label_smoothing")
    return loss if smoothing is None else with_label_smoothing(loss, smoothing)


def compile_arguments(configuration: Mapping[str, Any], model) -> dict[str, Any]:
    """The `loss` and `optimizer` to compile `model` with, as the configuration's trial compiled its model.

    Sets the configuration's Dropout rate on the model's Dropout layers (Keras reads it when
    the step is traced, so call this before `compile`) and binds the weight penalty to
    `model`. Typical use::

        configuration = json.load(open("configuration.json"))
        model = build_model()
        model.compile(**compile_arguments(configuration, model), metrics=[...])

    Args:
        configuration: a dict from `configuration_from_hyperparameters` (or its JSON file).
        model: the model to compile (the same architecture as the trial's).

    Returns:
        `{"loss": ..., "optimizer": ...}`: a `CompositeLoss` of the loss and its
        `weight_penalty` term when the regularization was searched, else the loss; a fresh
        `keras.optimizers.Optimizer`.

    Raises:
        ValueError: for a dict that is not such a configuration, or a Dropout rate for a
            model without Dropout layers.
    """
    import keras

    from keras_lossopt.tuning.regularization_space import penalized_loss, set_dropout_rate

    loss = configured_loss(configuration)
    regularization = configuration["regularization"] or {}
    if regularization.get("dropout") is not None and not set_dropout_rate(model, regularization["dropout"]):
        raise ValueError(
            f"The configuration sets a Dropout rate of {regularization['dropout']} but the model "
            f"{getattr(model, 'name', '')!r} has no keras.layers.Dropout layer: build the trial's architecture."
        )
    if regularization.get("l2") is not None:
        loss = penalized_loss(loss, regularization["l2"], model, configuration["loss"].get("name", ""))
    optimizer = keras.optimizers.deserialize(copy.deepcopy(dict(configuration["optimizer"]["config"])))
    return {"loss": loss, "optimizer": optimizer}


def cross_validate_configuration(
    make_model: Callable,
    configuration,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    folds: int = 3,
    epochs: int = 30,
    batch_size: int = 64,
    objective: str | None = None,
    seed: int = 0,
    balanced: bool = True,
) -> FoldScores:
    """The cross-validated score of a whole configuration (loss, optimizer, regularization).

    The same folds, early stopping and best-epoch score as a search with `folds` and
    `seed`, for a configuration from `configuration_from_hyperparameters` (or one with a
    part left out, to measure what that part adds).

    Args:
        make_model: returns a fresh, uncompiled model with logits out.
        configuration: the configuration (`tuning.configuration`); its `task` is used.
        x: inputs (training and validation data together).
        y: targets in the form the loss takes (`(N, 1)` floats for binary).
        num_classes: classes of the task (2 for binary).
        folds: number of folds, at least 2. Default 3.
        epochs: the most epochs per fold. Default 30.
        batch_size: Default 64.
        objective: the metric, e.g. `"val_macro_f1"`. Default: the task's search objective.
        seed: seed of the folds and of the weights. Default 0.
        balanced: weigh every class equally in the validation folds. Default True.

    Returns:
        A `FoldScores`.
    """
    configured_loss(configuration)  # a bad configuration fails before the first fold trains

    def compile_fold(model):
        return compile_arguments(configuration, model)

    return cross_validate_compiled(
        make_model, compile_fold, x, y, task=configuration["task"], num_classes=num_classes, folds=folds,
        epochs=epochs, batch_size=batch_size, objective=objective, seed=seed, balanced=balanced,
    )  # fmt: skip
