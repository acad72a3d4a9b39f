import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import LDAMLoss, LogitAdjustedLoss, get, ldam_margins
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract

N, C = 12, 5
COUNTS = [500, 120, 40, 9, 2]


def np_logit_adjusted(y_true, y_pred, counts=None, priors=None, tau=1.0, label_smoothing=0.0, ignore_index=None):
    prior = np.asarray(counts if counts is not None else priors, np.float64)
    prior = prior / prior.sum()
    targets, valid = ref.one_hot_targets(y_true, len(prior), label_smoothing, ignore_index)
    adjusted = np.asarray(y_pred, np.float64) + tau * np.log(prior)
    return -(targets * ref.log_softmax(adjusted)).sum(-1) * valid


def np_ldam(y_true, y_pred, counts, max_m=0.5, s=30.0, ignore_index=None):
    """The official LDAM code: m = 1/sqrt(sqrt(n)) * max_m / max(m); CE(s * where(onehot, x - m_y, x))."""
    m_list = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, np.float64)))
    m_list = m_list * (max_m / np.max(m_list))
    targets, valid = ref.one_hot_targets(y_true, len(counts), 0.0, ignore_index)
    index = targets > 0
    batch_m = (targets * m_list).sum(-1, keepdims=True)
    output = np.where(index, np.asarray(y_pred, np.float64) - batch_m, y_pred)
    return -(targets * ref.log_softmax(s * output)).sum(-1) * valid


def sparse_logits(rng, shape=(N,)):
    return rng.integers(0, C, size=shape), rng.normal(scale=2.0, size=(*shape, C))


def onehot_logits(rng):
    labels, logits = sparse_logits(rng)
    return np.eye(C)[labels].astype("float32"), logits


def spatial_sparse_with_ignored(rng):
    labels = rng.integers(0, C, size=(4, 3, 3))
    labels[1, :, 0] = -1
    return labels, rng.normal(size=(4, 3, 3, C))


def small_logits(rng):
    # LDAM's default s=30 amplifies logits; cosine-like logits in [-1, 1] keep the
    # finite-difference reference well conditioned.
    return rng.integers(0, C, size=N), rng.uniform(-1.0, 1.0, size=(N, C))


CASES = [
    LossCase(
        "la-sparse-counts",
        lambda **kw: LogitAdjustedLoss(class_counts=COUNTS, **kw),
        sparse_logits,
        lambda y, p: np_logit_adjusted(y, p, COUNTS),
        full=True,
    ),
    LossCase(
        "la-onehot-priors-tau-smoothing",
        lambda **kw: LogitAdjustedLoss(class_priors=[0.4, 0.3, 0.2, 0.05, 0.05], tau=1.5, label_smoothing=0.1, **kw),
        onehot_logits,
        lambda y, p: np_logit_adjusted(y, p, priors=[0.4, 0.3, 0.2, 0.05, 0.05], tau=1.5, label_smoothing=0.1),
    ),
    LossCase(
        "la-spatial-ignore-index",
        lambda **kw: LogitAdjustedLoss(class_counts=COUNTS, ignore_index=-1, **kw),
        spatial_sparse_with_ignored,
        lambda y, p: np_logit_adjusted(y, p, COUNTS, ignore_index=-1),
        reference_mask=lambda y, p: y != -1,
    ),
    LossCase(
        "ldam-sparse-cosine-logits",
        lambda **kw: LDAMLoss(class_counts=COUNTS, **kw),
        small_logits,
        lambda y, p: np_ldam(y, p, COUNTS),
        full=True,
    ),
    LossCase(
        "ldam-onehot-margin-scale",
        lambda **kw: LDAMLoss(class_counts=COUNTS, max_margin=0.3, s=4.0, **kw),
        onehot_logits,
        lambda y, p: np_ldam(y, p, COUNTS, 0.3, 4.0),
    ),
    LossCase(
        "ldam-spatial-ignore-index",
        lambda **kw: LDAMLoss(class_counts=COUNTS, s=5.0, ignore_index=-1, **kw),
        spatial_sparse_with_ignored,
        lambda y, p: np_ldam(y, p, COUNTS, 0.5, 5.0, ignore_index=-1),
        reference_mask=lambda y, p: y != -1,
    ),
]


