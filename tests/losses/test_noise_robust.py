import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import (
    GeneralizedCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
    generalized_cross_entropy_loss,
    get,
)
from tests.losses import references as ref
from tests.losses.contract import LossCase, LossContract

N, C = 12, 5


def np_gce(y_true, y_pred, q=0.7, from_logits=True, label_smoothing=0.0, ignore_index=None):
    """Zhang & Sabuncu (2018): L_q = (1 - p^q) / q per class, weighted by the targets."""
    targets, valid = ref.one_hot_targets(y_true, np.shape(y_pred)[-1], label_smoothing, ignore_index)
    p = np.exp(ref.softmax_log_probs(y_pred, from_logits))
    return (targets * (1 - p**q) / q).sum(-1) * valid


def np_sce(y_true, y_pred, alpha=0.1, beta=1.0, a=-4.0, from_logits=True, label_smoothing=0.0, ignore_index=None):
    """Wang et al. (2019): alpha CE + beta RCE, RCE = -sum_k p_k log y_k with log 0 = A."""
    targets, valid = ref.one_hot_targets(y_true, np.shape(y_pred)[-1], label_smoothing, ignore_index)
    log_p = ref.softmax_log_probs(y_pred, from_logits)
    ce = -(targets * log_p).sum(-1)
    with np.errstate(divide="ignore"):
        log_y = np.where(targets > np.exp(a), np.log(targets), a)
    rce = -(np.exp(log_p) * log_y).sum(-1)
    return (alpha * ce + beta * rce) * valid


def sparse_logits(rng, shape=(N,)):
    return rng.integers(0, C, size=shape), rng.normal(scale=2.0, size=(*shape, C))


def dense_probs(rng):
    labels = rng.integers(0, C, size=N)
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=N)


def spatial_sparse_with_ignored(rng):
    labels = rng.integers(0, C, size=(4, 3, 3))
    labels[3, :, 2] = 255
    return labels, rng.normal(size=(4, 3, 3, C))


CASES = [
    LossCase(
        "gce-sparse-logits",
        lambda **kw: GeneralizedCrossEntropyLoss(q=0.7, from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_gce(y, p, 0.7),
        full=True,
    ),
    LossCase(
        "gce-onehot-probs-small-q-smoothing",
        lambda **kw: GeneralizedCrossEntropyLoss(q=0.1, label_smoothing=0.1, **kw),
        dense_probs,
        lambda y, p: np_gce(y, p, 0.1, False, 0.1),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "gce-spatial-ignore-index",
        lambda **kw: GeneralizedCrossEntropyLoss(q=1.0, from_logits=True, ignore_index=255, **kw),
        spatial_sparse_with_ignored,
        lambda y, p: np_gce(y, p, 1.0, ignore_index=255),
        reference_mask=lambda y, p: y != 255,
    ),
    LossCase(
        "sce-sparse-logits",
        lambda **kw: SymmetricCrossEntropyLoss(from_logits=True, **kw),
        sparse_logits,
        lambda y, p: np_sce(y, p),
        full=True,
    ),
    LossCase(
        "sce-onehot-probs-weights-logzero",
        lambda **kw: SymmetricCrossEntropyLoss(alpha=1.0, beta=0.5, log_zero=-6.0, **kw),
        dense_probs,
        lambda y, p: np_sce(y, p, 1.0, 0.5, -6.0, from_logits=False),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "sce-smoothing-spatial-ignore-index",
        lambda **kw: SymmetricCrossEntropyLoss(
            alpha=0.5, beta=1.0, label_smoothing=0.2, from_logits=True, ignore_index=255, **kw
        ),
        spatial_sparse_with_ignored,
        lambda y, p: np_sce(y, p, 0.5, 1.0, label_smoothing=0.2, ignore_index=255),
        reference_mask=lambda y, p: y != 255,
    ),
]


class TestNoiseRobustContract(LossContract):
    cases = CASES


def test_gce_small_q_approaches_cross_entropy(rng):
    labels, logits = sparse_logits(rng)
    ce = np.asarray(keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(labels, logits))
    gaps = [
        np.abs(np.asarray(generalized_cross_entropy_loss(labels, logits, q=q, from_logits=True)) - ce).max()
        for q in (0.1, 0.01, 1e-4)
    ]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3 * ce.max()


def test_gce_q_one_is_mae_per_sample(rng):
    labels, logits = sparse_logits(rng)
    p_y = np.exp(ref.log_softmax(logits))[np.arange(N), labels]
    got = GeneralizedCrossEntropyLoss(q=1.0, from_logits=True, reduction="none")(labels, logits)
    np.testing.assert_allclose(np.asarray(got), 1 - p_y, rtol=1e-5, atol=1e-7)
    mae = keras.losses.MeanAbsoluteError(reduction="none")(np.eye(C)[labels], np.exp(ref.log_softmax(logits)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(mae) * C / 2, rtol=1e-5)


def test_gce_is_bounded_where_cross_entropy_is_not():
    labels = np.array([0])
    wrong = np.array([[-50.0, 50.0, 0.0]], np.float32)
    assert float(GeneralizedCrossEntropyLoss(q=0.7, from_logits=True)(labels, wrong)) <= 1 / 0.7 + 1e-6
    assert float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, wrong)) > 99


