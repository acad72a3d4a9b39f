import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import FocalLoss, PolyLoss, get, poly_loss
from tests.backends import value_and_gradient
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract

N, C = 12, 5
ALPHA = [0.5, 1.0, 2.0, 1.0, 0.25]


def np_poly_multiclass(
    y_true,
    y_pred,
    epsilon=1.0,
    base="cross_entropy",
    gamma=2.0,
    alpha=None,
    from_logits=True,
    label_smoothing=0.0,
    ignore_index=None,
):
    y_pred = np.asarray(y_pred, np.float64)
    targets, valid = ref.one_hot_targets(y_true, y_pred.shape[-1], label_smoothing, ignore_index)
    log_p = ref.softmax_log_probs(y_pred, from_logits)
    p = np.exp(log_p)
    g = gamma if base == "focal" else 0.0
    leading = -targets * (1 - p) ** g * log_p
    alpha_t = 1.0
    if alpha is not None:
        leading = leading * np.asarray(alpha)
        alpha_t = (targets * np.asarray(alpha)).sum(-1) if np.ndim(alpha) else alpha
    one_minus_pt = (targets * (1 - p)).sum(-1)
    return (leading.sum(-1) + epsilon * alpha_t * one_minus_pt ** (g + 1)) * valid


def np_poly_binary(y_true, y_pred, epsilon=1.0, base="cross_entropy", gamma=2.0, alpha=None, from_logits=True):
    y = np.asarray(y_true, np.float64)
    log_p, log_1mp = ref.sigmoid_log_probs(y_pred, from_logits)
    p = np.exp(log_p)
    g = gamma if base == "focal" else 0.0
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = 1.0 if alpha is None else y * alpha + (1 - y) * (1 - alpha)
    leading = alpha_t * (1 - p_t) ** g * -(y * log_p + (1 - y) * log_1mp)
    return (leading + epsilon * alpha_t * (1 - p_t) ** (g + 1)).mean(-1)


def sparse_logits(rng, shape=(N,)):
    return rng.integers(0, C, size=shape), rng.normal(scale=2.0, size=(*shape, C))


def dense_probs(rng):
    labels = rng.integers(0, C, size=N)
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=N)


def spatial_sparse_with_ignored(rng):
    labels = rng.integers(0, C, size=(4, 3, 3))
    labels[0, 0, :] = 255
    labels[3, 2, 1] = 255
    return labels, rng.normal(size=(4, 3, 3, C))


def multilabel_logits(rng):
    return rng.integers(0, 2, size=(N, C)).astype("float32"), rng.normal(scale=2.0, size=(N, C))


CASES = [
    LossCase(
        "ce-sparse-logits",
        lambda **kw: PolyLoss(epsilon=1.0, from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_poly_multiclass(y, p, 1.0),
        full=True,
    ),
    LossCase(
        "ce-onehot-probs-smoothing-negative-epsilon",
        lambda **kw: PolyLoss(epsilon=-0.5, label_smoothing=0.1, **kw),
        dense_probs,
        lambda y, p: np_poly_multiclass(y, p, -0.5, from_logits=False, label_smoothing=0.1),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "focal-sparse-logits-alpha",
        lambda **kw: PolyLoss(epsilon=2.0, base="focal", gamma=1.5, alpha=ALPHA, from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_poly_multiclass(y, p, 2.0, "focal", 1.5, ALPHA),
    ),
    LossCase(
        "ce-spatial-ignore-index",
        lambda **kw: PolyLoss(epsilon=1.0, from_logits=True, ignore_index=255, **kw),
        spatial_sparse_with_ignored,
        lambda y, p: np_poly_multiclass(y, p, 1.0, ignore_index=255),
        reference_mask=lambda y, p: y != 255,
    ),
    LossCase(
        "focal-multilabel-logits-alpha",
        lambda **kw: PolyLoss(epsilon=-1.0, base="focal", mode="multilabel", alpha=0.25, from_logits=True, **kw),
        multilabel_logits,
        lambda y, p: np_poly_binary(y, p, -1.0, "focal", 2.0, 0.25),
        full=True,
    ),
    LossCase(
        "ce-binary-probs",
        lambda **kw: PolyLoss(epsilon=1.0, mode="binary", **kw),
        lambda rng: (rng.integers(0, 2, size=(N, 1)).astype("float32"), rng.uniform(0.02, 0.98, size=(N, 1))),
        lambda y, p: np_poly_binary(y, p, 1.0, from_logits=False),
        from_logits=False,
        activation="sigmoid",
    ),
]


class TestPolyContract(LossContract):
    cases = CASES


def test_epsilon_zero_equals_cross_entropy_and_focal(rng):
    labels, logits = sparse_logits(rng)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(PolyLoss(epsilon=0.0, from_logits=True)(labels, logits)), float(ce), rtol=1e-6)
    focal = FocalLoss(gamma=2.0, from_logits=True)(labels, logits)
    poly = PolyLoss(epsilon=0.0, base="focal", gamma=2.0, from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(poly), float(focal), rtol=1e-6)
    y, z = multilabel_logits(rng)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)(y, z)
    np.testing.assert_allclose(
        float(PolyLoss(epsilon=0.0, mode="multilabel", from_logits=True)(y, z)), float(bce), rtol=1e-6
    )


