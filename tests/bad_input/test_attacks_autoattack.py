"""Bad arguments to APGD, Square, AutoAttack and the strength settings: errors that name the argument."""

import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AdversarialModel,
    AutoAttack,
    AutoProjectedGradientDescent,
    FastGradientMethod,
    ProjectedGradientDescent,
    RobustnessEvaluation,
    SquareAttack,
    StrongestAttack,
    apgd_checkpoints,
    evaluate_robustness,
    robust_accuracy,
)
from tests.bad_input.cases import BadInputCase, assert_bad_input


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
    with pytest.raises(ValueError, match=r"same number of samples .*Received: x\.shape=\(4, 4\), y\.shape=\(3,\)"):
        AutoProjectedGradientDescent(0.1, steps=2)(model, X, Y[:3])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"queries": 0}, ValueError, r"^`queries` must be >= 1\. Received: queries=0$"),
        ({"restarts": 0}, ValueError, r"`restarts` must be >= 1\. Received: restarts=0"),
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
    with pytest.raises(ValueError, match=r"`strength` must be one of .*Received: strength='plus'"):
        evaluate_robustness(model, (X, Y), eps=0.1, strength="plus")
    with pytest.raises(ValueError, match=r"Give either `attacks` or `strength`, not both"):
        evaluate_robustness(model, (X, Y), FastGradientMethod(0.1), strength="fast")
    with pytest.raises(ValueError, match=r"`strength` must be one of \['pgd', 'fast', 'standard'\].*'standard'\?"):
        robust_accuracy(model, X, Y, eps=0.1, strength="standrd")
    with pytest.raises(ValueError, match=r"`sanity_samples` must be >= 1"):
        evaluate_robustness(model, (X, Y), eps=0.1, strength="fast", sanity_samples=0)
    with pytest.raises(ValueError, match=r"Give `attack`, or `eps` for the attacks of `strength`"):
        RobustnessEvaluation(validation_data=(X, Y), strength="fast")
    with pytest.raises(ValueError, match=r"Give either `attack` or `strength`, not both"):
        RobustnessEvaluation(FastGradientMethod(0.1), (X, Y), strength="standard")


# ------------------------------------------------------------------ issue 21: decided up front
LOGITS_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)
X8 = RNG.uniform(0.1, 0.9, size=(8, 4)).astype("float32")


def classifier(classes, activation=None):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(classes, activation=activation)])