def test_sce_reverse_term_is_minus_a_times_one_minus_p_y(rng):
    labels, logits = sparse_logits(rng)
    p_y = np.exp(ref.log_softmax(logits))[np.arange(N), labels]
    rce = SymmetricCrossEntropyLoss(alpha=0.0, beta=1.0, from_logits=True, reduction="none")(labels, logits)
    np.testing.assert_allclose(np.asarray(rce), 4.0 * (1 - p_y), rtol=1e-5, atol=1e-6)
    ce = SymmetricCrossEntropyLoss(alpha=1.0, beta=0.0, from_logits=True)(labels, logits)
    np.testing.assert_allclose(
        float(ce), float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)), rtol=1e-6
    )


def test_sce_official_label_clamp_is_log_zero_log_1e4(rng):
    """The official code clamps one-hot labels to [1e-4, 1]: RCE = -sum p log clamp(y)."""
    labels, logits = sparse_logits(rng)
    p = np.exp(ref.log_softmax(logits))
    official = -(p * np.log(np.clip(np.eye(C)[labels], 1e-4, 1.0))).sum(-1)
    ours = SymmetricCrossEntropyLoss(
        alpha=0.0, beta=1.0, log_zero=float(np.log(1e-4)), from_logits=True, reduction="none"
    )
    np.testing.assert_allclose(np.asarray(ours(labels, logits)), official, rtol=1e-5)


def test_aliases_resolve():
    assert get("gce").q == 0.7 and get("gce", q=0.3).q == 0.3
    sce = get("sce")
    assert isinstance(sce, SymmetricCrossEntropyLoss) and (sce.alpha, sce.beta, sce.log_zero) == (0.1, 1.0, -4.0)


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (GeneralizedCrossEntropyLoss, {"q": 0.0}, r"`q` must be in \(0, 1\]. Received: q=0"),
        (GeneralizedCrossEntropyLoss, {"q": 1.5}, r"`q` must be in \(0, 1\]. Received: q=1.5"),
        (GeneralizedCrossEntropyLoss, {"label_smoothing": 1.0}, r"label_smoothing"),
        (SymmetricCrossEntropyLoss, {"alpha": -0.1}, r"`alpha` must be >= 0. Received: alpha=-0.1"),
        (SymmetricCrossEntropyLoss, {"beta": -1.0}, r"`beta` must be >= 0. Received: beta=-1"),
        (
            SymmetricCrossEntropyLoss,
            {"log_zero": 0.0},
            r"`log_zero` must be a finite number < 0. Received: log_zero=0.0",
        ),
    ],
)
def test_bad_arguments_fail_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_configs_are_json_and_keep_values():
    for loss in (
        GeneralizedCrossEntropyLoss(q=0.4, from_logits=True, label_smoothing=0.1, ignore_index=-1),
        SymmetricCrossEntropyLoss(alpha=0.5, beta=2.0, log_zero=-6.0, from_logits=True, ignore_index=255),
    ):
        config = json.loads(json.dumps(loss.get_config()))
        assert type(loss).from_config(config).get_config() == loss.get_config()
    assert (config["alpha"], config["beta"], config["log_zero"]) == (0.5, 2.0, -6.0)
