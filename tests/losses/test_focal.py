import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import FocalLoss, focal_loss
from tests.backends import value_and_gradient
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract

N, C = 12, 5


def np_focal_multiclass(
    y_true, y_pred, gamma=2.0, alpha=None, from_logits=True, label_smoothing=0.0, ignore_index=None
):
    y_pred = np.asarray(y_pred, np.float64)
    targets, valid = ref.one_hot_targets(y_true, y_pred.shape[-1], label_smoothing, ignore_index)
    log_p = ref.softmax_log_probs(y_pred, from_logits)
    p = np.exp(log_p)
    per_class = -targets * (1 - p) ** np.asarray(gamma) * log_p
    if alpha is not None:
        per_class = per_class * np.asarray(alpha)
    return per_class.sum(-1) * valid


def np_focal_binary(y_true, y_pred, gamma=2.0, alpha=None, from_logits=True, label_smoothing=0.0):
    y = np.asarray(y_true, np.float64)
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    log_p, log_1mp = ref.sigmoid_log_probs(y_pred, from_logits)
    p = np.exp(log_p)
    bce = -(y * log_p + (1 - y) * log_1mp)
    p_t = y * p + (1 - y) * (1 - p)
    loss = (1 - p_t) ** np.asarray(gamma) * bce
    if alpha is not None:
        a = np.asarray(alpha)
        loss = (y * a + (1 - y) * (1 - a)) * loss
    return loss.mean(-1)


def sparse_logits(rng, shape=(N,)):
    return rng.integers(0, C, size=shape), rng.normal(scale=2.0, size=(*shape, C))


def dense_probs(rng):
    labels = rng.integers(0, C, size=N)
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=N)


def multilabel_logits(rng):
    return rng.integers(0, 2, size=(N, C)).astype("float32"), rng.normal(scale=2.0, size=(N, C))


def spatial_sparse_with_ignored(rng):
    labels = rng.integers(0, C, size=(4, 3, 3))
    labels[0, 0, :] = 255
    labels[2, 1, 1] = 255
    return labels, rng.normal(size=(4, 3, 3, C))


CASES = [
    LossCase(
        "multiclass-sparse-logits",
        lambda **kw: FocalLoss(gamma=2.0, from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_focal_multiclass(y, p, 2.0),
        full=True,
    ),
    LossCase(
        "multiclass-onehot-probs-alpha-smoothing",
        lambda **kw: FocalLoss(gamma=1.5, alpha=[0.5, 1.0, 2.0, 1.0, 0.25], label_smoothing=0.1, **kw),
        dense_probs,
        lambda y, p: np_focal_multiclass(y, p, 1.5, [0.5, 1.0, 2.0, 1.0, 0.25], False, 0.1),
        from_logits=False,
        activation="softmax",
        full=True,
    ),
    LossCase(
        "multiclass-per-class-gamma-fractional",
        lambda **kw: FocalLoss(gamma=[0.0, 0.5, 1.0, 2.0, 3.0], from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_focal_multiclass(y, p, [0.0, 0.5, 1.0, 2.0, 3.0]),
    ),
    LossCase(
        "multiclass-spatial-ignore-index",
        lambda **kw: FocalLoss(gamma=2.0, from_logits=True, ignore_index=255, **kw),
        spatial_sparse_with_ignored,
        lambda y, p: np_focal_multiclass(y, p, 2.0, ignore_index=255),
        reference_mask=lambda y, p: y != 255,
        full=True,
    ),
    LossCase(
        "multilabel-logits-alpha",
        lambda **kw: FocalLoss(mode="multilabel", gamma=2.0, alpha=0.25, from_logits=True, **kw),
        multilabel_logits,
        lambda y, p: np_focal_binary(y, p, 2.0, 0.25),
        full=True,
    ),
    LossCase(
        "binary-probs-smoothing-gamma-half",
        lambda **kw: FocalLoss(mode="binary", gamma=0.5, alpha=0.75, label_smoothing=0.2, **kw),
        lambda rng: (rng.integers(0, 2, size=(N, 1)).astype("float32"), rng.uniform(0.02, 0.98, size=(N, 1))),
        lambda y, p: np_focal_binary(y, p, 0.5, 0.75, False, 0.2),
        from_logits=False,
        activation="sigmoid",
    ),
]


class TestFocalContract(LossContract):
    cases = CASES


def test_gamma_zero_equals_cross_entropy(rng):
    labels, logits = sparse_logits(rng)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(FocalLoss(gamma=0.0, from_logits=True)(labels, logits)), float(ce), rtol=1e-6)
    y, z = multilabel_logits(rng)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)(y, z)
    np.testing.assert_allclose(
        float(FocalLoss(mode="multilabel", gamma=0.0, from_logits=True)(y, z)), float(bce), rtol=1e-6
    )


