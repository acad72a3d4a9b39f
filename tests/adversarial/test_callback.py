import copy
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_lossopt.adversarial import (
    AdversarialModel,
    FastGradientMethod,
    ProjectedGradientDescent,
    RobustnessEvaluation,
    StrongestAttack,
    default_evaluation_attacks,
    evaluate_robustness,
    plot_adversarial_grid,
)
from keras_lossopt.datasets import load_digits

LOGITS_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits():
    data = load_digits(seed=1)
    return data.x_train[:400], data.y_train[:400], data.x_val[:96], data.y_val[:96]


def classifier(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(0.01), LOGITS_CE, metrics=["accuracy"])
    return model


def manual_robust_accuracy(model, attack, x, y):
    """Independent count: correct on x and on attack(x)."""
    x_adv = attack(model, x, y)
    clean = np.argmax(model.predict(x, verbose=0), 1) == y
    robust = clean & (np.argmax(model.predict(x_adv, verbose=0), 1) == y)
    return robust.mean(), (clean.sum() - robust.sum()) / clean.sum()


def test_logs_hold_robust_accuracy_that_history_csv_and_early_stopping_see(digits, tmp_path):
    x, y, x_val, y_val = digits
    model = classifier()
    callback = RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val))
    stopper = keras.callbacks.EarlyStopping("val_robust_accuracy", mode="max", patience=20)
    history = model.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        validation_data=(x_val, y_val),
        callbacks=[callback, keras.callbacks.CSVLogger(str(tmp_path / "log.csv")), stopper],
    )
    robust = history.history["val_robust_accuracy"]
    assert len(robust) == 3 and len(history.history["val_attack_success_rate"]) == 3
    expected_robust, expected_success = manual_robust_accuracy(model, FastGradientMethod(0.1), x_val, y_val)
    assert robust[-1] == pytest.approx(expected_robust)
    assert history.history["val_attack_success_rate"][-1] == pytest.approx(expected_success)
    assert 0.0 < robust[-1] < history.history["val_accuracy"][-1]
    header, *rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert "val_robust_accuracy" in header.split(",") and len(rows) == 3
    assert stopper.best == pytest.approx(max(robust))  # EarlyStopping monitored it


def test_every_n_epochs_evaluates_first_every_nth_and_last_epoch(digits):
    x, y, x_val, y_val = digits
    callback = RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val), every_n_epochs=2)
    classifier().fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    assert [r["epoch"] for r in callback.results] == [0, 1, 3, 4]


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_worst_case_over_attacks_with_a_dataset_and_an_adversarial_model(digits):
    x, y, x_val, y_val = digits
    attacks = default_evaluation_attacks(0.1, steps=5, seed=0)
    model = AdversarialModel(classifier(), FastGradientMethod(0.1), method="fast")
    model.compile("adam", LOGITS_CE)
    import tensorflow as tf  # tf.data feeds the callback on every backend

    data = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(32)
    callback = RobustnessEvaluation(attacks, data)
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert isinstance(callback.attack, StrongestAttack)
    each = [evaluate_robustness(model.model, (x_val, y_val), a)["robust_accuracy"] for a in attacks]
    assert history.history["val_robust_accuracy"][0] <= min(each) + 1e-9


