import keras
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from keras_lossopt.losses import distance_to_nearest, signed_distance_maps
from tests.backends import compiled, to_numpy
from tests.losses import distance_references as dref


@pytest.mark.parametrize("shape", [(2, 9, 7, 3), (2, 5, 6, 4, 2)], ids=["2d", "3d"])
def test_distance_to_nearest_is_scipys_exact_transform(rng, shape):
    mask = rng.uniform(size=shape) > 0.85
    mask[0, ..., 0] = False  # an empty image-channel: no position to measure to
    got = np.asarray(distance_to_nearest(mask))
    for n in range(shape[0]):
        for c in range(shape[-1]):
            if not mask[n, ..., c].any():
                assert np.all(np.isinf(got[n, ..., c]))
            else:
                np.testing.assert_allclose(got[n, ..., c], distance_transform_edt(~mask[n, ..., c]), rtol=1e-6)


def test_distance_to_nearest_compiles_with_xla(rng):
    mask = rng.uniform(size=(2, 8, 8, 1)) > 0.8
    compiled_distance = compiled(distance_to_nearest)
    np.testing.assert_array_equal(
        to_numpy(compiled_distance(keras.ops.convert_to_tensor(mask))), to_numpy(distance_to_nearest(mask))
    )


@pytest.mark.parametrize("spatial", [(6, 8), (4, 5, 6)], ids=["2d", "3d"])
def test_signed_maps_match_the_authors_one_hot2dist(rng, spatial):
    labels = rng.integers(0, 3, size=(2, *spatial))
    labels[1] = 0  # class 0 fills image 1; classes 1 and 2 are absent from it
    expected = dref.signed_maps(np.eye(3)[labels])
    np.testing.assert_allclose(np.asarray(signed_distance_maps(labels, num_classes=3)), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(signed_distance_maps(np.eye(3)[labels])), expected, rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(signed_distance_maps(labels, num_classes=3))[1] == 0.0)


def test_signed_maps_need_the_number_of_classes_for_sparse_labels():
    with pytest.raises(ValueError, match=r"num_classes.*y_true.shape=\(2, 4, 4\)"):
        signed_distance_maps(np.zeros((2, 4, 4), np.int64))


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((2, 9, 7, 2), 0.5), ((2, 9, 7, 2), (0.8, 2.5)), ((2, 5, 6, 4, 1), (3.0, 0.7, 0.7))],
    ids=["2d-isotropic", "2d-anisotropic", "3d-anisotropic"],
)
def test_distance_to_nearest_takes_scipys_sampling(rng, shape, spacing):
    mask = rng.uniform(size=shape) > 0.85
    mask[0, ..., 0] = False
    got = to_numpy(distance_to_nearest(mask, spacing=spacing))
    sampling = spacing if isinstance(spacing, tuple) else (spacing,) * (len(shape) - 2)
    for n in range(shape[0]):
        for c in range(shape[-1]):
            if not mask[n, ..., c].any():
                assert np.all(np.isinf(got[n, ..., c]))
            else:
                expected = distance_transform_edt(~mask[n, ..., c], sampling=sampling)
                np.testing.assert_allclose(got[n, ..., c], expected, rtol=1e-6)
    # Distances scale with the spacing: twice the pixel size, twice every distance.
    doubled = tuple(2.0 * v for v in sampling)
    np.testing.assert_allclose(to_numpy(distance_to_nearest(mask, spacing=doubled)), 2.0 * got, rtol=1e-6)


def test_signed_maps_take_the_authors_resolution(rng):
    labels = rng.integers(0, 3, size=(2, 6, 8))
    resolution = (0.6, 1.7)
    expected = dref.signed_maps(np.eye(3)[labels], resolution)
    got = to_numpy(signed_distance_maps(labels, num_classes=3, spacing=resolution))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