def test_matches_keras_focal_where_keras_is_right(rng):
    labels, logits = sparse_logits(rng)
    ours = FocalLoss(gamma=2.0, alpha=0.25, from_logits=True)(labels, logits)
    theirs = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=True)(
        np.eye(C)[labels], logits
    )
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)
    y, z = multilabel_logits(rng)
    ours = FocalLoss(mode="multilabel", alpha=0.25, from_logits=True)(y, z)
    theirs = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, from_logits=True)(y, z)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)


def test_binary_alpha_is_applied_without_extra_flag(rng):
    y, z = multilabel_logits(rng)
    plain = float(FocalLoss(mode="binary", from_logits=True)(y, z))
    weighted = float(FocalLoss(mode="binary", alpha=0.25, from_logits=True)(y, z))
    assert weighted != pytest.approx(plain)


def test_gradient_finite_where_keras_binary_focal_is_nan():
    y = np.array([[1.0], [0.0]], np.float32)
    loss = FocalLoss(mode="binary", gamma=0.5, from_logits=True)
    value, grad = value_and_gradient(lambda z: loss(y, z), [[100.0], [-100.0]])
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))


def test_larger_gamma_down_weights_easy_examples():
    labels = np.array([0])
    easy = np.array([[4.0, 0.0, 0.0]])
    values = [float(FocalLoss(gamma=g, from_logits=True)(labels, easy)) for g in (0.0, 1.0, 2.0, 5.0)]
    assert values == sorted(values, reverse=True)


def test_ignore_index_changes_nothing_on_ignored_positions(rng):
    labels, logits = spatial_sparse_with_ignored(rng)
    other = logits.copy()
    other[labels == 255] += rng.normal(scale=10.0, size=other[labels == 255].shape)
    loss = FocalLoss(from_logits=True, ignore_index=255)
    grads = []
    for z in (logits, other):
        _, grad = value_and_gradient(lambda var: loss(labels, var), z)
        grads.append(grad)
        assert np.allclose(grads[-1][labels == 255], 0.0)
    np.testing.assert_allclose(float(loss(labels, logits)), float(loss(labels, other)), rtol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_function_returns_one_value_per_position(rng):
    labels, logits = spatial_sparse_with_ignored(rng)
    assert tuple(focal_loss(labels, logits, from_logits=True, ignore_index=255).shape) == labels.shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": -1}, r"`gamma` must be >= 0. Received: gamma=-1"),
        ({"alpha": 1.5}, r"`alpha` must be in \[0, 1\]. Received: alpha=1.5"),
        ({"mode": "binray"}, r"`mode` must be one of .*Did you mean 'binary'"),
        ({"label_smoothing": 1.0}, r"label_smoothing"),
        ({"mode": "binary", "ignore_index": 255}, r"ignore_index"),
        ({"mode": "binary", "alpha": [0.2, 1.2]}, r"alpha\[1\]=1.2"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FocalLoss(**kwargs)


def test_wrong_number_of_per_class_values_names_both():
    with pytest.raises(ValueError, match=r"`alpha` has 3 values but y_pred has 5 classes"):
        FocalLoss(alpha=[1.0, 2.0, 3.0])(np.array([0, 1]), np.zeros((2, C), np.float32))


def test_out_of_range_sparse_labels_fail_in_eager_mode():
    with pytest.raises(ValueError, match=r"must be integers in \[0, 5\).*Received labels \[7\]"):
        FocalLoss(from_logits=True)(np.array([0, 7]), np.zeros((2, C), np.float32))


def test_config_is_json_and_keeps_per_class_values():
    loss = FocalLoss(gamma=[1.0, 2.0], alpha=[0.3, 0.7], mode="multilabel", from_logits=True, name="f")
    config = json.loads(json.dumps(loss.get_config()))
    assert config["gamma"] == [1.0, 2.0] and config["alpha"] == [0.3, 0.7]
    assert FocalLoss.from_config(config).get_config() == loss.get_config()
