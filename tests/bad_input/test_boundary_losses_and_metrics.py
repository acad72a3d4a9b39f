"""Bad input to the boundary and topology losses, their distance maps and the boundary metrics (table-driven)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses import (
    BoundaryLoss,
    HausdorffDTLoss,
    HausdorffERLoss,
    SoftClDiceLoss,
    SoftDiceClDiceLoss,
    distance_to_nearest,
    signed_distance_maps,
    soft_skeleton,
)
from keras_lossopt.metrics import HausdorffDistance, SurfaceDice
from tests.bad_input.cases import BadInputCase, assert_bad_input

LABELS = np.zeros((2, 4, 4), np.int64)
PROBS = np.full((2, 4, 4, 3), 1 / 3, "float32")
FLAT_PROBS = np.full((2, 3), 1 / 3, "float32")  # a classifier's output: no spatial axes

CASES = [
    BadInputCase("hausdorff dt alpha 0", lambda: HausdorffDTLoss(alpha=0.0), ValueError, ("`alpha` must be > 0",)),
    BadInputCase("hausdorff dt mode typo", lambda: HausdorffDTLoss(mode="binnary"), ValueError, ("`mode`", "'binary'")),
    BadInputCase("hausdorff er erosions 0", lambda: HausdorffERLoss(erosions=0), ValueError, ("erosions",)),
    BadInputCase("hausdorff er erosions float", lambda: HausdorffERLoss(erosions=2.5), TypeError, ("erosions",)),
    BadInputCase("hausdorff er alpha string", lambda: HausdorffERLoss(alpha="2"), TypeError, ("`alpha`",)),
    BadInputCase(
        "boundary targets typo",
        lambda: BoundaryLoss(targets="distance_map"),
        ValueError,
        ("`targets`", "distance_maps"),
    ),
    BadInputCase("cldice iterations < 0", lambda: SoftClDiceLoss(iterations=-1), ValueError, ("iterations",)),
    BadInputCase("cldice smooth < 0", lambda: SoftClDiceLoss(smooth=-1.0), ValueError, ("`smooth` must be >= 0",)),
    BadInputCase("dice cldice alpha > 1", lambda: SoftDiceClDiceLoss(alpha=1.5), ValueError, (r"`alpha`", "1.5")),
    BadInputCase(
        "hausdorff on a classifier output",
        lambda: HausdorffDTLoss()(np.array([0, 1]), FLAT_PROBS),
        ValueError,
        (r"2-D images \(N, H, W, C\) or 3-D volumes", r"y_pred.shape=\(2, 3\)"),
    ),
    BadInputCase(
        "cldice on a classifier output",
        lambda: SoftClDiceLoss()(np.array([0, 1]), FLAT_PROBS),
        ValueError,
        (r"y_pred.shape=\(2, 3\)",),
    ),
    BadInputCase(
        "boundary maps of the wrong shape",
        lambda: BoundaryLoss(targets="distance_maps")(np.zeros((2, 4, 4, 2)), PROBS),
        ValueError,
        (r"y_true.shape=\(2, 4, 4, 2\)", r"y_pred.shape=\(2, 4, 4, 3\)"),
    ),
    BadInputCase(
        "boundary label out of range",
        lambda: BoundaryLoss()(LABELS + 3, PROBS),
        ValueError,
        (r"integers in \[0, 3\)", r"\[3\]"),
    ),
    BadInputCase(
        "hausdorff one-hot of the wrong width",
        lambda: HausdorffERLoss()(np.zeros((2, 4, 4, 2)), PROBS),
        ValueError,
        (r"y_true.shape=\(2, 4, 4, 2\)", r"y_pred.shape=\(2, 4, 4, 3\)"),
    ),
    BadInputCase(
        "no background channel to drop",
        lambda: HausdorffDTLoss(mode="binary", include_background=False)(np.zeros((2, 4, 4, 1)), PROBS[..., :1]),
        ValueError,
        ("include_background=False", r"y_pred.shape=\(2, 4, 4, 1\)"),
    ),
    BadInputCase(
        "signed maps of sparse labels without num_classes",
        lambda: signed_distance_maps(LABELS),
        ValueError,
        ("num_classes", r"y_true.shape=\(2, 4, 4\)"),
    ),
    BadInputCase(
        "signed maps label out of range",
        lambda: signed_distance_maps(LABELS + 5, num_classes=3),
        ValueError,
        (r"integers in \[0, 3\)", r"\[5\]"),
    ),
    BadInputCase(
        "signed maps num_classes 0", lambda: signed_distance_maps(LABELS, num_classes=0), ValueError, ("num_classes",)
    ),
    BadInputCase(
        "distance of a 1-D mask",
        lambda: distance_to_nearest(np.zeros((2, 5), bool)),
        ValueError,
        (r"mask.shape=\(2, 5\)",),
    ),
    BadInputCase("hd percentile > 100", lambda: HausdorffDistance(percentile=101), ValueError, ("percentile", "101")),
    BadInputCase("hd mode typo", lambda: HausdorffDistance(mode="multiclas"), ValueError, ("`mode`", "'multiclass'")),
    BadInputCase("nsd tolerance < 0", lambda: SurfaceDice(tolerance=-1.0), ValueError, ("tolerance",)),
    BadInputCase("nsd tolerance None", lambda: SurfaceDice(tolerance=None), ValueError, ("tolerance",)),
    BadInputCase("nsd spacing 0", lambda: SurfaceDice(spacing=0.0), ValueError, ("`spacing`", "> 0", "spacing=0.0")),
    BadInputCase(
        "hd negative spacing on one axis",
        lambda: HausdorffDistance(spacing=(1.0, -2.0)),
        ValueError,
        ("`spacing`", r"spacing=\(1.0, -2.0\)"),
    ),
    BadInputCase(
        "hd spacing of the wrong length",
        lambda: HausdorffDistance(spacing=(1.0, 1.0, 3.0)).update_state(LABELS, PROBS),
        ValueError,
        ("one value per spatial axis", "2 for", r"spacing=\(1.0, 1.0, 3.0\)"),
    ),
    BadInputCase(
        "signed maps spacing of the wrong length",
        lambda: signed_distance_maps(LABELS, num_classes=3, spacing=(1.0, 2.0, 3.0)),
        ValueError,
        ("one value per spatial axis", r"spatial shape \(4, 4\)"),
    ),
    BadInputCase(
        "distance spacing not a number",
        lambda: distance_to_nearest(np.zeros((1, 4, 4, 1), bool), spacing="1mm"),
        TypeError,
        ("spacing",),
    ),
    BadInputCase("nsd threshold > 1", lambda: SurfaceDice(threshold=1.5), ValueError, ("threshold", "1.5")),
    BadInputCase(
        "nsd tolerances per class of the wrong length",
        lambda: SurfaceDice(tolerance=[1.0, 2.0, 3.0]).update_state(LABELS, PROBS),
        ValueError,
        ("`tolerance` has 3 values but 2 classes", "include_background=False"),
    ),
    BadInputCase(
        "hd on a classifier output",
        lambda: HausdorffDistance().update_state(np.array([0, 1]), FLAT_PROBS),
        ValueError,
        (r"y_pred.shape=\(2, 3\)",),
    ),
    BadInputCase(
        "hd per-pixel sample_weight",
        lambda: HausdorffDistance().update_state(LABELS, PROBS, sample_weight=np.ones((2, 4, 4))),
        ValueError,
        ("one weight per image", r"sample_weight.shape=\(2, 4, 4\)"),
    ),
    BadInputCase(
        "hd label out of range",
        lambda: HausdorffDistance().update_state(LABELS + 4, PROBS),
        ValueError,
        (r"integers in \[0, 3\)",),
    ),
    BadInputCase(
        "hd binary without background to drop",
        lambda: HausdorffDistance(include_background=False).update_state(np.zeros((2, 4, 4, 1)), PROBS[..., :1]),
        ValueError,
        ("include_background=False",),
    ),
    BadInputCase(
        "skeleton of a flat array",
        lambda: soft_skeleton(np.zeros((2, 5, 1))),
        ValueError,
        (r"probabilities.shape=\(2, 5, 1\)",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case):
    assert_bad_input(case)


@pytest.mark.slow  # one XLA compilation of the five losses: about a minute of CPU
def test_every_loss_is_nan_under_xla_for_a_label_out_of_range():
    probs = tf.constant(np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 6, 6)), tf.float32)
    everything = [
        HausdorffDTLoss(),
        HausdorffERLoss(erosions=2),
        BoundaryLoss(),
        SoftClDiceLoss(),
        SoftDiceClDiceLoss(),
    ]
    compiled = tf.function(lambda y: [loss(y, probs) for loss in everything], jit_compile=True)
    good = np.zeros((1, 6, 6), np.int64)
    good[0, 2:4, 2:4] = 1
    assert all(np.isfinite([float(v) for v in compiled(tf.constant(good))]))
    bad = good.copy()
    bad[0, 0, 0] = 7
    values = [float(v) for v in compiled(tf.constant(bad))]
    assert all(np.isnan(values)), dict(zip([type(loss).__name__ for loss in everything], values))


@pytest.mark.slow  # an XLA compilation of both metrics
def test_metrics_are_nan_under_xla_for_a_label_out_of_range():
    good = np.zeros((1, 6, 6), np.int64)
    good[0, 2:4, 2:4] = 1
    probs = tf.constant(np.eye(3)[good] * 0.8 + 0.2 / 3, tf.float32)
    bad = good.copy()
    bad[0, 0, 0] = 7
    for metric in (HausdorffDistance(), SurfaceDice()):
        update = tf.function(metric.update_state, jit_compile=True)
        update(tf.constant(good), probs)
        assert np.isfinite(float(metric.result()))
        update(tf.constant(bad), probs)
        assert np.isnan(float(metric.result())), type(metric).__name__
