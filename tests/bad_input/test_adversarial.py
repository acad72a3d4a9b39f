"""Bad input to the attacks, the robustness evaluation, AdversarialModel and RobustnessEvaluation.

Each case is the mistake a user makes and the error it must get: the message names the
argument or value and says what is expected. The tiny models are built once per module.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf  # tf.data feeds fit and the evaluation on every backend

from keras_lossopt.adversarial import (
    AdversarialModel,
    FastGradientMethod,
    MomentumIterativeMethod,
    ProjectedGradientDescent,
    RobustnessEvaluation,
    StrongestAttack,
    evaluate_robustness,
    generate_adversarial,
    robust_accuracy,
)
from tests.backends import BACKEND

LOGITS_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
CLIP_HINT = r"Set `clip` to the range of your data.*clip=None"


@pytest.fixture(scope="module")
def env():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="tiny")
    model.compile("sgd", LOGITS_CE)
    left, right = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    two_inputs = keras.Model([left, right], keras.layers.Dense(3)(keras.layers.Concatenate()([left, right])))
    source = keras.Input((4,))
    two_outputs = keras.Model(source, [keras.layers.Dense(3)(source), keras.layers.Dense(2)(source)])
    x = rng.uniform(0.1, 0.9, size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    return types.SimpleNamespace(
        model=model, two_inputs=two_inputs, two_outputs=two_outputs, x=x, y=y, standardized=(x - 0.5) * 6
    )


def fgsm(**kwargs):
    return FastGradientMethod(0.05, **kwargs)


def pgd(**kwargs):
    return ProjectedGradientDescent(0.05, steps=2, **kwargs)


# (case id, call(env), expected error, message pattern)
CASES = [
    # ---------------------------------------------------------------- attack calls (issue 11: 6, 1, 7)
    (
        "inputs_outside_default_clip",
        lambda e: fgsm()(e.model, e.standardized, e.y),
        ValueError,
        r"`x` has values in \[-2\.\d+, 2\.\d+\], outside the valid input range clip=\(0\.0, 1\.0\) of "
        r"FastGradientMethod.*" + CLIP_HINT,
    ),
    (
        "pixels_0_255_with_default_clip",
        lambda e: pgd()(e.model, e.x * 255, e.y),
        ValueError,
        r"outside the valid input range clip=\(0\.0, 1\.0\).*scale the data into \(0\.0, 1\.0\)",
    ),
    (
        "inputs_outside_a_custom_clip",
        lambda e: pgd(clip=(0.2, 0.8))(e.model, e.x, e.y),
        ValueError,
        r"clip=\(0\.2, 0\.8\) of ProjectedGradientDescent",
    ),
    (
        "trajectory_outside_clip",
        lambda e: pgd().trajectory(e.model, e.standardized, e.y),
        ValueError,
        r"outside the valid input range",
    ),
    (
        "nan_input",
        lambda e: fgsm()(e.model, np.where(e.x > 0.5, np.nan, e.x), e.y),
        ValueError,
        r"`x` must be finite; it holds NaN or inf",
    ),
    (
        "label_above_the_classes",
        lambda e: fgsm()(e.model, e.x, np.array([0, 1, 7, 0, 1, 2])),
        ValueError,
        r"the labels in `y` range from 0 to 7, outside the 3 classes of the model \(indices 0 to 2\)",
    ),
    (
        "negative_label",
        lambda e: pgd()(e.model, e.x, e.y - 1),
        ValueError,
        r"the labels in `y` range from -1 to 1, outside the 3 classes",
    ),
    (
        "float_labels_that_are_not_integers",
        lambda e: fgsm()(e.model, e.x, e.y + 0.7),
        ValueError,
        r"the labels in `y` look continuous \(e\.g\. 0\.7\): class labels are integer indices",
    ),
    (
        "target_outside_the_classes",
        lambda e: fgsm(targeted=True)(e.model, e.x, e.y + 3),
        ValueError,
        r"the labels in `y \(targets\)` range from 3 to 5",
    ),
    (
        "fewer_labels_than_inputs",
        lambda e: fgsm()(e.model, e.x, e.y[:4]),
        ValueError,
        r"`x` and `y` must hold the same number of samples.*x.shape=\(6, 4\), y.shape=\(4,\)",
    ),
    (
        "string_labels",
        lambda e: fgsm()(e.model, e.x, np.array(list("abcabc"))),
        TypeError,
        r"`y` must hold numeric labels",
    ),
    ("string_inputs", lambda e: fgsm()(e.model, np.full((6, 4), "a"), e.y), TypeError, r"`x` must be a numeric array"),
    (
        "one_hot_of_the_wrong_width",
        lambda e: fgsm(loss="margin")(e.model, e.x, np.eye(5)[e.y]),
        ValueError,
        r"one-hot rows of shape \(N, 3\) for a model with 3 classes\. Received: shape \(6, 5\)",
    ),
    (
        "two_input_model",
        lambda e: fgsm()(e.two_inputs, [e.x, e.x], e.y),
        ValueError,
        r"one input tensor and one output; model .* has 2 inputs \['left', 'right'\]",
    ),
    ("two_output_model", lambda e: fgsm()(e.two_outputs, e.x, e.y), ValueError, r"has 2 outputs"),
    ("not_a_model", lambda e: fgsm()(lambda x: x, e.x, e.y), ValueError, r"`model` must be a keras.Model"),
    (
        "strongest_attack_outside_clip",
        lambda e: StrongestAttack([fgsm(), pgd()])(e.model, e.standardized, e.y),
        ValueError,
        r"outside the valid input range",
    ),
    (
        "strongest_attack_label_outside",
        lambda e: StrongestAttack([fgsm()])(e.model, e.x, e.y + 1),
        ValueError,
        r"outside the 3 classes",
    ),
    # ---------------------------------------------------------------- attack construction
    ("eps_not_a_number", lambda e: FastGradientMethod(eps="big"), TypeError, r"`eps` must be a number"),
    ("eps_nan", lambda e: ProjectedGradientDescent(eps=float("nan")), ValueError, r"`eps` must be finite"),
    (
        "clip_not_a_pair",
        lambda e: FastGradientMethod(clip=0.5),
        ValueError,
        r"`clip` must be None or a pair \(low, high\)\. Received: clip=0\.5",
    ),
    ("clip_reversed", lambda e: FastGradientMethod(clip=(1, 0)), ValueError, r"`clip` must satisfy low < high"),
    (
        "unknown_norm",
        lambda e: MomentumIterativeMethod(norm="l3"),
        ValueError,
        r"`norm` must be one of \['linf', 'l2'\]\. Received: norm='l3'",
    ),
    ("steps_zero", lambda e: ProjectedGradientDescent(steps=0), ValueError, r"`steps` must be >= 1"),
    ("misspelled_loss", lambda e: ProjectedGradientDescent(loss="margn"), ValueError, r"Unknown loss 'margn'"),
    ("strongest_attack_empty", lambda e: StrongestAttack([]), ValueError, r"at least one attack"),
    (
        "strongest_attack_of_names",
        lambda e: StrongestAttack(["pgd"]),
        ValueError,
        r"`attacks` must hold Attack objects",
    ),
    ("strongest_attack_targeted", lambda e: StrongestAttack([fgsm(targeted=True)]), ValueError, r"untargeted"),
    # ---------------------------------------------------------------- evaluation
    (
        "robust_accuracy_attack_by_name",
        lambda e: robust_accuracy(e.model, e.x, e.y, "pgd"),
        ValueError,
        r"`attacks` must be an attack object.*Received: attacks='pgd'\. An attack needs its budget: build it as "
        r"ProjectedGradientDescent\(eps=\.\.\.\)",
    ),
    (
        "robust_accuracy_attack_and_eps",
        lambda e: robust_accuracy(e.model, e.x, e.y, fgsm(), eps=0.3),
        ValueError,
        r"Give either `attacks` or `eps`.*not both",
    ),
    (
        "robust_accuracy_without_attack_or_eps",
        lambda e: robust_accuracy(e.model, e.x, e.y),
        ValueError,
        r"Give `attacks`, or `eps` for the attacks of `strength`",
    ),
    (
        "robust_accuracy_outside_clip",
        lambda e: robust_accuracy(e.model, e.standardized, e.y, eps=0.05),
        ValueError,
        r"outside the valid input range clip=\(0\.0, 1\.0\)",
    ),
    (
        "robust_accuracy_labels_outside_with_any_attack",
        lambda e: robust_accuracy(e.model, e.x, e.y + 5, lambda model, x, y: x),
        ValueError,
        r"the labels in `y` range from 5 to 7, outside the 3 classes",
    ),
    (
        "robust_accuracy_targeted",
        lambda e: robust_accuracy(e.model, e.x, e.y, fgsm(targeted=True)),
        ValueError,
        r"untargeted",
    ),
    (
        "evaluate_robustness_x_only",
        lambda e: evaluate_robustness(e.model, e.x, fgsm()),
        ValueError,
        r"`data` must be a tuple \(x, y\) or a tf.data.Dataset",
    ),
    (
        "evaluate_robustness_lengths",
        lambda e: evaluate_robustness(e.model, (e.x, e.y[:3]), fgsm()),
        ValueError,
        r"`x` and `y` must have the same length.*len\(x\)=6, len\(y\)=3",
    ),
    (
        "evaluate_robustness_batch_size",
        lambda e: evaluate_robustness(e.model, (e.x, e.y), fgsm(), batch_size=0),
        ValueError,
        r"`batch_size` must be >= 1",
    ),
    (
        "generate_adversarial_attack_by_name",
        lambda e: generate_adversarial(e.model, (e.x, e.y), "fgsm"),
        ValueError,
        r"build it as FastGradientMethod\(eps=\.\.\.\)",
    ),
    (
        "generate_adversarial_attack_class",
        lambda e: generate_adversarial(e.model, (e.x, e.y), FastGradientMethod),
        ValueError,
        r"Pass an instance, e.g. FastGradientMethod\(eps=\.\.\.\), not the class",
    ),
    # ---------------------------------------------------------------- AdversarialModel construction
    (
        "adversarial_model_two_inputs",
        lambda e: AdversarialModel(e.two_inputs, fgsm()),
        ValueError,
        r"AdversarialModel and its attacks support models with one input tensor.*has 2 inputs",
    ),
    (
        "adversarial_model_attack_by_name",
        lambda e: AdversarialModel(e.model, "pgd"),
        ValueError,
        r"`attack` must be an attack object.*ProjectedGradientDescent\(eps=\.\.\.\)",
    ),
    (
        "adversarial_model_targeted_attack",
        lambda e: AdversarialModel(e.model, fgsm(targeted=True)),
        ValueError,
        r"`attack` must be untargeted",
    ),
    (
        "adversarial_model_not_a_model",
        lambda e: AdversarialModel("model.keras", fgsm()),
        ValueError,
        r"`model` must be a keras.Model\. Received: model='model.keras'",
    ),
    (
        "adversarial_model_method",
        lambda e: AdversarialModel(e.model, fgsm(), method="trade"),
        ValueError,
        r"`method` must be one of .*Did you mean 'trades'",
    ),
    (
        "adversarial_model_trades_needs_one_attack",
        lambda e: AdversarialModel(e.model, StrongestAttack([fgsm(), pgd()]), method="trades"),
        ValueError,
        r"`method='trades'` needs a single Attack",
    ),
    # ---------------------------------------------------------------- RobustnessEvaluation construction
    (
        "callback_attack_by_name",
        lambda e: RobustnessEvaluation("pgd", (e.x, e.y)),
        ValueError,
        r"`attack` must be an attack object.*build it as ProjectedGradientDescent\(eps=\.\.\.\)",
    ),
    (
        "callback_validation_x_only",
        lambda e: RobustnessEvaluation(fgsm(), e.x),
        ValueError,
        r"`validation_data` must be a tuple \(x, y\) of arrays or a tf.data.Dataset",
    ),
    (
        "callback_validation_lengths",
        lambda e: RobustnessEvaluation(fgsm(), (e.x, e.y[:2])),
        ValueError,
        r"`validation_data` must hold one label per input.*x.shape=\(6, 4\), y.shape=\(2,\)",
    ),
    (
        "callback_validation_outside_clip",
        lambda e: RobustnessEvaluation(fgsm(), (e.standardized, e.y)),
        ValueError,
        r"outside the valid input range clip=\(0\.0, 1\.0\) of FastGradientMethod",
    ),
    (
        "callback_dataset_without_labels",
        lambda e: RobustnessEvaluation(fgsm(), tf.data.Dataset.from_tensor_slices(e.x)),
        ValueError,
        r"`validation_data` must yield \(x, y\)",
    ),
    (
        "callback_every_n_epochs",
        lambda e: RobustnessEvaluation(fgsm(), (e.x, e.y), every_n_epochs=0),
        ValueError,
        r"`every_n_epochs` must be >= 1",
    ),
]


@pytest.mark.parametrize("call, error, match", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gets_a_clear_error(env, call, error, match):
    with pytest.raises(error, match=match):
        call(env)


def test_adversarial_model_refuses_training_data_outside_clip_in_fit(env):
    # A clone: Keras' JAX trainer leaves a model's variables purged when an error stops `fit` mid-epoch.
    model = AdversarialModel(keras.models.clone_model(env.model), fgsm())
    model.compile("sgd", LOGITS_CE, jit_compile=True)  # arrays: checked before XLA drops assertions
    with pytest.raises(ValueError, match=r"`x` has values in \[-2\.\d+, 2\.\d+\], outside .*clip=\(0\.0, 1\.0\)"):
        model.fit(env.standardized, env.y, epochs=1, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((env.standardized, env.y)).batch(3)
    model.compile("sgd", LOGITS_CE, jit_compile=False)  # datasets: the assertion in train_step
    # A TensorFlow graph raises InvalidArgumentError; JAX without jit and PyTorch run the step eagerly.
    error = tf.errors.InvalidArgumentError if BACKEND == "tensorflow" else ValueError
    with pytest.raises(error, match=r"training inputs lie outside clip=\(0\.0, 1\.0\) of the attack"):
        model.fit(dataset, epochs=1, verbose=0)


def test_callback_checks_labels_against_the_model_when_fit_starts(env):
    callback = RobustnessEvaluation(fgsm(), (env.x, env.y + 1))
    with pytest.raises(ValueError, match=r"the labels in `validation_data` range from 1 to 3, outside the 3 classes"):
        env.model.fit(env.x, env.y, epochs=1, verbose=0, callbacks=[callback])
    missing = RobustnessEvaluation.from_config({"attack": fgsm(), "validation_data": None})
    with pytest.raises(ValueError, match=r"needs `validation_data`"):
        env.model.fit(env.x, env.y, epochs=1, verbose=0, callbacks=[missing])


# ---------------------------------------------------------------- the documented right answers
def test_unbounded_inputs_are_attacked_with_clip_none_and_move_at_most_eps(env):
    x_adv = fgsm(clip=None)(env.model, env.standardized, env.y)
    assert np.abs(x_adv - env.standardized).max() == pytest.approx(0.05, abs=1e-6)
    bounded = pgd(clip=(-3.0, 3.0))(env.model, env.standardized, env.y)
    assert np.abs(bounded - env.standardized).max() <= 0.05 + 1e-6


def test_inputs_on_the_clip_bounds_and_every_label_layout_are_accepted(env):
    x = np.clip(np.round(env.x), 0.0, 1.0)  # every value exactly 0 or 1
    for y in (env.y, env.y[:, None], env.y.astype("float32"), np.eye(3)[env.y], keras.ops.convert_to_tensor(env.y)):
        assert fgsm(loss="cross_entropy")(env.model, x, y).shape == x.shape
    assert fgsm()(env.model, env.x[:0], env.y[:0]).shape == (0, 4)
