"""Loss shaping on every kind of Keras model: Sequential, functional and subclassed.

For each kind: per-term logs (`loss_<term>`, with and without XLA), a weight schedule,
uncertainty weighting, Dynamic Weight Averaging, GradNorm and a reward term, each checked
against a value computed independently (with a learning rate of 0 where the model must not
move, so an epoch's mean is the loss of the fixed model on the whole data set).
"""

import keras
import numpy as np
import pytest

from keras_lossopt.losses import DiceLoss, FocalLoss
from keras_lossopt.shaping import (
    CompositeLoss,
    DynamicWeightAveraging,
    GradNorm,
    LossWeightScheduler,
    RewardTerm,
    UncertaintyWeighting,
    dwa_weights,
    track_loss_terms,
)
from tests.backends import jit_compile_setting

KINDS = ["sequential", "functional", "subclassed"]
X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = np.arange(16) % 3


class SubclassedClassifier(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def _model(kind):
    keras.utils.set_random_seed(0)
    if kind == "sequential":
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
    if kind == "sequential without input":  # built by fit when it traces the first step
        return keras.Sequential([keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
    if kind == "functional":
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8, activation="tanh")(inputs)))
    return SubclassedClassifier()


def _compiled(kind, loss, learning_rate=0.0, jit_compile=False):
    model = _model(kind)
    # "xla" is the backend's compiler: XLA on TensorFlow and JAX, eager on PyTorch (as Keras' fit runs there).
    model.compile(keras.optimizers.SGD(learning_rate), loss=loss, jit_compile=jit_compile and jit_compile_setting())
    if kind == "subclassed":
        track_loss_terms(model)  # a subclassed model takes the state before it is built (documented)
    return model


def _focal_dice():
    return FocalLoss(from_logits=True) + 0.5 * DiceLoss(from_logits=True)


def _fixed_model_losses(model):
    logits = model.predict(X, verbose=0)
    return float(FocalLoss(from_logits=True)(Y, logits)), float(DiceLoss(from_logits=True)(Y, logits))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("kind", KINDS)
def test_per_term_logs_are_the_unweighted_term_losses(kind, jit_compile):
    loss = _focal_dice()
    model = _compiled(kind, loss, jit_compile=jit_compile)
    if kind != "subclassed":
        track_loss_terms(model)
    history = model.fit(X, Y, batch_size=16, epochs=1, verbose=0).history
    focal, dice = _fixed_model_losses(model)
    assert history["loss_focal"][0] == pytest.approx(focal, rel=1e-5)
    assert history["loss_dice"][0] == pytest.approx(dice, rel=1e-5)
    assert history["loss"][0] == pytest.approx(focal + 0.5 * dice, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_weight_schedule_sets_the_weight_of_each_epoch(kind):
    model = _compiled(kind, _focal_dice())
    scheduler = LossWeightScheduler({"dice": lambda epoch: [0.0, 2.0][epoch]})
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[scheduler]).history
    focal, dice = _fixed_model_losses(model)
    assert history["weight_dice"] == [0.0, 2.0]
    assert history["loss"] == pytest.approx([focal, focal + 2.0 * dice], rel=1e-5)


@pytest.mark.parametrize("kind", [*KINDS, "sequential without input"])
def test_uncertainty_weighting_trains_the_log_variances(kind):
    loss = _focal_dice()
    model = _compiled(kind, loss, learning_rate=0.1)
    if kind == "sequential without input" and keras.backend.backend() == "jax":
        with pytest.raises(
            ValueError, match=r"UncertaintyWeighting on JAX needs a built Sequential model.*keras.Input"
        ):
            UncertaintyWeighting().set_model(model)
        model.build((None, 4))
    if kind == "subclassed" or keras.backend.backend() != "tensorflow":
        callback = UncertaintyWeighting()
        callback.set_model(model)  # before the optimizer is built (documented; JAX and PyTorch's fit builds it first)
    else:
        callback = UncertaintyWeighting()
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[callback]).history
    variances = {term: float(keras.ops.convert_to_numpy(v)) for term, v in loss.state.log_variances.items()}
    assert all(abs(v) > 1e-3 for v in variances.values()), variances
    assert history["log_variance_focal"][-1] == pytest.approx(variances["focal"])
    assert history["weight_dice"][-1] == pytest.approx(np.exp(-variances["dice"]), rel=1e-5)
    assert {v.path.split("/")[-1] for v in model.trainable_variables} >= {"log_variance_focal", "log_variance_dice"}


