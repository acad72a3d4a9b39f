"""Bad input to the command, the search API and the dataset loaders: one clear error, early.

The command cases run `main(argv)` in-process with TensorFlow's start patched to fail: every
one must end with exit status 2 and one line naming the problem *before* TensorFlow would
start (so before any training), and must leave no report folder behind. One subprocess
checks that a missing file fails without importing NumPy, Keras or TensorFlow at all.
"""

import os
import pathlib
import subprocess
import sys
import time

import keras
import keras_tuner
import numpy as np
import pytest

from keras_lossopt import datasets, tuning
from keras_lossopt.cli import main as main_module
from keras_lossopt.tuning import objectives as tuning_objectives

REPO = pathlib.Path(__file__).resolve().parents[2]


def _csv(rows, header="f1,f2,label"):
    return header + "\n" + "\n".join(rows) + "\n"


def _good_rows(classes=("a", "b", "c"), per_class=8):
    rng = np.random.default_rng(0)
    return [f"{rng.normal():.3f},{rng.normal():.3f},{c}" for c in classes for _ in range(per_class)]


FILES = {
    "good.csv": _csv(_good_rows()),
    "text_feature.csv": _csv([*_good_rows(), "1.0,red,a"]),
    "nan_feature.csv": _csv([*_good_rows()[:2], "0.1,nan,a", *_good_rows()[2:6], "0.3,NaN,b", *_good_rows()[6:]]),
    "empty_cell.csv": _csv([*_good_rows()[:4], "0.5,,a", *_good_rows()[4:]]),
    "inf_feature.csv": _csv([*_good_rows()[:4], "inf,0.2,b", *_good_rows()[4:]]),
    "huge_feature.csv": _csv([*_good_rows(), "1e300,0.2,b"]),
    "nan_label.csv": _csv([*_good_rows()[:3], "0.1,0.2,nan", "0.1,0.3,", *_good_rows()[3:]]),
    "continuous.csv": _csv([f"{i},{i % 3},{0.37 * i + 0.5:.2f}" for i in range(30)], header="f1,f2,price"),
    "many_values.csv": _csv([f"{i},{i % 3},{20 + i}" for i in range(40)], header="f1,f2,age"),
    "one_class.csv": _csv(_good_rows(classes=("a",))),
    "rare_class.csv": _csv([*_good_rows(classes=("a", "b")), "0.1,0.2,c", "0.3,0.1,c"]),
    "ragged.csv": _csv([*_good_rows()[:5], "0.1,a", *_good_rows()[5:]]),
    "repeated_column.csv": _csv(_good_rows(), header="f1,f1,label"),
    "header_only.csv": "f1,f2,label\n",
    "no_header.csv": "14.23,1.71,2.43,0\n" + "\n".join(f"{i}.5,1.{i},2.{i},{i % 2}" for i in range(12)) + "\n",
    "empty.csv": "",
    "only_label.csv": _csv([r.split(",")[2] for r in _good_rows()], header="label"),
    "garbage.npz": "this is not a zip archive",
    "notes.txt": "not data",
    "model.txt": "not a model",
}


def _write_npz_files(folder: pathlib.Path) -> None:
    x = np.random.default_rng(0).normal(size=(30, 3)).astype("float32")
    y = np.arange(30) % 3
    x_nan = x.copy()
    x_nan[[4, 11], 1] = np.nan
    np.savez(folder / "nan_x.npz", x=x_nan, y=y)
    np.savez(folder / "inf_x.npz", x=np.where(np.arange(3) == 2, np.inf, x)[:30], y=y)
    np.savez(folder / "float_labels.npz", x=x, y=y + 0.5)
    np.savez(folder / "nan_labels.npz", x=x, y=np.where(np.arange(30) == 7, np.nan, y.astype(float)))
    np.savez(folder / "skips_class_0.npz", x=x, y=y + 1)
    np.savez(folder / "short_y.npz", x=x, y=y[:20])
    np.savez(folder / "wrong_keys.npz", features=x, labels=y)
    np.savez(folder / "text_x.npz", x=np.array([["a", "b"]] * 30), y=y)
    np.savez(folder / "flat_x.npz", x=x[:, 0], y=y)
    splits = {"x_train": x, "y_train": y, "x_val": x[:0], "y_val": y[:0], "x_test": x, "y_test": y}
    np.savez(folder / "empty_val.npz", **splits)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_command_input")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "latin1.csv").write_bytes("f1,f2,label\n1,2,caf\xe9\n".encode("latin-1"))
    (folder / "folder.csv").mkdir()
    (folder / "not_a_model.keras").mkdir()
    _write_npz_files(folder)
    report = folder / "old-report"
    report.mkdir()
    (report / "results.json").write_text("{}")
    (folder / "my-documents").mkdir()
    (folder / "my-documents" / "thesis.tex").write_text("keep me")
    (folder / "a_file").write_text("")
    return folder


