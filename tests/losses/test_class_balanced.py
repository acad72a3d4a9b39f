import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import ClassBalancedLoss, FocalLoss, PolyLoss, class_balanced_weights, get
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract
from tests.losses.test_focal import np_focal_binary, np_focal_multiclass

N, C = 12, 5
COUNTS = [400, 100, 30, 8, 2]


def np_cb_weights(counts, beta):
    """Cui et al. (2019), eq. for the effective number: E_n = (1 - beta^n) / (1 - beta); w = 1 / E_n."""
    counts = np.asarray(counts, np.float64)
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    w = 1.0 / effective
    return w / w.sum() * len(counts)


def np_true_class_weight(y_true, weights):
    y = np.asarray(y_true)
    if np.issubdtype(y.dtype, np.floating) and y.shape[-1] == len(weights):
        return (y * weights).sum(-1)
    return weights[np.clip(y, 0, len(weights) - 1)]


def np_cross_entropy(y_true, y_pred, ignore_index=None):
    targets, valid = ref.one_hot_targets(y_true, np.shape(y_pred)[-1], 0.0, ignore_index)
    return -(targets * ref.log_softmax(y_pred)).sum(-1) * valid


def sparse_logits(rng, shape=(N,)):
    return rng.integers(0, C, size=shape), rng.normal(scale=2.0, size=(*shape, C))


def soft_targets_logits(rng):
    return rng.dirichlet(np.ones(C), size=N).astype("float32"), rng.normal(scale=2.0, size=(N, C))


def spatial_sparse_with_ignored(rng):
    labels = rng.integers(0, C, size=(4, 3, 3))
    labels[2, 0, :] = 255
    return labels, rng.normal(size=(4, 3, 3, C))


CASES = [
    LossCase(
        "focal-sparse-logits",
        lambda **kw: ClassBalancedLoss(FocalLoss(gamma=2.0, from_logits=True), class_counts=COUNTS, beta=0.99, **kw),
        sparse_logits,
        lambda y, p: np_true_class_weight(y, np_cb_weights(COUNTS, 0.99)) * np_focal_multiclass(y, p, 2.0),
        full=True,
    ),
    LossCase(
        "poly-soft-targets",
        lambda **kw: ClassBalancedLoss(PolyLoss(from_logits=True), class_counts=COUNTS, beta=0.9, **kw),
        soft_targets_logits,
        lambda y, p: (
            np_true_class_weight(y, np_cb_weights(COUNTS, 0.9))
            * (np_cross_entropy(y, p) + 1 - (np.asarray(y, np.float64) * np.exp(ref.log_softmax(p))).sum(-1))
        ),
    ),
    LossCase(
        "keras-cce-onehot",
        lambda **kw: ClassBalancedLoss(
            keras.losses.CategoricalCrossentropy(from_logits=True), class_counts=COUNTS, beta=0.999, **kw
        ),
        lambda rng: (np.eye(C)[rng.integers(0, C, size=N)].astype("float32"), rng.normal(scale=2.0, size=(N, C))),
        lambda y, p: np_true_class_weight(y, np_cb_weights(COUNTS, 0.999)) * np_cross_entropy(y, p),
    ),
    LossCase(
        "focal-spatial-ignore-index",
        lambda **kw: ClassBalancedLoss(
            FocalLoss(gamma=1.0, from_logits=True, ignore_index=255), class_counts=COUNTS, beta=0.99, **kw
        ),
        spatial_sparse_with_ignored,
        lambda y, p: (
            np_true_class_weight(y, np_cb_weights(COUNTS, 0.99)) * np_focal_multiclass(y, p, 1.0, ignore_index=255)
        ),
        reference_mask=lambda y, p: y != 255,
    ),
    LossCase(
        "binary-focal-counts-neg-pos",
        lambda **kw: ClassBalancedLoss(
            FocalLoss(mode="binary", gamma=2.0, from_logits=True), class_counts=[90, 10], beta=0.95, **kw
        ),
        lambda rng: (rng.integers(0, 2, size=(N, 1)).astype("float32"), rng.normal(scale=2.0, size=(N, 1))),
        lambda y, p: (
            (
                np.asarray(y)[:, 0] * np_cb_weights([90, 10], 0.95)[1]
                + (1 - np.asarray(y)[:, 0]) * np_cb_weights([90, 10], 0.95)[0]
            )
            * np_focal_binary(y, p, 2.0)
        ),
        full=True,
    ),
]


