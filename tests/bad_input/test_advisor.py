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
