import keras
import numpy as np
import pytest

from keras_lossopt.losses._probabilities import cross_entropy, power, sigmoid_parts, softmax_parts
from tests.backends import to_numpy, value_and_gradient
from tests.losses import references as ref


def test_softmax_parts_match_float64_and_their_gradients():
    z = np.random.default_rng(0).normal(scale=5.0, size=(4, 7))

    def log_p0_and_p1(var):
        logits, logsumexp, expect = softmax_parts(var, from_logits=True)
        log_p = logits - logsumexp[:, None]
        p = keras.ops.stack([expect(keras.ops.one_hot(keras.ops.full([4], c), 7)) for c in range(7)], axis=-1)
        return keras.ops.stack([log_p[:, 0], p[:, 1]], axis=-1)

    values, grad = value_and_gradient(log_p0_and_p1, z)
    np.testing.assert_allclose(values[:, 0], ref.log_softmax(z)[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values[:, 1], np.exp(ref.log_softmax(z))[:, 1], rtol=1e-5, atol=1e-7)
    expected = ref.numerical_gradient(
        lambda x: ref.log_softmax(x)[:, 0].sum() + np.exp(ref.log_softmax(x))[:, 1].sum(), z
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("z", [0.0, 1e-3, -2.5, 30.0, -100.0])
def test_sigmoid_parts_values_and_gradients_including_zero(z):
    p, q = 1 / (1 + np.exp(-np.float64(z))), 1 / (1 + np.exp(np.float64(z)))  # q = 1 - p without cancellation
    expected = [p, q, ref.log_sigmoid(z), ref.log_sigmoid(-z)]
    slopes = [p * q, -p * q, q, -p]
    for index, (value, slope) in enumerate(zip(expected, slopes)):
        got, grad = value_and_gradient(lambda var, index=index: sigmoid_parts(var, from_logits=True)[index], [z])
        np.testing.assert_allclose(got[0], value, rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(grad[0], slope, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, 4, 5.0, 8, 0.5, 2.5, 9])
def test_power_matches_pow_with_finite_gradient_at_zero(exponent):
    # Non-integer exponents floor the base at float32's tiny (1e-38) for a finite gradient.
    value, grad = value_and_gradient(lambda x: power(x, exponent), [0.0, 0.3, 0.9, 1.0])
    np.testing.assert_allclose(value, np.power([0.0, 0.3, 0.9, 1.0], exponent), rtol=1e-6, atol=1e-18)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1:], exponent * np.power([0.3, 0.9, 1.0], exponent - 1), rtol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
def test_cross_entropy_from_parts_matches_float64_for_soft_targets(from_logits):
    rng = np.random.default_rng(1)
    y_pred = rng.normal(scale=3.0, size=(5, 4)) if from_logits else rng.dirichlet(np.ones(4), size=5)
    targets = rng.dirichlet(np.ones(4), size=5) * rng.uniform(0.5, 1.5, size=(5, 1))  # not summing to one
    logits, logsumexp, _ = softmax_parts(keras.ops.convert_to_tensor(y_pred, "float32"), from_logits)
    got = to_numpy(cross_entropy(keras.ops.convert_to_tensor(targets, "float32"), logits, logsumexp))
    expected = -(targets * ref.softmax_log_probs(y_pred, from_logits)).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
