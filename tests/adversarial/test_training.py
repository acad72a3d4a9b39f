import json

import keras
import numpy as np
import pytest
from keras import ops

from keras_lossopt.adversarial import (
    AdversarialModel,
    FastGradientMethod,
    NotDifferentiableError,
    ProjectedGradientDescent,
    StrongestAttack,
    default_evaluation_attacks,
    robust_accuracy,
)
from keras_lossopt.losses import FocalLoss
from tests.adversarial.conftest import dense_classifier
from tests.backends import BACKEND, tensorflow_only, to_numpy, value_and_gradient

LOGITS_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_batch(digits, n=64):
    x, y, _, _ = digits
    return x[:n], y[:n], np.linspace(0.2, 1.8, n).astype("float32")


def textbook_fgsm(model, x, y, eps):
    _, gradient = value_and_gradient(lambda t: LOGITS_CE(y, model(t)), x)
    return np.clip(x + eps * np.sign(gradient), 0.0, 1.0)


@pytest.mark.parametrize("method", ["madry", "mixed"])
def test_logged_loss_equals_the_loss_on_textbook_examples(digits, method):
    x, y, weights = small_batch(digits)
    inner = dense_classifier()
    model = AdversarialModel(inner, FastGradientMethod(0.1), method=method, adversarial_weight=0.3)
    model.compile(keras.optimizers.SGD(0.0), LOGITS_CE)
    logged = model.train_on_batch(x, y, sample_weight=weights)
    x_adv = textbook_fgsm(inner, x, y, 0.1)
    adversarial = float(LOGITS_CE(y, inner(x_adv), sample_weight=weights))
    clean = float(LOGITS_CE(y, inner(x), sample_weight=weights))
    expected = adversarial if method == "madry" else 0.7 * clean + 0.3 * adversarial
    np.testing.assert_allclose(logged, expected, rtol=1e-5)


def test_trades_adds_beta_times_the_kl_divergence(digits):
    x, y, weights = small_batch(digits)
    inner = dense_classifier()
    losses = {}
    for beta in (0.0, 6.0):
        model = AdversarialModel(inner, ProjectedGradientDescent(0.1, steps=3, seed=0), method="trades", beta=beta)
        model.compile(keras.optimizers.SGD(0.0), LOGITS_CE)
        losses[beta] = model.train_on_batch(x, y, sample_weight=weights)
    np.testing.assert_allclose(losses[0.0], float(LOGITS_CE(y, inner(x), sample_weight=weights)), rtol=1e-5)
    assert losses[6.0] > losses[0.0] + 1e-4  # the adversary found a positive KL


def test_fast_method_builds_fgsm_with_random_start_and_step_1_25_eps():
    model = AdversarialModel(dense_classifier(), ProjectedGradientDescent(0.2, steps=7, loss="margin"), method="fast")
    fast = model.training_attack
    assert isinstance(fast, FastGradientMethod)
    assert fast.random_start and fast.effective_step_size == pytest.approx(0.25) and fast.loss == "margin"
    given = FastGradientMethod(0.2, random_start=True, step_size=0.2)
    assert AdversarialModel(dense_classifier(), given, method="fast").training_attack is given


# Training-heavy: one method in the JAX and PyTorch subsets, every method in the TensorFlow run
# (test_one_step_equals_keras_own_step_* checks each backend's step against Keras' own).
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "method",
    ["madry", pytest.param("fast", marks=SLOW), pytest.param("mixed", marks=SLOW), pytest.param("trades", marks=SLOW)],
)
def test_every_method_fits_with_jit_sample_weight_and_a_library_loss(digits, method):
    x, y, weights = small_batch(digits, 128)
    model = AdversarialModel(dense_classifier(), ProjectedGradientDescent(0.1, steps=3), method=method, seed=1)
    model.compile("adam", FocalLoss(gamma=2.0, from_logits=True), metrics=["accuracy"], jit_compile=True)
    history = model.fit(x, y, sample_weight=weights, batch_size=32, epochs=2, verbose=0, validation_data=(x, y))
    assert model.jit_compile
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][1] < history.history["loss"][0]