class TestClassBalancedContract(LossContract):
    cases = CASES


def test_weights_match_values_computed_by_hand():
    # beta = 0.9, counts (100, 10): 1 - 0.9^100 = 0.99997344, 1 - 0.9^10 = 0.65132156;
    # w = 0.1 / those = (0.10000266, 0.15353399), sum 0.25353665; times 2 / sum: (0.788862, 1.211138).
    np.testing.assert_allclose(class_balanced_weights([100, 10], beta=0.9), [0.788862, 1.211138], rtol=2e-6)
    np.testing.assert_allclose(class_balanced_weights(COUNTS, 0.999), np_cb_weights(COUNTS, 0.999), rtol=1e-12)


def test_beta_zero_gives_equal_weights_and_beta_near_one_inverse_frequency():
    np.testing.assert_array_equal(class_balanced_weights(COUNTS, beta=0.0), np.ones(C))
    inverse = 1.0 / np.asarray(COUNTS, np.float64)
    np.testing.assert_allclose(class_balanced_weights(COUNTS, 1 - 1e-9), inverse / inverse.sum() * C, rtol=1e-5)
    assert class_balanced_weights(COUNTS, 0.99).sum() == pytest.approx(C)


def test_wrapper_equals_focal_alpha_with_the_same_weights(rng):
    labels, logits = sparse_logits(rng)
    weights = class_balanced_weights(COUNTS, 0.99)
    via_alpha = FocalLoss(gamma=2.0, alpha=weights.tolist(), from_logits=True)(labels, logits)
    via_wrapper = ClassBalancedLoss(FocalLoss(gamma=2.0, from_logits=True), COUNTS, beta=0.99)(labels, logits)
    np.testing.assert_allclose(float(via_alpha), float(via_wrapper), rtol=1e-6)


def test_rare_class_mistakes_cost_more():
    logits = np.zeros((1, C), np.float32)
    loss = ClassBalancedLoss({"name": "focal", "config": {"from_logits": True}}, class_counts=COUNTS, beta=0.999)
    values = [float(loss(np.array([c]), logits)) for c in range(C)]
    assert values == sorted(values) and values[-1] > values[0]


def test_inner_loss_by_name_and_alias():
    loss = ClassBalancedLoss("poly1", class_counts=[3, 1], beta=0.5)
    assert isinstance(loss.loss, PolyLoss)
    wrapped = get("class_balanced", loss="focal", class_counts=[3, 1])
    assert isinstance(wrapped, ClassBalancedLoss) and isinstance(wrapped.loss, FocalLoss)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_counts": [10, 0]}, r"`class_counts` must be > 0 for every class. Received: class_counts\[1\]=0"),
        ({"class_counts": [10, 5], "beta": 1.0}, r"`beta` must be in \[0, 1\). Received: beta=1"),
        ({"class_counts": [10, 5], "beta": -0.1}, r"`beta` must be in \[0, 1\)"),
        ({"class_counts": 10}, r"`class_counts` must be a 1-D list"),
        ({"class_counts": [10, 5], "loss": 3}, r"`loss` must be a keras.losses.Loss"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    kwargs = {"loss": FocalLoss(), **kwargs}
    with pytest.raises(ValueError, match=message):
        ClassBalancedLoss(**kwargs)


def test_class_balanced_weights_rejects_bad_input():
    with pytest.raises(ValueError, match=r"`counts` must be > 0"):
        class_balanced_weights([3, -1], 0.9)
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\)"):
        class_balanced_weights([3, 1], 1.5)


def test_class_count_mismatch_names_both():
    loss = ClassBalancedLoss(FocalLoss(from_logits=True), class_counts=[10, 5, 1])
    with pytest.raises(ValueError, match=r"`class_counts` has 3 values but y_pred has 5 classes.*\(2, 5\)"):
        loss(np.array([0, 1]), np.zeros((2, C), np.float32))


def test_config_is_json_and_rebuilds_the_inner_loss():
    loss = ClassBalancedLoss(FocalLoss(gamma=1.0, alpha=0.5, from_logits=True), class_counts=[30, 3], beta=0.9)
    config = json.loads(json.dumps(loss.get_config()))
    assert config["class_counts"] == [30.0, 3.0] and config["beta"] == 0.9
    rebuilt = ClassBalancedLoss.from_config(config)
    assert rebuilt.loss.get_config() == loss.loss.get_config() and rebuilt.get_config() == loss.get_config()
