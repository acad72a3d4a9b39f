"""Reward and penalty terms against float64 references; a NumPy reward raised by the score-function estimator."""

import keras
import numpy as np
import pytest
from scipy.special import log_softmax

from keras_lossopt.shaping import CompositeLoss, ConfidencePenalty, OutputPenalty, RewardTerm
from tests.backends import value_and_gradient


def test_confidence_penalty_is_the_negative_entropy(rng):
    logits = rng.normal(size=(5, 4)) * 3
    log_p = log_softmax(logits, axis=-1)
    expected = (np.exp(log_p) * log_p).sum(-1)
    np.testing.assert_allclose(ConfidencePenalty(from_logits=True, reduction="none")(None, logits), expected, rtol=1e-5)
    np.testing.assert_allclose(ConfidencePenalty(reduction="none")(None, np.exp(log_p)), expected, rtol=1e-4)
    probs = 1 / (1 + np.exp(-logits))
    bernoulli = (probs * np.log(probs) + (1 - probs) * np.log(1 - probs)).mean(-1)
    np.testing.assert_allclose(
        ConfidencePenalty(from_logits=True, mode="multilabel", reduction="none")(None, logits), bernoulli, rtol=1e-5
    )


def test_pereyra_objective_is_cross_entropy_minus_beta_entropy(rng):
    logits = rng.normal(size=(6, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(6,))
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = ce + ConfidencePenalty(beta=0.3, from_logits=True)
    log_p = log_softmax(logits.astype(np.float64), axis=-1)
    expected = np.mean(-log_p[np.arange(6), labels]) - 0.3 * np.mean(-(np.exp(log_p) * log_p).sum(-1))
    assert loss.weights_dict()["confidence_penalty"] == pytest.approx(0.3)
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_reward_is_subtracted_and_output_penalty_sees_only_the_prediction(rng):
    y = rng.normal(size=(4, 2)).astype("float32")
    z = rng.normal(size=(4, 2)).astype("float32")

    def closeness(y_true, y_pred):
        return -keras.ops.sum(keras.ops.square(y_true - y_pred), axis=-1)

    def energy_of(u):
        return keras.ops.sum(keras.ops.square(u), axis=-1)

    energy = OutputPenalty(energy_of, weight=0.1)
    loss = CompositeLoss({"fit": "mean_absolute_error", "reward": RewardTerm(closeness, weight=2.0), "energy": energy})
    y64, z64 = y.astype(np.float64), z.astype(np.float64)
    expected = np.mean(np.abs(y64 - z64).mean(-1) - 2.0 * -((y64 - z64) ** 2).sum(-1) + 0.1 * (z64**2).sum(-1))
    assert float(loss(y, z)) == pytest.approx(expected, rel=1e-5)


def test_score_function_reward_gradient_matches_the_exact_policy_gradient(rng):
    # Expected reward E_p[R(y, a)] has gradient sum_a R(y, a) grad p(a); the estimator is unbiased.
    payoff = np.array([[1.0, 0.0, 0.3], [0.2, 1.0, 0.0], [0.0, 0.5, 1.0]])

    def reward(y_true, classes):
        return payoff[y_true.reshape(-1), classes]

    logits = rng.normal(size=(2, 3)).astype("float32")
    labels = np.array([0, 2])
    term = RewardTerm(reward, differentiable=False, num_samples=4000, from_logits=True, seed=3, reduction="sum")
    # The gradient by the backend's own autodiff; the NumPy reward runs through its host call.
    value, estimate = value_and_gradient(lambda z: term(labels, z), logits)
    p = np.exp(log_softmax(logits.astype(np.float64), axis=-1))
    r = payoff[labels]  # (2, 3): reward of each class
    exact = p * (r - (p * r).sum(-1, keepdims=True))  # d/dz of sum_a p_a r_a
    np.testing.assert_allclose(estimate, exact, atol=0.02)
    assert float(value) == pytest.approx((p * r).sum(), abs=0.05)


@pytest.mark.slow
def test_training_on_a_numpy_reward_raises_it(rng):
    # Three clusters; the reward pays 1 for the right class and 0.3 for "abstain" (class 3), all in NumPy.
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, size=384)
    x = (centers[labels] + rng.normal(scale=0.5, size=(384, 2))).astype("float32")

    def business_value(y_true, classes):
        return np.where(classes == 3, 0.3, (classes == y_true.reshape(-1)).astype(float))

    def expected_reward(model):
        p = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(x, verbose=0)))
        value = np.stack([business_value(labels, np.full_like(labels, c)) for c in range(4)], axis=-1)
        return float((p * value).sum(-1).mean())

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    reward = RewardTerm(business_value, differentiable=False, num_samples=4, from_logits=True, seed=1)
    model.compile(keras.optimizers.Adam(0.05), loss=CompositeLoss({"value": reward}))
    before = expected_reward(model)
    history = model.fit(x, labels, epochs=10, batch_size=32, verbose=0)
    after = expected_reward(model)
    assert after > max(0.9, before + 0.25), (before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]  # the loss is minus the sampled reward
