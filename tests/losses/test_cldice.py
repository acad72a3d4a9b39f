import numpy as np
import pytest
import tensorflow as tf

from keras_lossopt.losses import (
    DiceLoss,
    SoftClDiceLoss,
    SoftDiceClDiceLoss,
    get,
    soft_cldice_loss,
    soft_dice_cldice_loss,
    soft_skeleton,
)
from tests.losses import distance_references as dref
from tests.losses import overlap_references as oref
from tests.losses import segmentation_data as data
from tests.losses.contract import LossCase


def binary_probs(rng):
    y = (data.blocky_labels(rng, num_classes=2) > 0).astype("float32")[..., None]
    return y, rng.uniform(0.02, 0.98, size=y.shape)


PER_IMAGE_CASES = [
    LossCase(
        "cldice-sparse-logits",
        lambda **kw: SoftClDiceLoss(from_logits=True, **kw),
        data.sparse_logits,
        lambda y, p: dref.cldice(y, p, from_logits=True),
        full=True,
    ),
    LossCase(
        "dice-cldice-onehot-empty-and-full-classes-no-background",
        lambda **kw: SoftDiceClDiceLoss(alpha=0.3, iterations=2, include_background=False, **kw),
        data.onehot_probs_with_empty_and_full_classes,
        lambda y, p: dref.cldice(y, p, alpha=0.3, iterations=2, include_background=False),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "cldice-binary-3d-logits-no-smoothing",
        lambda **kw: SoftClDiceLoss(smooth=0.0, mode="binary", from_logits=True, **kw),
        data.binary_volume_logits,
        lambda y, p: dref.cldice(y, p, smooth=0.0, mode="binary", from_logits=True),
        # Not `full`: XLA takes minutes on two busy cores to compile the 3-D skeleton's
        # train step; the 2-D cases run the fit, distribution and save/load checks.
    ),
    LossCase(
        "dice-cldice-multilabel",
        lambda **kw: SoftDiceClDiceLoss(mode="multilabel", from_logits=True, iterations=4, **kw),
        data.multilabel_logits,
        lambda y, p: dref.cldice(y, p, alpha=0.5, mode="multilabel", from_logits=True, iterations=4),
    ),
]


class TestPerImageClDiceContract(oref.CompactLossContract):
    cases = PER_IMAGE_CASES


BATCH_CASES = [
    LossCase(
        "batch-cldice-binary",
        lambda **kw: SoftClDiceLoss(mode="binary", per_image=False, **kw),
        binary_probs,
        lambda y, p, sample_weight=None: dref.cldice(y, p, mode="binary", per_image=False, sample_weight=sample_weight),
        from_logits=False,
        activation="sigmoid",
        full=True,
    ),
    LossCase(
        "batch-dice-cldice-sparse-logits",
        lambda **kw: SoftDiceClDiceLoss(from_logits=True, per_image=False, **kw),
        data.sparse_logits,
        lambda y, p, sample_weight=None: dref.cldice(
            y, p, alpha=0.5, from_logits=True, per_image=False, sample_weight=sample_weight
        ),
    ),
]


class TestBatchClDiceContract(oref.BatchRegionContract):
    cases = BATCH_CASES


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 4, 5, 6, 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("iterations", [3, 10])
def test_one_channel_batch_loss_is_the_authors_soft_cldice(rng, shape, iterations):
    y = (rng.uniform(size=shape) > 0.6).astype("float32")
    p = rng.uniform(size=shape)
    cldice = SoftClDiceLoss(iterations=iterations, mode="binary", per_image=False)
    combined = SoftDiceClDiceLoss(iterations=iterations, mode="binary", per_image=False)
    np.testing.assert_allclose(float(cldice(y, p)), dref.authors_soft_dice_cldice(y, p, iterations), rtol=1e-5)
    expected = dref.authors_soft_dice_cldice(y, p, iterations, alpha=0.5)
    np.testing.assert_allclose(float(combined(y, p)), expected, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 9, 8, 2), (1, 5, 6, 7, 2)], ids=["2d", "3d"])
def test_soft_skeleton_is_the_authors_soft_skel(rng, shape):
    x = rng.uniform(size=shape)
    np.testing.assert_allclose(np.asarray(soft_skeleton(x, 5)), dref.soft_skel(x, 5), rtol=1e-6, atol=1e-7)


def test_cldice_tells_a_cut_from_an_equal_area_error_that_dice_cannot():
    vessel = np.zeros((1, 9, 15, 1), "float32")
    vessel[0, 3:6, :] = 1.0
    cut, thinned = vessel.copy(), vessel.copy()
    cut[0, 3:6, 7] = 0.0  # three pixels across the vessel: it is broken in two
    thinned[0, 3, 6:9] = 0.0  # three pixels off its wall: still connected
    dice = DiceLoss(mode="binary", smooth_nr=0.0, smooth_dr=0.0)
    cldice = SoftClDiceLoss(mode="binary", smooth=0.0)
    assert float(dice(vessel, cut)) == pytest.approx(float(dice(vessel, thinned)), rel=1e-6)
    assert float(cldice(vessel, cut)) > 0.03
    assert float(cldice(vessel, thinned)) == pytest.approx(0.0, abs=1e-6)
    assert float(cldice(vessel, vessel)) == pytest.approx(0.0, abs=1e-7)


def test_jit_compiled_loss_matches_eager(rng):
    labels, logits = data.sparse_logits(rng)
    loss = SoftDiceClDiceLoss(from_logits=True)
    logits = tf.constant(logits, tf.float32)
    compiled = tf.function(lambda y, z: loss(y, z), jit_compile=True)
    np.testing.assert_allclose(float(compiled(labels, logits)), float(loss(labels, logits)), rtol=1e-5)


def test_functions_return_per_image_or_batch_values(rng):
    labels, logits = data.sparse_logits(rng)
    for function in (soft_cldice_loss, soft_dice_cldice_loss):
        assert tuple(function(labels, logits, from_logits=True).shape) == (labels.shape[0],)
        assert tuple(function(labels, logits, from_logits=True, per_image=False).shape) == ()


def test_config_keeps_non_default_values():
    loss = SoftDiceClDiceLoss(
        alpha=0.2,
        iterations=7,
        smooth=0.5,
        mode="multilabel",
        from_logits=True,
        per_image=False,
        include_background=False,
    )
    rebuilt = SoftDiceClDiceLoss.from_config(loss.get_config())
    assert rebuilt.get_config() == loss.get_config()
    assert (rebuilt.alpha, rebuilt.iterations, rebuilt.smooth, rebuilt.per_image) == (0.2, 7, 0.5, False)


@pytest.mark.parametrize("alias, cls", [("cldice", SoftClDiceLoss), ("dice_cldice", SoftDiceClDiceLoss)])
def test_aliases(alias, cls):
    assert type(get(alias, from_logits=True)) is cls
