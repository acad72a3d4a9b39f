"""Bad arguments to the checks before training and the cause ranking: errors that name the argument."""

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks.causes import describe_causes, rank_causes
from keras_lossopt.callbacks.pretraining import check_training_setup


@pytest.fixture(scope="module")
def model():
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    return m


X = np.zeros((8, 4), "float32")
Y = np.zeros((8, 2), "float32")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_samples": 0}, ValueError, r"`max_samples` must be >= 1\. Received: max_samples=0"),
        ({"max_samples": 2.5}, TypeError, r"`max_samples` must be an integer"),
        ({"input_scale_limit": -1.0}, ValueError, r"`input_scale_limit` must be > 0\. Received: input_scale_limit=-1"),
        ({"target_scale_limit": float("nan")}, ValueError, r"`target_scale_limit` must be finite"),
        ({"target_scale_limit": "big"}, TypeError, r"`target_scale_limit` must be a number"),
    ],
)
def test_check_training_setup_names_the_bad_argument(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_training_setup(model, X, Y, **kwargs)


def test_check_training_setup_refuses_a_non_model():
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model\. Received: model of type Dense"):
        check_training_setup(keras.layers.Dense(2), X, Y)


def test_check_training_setup_refuses_missing_inputs(model):
    with pytest.raises(ValueError, match=r"`x` must be a batch of inputs.*Received: x=None"):
        check_training_setup(model, None, Y)


def test_check_training_setup_names_both_sample_counts(model):
    with pytest.raises(
        ValueError, match=r"same number of samples\. Received: 8 inputs and 5 targets \(y.shape=\(5, 2\)\)"
    ):
        check_training_setup(model, X, Y[:5])


def test_rank_causes_refuses_an_unknown_kind_and_suggests_one(model):
    with pytest.raises(
        ValueError, match=r"`kind` must be one of .*Received: kind='exploded'.*Did you mean 'exploding'"
    ):
        rank_causes("exploded", model)


def test_describe_causes_limit(model):
    with pytest.raises(ValueError, match=r"`limit` must be >= 1\. Received: limit=0"):
        describe_causes([], limit=0)


def test_training_diagnostics_needs_probe_x_for_probe_y():
    from keras_lossopt.callbacks import TrainingDiagnostics

    with pytest.raises(ValueError, match=r"`probe_y` needs `probe_x`.*Received: probe_x=None"):
        TrainingDiagnostics(probe_y=Y)


def test_training_diagnostics_stall_steps_floor():
    from keras_lossopt.callbacks import TrainingDiagnostics

    with pytest.raises(ValueError, match=r"`stall_steps` must be >= 20\. Received: stall_steps=10"):
        TrainingDiagnostics(stall_steps=10)


def test_a_probe_batch_with_mismatched_targets_fails_when_training_starts(model):
    from keras_lossopt.callbacks import TrainingDiagnostics

    diagnostics = TrainingDiagnostics(probe_x=X, probe_y=Y[:3], on_problem=lambda finding: None)
    diagnostics.set_model(model)
    with pytest.raises(ValueError, match=r"Received: 8 inputs and 3 targets"):
        diagnostics.on_train_begin()
