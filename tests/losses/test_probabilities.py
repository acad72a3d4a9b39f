import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses._probabilities import cross_entropy, power, sigmoid_parts, softmax_parts
from tests.losses import references as ref


def test_softmax_parts_match_float64_and_their_gradients():
    z = np.random.default_rng(0).normal(scale=5.0, size=(4, 7))
    var = tf.Variable(z.astype("float32"))
    with tf.GradientTape() as tape:
        logits, logsumexp, expect = softmax_parts(var, from_logits=True)
        log_p = logits - logsumexp[:, None]
        p = tf.stack([expect(tf.one_hot(tf.fill([4], c), 7)) for c in range(7)], axis=-1)
        total = tf.reduce_sum(log_p[:, 0]) + tf.reduce_sum(p[:, 1])
    np.testing.assert_allclose(log_p.numpy(), ref.log_softmax(z), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.numpy(), np.exp(ref.log_softmax(z)), rtol=1e-5, atol=1e-7)
    expected = ref.numerical_gradient(
        lambda x: ref.log_softmax(x)[:, 0].sum() + np.exp(ref.log_softmax(x))[:, 1].sum(), z
    )
    np.testing.assert_allclose(tape.gradient(total, var).numpy(), expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("z", [0.0, 1e-3, -2.5, 30.0, -100.0])
def test_sigmoid_parts_values_and_gradients_including_zero(z):
    var = tf.Variable([z])
    with tf.GradientTape(persistent=True) as tape:
        parts = sigmoid_parts(var, from_logits=True)
    p, q = 1 / (1 + np.exp(-np.float64(z))), 1 / (1 + np.exp(np.float64(z)))  # q = 1 - p without cancellation
    expected = [p, q, ref.log_sigmoid(z), ref.log_sigmoid(-z)]
    slopes = [p * q, -p * q, q, -p]
    for got, value, slope in zip(parts, expected, slopes):
        np.testing.assert_allclose(got.numpy()[0], value, rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(tape.gradient(got, var).numpy()[0], slope, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, 4, 5.0, 8, 0.5, 2.5, 9])
def test_power_matches_pow_with_finite_gradient_at_zero(exponent):
    # Non-integer exponents floor the base at float32's tiny (1e-38) for a finite gradient.
    x = tf.Variable([0.0, 0.3, 0.9, 1.0])
    with tf.GradientTape() as tape:
        value = power(x, exponent)
    np.testing.assert_allclose(value.numpy(), np.power([0.0, 0.3, 0.9, 1.0], exponent), rtol=1e-6, atol=1e-18)
    grad = tape.gradient(value, x, unconnected_gradients="zero").numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1:], exponent * np.power([0.3, 0.9, 1.0], exponent - 1), rtol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
def test_cross_entropy_from_parts_matches_float64_for_soft_targets(from_logits):
    rng = np.random.default_rng(1)
    y_pred = rng.normal(scale=3.0, size=(5, 4)) if from_logits else rng.dirichlet(np.ones(4), size=5)
    targets = rng.dirichlet(np.ones(4), size=5) * rng.uniform(0.5, 1.5, size=(5, 1))  # not summing to one
    logits, logsumexp, _ = softmax_parts(tf.constant(y_pred, tf.float32), from_logits)
    got = cross_entropy(tf.constant(targets, tf.float32), logits, logsumexp)
    expected = -(targets * ref.softmax_log_probs(y_pred, from_logits)).sum(-1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
