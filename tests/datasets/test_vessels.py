import numpy as np
from scipy import ndimage

from keras_lossopt.datasets import LOADERS, available_datasets, load_dataset, load_vessels, make_vessels


def test_registered_and_split():
    assert "vessels" in available_datasets() and LOADERS["vessels"] is load_vessels
    data = load_dataset("vessels", num_images=40, image_size=32, seed=3)
    assert data.task == "segmentation" and data.num_classes == 2
    assert data.class_names == ("background", "vessel")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (28, 6, 6)
    assert data.x_train.shape[1:] == (32, 32, 1) and data.x_train.dtype == np.float32
    assert data.y_train.shape[1:] == (32, 32) and data.y_train.dtype == np.int64


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (make_vessels(5, image_size=32, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_vessels_are_thin_connected_trees():
    _, labels = make_vessels(60, image_size=48, max_vessels=2, seed=0)
    assert set(np.unique(labels)) == {0, 1}
    share = labels.mean(axis=(1, 2))
    assert np.all(share > 0) and 0.02 < share.mean() < 0.2
    # 1-3 pixels wide: a vessel pixel is at most 2 pixels from the background (crossings aside).
    depth = np.concatenate([ndimage.distance_transform_edt(m)[m > 0] for m in labels])
    assert np.median(depth) <= 1.0 and np.percentile(depth, 95) <= 2.0
    # Every branch starts on its parent: no more 8-connected pieces than trees.
    pieces = [ndimage.label(m, structure=np.ones((3, 3)))[1] for m in labels]
    assert max(pieces) <= 2


def test_branching_adds_vessels_and_thin_ones():
    _, straight = make_vessels(40, image_size=48, branch_probability=0.0, seed=5)
    _, branched = make_vessels(40, image_size=48, branch_probability=0.08, seed=5)
    assert branched.mean() > 1.5 * straight.mean()


def test_vessels_are_darker_than_the_background():
    images, labels = make_vessels(30, image_size=32, noise=0.0, seed=2)
    assert images[..., 0][labels == 1].mean() < images[..., 0][labels == 0].mean() - 0.1
