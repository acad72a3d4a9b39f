"""Bad arguments to APGD, Square, AutoAttack and the strength settings: errors that name the argument."""

import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AutoAttack,
    AutoProjectedGradientDescent,
    FastGradientMethod,
    RobustnessEvaluation,
    SquareAttack,
    apgd_checkpoints,
    evaluate_robustness,
    robust_accuracy,
)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


X = np.full((4, 4), 0.5, "float32")
Y = np.array([0, 1, 2, 0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"eps": -0.1}, ValueError, r"`eps` must be >= 0\. Received: eps=-0\.1"),
        ({"steps": 0}, ValueError, r"`steps` must be >= 1\. Received: steps=0"),
        ({"loss": "dlr_targeted"}, ValueError, r"`loss` must be one of .*Did you mean 'targeted_dlr'\?"),
        ({"num_target_classes": 0}, ValueError, r"`num_target_classes` must be >= 1"),
        ({"rho": 0.0}, ValueError, r"`rho` must be in \(0, 1\]\. Received: rho=0"),
        ({"momentum": 1.5}, ValueError, r"`momentum` must be in \[0, 1\]\. Received: momentum=1\.5"),
        ({"restarts": 1.5}, TypeError, r"`restarts` must be an integer"),
        ({"norm": "l3"}, ValueError, r"`norm` must be one of \['linf', 'l2'\]"),
    ],
)
def test_apgd_names_the_bad_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        AutoProjectedGradientDescent(**{"eps": 0.1, **kwargs})


def test_apgd_checkpoints_and_dlr_class_count(model):
    with pytest.raises(ValueError, match=r"`steps` must be >= 1\. Received: steps=0"):
        apgd_checkpoints(0)
    binary = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`loss='dlr'` needs a model with at least 3 classes; this model has 2"):
        AutoProjectedGradientDescent(0.1, loss="dlr", steps=2)(binary, X, Y % 2)
    with pytest.raises(ValueError, match=r"`loss='targeted_dlr'` needs a model with at least 4 classes"):
        AutoProjectedGradientDescent(0.1, loss="targeted_dlr", steps=2)(model, X, Y)
    with pytest.raises(ValueError, match=r"same number of samples\. Received: x\.shape=\(4, 4\), y\.shape=\(3,\)"):
        AutoProjectedGradientDescent(0.1, steps=2)(model, X, Y[:3])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"queries": 0}, ValueError, r"`steps` must be >= 1|`queries`"),
        ({"p_init": 1.5}, ValueError, r"`p_init` must be in \(0, 1\]\. Received: p_init=1\.5"),
        ({"norm": "l2"}, ValueError, r"`norm` must be one of \['linf'\]\. Received: norm='l2'"),
        ({"eps": float("nan")}, ValueError, r"`eps` must be finite"),
    ],
)
def test_square_names_the_bad_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        SquareAttack(**{"eps": 0.1, **kwargs})


def test_autoattack_and_the_strength_settings_name_the_bad_argument(model):
    with pytest.raises(ValueError, match=r"`version` must be one of \['standard', 'fast'\]\. Received: version='std'"):
        AutoAttack(0.1, version="std")
    with pytest.raises(ValueError, match=r"`attacks` must hold at least one attack"):
        AutoAttack(0.1, attacks=[])
    with pytest.raises(ValueError, match=r"`attacks` must hold untargeted Attack objects"):
        AutoAttack(0.1, attacks=[FastGradientMethod(0.1, targeted=True)])
    with pytest.raises(ValueError, match=r"`version` must be one of .*Received: version='plus'"):
        evaluate_robustness(model, (X, Y), eps=0.1, version="plus")
    with pytest.raises(ValueError, match=r"Give either `attacks` or a `strength`/`version`, not both"):
        evaluate_robustness(model, (X, Y), FastGradientMethod(0.1), version="fast")
    with pytest.raises(ValueError, match=r"`strength` must be one of \['pgd', 'fast', 'standard'\].*'standard'\?"):
        robust_accuracy(model, X, Y, eps=0.1, strength="standrd")
    with pytest.raises(ValueError, match=r"`sanity_samples` must be >= 1"):
        evaluate_robustness(model, (X, Y), eps=0.1, version="fast", sanity_samples=0)
    with pytest.raises(ValueError, match=r"Give `attack`, or `eps` for the attacks of `strength`"):
        RobustnessEvaluation(validation_data=(X, Y), strength="fast")
    with pytest.raises(ValueError, match=r"Give either `attack` or `strength`, not both"):
        RobustnessEvaluation(FastGradientMethod(0.1), (X, Y), strength="standard")
