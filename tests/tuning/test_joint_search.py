"""LossSearchHyperModel with the optimizer and the regularization searched: one conditional space, advisor starts."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import tuning
from keras_lossopt.shaping import CompositeLoss, WeightPenalty


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = np.repeat([0, 1, 2], [50, 30, 10])
    x[:, 0] += y
    return x, y


def build_with_dropout():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.1, name="drop")(keras.layers.Dense(8, activation="relu", name="hidden")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def build_plain():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def test_the_joint_space_is_conditional_and_reaches_the_compiled_model():
    hypermodel = tuning.LossSearchHyperModel(
        build_with_dropout,
        candidates=["crossentropy", "focal", "poly1"],
        search_optimizer=["adam", "sgd"],
        search_regularization=True,
        jit_compile=False,
    )
    hp = keras_tuner.HyperParameters()
    hp.Choice("loss", ["crossentropy", "focal", "poly1"], default="crossentropy")
    hp.Choice("optimizer", ["adam", "sgd"], default="sgd")
    model = hypermodel.build(hp)
    assert type(model.optimizer).__name__ == "SGD"
    assert "learning_rate" not in hp.values  # the family's own rate replaces Adam's
    assert hp.is_active("sgd/momentum") and not hp.is_active("adam/beta_1")
    assert isinstance(model.loss, CompositeLoss) and model.loss.term_names[-1] == "weight_penalty"
    penalty = model.loss.terms["weight_penalty"]
    assert isinstance(penalty, WeightPenalty) and penalty.l2 == pytest.approx(hp.get("regularization/l2"))
    assert penalty.bound_model() is model
    assert model.get_layer("drop").rate == pytest.approx(hp.get("regularization/dropout"))
    # Focal and Poly-1 already search label smoothing for multiclass; cross-entropy (sparse) takes none.
    assert hypermodel.smoothable == []


def test_dropout_is_searched_only_when_the_builder_has_dropout_and_label_smoothing_where_the_loss_takes_it():
    hypermodel = tuning.LossSearchHyperModel(
        build_plain, task="multiclass", candidates=["crossentropy"], search_regularization=True, jit_compile=False
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    assert "regularization/dropout" not in hp.values
    binary = tuning.LossSearchHyperModel(
        lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
        task="binary",
        candidates=["crossentropy", "focal"],
        search_regularization=True,
        jit_compile=False,
    )
    assert binary.smoothable == ["crossentropy", "focal"]  # Keras' BCE and the sigmoid focal loss take it
    hp = keras_tuner.HyperParameters()
    hp.Choice("loss", ["crossentropy", "focal"], default="focal")
    hp.Float("regularization/label_smoothing", 0.0, 0.2, default=0.1)
    model = binary.build(hp)
    assert model.loss.terms["focal"].get_config()["label_smoothing"] == pytest.approx(0.1)


def test_a_joint_search_runs_from_the_advisors_starting_points(tmp_path, data):
    x, y = data
    hypermodel = tuning.LossSearchHyperModel(
        build_with_dropout,
        candidates=["crossentropy", "logit_adjusted"],
        class_counts=np.bincount(y),
        search_optimizer=True,
        search_regularization=True,
        jit_compile=False,
    )
    advice = tuning.advise(y, candidates=[c.name for c in hypermodel.candidates])
    points = tuning.advice_starting_points(
        advice, hypermodel.candidates, learning_rate=3e-3, optimizer="adam", weight_penalty=1e-4
    )
    tuner = tuning.make_tuner(
        hypermodel, "random", max_trials=2, directory=str(tmp_path), seed=0, starting_points=points
    )
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=45, verbose=0)
    first = tuner.oracle.trials[tuner.oracle.start_order[0]].hyperparameters.values
    assert first["optimizer"] == "adam" and first["adam/learning_rate"] == 3e-3
    assert first["regularization/l2"] == 1e-4
    best = tuner.get_best_models(1)[0]
    assert isinstance(best.loss, CompositeLoss) and "weight_penalty" in best.loss.term_names


def test_bad_search_options_raise():
    with pytest.raises(ValueError, match="Unknown optimizer family 'adamm'"):
        tuning.LossSearchHyperModel(build_plain, candidates=["crossentropy"], search_optimizer=["adamm"])
    with pytest.raises(ValueError, match="search_regularization"):
        tuning.LossSearchHyperModel(build_plain, candidates=["crossentropy"], search_regularization="yes")


def test_the_hypermodel_starts_its_whole_space_from_the_advice(data):
    _, y = data
    advice = tuning.advise(y, candidates=["crossentropy", "focal"])
    joint = tuning.LossSearchHyperModel(
        build_plain, candidates=["crossentropy", "focal"], search_optimizer=["sgd", "rmsprop"],
        search_regularization=True,
    )  # fmt: skip
    points = joint.starting_points(advice)
    assert [p["loss"] for p in points] == [a.candidate for a in advice.ranked]
    # No Adam among the families: the first family starts, at the advisor's rate, with the usual weight decay.
    assert all(p["optimizer"] == "sgd" and p["sgd/learning_rate"] == 3e-3 for p in points)
    assert all(p["regularization/l2"] == 1e-4 and "learning_rate" not in p for p in points)
    loss_only = tuning.LossSearchHyperModel(build_plain, candidates=["crossentropy", "focal"])
    assert all(set(p) <= {"loss", "learning_rate", "focal/gamma", "focal/label_smoothing", "focal/alpha"}
               for p in loss_only.starting_points(advice))  # fmt: skip
    assert all(p["learning_rate"] == 3e-3 for p in loss_only.starting_points(advice))