def test_eps_warmup_grows_the_perturbation(digits):
    x, y, _ = small_batch(digits)
    model = AdversarialModel(dense_classifier(), FastGradientMethod(0.2), method="madry", warmup_steps=4)
    model.compile(keras.optimizers.SGD(0.0), LOGITS_CE)
    attack = model.training_attack
    sizes = []
    for step in range(5):
        model.optimizer.iterations.assign(step)
        x_adv = attack.generate(
            model.model, ops.convert_to_tensor(x), ops.convert_to_tensor(y), eps_scale=model._eps_scale()
        )
        sizes.append(float(np.abs(to_numpy(x_adv) - x).max()))
    np.testing.assert_allclose(sizes, [0.05, 0.1, 0.15, 0.2, 0.2], atol=1e-6)


def test_callbacks_and_tf_data_work_as_for_any_model(digits, tmp_path):
    x, y, _ = small_batch(digits, 128)
    model = AdversarialModel(dense_classifier(), FastGradientMethod(0.1, random_start=True), method="fast")
    model.compile("adam", LOGITS_CE, metrics=["accuracy"])
    seen_batches = []
    callbacks = [
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.EarlyStopping("loss", patience=10, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss"),
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen_batches.append(batch)),
    ]
    import tensorflow as tf  # tf.data feeds `fit` on every backend

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(data, epochs=2, verbose=0, callbacks=callbacks, shuffle=False)
    assert seen_batches == [0, 1, 2, 3, 0, 1, 2, 3]  # per-batch callbacks fire per batch
    assert len((tmp_path / "log.csv").read_text().strip().splitlines()) == 3
    assert float(model.optimizer.learning_rate) == pytest.approx(0.00025)
    reloaded = keras.models.load_model(tmp_path / "best.keras")
    assert isinstance(reloaded, AdversarialModel)


