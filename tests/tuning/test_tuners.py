"""Loss-search tuners: the advisor's picks as first trials, cross-validated scores, racing, timing."""

import keras
import numpy as np
import pytest

from keras_lossopt import tuning
from keras_lossopt.tuning import advisor, search_space, validation


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = np.repeat([0, 1, 2], [50, 30, 10])
    x[:, 0] += y  # learnable
    return x, y


def build():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


# RandomSearch draws through the same oracle method as BayesianOptimization's first trials.
@pytest.mark.parametrize("tuner_name", ["bayesian", "hyperband"])
def test_first_trials_are_the_advisors_picks(tmp_path, data, tuner_name):
    x, y = data
    hypermodel = tuning.LossSearchHyperModel(
        build,
        candidates=["crossentropy", "logit_adjusted", "class_balanced_focal"],
        class_counts=np.bincount(y),
        jit_compile=False,
    )
    advice = tuning.advise(y, candidates=[c.name for c in hypermodel.candidates])
    points = tuning.advice_starting_points(advice, hypermodel.candidates, learning_rate=3e-3)
    tuner = tuning.make_tuner(
        hypermodel, tuner_name, max_trials=2, max_epochs=2, directory=str(tmp_path), seed=0, starting_points=points
    )
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=45, verbose=0)
    first = [tuner.oracle.trials[i].hyperparameters.values for i in tuner.oracle.start_order[:2]]
    assert [v["loss"] for v in first] == ["logit_adjusted", "class_balanced_focal"]
    for values, pick in zip(first, advice.ranked):
        assert values["loss"] == pick.candidate
        assert values["learning_rate"] == 3e-3
        for argument, value in pick.parameters.items():
            assert values[search_space.loss_hyperparameter_name(pick.candidate, argument)] == pytest.approx(value)
    beta = advisor.class_balanced_beta(np.bincount(y))
    picked = next(v for v in first if v["loss"] == "class_balanced_focal")
    assert picked["class_balanced_focal/beta"] == pytest.approx(beta)  # (50 - 1) / 50 lies inside the range


def test_cross_validated_search_records_folds_and_races(tmp_path, data):
    x, y = data
    hypermodel = tuning.LossSearchHyperModel(build, candidates=["crossentropy", "focal"], jit_compile=False)
    points = [{"loss": "crossentropy", "learning_rate": 1e-2}, {"loss": "focal", "learning_rate": 1e-3}]
    # a margin of -1 makes every trial after the first "hopeless": it must stop after one fold
    tuner = tuning.make_tuner(
        hypermodel, "random", max_trials=2, directory=str(tmp_path), seed=0, folds=3, starting_points=points,
        prune_margin=0.0,
    )  # fmt: skip
    tuner.prune_margin = -1.0
    tuner.search(x, y, epochs=2, batch_size=30, verbose=0)
    first, second = (tuner.oracle.trials[i] for i in tuner.oracle.start_order)
    folds = [first.metrics.get_last_value(f"fold_{k}") for k in range(3)]
    assert first.score == pytest.approx(np.mean(folds))
    assert first.metrics.get_last_value("fold_std") == pytest.approx(np.std(folds))
    assert first.metrics.get_last_value("folds_run") == 3 and not first.metrics.get_last_value("pruned")
    assert second.metrics.get_last_value("folds_run") == 1 and second.metrics.get_last_value("pruned") == 1
    assert second.score == pytest.approx(np.mean(folds) + second.metrics.get_last_value("fold_0") - folds[0])
    summary = tuning.search_summary(tuner)
    assert summary["trials_run"] == 2 and summary["seconds"] > 0
    assert summary["best_found_at"] == [r["trial"] for r in summary["trials"]].index(summary["best_trial"]) + 1
    with pytest.raises(Exception, match="validation folds come from x and y"):
        tuner2 = tuning.make_tuner(hypermodel, "random", max_trials=1, directory=str(tmp_path / "b"), folds=3)
        tuner2.search(x, y, validation_data=(x, y), epochs=1, verbose=0)


def test_hyperband_refuses_folds(data):
    hypermodel = tuning.LossSearchHyperModel(build, candidates=["crossentropy"])
    with pytest.raises(ValueError, match="use folds=1 with tuner='hyperband'"):
        tuning.make_tuner(hypermodel, "hyperband", folds=3, directory="unused")


def test_balanced_validation_weights_reach_the_search_metrics(data):
    """The fold's macro-F1 is that of a class-balanced fold (float64 reference from the predictions)."""
    import keras_tuner

    x, y = data
    hypermodel = tuning.LossSearchHyperModel(build, candidates=["crossentropy"], jit_compile=False)
    model = hypermodel.build(keras_tuner.HyperParameters())
    weights = validation.balanced_weights(y)
    history = model.fit(x, y, validation_data=(x, y, weights), epochs=1, batch_size=90, verbose=0)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (y, predicted), weights.astype(np.float64))
    tp, predicted_totals, actual = np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
    f1 = np.divide(2 * tp, predicted_totals + actual, out=np.zeros(3), where=predicted_totals + actual > 0)
    assert history.history["val_macro_f1"][0] == pytest.approx(f1.mean(), abs=1e-5)
