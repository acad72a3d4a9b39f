"""A trial's configuration written as JSON and rebuilt: the same loss value and optimizer as the trial's compile."""

import json

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import tuning
from keras_lossopt.shaping import CompositeLoss, WeightPenalty, track_loss_terms
from keras_lossopt.tuning.configuration import split_hyperparameters


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = np.repeat([0, 1, 2], [12, 8, 4])
    x[:, 0] += y
    return x, y


def build_with_dropout():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    hidden = keras.layers.Dropout(0.1, name="drop")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def build_binary():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(1)])


# (task, candidates, searched parts, the trial's hyperparameter values, the label smoothing it trains with)
TRIALS = [
    (
        "multiclass",
        ["crossentropy", "focal", "logit_adjusted"],
        {"optimizer": ["adam", "sgd"], "regularization": True},
        {"loss": "focal", "focal/gamma": 1.5, "focal/label_smoothing": 0.05, "optimizer": "sgd",
         "sgd/learning_rate": 0.03, "sgd/momentum": 0.8, "sgd/nesterov": True, "regularization/l2": 3e-3,
         "regularization/dropout": 0.3},
        0.05,
    ),
    (
        "multiclass",
        ["crossentropy", "logit_adjusted"],
        {"optimizer": ["adamw", "rmsprop"], "regularization": False},
        {"loss": "logit_adjusted", "logit_adjusted/tau": 1.3, "optimizer": "adamw", "adamw/learning_rate": 2e-3,
         "adamw/weight_decay": 1e-2, "adamw/beta_1": 0.85},
        0.0,  # logit adjustment takes label smoothing; not searched here, so its default
    ),
    (
        "multiclass",
        ["crossentropy", "focal"],
        {"optimizer": None, "regularization": False},
        {"loss": "crossentropy", "learning_rate": 4e-3},
        None,  # Keras' sparse categorical cross-entropy takes none
    ),
    (
        "binary",
        ["crossentropy", "focal"],
        {"optimizer": ["adagrad"], "regularization": True},
        {"loss": "focal", "focal/gamma": 2.5, "regularization/label_smoothing": 0.1, "optimizer": "adagrad",
         "adagrad/learning_rate": 0.05, "regularization/l2": 1e-5},
        0.1,  # from the regularization search: binary focal does not search it itself
    ),
]  # fmt: skip


def hypermodel_and_trial(task, candidates, parts, values, smoothing=None):
    builder = build_binary if task == "binary" else build_with_dropout
    hypermodel = tuning.LossSearchHyperModel(
        builder,
        task=task,
        candidates=candidates,
        class_counts=[12, 8, 4] if task == "multiclass" else [20, 4],
        search_optimizer=parts["optimizer"] or False,
        search_regularization=parts["regularization"],
        jit_compile=False,
    )
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.values[name] = value  # the trial's values, as the oracle sets them before build
    model = hypermodel.build(hp)
    assert {k: v for k, v in hp.values.items() if k in values} == values  # build kept the trial's values
    return hypermodel, hp, model, builder


def settings(optimizer):
    # Keras numbers the names of the optimizers made in one process ("sgd", "sgd_1"): not a setting.
    return {k: v for k, v in optimizer.get_config().items() if k != "name"}


def labels_for(task, y):
    return (y > 0).astype("float32")[:, None] if task == "binary" else y


@pytest.mark.parametrize(
    ("task", "candidates", "parts", "values", "smoothing"),
    TRIALS,
    ids=["focal-sgd-penalty-dropout", "logit_adjusted-adamw", "crossentropy-adam", "binary-focal-adagrad-penalty"],
)
def test_the_written_configuration_rebuilds_the_trials_loss_value_and_optimizer(
    data, task, candidates, parts, values, smoothing
):
    hypermodel, hp, trial_model, builder = hypermodel_and_trial(task, candidates, parts, values)
    configuration = json.loads(json.dumps(tuning.configuration_from_hyperparameters(hypermodel, hp)))
    rebuilt = builder()
    rebuilt.set_weights(trial_model.get_weights())
    rebuilt.compile(**tuning.compile_arguments(configuration, rebuilt), jit_compile=False)
    x, y = data
    y = labels_for(task, y)
    expected = trial_model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert rebuilt.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-6)
    assert settings(rebuilt.optimizer) == settings(trial_model.optimizer)
    if parts["regularization"]:
        assert isinstance(rebuilt.loss, CompositeLoss)
        assert rebuilt.loss.terms["weight_penalty"].l2 == pytest.approx(values["regularization/l2"])
    # The parts, as the report shows them.
    assert configuration["loss"]["name"] == values["loss"]
    assert configuration["space"] == ["loss"] + [p for p in ("optimizer", "regularization") if parts[p]]
    family = values.get("optimizer", "adam")
    assert configuration["optimizer"]["family"] == family
    rate = values.get(f"{family}/learning_rate", values.get("learning_rate"))
    assert configuration["optimizer"]["parameters"]["learning_rate"] == pytest.approx(rate)
    assert configuration["label_smoothing"] == (None if smoothing is None else pytest.approx(smoothing))
    if "regularization/dropout" in values:
        assert rebuilt.get_layer("drop").rate == pytest.approx(values["regularization/dropout"])
        assert configuration["regularization"]["dropout"] == pytest.approx(values["regularization/dropout"])


def test_a_loss_only_trial_needs_no_regularization_entry_and_keeps_adams_fixed_rate():
    hypermodel = tuning.LossSearchHyperModel(
        build_with_dropout, candidates=["focal"], tune_learning_rate=False, learning_rate=5e-3
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    configuration = tuning.configuration_from_hyperparameters(hypermodel, hp)
    assert configuration["regularization"] is None and configuration["space"] == ["loss"]
    assert configuration["optimizer"]["parameters"] == {"learning_rate": pytest.approx(5e-3)}
    model = build_with_dropout()
    arguments = tuning.compile_arguments(configuration, model)
    assert type(arguments["loss"]).__name__ == "FocalLoss" and model.get_layer("drop").rate == 0.1


def test_the_chosen_optimizer_and_penalty_survive_save_and_load(tmp_path, data):
    hypermodel, hp, _, builder = hypermodel_and_trial(*TRIALS[0])
    configuration = tuning.configuration_from_hyperparameters(hypermodel, hp)
    model = builder()
    model.compile(**tuning.compile_arguments(configuration, model), jit_compile=False)
    x, y = data
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "chosen.keras")
    loaded = keras.models.load_model(tmp_path / "chosen.keras")
    assert type(loaded.optimizer).__name__ == "SGD"
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 3
    penalty = loaded.loss.terms["weight_penalty"]
    assert isinstance(penalty, WeightPenalty) and penalty.l2 == pytest.approx(3e-3)
    track_loss_terms(loaded)  # binds the reloaded penalty to the reloaded model
    expected = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-6)


def test_split_hyperparameters_sorts_the_parts():
    parts = split_hyperparameters(
        {"loss": "focal", "focal/gamma": 2.0, "optimizer": "sgd", "sgd/learning_rate": 0.01, "sgd/momentum": 0.9,
         "regularization/l2": 1e-4, "tuner/epochs": 3}
    )  # fmt: skip
    assert parts == {
        "loss": "focal",
        "loss_parameters": {"gamma": 2.0},
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "optimizer_parameters": {"momentum": 0.9},
        "regularization": {"l2": 1e-4},
    }
    assert split_hyperparameters({"loss": "crossentropy", "learning_rate": 3e-3})["optimizer"] is None
