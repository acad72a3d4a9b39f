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
from keras_lossopt.callbacks import _optimizer_hook, _training_state
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


# -- callbacks/_optimizer_hook.py and callbacks/_training_state.py (every backend) ---------


def _fit_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def test_apply_without_variables_pairs_the_gradients_with_the_private_build_list():
    # Keras' JAX step calls `apply(grads)`; the hook pairs the gradients the same way.
    first, second = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(3, "float32"))
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build([second, first])
    hook = _optimizer_hook.OptimizerHook.__new__(_optimizer_hook.OptimizerHook)
    hook.optimizer = optimizer
    assert [id(v) for v in hook.gradient_variables()] == [id(second), id(first)]
    optimizer.apply([keras.ops.ones((3,)), 2 * keras.ops.ones((2,))])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(second), -np.ones(3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first), -2 * np.ones(2))


def test_a_variable_taken_out_of_the_private_list_leaves_the_optimizer():
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    before = len(optimizer.variables)
    extra = optimizer.add_variable((2,), initializer="zeros", dtype="float32", name="extra")
    assert len(optimizer.variables) == before + 1
    optimizer._variables.pop(next(i for i, v in enumerate(optimizer._variables) if v is extra))
    assert len(optimizer.variables) == before and all(v is not extra for v in optimizer.variables)


def _labelled_traces(make):
    """The labels the train steps of two made functions saw when they were traced (or run)."""
    model = _model()
    x, y = _fit_data()
    labels, current = [], ["first"]
    step = model.train_step

    def labelled(*args):
        labels.append(current[0])
        return step(*args)

    model.train_step = labelled  # `make_train_function` reads the instance attribute
    make(model)
    first = model.train_function
    make(model)
    second = model.train_function

    class Switch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            current[0] = "first" if batch % 2 == 0 else "second"
            model.train_function = first if batch % 2 == 0 else second

    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Switch()])
    return set(labels)


def test_each_train_function_made_by_the_adapter_traces_its_own_step():
    assert _labelled_traces(_optimizer_hook._make_own_train_function) == {"first", "second"}


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax.jit's trace cache")
def test_jax_train_functions_made_from_one_train_step_share_one_trace():
    # Why the adapter makes a new function per train function on JAX; when this fails, JAX
    # traces each jit apart and `_make_own_train_function` can call make_train_function.
    assert _labelled_traces(lambda model: model.make_train_function(force=True)) == {"first"}


def test_after_a_sync_the_variables_hold_the_fit_and_the_next_step_reads_them():
    model = _model()
    model.compile(keras.optimizers.SGD(0.0), "mse")  # steps keep the weights where they are
    kernel = model.layers[-1].kernel
    x, y = _fit_data()
    seen = []

    class Reset(keras.callbacks.Callback):
        # `model` from the closure: `Callback.model` would sync on JAX by itself.
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                _training_state.sync_training_state(model)
                seen.append(keras.ops.convert_to_numpy(kernel))
                kernel.assign(np.full((3, 1), 7.0, "float32"))

    initial = keras.ops.convert_to_numpy(kernel)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Reset()])
    np.testing.assert_array_equal(seen[0], initial)  # the fit's value, not an emptied variable's
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), np.full((3, 1), 7.0))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX trainer's state")
def test_jax_variables_do_not_hold_the_fit_during_an_epoch_without_a_sync():
    # Why the adapter syncs: mid-epoch a JAX variable's own value is gone and an assignment
    # is overwritten by the fit's state at the end of the epoch.
    model = _model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    kernel = model.layers[-1].kernel
    x, y = _fit_data()
    emptied = []

    class Assign(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                emptied.append(kernel._value is None)
                kernel.assign(np.full((3, 1), 7.0, "float32"))

    initial = keras.ops.convert_to_numpy(kernel)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Assign()])
    assert emptied == [True]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), initial)