def test_collapse_guard_stops_and_restores_the_best_weights(digits):
    x, y, x_val, y_val = digits
    model = classifier()

    class BreakAtEpoch(keras.callbacks.Callback):
        """Simulates catastrophic overfitting: the network is wiped at the end of epoch 3."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])

    guard = RobustnessEvaluation(ProjectedGradientDescent(0.05, steps=3, seed=0), (x_val, y_val), collapse_fraction=0.5)
    weights_at_epoch = []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights_at_epoch.append(model.get_weights()))
    with pytest.warns(UserWarning, match=r"Robust accuracy collapsed at epoch 3"):
        history = model.fit(x, y, epochs=10, verbose=0, callbacks=[keep, BreakAtEpoch(), guard])
    assert len(history.history["loss"]) == 3 and guard.collapsed_epoch == 2
    assert guard.best > 0.3
    for restored, best in zip(model.get_weights(), weights_at_epoch[guard.best_epoch]):
        np.testing.assert_array_equal(restored, best)
    assert manual_robust_accuracy(model, ProjectedGradientDescent(0.05, steps=3, seed=0), x_val, y_val)[0] > 0.3


def test_png_grid_of_clean_and_adversarial_examples(digits, tmp_path):
    pytest.importorskip("matplotlib")
    x, y, x_val, y_val = digits
    callback = RobustnessEvaluation(
        FastGradientMethod(0.2), (x_val, y_val), plot_path=str(tmp_path / "grids" / "epoch_{epoch:02d}.png")
    )
    classifier().fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    for epoch in (1, 2):
        data = (tmp_path / "grids" / f"epoch_{epoch:02d}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_config_deepcopy_and_bad_arguments(digits):
    _, _, x_val, y_val = digits
    callback = RobustnessEvaluation(
        ProjectedGradientDescent(0.2, steps=3),
        (x_val, y_val),
        every_n_epochs=3,
        batch_size=17,
        max_samples=50,
        prefix="holdout_",
        collapse_fraction=0.4,
        collapse_min_best=0.2,
        restore_best_weights=False,
        plot_path="x_{epoch}.png",
        plot_samples=5,
        verbose=1,
    )
    config = callback.get_config()
    clone = RobustnessEvaluation.from_config(config)
    assert {k: v for k, v in clone.get_config().items() if k != "validation_data"} == {
        k: v for k, v in config.items() if k != "validation_data"
    }
    copied = copy.deepcopy(callback)
    assert copied.get_config()["collapse_fraction"] == 0.4 and copied.attack is not callback.attack
    with pytest.raises(ValueError, match=r"`every_n_epochs` must be >= 1"):
        RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val), every_n_epochs=0)
    with pytest.raises(ValueError, match=r"`collapse_fraction` must be in \(0, 1\)"):
        RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val), collapse_fraction=1.5)
    with pytest.raises(ValueError, match=r"untargeted"):
        RobustnessEvaluation(FastGradientMethod(0.1, targeted=True), (x_val, y_val))


def test_max_samples_and_prefix(digits):
    x, y, x_val, y_val = digits
    model = classifier()
    callback = RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val), max_samples=40, prefix="holdout_")
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.results[0]["num_samples"] == 40
    expected, _ = manual_robust_accuracy(model, FastGradientMethod(0.1), x_val[:40], y_val[:40])
    assert history.history["holdout_robust_accuracy"][0] == pytest.approx(expected)


@pytest.mark.slow  # AutoAttack-sized work: the TensorFlow run covers it, the JAX and PyTorch subsets stay lean
def test_keras_tuner_can_optimize_robust_accuracy(digits, tmp_path):
    keras_tuner = pytest.importorskip("keras_tuner")
    x, y, x_val, y_val = digits

    def build(hp):
        hidden = keras.layers.Dense(hp.Choice("units", [8, 16]), activation="relu")
        model = keras.Sequential([keras.Input((64,)), hidden, keras.layers.Dense(10)])
        model.compile("adam", LOGITS_CE)
        return model

    tuner = keras_tuner.RandomSearch(
        build,
        objective=keras_tuner.Objective("val_robust_accuracy", "max"),
        max_trials=2,
        seed=0,
        directory=str(tmp_path),
        project_name="robust",
    )
    callback = RobustnessEvaluation(FastGradientMethod(0.1), (x_val, y_val))
    tuner.search(x, y, epochs=2, verbose=0, callbacks=[callback])
    trials = tuner.oracle.get_best_trials(2)
    assert len(trials) == 2 and all(0.0 < t.score <= 1.0 for t in trials)
    assert trials[0].score >= trials[1].score


# A config written when the callback lived in keras_lossopt.callbacks.robustness.
OLD_CONFIG = {
    "module": "keras_lossopt.callbacks.robustness",
    "class_name": "RobustnessEvaluation",
    "config": {
        "attack": {
            "module": "keras_lossopt.adversarial.attacks",
            "class_name": "FastGradientMethod",
            "config": {"eps": 0.1, "norm": "linf", "targeted": False, "clip": [0.0, 1.0], "loss": None},
            "registered_name": "keras_lossopt>FastGradientMethod",
        },
        "validation_data": None,
        "every_n_epochs": 2,
        "collapse_fraction": 0.5,
    },
    "registered_name": "keras_lossopt>RobustnessEvaluation",
}


def test_callbacks_package_re_exports_the_same_class_under_the_same_registered_name():
    import keras_lossopt.callbacks as callbacks

    assert callbacks.RobustnessEvaluation is RobustnessEvaluation
    assert callbacks.plot_adversarial_grid is plot_adversarial_grid
    assert keras.saving.get_registered_name(RobustnessEvaluation) == "keras_lossopt>RobustnessEvaluation"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(OLD_CONFIG)))
    assert isinstance(restored, RobustnessEvaluation)
    assert restored.every_n_epochs == 2 and restored.collapse_fraction == 0.5 and restored.attack.eps == 0.1


def test_callbacks_reexport_robustness_evaluation_lazily_and_registered():
    # `keras_lossopt.callbacks` reaches the attacks only through its lazy re-export (the layering
    # test keeps adversarial imports inside functions there). Once Keras is loaded, importing
    # keras_lossopt registers every serializable class, the attacks included, so that saved models
    # load without custom_objects: the adversarial package is then loaded by that registration.
    code = (
        "import keras, keras_lossopt.callbacks as c; "
        "assert 'RobustnessEvaluation' in dir(c); "
        "assert c.RobustnessEvaluation.__module__ == 'keras_lossopt.adversarial.callback'; "
        "assert keras.saving.get_registered_object('keras_lossopt>RobustnessEvaluation') is c.RobustnessEvaluation"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
