"""MacroF1, ClassRecall and WorstClassRecall against a NumPy float64 reference and scikit-learn."""

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from keras_lossopt.metrics import ClassRecall, MacroF1, WorstClassRecall


def reference_confusion(labels, predicted, num_classes, weight=None):
    weight = np.ones(len(labels)) if weight is None else np.asarray(weight, dtype=np.float64)
    confusion = np.zeros((num_classes, num_classes), dtype=np.float64)
    for t, p, w in zip(labels, predicted, weight):
        confusion[t, p] += w
    return confusion


def reference_scores(labels, predicted, num_classes, weight=None):
    confusion = reference_confusion(labels, predicted, num_classes, weight)
    tp, predicted_count, actual = np.diag(confusion), confusion.sum(0), confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(predicted_count + actual > 0, 2 * tp / (predicted_count + actual), 0.0)
        recall = np.where(actual > 0, tp / actual, np.nan)
    return f1.mean(), recall


def random_batch(rng, n=64, num_classes=5):
    labels = rng.integers(0, num_classes, size=n)
    logits = rng.normal(size=(n, num_classes)) + 2.0 * np.eye(num_classes)[labels] * rng.integers(0, 2, size=(n, 1))
    return labels, logits


def test_macro_f1_matches_numpy_and_sklearn_over_batches(rng):
    metric = MacroF1(num_classes=5)
    all_labels, all_logits = [], []
    for _ in range(3):
        labels, logits = random_batch(rng)
        metric.update_state(labels, logits)
        all_labels.append(labels)
        all_logits.append(logits)
    labels, predicted = np.concatenate(all_labels), np.concatenate(all_logits).argmax(-1)
    expected, _ = reference_scores(labels, predicted, 5)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(f1_score(labels, predicted, average="macro", labels=range(5), zero_division=0))
    # A mean of per-batch F1 scores differs from the accumulated one: we accumulate counts.
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.parametrize("target_form", ["sparse", "sparse_column", "one_hot"])
@pytest.mark.parametrize("prediction_form", ["logits", "probabilities"])
def test_macro_f1_accepts_every_target_and_prediction_form(rng, target_form, prediction_form):
    labels, logits = random_batch(rng, n=40, num_classes=4)
    y_true = {"sparse": labels, "sparse_column": labels[:, None], "one_hot": np.eye(4)[labels]}[target_form]
    y_pred = logits if prediction_form == "logits" else np.asarray(keras.ops.softmax(logits))
    metric = MacroF1(num_classes=4)
    metric.update_state(y_true, y_pred)
    expected, _ = reference_scores(labels, logits.argmax(-1), 4)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_single_unit_uses_threshold(rng, from_logits):
    labels = rng.integers(0, 2, size=50)
    probabilities = rng.uniform(size=(50, 1))
    y_pred = np.log(probabilities / (1 - probabilities)) if from_logits else probabilities
    metric = MacroF1(num_classes=2, from_logits=from_logits, threshold=0.3)
    metric.update_state(labels, y_pred)
    predicted = (probabilities[:, 0] > 0.3).astype(int)
    assert float(metric.result()) == pytest.approx(f1_score(labels, predicted, average="macro"), abs=1e-6)


def test_per_pixel_labels_and_per_sample_weights(rng):
    labels = rng.integers(0, 3, size=(4, 5, 5))
    logits = rng.normal(size=(4, 5, 5, 3))
    weight = np.array([1.0, 0.0, 2.0, 0.5])
    metric = MacroF1(num_classes=3)
    metric.update_state(labels, logits, sample_weight=weight)
    pixel_weight = np.repeat(weight, 25)
    expected, _ = reference_scores(labels.ravel(), logits.argmax(-1).ravel(), 3, pixel_weight)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(
        f1_score(labels.ravel(), logits.argmax(-1).ravel(), average="macro", sample_weight=pixel_weight)
    )


def test_class_recall_and_worst_class_recall(rng):
    labels, logits = random_batch(rng, n=80, num_classes=5)
    predicted = logits.argmax(-1)
    _, recall = reference_scores(labels, predicted, 5)
    sklearn_recall = recall_score(labels, predicted, average=None, labels=range(5), zero_division=0)
    for class_id in range(5):
        metric = ClassRecall(class_id=class_id, num_classes=5)
        metric.update_state(labels, logits)
        assert float(metric.result()) == pytest.approx(recall[class_id], abs=1e-6)
        assert recall[class_id] == pytest.approx(sklearn_recall[class_id])
    worst = WorstClassRecall(num_classes=5)
    worst.update_state(labels, logits)
    assert float(worst.result()) == pytest.approx(np.nanmin(recall), abs=1e-6)


def test_worst_class_recall_skips_classes_without_samples():
    metric = WorstClassRecall(num_classes=4)
    metric.update_state(np.array([0, 0, 1, 1]), np.eye(4)[[0, 0, 1, 3]])
    assert float(metric.result()) == pytest.approx(0.5)  # classes 2 and 3 have no true sample


def test_metrics_train_under_jit_and_survive_save_load(tmp_path, rng):
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.8).astype("int64")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    metrics = [
        MacroF1(num_classes=3, name="f1"),
        ClassRecall(class_id=2, num_classes=3),
        WorstClassRecall(num_classes=3),
    ]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=metrics, jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(x, y))
    assert {"val_f1", "val_recall_class_2", "val_worst_class_recall"} <= set(history.history)
    # The validation F1 is computed over the whole split, not averaged over batches.
    predicted = model.predict(x, verbose=0).argmax(-1)
    expected, _ = reference_scores(y, predicted, 3)
    assert model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)["f1"] == pytest.approx(expected, abs=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    restored_metric = restored.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)["f1"]
    assert restored_metric == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "metric",
    [
        MacroF1(num_classes=7, from_logits=True, threshold=0.2, name="f1x"),
        ClassRecall(class_id=3, num_classes=4, threshold=0.7, name="r3"),
        WorstClassRecall(num_classes=3, from_logits=True, threshold=0.4, name="w"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_config_round_trip(metric):
    config = keras.saving.serialize_keras_object(metric)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MacroF1(num_classes=1), "num_classes"),
        (lambda: MacroF1(num_classes=3, threshold=1.0), "threshold"),
        (lambda: ClassRecall(class_id=3, num_classes=3), "class_id"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="num_classes=3"):
        MacroF1(num_classes=3).update_state(np.array([0, 1]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="binary"):
        MacroF1(num_classes=3).update_state(np.array([0, 1]), np.zeros((2, 1)))
