import json

import keras
import numpy as np
import pytest

from keras_lossopt.metrics import DiceScore, IoUScore

C = 4


def np_counts(batches, mode="multiclass", threshold=0.5, from_logits=False, ignore_index=None):
    """Global hard TP/FP/FN per class over batches of (y_true, y_pred, sample_weight), in float64."""
    tp = fp = fn = 0.0
    for y_true, y_pred, sample_weight in batches:
        y_pred = np.asarray(y_pred, np.float64)
        if mode == "multiclass":
            labels = np.asarray(y_true)
            if labels.ndim == y_pred.ndim:
                labels = labels.argmax(-1)
            valid = np.ones(labels.shape) if ignore_index is None else (labels != ignore_index).astype(float)
            targets = np.eye(y_pred.shape[-1])[np.where(valid > 0, labels, 0)] * valid[..., None]
            hard = np.eye(y_pred.shape[-1])[y_pred.argmax(-1)]
            weight = valid[..., None]
        else:
            y = np.asarray(y_true, np.float64)
            weight = np.ones_like(y) if ignore_index is None else (y != ignore_index).astype(float)
            targets = np.where(weight > 0, y, 0.0)
            probs = 1 / (1 + np.exp(-y_pred)) if from_logits else y_pred
            hard = (probs > threshold).astype(float)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, np.float64)
            weight = weight * sw.reshape(sw.shape + (1,) * (hard.ndim - sw.ndim))
        axes = tuple(range(hard.ndim - 1))
        tp = tp + (weight * hard * targets).sum(axes)
        fp = fp + (weight * hard * (1 - targets)).sum(axes)
        fn = fn + (weight * (1 - hard) * targets).sum(axes)
    return tp, fp, fn


def np_score(kind, tp, fp, fn, average="macro", include_background=True):
    if not include_background:
        tp, fp, fn = tp[1:], fp[1:], fn[1:]
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    den = tp + fp + fn
    num = 2 * tp if kind == "dice" else tp
    den = den + tp if kind == "dice" else den
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    if average == "macro":
        return np.nanmean(score) if np.any(~np.isnan(score)) else 0.0
    return score


def multiclass_batches(rng, ignore=False, weighted=False, onehot=False):
    batches = []
    for _ in range(3):
        labels = rng.integers(0, C - 1, size=(2, 6, 6))  # class 3 is never a target
        if ignore:
            labels[0, :2] = 255
        probs = rng.dirichlet(np.ones(C), size=(2, 6, 6))
        y_true = np.eye(C)[labels].astype("float32") if onehot else labels
        sw = rng.uniform(0.2, 2.0, size=2) if weighted else None
        batches.append((y_true, probs, sw))
    return batches


@pytest.mark.parametrize("metric_class, kind", [(DiceScore, "dice"), (IoUScore, "iou")])
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(average=None),
        dict(average="micro", include_background=False),
        dict(ignore_index=255, include_background=False, average=None),
    ],
    ids=["macro", "per-class", "micro-no-background", "ignore-per-class"],
)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_multiclass_matches_numpy_over_batches(rng, metric_class, kind, options, weighted):
    batches = multiclass_batches(rng, ignore="ignore_index" in options, weighted=weighted)
    metric = metric_class(num_classes=C, **options)
    for y_true, y_pred, sw in batches:
        metric.update_state(y_true, y_pred, sample_weight=sw)
    tp, fp, fn = np_counts(batches, ignore_index=options.get("ignore_index"))
    expected = np_score(kind, tp, fp, fn, options.get("average", "macro"), options.get("include_background", True))
    np.testing.assert_allclose(np.asarray(metric.result()), expected, rtol=1e-6, equal_nan=True)
    metric.reset_state()
    assert np.all(np.asarray(metric.true_positives) == 0)


def test_onehot_targets_equal_sparse_targets(rng):
    sparse = multiclass_batches(np.random.default_rng(3))
    dense = multiclass_batches(np.random.default_rng(3), onehot=True)
    results = []
    for batches in (sparse, dense):
        metric = IoUScore(num_classes=C, average=None)
        for y_true, y_pred, _ in batches:
            metric.update_state(y_true, y_pred)
        results.append(np.asarray(metric.result()))
    np.testing.assert_allclose(results[0], results[1], equal_nan=True)


@pytest.mark.parametrize("from_logits", [False, True])
def test_multilabel_threshold_and_logits(rng, from_logits):
    batches = []
    for _ in range(2):
        y = rng.integers(0, 2, size=(3, 5, 5, 2)).astype("float32")
        y[0, 0] = 255.0
        z = rng.normal(size=(3, 5, 5, 2))
        batches.append((y, z if from_logits else 1 / (1 + np.exp(-z)), None))
    metric = DiceScore(num_classes=2, mode="multilabel", threshold=0.7, from_logits=from_logits, ignore_index=255)
    for y_true, y_pred, _ in batches:
        metric.update_state(y_true, y_pred)
    tp, fp, fn = np_counts(batches, "multilabel", 0.7, from_logits, 255)
    np.testing.assert_allclose(float(metric.result()), np_score("dice", tp, fp, fn), rtol=1e-6)


def test_usable_in_compile_and_serializable(rng, tmp_path):
    x = rng.normal(size=(8, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=(8, 8, 8))
    inputs = keras.Input((8, 8, 2))
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=[DiceScore(num_classes=3), IoUScore(num_classes=3, include_background=False)],
        jit_compile=True,
    )
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    tp, fp, fn = np_counts([(y, probs, None)])
    assert logs["dice_score"] == pytest.approx(np_score("dice", tp, fp, fn), rel=1e-5)
    assert logs["iou_score"] == pytest.approx(np_score("iou", tp, fp, fn, include_background=False), rel=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)["iou_score"] == pytest.approx(
        logs["iou_score"], rel=1e-6
    )


def test_config_round_trip_and_bad_arguments():
    metric = IoUScore(
        num_classes=5,
        mode="multilabel",
        from_logits=True,
        threshold=0.3,
        ignore_index=9,
        include_background=False,
        average=None,
        name="iou",
    )
    config = json.loads(json.dumps(metric.get_config()))
    assert IoUScore.from_config(config).get_config() == metric.get_config()
    with pytest.raises(ValueError, match=r"`average` must be one of"):
        DiceScore(num_classes=3, average="macr")
    with pytest.raises(ValueError, match=r"`threshold` must be in \[0, 1\]"):
        DiceScore(num_classes=1, mode="binary", threshold=2.0)
    with pytest.raises(ValueError, match=r"num_classes=3.*y_pred.shape=\(2, 4\)"):
        DiceScore(num_classes=3).update_state(np.zeros((2,), np.int64), np.zeros((2, 4), np.float32))
