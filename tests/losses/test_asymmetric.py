import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import AsymmetricLoss, asymmetric_loss, get
from tests.backends import value_and_gradient
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract

N, C = 12, 6


def np_asymmetric(y_true, y_pred, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, from_logits=True, label_smoothing=0.0):
    """Ridnik et al.'s ASL, written from the paper, averaged over the labels."""
    y = np.asarray(y_true, np.float64)
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    log_p, log_1mp = ref.sigmoid_log_probs(y_pred, from_logits)
    p = np.exp(log_p)
    p_m = np.maximum(p - clip, 0.0)
    log_1m_pm = np.log(np.minimum(1 - p + clip, 1.0)) if clip > 0 else log_1mp
    positive = (1 - p) ** gamma_pos * log_p
    negative = p_m**gamma_neg * log_1m_pm
    return -(y * positive + (1 - y) * negative).mean(-1)


def multilabel_logits(rng):
    return (rng.uniform(size=(N, C)) < 0.3).astype("float32"), rng.normal(scale=2.5, size=(N, C))


def multilabel_probs(rng):
    return (rng.uniform(size=(N, C)) < 0.3).astype("float32"), rng.uniform(0.01, 0.99, size=(N, C))


CASES = [
    LossCase(
        "defaults-logits",
        lambda **kw: AsymmetricLoss(from_logits=True, **kw),
        multilabel_logits,
        lambda y, p: np_asymmetric(y, p),
        full=True,
    ),
    LossCase(
        "fractional-gammas-probs-smoothing",
        lambda **kw: AsymmetricLoss(gamma_pos=0.5, gamma_neg=2.5, clip=0.2, label_smoothing=0.1, **kw),
        multilabel_probs,
        lambda y, p: np_asymmetric(y, p, 0.5, 2.5, 0.2, False, 0.1),
        from_logits=False,
        activation="sigmoid",
        full=True,
    ),
    LossCase(
        "no-clip-logits",
        lambda **kw: AsymmetricLoss(gamma_pos=0.0, gamma_neg=3.0, clip=0.0, from_logits=True, **kw),
        multilabel_logits,
        lambda y, p: np_asymmetric(y, p, 0.0, 3.0, 0.0),
    ),
    LossCase(
        "binary-column",
        lambda **kw: AsymmetricLoss(gamma_pos=1.0, gamma_neg=2.0, clip=0.1, from_logits=True, **kw),
        lambda rng: (rng.integers(0, 2, size=(N, 1)).astype("float32"), rng.normal(scale=2.0, size=(N, 1))),
        lambda y, p: np_asymmetric(y, p, 1.0, 2.0, 0.1),
    ),
]


class TestAsymmetricContract(LossContract):
    cases = CASES


def test_no_focusing_and_no_clip_equals_binary_cross_entropy(rng):
    y, z = multilabel_logits(rng)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)(y, z)
    asl = AsymmetricLoss(gamma_pos=0.0, gamma_neg=0.0, clip=0.0, from_logits=True)(y, z)
    np.testing.assert_allclose(float(asl), float(bce), rtol=1e-6)


def test_matches_official_sum_divided_by_labels(rng):
    """The official PyTorch code sums -[y log(p) (1-p)^g+ + (1-y) log(min(1-p+m, 1)) p_m^g-] over labels."""
    y, z = multilabel_logits(rng)
    p = 1 / (1 + np.exp(-z))
    xs_neg = np.minimum(1 - p + 0.05, 1.0)
    los = y * np.log(np.maximum(p, 1e-8)) + (1 - y) * np.log(np.maximum(xs_neg, 1e-8))
    pt = p * y + xs_neg * (1 - y)
    official = -(los * (1 - pt) ** (1.0 * y + 4.0 * (1 - y))).sum(-1)
    ours = np.asarray(asymmetric_loss(y, z, from_logits=True))
    np.testing.assert_allclose(ours * C, official, rtol=1e-5)


def test_raising_gamma_neg_lowers_loss_on_easy_negatives():
    y = np.zeros((1, 4), np.float32)
    easy_negatives = np.array([[-3.0, -2.0, -2.5, -1.5]], np.float32)
    values = [
        float(AsymmetricLoss(gamma_neg=g, clip=0.0, from_logits=True)(y, easy_negatives)) for g in (0.0, 1.0, 2.0, 4.0)
    ]
    assert values == sorted(values, reverse=True) and values[-1] < 0.01 * values[0]


def test_clip_discards_very_easy_negatives():
    y = np.zeros((1, 1), np.float32)
    # p = sigmoid(-4) = 0.018 < clip = 0.05
    value, grad = value_and_gradient(lambda z: AsymmetricLoss(clip=0.05, from_logits=True)(y, z), [[-4.0]])
    assert float(value) == 0.0 and float(grad[0, 0]) == 0.0


def test_positive_term_unaffected_by_negative_settings(rng):
    y = np.ones((N, C), np.float32)
    _, z = multilabel_logits(rng)
    a = AsymmetricLoss(gamma_neg=0.0, clip=0.0, from_logits=True)(y, z)
    b = AsymmetricLoss(gamma_neg=6.0, clip=0.3, from_logits=True)(y, z)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)


def test_aliases_resolve():
    assert isinstance(get("asl"), AsymmetricLoss) and get("asymmetric", gamma_neg=2.0).gamma_neg == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma_pos": -1.0}, r"`gamma_pos` must be >= 0. Received: gamma_pos=-1"),
        ({"gamma_neg": -0.5}, r"`gamma_neg` must be >= 0. Received: gamma_neg=-0.5"),
        ({"clip": 1.0}, r"`clip` must be in \[0, 1\). Received: clip=1"),
        ({"clip": -0.1}, r"`clip` must be in \[0, 1\). Received: clip=-0.1"),
        ({"label_smoothing": 1.0}, r"label_smoothing"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AsymmetricLoss(**kwargs)


def test_config_is_json_and_keeps_values():
    loss = AsymmetricLoss(gamma_pos=0.5, gamma_neg=3.0, clip=0.1, from_logits=True, label_smoothing=0.05, name="a")
    config = json.loads(json.dumps(loss.get_config()))
    assert (config["gamma_pos"], config["gamma_neg"], config["clip"]) == (0.5, 3.0, 0.1)
    assert AsymmetricLoss.from_config(config).get_config() == loss.get_config()
