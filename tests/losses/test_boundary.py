import numpy as np
import pytest

from keras_lossopt.losses import BoundaryLoss, GeneralizedDiceLoss, boundary_loss, get, signed_distance_maps
from tests.backends import tensorflow_only
from tests.losses import distance_references as dref
from tests.losses import overlap_references as oref
from tests.losses import segmentation_data as data
from tests.losses.contract import LossCase


def maps_and_logits(rng):
    labels, logits = data.sparse_logits(rng)
    return dref.signed_maps(np.eye(data.C)[labels]).astype("float32"), logits


CASES = [
    LossCase(
        "boundary-sparse-logits",
        lambda **kw: BoundaryLoss(from_logits=True, **kw),
        data.sparse_logits,
        lambda y, p: dref.boundary(y, p, from_logits=True),
        full=True,
    ),
    LossCase(
        "boundary-precomputed-maps",
        lambda **kw: BoundaryLoss(targets="distance_maps", from_logits=True, **kw),
        maps_and_logits,
        lambda maps, p: dref.boundary(None, p, from_logits=True, maps=maps),
        full=True,
    ),
    LossCase(
        "boundary-onehot-empty-and-full-classes-no-background",
        lambda **kw: BoundaryLoss(include_background=False, **kw),
        data.onehot_probs_with_empty_and_full_classes,
        lambda y, p: dref.boundary(y, p, include_background=False),
        from_logits=False,
        activation="softmax",
    ),
    LossCase(
        "boundary-binary-3d-probs",
        lambda **kw: BoundaryLoss(mode="binary", **kw),
        data.binary_volume_probs,
        lambda y, p: dref.boundary(y, p, mode="binary"),
        from_logits=False,
        activation="sigmoid",
    ),
    LossCase(
        "boundary-anisotropic-spacing",
        lambda **kw: BoundaryLoss(from_logits=True, spacing=(0.5, 2.0), **kw),
        data.sparse_logits,
        lambda y, p: dref.boundary(y, p, from_logits=True, resolution=(0.5, 2.0)),
    ),
    LossCase(
        "boundary-binary-3d-anisotropic-spacing",
        lambda **kw: BoundaryLoss(mode="binary", spacing=(3.0, 0.8, 0.8), **kw),
        data.binary_volume_probs,
        lambda y, p: dref.boundary(y, p, mode="binary", resolution=(3.0, 0.8, 0.8)),
        from_logits=False,
        activation="sigmoid",
    ),
    LossCase(
        "boundary-multilabel-logits",
        lambda **kw: BoundaryLoss(mode="multilabel", from_logits=True, **kw),
        data.multilabel_logits,
        lambda y, p: dref.boundary(y, p, mode="multilabel", from_logits=True),
    ),
]


class TestBoundaryContract(oref.CompactLossContract):
    cases = CASES


@tensorflow_only
def test_maps_from_the_pipeline_give_the_loss_computed_in_the_step(rng):
    import tensorflow as tf

    labels, logits = data.sparse_logits(rng)
    in_step = float(BoundaryLoss(from_logits=True)(labels, logits))
    numpy_maps = np.asarray(signed_distance_maps(labels, num_classes=data.C))
    dataset = tf.data.Dataset.from_tensor_slices(labels).batch(2)
    pipeline_maps = np.concatenate(
        [m.numpy() for m in dataset.map(lambda y: signed_distance_maps(y, num_classes=data.C))]
    )
    np.testing.assert_allclose(pipeline_maps, numpy_maps)
    from_maps = float(BoundaryLoss(targets="distance_maps", from_logits=True)(numpy_maps, logits))
    assert from_maps == pytest.approx(in_step, rel=1e-6)


def test_moving_probability_inside_the_target_lowers_the_loss():
    labels = np.zeros((1, 7, 7), np.int64)
    labels[0, 2:5, 2:5] = 1
    probs = np.full((1, 7, 7, 2), 0.5)
    inside = probs.copy()
    inside[0, 3, 3] = [0.1, 0.9]
    outside = probs.copy()
    outside[0, 0, 0] = [0.1, 0.9]
    loss = BoundaryLoss(include_background=False)
    assert float(loss(labels, inside)) < float(loss(labels, probs)) < float(loss(labels, outside))


def test_composes_with_generalized_dice_as_the_authors_train(rng):
    labels, logits = data.sparse_logits(rng)
    combined = GeneralizedDiceLoss(from_logits=True) + 0.01 * BoundaryLoss(from_logits=True)
    expected = float(GeneralizedDiceLoss(from_logits=True)(labels, logits)) + 0.01 * float(
        BoundaryLoss(from_logits=True)(labels, logits)
    )
    assert float(combined(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_function_returns_per_position_values(rng):
    labels, logits = data.sparse_logits(rng)
    assert tuple(boundary_loss(labels, logits, from_logits=True).shape) == labels.shape


def test_config_keeps_non_default_values():
    loss = BoundaryLoss(targets="distance_maps", mode="multilabel", from_logits=True, include_background=False)
    rebuilt = BoundaryLoss.from_config(loss.get_config())
    assert rebuilt.get_config() == loss.get_config()
    assert (rebuilt.targets, rebuilt.mode, rebuilt.include_background) == ("distance_maps", "multilabel", False)
    spaced = BoundaryLoss(spacing=(0.5, 2.0))
    assert BoundaryLoss.from_config(spaced.get_config()).spacing == (0.5, 2.0)


def test_spacing_is_ignored_with_a_warning_for_precomputed_maps():
    with pytest.warns(UserWarning, match="spacing.*ignored.*signed_distance_maps"):
        BoundaryLoss(targets="distance_maps", spacing=2.0)


def test_alias():
    assert type(get("boundary", from_logits=True)) is BoundaryLoss
