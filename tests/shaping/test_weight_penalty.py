"""WeightPenalty against Keras' kernel_regularizer in float64: same total loss, gradients and training steps.

Keras adds a `kernel_regularizer`'s value to the total loss outside the compiled loss; the
term adds the same value inside a CompositeLoss. A model with the regularizers and the same
model (same initial weights) with the term must agree to float64 rounding, on every model
kind, with and without XLA; the penalty itself is checked against NumPy.
"""

import keras
import numpy as np
import pytest

from keras_lossopt.shaping import CompositeLoss, LossWeightScheduler, WeightPenalty, track_loss_terms
from tests.backends import float64_available, jit_compile_setting, to_numpy, value_and_variable_gradients

KINDS = ["sequential", "sequential without input", "functional", "subclassed"]
# Powers of two: Keras' L1L2 casts a Python-float strength to the kernel dtype through a float32
# tensor on TensorFlow (3e-3 would become 0.0030000000261), which the term does not do.
L1, L2 = 2.0**-8, 2.0**-6
RNG = np.random.default_rng(7)
X = RNG.normal(size=(12, 4))
Y = np.arange(12) % 3
# JAX computes "float64" in float32 unless jax_enable_x64: there the two models agree to float32 rounding.
EXACT, CLOSE, ATOL = (1e-12, 1e-10, 1e-14) if float64_available() else (1e-5, 1e-5, 1e-7)


@pytest.fixture(autouse=True)
def float64():
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


class Subclassed(keras.Model):
    def __init__(self, regularizer=None):
        super().__init__()
        self.hidden = keras.layers.Dense(5, activation="tanh", kernel_regularizer=regularizer, name="hidden")
        self.out = keras.layers.Dense(3, kernel_regularizer=regularizer, name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def build(kind, regularizer=None):
    keras.utils.set_random_seed(0)
    if kind == "subclassed":
        return Subclassed(regularizer)
    layers = [
        keras.layers.Dense(5, activation="tanh", kernel_regularizer=regularizer, name="hidden"),
        keras.layers.Dense(3, kernel_regularizer=regularizer, name="out"),
    ]
    if kind == "sequential":
        return keras.Sequential([keras.Input((4,)), *layers])
    if kind == "sequential without input":
        return keras.Sequential(layers)
    inputs = keras.Input((4,))
    return keras.Model(inputs, layers[1](layers[0](inputs)))


def crossentropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="ce")


def pair(kind, learning_rate=0.1, jit_compile=False, penalty=None):
    """The model with Keras' regularizers and the same model with the penalty term."""
    regularized = build(kind, keras.regularizers.L1L2(L1, L2))
    jit_compile = jit_compile and jit_compile_setting()  # XLA on TensorFlow and JAX, eager on PyTorch
    regularized.compile(keras.optimizers.SGD(learning_rate), loss=crossentropy(), jit_compile=jit_compile)
    shaped = build(kind)
    loss = CompositeLoss({"ce": crossentropy(), "weight_penalty": penalty or WeightPenalty(l1=L1, l2=L2)})
    shaped.compile(keras.optimizers.SGD(learning_rate), loss=loss, jit_compile=jit_compile)
    track_loss_terms(shaped)  # binds the penalty (a subclassed model takes the state before it is built)
    return regularized, shaped


def trained(model):
    """The trainable weights (a shaped model also holds its term weights)."""
    return [np.asarray(v) for v in model.trainable_variables]


def numpy_penalty(model, l1=L1, l2=L2, layers=("hidden", "out")):
    kernels = [np.asarray(model.get_layer(name).kernel, np.float64) for name in layers]
    return sum(l1 * np.abs(k).sum() + l2 * np.square(k).sum() for k in kernels)


def total_loss_and_gradients(model):
    """The total loss as Keras' `compute_loss` makes it (loss plus regularization losses), and its gradients."""
    return value_and_variable_gradients(
        lambda: model.compute_loss(x=X, y=Y, y_pred=model(X)), model.trainable_variables
    )


@pytest.mark.parametrize("kind", KINDS)
def test_total_loss_and_gradients_equal_kernel_regularizer(kind):
    regularized, shaped = pair(kind)
    regularized(X[:1]), shaped(X[:1])  # build both
    loss_a, grads_a = total_loss_and_gradients(regularized)
    loss_b, grads_b = total_loss_and_gradients(shaped)
    assert loss_b == pytest.approx(loss_a, rel=EXACT)
    assert len(grads_a) == len(grads_b) == 4
    for grad_a, grad_b in zip(grads_a, grads_b):
        np.testing.assert_allclose(grad_b, grad_a, rtol=CLOSE, atol=ATOL)
    ce = float(crossentropy()(Y, shaped(X)))
    assert loss_b - ce == pytest.approx(numpy_penalty(shaped), rel=CLOSE)


