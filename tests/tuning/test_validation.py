"""Stratified folds, fold scoring and racing (tuning.validation)."""

import numpy as np
import pytest

from keras_lossopt.tuning import validation


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_partition_the_samples_and_keep_every_class_in_proportion(folds):
    y = np.repeat(np.arange(4), [40, 23, 7, 5])
    splits = validation.stratified_folds(y, folds, seed=1)
    held = np.concatenate([val for _, val in splits])
    np.testing.assert_array_equal(np.sort(held), np.arange(len(y)))
    for train, val in splits:
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(y)
        for cls, total in enumerate(np.bincount(y)):
            assert np.sum(y[val] == cls) in (total // folds, -(-total // folds))
    sizes = [len(val) for _, val in splits]
    assert max(sizes) - min(sizes) <= 1


def test_folds_depend_only_on_labels_and_seed():
    y = np.repeat([0, 1, 2], [10, 6, 3])
    first = validation.stratified_folds(y, 3, seed=7)
    again = validation.stratified_folds(y.copy(), 3, seed=7)
    other = validation.stratified_folds(y, 3, seed=8)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_segmentation_folds_spread_the_images_holding_the_rarest_class():
    masks = np.zeros((12, 4, 4), "int64")
    masks[:6, 0, 0] = 1  # class 1 common (6 images), class 2 rare (3 images), 3 empty images
    masks[6:9, 1, 1] = 2
    masks[9:, 2, 2] = 1
    key = validation.stratification_key(masks, "segmentation")
    np.testing.assert_array_equal(key, [1] * 6 + [2] * 3 + [1] * 3)
    for _, val in validation.stratified_folds(masks, 3, task="segmentation"):
        assert np.sum(key[val] == 2) == 1


def test_multilabel_key_is_the_rarest_positive_label():
    y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(validation.stratification_key(y, "multilabel"), [0, 1, 2, 3])


def test_cross_validate_averages_folds_and_races_against_the_incumbent():
    splits = [(np.arange(2), np.arange(2, 3))] * 3
    calls = []

    def score(scores):
        def fold(train, val, number):
            calls.append(number)
            return scores[number]

        return fold

    full = validation.cross_validate(score([0.8, 0.7, 0.9]), splits)
    assert full.scores == (0.8, 0.7, 0.9) and not full.pruned
    assert full.score == pytest.approx(0.8) and full.std == pytest.approx(np.std([0.8, 0.7, 0.9]))
    calls.clear()
    raced = validation.cross_validate(score([0.6, 0.7, 0.9]), splits, incumbent=[0.8, 0.7, 0.9], margin=0.05)
    assert calls == [0] and raced.pruned
    # the incumbent's mean plus the paired difference on the fold both ran
    assert raced.score == pytest.approx(0.8 + (0.6 - 0.8))
    calls.clear()
    close = validation.cross_validate(score([0.78, 0.75, 0.9]), splits, incumbent=[0.8, 0.7, 0.9], margin=0.05)
    assert calls == [0, 1, 2] and not close.pruned
    minimized = validation.cross_validate(
        score([1.0, 0.7, 0.9]), splits, incumbent=[0.5, 0.5, 0.5], margin=0.05, direction="min"
    )
    assert minimized.pruned and minimized.score == pytest.approx(0.5 + 0.5)


def test_best_epoch_score_names_missing_metrics():
    assert validation.best_epoch_score({"val_macro_f1": [0.2, 0.5, 0.4]}, "val_macro_f1") == 0.5
    assert validation.best_epoch_score({"val_x": [0.2, np.nan, 0.1]}, "val_x", "min") == 0.1
    with pytest.raises(ValueError, match=r"did not log 'val_auc'.*val_macro_f1"):
        validation.best_epoch_score({"val_macro_f1": [0.1]}, "val_auc")


def test_balanced_weights_make_every_class_weigh_the_same():
    labels = np.repeat([0, 1, 2], [12, 3, 1])
    weights = validation.balanced_weights(labels)
    expected = 16 / (3 * np.array([12.0] * 12 + [3.0] * 3 + [1.0]))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    for cls in range(3):
        assert weights[labels == cls].sum() == pytest.approx(16 / 3, rel=1e-6)
    binary = validation.validation_weights(np.array([[0.0], [0.0], [0.0], [1.0]]), "binary")
    np.testing.assert_allclose(binary, [2 / 3, 2 / 3, 2 / 3, 2.0], rtol=1e-6)
    assert validation.validation_weights(np.zeros((2, 4, 4), "int64"), "segmentation") is None
