import numpy as np
import pytest

from keras_lossopt.datasets import LOADERS, available_datasets, load_dataset, load_shapes, make_shapes
from keras_lossopt.datasets.segmentation import SHAPE_KINDS


def test_registered_and_shaped():
    assert "shapes" in available_datasets() and LOADERS["shapes"] is load_shapes
    data = load_dataset("shapes", num_images=40, image_size=32, num_classes=5, seed=3)
    assert data.task == "segmentation" and data.num_classes == 5
    assert data.class_names == ("background", *SHAPE_KINDS[:4])
    assert data.x_train.shape == (28, 32, 32, 3) and data.x_train.dtype == np.float32
    assert data.y_train.shape == (28, 32, 32) and np.issubdtype(data.y_train.dtype, np.integer)
    assert len(data.y_val) == 6 and len(data.y_test) == 6
    assert set(np.unique(data.y_train)) <= set(range(5))


def test_reproducible_by_seed_and_different_across_seeds():
    a = make_shapes(6, image_size=24, seed=7)
    b = make_shapes(6, image_size=24, seed=7)
    c = make_shapes(6, image_size=24, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [0.03, 0.15, 0.4])
def test_foreground_fraction_controls_imbalance(fraction):
    _, labels = make_shapes(60, image_size=48, foreground_fraction=fraction, seed=0)
    share = np.mean(labels > 0)
    assert 0.5 * fraction < share < 1.3 * fraction


def test_class_weights_set_foreground_class_frequencies():
    _, labels = make_shapes(150, image_size=32, num_classes=3, class_weights=[0.9, 0.1], seed=1)
    counts = np.bincount(labels.ravel(), minlength=3)
    assert counts[1] > 4 * counts[2] > 0


def test_foreground_is_brighter_in_its_class_colour_than_background():
    images, labels = make_shapes(30, image_size=32, noise=0.1, seed=2)
    red_circle = images[labels == 1][:, 0].mean()
    background = images[labels == 0][:, 0].mean()
    assert red_circle > background + 0.2
    grey, _ = make_shapes(2, image_size=16, channels=1, seed=2)
    assert grey.shape == (2, 16, 16, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 8}, r"`num_classes` must be <= 6"),
        ({"foreground_fraction": 0.0}, r"`foreground_fraction` must be in \(0, 0.9\]"),
        ({"class_weights": [1.0, 2.0]}, r"one non-negative weight per foreground class \(3\)"),
        ({"channels": 2}, r"`channels` must be 1 or 3"),
        ({"validation_split": 0.5, "test_split": 0.5}, r"validation_split \+ test_split"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_shapes(num_images=10, image_size=16, **kwargs)
