"""The keras-tuner 1.4 pitfalls our layer absorbs: undirected F1 objectives and ranking by val_loss."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import tuning
from keras_lossopt.tuning.objectives import DEFAULT_METRIC_NAMES


def rank_two_trials(search_objective, name="val_f1_score"):
    """Feeds trials scoring F1 0.42 and 0.93 to a real oracle and returns the F1 it ranks first."""
    oracle = keras_tuner.oracles.RandomSearchOracle(objective=search_objective, max_trials=2, seed=0)
    oracle._set_project_dir("unused", "unused")
    space = keras_tuner.HyperParameters()
    space.Float("x", 0.0, 1.0)
    oracle.update_space(space)
    for score in (0.42, 0.93):
        trial = oracle.create_trial("tuner0")
        assert trial.status == "RUNNING"
        oracle.update_trial(trial.trial_id, {name: score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return oracle.get_best_trials(1)[0].metrics.get_best_value(name)


def test_a_plain_f1_string_is_minimized_by_keras_tuner_but_ours_is_maximized(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The pitfall itself: keras-tuner 1.4 silently minimizes an F1 score given as a string.
    assert keras_tuner.oracles.RandomSearchOracle(objective="val_f1_score").objective.direction == "min"
    assert rank_two_trials("val_f1_score") == pytest.approx(0.42)
    assert rank_two_trials(tuning.objective("val_f1_score")) == pytest.approx(0.93)
    assert rank_two_trials(tuning.check_search_objective("val_f1_score")) == pytest.approx(0.93)


@pytest.mark.parametrize(
    "made",
    [
        tuning.macro_f1_objective(),
        tuning.worst_class_recall_objective(),
        tuning.class_recall_objective(7),
        tuning.segmentation_objective("mean_iou"),
        tuning.segmentation_objective("dice_score"),
        tuning.robust_accuracy_objective(),
        tuning.objective("val_recall_class_3"),
        tuning.objective("macro_f1"),
    ],
    ids=lambda o: o.name,
)
def test_every_offered_objective_is_maximized(made):
    assert isinstance(made, keras_tuner.Objective)
    assert made.direction == "max"


def test_objective_names_match_the_metrics_they_rank():
    from keras_lossopt import metrics

    assert tuning.macro_f1_objective().name == "val_" + metrics.MacroF1(3).name
    assert tuning.worst_class_recall_objective().name == "val_" + metrics.WorstClassRecall(3).name
    assert tuning.class_recall_objective(2).name == "val_" + metrics.ClassRecall(2, 3).name
    assert tuning.segmentation_objective().name == "val_" + metrics.IoUScore(3).name
    assert tuning.segmentation_objective("dice_score").name == "val_" + metrics.DiceScore(3).name


@pytest.mark.parametrize("name", ["val_loss", "loss", "val_focal_loss"])
def test_loss_objectives_are_refused_everywhere(name):
    with pytest.raises(ValueError, match="different scales"):
        tuning.objective(name)
    with pytest.raises(ValueError, match="different scales"):
        tuning.check_search_objective(keras_tuner.Objective(name, "min"))
    hypermodel = tuning.LossSearchHyperModel(
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), candidates=["focal"]
    )
    with pytest.raises(ValueError, match="different scales"):
        tuning.make_tuner(hypermodel, "random", objective=name, directory="unused")


def test_unknown_objective_needs_a_direction():
    with pytest.raises(ValueError, match="direction='max' or 'min'"):
        tuning.objective("val_my_score")
    assert tuning.objective("val_my_error", direction="min").direction == "min"
    with pytest.raises(ValueError, match="objective"):
        tuning.check_search_objective(3)


def test_a_raw_tuner_ranking_by_val_loss_stops_at_the_first_trial(tmp_path, rng):
    """Users who build keras-tuner's own tuner around our hypermodel are stopped too."""
    x = rng.normal(size=(32, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    hypermodel = tuning.LossSearchHyperModel(
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), candidates=["crossentropy", "focal"]
    )
    tuner = keras_tuner.RandomSearch(hypermodel=hypermodel, objective="val_loss", max_trials=3, directory=str(tmp_path))
    with pytest.raises(keras_tuner.errors.FatalError, match="different scales"):
        tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert np.all([t.status != "COMPLETED" for t in tuner.oracle.trials.values()])


@pytest.mark.parametrize("task", sorted(DEFAULT_METRIC_NAMES))
def test_default_metric_names_are_the_names_default_metrics_compiles(task):
    compiled = [m.name for m in tuning.default_metrics(task, 3)]
    assert compiled == list(DEFAULT_METRIC_NAMES[task])
    assert tuning.default_objective(task).name == f"val_{compiled[0]}"


def test_an_objective_that_is_never_logged_stops_the_search_after_one_trial(tmp_path, rng):
    x = rng.normal(size=(32, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    hypermodel = tuning.LossSearchHyperModel(
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), candidates=["crossentropy", "focal"]
    )
    tuner = tuning.make_tuner(
        hypermodel, "random", objective=tuning.class_recall_objective(7), max_trials=3, directory=str(tmp_path)
    )
    with pytest.raises(keras_tuner.errors.FatalError, match=r"'val_recall_class_7' is never logged.*val_macro_f1"):
        tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert len(tuner.oracle.trials) == 1
