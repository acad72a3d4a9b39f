import math

import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AutoProjectedGradientDescent,
    ProjectedGradientDescent,
    StrongestAttack,
    apgd_checkpoints,
    dlr_loss,
    targeted_dlr_loss,
)
from tests.backends import tensorflow_only, to_numpy

EPS = 0.1


# --------------------------------------------------------------------- NumPy float64 references
def numpy_dlr(logits, labels):
    ordered = np.sort(logits, axis=1)
    rows = np.arange(len(labels))
    others = np.where(np.eye(logits.shape[1])[labels] > 0, -np.inf, logits).max(axis=1)
    return -(logits[rows, labels] - others) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def numpy_targeted_dlr(logits, labels, targets):
    ordered = np.sort(logits, axis=1)
    rows = np.arange(len(labels))
    return -(logits[rows, labels] - logits[rows, targets]) / (
        ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12
    )


def numpy_loss_and_logit_gradient(z, labels, targets, loss):
    """Loss per sample and its gradient with respect to the logits (float64, piecewise formulas)."""
    rows = np.arange(len(z))
    grad = np.zeros_like(z)
    if loss == "cross_entropy":
        shifted = z - z.max(axis=1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return -np.log(p[rows, labels]), p - np.eye(z.shape[1])[labels]
    order = np.argsort(-z, axis=1, kind="stable")
    if loss == "dlr":
        other = np.where(order[:, 0] == labels, order[:, 1], order[:, 0])
        denominator = z[rows, order[:, 0]] - z[rows, order[:, 2]] + 1e-12
        difference = z[rows, labels] - z[rows, other]
        np.add.at(grad, (rows, labels), -1 / denominator)
        np.add.at(grad, (rows, other), 1 / denominator)
        np.add.at(grad, (rows, order[:, 0]), difference / denominator**2)
        np.add.at(grad, (rows, order[:, 2]), -difference / denominator**2)
        return -difference / denominator, grad
    denominator = z[rows, order[:, 0]] - 0.5 * (z[rows, order[:, 2]] + z[rows, order[:, 3]]) + 1e-12
    difference = z[rows, labels] - z[rows, targets]
    np.add.at(grad, (rows, labels), -1 / denominator)
    np.add.at(grad, (rows, targets), 1 / denominator)
    np.add.at(grad, (rows, order[:, 0]), difference / denominator**2)
    np.add.at(grad, (rows, order[:, 2]), -0.5 * difference / denominator**2)
    np.add.at(grad, (rows, order[:, 3]), -0.5 * difference / denominator**2)
    return -difference / denominator, grad


def numpy_apgd(w, b, x0, x_start, labels, targets, decision_losses, *, eps, steps, norm, loss, rho=0.75,
               momentum=0.75):  # fmt: skip
    """Algorithm 1 of Croce and Hein (2020) on a linear model `z = x W + b`, written from the paper.

    The checkpoints come from the paper's sequence p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), w_j = ceil(p_j N). Iterates, gradients and
    losses are float64. The comparisons of losses (did a step increase the loss, is it the best)
    use `decision_losses`, the attack's float32 values: once the ascent converges, successive
    losses differ in the eighth digit and float32 and float64 round such ties differently. The
    float64 losses are returned to check that they agree with the float32 ones.
    """
    w, b, x0 = (np.asarray(v, "float64") for v in (w, b, x0))
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    checkpoints = [math.ceil(round(q * steps, 9)) for q in p[1:] if math.ceil(round(q * steps, 9)) <= steps]

    def norm_of(v):
        return np.sqrt((v**2).sum(axis=1, keepdims=True))

    def project(x):
        if norm == "linf":
            x = np.clip(x, x0 - eps, x0 + eps)
        else:
            d = x - x0
            x = x0 + d * np.minimum(1.0, eps / np.maximum(norm_of(d), 1e-12))
        return np.clip(x, 0.0, 1.0)

    def evaluate(x):
        value, dz = numpy_loss_and_logit_gradient(x @ w + b, labels, targets, loss)
        return value, dz @ w.T

    def direction(g):
        return np.sign(g) if norm == "linf" else g / (norm_of(g) + 1e-12)

    x = np.asarray(x_start, "float64")
    x_prev = x.copy()
    f64, g = evaluate(x)
    f, losses = decision_losses[0], [f64]
    x_best, g_best, f_best = x.copy(), g.copy(), f.copy()
    eta = np.full(len(x), 2 * eps)
    f_prev, increases = f.copy(), np.zeros(len(x))
    f_best_at_check, halved_at_check = f_best.copy(), np.ones(len(x), bool)
    etas, xs, last = [eta.copy()], [x.copy()], 0
    for k in range(steps):
        a = 1.0 if k == 0 else momentum
        z = project(x + eta[:, None] * direction(g))
        x_new = project(x + a * (z - x) + (1 - a) * (x - x_prev))
        x_prev = x
        f64, g = evaluate(x_new)
        f = decision_losses[k + 1]
        losses.append(f64)
        increases += f > f_prev
        f_prev = f
        better = f > f_best
        x_best[better], g_best[better], f_best[better] = x_new[better], g[better], f[better]
        x = x_new
        if k + 1 in checkpoints:
            condition1 = increases <= rho * (k + 1 - last)
            condition2 = ~halved_at_check & (f_best_at_check >= f_best)
            halve = condition1 | condition2
            eta[halve] /= 2
            x, g = x.copy(), g.copy()
            x[halve], g[halve] = x_best[halve], g_best[halve]
            halved_at_check, f_best_at_check, increases, last = halve, f_best.copy(), np.zeros(len(x)), k + 1
        etas.append(eta.copy())
        xs.append(x.copy())
    return np.array(etas), np.array(xs), np.array(losses)


# --------------------------------------------------------------------- checkpoints and the step size
@pytest.mark.parametrize("steps", [100, 1000])
def test_checkpoints_follow_the_papers_sequence(steps):
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    paper = [math.ceil(round(q * steps, 9)) for q in p[1:] if math.ceil(round(q * steps, 9)) <= steps]
    assert apgd_checkpoints(steps) == paper
    if steps == 100:
        assert paper == [22, 41, 57, 70, 80, 87, 93, 99]


def test_checkpoints_of_other_budgets_follow_the_reference_codes_integer_windows():
    # int(0.22 * 20) = 4, then windows shrink by max(int(0.6), 1) = 1 down to max(int(1.2), 1) = 1.
    assert apgd_checkpoints(20) == [4, 7, 9, *range(10, 21)]
    assert apgd_checkpoints(1) == [1]


@pytest.mark.parametrize("norm, loss, eps", [("linf", "cross_entropy", 0.05), ("l2", "cross_entropy", 0.15),
                                             ("linf", "targeted_dlr", 0.05)])  # fmt: skip
def test_step_sizes_and_iterates_match_the_papers_algorithm_on_a_linear_model(rng, norm, loss, eps):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    w, b = model.get_weights()
    x = rng.uniform(0.2, 0.8, size=(40, 6)).astype("float32")
    logits = x @ w + b
    ordered = np.sort(logits, axis=1)
    x = x[ordered[:, -1] - ordered[:, -2] > 0.15][:12]  # clear margins: no start is misclassified
    labels = np.argmax(x @ w + b, axis=1)  # correctly classified: every sample is attacked
    attack = AutoProjectedGradientDescent(eps, norm=norm, steps=100, loss=loss, seed=1)
    history = attack.history(model, x, labels)
    if loss != "cross_entropy":  # DLR is flat (gradient ~1e-12) where a start is already misclassified
        assert np.all(history["loss"][0] < 0)
    targets = np.argsort(-(x @ w + b), axis=1)[:, 1]
    etas, xs, losses = numpy_apgd(
        w, b, x, history["x"][0], labels, targets, history["loss"], eps=eps, steps=100, norm=norm, loss=loss
    )
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history["step_size"], etas, rtol=1e-6)
    np.testing.assert_allclose(history["x"], xs, atol=2e-5)
    assert len(np.unique(etas[-1])) >= 1 and etas[-1].min() < 2 * eps  # the schedule did halve