class TestLongTailContract(LossContract):
    cases = CASES


def test_logit_adjustment_with_uniform_priors_equals_cross_entropy(rng):
    labels, logits = sparse_logits(rng)
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits))
    np.testing.assert_allclose(float(LogitAdjustedLoss(class_counts=[7] * C)(labels, logits)), ce, rtol=1e-6)
    np.testing.assert_allclose(float(LogitAdjustedLoss(class_counts=COUNTS, tau=0.0)(labels, logits)), ce, rtol=1e-6)


def test_logit_adjustment_penalizes_rare_classes_more():
    logits = np.zeros((1, C), np.float32)
    values = [float(LogitAdjustedLoss(class_counts=COUNTS)(np.array([c]), logits)) for c in range(C)]
    assert values == sorted(values)


def test_ldam_with_equal_counts_is_cross_entropy_on_scaled_margined_logits(rng):
    labels, logits = small_logits(rng)
    shifted = logits - 0.5 * np.eye(C)[labels]
    expected = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, 30.0 * shifted))
    np.testing.assert_allclose(float(LDAMLoss(class_counts=[10] * C)(labels, logits)), expected, rtol=1e-5)


def test_ldam_margins_follow_the_fourth_root_rule():
    margins = ldam_margins(COUNTS, max_margin=0.5)
    np.testing.assert_allclose(margins, 0.5 * (np.asarray(COUNTS) / min(COUNTS)) ** -0.25)
    assert margins.max() == pytest.approx(0.5) and np.argmax(margins) == np.argmin(COUNTS)


def test_aliases_resolve():
    assert get("logit_adjusted", class_counts=COUNTS).tau == 1.0
    assert isinstance(get("la", class_priors=[0.5, 0.5]), LogitAdjustedLoss)
    assert get("ldam", class_counts=COUNTS, s=10.0).s == 10.0


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (LogitAdjustedLoss, {}, r"exactly one of `class_counts` and `class_priors`"),
        (LogitAdjustedLoss, {"class_counts": [1, 2], "class_priors": [0.5, 0.5]}, r"exactly one"),
        (LogitAdjustedLoss, {"class_counts": [10, 0, 3]}, r"`class_counts` must be > 0 .*class_counts\[1\]=0"),
        (LogitAdjustedLoss, {"class_priors": [0.5, -0.5]}, r"`class_priors` must be > 0"),
        (LogitAdjustedLoss, {"class_counts": [[1, 2]]}, r"`class_counts` must be a 1-D list"),
        (LogitAdjustedLoss, {"class_counts": [1, 2], "tau": -1.0}, r"`tau` must be >= 0. Received: tau=-1"),
        (LDAMLoss, {"class_counts": [5, -1]}, r"class_counts\[1\]=-1"),
        (LDAMLoss, {"class_counts": [5, 1], "s": 0.0}, r"`s` must be > 0. Received: s=0"),
        (LDAMLoss, {"class_counts": [5, 1], "max_margin": -0.5}, r"`max_margin` must be > 0"),
    ],
)
def test_bad_arguments_fail_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, LDAMLoss])
def test_class_count_mismatch_names_both(cls):
    message = r"`class_counts` has 3 values but y_pred has 5 classes.*y_pred.shape=\(2, 5\)"
    with pytest.raises(ValueError, match=message):
        cls(class_counts=[10, 5, 1])(np.array([0, 1]), np.zeros((2, C), np.float32))


def test_configs_are_json_and_keep_values():
    for loss in (
        LogitAdjustedLoss(class_priors=[0.7, 0.3], tau=0.5, label_smoothing=0.1, ignore_index=-1),
        LDAMLoss(class_counts=[50, 5], max_margin=0.2, s=10.0, ignore_index=255),
    ):
        config = json.loads(json.dumps(loss.get_config()))
        assert type(loss).from_config(config).get_config() == loss.get_config()
    assert config["class_counts"] == [50.0, 5.0] and config["s"] == 10.0
