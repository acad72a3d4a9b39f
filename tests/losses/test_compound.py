import json

import keras
import numpy as np
import pytest

from keras_lossopt.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, get
from tests.backends import to_numpy
from tests.losses import overlap_references as oref
from tests.losses import references as ref
from tests.losses.contract import REDUCTIONS, LossCase, _data, _grad, _loss_value

N, C = 4, 3


def pixel_focal(y_true, y_pred, gamma, from_logits, ignore_index=None):
    targets, valid = ref.one_hot_targets(y_true, C, 0.0, ignore_index)
    log_p = ref.softmax_log_probs(y_pred, from_logits)
    return (-targets * (1 - np.exp(log_p)) ** gamma * log_p).sum(-1) * valid, valid


def compound_reference(y_true, y_pred, reduction, sample_weight=None, *, gamma, from_logits, ignore_index, weights):
    """Both parts reduced by `reduction`; per image (dice + mean pixel loss) for "none"."""
    dice = oref.overlap(y_true, y_pred, from_logits=from_logits, ignore_index=ignore_index)
    pixel, valid = pixel_focal(y_true, y_pred, gamma, from_logits, ignore_index)
    w_dice, w_pixel = weights
    if reduction == "none":
        sw = np.ones(len(dice)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        axes = tuple(range(1, pixel.ndim))
        per_image = (pixel * sw.reshape((-1,) + (1,) * len(axes))).sum(axes) / np.maximum(valid.sum(axes), 1)
        return w_dice * dice * sw + w_pixel * per_image
    mask = None if ignore_index is None else valid
    return w_dice * ref.reduce(dice, sample_weight, None, reduction) + w_pixel * ref.reduce(
        pixel, sample_weight, mask, reduction
    )


def sparse_logits_with_ignored(rng):
    labels = rng.integers(0, C, size=(N, 4, 4))
    labels[0, 0] = 255
    labels[3, 2, :3] = 255
    return labels, rng.normal(scale=2.0, size=(N, 4, 4, C))


def onehot_probs(rng):
    labels = rng.integers(0, C, size=(N, 4, 4))
    return np.eye(C)[labels].astype("float32"), rng.dirichlet(np.ones(C), size=(N, 4, 4))


SETTINGS = {
    "dice-ce-sparse-logits-ignore": dict(gamma=0.0, from_logits=True, ignore_index=255, weights=(0.7, 1.3)),
    "dice-focal-onehot-probs": dict(gamma=2.0, from_logits=False, ignore_index=None, weights=(1.0, 2.0)),
}

CASES = [
    LossCase(
        "dice-ce-sparse-logits-ignore",
        lambda **kw: DiceCELoss(dice_weight=0.7, ce_weight=1.3, from_logits=True, ignore_index=255, **kw),
        sparse_logits_with_ignored,
        lambda y, p: compound_reference(y, p, "none", **SETTINGS["dice-ce-sparse-logits-ignore"]),
        full=True,
    ),
    LossCase(
        "dice-focal-onehot-probs",
        lambda **kw: DiceFocalLoss(focal_weight=2.0, gamma=2.0, **kw),
        onehot_probs,
        lambda y, p: compound_reference(y, p, "none", **SETTINGS["dice-focal-onehot-probs"]),
        from_logits=False,
        activation="softmax",
        full=True,
    ),
]


class TestCompoundContract(oref.CompactLossContract):
    """Each part is reduced by the compound's reduction, so reduced values use `compound_reference`."""

    cases = CASES

    def test_reductions_and_sample_weight(self, case):
        y_true, y_pred = _data(case)
        for reduction in REDUCTIONS:
            for sample_weight in (None, np.random.default_rng(5).uniform(0.1, 2.0, size=N)):
                expected = compound_reference(y_true, y_pred, reduction, sample_weight, **SETTINGS[case.id])
                got = _loss_value(case.make_loss(reduction=reduction), y_true, y_pred, sample_weight)
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    def test_gradients_match_float64_reference(self, case):
        y_true, y_pred = _data(case)
        expected = ref.numerical_gradient(
            lambda p: float(compound_reference(y_true, p, "sum", **SETTINGS[case.id])), y_pred
        )
        _, got = _grad(case.make_loss(reduction="sum"), y_true, y_pred)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())

    def test_mixed_precision_computes_in_float32(self, case):
        y_true, y_pred = _data(case)
        low_pred = keras.ops.cast(keras.ops.convert_to_tensor(y_pred, "float32"), "bfloat16")
        rounded = to_numpy(keras.ops.cast(low_pred, "float32")).astype(np.float64)
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            loss = case.make_loss()
            assert loss.dtype == "float32" and loss.dice.dtype == "float32"
            got = float(to_numpy(loss(y_true, low_pred)))
        finally:
            keras.config.set_dtype_policy("float32")
        expected = compound_reference(y_true, rounded, "sum_over_batch_size", **SETTINGS[case.id])
        np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_dice_ce_is_the_sum_of_its_parts(rng):
    labels, logits = sparse_logits_with_ignored(rng)
    compound = DiceCELoss(dice_weight=0.25, ce_weight=2.0, from_logits=True, ignore_index=255)
    dice = DiceLoss(from_logits=True, ignore_index=255)(labels, logits)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(labels, logits)
    np.testing.assert_allclose(float(compound(labels, logits)), 0.25 * float(dice) + 2.0 * float(ce), rtol=1e-5)


def test_custom_children_serialize_and_take_the_compound_reduction(rng):
    labels, logits = sparse_logits_with_ignored(rng)
    loss = DiceFocalLoss(
        dice=DiceLoss(from_logits=True, per_image=False, ignore_index=255, smooth_nr=0.5),
        focal=FocalLoss(gamma=1.0, from_logits=True, ignore_index=255),
        dice_weight=0.5,
        reduction="sum",
    )
    assert loss.dice.reduction == "sum" and loss.other.reduction == "sum"
    config = json.loads(json.dumps(loss.get_config()))
    assert config["dice"]["class_name"] == "DiceLoss" and config["focal"]["config"]["gamma"] == 1.0
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(loss))))
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(float(restored(labels, logits)), float(loss(labels, logits)), rtol=1e-6)
    batch_dice = oref.overlap(labels, logits, from_logits=True, ignore_index=255, per_image=False, smooth_nr=0.5)
    focal, _ = pixel_focal(labels, logits, 1.0, True, 255)
    assert float(loss(labels, logits)) == pytest.approx(0.5 * batch_dice + focal.sum(), rel=1e-5)


def test_aliases_and_bad_arguments():
    assert type(get("dice_ce", from_logits=True)) is DiceCELoss
    assert type(get("dice_focal")) is DiceFocalLoss
    with pytest.raises(ValueError, match=r"`dice_weight` must be >= 0. Received: dice_weight=-1"):
        DiceCELoss(dice_weight=-1)
    with pytest.raises(ValueError, match=r"`focal_weight` must be >= 0"):
        DiceFocalLoss(focal_weight=-0.5)
    with pytest.raises(ValueError, match=r"`dice` must be a keras.losses.Loss"):
        DiceCELoss(dice="not a loss")
    with pytest.raises(ValueError, match=r"ignore_index.*mode='binary'"):
        DiceCELoss(mode="binary", ignore_index=255)
