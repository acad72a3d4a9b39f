"""What each searched part adds: the ladder, paired gains, one-standard-error verdicts (constructed scores)."""

import math

import numpy as np
import pytest

from keras_lossopt.cli.part_gains import STARTING_OPTIMIZER, ablation_ladder, measure_part_gains, part_gains_table
from keras_lossopt.cli.search_report import configuration_lines


def configuration(space=("loss", "optimizer", "regularization")):
    return {
        "format": 1,
        "task": "multiclass",
        "space": list(space),
        "loss": {"name": "focal", "parameters": {"gamma": 1.5}, "config": {"class_name": "FocalLoss", "config": {}}},
        "optimizer": {
            "family": "sgd",
            "parameters": {"learning_rate": 0.03, "momentum": 0.8},
            "config": {"class_name": "SGD", "config": {"learning_rate": 0.03, "momentum": 0.8}},
        },
        "regularization": (
            {"l2": 1e-3, "label_smoothing": None, "dropout": 0.2} if "regularization" in space else None
        ),
        "label_smoothing": 0.0,
        "hyperparameters": {},
    }


def scripted(scores_by_step):
    """A `score` function answering each ladder step with given fold scores; records what it was asked."""
    asked = []

    def score(step):
        key = (step["optimizer"]["family"], step["regularization"] is not None)
        asked.append(key)
        return scores_by_step[key]

    return score, asked


def test_the_ladder_removes_the_parts_one_at_a_time():
    steps = ablation_ladder(configuration())
    assert [label for label, _ in steps] == ["loss only", "loss + optimizer", "loss + optimizer + regularization"]
    alone, with_optimizer, whole = (step for _, step in steps)
    assert alone["optimizer"]["family"] == STARTING_OPTIMIZER[0]
    assert alone["optimizer"]["config"]["config"]["learning_rate"] == pytest.approx(STARTING_OPTIMIZER[1])
    assert alone["regularization"] is None and with_optimizer["regularization"] is None
    assert with_optimizer["optimizer"]["family"] == "sgd" and whole["regularization"]["l2"] == 1e-3
    assert all(step["loss"] == configuration()["loss"] for _, step in steps)
    # Without the optimizer part the loss keeps the trial's own (Adam) optimizer.
    two = ablation_ladder(configuration(("loss", "regularization")))
    assert [label for label, _ in two] == ["loss only", "loss + regularization"]
    assert two[0][1]["optimizer"]["family"] == "sgd" and two[0][1]["regularization"] is None


def test_gains_are_paired_over_folds_and_a_gain_inside_one_standard_error_is_a_tie():
    folds = {
        ("adam", False): [0.80, 0.70, 0.90],
        ("sgd", False): [0.86, 0.77, 0.95],  # +0.06, +0.07, +0.05: a clear gain
        ("sgd", True): [0.91, 0.74, 0.94],  # +0.05, -0.03, -0.01: within the noise
    }
    score, asked = scripted(folds)
    gains = measure_part_gains(configuration(), score)
    assert asked == [("adam", False), ("sgd", False), ("sgd", True)]
    optimizer, regularization = gains["gains"]
    # An independent paired computation: mean difference and its standard error std(ddof=1)/sqrt(K).
    for gain, before, after in ((optimizer, ("adam", False), ("sgd", False)), (regularization, ("sgd", False),
                                                                              ("sgd", True))):  # fmt: skip
        d = np.subtract(folds[after], folds[before])
        assert gain["gain"] == pytest.approx(d.mean())
        assert gain["standard_error"] == pytest.approx(d.std(ddof=1) / math.sqrt(3))
    assert (optimizer["part"], optimizer["verdict"]) == ("optimizer", "gain")
    assert (regularization["part"], regularization["verdict"]) == ("regularization", "tie")
    assert gains["total"]["verdict"] == "gain" and gains["paired_over"] == "3 folds"
    # The rule keeps, among the tied steps, the one whose folds vary least: here the optimizer without regularization.
    assert gains["recommended"]["label"] == "loss + optimizer"
    assert gains["recommended"]["tie"] == ["loss + optimizer + regularization", "loss + optimizer"]
    table = part_gains_table(gains, "val_macro_f1")
    assert "| loss + optimizer | 0.8600 ± 0.0735 | optimizer | +0.0600 (standard error 0.0058): a gain |" in table
    assert "a tie within the noise" in table and table.count("recommended") == 1


def test_a_part_that_costs_more_than_its_noise_is_reported_worse():
    score, _ = scripted({("adam", False): [0.9, 0.8, 0.85], ("sgd", False): [0.7, 0.61, 0.64]})
    gains = measure_part_gains(configuration(("loss", "optimizer")), score)
    assert [g["verdict"] for g in gains["gains"]] == ["worse"] and "total" not in gains
    assert gains["recommended"]["label"] == "loss only"


def test_a_part_left_at_its_starting_value_is_scored_once():
    start = configuration(("loss", "optimizer"))
    start["optimizer"] = ablation_ladder(start)[0][1]["optimizer"]  # the winner kept Adam at 3e-3
    calls = []
    gains = measure_part_gains(start, lambda step: calls.append(step) or [0.8, 0.9])
    assert len(calls) == 1
    assert gains["gains"][0]["gain"] == 0.0 and gains["gains"][0]["verdict"] == "tie"


def test_the_configuration_in_words_names_every_setting():
    lines = configuration_lines(configuration())
    assert lines == [
        "- loss: focal (gamma=1.5)",
        "- optimizer: sgd (learning_rate=0.03, momentum=0.8)",
        "- weight penalty: L2 0.001 on every kernel (the `weight_penalty` term of the loss)",
        "- label smoothing: 0 (the loss' default; not searched)",
        "- dropout: 0.2 on every Dropout layer",
    ]
    loss_only = configuration(("loss",))
    loss_only["optimizer"] = {"family": "adam", "parameters": {"learning_rate": 0.004}, "config": {}}
    loss_only["label_smoothing"] = None
    assert configuration_lines(loss_only)[1:] == [
        "- optimizer: adam (learning_rate=0.004), Adam's learning rate searched with the loss",
        "- weight penalty: none (not searched)",
        "- label smoothing: none (the loss takes no label smoothing)",
        "- dropout: not searched (the model's own rates)",
    ]
