import json
import logging

import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    FastGradientMethod,
    ProjectedGradientDescent,
    StrongestAttack,
    default_evaluation_attacks,
    evaluate_robustness,
    generate_adversarial,
    robust_accuracy,
)
from keras_lossopt.adversarial.base import _SHARED_GENERATE
from tests.backends import tensorflow_only, to_numpy


def predictions(model, x):
    return np.argmax(to_numpy(model(x, training=False)), axis=-1)


def test_generate_adversarial_over_arrays_and_datasets_matches_one_call(trained, digits, capsys):
    _, _, x, y = digits
    attack = FastGradientMethod(0.1)
    expected = attack(trained, x, y)
    from_arrays = generate_adversarial(trained, (x, y), attack, batch_size=50, verbose=1)
    assert "128/128" in capsys.readouterr().out  # the progress bar counts samples
    np.testing.assert_allclose(from_arrays, expected, atol=1e-7)
    import tensorflow as tf  # tf.data feeds the evaluation on every backend

    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(40)
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    np.testing.assert_allclose(generate_adversarial(trained, batched, attack, verbose=0), expected, atol=1e-7)
    np.testing.assert_allclose(
        generate_adversarial(trained, unbatched, attack, batch_size=30, verbose=0), expected, atol=1e-7
    )


def test_robust_accuracy_counts_samples_correct_clean_and_under_attack(trained, digits):
    _, _, x, y = digits
    attack = FastGradientMethod(0.1)
    clean = predictions(trained, x) == y
    robust = clean & (predictions(trained, attack(trained, x, y)) == y)
    assert robust_accuracy(trained, x, y, attack, batch_size=40) == pytest.approx(robust.mean())
    result = evaluate_robustness(trained, (x, y), attack)
    assert result["clean_accuracy"] == pytest.approx(clean.mean())
    assert result["attack_success_rate"] == pytest.approx((clean.sum() - robust.sum()) / clean.sum())
    assert result["num_samples"] == len(x)
    assert robust_accuracy(trained, x, y, eps=0.0) == pytest.approx(clean.mean())
    # One-hot labels: the built-in cross-entropy reads them (the compiled loss here is sparse).
    ce_attack = FastGradientMethod(0.1, loss="cross_entropy")
    one_hot = np.eye(10, dtype="float32")[y]
    assert robust_accuracy(trained, x, one_hot, ce_attack) == robust_accuracy(trained, x, y, ce_attack)


def test_strongest_attack_fools_every_sample_that_any_attack_fools(trained, digits):
    _, _, x, y = digits
    attacks = [
        FastGradientMethod(0.08),
        ProjectedGradientDescent(0.08, steps=5, loss="cross_entropy", seed=0),
        ProjectedGradientDescent(0.08, steps=5, loss="margin", seed=1),
    ]
    fooled_each = [predictions(trained, a(trained, x, y)) != y for a in attacks]
    # Fresh copies with the same seeds give the same random starts inside StrongestAttack.
    strongest = StrongestAttack([type(a).from_config(a.get_config()) for a in attacks])
    x_adv = strongest(trained, x, y)
    np.testing.assert_array_equal(predictions(trained, x_adv) != y, np.any(fooled_each, axis=0))
    assert np.abs(x_adv - x).max() <= 0.08 + 1e-6
    fgsm_only = robust_accuracy(trained, x, y, attacks[0])  # deterministic: the same examples again
    assert robust_accuracy(trained, x, y, attacks) <= fgsm_only + 1e-9


def test_default_evaluation_is_pgd_on_cross_entropy_and_margin(trained, digits):
    _, _, x, y = digits
    attacks = default_evaluation_attacks(0.1, steps=7, restarts=2, seed=3)
    assert [a.loss for a in attacks] == ["cross_entropy", "margin"]
    assert all(a.random_start and a.steps == 7 and a.restarts == 2 for a in attacks)
    fgsm = robust_accuracy(trained, x, y, FastGradientMethod(0.1))
    assert robust_accuracy(trained, x, y, eps=0.1) <= fgsm  # FGSM-only overstates robustness


def test_strongest_attack_config_and_bad_input():
    attack = StrongestAttack(default_evaluation_attacks(0.2, norm="l2", steps=4), from_logits=True, name="worst")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(attack)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, StrongestAttack)
    assert json.loads(json.dumps(restored.get_config())) == config["config"]
    with pytest.raises(ValueError, match=r"at least one attack"):
        StrongestAttack([])
    with pytest.raises(ValueError, match=r"untargeted"):
        StrongestAttack([FastGradientMethod(0.1, targeted=True)])
    with pytest.raises(ValueError, match=r"Give `attacks`, or `eps` for the attacks of `strength`"):
        robust_accuracy(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), np.zeros((2, 2)), [0, 1])


@tensorflow_only  # TensorFlow's tracing count and its "retracing" warning; test_attacks counts traces on JAX
def test_repeated_evaluations_share_one_trace_and_log_no_retracing_warning(rng):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    x = rng.uniform(size=(12, 6)).astype("float32")
    y = predictions(model, x)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        for _ in range(6):  # each call builds new attack objects (strength="pgd")
            robust_accuracy(model, x, y, eps=0.1)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in messages if "retracing" in m], messages
    assert [f.experimental_get_tracing_count() for f, _ in _SHARED_GENERATE[model].values()] == [1]


def test_a_shared_trace_keeps_each_attacks_own_random_stream(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    x = rng.uniform(size=(12, 6)).astype("float32")
    y = predictions(model, x)
    attack = ProjectedGradientDescent(0.1, steps=3, seed=5)
    first, second = attack(model, x, y), attack(model, x, y)
    assert not np.array_equal(first, second)  # the stream goes on: a new random start
    np.testing.assert_array_equal(ProjectedGradientDescent(0.1, steps=3, seed=5)(model, x, y), first)


def test_robust_accuracy_equals_a_float64_numpy_reference_on_a_linear_model(rng):
    """FGSM on a linear softmax model written out in NumPy: the same examples and the same robust accuracy."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    w, b = (v.astype("float64") for v in model.get_weights())
    x = rng.uniform(0.1, 0.9, size=(200, 8)).astype("float32")
    logits = x.astype("float64") @ w + b
    y = logits.argmax(axis=1)
    y[::5] = (y[::5] + 1) % 4  # some samples misclassified to begin with
    eps = 0.05
    # d CE / d x = (softmax(xW + b) - onehot(y)) W^T; FGSM moves each input by eps * sign(gradient).
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    gradient = (probs - np.eye(4)[y]) @ w.T
    x_adv = np.clip(x + eps * np.sign(gradient), 0.0, 1.0)
    adv_logits = x_adv @ w + b
    clean = logits.argmax(1) == y
    robust = clean & (adv_logits.argmax(1) == y)
    decided = (np.abs(gradient) > 1e-6).all(axis=1) & (
        np.sort(adv_logits, 1)[:, -1] - np.sort(adv_logits, 1)[:, -2] > 1e-4
    )
    assert decided.mean() > 0.9 and 0.1 < robust.mean() < clean.mean()  # the attack breaks some, not all
    attack = FastGradientMethod(eps, loss="cross_entropy")
    x_attacked = attack(model, x, y)
    np.testing.assert_allclose(x_attacked[decided], x_adv[decided], atol=1e-6)
    got = robust_accuracy(model, x[decided], y[decided], attack, batch_size=64)
    assert got == pytest.approx(robust[decided].mean(), abs=1e-12)
