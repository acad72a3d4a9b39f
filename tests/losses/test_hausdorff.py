import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses import HausdorffDTLoss, HausdorffERLoss, get, hausdorff_dt_loss, hausdorff_er_loss
from tests.losses import distance_references as dref
from tests.losses import overlap_references as oref
from tests.losses import segmentation_data as data
from tests.losses.contract import LossCase

CASES = [
    LossCase(
        "hausdorff-dt-sparse-logits",
        lambda **kw: HausdorffDTLoss(from_logits=True, **kw),
        data.sparse_logits,
        lambda y, p: dref.hausdorff_dt(y, p, from_logits=True),
        full=True,
    ),
    LossCase(
        "hausdorff-dt-onehot-empty-and-full-classes-alpha1-no-background",
        lambda **kw: HausdorffDTLoss(alpha=1.0, include_background=False, **kw),
        data.onehot_probs_with_empty_and_full_classes,
        lambda y, p: dref.hausdorff_dt(y, p, alpha=1.0, include_background=False),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "hausdorff-dt-binary-3d",
        lambda **kw: HausdorffDTLoss(mode="binary", from_logits=True, **kw),
        data.binary_volume_logits,
        lambda y, p: dref.hausdorff_dt(y, p, mode="binary", from_logits=True),
        full=True,
    ),
    LossCase(
        "hausdorff-dt-multilabel-alpha3",
        lambda **kw: HausdorffDTLoss(alpha=3.0, mode="multilabel", from_logits=True, **kw),
        data.multilabel_logits,
        lambda y, p: dref.hausdorff_dt(y, p, alpha=3.0, mode="multilabel", from_logits=True),
    ),
    LossCase(
        "hausdorff-er-sparse-logits",
        lambda **kw: HausdorffERLoss(from_logits=True, **kw),
        data.sparse_logits,
        lambda y, p: dref.hausdorff_er(y, p, from_logits=True),
        full=True,
    ),
    LossCase(
        "hausdorff-er-binary-3d-probs",
        lambda **kw: HausdorffERLoss(alpha=1.5, erosions=3, mode="binary", **kw),
        data.binary_volume_probs,
        lambda y, p: dref.hausdorff_er(y, p, alpha=1.5, erosions=3, mode="binary"),
        from_logits=False,
        activation="sigmoid",
    ),
    LossCase(
        "hausdorff-er-onehot-empty-and-full-classes-no-background",
        lambda **kw: HausdorffERLoss(erosions=4, include_background=False, **kw),
        data.onehot_probs_with_empty_and_full_classes,
        lambda y, p: dref.hausdorff_er(y, p, erosions=4, include_background=False),
        from_logits=False,
        activation="softmax",
    ),
]


class TestHausdorffContract(oref.CompactLossContract):
    cases = CASES


def test_perfect_prediction_costs_nothing_also_with_empty_and_full_classes(rng):
    labels, _ = data.onehot_probs_with_empty_and_full_classes(rng)
    for loss in (HausdorffDTLoss(), HausdorffERLoss()):
        assert float(loss(labels, labels)) == pytest.approx(0.0, abs=1e-7)


def test_an_error_far_from_the_boundary_costs_more_than_one_next_to_it():
    labels = np.zeros((1, 9, 9), np.int64)
    labels[0, 2:7, 2:7] = 1
    probs = np.eye(2)[labels]
    near, far = probs.copy(), probs.copy()
    near[0, 1, 4] = [0.4, 0.6]  # next to the square
    far[0, 8, 8] = [0.4, 0.6]  # in the far corner
    assert float(HausdorffDTLoss()(labels, far)) > float(HausdorffDTLoss()(labels, near)) > 0.0


def test_erosion_keeps_thick_errors_and_erases_isolated_ones():
    labels = np.zeros((1, 9, 9), np.int64)
    thin, thick = np.eye(2)[labels], np.eye(2)[labels]
    for i in (1, 4, 7):
        thin[0, i, i] = [0.0, 1.0]  # isolated wrong pixels: the first erosion removes them
    thick[0, 3:6, 3:6] = [0.0, 1.0]  # a wrong 3x3 block survives the first erosion
    loss = HausdorffERLoss(erosions=3)
    assert float(loss(labels, thin)) == 0.0
    assert float(loss(labels, thick)) > 0.0


@pytest.mark.parametrize("make", [lambda: HausdorffDTLoss(from_logits=True), lambda: HausdorffERLoss(from_logits=True)])
def test_jit_compiled_loss_matches_eager_in_2d_and_3d(rng, make):
    loss = make()
    for labels, logits in (data.sparse_logits(rng), data.binary_volume_logits(rng)):
        if logits.shape[-1] == 1:
            loss = type(loss).from_config({**loss.get_config(), "mode": "binary"})
        logits = tf.constant(logits, tf.float32)
        compiled = tf.function(lambda y, z, loss=loss: loss(y, z), jit_compile=True)
        np.testing.assert_allclose(float(compiled(labels, logits)), float(loss(labels, logits)), rtol=1e-5)


def test_functions_return_per_position_values(rng):
    labels, logits = data.sparse_logits(rng)
    for function in (hausdorff_dt_loss, hausdorff_er_loss):
        assert tuple(function(labels, logits, from_logits=True).shape) == labels.shape


def test_config_keeps_non_default_values():
    loss = HausdorffERLoss(alpha=1.5, erosions=4, mode="multilabel", from_logits=True, include_background=False)
    rebuilt = HausdorffERLoss.from_config(loss.get_config())
    assert rebuilt.get_config() == loss.get_config()
    assert (rebuilt.alpha, rebuilt.erosions, rebuilt.mode) == (1.5, 4, "multilabel")
    dt = HausdorffDTLoss.from_config(HausdorffDTLoss(alpha=1.0, mode="binary").get_config())
    assert (dt.alpha, dt.mode) == (1.0, "binary")


@pytest.mark.parametrize("alias, cls", [("hausdorff_dt", HausdorffDTLoss), ("hausdorff_er", HausdorffERLoss)])
def test_aliases(alias, cls):
    assert type(get(alias, from_logits=True)) is cls
