"""LossSearchHyperModel with every keras-tuner tuner, on tiny budgets."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import losses, tuning


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1.0).astype("int64")
    return x, y


def build_fixed():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def build_tunable(hp):
    width = hp.Int("width", 4, 8, step=4)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(3)])


@pytest.mark.parametrize("tuner_name", ["random", "bayesian", "grid", "hyperband"])
def test_every_tuner_runs_a_loss_search_ranked_by_macro_f1(tmp_path, data, tuner_name):
    x, y = data
    hypermodel = tuning.LossSearchHyperModel(
        build_tunable if tuner_name != "grid" else build_fixed,
        candidates=["crossentropy", "focal", "class_balanced_focal"],
        class_counts=np.bincount(y, minlength=3),
        tune_learning_rate=tuner_name != "grid",
        jit_compile=False,
    )
    tuner = tuning.make_tuner(hypermodel, tuner_name, max_trials=2, max_epochs=2, directory=str(tmp_path), seed=0)
    assert tuner.oracle.objective == keras_tuner.Objective("val_macro_f1", "max")
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=48, verbose=0)
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert finished
    scores = [t.score for t in finished]
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == max(scores)
    # The best hyperparameters rebuild the same loss, and it travels as a JSON config.
    loss = hypermodel.loss_from_hyperparameters(best.hyperparameters)
    assert losses.get(losses.serialize(loss)).get_config() == loss.get_config()
    for trial in finished:
        chosen = trial.hyperparameters.get("loss")
        active = {n for n in trial.hyperparameters.values if "/" in n and not n.startswith("tuner/")}
        assert all(n.startswith(chosen + "/") for n in active), (chosen, active)


def test_build_compiles_the_chosen_loss_the_learning_rate_and_the_metrics():
    hp = keras_tuner.HyperParameters()
    hp.Choice("loss", ["focal", "poly1"])
    hp.values["loss"] = "poly1"
    hypermodel = tuning.LossSearchHyperModel(
        build_tunable, candidates=["focal", "poly1"], learning_rate_range=(1e-3, 1e-2)
    )
    model = hypermodel.build(hp)
    assert isinstance(model.loss, losses.PolyLoss)
    assert hp.get("width") == 4
    assert 1e-3 <= float(model.optimizer.learning_rate) <= 1e-2
    model.fit(np.zeros((4, 4)), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert {"macro_f1", "worst_class_recall", "accuracy"} <= set(model.get_metrics_result())


def test_fixed_learning_rate_and_binary_task():
    hypermodel = tuning.LossSearchHyperModel(
        lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
        task="binary",
        candidates=["focal"],
        tune_learning_rate=False,
        learning_rate=0.02,
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert "learning_rate" not in hp.values
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)
    assert model.loss.mode == "binary"
    history = model.fit(np.eye(3)[[0, 1, 2, 0]], np.array([[0.0], [1.0], [1.0], [0.0]]), epochs=1, verbose=0)
    assert "macro_f1" in history.history


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="build_model"):
        tuning.LossSearchHyperModel("not a function")
    with pytest.raises(ValueError, match="class counts"):
        tuning.LossSearchHyperModel(build_fixed, candidates=["ldam"])
    with pytest.raises(ValueError, match="learning_rate_range"):
        tuning.LossSearchHyperModel(build_fixed, candidates=["focal"], learning_rate_range=(1e-2, 1e-3))
    with pytest.raises(ValueError, match="tuner"):
        tuning.make_tuner(tuning.LossSearchHyperModel(build_fixed, candidates=["focal"]), "bayes")
    with pytest.raises(ValueError, match="logits only"):
        tuning.build_loss(tuning.LOSS_CANDIDATES["multiclass"]["ldam"], class_counts=[3, 2], from_logits=False)


def test_a_search_ranked_by_robust_accuracy_from_the_robustness_callback(tmp_path, data):
    from keras_lossopt.adversarial import FastGradientMethod
    from keras_lossopt.callbacks import RobustnessEvaluation

    x, y = data
    hypermodel = tuning.LossSearchHyperModel(build_fixed, candidates=["crossentropy", "focal"], jit_compile=False)
    tuner = tuning.make_tuner(
        hypermodel, "random", objective=tuning.robust_accuracy_objective(), max_trials=2, directory=str(tmp_path)
    )
    # Standardized features: the attack must not clip them into [0, 1].
    callback = RobustnessEvaluation(FastGradientMethod(0.1, clip=None), (x, y), restore_best_weights=False)
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=48, verbose=0, callbacks=[callback])
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(finished) == 2
    robust = [t.metrics.get_best_value("val_robust_accuracy") for t in finished]
    assert tuner.oracle.get_best_trials(1)[0].score == max(robust)


def test_a_segmentation_search_ranks_by_iou(tmp_path, rng):
    x = rng.uniform(size=(12, 8, 8, 1)).astype("float32")
    y = (x[..., 0] > 0.5).astype("int64") + (x[..., 0] > 0.85).astype("int64")

    def build_segmenter():
        inputs = keras.Input((8, 8, 1))
        hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Conv2D(3, 1)(hidden))

    hypermodel = tuning.LossSearchHyperModel(
        build_segmenter, task="segmentation", candidates=["crossentropy", "dice", "tversky"], jit_compile=False
    )
    tuner = tuning.make_tuner(hypermodel, "random", max_trials=2, directory=str(tmp_path), seed=3)
    assert tuner.oracle.objective == keras_tuner.Objective("val_iou_score", "max")
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(finished) == 2
    assert all(0.0 <= t.score <= 1.0 for t in finished)