@pytest.fixture
def run(files, monkeypatch, capsys):
    """Runs the command in the files' folder; TensorFlow's start (and all training) must not be reached."""
    monkeypatch.chdir(files)

    def too_late():
        raise AssertionError("the bad input was not found before TensorFlow would start")

    monkeypatch.setattr(main_module, "_start_tensorflow_quietly", too_late)

    def run_command(argv):
        before = set(os.listdir(files))
        status = main_module.main(argv)
        captured = capsys.readouterr()
        assert set(os.listdir(files)) == before, "a bad run left a file or folder behind"
        return status, captured.err

    return run_command


GOOD = ["--data", "good.csv", "--target", "label"]
SEARCH = ["search", *GOOD, "--directory", "trials"]

COMMAND_CASES = [
    # --data and --target
    (["compare", "--data", "missing.csv", "--target", "y"], r"data file not found: missing\.csv"),
    (["compare", "--data", "missing.npz"], r"data file not found: missing\.npz"),
    (["compare", "--data", "folder.csv", "--target", "y"], r"--data folder\.csv is not a file"),
    (["compare", "--data", "notes.txt"], r"unsupported data file 'notes\.txt'"),
    (["compare", "--data", "digts"], r"unknown dataset 'digts'.*did you mean 'digits'\?"),
    (["compare", "--data", "digits", "--target", "label"], r"--target applies to \.csv files"),
    (["compare", "--data", "good.csv"], r"needs --target COLUMN"),
    (["compare", "--data", "nan_x.npz", "--target", "y"], r"--target applies to \.csv files"),
    (["compare", "--data", "good.csv", "--target", "lable"], r"column 'lable' not found.*did you mean 'label'\?"),
    # CSV cells
    (["compare", "--data", "text_feature.csv", "--target", "label"], r"'f2' .* not numeric \('red' at line 26\)"),
    (["compare", "--data", "nan_feature.csv", "--target", "label"], r"column 'f2' .* missing values .* lines 4, 9"),
    (["compare", "--data", "empty_cell.csv", "--target", "label"], r"column 'f2' .* missing values .* line 6;"),
    (["compare", "--data", "inf_feature.csv", "--target", "label"], r"column 'f1' .* infinite .* line 6;"),
    (["compare", "--data", "huge_feature.csv", "--target", "label"], r"column 'f1' .* too large .* line 26"),
    (["compare", "--data", "nan_label.csv", "--target", "label"], r"missing labels \(empty or NaN\) at lines 5, 6"),
    (["compare", "--data", "continuous.csv", "--target", "price"], r"column 'price' .* non-integer numbers .* regress"),
    (["compare", "--data", "many_values.csv", "--target", "age"], r"class '20' has 1 sample.*is this column a class"),
    (["compare", "--data", "one_class.csv", "--target", "label"], r"single class \('a'\)"),
    (["compare", "--data", "rare_class.csv", "--target", "label"], r"class 'c' has 2 sample\(s\); every class needs"),
    (["compare", "--data", "ragged.csv", "--target", "label"], r"line 7 has a different number of fields"),
    (["compare", "--data", "repeated_column.csv", "--target", "label"], r"more than one column named 'f1'"),
    (["compare", "--data", "header_only.csv", "--target", "label"], r"has a header but no rows"),
    (
        ["compare", "--data", "no_header.csv", "--target", "label"],
        r"first line \(14\.23, 1\.71, 2\.43, 0\) looks like data",
    ),
    (["compare", "--data", "empty.csv", "--target", "label"], r"empty\.csv is empty"),
    (["compare", "--data", "only_label.csv", "--target", "label"], r"no feature column besides 'label'"),
    (["compare", "--data", "latin1.csv", "--target", "label"], r"not UTF-8 text"),
    # .npz arrays
    (["compare", "--data", "nan_x.npz"], r"x in nan_x\.npz holds NaN values in samples 4, 11"),
    (["compare", "--data", "inf_x.npz"], r"holds infinite or too large values"),
    (["compare", "--data", "float_labels.npz"], r"must be integer class indices; found 0\.5 at index 0"),
    (["compare", "--data", "nan_labels.npz"], r"NaN or infinite values at index 7"),
    (["compare", "--data", "skips_class_0.npz"], r"skip class 0"),
    (["compare", "--data", "short_y.npz"], r"'x' has 30 samples but 'y' has 20"),
    (["compare", "--data", "wrong_keys.npz"], r"must hold arrays 'x' and 'y'.*\['features', 'labels'\]"),
    (["compare", "--data", "garbage.npz"], r"cannot read garbage\.npz as a NumPy \.npz archive"),
    (["compare", "--data", "text_x.npz"], r"must hold numbers; found dtype <U1"),
    (["compare", "--data", "flat_x.npz"], r"shaped \(samples, features\.\.\.\); found shape \(30,\)"),
    (["compare", "--data", "empty_val.npz"], r"the val split is empty"),
    # the task and the losses
    (["compare", *GOOD, "--task", "binary"], r"--task binary needs labels 0 and 1; found 3 classes"),
    (["compare", *GOOD, "--task", "segmentation"], r"--task segmentation needs one label per pixel"),
    (["compare", *GOOD, "--losses", "focl"], r"Unknown loss candidate 'focl'.*Did you mean 'focal'\?"),
    (["compare", *GOOD, "--losses", "dice"], r"'dice' is a candidate for task='segmentation'"),
    (["compare", *GOOD, "--losses", "focal,focal"], r"names a loss twice"),
    (["compare", *GOOD, "--losses", ","], r"expected comma-separated loss names"),
    # numbers
    (["compare", *GOOD, "--seeds", "0"], r"--seeds: expected a positive integer, got '0'"),
    (["compare", *GOOD, "--seeds", "-2"], r"--seeds: expected a positive integer"),
    (["compare", *GOOD, "--seeds", "1.5"], r"--seeds: expected a positive integer, got '1\.5'"),
    (["compare", *GOOD, "--epochs", "ten"], r"--epochs: expected a positive integer, got 'ten'"),
    (["compare", *GOOD, "--batch-size", "0"], r"--batch-size: expected a positive integer"),
    (["compare", *GOOD, "--learning-rate", "0"], r"--learning-rate: expected a positive finite number"),
    (["compare", *GOOD, "--learning-rate", "nan"], r"--learning-rate: expected a positive finite number"),
    (["compare", *GOOD, "--learning-rate", "inf"], r"--learning-rate: expected a positive finite number"),
    (["compare", *GOOD, "--seed", "-1"], r"--seed: expected an integer from 0 to 2\*\*32 - 1"),
    (["compare", *GOOD, "--seed", str(2**32)], r"--seed: expected an integer from 0 to 2\*\*32 - 1"),
    (["search", *GOOD, "--max-trials", "0"], r"--max-trials: expected a positive integer"),
    (["search", *GOOD, "--tuner", "bayes"], r"--tuner: invalid choice: 'bayes'"),
    (["train", *GOOD], r"invalid choice: 'train'"),
    # paths the run would write to, and the model file
    (["compare", *GOOD, "--output", "a_file"], r"--output a_file is a file"),
    (["compare", *GOOD, "--output", "a_file/report"], r"lies under .*a_file, which is a file"),
    (["compare", *GOOD, "--output", "my-documents"], r"holds files that no .* report writes \('thesis\.tex'\)"),
    (["compare", *GOOD, "--model", "absent.keras"], r"model file not found: absent\.keras"),
    (["compare", *GOOD, "--model", "not_a_model.keras"], r"--model not_a_model\.keras is not a file"),
    (["compare", *GOOD, "--model", "model.txt"], r"--model model\.txt: expected a Keras model file"),
    (["search", *GOOD, "--directory", "a_file"], r"--directory a_file is a file"),
    (["search", *GOOD, "--project-name", "a/b"], r"--project-name: expected a plain folder name"),
    ([*SEARCH, "--output", "trials"], r"--output trials would replace the search --directory"),
    # the searched parts of a search (--space)
    (
        [*SEARCH, "--space", "loss,optimiser"],
        r"--space: unknown part 'optimiser' in 'loss,optimiser'; allowed parts: loss, optimizer, regularization; "
        r"did you mean 'optimizer'\?",
    ),
    ([*SEARCH, "--space", "loss,weights"], r"unknown part 'weights' .*allowed parts: loss, optimizer, regularization$"),
    ([*SEARCH, "--space", "optimizer,regularization"], r"leaves out 'loss': the search always chooses the loss"),
    ([*SEARCH, "--space", "loss,optimizer,loss"], r"--space: 'loss,optimizer,loss' names 'loss' twice"),
    ([*SEARCH, "--space", ", ,"], r"--space: expected comma-separated parts from loss, optimizer, regularization"),
    (["compare", *GOOD, "--space", "loss,optimizer"], r"unrecognized arguments: --space loss,optimizer"),
    # the objective of a search
    ([*SEARCH, "--objective", "val_recall_class_7"], r"'val_recall_class_7' is never logged.*val_macro_f1"),
    ([*SEARCH, "--objective", "val_macro_f"], r"never logged.*Did you mean 'val_macro_f1'\?"),
    ([*SEARCH, "--objective", "val_iou_score"], r"'val_iou_score' is never logged"),
    ([*SEARCH, "--objective", "val_loss"], r"cannot rank trials by 'val_loss'"),
]


