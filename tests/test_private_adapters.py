"""The private behaviours of Keras, keras-tuner and CPython that the package's adapters rely on.

Each adapter module names what it relies on and the versions it was checked against
(docs/architecture.md, "Private behaviour behind adapters"); each test here fails when that
behaviour changes, so an upgrade shows at once which adapter to revisit.
"""

import importlib
import sys

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import _registration
from keras_lossopt.losses._keras_mask import keras_mask_of, with_keras_mask
from keras_lossopt.shaping._keras_model import retrace_steps, unwrap_train_step, wrap_train_step
from keras_lossopt.tuning import _keras_tuner

# The mask adapter has an implementation per backend and is tested on each; the other adapters
# rely on the TensorFlow trainer's internals.
tensorflow_internals = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the TensorFlow trainer's internals"
)


# -- losses/_keras_mask.py ---------------------------------------------------------------


def test_keras_layers_attach_their_mask_where_the_adapter_reads_it():
    tokens = np.array([[3, 5, 0, 0], [2, 0, 0, 0]])
    embedded = keras.layers.Embedding(8, 2, mask_zero=True)(tokens)
    np.testing.assert_array_equal(np.asarray(keras_mask_of(embedded)), tokens != 0)


def test_keras_losses_read_the_mask_the_adapter_writes():
    y_true = np.zeros((2, 3, 1), "float32")
    y_pred = np.array([[[1.0], [2.0], [9.0]], [[3.0], [9.0], [9.0]]], "float32")
    mask = np.array([[True, True, False], [True, False, False]])
    masked = keras.losses.MeanSquaredError()(y_true, with_keras_mask(y_pred, mask))
    assert float(masked) == pytest.approx((1 + 4 + 9) / 3)


def test_the_mask_written_is_read_back_and_a_plain_tensor_has_none():
    tensor = with_keras_mask(np.ones((2, 3), "float32"), np.array([[True, False, True], [False, True, True]]))
    np.testing.assert_array_equal(np.asarray(keras_mask_of(tensor)), [[True, False, True], [False, True, True]])
    assert keras_mask_of(keras.ops.ones((2, 3))) is None


# -- _registration.py --------------------------------------------------------------------


def test_cpython_marks_a_module_as_initializing_while_it_executes(tmp_path, monkeypatch):
    (tmp_path / "probe_initializing.py").write_text(
        "import sys\nfrom keras_lossopt._registration import is_initializing\n"
        "DURING = is_initializing(sys.modules[__name__])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("probe_initializing")
    try:
        assert module.DURING is True
        assert _registration.is_initializing(module) is False
    finally:
        sys.modules.pop("probe_initializing", None)


# -- shaping/_train_step.py --------------------------------------------------------------


def _model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    return model


@tensorflow_internals
def test_fit_runs_the_wrapped_train_step_and_the_class_one_after_unwrapping():
    model, calls = _model(), []
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")

    def counting(train_step, data):
        calls.append(1)
        return train_step(data)

    wrap_train_step(model, counting)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    traced = len(calls)
    assert traced >= 1  # the compiled step was built from the wrapper
    unwrap_train_step(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert len(calls) == traced and "train_step" not in vars(model)


@tensorflow_internals
def test_fit_and_evaluate_rebuild_their_functions_once_reset():
    model = _model()
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    train_function, test_function = model.train_function, model.test_function
    assert train_function is not None and test_function is not None
    model.fit(x, y, epochs=1, verbose=0)
    assert model.train_function is train_function  # reused until reset
    retrace_steps(model)
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert model.train_function is not train_function and model.test_function is not test_function


# -- tuning/_keras_tuner.py --------------------------------------------------------------


class _Space(keras_tuner.HyperModel):
    def build(self, hp):
        hp.Choice("loss", ["a", "b", "c"])
        hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


START = {"loss": "c", "learning_rate": 0.05}


def _tuner(kind, tmp_path, oracle_class, **oracle_args):
    oracle = oracle_class(
        objective=keras_tuner.Objective("score", "max"), seed=0, starting_points=[START], **oracle_args
    )

    class Tuner(kind):
        def __init__(self):
            _keras_tuner.init_tuner(self, oracle, _Space(), directory=str(tmp_path), project_name=kind.__name__)

    return Tuner()


@tensorflow_internals
@pytest.mark.parametrize(
    "kind, oracle_class, oracle_args",
    [
        (keras_tuner.RandomSearch, _keras_tuner.RandomOracle, {"max_trials": 5}),
        (keras_tuner.BayesianOptimization, _keras_tuner.BayesianOracle, {"max_trials": 5, "num_initial_points": 3}),
        (keras_tuner.Hyperband, _keras_tuner.HyperbandOracle, {"max_epochs": 4}),
    ],
    ids=["random", "bayesian", "hyperband"],
)
def test_the_first_trial_is_the_starting_point_and_it_is_not_repeated(tmp_path, kind, oracle_class, oracle_args):
    # Hyperband: its first round draws new configurations through the private `_random_values`.
    tuner = _tuner(kind, tmp_path, oracle_class, **oracle_args)
    first = tuner.oracle.create_trial("tuner0")
    assert {name: first.hyperparameters.values[name] for name in START} == START
    second = tuner.oracle.create_trial("tuner1")  # another worker: a new trial
    assert {name: second.hyperparameters.values[name] for name in START} != START


@tensorflow_internals
def test_init_tuner_gives_what_the_keras_tuner_constructor_gives(tmp_path):
    ours = _tuner(keras_tuner.BayesianOptimization, tmp_path / "ours", _keras_tuner.BayesianOracle, max_trials=2)
    theirs = keras_tuner.BayesianOptimization(
        _Space(), objective=keras_tuner.Objective("score", "max"), max_trials=2, directory=str(tmp_path / "theirs")
    )
    assert set(vars(ours)) == set(vars(theirs))