@pytest.mark.parametrize(("kind", "jit_compile"), [(k, False) for k in KINDS] + [("functional", True)])
def test_training_steps_and_logs_equal_kernel_regularizer(kind, jit_compile):
    regularized, shaped = pair(kind, jit_compile=jit_compile)
    history_a = regularized.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    history_b = shaped.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert history_b["loss"] == pytest.approx(history_a["loss"], rel=CLOSE)
    for weight_a, weight_b in zip(trained(regularized), trained(shaped)):
        np.testing.assert_allclose(weight_b, weight_a, rtol=CLOSE, atol=ATOL)
    assert "loss_weight_penalty" in history_b and len(history_b["loss_weight_penalty"]) == 2


def test_logged_penalty_is_the_penalty_of_the_fixed_model():
    _, shaped = pair("functional", learning_rate=0.0)
    history = shaped.fit(X, Y, batch_size=4, epochs=1, verbose=0).history
    # PyTorch's logs carry the term mean in float32 (TensorFlow's in float64).
    logged = CLOSE if keras.backend.backend() != "torch" else 1e-6
    assert history["loss_weight_penalty"][0] == pytest.approx(numpy_penalty(shaped), rel=logged)


def test_a_scheduled_penalty_equals_a_regularizer_of_the_scheduled_strength():
    # Epoch 0 with weight 0: plain cross-entropy; epoch 1 with weight 2: Keras' L1L2(2 l1, 2 l2).
    _, shaped = pair("functional")
    plain = build("functional")
    plain.compile(keras.optimizers.SGD(0.1), loss=crossentropy())
    plain.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    doubled = build("functional", keras.regularizers.L1L2(2 * L1, 2 * L2))
    doubled.compile(keras.optimizers.SGD(0.1), loss=crossentropy())
    doubled.set_weights(plain.get_weights())
    doubled.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    scheduler = LossWeightScheduler({"weight_penalty": lambda epoch: [0.0, 2.0][epoch]})
    history = shaped.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[scheduler]).history
    assert history["weight_weight_penalty"] == [0.0, 2.0]
    for weight_a, weight_b in zip(trained(doubled), trained(shaped)):
        np.testing.assert_allclose(weight_b, weight_a, rtol=CLOSE, atol=ATOL)


def test_chosen_layers_only_and_any_reduction_or_sample_weight_gives_the_penalty_once():
    model = build("functional")
    penalty = WeightPenalty(l2=0.5, layers=["out"], reduction="sum").bind(model)
    expected = numpy_penalty(model, 0.0, 0.5, layers=("out",))
    y_pred = model(X)
    assert float(penalty(Y, y_pred, sample_weight=np.linspace(0.0, 3.0, 12))) == pytest.approx(expected, rel=EXACT)
    unreduced = to_numpy(WeightPenalty(l2=0.5, layers=["out"], reduction="none").bind(model)(Y, y_pred))
    np.testing.assert_allclose(unreduced, np.full(12, expected), rtol=EXACT)
    assert [v.path for v in penalty.kernels()] == [model.get_layer("out").kernel.path]


def test_a_frozen_layer_is_not_penalized_as_keras_does():
    regularized, shaped = pair("functional")
    regularized.get_layer("hidden").trainable = False
    shaped.get_layer("hidden").trainable = False
    assert total_loss_and_gradients(shaped)[0] == pytest.approx(total_loss_and_gradients(regularized)[0], rel=EXACT)


def test_the_penalty_survives_save_and_load(tmp_path):
    _, shaped = pair("functional")
    shaped.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "penalized.keras"
    shaped.save(path)
    loaded = keras.models.load_model(path)
    term = loaded.loss.terms["weight_penalty"]
    assert isinstance(term, WeightPenalty) and (term.l1, term.l2, term.layers) == (L1, L2, None)
    track_loss_terms(loaded)
    assert total_loss_and_gradients(loaded)[0] == pytest.approx(total_loss_and_gradients(shaped)[0], rel=EXACT)
    assert WeightPenalty.from_config(term.get_config()).get_config() == term.get_config()
