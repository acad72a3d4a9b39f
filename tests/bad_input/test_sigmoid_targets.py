"""Sigmoid-loss targets outside [0, 1] and probabilities that are logits: an error, never a finite value.

Binary and multi-label targets must lie in [0, 1] (0/1 or soft); `ConfidencePenalty` with
`from_logits=False` needs probabilities. One policy for every run mode
(`keras_lossopt._value_checks`): eagerly a ValueError naming the argument; in a compiled `fit`
without XLA an `InvalidArgumentError` with the same message; under `jit_compile=True`, where
XLA compiles assertions away, the batch's loss is NaN (never a finite, wrong value).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses import (
    AsymmetricLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    JaccardLoss,
    LovaszHingeLoss,
    PolyLoss,
    TverskyLoss,
)
from keras_lossopt.metrics import DiceScore
from keras_lossopt.shaping import ConfidencePenalty

TARGETS = r"targets in `y_true` must lie in \[0, 1\]"
PROBABILITIES = r"`y_pred` must hold probabilities in \[0, 1\].*from_logits=True"

SIGMOID_LOSSES = [
    ("focal binary", lambda: FocalLoss(mode="binary")),
    ("focal multilabel", lambda: FocalLoss(mode="multilabel", gamma=1.0)),
    ("poly binary", lambda: PolyLoss(mode="binary")),
    ("asymmetric", lambda: AsymmetricLoss()),
    ("dice binary", lambda: DiceLoss(mode="binary")),
    ("jaccard multilabel", lambda: JaccardLoss(mode="multilabel")),
    ("tversky binary", lambda: TverskyLoss(mode="binary")),
    ("focal tversky binary", lambda: FocalTverskyLoss(mode="binary")),
    ("lovasz hinge", lambda: LovaszHingeLoss()),
    ("dice ce binary", lambda: DiceCELoss(mode="binary")),
]
BAD_TARGETS = [("label 2", 2.0), ("label -1", -1.0), ("soft 1.5", 1.5), ("nan", float("nan"))]
PROBS = np.array([[0.7, 0.2], [0.4, 0.9], [0.1, 0.5], [0.6, 0.3]], "float32")


def _targets(bad):
    y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], "float32")
    y[2, 1] = bad
    return y


@pytest.mark.parametrize("value", [v for _, v in BAD_TARGETS], ids=[n for n, _ in BAD_TARGETS])
@pytest.mark.parametrize("make_loss", [m for _, m in SIGMOID_LOSSES], ids=[n for n, _ in SIGMOID_LOSSES])
def test_sigmoid_losses_refuse_targets_outside_0_1_at_the_first_call(make_loss, value):
    with pytest.raises(ValueError, match=TARGETS):
        make_loss()(_targets(value), PROBS)


def test_the_message_echoes_the_bad_values():
    with pytest.raises(ValueError, match=r"Received values \[2\.0\]"):
        FocalLoss(mode="binary")(np.array([[2.0]]), np.array([[0.7]]))


@pytest.mark.parametrize("make_loss", [m for _, m in SIGMOID_LOSSES], ids=[n for n, _ in SIGMOID_LOSSES])
def test_soft_targets_inside_0_1_are_accepted(make_loss):
    assert np.isfinite(float(make_loss()(_targets(0.3), PROBS)))


def test_soft_binary_focal_with_gamma_0_is_binary_cross_entropy_in_float64():
    y, p = _targets(0.3).astype("float64"), PROBS.astype("float64")
    reference = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert float(FocalLoss(mode="binary", gamma=0.0)(y, p)) == pytest.approx(reference, rel=1e-5)


def test_dice_score_metric_refuses_binary_targets_outside_0_1():
    metric = DiceScore(1, mode="binary")
    with pytest.raises(ValueError, match=TARGETS):
        metric.update_state(np.array([[[0.0], [2.0]]]), np.array([[[0.3], [0.8]]], "float32"))


def test_void_pixels_marked_by_ignore_index_are_not_targets():
    y = np.array([[0.0], [1.0], [255.0], [1.0]], "float32")
    loss = DiceLoss(mode="binary", ignore_index=255, per_image=False)
    assert float(loss(y, PROBS[:, :1])) == pytest.approx(float(loss(y[[0, 1, 3]], PROBS[[0, 1, 3], :1])), rel=1e-6)


def _sigmoid_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="sigmoid")])


X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
IN_FIT = [("focal", lambda: FocalLoss(mode="binary")), ("dice", lambda: DiceLoss(mode="binary"))]


@pytest.mark.parametrize("make_loss", [m for _, m in IN_FIT], ids=[n for n, _ in IN_FIT])
def test_targets_outside_0_1_raise_in_a_graph_fit(make_loss):
    model = _sigmoid_model()
    model.compile("sgd", loss=make_loss(), jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=TARGETS):
        model.fit(X, _targets(2.0), batch_size=4, verbose=0)


@pytest.mark.parametrize("make_loss", [m for _, m in IN_FIT], ids=[n for n, _ in IN_FIT])
def test_targets_outside_0_1_give_a_nan_loss_under_xla(make_loss):
    model = _sigmoid_model()
    model.compile("sgd", loss=make_loss(), jit_compile=True)
    assert np.isnan(model.fit(X, _targets(2.0), batch_size=4, verbose=0).history["loss"][0])
    model = _sigmoid_model()  # the NaN step left NaN weights
    model.compile("sgd", loss=make_loss(), jit_compile=True)
    assert np.isfinite(model.fit(X, _targets(1.0), batch_size=4, verbose=0).history["loss"][0])


@pytest.mark.slow  # one XLA compilation of every sigmoid loss
def test_every_sigmoid_loss_is_nan_under_xla_for_a_target_outside_0_1():
    losses = [make() for _, make in SIGMOID_LOSSES]
    probs = tf.constant(PROBS)
    compiled = tf.function(lambda y: [loss(y, probs) for loss in losses], jit_compile=True)
    assert all(np.isfinite([float(v) for v in compiled(tf.constant(_targets(1.0)))]))
    for bad in (2.0, -1.0):
        values = [float(v) for v in compiled(tf.constant(_targets(bad)))]
        assert all(np.isnan(values)), dict(zip([n for n, _ in SIGMOID_LOSSES], values))


LOGITS = np.array([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.1]], "float32")
PENALTY_CASES = [
    ("multiclass logits", ConfidencePenalty(), LOGITS, r"rows summing to 1.*Received values \[2\.0, -1\.0"),
    (
        "multiclass rows not summing to 1",
        ConfidencePenalty(),
        np.full((2, 3), 0.5, "float32"),
        r"Received rows summing to \[1\.5\]",
    ),
    ("multilabel logits", ConfidencePenalty(mode="multilabel"), LOGITS, r"probabilities in \[0, 1\] because"),
    ("nan output", ConfidencePenalty(), np.array([[np.nan, 0.5, 0.5]], "float32"), "Received values"),
]


@pytest.mark.parametrize("penalty, y_pred, message", [c[1:] for c in PENALTY_CASES], ids=[c[0] for c in PENALTY_CASES])
def test_confidence_penalty_refuses_logits_read_as_probabilities(penalty, y_pred, message):
    with pytest.raises(ValueError, match=PROBABILITIES):
        penalty(None, y_pred)
    with pytest.raises(ValueError, match=message):
        penalty(None, y_pred)


def test_confidence_penalty_accepts_float16_softmax_outputs_and_matches_numpy():
    logits = np.random.default_rng(1).normal(size=(16, 10)) * 4
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    reference = np.mean(np.sum(probs * np.log(probs), axis=-1))
    assert float(ConfidencePenalty()(None, probs.astype("float16"))) == pytest.approx(reference, abs=2e-3)
    assert float(ConfidencePenalty(from_logits=True)(None, logits.astype("float32"))) == pytest.approx(
        reference, rel=1e-5
    )


def _logits_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_confidence_penalty_on_logits_in_a_compiled_fit(jit_compile):
    model = _logits_model()
    model.compile("sgd", loss=FocalLoss(from_logits=True) + ConfidencePenalty(), jit_compile=jit_compile)
    labels = np.array([0, 1, 2, 1])
    if jit_compile:
        assert np.isnan(model.fit(X, labels, batch_size=4, verbose=0).history["loss"][0])
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match=PROBABILITIES):
            model.fit(X, labels, batch_size=4, verbose=0)
    model = _logits_model()
    model.compile(
        "sgd", loss=FocalLoss(from_logits=True) + ConfidencePenalty(from_logits=True), jit_compile=jit_compile
    )
    assert np.isfinite(model.fit(X, labels, batch_size=4, verbose=0).history["loss"][0])