class LogitsSubclass(keras.Model):
    """A subclassed model that outputs logits: no last layer to read, the outputs decide."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3, activation="relu")  # no activation that says logits or probabilities

    def call(self, x):
        return self.dense(x) * 10.0 - 5.0


def labels_of(model, x=X8):
    out = keras.ops.convert_to_numpy(model(x))
    return (out[:, 0] > 0.5).astype(int) if out.shape[-1] == 1 else np.argmax(out, axis=-1)


def no_attack_runs(monkeypatch):
    """Records every APGD / Square round that starts: the class check must come before all of them."""
    started = []
    for cls in (AutoProjectedGradientDescent, SquareAttack):
        original = cls.perturb
        monkeypatch.setattr(
            cls, "perturb", lambda self, *a, _o=original, **k: started.append(self.name) or _o(self, *a, **k)
        )
    return started


def fit_with(callback, model, x=X8):
    model.compile("sgd", LOGITS_CE, jit_compile=True)
    return model.fit(x, labels_of(model, x), epochs=2, verbose=0, callbacks=[callback])


FEW_CLASSES = r"needs a model with at least 4 classes; model .* has {n}.*strength='pgd'.*AutoAttack\(eps, attacks="
CASES = [
    BadInputCase(
        "square queries 0 names queries",
        lambda: SquareAttack(0.1, queries=0),
        ValueError,
        (r"`queries` must be >= 1", r"queries=0"),
    ),
    BadInputCase(
        "trades with APGD at construction",
        lambda: AdversarialModel(classifier(3), AutoProjectedGradientDescent(0.1, steps=3), method="trades"),
        ValueError,
        (r"`method='trades'` needs a single Attack that maximizes a given objective", "AutoProjectedGradientDescent"),
    ),
    BadInputCase(
        "trades with Square at construction",
        lambda: AdversarialModel(classifier(3), SquareAttack(0.1, queries=5), method="trades"),
        ValueError,
        (r"`method='trades'`", "SquareAttack optimizes its own loss"),
    ),
    BadInputCase(
        "fast training from an APGD-DLR attack attacks the compiled loss",
        lambda: AdversarialModel(classifier(4), AutoProjectedGradientDescent(0.1, loss="dlr"), method="fast"),
        None,
        check_result=lambda model: model.training_attack.loss is None and model.training_attack.random_start,
    ),
    BadInputCase(
        "adversarial model with an eager ensemble",
        lambda: AdversarialModel(classifier(10), AutoAttack(0.1)),
        ValueError,
        (r"`attack` must run inside the train step", "AutoAttack runs eagerly"),
    ),
    BadInputCase(
        "strongest attack of an eager ensemble",
        lambda: StrongestAttack([AutoAttack(0.1)]),
        ValueError,
        (r"`attacks` must hold Attack objects that run in graph code",),
    ),
    BadInputCase(
        "apgd from_logits False on a linear last layer",
        lambda: AutoProjectedGradientDescent(0.1, steps=3, from_logits=False)(
            classifier(3), X8, labels_of(classifier(3))
        ),
        ValueError,
        (r"from_logits=False", r"outputs logits", r"Set from_logits=True, or None"),
    ),
    BadInputCase(
        "apgd from_logits False on a subclassed logits model",
        lambda: AutoProjectedGradientDescent(0.1, steps=3, from_logits=False)(LogitsSubclass(), X8, np.zeros(8, int)),
        ValueError,
        (r"from_logits=False, but model .* outputs values in \[", r"not probabilities", r"from_logits=True"),
    ),
    BadInputCase(
        "pgd from_logits True on a softmax output",
        lambda: ProjectedGradientDescent(0.1, steps=2, from_logits=True)(
            classifier(3, "softmax"), X8, labels_of(classifier(3, "softmax"))
        ),
        ValueError,
        (r"from_logits=True", r"outputs probabilities", r"Set from_logits=False"),
    ),
    BadInputCase(
        "square from_logits False on logits",
        lambda: SquareAttack(0.1, queries=5, from_logits=False)(classifier(3), X8, labels_of(classifier(3))),
        ValueError,
        (r"SquareAttack\(.*\) has from_logits=False",),
    ),
    BadInputCase(
        "adversarial model from_logits mismatch at construction",
        lambda: AdversarialModel(classifier(3), ProjectedGradientDescent(0.1, steps=2, from_logits=False)),
        ValueError,
        (r"from_logits=False", r"outputs logits"),
    ),
    BadInputCase(
        "robust_accuracy standard on two classes",
        lambda: robust_accuracy(classifier(2), X8, labels_of(classifier(2)), eps=0.1, strength="standard"),
        ValueError,
        (FEW_CLASSES.format(n=2), r"version='standard' \(the evaluation's strength='standard'\)"),
    ),
    BadInputCase(
        "evaluate_robustness fast on three classes",
        lambda: evaluate_robustness(classifier(3), (X8, labels_of(classifier(3))), eps=0.1, strength="fast"),
        ValueError,
        (FEW_CLASSES.format(n=3), r"apgd_t \(loss='targeted_dlr'\)", r"loss='dlr' also works"),
    ),
    BadInputCase(
        "evaluate_robustness standard on one sigmoid unit",
        lambda: evaluate_robustness(
            classifier(1, "sigmoid"), (X8, labels_of(classifier(1, "sigmoid"))), eps=0.1, strength="standard"
        ),
        ValueError,
        (FEW_CLASSES.format(n=2),),
    ),
    BadInputCase(
        "callback standard on three classes fails when fit starts",
        lambda: fit_with(
            RobustnessEvaluation(validation_data=(X8, labels_of(classifier(3))), eps=0.1, strength="standard"),
            classifier(3),
        ),
        ValueError,
        (FEW_CLASSES.format(n=3),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_attack_findings_of_issue_21_fail_early_naming_the_argument(case, monkeypatch):
    started = no_attack_runs(monkeypatch)
    assert_bad_input(case)
    assert started == [], f"{case.id}: an attack ran before the error: {started}"


def test_the_suggested_ensembles_work_with_few_classes():
    for classes, attacks in (
        (2, [AutoProjectedGradientDescent(0.1, steps=5, seed=0), SquareAttack(0.1, queries=20, seed=0)]),
        (3, [AutoProjectedGradientDescent(0.1, steps=5, seed=0), AutoProjectedGradientDescent(0.1, steps=5,
                                                                                               loss="dlr", seed=0)]),
    ):  # fmt: skip
        model = classifier(classes)
        result = evaluate_robustness(model, (X8, labels_of(model)), AutoAttack(0.1, attacks=attacks),
                                     sanity_checks=False)  # fmt: skip
        assert result["clean_accuracy"] == 1.0 and 0.0 <= result["robust_accuracy"] <= 1.0


def test_the_from_logits_check_accepts_what_detection_accepts():
    logits, probabilities = classifier(3), classifier(3, "softmax")
    for model, setting in ((logits, True), (probabilities, False), (logits, None), (probabilities, None)):
        x_adv = AutoProjectedGradientDescent(0.1, steps=3, from_logits=setting, seed=0)(model, X8, labels_of(model))
        assert np.abs(x_adv - X8).max() <= 0.1 + 1e-6