def test_wrapper_and_inner_model_save_and_reload_without_custom_objects(digits, tmp_path):
    x, y, _ = small_batch(digits)
    attack = ProjectedGradientDescent(0.15, steps=2, loss="margin", restarts=2, seed=3)
    model = AdversarialModel(
        dense_classifier(), attack, method="trades", beta=3.0, adversarial_weight=0.2, warmup_steps=7, seed=9
    )
    model.compile("adam", FocalLoss(gamma=1.0, from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "wrapper.keras")
    model.model.save(tmp_path / "inner.keras")
    reloaded = keras.models.load_model(tmp_path / "wrapper.keras")
    assert isinstance(reloaded, AdversarialModel)
    assert reloaded.get_config()["attack"] == model.get_config()["attack"]
    for key in ("method", "beta", "adversarial_weight", "warmup_steps", "seed"):
        assert getattr(reloaded, key) == getattr(model, key)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    inner = keras.models.load_model(tmp_path / "inner.keras")
    assert not isinstance(inner, AdversarialModel)
    np.testing.assert_allclose(inner.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    reloaded.fit(x, y, epochs=1, verbose=0)  # training goes on after reloading


def test_config_is_json_with_non_default_values():
    model = AdversarialModel(
        dense_classifier(),
        StrongestAttack(default_evaluation_attacks(0.2, steps=3)),
        method="mixed",
        adversarial_weight=0.8,
        beta=1.0,
        seed=5,
        single_pass=True,
        name="robust",
    )
    config = json.loads(json.dumps(model.get_config()))
    restored = AdversarialModel.from_config(config)
    assert json.loads(json.dumps(restored.get_config())) == config
    assert isinstance(restored.attack, StrongestAttack) and restored.adversarial_weight == 0.8
    assert restored.single_pass is True


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "madri"}, r"`method` must be one of .*Received: method='madri'.*Did you mean 'madry'"),
        ({"adversarial_weight": 1.5}, r"`adversarial_weight` must be in \[0, 1\]. Received: adversarial_weight=1.5"),
        ({"beta": -1.0}, r"`beta` must be >= 0. Received: beta=-1"),
        ({"warmup_steps": -3}, r"`warmup_steps` must be >= 0"),
        ({"attack": "pgd"}, r"`attack` must be an attack object"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    kwargs = {"model": dense_classifier(), "attack": FastGradientMethod(0.1), **kwargs}
    with pytest.raises(ValueError, match=message):
        AdversarialModel(**kwargs)


def test_non_differentiable_model_fails_in_fit_naming_the_layer(digits):
    x, y, _ = small_batch(digits)
    inner = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10), keras.layers.Lambda(keras.ops.stop_gradient, name="frozen")]
    )
    model = AdversarialModel(inner, FastGradientMethod(0.1))
    model.compile("adam", LOGITS_CE)
    with pytest.raises(NotDifferentiableError, match=r"'frozen'"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.slow
def test_fast_and_madry_training_buy_real_robustness(digits):
    """Real numbers: adversarially trained digit classifiers resist PGD far better than clean ones."""
    x, y, x_test, y_test = digits
    eps = 0.1
    results = {}
    for method in ("clean", "fast", "madry"):
        inner = dense_classifier(hidden=64)
        model = inner if method == "clean" else AdversarialModel(inner, ProjectedGradientDescent(eps, steps=5), method)
        model.compile(keras.optimizers.Adam(0.01), LOGITS_CE, metrics=["accuracy"])
        model.fit(x, y, epochs=25, batch_size=64, verbose=0)
        clean = float(np.mean(np.argmax(inner.predict(x_test, verbose=0), 1) == y_test))
        robust = robust_accuracy(inner, x_test, y_test, default_evaluation_attacks(eps, steps=10, seed=0))
        results[method] = (clean, robust)
    assert results["clean"][0] > 0.85
    for method in ("fast", "madry"):
        assert results[method][0] > 0.75, results
        assert results[method][1] > results["clean"][1] + 0.2, results


@pytest.mark.parametrize("method", ["madry", "mixed"])
def test_mirrored_strategy_gives_the_single_device_loss(digits, two_device_strategy, method):
    x, y, weights = small_batch(digits)
    losses = []
    import tensorflow as tf

    for strategy in (two_device_strategy, tf.distribute.get_strategy()):
        with strategy.scope():
            model = AdversarialModel(dense_classifier(), FastGradientMethod(0.1), method=method)
            model.compile(keras.optimizers.SGD(0.0), LOGITS_CE)
        history = model.fit(x, y, sample_weight=weights, batch_size=64, epochs=1, verbose=0)
        losses.append(history.history["loss"][0])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def batchnorm_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(10),
        ]
    )