# --------------------------------------------------------------------- DLR against its formula
def jax_x64():
    import jax

    return bool(jax.config.jax_enable_x64)


def test_dlr_losses_match_their_formulas_in_float64(rng):
    logits = rng.normal(size=(64, 10)) * 3
    labels = rng.integers(0, 10, size=64)
    targets = (labels + rng.integers(1, 10, size=64)) % 10
    value = to_numpy(dlr_loss(labels, logits))
    # JAX computes in float32 unless `jax_enable_x64` is set: float64 input then agrees to float32 precision.
    float64 = keras.backend.backend() != "jax" or jax_x64()
    assert value.dtype == (np.float64 if float64 else np.float32)
    rtol = 1e-12 if float64 else 1e-5
    np.testing.assert_allclose(value, numpy_dlr(logits, labels), rtol=rtol)
    np.testing.assert_allclose(
        to_numpy(targeted_dlr_loss(labels, targets, logits)), numpy_targeted_dlr(logits, labels, targets), rtol=rtol
    )
    # Invariant to shifting and positive scaling (what makes it robust to a saturated softmax).
    np.testing.assert_allclose(to_numpy(dlr_loss(labels, 7.0 * logits - 2.0)), value, rtol=1e-9 if float64 else 1e-5)
    assert np.all((value > 0) == (np.argmax(logits, axis=1) != labels))


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(np.array([0]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="at least 4 classes"):
        targeted_dlr_loss(np.array([0]), np.array([1]), np.zeros((1, 3)))


# --------------------------------------------------------------------- guarantees on a trained model
@pytest.mark.parametrize(
    "norm, loss, eps", [("linf", "cross_entropy", EPS), ("linf", "targeted_dlr", EPS), ("l2", "dlr", 1.0)]
)
def test_examples_stay_in_the_eps_ball_and_the_clip_range(trained, digits, norm, loss, eps):
    _, _, x, y = digits
    x, y = x[:48], y[:48]
    attack = AutoProjectedGradientDescent(eps, norm=norm, steps=10, loss=loss, num_target_classes=1, seed=0)
    x_adv = attack(trained, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    distance = np.abs(x_adv - x).max(axis=1) if norm == "linf" else np.sqrt(((x_adv - x) ** 2).sum(axis=1))
    assert distance.max() <= eps * (1 + 1e-6) + 1e-6


def test_apgd_ce_is_at_least_as_strong_as_pgd20_and_leaves_misclassified_inputs_alone(trained, digits):
    _, _, x, y = digits
    predicted = np.argmax(to_numpy(trained(x)), axis=1)
    x_apgd = AutoProjectedGradientDescent(EPS, steps=30, seed=0)(trained, x, y)
    x_pgd = ProjectedGradientDescent(EPS, steps=20, seed=0)(trained, x, y)
    robust_apgd = np.argmax(to_numpy(trained(x_apgd)), axis=1) == y
    robust_pgd = np.argmax(to_numpy(trained(x_pgd)), axis=1) == y
    # Both start at random: on the same weights the three backends' streams moved either result by one or
    # two of 128 samples (measured), so "at least as strong" holds up to two samples.
    assert robust_apgd.mean() <= robust_pgd.mean() + 2 / len(y)
    assert robust_apgd.mean() < (predicted == y).mean()  # it does break some
    wrong = predicted != y
    np.testing.assert_array_equal(x_apgd[wrong], x[wrong])  # never attacked: wrong to begin with


@tensorflow_only  # a tf.function with jit_compile; on JAX every call is jax.jit-compiled
@pytest.mark.slow  # XLA compiles the while loops on CPU in tens of seconds
def test_generate_is_graph_code_that_compiles_with_xla(trained, digits):
    import tensorflow as tf

    _, _, x, y = digits
    attack = AutoProjectedGradientDescent(EPS, steps=5, loss="targeted_dlr", num_target_classes=1, seed=0)
    attack._own_seed_generator()
    function = tf.function(lambda x, y: attack.generate(trained, x, y), jit_compile=True)
    x_adv = function(tf.constant(x[:16]), tf.constant(y[:16])).numpy()
    assert np.abs(x_adv - x[:16]).max() <= EPS + 1e-6
    strongest = StrongestAttack([AutoProjectedGradientDescent(EPS, steps=5), ProjectedGradientDescent(EPS, steps=5)])
    assert np.abs(strongest(trained, x[:16], y[:16]) - x[:16]).max() <= EPS + 1e-6


def test_probability_outputs_give_the_same_dlr_attack(trained, trained_probs, digits):
    _, _, x, y = digits
    logits_attack = AutoProjectedGradientDescent(EPS, steps=10, loss="dlr", seed=0)
    probs_attack = AutoProjectedGradientDescent(EPS, steps=10, loss="dlr", seed=0)
    np.testing.assert_allclose(logits_attack(trained, x[:16], y[:16]), probs_attack(trained_probs, x[:16], y[:16]),
                               atol=1e-5)  # fmt: skip


def test_config_round_trip_with_non_defaults():
    attack = AutoProjectedGradientDescent(
        0.2, norm="l2", steps=7, loss="targeted_dlr", restarts=2, num_target_classes=3, rho=0.5, momentum=0.5,
        clip=(-1.0, 1.0), from_logits=True, seed=4, name="apgd_t",
    )  # fmt: skip
    config = attack.get_config()
    again = AutoProjectedGradientDescent.from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert restored.get_config() == config
