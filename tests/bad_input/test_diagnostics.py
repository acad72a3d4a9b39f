"""Bad arguments to the checks before training and the cause ranking: errors that name the argument."""

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks import GradientDetector
from keras_lossopt.callbacks.causes import describe_causes, rank_causes
from keras_lossopt.callbacks.pretraining import check_training_setup


@pytest.fixture(scope="module")
def model():
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    return m


X = np.zeros((8, 4), "float32")
Y = np.zeros((8, 2), "float32")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_samples": 0}, ValueError, r"`max_samples` must be >= 1\. Received: max_samples=0"),
        ({"max_samples": 2.5}, TypeError, r"`max_samples` must be an integer"),
        ({"input_scale_limit": -1.0}, ValueError, r"`input_scale_limit` must be > 0\. Received: input_scale_limit=-1"),
        ({"target_scale_limit": float("nan")}, ValueError, r"`target_scale_limit` must be finite"),
        ({"target_scale_limit": "big"}, TypeError, r"`target_scale_limit` must be a number"),
    ],
)
def test_check_training_setup_names_the_bad_argument(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_training_setup(model, X, Y, **kwargs)


def test_check_training_setup_refuses_a_non_model():
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model\. Received: model of type Dense"):
        check_training_setup(keras.layers.Dense(2), X, Y)


def test_check_training_setup_refuses_missing_inputs(model):
    with pytest.raises(ValueError, match=r"`x` must be a batch of inputs.*Received: x=None"):
        check_training_setup(model, None, Y)


def test_check_training_setup_names_both_sample_counts(model):
    with pytest.raises(
        ValueError, match=r"same number of samples\. Received: 8 inputs and 5 targets \(y.shape=\(5, 2\)\)"
    ):
        check_training_setup(model, X, Y[:5])


def test_rank_causes_refuses_an_unknown_kind_and_suggests_one(model):
    with pytest.raises(
        ValueError, match=r"`kind` must be one of .*Received: kind='exploded'.*Did you mean 'exploding'"
    ):
        rank_causes("exploded", model)


def test_describe_causes_limit(model):
    with pytest.raises(ValueError, match=r"`limit` must be >= 1\. Received: limit=0"):
        describe_causes([], limit=0)


def test_training_diagnostics_needs_probe_x_for_probe_y():
    from keras_lossopt.callbacks import TrainingDiagnostics

    with pytest.raises(ValueError, match=r"`probe_y` needs `probe_x`.*Received: probe_x=None"):
        TrainingDiagnostics(probe_y=Y)


def test_training_diagnostics_stall_steps_floor():
    from keras_lossopt.callbacks import TrainingDiagnostics

    with pytest.raises(ValueError, match=r"`stall_steps` must be >= 20\. Received: stall_steps=10"):
        TrainingDiagnostics(stall_steps=10)


def test_a_probe_batch_with_mismatched_targets_fails_when_training_starts(model):
    from keras_lossopt.callbacks import TrainingDiagnostics

    diagnostics = TrainingDiagnostics(probe_x=X, probe_y=Y[:3], on_problem=lambda finding: None)
    diagnostics.set_model(model)
    with pytest.raises(ValueError, match=r"Received: 8 inputs and 3 targets"):
        diagnostics.on_train_begin()


TEXT = np.array([["a", "b", "c", "d"]] * 8)


def test_check_training_setup_names_text_features_and_the_expected_dtype(model):
    with pytest.raises(TypeError, match=r"`x` holds text \(dtype <U1\) but its input expects float32.*StringLookup"):
        check_training_setup(model, TEXT, Y)


def test_check_training_setup_names_text_features_of_a_subclassed_model():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed.compile("sgd", loss="mse")
    with pytest.raises(TypeError, match=r"`x` holds text .* the model's layers compute with numbers"):
        check_training_setup(subclassed, TEXT, Y)


def test_check_training_setup_names_text_in_one_of_several_inputs():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    two.compile("sgd", loss="mse")
    with pytest.raises(TypeError, match=r"`x\[1\]` holds text"):
        check_training_setup(two, [X, TEXT], Y)


def test_check_training_setup_accepts_text_for_a_string_input_model():
    text = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(text)
    model = keras.Model(text, keras.layers.Dense(2)(keras.layers.Flatten()(ids)))
    model.compile("sgd", loss="mse")
    findings = check_training_setup(model, np.array([["a"], ["b"]] * 4), Y)
    assert isinstance(findings, list)


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
)
def test_check_training_setup_refuses_text_labels_for_a_compiled_model(loss):
    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    classifier.compile("sgd", loss=loss)
    with pytest.raises(TypeError, match=r"`y` must hold numbers.*LabelEncoder"):
        check_training_setup(classifier, X, np.array(["cat", "dog"] * 4))


def test_check_training_setup_ignores_text_targets_without_a_loss():
    bare = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert check_training_setup(bare, X, np.array(["cat", "dog"] * 4)) == []


@pytest.mark.parametrize(
    "lr_range, error, match",
    [
        (0.1, TypeError, r"`lr_range` must be \(low, high\).*or None.*Received: lr_range=0\.1"),
        ("1e-3", TypeError, r"`lr_range` must be \(low, high\).*Received: lr_range='1e-3'"),
        ((1e-3,), TypeError, r"Received: lr_range=\(0\.001,\)"),
        ((1e-3, "high"), TypeError, r"Received: lr_range=\(0\.001, 'high'\)"),
        ((1.0, 1e-3), ValueError, r"0 < low < high"),
        ((0.0, 1.0), ValueError, r"0 < low < high"),
        ((1e-6, float("nan")), ValueError, r"0 < low < high"),
    ],
)
def test_training_diagnostics_lr_range_is_named(lr_range, error, match):
    from keras_lossopt.callbacks import TrainingDiagnostics

    with pytest.raises(error, match=match):
        TrainingDiagnostics(lr_range=lr_range)


def test_training_diagnostics_lr_range_none_skips_the_learning_rate_check():
    from keras_lossopt.callbacks import TrainingDiagnostics

    found = {}
    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    classifier.compile(keras.optimizers.SGD(50.0), loss="mse")
    for lr_range in (None, (1e-6, 1.0)):
        diagnostics = TrainingDiagnostics(lr_range=lr_range, on_problem=lambda finding: None)
        assert TrainingDiagnostics.from_config(diagnostics.get_config()).lr_range == diagnostics.lr_range
        classifier.fit(X, Y, epochs=1, verbose=0, callbacks=[diagnostics])
        found[lr_range] = [finding.kind for finding in diagnostics.findings if finding.kind == "learning_rate"]
    assert found == {None: [], (1e-6, 1.0): ["learning_rate"]}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"vanishing_share": 0.0}, ValueError, r"`vanishing_share` must be in \(0, 1\]"),
        ({"vanishing_share": 1.5}, ValueError, r"vanishing_share=1\.5"),
        ({"patience": 0}, ValueError, r"`patience` must be >= 1\. Received: patience=0"),
        ({"growth_window": 2.5}, TypeError, r"`growth_window` must be an integer"),
        ({"vanishing_floor": -1e-7}, ValueError, r"`vanishing_floor` must be > 0"),
        ({"exploding_norm": float("inf")}, ValueError, r"`exploding_norm` must be finite"),
    ],
)
def test_gradient_detector_names_the_bad_argument(kwargs, error, match):
    # The detector runs on recorded data without a monitor, so it checks its own arguments.
    with pytest.raises(error, match=match):
        GradientDetector(["dense"], **kwargs)
