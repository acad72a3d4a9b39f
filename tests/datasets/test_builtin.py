import numpy as np
import pytest

from keras_lossopt.datasets import available_datasets, load_breast_cancer, load_dataset, load_digits, load_mnist


def test_digits_split_is_stratified_disjoint_and_reproducible():
    a, b = load_digits(seed=3), load_digits(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert a.x_train.shape[1:] == (64,) and 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    from sklearn.datasets import load_digits as raw_digits

    every_row = np.concatenate([a.x_train, a.x_val, a.x_test])
    original = (raw_digits().data / 16.0).astype("float32")
    # the splits partition the data: together they hold each original row exactly once
    assert sorted(map(bytes, every_row)) == sorted(map(bytes, original))
    counts = a.class_counts("test")
    assert counts.max() - counts.min() <= 2
    assert not np.array_equal(load_digits(seed=4).y_train, a.y_train)


def test_imbalance_cuts_chosen_classes_in_train_and_val_only():
    balanced, cut = load_digits(seed=0), load_digits(seed=0, imbalance=0.05)
    train = cut.class_counts("train")
    assert np.all(train[:5] == balanced.class_counts("train")[:5])
    np.testing.assert_allclose(train[5:], np.round(0.05 * balanced.class_counts("train")[5:]).clip(1), atol=0)
    assert np.all(cut.class_counts("val")[5:] < cut.class_counts("val")[:5])
    np.testing.assert_array_equal(cut.y_test, balanced.y_test)


def test_imbalance_mapping_and_errors():
    data = load_digits(imbalance={0: 0.1, 3: 0.5})
    base = load_digits()
    assert data.class_counts()[0] == round(0.1 * base.class_counts()[0])
    with pytest.raises(ValueError, match=r"`imbalance` must be in \(0, 1\]"):
        load_digits(imbalance=0.0)
    with pytest.raises(ValueError, match="class 12"):
        load_digits(imbalance={12: 0.5})


def test_mnist_has_real_digits_and_images():
    data = load_mnist()
    assert data.x_train.shape[1:] == (28, 28, 1)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3500, 500, 1000)
    assert 0.05 < data.x_train.mean() < 0.25  # real digits: mostly background


def test_breast_cancer_is_standardized_on_train_only():
    data = load_breast_cancer()
    assert data.task == "binary" and data.num_classes == 2
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert not np.allclose(data.x_test.mean(axis=0), 0.0, atol=1e-3)


def test_load_dataset_by_name_and_unknown_name():
    assert {"digits", "digits-imbalanced", "mnist", "mnist-imbalanced", "breast-cancer"} <= set(available_datasets())
    data = load_dataset("digits-imbalanced", seed=2)
    assert data.name == "digits-imbalanced" and data.class_counts()[9] < data.class_counts()[0] / 10
    with pytest.raises(ValueError, match="Did you mean 'digits'"):
        load_dataset("digts")


def test_train_val_test_indices_are_disjoint_stratified_and_complete():
    from keras_lossopt.datasets import train_val_test_indices

    labels = np.repeat(np.arange(3), [100, 40, 20])
    train, val, test = train_val_test_indices(labels, 0.15, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))
    # 20% of every class goes to test; 15% of the whole (from the rest) to validation.
    np.testing.assert_array_equal(np.bincount(labels[test]), [20, 8, 4])
    np.testing.assert_array_equal(np.bincount(labels[val]), [15, 6, 3])
