"""choose_optimizer: each family's parameters are active only with it, values reach the optimizer, steps are exact."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt.tuning import OPTIMIZER_CANDIDATES, build_optimizer, choose_optimizer, select_optimizers
from keras_lossopt.tuning.optimizer_space import optimizer_hyperparameter_name

FAMILIES = list(OPTIMIZER_CANDIDATES)


def hp_with_family(family):
    """Hyperparameters of a first trial that chose `family`."""
    hp = keras_tuner.HyperParameters()
    choose_optimizer(hp, default=family)
    return hp


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_parameters_are_active_only_with_it(family):
    hp = keras_tuner.HyperParameters()
    optimizer = choose_optimizer(hp, default=family)
    assert type(optimizer).__name__ == OPTIMIZER_CANDIDATES[family].optimizer
    # The whole space is declared on every build, each parameter conditioned on its own family.
    conditions = {h.name: [(c.name, list(c.values)) for c in h.conditions] for h in hp.space}
    for other, candidate in OPTIMIZER_CANDIDATES.items():
        for param in candidate.all_params:
            name = optimizer_hyperparameter_name(other, param.argument)
            assert conditions[name] == [("optimizer", [other])], name
            assert hp.is_active(name) == (other == family), name


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_at_its_range_ends_with_the_values_it_was_given(family):
    candidate = OPTIMIZER_CANDIDATES[family]
    for end in (0, -1):
        values = {
            p.argument: (p.values[end] if p.kind == "choice" else (p.low, p.high)[end]) for p in candidate.all_params
        }
        config = build_optimizer(candidate, values).get_config()
        for argument, value in values.items():
            assert config[argument] == pytest.approx(value, rel=1e-6), argument


def test_conditional_scopes_hold_over_a_random_search():
    # The oracle samples only the chosen family's parameters: every inactive one is absent from a trial.
    hp = keras_tuner.HyperParameters()
    choose_optimizer(hp)
    oracle = keras_tuner.oracles.RandomSearchOracle(max_trials=40, seed=3)
    oracle.update_space(hp)
    seen = set()
    for index in range(25):
        values = oracle.populate_space(f"t{index}")["values"]
        family = values["optimizer"]
        seen.add(family)
        own = {optimizer_hyperparameter_name(family, p.argument) for p in OPTIMIZER_CANDIDATES[family].all_params}
        assert set(values) == {"optimizer"} | own
        candidate = OPTIMIZER_CANDIDATES[family]
        for param in candidate.all_params:
            value = values[optimizer_hyperparameter_name(family, param.argument)]
            if param.kind == "choice":
                assert value in param.values
            else:
                assert param.low <= value <= param.high
    assert len(seen) >= 3


def _one_step(optimizer, weights, gradient, steps=2):
    variable = keras.Variable(np.array(weights, "float64"), dtype="float64")
    for _ in range(steps):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(np.array(gradient, "float64")), variable)])
    return np.asarray(keras.ops.convert_to_numpy(variable), "float64")


def test_chosen_sgd_nesterov_steps_match_a_float64_reference():
    hp = hp_with_family("sgd")
    hp.values["sgd/learning_rate"] = 0.05
    hp.values["sgd/momentum"] = 0.8
    hp.values["sgd/nesterov"] = True
    weights, gradient = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, 2.0])
    result = _one_step(choose_optimizer(hp), weights, gradient)
    # The learning rate lives in a float32 variable (Keras), hence rtol 1e-6.
    # Keras' SGD: m = momentum * m - lr * g;  w += momentum * m - lr * g (Nesterov).
    w, m = weights.copy(), np.zeros(3)
    for _ in range(2):
        m = 0.8 * m - 0.05 * gradient
        w = w + 0.8 * m - 0.05 * gradient
    np.testing.assert_allclose(result, w, rtol=1e-6)


def test_chosen_rmsprop_and_adagrad_steps_match_float64_references():
    weights, gradient = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, 2.0])
    hp = hp_with_family("rmsprop")
    hp.values["rmsprop/learning_rate"], hp.values["rmsprop/rho"] = 0.01, 0.85
    result = _one_step(choose_optimizer(hp), weights, gradient)
    w, v = weights.copy(), np.zeros(3)
    for _ in range(2):
        v = 0.85 * v + 0.15 * gradient**2
        w = w - 0.01 * gradient / np.sqrt(v + 1e-7)
    np.testing.assert_allclose(result, w, rtol=1e-6)

    hp = hp_with_family("adagrad")
    hp.values["adagrad/learning_rate"], hp.values["adagrad/initial_accumulator_value"] = 0.05, 0.2
    result = _one_step(choose_optimizer(hp), weights, gradient)
    w, accumulator = weights.copy(), np.full(3, 0.2)
    for _ in range(2):
        accumulator = accumulator + gradient**2
        w = w - 0.05 * gradient / np.sqrt(accumulator + 1e-7)
    np.testing.assert_allclose(result, w, rtol=1e-6)


def test_chosen_adamw_step_matches_a_float64_reference_with_decoupled_decay():
    hp = hp_with_family("adamw")
    hp.values.update(
        {"adamw/learning_rate": 0.01, "adamw/beta_1": 0.85, "adamw/beta_2": 0.995, "adamw/weight_decay": 0.05}
    )
    weights, gradient = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, 2.0])
    result = _one_step(choose_optimizer(hp), weights, gradient)
    w, m, v = weights.copy(), np.zeros(3), np.zeros(3)
    for step in (1, 2):
        w = w - 0.05 * 0.01 * w
        m = m + (gradient - m) * 0.15
        v = v + (gradient**2 - v) * 0.005
        alpha = 0.01 * np.sqrt(1 - 0.995**step) / (1 - 0.85**step)
        w = w - m * alpha / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(result, w, rtol=1e-6)


def test_the_chosen_optimizer_survives_save_and_load(tmp_path):
    hp = hp_with_family("sgd")
    hp.values["sgd/momentum"], hp.values["sgd/nesterov"] = 0.7, True
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=choose_optimizer(hp), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer).__name__ == "SGD"
    config = loaded.optimizer.get_config()
    assert config["momentum"] == pytest.approx(0.7) and config["nesterov"] is True


def test_default_picks_the_first_trial_family_and_select_keeps_the_order():
    hp = keras_tuner.HyperParameters()
    assert type(choose_optimizer(hp, ["adam", "rmsprop"], default="rmsprop")).__name__ == "RMSprop"
    assert [c.name for c in select_optimizers(["SGD", "adagrad"])] == ["sgd", "adagrad"]
