"""Bad input to keras_lossopt.losses and keras_lossopt.metrics (table-driven).

Each case asserts a clear error whose message names the argument or value and what is
expected, or the documented answer. Labels out of range are also checked inside `fit`:
without XLA they raise; with `jit_compile=True` XLA has no run-time errors, and the loss
(or score) of the batch is NaN, as Keras' own SparseCategoricalCrossentropy gives there.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt import losses
from keras_lossopt.losses import (
    AsymmetricLoss,
    ClassBalancedLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedCrossEntropyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LovaszSoftmaxLoss,
    PolyLoss,
    SymmetricCrossEntropyLoss,
    TverskyLoss,
    class_balanced_weights,
)
from keras_lossopt.metrics import ClassRecall, DiceScore, IoUScore, MacroF1, WorstClassRecall
from tests.bad_input.cases import BadInputCase, assert_bad_input

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], "float32")
LABELS = np.array([0, 1, 2])
RANGE = r"integers in \[0, 3\)"

CONSTRUCTION = [
    BadInputCase("focal gamma < 0", lambda: FocalLoss(gamma=-1), ValueError, (r"`gamma` must be >= 0", "gamma=-1")),
    BadInputCase("focal gamma None", lambda: FocalLoss(gamma=None), ValueError, ("gamma",)),
    BadInputCase("focal gamma string", lambda: FocalLoss(gamma="2"), TypeError, ("`gamma` must be a number",)),
    BadInputCase("focal mode typo", lambda: FocalLoss(mode="multiclas"), ValueError, ("`mode`", "'multiclass'")),
    BadInputCase("focal alpha > 1", lambda: FocalLoss(mode="binary", alpha=1.5), ValueError, (r"`alpha`", "1.5")),
    BadInputCase("focal per-class alpha < 0", lambda: FocalLoss(alpha=[1.0, -0.5]), ValueError, (r"alpha\[1\]",)),
    BadInputCase("focal smoothing 1", lambda: FocalLoss(label_smoothing=1.0), ValueError, (r"label_smoothing",)),
    BadInputCase("focal ignore_index float", lambda: FocalLoss(ignore_index=2.5), TypeError, ("ignore_index",)),
    BadInputCase(
        "focal ignore_index binary", lambda: FocalLoss(mode="binary", ignore_index=1), ValueError, ("ignore_index",)
    ),
    BadInputCase("focal reduction", lambda: FocalLoss(reduction="avg"), ValueError, ("reduction", "avg")),
    BadInputCase(
        "poly epsilon < -1", lambda: PolyLoss(epsilon=-2.0), ValueError, (r"`epsilon` must be a number >= -1",)
    ),
    BadInputCase("poly base typo", lambda: PolyLoss(base="focall"), ValueError, ("`base`", "'focal'")),
    BadInputCase("poly gamma < 0", lambda: PolyLoss(gamma=-0.5), ValueError, ("`gamma` must be >= 0",)),
    BadInputCase("poly alpha > 1", lambda: PolyLoss(mode="multilabel", alpha=2.0), ValueError, ("`alpha`",)),
    BadInputCase("asl gamma_neg < 0", lambda: AsymmetricLoss(gamma_neg=-1.0), ValueError, ("gamma_neg",)),
    BadInputCase("asl clip > 1", lambda: AsymmetricLoss(clip=1.5), ValueError, ("clip",)),
    BadInputCase("gce q 0", lambda: GeneralizedCrossEntropyLoss(q=0.0), ValueError, (r"`q` must be in \(0, 1\]",)),
    BadInputCase("sce beta < 0", lambda: SymmetricCrossEntropyLoss(beta=-1.0), ValueError, ("`beta` must be >= 0",)),
    BadInputCase("sce log_zero 0", lambda: SymmetricCrossEntropyLoss(log_zero=0.0), ValueError, ("log_zero",)),
    BadInputCase("la no counts", lambda: LogitAdjustedLoss(), ValueError, ("class_counts",)),
    BadInputCase(
        "la zero count", lambda: LogitAdjustedLoss(class_counts=[5, 0]), ValueError, (r"class_counts\[1\]=0",)
    ),
    BadInputCase("ldam 2-D counts", lambda: LDAMLoss(class_counts=[[1, 2]]), ValueError, ("1-D",)),
    BadInputCase("ldam s <= 0", lambda: LDAMLoss(class_counts=[3, 4], s=0.0), ValueError, ("`s`",)),
    BadInputCase(
        "cb beta 1", lambda: ClassBalancedLoss("focal", [3, 4], beta=1.0), ValueError, (r"`beta` must be in",)
    ),
    BadInputCase("cb loss not a loss", lambda: ClassBalancedLoss(3, [3, 4]), ValueError, ("`loss` must be",)),
    BadInputCase("cb weights beta", lambda: class_balanced_weights([3, 4], beta=-0.1), ValueError, ("beta",)),
    BadInputCase("dice mode typo", lambda: DiceLoss(mode="binnary"), ValueError, ("`mode`", "'binary'")),
    BadInputCase("dice smooth < 0", lambda: DiceLoss(smooth_dr=-1.0), ValueError, ("`smooth_dr` must be >= 0",)),
    BadInputCase("dice class_weights scalar", lambda: DiceLoss(class_weights=1.0), ValueError, ("class_weights",)),
    BadInputCase("dice class_weights zero", lambda: DiceLoss(class_weights=[0, 0]), ValueError, ("must not all be 0",)),
    BadInputCase("tversky alpha > 1", lambda: TverskyLoss(alpha=1.2), ValueError, (r"`alpha` must be in \[0, 1\]",)),
    BadInputCase("focal tversky gamma 0", lambda: FocalTverskyLoss(gamma=0.0), ValueError, ("`gamma` must be > 0",)),
    BadInputCase("gdl weight_type", lambda: GeneralizedDiceLoss(weight_type="squared"), ValueError, ("'square'",)),
    BadInputCase("lovasz classes", lambda: LovaszSoftmaxLoss(classes="some"), ValueError, ("`classes`",)),
    BadInputCase("dice_ce negative weight", lambda: DiceCELoss(ce_weight=-1.0), ValueError, ("ce_weight",)),
    BadInputCase("dice_ce child", lambda: DiceCELoss(dice="dice"), ValueError, ("`dice` must be",)),
    BadInputCase("macro_f1 one class", lambda: MacroF1(num_classes=1), ValueError, ("num_classes", ">= 2")),
    BadInputCase("macro_f1 threshold", lambda: MacroF1(num_classes=2, threshold=1.0), ValueError, ("threshold",)),
    BadInputCase("recall class_id", lambda: ClassRecall(class_id=3, num_classes=3), ValueError, (r"\[0, 3\)",)),
    BadInputCase("dice_score average", lambda: DiceScore(num_classes=3, average="mean"), ValueError, ("average",)),
    BadInputCase("iou mode", lambda: IoUScore(num_classes=3, mode="multi"), ValueError, ("`mode`",)),
    BadInputCase("get unknown", lambda: losses.get("focall"), ValueError, ("Unknown loss 'focall'", "'focal'")),
    BadInputCase("get number", lambda: losses.get(3), ValueError, ("identifier", "int")),
    BadInputCase("get crossentropy typo", lambda: losses.get("crossentropyy"), ValueError, ("'crossentropy'",)),
    BadInputCase("get needs counts", lambda: losses.get("ldam"), ValueError, ("class_counts",)),
    BadInputCase(
        "get crossentropy",
        lambda: losses.get("crossentropy", from_logits=True),
        None,
        check_result=lambda loss: isinstance(loss, FocalLoss) and loss.gamma == 0.0,
    ),
]


def _call(loss, y_true, y_pred=PROBS, **kwargs):
    return lambda: loss(y_true, y_pred, **kwargs)


CALLS = [
    BadInputCase("focal label 7", _call(FocalLoss(), np.array([0, 1, 7])), ValueError, (RANGE, r"\[7\]")),
    BadInputCase("focal label -1", _call(FocalLoss(), np.array([0, -1, 2])), ValueError, (RANGE, r"\[-1\]")),
    BadInputCase("focal label 1.7", _call(FocalLoss(), np.array([0.0, 1.7, 2.0])), ValueError, (RANGE, "1.7")),
    BadInputCase("poly label 3", _call(PolyLoss(), np.array([0, 3, 1])), ValueError, (RANGE, r"\[3\]")),
    BadInputCase("gce label -2", _call(GeneralizedCrossEntropyLoss(), np.array([-2, 0, 1])), ValueError, (RANGE,)),
    BadInputCase("sce label 9", _call(SymmetricCrossEntropyLoss(), np.array([9, 0, 1])), ValueError, (RANGE,)),
    BadInputCase("la label 3", _call(LogitAdjustedLoss(class_counts=[3, 4, 5]), np.array([3, 0, 1])), ValueError),
    BadInputCase("dice label 5", _call(DiceLoss(), np.array([[0, 5, 1]]), PROBS[None]), ValueError, (RANGE,)),
    BadInputCase("lovasz label -1", _call(LovaszSoftmaxLoss(), np.array([[0, -1, 1]]), PROBS[None]), ValueError),
    BadInputCase(
        "ignore_index allowed",
        _call(FocalLoss(ignore_index=255, reduction="none"), np.array([0, 255, 2])),
        None,
        check_result=lambda values: float(values[1]) == 0.0,
    ),
    BadInputCase(
        "ignore_index other value",
        _call(FocalLoss(ignore_index=255), np.array([0, 254, 2])),
        ValueError,
        (r"ignore_index=255", r"\[254\]"),
    ),
    BadInputCase(
        "string y_true", _call(FocalLoss(), np.array(["a", "b", "c"])), TypeError, ("`y_true` must hold numbers",)
    ),
    BadInputCase(
        "sample_weight length",
        _call(FocalLoss(), LABELS, sample_weight=np.ones(5)),
        ValueError,
        ("`sample_weight`", r"sample_weight.shape=\(5,\)", r"\(3,\)"),
    ),
    BadInputCase(
        "y_pred classes vs one-hot",
        _call(FocalLoss(), np.eye(4)[[0, 1, 2]]),
        ValueError,
        (r"y_true\.shape=\(3, 4\)", r"y_pred\.shape=\(3, 3\)"),
    ),
    BadInputCase(
        "la counts vs classes",
        _call(LogitAdjustedLoss(class_counts=[3, 4]), LABELS),
        ValueError,
        ("class_counts", "3 classes"),
    ),
    BadInputCase(
        "lovasz batch weights",
        _call(LovaszSoftmaxLoss(), LABELS[None], PROBS[None], sample_weight=np.ones(1)),
        ValueError,
        ("per_image=False", "sample_weight"),
    ),
    BadInputCase(
        "include_background one channel",
        _call(DiceLoss(mode="binary", include_background=False), np.ones((3, 1)), PROBS[:, :1]),
        ValueError,
        ("include_background", "channel"),
    ),
]


def _update(metric, y_true, y_pred=PROBS):
    return lambda: metric.update_state(y_true, y_pred)


METRICS = [
    BadInputCase("macro_f1 label 5", _update(MacroF1(3), np.array([0, 5, 1])), ValueError, (RANGE, r"\[5\]")),
    BadInputCase("macro_f1 label -1", _update(MacroF1(3), np.array([0, -1, 1])), ValueError, (RANGE, r"\[-1\]")),
    BadInputCase("macro_f1 label 0.5", _update(MacroF1(3), np.array([0.0, 0.5, 1.0])), ValueError, (RANGE, "0.5")),
    BadInputCase("recall label 3", _update(ClassRecall(0, 3), np.array([3, 0, 1])), ValueError, (RANGE,)),
    BadInputCase("worst recall label 4", _update(WorstClassRecall(3), np.array([4, 0, 1])), ValueError, (RANGE,)),
    BadInputCase(
        "binary metric label 2",
        _update(MacroF1(2), np.array([0, 2, 1]), np.array([[0.2], [0.7], [0.9]], "float32")),
        ValueError,
        (r"integers in \[0, 2\)",),
    ),
    BadInputCase(
        "metric count mismatch",
        _update(MacroF1(3), np.array([0, 1, 2, 1])),
        ValueError,
        (r"y_true\.shape=\(4,\)", r"y_pred\.shape=\(3, 3\)"),
    ),
    BadInputCase("metric string labels", _update(MacroF1(3), np.array(["x", "y", "z"])), TypeError, ("numbers",)),
    BadInputCase(
        "metric classes", _update(MacroF1(4), LABELS), ValueError, ("num_classes=4", r"y_pred\.shape=\(3, 3\)")
    ),
    BadInputCase("dice score label 3", _update(DiceScore(3), np.array([[0, 3, 1]]), PROBS[None]), ValueError, (RANGE,)),
    BadInputCase(
        "dice score classes", _update(DiceScore(4), LABELS[None], PROBS[None]), ValueError, ("num_classes=4",)
    ),
]


@pytest.mark.parametrize("case", CONSTRUCTION + CALLS + METRICS, ids=repr)
def test_bad_input(case):
    assert_bad_input(case)


@pytest.fixture(scope="module")
def classifier():
    """One tiny logits model shared by the in-fit cases (recompiled per case)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


X = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
IN_FIT = [
    ("focal", lambda: FocalLoss(from_logits=True), np.array([0, 1, 2, 7] * 2)),
    ("poly", lambda: PolyLoss(from_logits=True), np.array([0, 1, -1, 2] * 2)),
    ("dice", lambda: DiceLoss(from_logits=True), np.array([0.0, 1.7, 2.0, 1.0] * 2, "float32")),
    ("gce", lambda: GeneralizedCrossEntropyLoss(from_logits=True), np.array([0, 1, 2, 3] * 2)),
]


@pytest.mark.parametrize("name, make_loss, labels", IN_FIT, ids=[c[0] for c in IN_FIT])
def test_out_of_range_labels_raise_in_fit_without_xla(classifier, name, make_loss, labels):
    classifier.compile(optimizer="sgd", loss=make_loss(), jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=RANGE):
        classifier.fit(X, labels, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("name, make_loss, labels", IN_FIT, ids=[c[0] for c in IN_FIT])
def test_out_of_range_labels_give_nan_loss_under_xla_like_keras(classifier, name, make_loss, labels):
    classifier.compile(optimizer="sgd", loss=make_loss(), jit_compile=True)
    history = classifier.fit(X, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isnan(history.history["loss"][0]), "a bad label must not train to a finite loss"


SPARSE_LOSSES = [
    FocalLoss(),
    PolyLoss(base="focal", alpha=[1.0, 2.0, 0.5]),
    GeneralizedCrossEntropyLoss(),
    SymmetricCrossEntropyLoss(),
    LogitAdjustedLoss(class_counts=[3, 4, 5]),
    LDAMLoss(class_counts=[3, 4, 5]),
    ClassBalancedLoss("focal", [3, 4, 5]),
    DiceLoss(),
    DiceLoss(per_image=False),
    JaccardLoss(),
    TverskyLoss(),
    FocalTverskyLoss(),
    GeneralizedDiceLoss(),
    LovaszSoftmaxLoss(),
    DiceCELoss(),
]


@pytest.mark.slow  # one XLA compilation of 15 losses: about 15 s of CPU
def test_every_sparse_label_loss_is_nan_under_xla_for_a_label_out_of_range():
    probs = tf.constant(PROBS[None])
    # One XLA compilation for all the losses keeps this fast.
    compiled = tf.function(lambda y: [loss(y, probs) for loss in SPARSE_LOSSES], jit_compile=True)
    names = [f"{type(loss).__name__}(per_image={loss.get_config().get('per_image')})" for loss in SPARSE_LOSSES]
    good = [float(v) for v in compiled(tf.constant([[0, 1, 2]]))]
    assert all(np.isfinite(good)), dict(zip(names, good))
    for bad_labels in ([[0, 7, 2]], [[0, -1, 2]]):
        values = [float(v) for v in compiled(tf.constant(bad_labels))]
        assert all(np.isnan(values)), dict(zip(names, values))


def _no_loss(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=-1) * 0.0  # the sparse labels only reach the metric


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_macro_f1_refuses_labels_outside_its_classes_in_fit(classifier, jit_compile):
    labels = np.array([0, 1, 5, 0, 1, 2, 0, 1])
    classifier.compile(optimizer="sgd", loss=_no_loss, metrics=[MacroF1(3)], jit_compile=jit_compile)
    if not jit_compile:
        with pytest.raises(tf.errors.InvalidArgumentError, match=RANGE):
            classifier.evaluate(X, labels, batch_size=8, verbose=0)
        return
    assert np.isnan(classifier.evaluate(X, labels, batch_size=8, verbose=0, return_dict=True)["macro_f1"])
    classifier.compile(optimizer="sgd", loss=_no_loss, metrics=[MacroF1(3)], jit_compile=True)
    assert np.isfinite(classifier.evaluate(X, labels % 3, batch_size=8, verbose=0, return_dict=True)["macro_f1"])