@pytest.mark.parametrize("kind", [*KINDS, "sequential without input"])
def test_dynamic_weight_averaging_weights_from_the_logged_term_losses(kind):
    model = _compiled(kind, _focal_dice(), learning_rate=0.05)
    history = model.fit(X, Y, batch_size=8, epochs=3, verbose=0, callbacks=[DynamicWeightAveraging()]).history
    rows = [[history["loss_focal"][e], history["loss_dice"][e]] for e in range(2)]
    expected = dwa_weights(rows, temperature=2.0)
    assert [history["weight_focal"][2], history["weight_dice"][2]] == pytest.approx(expected.tolist(), rel=1e-6)
    assert history["weight_focal"][:2] == [1.0, 1.0]


@pytest.mark.parametrize("kind", KINDS)
def test_gradnorm_learns_weights_that_sum_to_the_number_of_terms(kind):
    model = _compiled(kind, _focal_dice(), learning_rate=0.05)
    if kind == "subclassed" and keras.backend.backend() == "tensorflow":
        # JAX and PyTorch's fit builds the model before the callbacks see it; TensorFlow's in the first step.
        with pytest.raises(ValueError, match=r"GradNorm needs the model's layers built.*model\(x\[:1\]\)"):
            model.fit(X, Y, epochs=1, verbose=0, callbacks=[GradNorm()])
        model(X[:1])  # built after its state is attached (a built subclassed model takes no new layers)
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[GradNorm()]).history
    weights = [history["weight_focal"][-1], history["weight_dice"][-1]]
    assert sum(weights) == pytest.approx(2.0, rel=1e-5)
    assert weights[0] != pytest.approx(1.0, abs=1e-4)
    assert history["grad_norm_focal"][-1] > 0


def _mean_top_probability(y_true, y_pred):
    return keras.ops.max(keras.ops.softmax(y_pred), axis=-1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_reward_term_is_subtracted_and_logged(kind):
    loss = CompositeLoss({"focal": FocalLoss(from_logits=True), "confidence": RewardTerm(_mean_top_probability)})
    model = _compiled(kind, loss)
    scheduler = LossWeightScheduler({"confidence": lambda epoch: 0.5})
    history = model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[scheduler]).history
    logits = model.predict(X, verbose=0)
    focal = float(FocalLoss(from_logits=True)(Y, logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    reward = float(np.mean(np.max(shifted / shifted.sum(axis=-1, keepdims=True), axis=-1)))
    assert history["loss_confidence"][0] == pytest.approx(reward, rel=1e-5)
    assert history["loss"][0] == pytest.approx(focal - 0.5 * reward, rel=1e-5)


def test_keras_sequential_still_drops_layers_set_as_attributes():
    """The Keras behaviour `tracking._sequential_state_holder` works around (checked with Keras 3.15).

    When this fails, Keras tracks attribute layers on Sequential models and the adapter can go.
    """
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    holder = keras.layers.Dense(1)
    holder.build((None, 1))
    model.extra = holder
    assert holder.kernel.path not in {v.path for v in model.trainable_variables}


def test_state_hidden_from_training_is_refused_when_training_starts():
    loss = _focal_dice()
    model = _compiled("sequential without input", loss, learning_rate=0.1)
    callback = UncertaintyWeighting()
    if keras.backend.backend() == "jax":  # refused at once there (the state would come out of order)
        with pytest.raises(ValueError, match=r"needs a built Sequential model"):
            callback.set_model(model)
        return
    callback.set_model(model)  # the state now hangs under the first layer (the model is not built)
    model.layers[0].trainable = False  # freezing that layer freezes the log-variances too
    with pytest.raises(ValueError, match=r"not among the model's trainable variables.*keras.Input"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
