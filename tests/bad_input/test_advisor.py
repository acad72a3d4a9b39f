"""Labels a loss search cannot read: one line naming the problem and the fix."""

import numpy as np
import pytest

from keras_lossopt import tuning

CASES = [
    ("continuous", np.linspace(0.0, 1.0, 30), {}, r"look continuous \(e\.g\. 0\.0344828\).*bin the target"),
    (
        "nan",
        np.array([0.0, 1.0, np.nan, 1.0, 0.0]),
        {},
        r"1 NaN or infinite value\(s\) \(first at index \(2,\)\).*drop",
    ),
    ("one class", np.zeros(20, "int64"), {}, r"single class \(0\).*at least two classes"),
    (
        "fewer than folds",
        np.repeat([0, 1, 2], [20, 20, 2]),
        {"folds": 3},
        r"only 2 samples of class 2, fewer than folds=3: use folds=2 \(or fewer\), or add samples of class 2",
    ),
    ("strings", np.array(["a", "b", "a"]), {}, r"dtype <U1, not numbers.*integers"),
    ("negative", np.array([0, -1, 1, 0]), {}, r"negative values \(e\.g\. -1\).*0\.\.C-1"),
    ("empty", np.array([], "int64"), {}, r"labels are empty"),
]


@pytest.mark.parametrize("name, labels, kwargs, message", CASES, ids=[c[0] for c in CASES])
def test_advise_refuses_unreadable_labels_in_one_line(name, labels, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        tuning.advise(labels, **kwargs)
    assert "\n" not in str(error.value)


def test_folds_check_names_images_for_segmentation():
    masks = np.zeros((6, 4, 4), "int64")
    masks[:5, 0, 0] = 1
    masks[5, 1, 1] = 2
    with pytest.raises(ValueError, match="only 1 images containing class 2, fewer than folds=2"):
        tuning.stratified_folds(masks, 2, task="segmentation")


def _npz(path, y):
    np.savez(path, x=np.random.default_rng(0).normal(size=(len(y), 3)), y=y)
    return str(path)


# The command's own data checks (cli/data.py, before TensorFlow) catch the first three; the folds
# check (tuning.check_labels) the last.
CLI_CASES = [
    ("continuous", np.linspace(0.0, 1.0, 40), [], "found 0.025641 at index 1 (38 non-integer values): the command"),
    ("nan", np.r_[np.zeros(20), np.ones(19), np.nan], [], "hold NaN or infinite values at index 39; drop those"),
    ("one class", np.zeros(40, "int64"), [], "holds a single class ('0'); a classifier needs two or more"),
    (
        "fewer than folds",
        np.repeat([0, 1, 2], [20, 20, 6]),
        ["--folds", "6"],
        "only 5 samples of class 2, fewer than folds=6: use folds=5 (or fewer), or add samples of class 2",
    ),
]


@pytest.mark.parametrize("command", ["advise", "search"])
@pytest.mark.parametrize("name, labels, extra, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_refuses_unreadable_labels_with_exit_status_2(tmp_path, capsys, command, name, labels, extra, message):
    from keras_lossopt.cli.main import main

    data = _npz(tmp_path / "data.npz", labels)
    out = tmp_path / "out"
    arguments = [command, "--data", data, *extra, "--output", str(out)]
    if command == "search":
        arguments += ["--directory", str(tmp_path / "trials"), "--epochs", "1"]
    status = main(arguments)
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("keras-lossopt: error: ")
    assert message in err
    assert not out.exists()


_FIVE = np.arange(100) % 5
_ONE_HOT = np.eye(3, dtype="int64")[np.repeat([0, 1, 2], [120, 60, 20])]
_MULTI_LABEL = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]] * 5)

# `num_classes` and the label layouts: an error naming the argument, or the documented profile.
NUM_CLASSES_CASES = [
    (
        "num_classes below the labels",
        lambda: tuning.advise(_FIVE, num_classes=2),
        r"`num_classes` must be at least the 5",
    ),
    ("num_classes negative", lambda: tuning.advise(_FIVE, num_classes=-1), r"`num_classes` must be >= 2.*=-1"),
    ("num_classes one", lambda: tuning.profile_labels(_FIVE, num_classes=1), r"`num_classes` must be >= 2"),
    ("num_classes not binary", lambda: tuning.profile_labels(_FIVE % 2, "binary", num_classes=3), r"must be 2 for"),
    ("num_classes vs one-hot", lambda: tuning.profile_labels(_ONE_HOT, num_classes=4), r"equal the 3 one-hot columns"),
    ("num_classes vs multi-label", lambda: tuning.profile_labels(_MULTI_LABEL, num_classes=4), r"equal the 3 label"),
    (
        "multi-label rows as multiclass",
        lambda: tuning.advise(_MULTI_LABEL, "multiclass"),
        r"task='multiclass'.*row 0 holds 2 positive labels.*task='multilabel'",
    ),
    ("one-hot of 3 as binary", lambda: tuning.advise(_ONE_HOT, "binary"), r"task='binary'.*needs 2 columns"),
]


@pytest.mark.parametrize("name, action, message", NUM_CLASSES_CASES, ids=[c[0] for c in NUM_CLASSES_CASES])
def test_advise_checks_num_classes_and_label_rows(name, action, message):
    with pytest.raises(ValueError, match=message):
        action()


def test_advise_num_classes_type_is_named():
    with pytest.raises(TypeError, match=r"`num_classes` must be an integer"):
        tuning.advise(_FIVE, num_classes=2.5)


RIGHT_ANSWERS = [
    (
        "num_classes adds absent classes",
        lambda: tuning.profile_labels(_FIVE, num_classes=7),
        "multiclass",
        (20,) * 5 + (0, 0),
    ),
    (
        "0/1 labels of a 4-class task",
        lambda: tuning.profile_labels(_FIVE % 2, num_classes=4),
        "multiclass",
        (60, 40, 0, 0),
    ),
    ("one-hot rows are classes", lambda: tuning.profile_labels(_ONE_HOT), "multiclass", (120, 60, 20)),
    ("one-hot with task", lambda: tuning.profile_labels(_ONE_HOT, "multiclass"), "multiclass", (120, 60, 20)),
    ("one-hot of 2 is binary", lambda: tuning.profile_labels(_ONE_HOT[:180, :2]), "binary", (120, 60)),
    ("multi-label stays multi-label", lambda: tuning.profile_labels(_MULTI_LABEL), "multilabel", (10, 10, 5)),
    (
        "one-hot as multi-label on request",
        lambda: tuning.profile_labels(_ONE_HOT, "multilabel"),
        "multilabel",
        (120, 60, 20),
    ),
]


@pytest.mark.parametrize("name, action, task, counts", RIGHT_ANSWERS, ids=[c[0] for c in RIGHT_ANSWERS])
def test_profile_reads_num_classes_and_one_hot_rows(name, action, task, counts):
    profile = action()
    assert (profile.task, profile.class_counts) == (task, counts)


def test_one_hot_labels_get_the_same_advice_and_folds_as_class_indices():
    indices = np.argmax(_ONE_HOT, axis=1)
    assert tuning.advise(_ONE_HOT).ranked == tuning.advise(indices).ranked
    for (train_a, val_a), (train_b, val_b) in zip(
        tuning.stratified_folds(_ONE_HOT, 3, task="multiclass"), tuning.stratified_folds(indices, 3, task="multiclass")
    ):
        assert train_a.tolist() == train_b.tolist() and val_a.tolist() == val_b.tolist()
