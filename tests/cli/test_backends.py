"""The command on the backend of `KERAS_BACKEND`: a tiny compare and a one-trial search report which ran."""

import json

import keras

from keras_lossopt.cli.main import main

TINY = ["--epochs", "1", "--folds", "1"]


def test_compare_runs_on_this_backend_and_reports_it(tmp_path, capsys):
    out = tmp_path / "report"
    status = main(["compare", "--losses", "crossentropy,focal", "--seeds", "1", *TINY, "--output", str(out)])
    stdout = capsys.readouterr().out
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["backend"]["name"] == keras.backend.backend()
    assert results["backend"]["keras"] == keras.__version__
    assert f"backend: {keras.backend.backend()} " in stdout
    assert f"Keras backend: {keras.backend.backend()} " in (out / "report.md").read_text()
    assert all(0 <= run["macro_f1"] <= 1 for run in results["runs"])


def test_search_runs_on_this_backend_and_reports_it(tmp_path, capsys):
    out = tmp_path / "report"
    status = main([
        "search", "--tuner", "random", "--losses", "crossentropy,focal", "--max-trials", "2", *TINY,
        "--directory", str(tmp_path / "search"), "--output", str(out),
    ])  # fmt: skip
    stdout = capsys.readouterr().out
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["backend"]["name"] == keras.backend.backend()
    assert "[trial 2/2]" in stdout
    assert [row["rank"] for row in results["leaderboard"]] == [1, 2]
    assert 0 <= results["best_test_scores"]["macro_f1"] <= 1
    assert f"Keras backend: {keras.backend.backend()} " in (out / "report.md").read_text()
