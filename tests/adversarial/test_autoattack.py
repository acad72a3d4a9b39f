import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AutoAttack,
    ProjectedGradientDescent,
    RobustnessEvaluation,
    autoattack_attacks,
    evaluate_robustness,
    robust_accuracy,
)
from keras_lossopt.adversarial.sanity import eps_growth_warning, zero_gradient_warning
from tests.backends import to_numpy

EPS = 0.1


def correct(model, x, y):
    return np.argmax(to_numpy(model(x, training=False)), axis=1) == y


class ShatteredGradient(keras.layers.Layer):
    """Identity forward; backward multiplies the gradient by pseudo-random signs (a masked model).

    The shattered gradients of Athalye et al. (2018): the model is exactly as vulnerable as
    the one it wraps, but gradient attacks follow a scrambled direction.
    """

    def call(self, inputs):
        @keras.ops.custom_gradient
        def scramble(v):
            def gradient(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return upstream * keras.ops.sign(keras.ops.sin(1e4 * v) + 0.3)

            return v * 1.0, gradient

        return scramble(inputs)


def test_the_standard_version_has_autoattacks_order_and_budgets():
    apgd_ce, apgd_t, square = autoattack_attacks(0.3, version="standard")
    assert (apgd_ce.loss, apgd_ce.steps, apgd_ce.restarts) == ("cross_entropy", 100, 1)
    assert (apgd_t.loss, apgd_t.steps, apgd_t.num_target_classes, apgd_t.restarts) == ("targeted_dlr", 100, 9, 1)
    assert (square.queries, square.p_init, square.rescale_schedule) == (5000, 0.8, False)
    assert [a.name for a in autoattack_attacks(1.0, norm="l2")] == ["apgd_ce", "apgd_t"]  # Square is L-inf only


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_standard_evaluation_is_at_least_as_strong_as_pgd20_sample_by_sample(trained, digits):
    _, _, x, y = digits
    x, y = x[:64], y[:64]
    standard = evaluate_robustness(trained, (x, y), eps=EPS, strength="standard", sanity_checks=False,
                                   return_adversarial=True)  # fmt: skip
    pgd = evaluate_robustness(trained, (x, y), ProjectedGradientDescent(EPS, steps=20, seed=0), return_adversarial=True)
    robust_standard = correct(trained, standard["x_adv"], y) & correct(trained, x, y)
    robust_pgd = correct(trained, pgd["x_adv"], y) & correct(trained, x, y)
    assert not np.any(robust_standard & ~robust_pgd)  # nothing PGD-20 breaks survives the ensemble
    assert standard["robust_accuracy"] == pytest.approx(robust_standard.mean())
    accuracies = list(standard["per_attack_accuracy"].values())
    assert list(standard["per_attack_accuracy"]) == ["apgd_ce", "apgd_t", "square"]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[-1] == standard["robust_accuracy"]
    assert set(standard["attack_seconds"]) == {"apgd_ce", "apgd_t", "square"}
    assert np.abs(standard["x_adv"] - x).max() <= EPS + 1e-6
    assert standard["x_adv"].min() >= 0.0 and standard["x_adv"].max() <= 1.0


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_a_masked_model_is_flagged_by_the_black_box_check(trained, digits):
    _, _, x, y = digits
    x, y = x[:40], y[:40]
    masked = keras.Sequential([keras.Input((64,)), ShatteredGradient(), trained])
    with pytest.warns(UserWarning, match="black-box Square attack lowered the robust accuracy"):
        result = evaluate_robustness(masked, (x, y), eps=EPS, strength="fast", sanity_samples=16)
    assert any("gradients are likely masked" in message for message in result["warnings"])
    # The unmasked model passes the same checks.
    honest = evaluate_robustness(trained, (x, y), eps=EPS, strength="fast", sanity_samples=16)
    assert honest["warnings"] == []
    assert honest["robust_accuracy"] < result["robust_accuracy"]  # masking inflated the number


def test_a_model_that_ignores_its_input_fails_the_eps_and_gradient_checks(digits):
    _, _, x, y = digits
    constant = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, kernel_initializer="zeros",
                                                                        bias_initializer="random_normal")])  # fmt: skip
    label = int(np.argmax(to_numpy(constant(x[:1]))[0]))
    x, y = x[y == label][:8], y[y == label][:8]  # all correct, and no budget can change that
    assert "all-zero input gradient" in zero_gradient_warning(constant, x, y)
    with pytest.warns(UserWarning, match="all-zero gradient"):  # the attack's own check warns too
        message, curve = eps_growth_warning(constant, x, y, 0.25, steps=3)
    assert "does not fall to ~0" in message and curve[-1] == (1.0, 1.0)


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_robust_accuracy_strength_and_the_callback_setting(trained, digits):
    _, _, x, y = digits
    x, y = x[:24], y[:24]
    fast = robust_accuracy(trained, x, y, eps=EPS, strength="fast")
    pgd = robust_accuracy(trained, x, y, eps=EPS)  # the documented default, "pgd"
    assert fast <= pgd + 1 / 24
    callback = RobustnessEvaluation(validation_data=(x, y), eps=EPS, strength="fast")
    assert isinstance(callback.attack, AutoAttack) and callback.attack.version == "fast"
    config = callback.get_config()
    assert config["attack"] is None and (config["eps"], config["strength"]) == (EPS, "fast")
    again = RobustnessEvaluation.from_config(config)
    assert again.strength == "fast" and again.attack.get_config() == callback.attack.get_config()
    callback.set_model(trained)
    callback.on_train_begin()
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["val_robust_accuracy"] <= pgd + 1 / 24 and "warnings" not in callback.results[0]


def test_auto_attack_config_round_trip_with_custom_attacks():
    attack = AutoAttack(0.2, norm="l2", version="fast", attacks=[ProjectedGradientDescent(0.2, norm="l2")],
                        clip=None, seed=1, name="aa")  # fmt: skip
    config = attack.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert restored.get_config() == config and [a.name for a in restored.attacks] == ["projected_gradient_descent"]
