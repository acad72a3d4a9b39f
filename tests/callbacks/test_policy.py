"""ProblemPolicy: each option's actions and its record, with a stand-in model and remedies."""

import dataclasses
import logging
import warnings

import keras
import pytest

from keras_lossopt.callbacks import Finding, TrainingProblemError, TrainingProblemWarning
from keras_lossopt.callbacks.findings import format_report
from keras_lossopt.callbacks.policy import ON_PROBLEM, REMEDY_OPTIONS, ProblemPolicy


class Model:
    def __init__(self):
        self.stop_training = False
        self.metrics_reset = 0
        self.optimizer = keras.optimizers.SGD(0.5)

    def reset_metrics(self):
        self.metrics_reset += 1


class Remedies:
    def __init__(self, clipping_on=False, first_step_failed=False):
        self.calls = []
        self.clipping_on = clipping_on
        self.first_step_failed = first_step_failed

    def restore_weights(self):
        self.calls.append("restore")
        return "restored the weights from before step 10"

    def reset_optimizer_state(self):
        self.calls.append("reset")

    def turn_on_clipping(self, clip_norm):
        self.calls.append(f"clip {clip_norm}")
        return not self.clipping_on

    def fails_from_the_start(self, finding):
        return self.first_step_failed


def finding(kind):
    return Finding(kind=kind, step=3, layers=("dense",), evidence={"x": 1.0}, cause="c", remedy="r")


def handle(on_problem, kind, remedies=None, **kwargs):
    model, recorded = Model(), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = ProblemPolicy(on_problem, **kwargs).handle(finding(kind), model, recorded.append, remedies)
    assert recorded == [done]
    return done, model, [w.category for w in caught if issubclass(w.category, TrainingProblemWarning)]


@pytest.mark.parametrize(
    "on_problem, kind, action, stops, calls",
    [
        ("warn", "exploding", "warned", False, []),
        ("warn", "non_finite", "restored the weights from before step 10; stopped training; warned", True, ["restore"]),
        ("stop", "vanishing", "stopped training", True, []),
        ("restore", "exploding", "warned", False, []),
        ("restore", "non_finite", "restored the weights from before step 10; trained on", False, ["restore", "reset"]),
        ("clip", "exploding", "turned on global_clipnorm=2", False, ["clip 2.0"]),
        (
            "reduce_lr",
            "non_finite",
            "restored the weights from before step 10; reduced the learning rate from 0.5 to 0.05",
            False,
            ["restore", "reset"],
        ),
    ],
)
def test_actions(on_problem, kind, action, stops, calls):
    remedies = Remedies()
    done, model, caught = handle(on_problem, kind, remedies, clip_norm=2.0)
    assert done.action == action and model.stop_training == stops and remedies.calls == calls
    assert caught == [TrainingProblemWarning]
    assert model.metrics_reset == (1 if "reset" in calls else 0)


@pytest.mark.parametrize("on_problem", ["warn", "restore", "clip", "reduce_lr"])
def test_a_run_that_fails_at_its_first_step_is_stopped_without_restore_or_remedy(on_problem):
    remedies = Remedies(first_step_failed=True)
    done, model, _ = handle(on_problem, "non_finite", remedies)
    assert remedies.calls == [] and model.stop_training
    assert done.action.startswith("nothing restored: the first step already failed")
    assert "cannot help" in done.action and "restored the" not in done.action
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.5)  # no remedy applied


def test_clip_when_already_clipping_reduces_the_learning_rate():
    done, model, _ = handle("clip", "exploding", Remedies(clipping_on=True), lr_factor=0.5)
    assert done.action == "reduced the learning rate from 0.5 to 0.25 (clipping was already on)"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.25)


def test_raise_records_first_and_a_callable_receives_the_finding():
    model, recorded = Model(), []
    with pytest.raises(TrainingProblemError) as info:
        ProblemPolicy("raise").handle(finding("vanishing"), model, recorded.append)
    assert recorded[0].action == "raised TrainingProblemError" and info.value.finding == recorded[0]
    received = []

    def notify(f):
        received.append(f)

    done, _, caught = handle(notify, "exploding")
    assert received == [done] and done.action == "called notify" and caught == []


def test_options_and_what_repeats():
    assert set(REMEDY_OPTIONS) <= set(ON_PROBLEM)
    with pytest.raises(ValueError, match=r"on_problem.*'warn', 'stop', 'raise'"):
        ProblemPolicy("clip", allow_remedies=False)
    with pytest.raises(ValueError, match="lr_factor"):
        ProblemPolicy("reduce_lr", lr_factor=1.0)
    assert ProblemPolicy("restore").repeats("non_finite") and not ProblemPolicy("restore").repeats("exploding")
    assert ProblemPolicy("clip").repeats("vanishing") and not ProblemPolicy("stop").repeats("non_finite")


@pytest.mark.parametrize("on_problem", [*ON_PROBLEM, "callable"])
def test_information_is_noted_and_logged_never_acted_on(on_problem, caplog):
    remedies, model, recorded, received = Remedies(), Model(), [], []
    note = dataclasses.replace(finding("overfitting"), severity="information")
    policy = ProblemPolicy(received.append if on_problem == "callable" else on_problem)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, "keras_lossopt.callbacks"):
        warnings.simplefilter("always")
        done = policy.handle(note, model, recorded.append, remedies)
    assert recorded == [done] and done.action == "noted" and done.severity == "information"
    assert caught == [] and received == [] and remedies.calls == [] and not model.stop_training
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.5)
    assert "[overfitting, information]" in caplog.text


def test_reports_list_problems_first_and_information_apart():
    problem = finding("exploding")
    note = dataclasses.replace(finding("overfitting"), severity="information")
    text = format_report("Report", [note, problem])
    assert text.index("1 finding(s):") < text.index("[exploding]") < text.index("1 information finding(s)")
    assert text.index("1 information finding(s)") < text.index("[overfitting, information]")
    assert "No problem found." in format_report("Report", [note])
