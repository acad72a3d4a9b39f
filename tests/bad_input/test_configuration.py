"""A search configuration that is not one, or does not fit the model, fails naming what is wrong."""

import keras
import keras_tuner
import pytest

from keras_lossopt.cli.part_gains import measure_part_gains
from keras_lossopt.cli.space import parse_space
from keras_lossopt.tuning import LossSearchHyperModel, compile_arguments, configuration_from_hyperparameters
from tests.bad_input.cases import BadInputCase, assert_bad_input


def plain_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def good_configuration(**search):
    hypermodel = LossSearchHyperModel(plain_model, candidates=["focal"], **search)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    return configuration_from_hyperparameters(hypermodel, hp)


def changed(**entries):
    return {**good_configuration(search_regularization=True), **entries}


def with_dropout():
    configuration = good_configuration(search_regularization=True)
    configuration["regularization"] = {**configuration["regularization"], "dropout": 0.3}
    return configuration


def hp_of_another_space():
    loss_only = LossSearchHyperModel(plain_model, candidates=["focal"])
    hp = keras_tuner.HyperParameters()
    loss_only.build(hp)
    return hp


CASES = [
    BadInputCase("not a dict", lambda: compile_arguments("configuration.json", plain_model()), mentions=("dict",)),
    BadInputCase(
        "another format", lambda: compile_arguments(changed(format=2), plain_model()), mentions=("format 2", "format 1")
    ),
    BadInputCase(
        "no optimizer entry",
        lambda: compile_arguments({k: v for k, v in changed().items() if k != "optimizer"}, plain_model()),
        mentions=("no 'optimizer' entry", "Received keys"),
    ),
    BadInputCase(
        "loss without its config",
        lambda: compile_arguments(changed(loss={"name": "focal"}), plain_model()),
        mentions=(r"configuration\['loss'\]", "config"),
    ),
    BadInputCase(
        "dropout for a model without Dropout",
        lambda: compile_arguments(with_dropout(), plain_model()),
        mentions=("Dropout rate of 0.3", "no keras.layers.Dropout layer"),
    ),
    BadInputCase(
        "a trial of a search without the optimizer",
        lambda: configuration_from_hyperparameters(
            LossSearchHyperModel(plain_model, candidates=["focal"], search_optimizer=True), hp_of_another_space()
        ),
        mentions=("searches the optimizer", "no `optimizer`"),
    ),
    BadInputCase(
        "a trial of a search without the regularization",
        lambda: configuration_from_hyperparameters(
            LossSearchHyperModel(plain_model, candidates=["focal"], search_regularization=True), hp_of_another_space()
        ),
        mentions=("searches the regularization", "regularization/l2"),
    ),
    BadInputCase(
        "no loss",
        lambda: configuration_from_hyperparameters(
            LossSearchHyperModel(plain_model, candidates=["focal"]), keras_tuner.HyperParameters()
        ),
        mentions=("no `loss`",),
    ),
    BadInputCase(
        "gains of folds of different lengths are not judged",
        lambda: measure_part_gains(
            good_configuration(search_optimizer=["sgd"]),
            lambda step: [0.8] if step["optimizer"]["family"] == "adam" else [0.8, 0.9],
        )["gains"][0]["verdict"],
        error=None,
        check_result=lambda verdict: verdict == "not judged (one score each)",
    ),
    BadInputCase("space: unknown part", lambda: parse_space("loss,dropout"), mentions=("'dropout'", "allowed parts")),
    BadInputCase(
        "space: case and order",
        lambda: parse_space(" Optimizer , LOSS "),
        error=None,
        check_result=lambda parts: parts == ["loss", "optimizer"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_configuration_bad_input(case):
    assert_bad_input(case)
