"""The loss contract honours the Keras mask of `y_pred` exactly as `keras.losses.Loss` does."""

import keras
import numpy as np
import pytest

from keras_lossopt.losses import (
    ClassBalancedLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    GeneralizedCrossEntropyLoss,
    LovaszSoftmaxLoss,
    PolyLoss,
)
from keras_lossopt.losses._keras_mask import with_keras_mask
from tests.backends import jit_compile_setting

N, T, C, VOCAB = 4, 6, 3, 9
REDUCTIONS = ["sum", "sum_over_batch_size", "mean", "mean_with_sample_weight", "none"]


@pytest.fixture(scope="module")
def padded_batch():
    rng = np.random.default_rng(3)
    tokens = rng.integers(1, VOCAB, size=(N, T))
    lengths = np.array([6, 4, 2, 5])
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0  # padding, masked by Embedding(mask_zero=True)
    labels = rng.integers(0, C, size=(N, T))
    return tokens, labels


def sequence_model():
    inputs = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(
        VOCAB, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(seed=1)
    )(inputs)
    probs = keras.layers.Dense(C, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=2))(h)
    return keras.Model(inputs, probs)


def masked_probs(tokens, seed=0):
    probs = np.random.default_rng(seed).dirichlet(np.ones(C), size=(N, T)).astype("float32")
    # Where Keras keeps the mask depends on the backend (an attribute, or a table on JAX).
    return with_keras_mask(keras.ops.convert_to_tensor(probs), tokens != 0)


def test_masked_sequence_model_matches_keras_categorical_crossentropy(padded_batch):
    tokens, labels = padded_batch
    one_hot = np.eye(C, dtype="float32")[labels]
    model = sequence_model()
    model.compile(loss=keras.losses.CategoricalCrossentropy())
    keras_value = model.evaluate(tokens, one_hot, batch_size=N, verbose=0)
    model.compile(loss=FocalLoss(gamma=0.0))
    ours = model.evaluate(tokens, one_hot, batch_size=N, verbose=0)
    np.testing.assert_allclose(ours, keras_value, rtol=1e-6)
    model.compile(loss=PolyLoss(epsilon=0.0))
    np.testing.assert_allclose(model.evaluate(tokens, labels, batch_size=N, verbose=0), keras_value, rtol=1e-6)
    # The padded steps really are left out: the unmasked mean differs.
    unmasked = keras.losses.CategoricalCrossentropy()(one_hot, model.predict(tokens, verbose=0))
    assert abs(float(unmasked) - keras_value) > 1e-3


def test_padded_targets_do_not_change_the_loss_in_fit(padded_batch):
    tokens, labels = padded_batch
    scrambled = labels.copy()
    scrambled[tokens == 0] = (scrambled[tokens == 0] + 1) % C
    model = sequence_model()
    model.compile(loss=FocalLoss(), jit_compile=True)
    first = model.evaluate(tokens, labels, batch_size=N, verbose=0)
    second = model.evaluate(tokens, scrambled, batch_size=N, verbose=0)
    np.testing.assert_allclose(first, second, rtol=1e-6)


@pytest.mark.parametrize("loss", [FocalLoss(gamma=2.0), DiceCELoss()], ids=["focal", "dice_ce"])
def test_padded_sequence_fit_learns_nothing_from_the_padding(padded_batch, loss):
    """Two fits that differ only in the padded targets end with the same weights; the targets
    of real steps do change them (the mask reaches the gradient, under the backend's compiler)."""
    tokens, labels = padded_batch
    padding_changed, real_changed = labels.copy(), labels.copy()
    padding_changed[tokens == 0] = (padding_changed[tokens == 0] + 1) % C
    real_changed[tokens != 0] = (real_changed[tokens != 0] + 1) % C

    def fitted_weights(targets):
        model = sequence_model()
        model.compile(keras.optimizers.SGD(0.5), loss=loss, jit_compile=jit_compile_setting())
        model.fit(tokens, targets, batch_size=2, epochs=2, shuffle=False, verbose=0)
        return [np.asarray(w) for w in model.get_weights()]

    reference = fitted_weights(labels)
    for got, want in zip(fitted_weights(padding_changed), reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    moved = fitted_weights(real_changed)
    assert max(np.max(np.abs(g - w)) for g, w in zip(moved, reference)) > 1e-3


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_direct_call_reduces_like_keras(padded_batch, reduction, weighted):
    tokens, labels = padded_batch
    one_hot = np.eye(C, dtype="float32")[labels]
    y_pred = masked_probs(tokens)
    per_sample = np.array([1.0, 0.5, 2.0, 0.25], "float32")
    # Keras needs the weight in the shape of the mask; ours also broadcasts a per-sample weight.
    per_step = np.repeat(per_sample[:, None], T, axis=1)
    expected = keras.losses.CategoricalCrossentropy(reduction=reduction)(
        one_hot, y_pred, per_step if weighted else None
    )
    loss = FocalLoss(gamma=0.0, reduction=reduction)
    for sample_weight in [per_step, per_sample] if weighted else [None]:
        got = loss(one_hot, y_pred, sample_weight)
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-7)