def test_poly_term_is_epsilon_times_one_minus_pt(rng):
    labels, logits = sparse_logits(rng)
    p_t = np.exp(ref.log_softmax(logits))[np.arange(N), labels]
    ce = np.asarray(poly_loss(labels, logits, epsilon=0.0, from_logits=True))
    poly = np.asarray(poly_loss(labels, logits, epsilon=3.0, from_logits=True))
    np.testing.assert_allclose(poly - ce, 3.0 * (1 - p_t), rtol=1e-4, atol=1e-6)


def paper_listing_poly1_focal(logits, labels, epsilon, gamma=2.0, alpha=0.25):
    """The Poly-1 focal listing of Leng et al. (2022), in NumPy float64 (sigmoid outputs)."""
    p = 1.0 / (1.0 + np.exp(-logits))
    ce_loss = np.logaddexp(0.0, logits) - labels * logits  # sigmoid_cross_entropy_with_logits
    pt = labels * p + (1 - labels) * (1 - p)
    weight = labels * alpha + (1 - labels) * (1 - alpha)
    focal = weight * ce_loss * (1 - pt) ** gamma
    return focal + epsilon * (1 - pt) ** (gamma + 1) * weight


def nndetection_poly1_focal(logits, labels, epsilon, gamma=2.0, alpha=0.25):
    """nnDetection's poly1_focal_loss_with_logits (alpha_t on the whole loss), NumPy float64."""
    p = 1.0 / (1.0 + np.exp(-logits))
    pt = p * labels + (1 - p) * (1 - labels)
    ce_term = np.logaddexp(0.0, logits) - labels * logits
    loss = (1.0 - pt) ** gamma * ce_term + epsilon * (1.0 - pt) ** (gamma + 1)
    return (alpha * labels + (1 - alpha) * (1 - labels)) * loss


@pytest.mark.parametrize("epsilon", [-1.0, 1.0])
def test_sigmoid_focal_base_with_alpha_follows_the_paper_listing_and_nndetection(rng, epsilon):
    labels, logits = multilabel_logits(rng)
    logits = logits.astype(np.float64)
    listing = paper_listing_poly1_focal(logits, labels, epsilon).mean(-1)
    np.testing.assert_allclose(listing, nndetection_poly1_focal(logits, labels, epsilon).mean(-1), rtol=1e-12)
    loss = PolyLoss(epsilon=epsilon, base="focal", mode="multilabel", alpha=0.25, from_logits=True, reduction="none")
    np.testing.assert_allclose(np.asarray(loss(labels, logits)), listing, rtol=1e-5)
    _, grad = value_and_gradient(lambda z: loss(labels, z), logits)
    expected = ref.numerical_gradient(
        lambda q: float(paper_listing_poly1_focal(q, labels, epsilon).mean(-1).sum()), logits
    )
    np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-5)


def test_positive_epsilon_raises_gradient_of_confident_predictions():
    labels = np.array([0])
    confident = np.array([[3.0, 0.0, 0.0]], np.float32)
    grads = []
    for epsilon in (-1.0, 0.0, 1.0):
        loss = PolyLoss(epsilon=epsilon, from_logits=True)
        _, grad = value_and_gradient(lambda z, loss=loss: loss(labels, z), confident)
        grads.append(abs(float(grad[0, 0])))
    assert grads[0] < grads[1] < grads[2]


def test_aliases_resolve():
    assert get("poly1").base == "cross_entropy" and get("poly1").epsilon == 1.0
    focal = get("poly1_focal", gamma=1.0)
    assert isinstance(focal, PolyLoss) and focal.base == "focal" and focal.gamma == 1.0
    assert get("binary_poly1").mode == "binary"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": -2.0}, r"`epsilon` must be a number >= -1. Received: epsilon=-2.0"),
        ({"base": "focall"}, r"`base` must be one of .*Did you mean 'focal'"),
        ({"gamma": -1.0}, r"`gamma` must be >= 0. Received: gamma=-1"),
        ({"alpha": 1.5}, r"`alpha` must be in \[0, 1\]. Received: alpha=1.5"),
        ({"mode": "binary", "ignore_index": 255}, r"ignore_index"),
        ({"label_smoothing": 1.0}, r"label_smoothing"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolyLoss(**kwargs)


def test_config_is_json_and_keeps_values():
    loss = PolyLoss(epsilon=-0.5, base="focal", mode="multilabel", gamma=1.0, alpha=[0.2, 0.8], from_logits=True)
    config = json.loads(json.dumps(loss.get_config()))
    assert config["alpha"] == [0.2, 0.8] and config["base"] == "focal" and config["epsilon"] == -0.5
    assert PolyLoss.from_config(config).get_config() == loss.get_config()
