"""A tiny classifier trained once per test module on scikit-learn's 8x8 digits."""

import keras
import numpy as np
import pytest

from keras_lossopt.datasets import load_digits


def dense_classifier(num_inputs=64, hidden=32, activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((num_inputs,)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)]
    if activation is not None:
        layers.append(keras.layers.Activation(activation))
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def digits():
    data = load_digits(seed=0)
    return data.x_train[:600], data.y_train[:600], data.x_test[:128], data.y_test[:128]


@pytest.fixture(scope="module")
def trained(digits):
    """A logits model trained on 600 digits (about 90% test accuracy), compiled with a logits loss."""
    x, y, _, _ = digits
    model = dense_classifier()
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained_probs(trained):
    """The same network with a softmax output (probabilities), not compiled."""
    return keras.Sequential([keras.Input((64,)), trained, keras.layers.Softmax()])


def accuracy(model, x, y):
    return float(np.mean(np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1) == y))