@pytest.mark.parametrize(("argv", "message"), COMMAND_CASES, ids=[" ".join(a)[:60] for a, _ in COMMAND_CASES])
def test_the_command_names_the_problem_in_one_line_before_tensorflow_starts(run, argv, message):
    status, err = run(argv)
    assert status == 2
    assert err.startswith("keras-lossopt: error: ") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err


def test_the_good_file_of_the_table_passes_every_check(run):
    """The table's reference input reaches TensorFlow's start: each case above fails for its own reason."""
    with pytest.raises(AssertionError, match="before TensorFlow would start"):
        run(["compare", *GOOD])


def test_a_missing_file_fails_without_importing_numpy_keras_or_tensorflow():
    code = (
        "import sys, time\n"
        "from keras_lossopt.cli.main import main\n"
        "started = time.perf_counter()\n"
        "status = main(['compare', '--data', 'missing.csv', '--target', 'y'])\n"
        "print(status, time.perf_counter() - started, *(m in sys.modules for m in ('numpy', 'keras', 'tensorflow')))\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall = time.perf_counter() - started
    status, seconds, *loaded = done.stdout.split()
    assert (status, *loaded) == ("2", "False", "False", "False"), "NumPy, Keras or TensorFlow was imported"
    assert done.stderr == "keras-lossopt: error: data file not found: missing.csv\n"
    # main() takes about 0.03 s and the process about 0.3 s on a loaded 2-core machine; the bounds leave room
    # for a slower CI machine and still fail if TensorFlow (10 s or more to start) were imported on the way.
    assert float(seconds) < 1.0 and wall < 10.0, (seconds, wall)


def test_tensorflow_logging_respects_an_explicit_user_setting(monkeypatch):
    start = main_module._start_tensorflow_quietly
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    start()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    start()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_held_back_start_up_messages_are_shown_when_the_start_fails(capfd):
    with pytest.raises(ImportError), main_module._stderr_held_back():
        os.write(2, b"libcuda.so: cannot open shared object file\n")
        raise ImportError("no TensorFlow")
    assert "libcuda.so" in capfd.readouterr().err
    with main_module._stderr_held_back():
        os.write(2, b"oneDNN custom operations are on\n")
    assert capfd.readouterr().err == ""


# --- the search API --------------------------------------------------------------------------------------------


def _model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


API_CASES = [
    (lambda: tuning.choose_loss(keras_tuner.HyperParameters(), "regression"), ValueError, r"`task` must be one of"),
    (lambda: tuning.choose_loss(keras_tuner.HyperParameters(), "multiclass", ["focl"]), ValueError, r"'focal'"),
    (lambda: tuning.choose_loss(keras_tuner.HyperParameters(), "multiclass", []), ValueError, r"at least one loss"),
    (
        lambda: tuning.choose_loss(keras_tuner.HyperParameters(), "multiclass", ["focal"], default="dice"),
        ValueError,
        r"`default` must be one of \['focal'\]",
    ),
    (
        lambda: tuning.choose_loss(keras_tuner.HyperParameters(), "multiclass", ["class_balanced_focal"]),
        ValueError,
        r"needs the training class counts",
    ),
    (
        lambda: tuning.resolve_candidates("multiclass", [tuning.LossCandidate("mine", "no_such_loss")]),
        ValueError,
        r"'mine' \(loss 'no_such_loss'\) cannot be built: Unknown loss 'no_such_loss'",
    ),
    (
        lambda: tuning.resolve_candidates("multiclass", [tuning.LossCandidate("f", "focal", {"gamma": -1.0})]),
        ValueError,
        r"'f' \(loss 'focal'\) cannot be built: `gamma` must be >= 0",
    ),
    (lambda: tuning.LossSearchHyperModel("not callable"), ValueError, r"`build_model` must be callable"),
    (lambda: tuning.LossSearchHyperModel(_model, task="regression"), ValueError, r"`task` must be one of"),
    (lambda: tuning.LossSearchHyperModel(_model, candidates=["ldam"]), ValueError, r"need the training class counts"),
    (
        lambda: tuning.LossSearchHyperModel(_model, candidates=["focal"], learning_rate_range=(0.1, 0.01)),
        ValueError,
        r"0 < low < high",
    ),
    (
        lambda: tuning.make_tuner(tuning.LossSearchHyperModel(_model, candidates=["focal"]), "bayes"),
        ValueError,
        r"Did you mean 'bayesian'\?",
    ),
    (
        lambda: tuning.make_tuner(tuning.LossSearchHyperModel(_model, candidates=["focal"]), "random", max_trials=0),
        ValueError,
        r"`max_trials` must be >= 1",
    ),
    (lambda: tuning.objective("val_loss"), ValueError, r"different scales"),
    (lambda: tuning.objective("val_my_score"), ValueError, r"direction='max' or 'min'"),
    (lambda: tuning.objective("val_macro_f1", direction="up"), ValueError, r"`direction` must be one of"),
    (lambda: tuning_objectives.objective_direction("val_macro_f"), ValueError, r"Did you mean 'val_macro_f1'\?"),
    (lambda: tuning_objectives.objective_direction(""), ValueError, r"non-empty metric name"),
    (lambda: tuning.check_search_objective(3), ValueError, r"must be a metric name or a keras_tuner\.Objective"),
    (
        lambda: tuning_objectives.check_logged_objective("val_recall_class_7", ["loss", "val_loss", "val_macro_f1"]),
        ValueError,
        r"'val_recall_class_7' is never logged.*Logged metrics: val_macro_f1\.",
    ),
    (lambda: tuning.class_recall_objective(-1), ValueError, r"`class_id` must be >= 0"),
    (lambda: tuning.segmentation_objective("jaccard"), ValueError, r"`metric` must be one of"),
    (lambda: tuning.Param("gamma", low=2.0, high=1.0), ValueError, r"`low` must be below `high`"),
    (lambda: tuning.Param("gamma", kind="choice"), ValueError, r"needs `values`"),
    (lambda: tuning.Param("gamma", kind="choise", values=(1,)), ValueError, r"Did you mean 'choice'"),
    (
        lambda: tuning.build_loss(tuning.LOSS_CANDIDATES["multiclass"]["ldam"], class_counts=[3, 2], from_logits=False),
        ValueError,
        r"works on logits only",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), API_CASES, ids=[m[:40] for _, _, m in API_CASES])
def test_the_search_api_names_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- the dataset loaders ----------------------------------------------------------------------------------------

DATASET_CASES = [
    ({"name": "digts"}, ValueError, r"`name` must be one of .*Did you mean 'digits'\?"),
    ({"imbalance": 0}, ValueError, r"`imbalance` must be in \(0, 1\]"),
    ({"imbalance": 1.5}, ValueError, r"`imbalance` must be in \(0, 1\]"),
    ({"imbalance": {12: 0.5}}, ValueError, r"`imbalance` names class 12, but the dataset has classes 0\.\.9"),
    ({"imbalance": {1.5: 0.5}}, TypeError, r"`imbalance` must hold integer class indices\. Received: 1\.5"),
    ({"imbalance": {}}, ValueError, r"`imbalance` is an empty mapping"),
    ({"imbalance": 0.1, "minority_classes": [10]}, ValueError, r"`minority_classes` names class 10"),
    ({"imbalance": 0.1, "minority_classes": 5}, TypeError, r"`minority_classes` must be a sequence"),
    ({"imbalance": 0.1, "minority_classes": []}, ValueError, r"`minority_classes` is empty"),
    ({"validation_split": 0.5, "test_split": 0.6}, ValueError, r"must leave samples to train on"),
    ({"test_split": 0.0}, ValueError, r"`test_split` must be in \(0, 1\)"),
    ({"seed": -1}, ValueError, r"`seed` must be >= 0"),
    ({"seed": 1.5}, TypeError, r"`seed` must be an integer"),
    ({"colour": True}, TypeError, r"unexpected keyword argument 'colour'"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), DATASET_CASES, ids=[m[:40] for _, _, m in DATASET_CASES])
def test_the_dataset_loaders_name_the_bad_argument(kwargs, error, message):
    kwargs = {"name": "digits", **kwargs}
    with pytest.raises(error, match=message):
        datasets.load_dataset(kwargs.pop("name"), **kwargs)