def reference_trades_step(model, x, x_adv, y, beta, lr, single_pass):
    """One SGD step of TRADES written out by hand (yaodongyu/TRADES trades.py, after the attack).

    The reference calls the model in training mode on x and on x_adv separately; `single_pass`
    writes the concatenated variant for comparison.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        if single_pass:
            logits, logits_adv = tf.split(model(tf.concat([x, x_adv], 0), training=True), 2)
        else:
            logits = model(x, training=True)
            logits_adv = model(x_adv, training=True)
        natural = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        log_p, log_q = tf.nn.log_softmax(logits), tf.nn.log_softmax(logits_adv)
        robust = tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=1))
        loss = natural + beta * robust
    gradients = tape.gradient(loss, model.trainable_variables)
    return [v.numpy() - lr * g.numpy() for v, g in zip(model.trainable_variables, gradients)]


@tensorflow_only  # the hand-written reference is tf.GradientTape code; test_one_step_equals_* run on every backend
@pytest.mark.parametrize("single_pass", [False, True])
def test_trades_with_batchnorm_matches_a_hand_written_reference_step(digits, single_pass):
    x, y, _ = small_batch(digits)
    x_adv = np.clip(x + np.random.default_rng(0).uniform(-0.1, 0.1, x.shape), 0, 1).astype("float32")
    expected = {}
    for variant in (False, True):
        reference = batchnorm_classifier()
        expected[variant] = reference_trades_step(reference, x, x_adv, y, 6.0, 0.1, variant)
    inner = batchnorm_classifier()
    model = AdversarialModel(inner, ProjectedGradientDescent(0.1, steps=2), method="trades", single_pass=single_pass)
    model._adversarial = lambda x_batch, y_batch: ops.convert_to_tensor(x_adv)  # the update alone, for a fixed x_adv
    model.compile(keras.optimizers.SGD(0.1), LOGITS_CE)
    model.train_on_batch(x, y)
    for got, want in zip((v.numpy() for v in inner.trainable_variables), expected[single_pass]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The two variants really differ with BatchNorm, so this test tells them apart.
    kernel_update = expected[False][0] - batchnorm_classifier().trainable_variables[0].numpy()
    gap = np.linalg.norm(expected[False][0] - expected[True][0]) / np.linalg.norm(kernel_update)
    assert gap > 0.01


# --------------------------------------------------------------------- every backend's training step
def inner_model(kind):
    """The same two-layer classifier as a Sequential, a functional or a subclassed model."""
    keras.utils.set_random_seed(0)
    if kind == "sequential":
        return dense_classifier()
    if kind == "functional":
        inputs = keras.Input((64,))
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(10)(hidden))

    class Subclassed(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(32, activation="relu")
            self.out = keras.layers.Dense(10)

        def call(self, x, training=False):
            return self.out(self.hidden(x))

    model = Subclassed()
    model(np.zeros((1, 64), "float32"))
    return model


@pytest.mark.parametrize("method", ["madry", "mixed"])
@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_one_step_equals_keras_own_step_on_the_adversarial_batch(digits, kind, method):
    """The backend's step (its own parameter gradient and optimizer) against Keras' own `fit` step.

    With the attack fixed to `x_adv`, one SGD step of `madry` is Keras' step on `x_adv`, and one of
    `mixed` is Keras' step on `[x; x_adv]` with sample weights `2 (1 - w)` and `2 w`.
    """
    x, y, _ = small_batch(digits, 32)
    x_adv = np.clip(x + np.random.default_rng(1).uniform(-0.1, 0.1, x.shape), 0, 1).astype("float32")
    reference = inner_model(kind)
    reference.compile(keras.optimizers.SGD(0.1), LOGITS_CE)
    if method == "madry":
        reference.train_on_batch(x_adv, y)
    else:
        weights = np.concatenate([np.full(32, 2 * 0.7), np.full(32, 2 * 0.3)]).astype("float32")
        reference.train_on_batch(np.concatenate([x, x_adv]), np.concatenate([y, y]), sample_weight=weights)
    inner = inner_model(kind)
    model = AdversarialModel(inner, FastGradientMethod(0.1), method=method, adversarial_weight=0.3)
    model._adversarial = lambda x_batch, y_batch: ops.convert_to_tensor(x_adv)
    model.compile(keras.optimizers.SGD(0.1), LOGITS_CE, metrics=["accuracy"])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    for got, want in zip(inner.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    moved = inner_model(kind).get_weights()[0]
    assert np.abs(inner.get_weights()[0] - moved).max() > 1e-4  # the step did move the weights
    # The compiled metric is measured on the adversarial batch.
    expected_accuracy = np.mean(np.argmax(to_numpy(inner_model(kind)(x_adv)), axis=1) == y)
    np.testing.assert_allclose(logs["accuracy"], expected_accuracy, atol=1e-6)


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_functional_and_subclassed_models_train_save_and_reload(digits, tmp_path, kind):
    x, y, _ = small_batch(digits)
    model = AdversarialModel(inner_model(kind), ProjectedGradientDescent(0.1, steps=2, random_start=True), seed=2)
    model.compile("adam", LOGITS_CE, metrics=["accuracy"], jit_compile=BACKEND != "torch")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][1] < history.history["loss"][0]
    if kind == "subclassed":
        return  # a subclassed inner model saves only with its own get_config; the wrapper's fit is the point
    model.save(tmp_path / "wrapper.keras")
    reloaded = keras.models.load_model(tmp_path / "wrapper.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