def test_keras_mask_and_ignore_index_combine(padded_batch):
    tokens, labels = padded_batch
    labels = labels.copy()
    labels[0, 0] = 255
    y_pred = masked_probs(tokens)
    valid = (tokens != 0) & (labels != 255)
    probs = np.asarray(y_pred, np.float64)
    per_step = -np.log(np.take_along_axis(probs, np.where(valid, labels, 0)[..., None], -1)[..., 0])
    expected = np.sum(np.where(valid, per_step, 0.0)) / valid.sum()
    got = FocalLoss(gamma=0.0, ignore_index=255)(labels, y_pred)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_wrapper_and_compound_losses_pass_the_mask_on(padded_batch):
    tokens, labels = padded_batch
    y_pred = masked_probs(tokens)
    ignored = np.where(tokens != 0, labels, 255)
    plain = keras.ops.convert_to_tensor(np.asarray(y_pred))
    pairs = [
        (
            ClassBalancedLoss(FocalLoss(), class_counts=[5, 3, 2]),
            ClassBalancedLoss(FocalLoss(ignore_index=255), [5, 3, 2]),
        ),
        (GeneralizedCrossEntropyLoss(), GeneralizedCrossEntropyLoss(ignore_index=255)),
        (DiceLoss(), DiceLoss(ignore_index=255)),
        (DiceLoss(per_image=False), DiceLoss(per_image=False, ignore_index=255)),
        (LovaszSoftmaxLoss(), LovaszSoftmaxLoss(ignore_index=255)),
        (LovaszSoftmaxLoss(per_image=True), LovaszSoftmaxLoss(per_image=True, ignore_index=255)),
        (DiceCELoss(), DiceCELoss(ignore_index=255)),
        (DiceCELoss(reduction="none"), DiceCELoss(ignore_index=255, reduction="none")),
    ]
    for masked_loss, ignoring_loss in pairs:
        np.testing.assert_allclose(
            np.asarray(masked_loss(labels, y_pred)),
            np.asarray(ignoring_loss(ignored, plain)),
            rtol=1e-5,
            atol=1e-7,
            err_msg=type(masked_loss).__name__,
        )


def test_compound_passes_the_mask_to_a_keras_child(padded_batch):
    tokens, labels = padded_batch
    one_hot = np.eye(C, dtype="float32")[labels]
    y_pred = masked_probs(tokens)
    with_keras_child = DiceCELoss(cross_entropy=keras.losses.CategoricalCrossentropy())
    ours = DiceCELoss()
    np.testing.assert_allclose(float(with_keras_child(one_hot, y_pred)), float(ours(one_hot, y_pred)), rtol=1e-5)


def test_batch_region_loss_with_reduction_none_is_the_batch_value():
    """Like `keras.losses.Dice(axis=None)`, a batch loss has one value whatever the reduction."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, size=(N, 5, 5))
    probs = rng.dirichlet(np.ones(C), size=(N, 5, 5)).astype("float32")
    none = DiceLoss(per_image=False, reduction="none")(labels, probs)
    assert tuple(none.shape) == ()
    np.testing.assert_allclose(float(none), float(DiceLoss(per_image=False, reduction="sum")(labels, probs)), rtol=1e-6)
    keras_dice = keras.losses.Dice(reduction="none", axis=None)(np.eye(C)[labels], probs)
    assert tuple(keras_dice.shape) == ()
