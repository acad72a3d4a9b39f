import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AutoProjectedGradientDescent,
    NotDifferentiableError,
    SquareAttack,
    square_p_schedule,
)
from tests.backends import to_numpy

EPS = 0.1


def test_p_schedule_halves_at_the_reference_thresholds():
    # fra31/auto-attack square.py p_selection: p_init for it <= 10, then /2 on (10, 50], ...
    expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 200: 0.2, 201: 0.1, 500: 0.1, 501: 0.05,
                1001: 0.025, 2001: 0.0125, 4001: 0.00625, 6001: 0.003125, 8001: 0.0015625}  # fmt: skip
    for iteration, p in expected.items():
        assert square_p_schedule(iteration) == pytest.approx(p)
    # The rescaled schedule of a 1,000-query budget reaches p_init / 512 at its end.
    assert square_p_schedule(999, queries=1000, rescale=True) == pytest.approx(0.8 / 512)


@pytest.mark.parametrize("shape", [(6, 10, 10, 2), (6, 9, 7), (6, 30)])
def test_examples_stay_in_the_eps_ball_and_the_clip_range(rng, shape):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape[1:]), keras.layers.Flatten(), keras.layers.Dense(4)])
    x = rng.uniform(0.0, 1.0, size=shape).astype("float32")
    x[0] = 0.0  # at the edge of the range: clipping matters
    y = np.argmax(to_numpy(model(x)), axis=1)  # all correct: every sample is attacked
    x_adv = SquareAttack(EPS, queries=60, seed=0)(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() <= EPS + 1e-6


def test_square_breaks_a_model_without_input_gradients(trained, digits):
    """A rounding layer cuts the gradient: APGD refuses, the black-box attack still works."""
    _, _, x, y = digits
    x, y = x[:64], y[:64]
    quantized = keras.Sequential(
        [keras.Input((64,)), keras.layers.Lambda(lambda v: keras.ops.round(v * 8.0) / 8.0), trained]
    )
    with pytest.raises(NotDifferentiableError):
        AutoProjectedGradientDescent(EPS, steps=5)(quantized, x, y)
    correct = np.argmax(to_numpy(quantized(x)), axis=1) == y
    x_adv = SquareAttack(0.15, queries=300, seed=0)(quantized, x, y)
    robust = np.argmax(to_numpy(quantized(x_adv)), axis=1) == y
    assert robust.sum() < correct.sum()
    np.testing.assert_array_equal(x_adv[~correct], x[~correct])  # wrong to begin with: untouched


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_more_queries_break_more_samples(trained, digits):
    _, _, x, y = digits
    x, y = x[:64], y[:64]
    few = np.argmax(to_numpy(trained(SquareAttack(EPS, queries=20, seed=0)(trained, x, y))), axis=1) == y
    many = np.argmax(to_numpy(trained(SquareAttack(EPS, queries=400, seed=0)(trained, x, y))), axis=1) == y
    assert many.sum() < few.sum()


def test_config_round_trip_and_bad_arguments():
    attack = SquareAttack(0.2, queries=30, p_init=0.5, restarts=2, rescale_schedule=True, clip=None, seed=3,
                          name="sq")  # fmt: skip
    config = attack.get_config()
    assert SquareAttack.from_config(config).get_config() == config
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack)).get_config() == config
    with pytest.raises(ValueError, match="`norm` must be one of"):
        SquareAttack(0.1, norm="l2")
    with pytest.raises(ValueError, match="p_init"):
        SquareAttack(0.1, p_init=0.0)
    with pytest.raises(ValueError, match=r"x\.shape"):
        model = keras.Sequential([keras.Input((2, 2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        SquareAttack(0.1, queries=2)(model, np.zeros((1, 2, 2, 2, 1), "float32"), np.array([0]))
