"""trivial_loss / trivial_accuracy against NumPy float64 references of the best constant prediction."""

import numpy as np
import pytest

from keras_lossopt.callbacks.trivial_baseline import trivial_accuracy, trivial_loss

LABELS = np.array([0, 1, 1, 2, 2, 2, 2, 0])
PRIORS = np.bincount(LABELS, minlength=3) / len(LABELS)
ENTROPY = -np.sum(PRIORS * np.log(PRIORS))


@pytest.mark.parametrize(
    "loss, targets",
    [
        ("sparse_categorical_crossentropy", LABELS),
        ("sparse_categorical_crossentropy", LABELS.reshape(-1, 1)),
        ("categorical_crossentropy", np.eye(3)[LABELS]),
    ],
)
def test_cross_entropy_baseline_is_the_label_entropy(loss, targets):
    assert trivial_loss(loss, targets, 3) == pytest.approx(ENTROPY, rel=1e-5)


def test_from_logits_losses_take_the_priors_as_logits():
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert trivial_loss(loss, LABELS, 3) == pytest.approx(ENTROPY, rel=1e-5)
    binary = keras.losses.BinaryCrossentropy(from_logits=True)
    y = np.array([1.0, 1.0, 1.0, 0.0]).reshape(-1, 1)
    p = 0.75
    assert trivial_loss(binary, y, 1) == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)), rel=1e-5)


def test_regression_baselines_are_the_best_of_mean_and_median():
    y = np.array([1.0, 2.0, 3.0, 100.0]).reshape(-1, 1)
    assert trivial_loss("mse", y, 1) == pytest.approx(np.mean((y - y.mean()) ** 2), rel=1e-5)
    assert trivial_loss("mae", y, 1) == pytest.approx(np.mean(np.abs(y - np.median(y))), rel=1e-5)
    # Targets in the thousands: the baseline is in their units, not near 1.
    big = 2000.0 + 500.0 * np.random.default_rng(0).standard_normal((64, 1))
    assert trivial_loss("mse", big, 1) == pytest.approx(np.var(big), rel=1e-4)


@pytest.mark.parametrize(
    "targets, units",
    [
        (np.array([[0.5], [np.nan]]), 1),  # non-finite targets
        (np.array([0, 5]), 3),  # a label beyond the output units
        (np.zeros((4, 2)), 3),  # targets that do not fit the output
        (np.array([], dtype="float32"), 1),
        (np.array(["a", "b"]), 2),
    ],
)
def test_no_baseline_when_the_targets_do_not_fit(targets, units):
    assert trivial_loss("mse", targets, units) is None


def test_trivial_accuracy_is_the_majority_share():
    assert trivial_accuracy(LABELS, 3) == pytest.approx(0.5)
    assert trivial_accuracy(np.eye(3)[LABELS], 3) == pytest.approx(0.5)
    assert trivial_accuracy(np.array([1.0, 0.0, 0.0, 0.0]).reshape(-1, 1), 1) == pytest.approx(0.75)
    assert trivial_accuracy(np.array([0.3, 2.5]).reshape(-1, 1), 1) is None  # a regression
    assert trivial_accuracy(np.array([[0.2, 0.8], [1.0, 0.0]]), 2) is None  # soft targets
