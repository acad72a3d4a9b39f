"""`keras-lossopt advise`, and `search` ranking trials by folds from the advisor's picks."""

import json

import keras_tuner
import numpy as np

from keras_lossopt.cli import search_report
from keras_lossopt.cli.main import main
from keras_lossopt.cli.paths import REPORT_FILES
from keras_lossopt.cli.recommendation import recommend


def test_advise_prints_the_ranked_table_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "advice"
    status = main(["advise", "--data", "digits-imbalanced", "--output", str(out)])
    stdout = capsys.readouterr().out
    assert status == 0
    assert "| 1 | logit_adjusted | tau=1 |" in stdout
    assert "first pick: logit_adjusted (tau=1)" in stdout
    saved = json.loads((out / "advice.json").read_text())
    counts = saved["profile"]["class_counts"]
    assert counts == [142, 146, 142, 146, 145, 7, 7, 7, 7, 7]  # train + val of the split the command uses
    beta = next(r for r in saved["ranked"] if r["candidate"] == "class_balanced_focal")["parameters"]["beta"]
    assert beta == 145 / 146
    assert "| 1 | logit_adjusted |" in (out / "report.md").read_text()
    assert {p.name for p in out.iterdir()} <= REPORT_FILES


def test_advise_names_text_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    kinds = np.repeat(["owl", "cat", "dog"], [30, 20, 6])
    rows = [f"{a:.3f},{b:.3f},{k}" for (a, b), k in zip(rng.normal(size=(len(kinds), 2)), kinds)]
    (tmp_path / "animals.csv").write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    out = tmp_path / "advice"
    assert main(["advise", "--data", str(tmp_path / "animals.csv"), "--target", "kind", "--output", str(out)]) == 0
    assert "classes: 0 = cat, 1 = dog, 2 = owl" in capsys.readouterr().out  # sorted text order
    assert "Classes: 0 = cat, 1 = dog, 2 = owl." in (out / "report.md").read_text()
    assert json.loads((out / "advice.json").read_text())["dataset"]["class_names"] == ["cat", "dog", "owl"]


def test_advise_runs_again_over_its_own_default_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["advise", "--data", "breast-cancer"]) == 0
    first = (tmp_path / "keras-lossopt-advice" / "advice.json").read_text()
    assert main(["advise", "--data", "breast-cancer"]) == 0, capsys.readouterr().err
    assert (tmp_path / "keras-lossopt-advice" / "advice.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras-lossopt-advice"]  # no staging folder left


def test_search_with_folds_starts_from_the_advice_and_reports_timing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [40, 30, 8])
    x = rng.normal(size=(len(y), 3)).astype("float32")
    x[:, 0] += 2 * y
    np.savez(tmp_path / "points.npz", x=x, y=y)
    out = tmp_path / "report"
    status = main(
        ["search", "--data", str(tmp_path / "points.npz"), "--losses", "crossentropy,logit_adjusted",
         "--folds", "2", "--max-trials", "2", "--epochs", "1", "--directory", str(tmp_path / "trials"),
         "--output", str(out)]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["folds"] == 2
    # the first trials are the advisor's picks for the search's own labels (train + val)
    assert [t["loss"] for t in results["trials"]] == [a["candidate"] for a in results["advice"]["ranked"]]
    assert results["trials"][0]["loss"] == "logit_adjusted"  # 5:1 imbalance: logit adjustment first
    timing = results["timing"]
    assert timing["trials_run"] == 2 and timing["seconds"] > 0 and 1 <= timing["best_found_at"] <= 2
    for row in results["leaderboard"]:
        assert row["folds_run"] in (1.0, 2.0) and row["fold_std"] >= 0
        assert len(row["fold_scores"]) == row["folds_run"]
    # The summary's recommendation is the paired rule over the trials' fold scores, and best_loss.json is its loss.
    board = results["leaderboard"]
    pick = recommend(
        {f"#{r['rank']} {r['loss']}": r["fold_scores"] for r in board},
        ranking={f"#{r['rank']} {r['loss']}": r["val_macro_f1"] for r in board},
    )
    recommended = results["recommended"]
    assert (recommended["label"], recommended["summary"]) == (pick.chosen, pick.describe())
    assert recommended["loss"] == board[recommended["rank"] - 1]["loss"]
    expected_class = {"crossentropy": "SparseCategoricalCrossentropy", "logit_adjusted": "LogitAdjustedLoss"}
    assert results["best_loss"]["class_name"] == expected_class[recommended["loss"]]
    assert f"recommended: trial {pick.describe()}" in stdout
    assert {p.name for p in out.iterdir()} <= REPORT_FILES
    report = (out / "report.md").read_text()
    assert "stratified 2-fold cross-validation" in report and "first reached at trial" in report
    assert "The advisor's picks" in report
    assert f"Decision: {pick.describe()}." in report and "Rule: " in report
    assert "over 2 fold(s)" in stdout or "over 1 fold(s)" in stdout


def _row(rank, loss, fold_scores, score=None):
    return {"rank": rank, "trial": f"{rank:02d}", "loss": loss, "val_macro_f1": score or float(np.mean(fold_scores)),
            "fold_scores": fold_scores, "fold_std": float(np.std(fold_scores)), "folds_run": float(len(fold_scores)),
            "parameters": {}, "learning_rate": 0.003}  # fmt: skip


def test_search_summary_reports_a_tie_of_trials_and_marks_it_in_the_leaderboard():
    objective = keras_tuner.Objective("val_macro_f1", "max")
    board = [
        _row(1, "class_balanced_focal", [0.770, 0.975, 0.988]),
        _row(2, "logit_adjusted", [0.830, 0.930, 0.934]),
        _row(3, "focal", [0.70, 0.72], score=0.75),  # raced out after two folds
        _row(4, "crossentropy", [0.60, 0.62, 0.61]),
    ]
    recommended = search_report.recommend_trial(board, objective)
    assert (recommended["rank"], recommended["loss"], recommended["trial"]) == (2, "logit_adjusted", "02")
    assert recommended["tie"] == ["#1 class_balanced_focal", "#2 logit_adjusted"]
    assert recommended["summary"].startswith(
        "#2 logit_adjusted: a tie within the noise between #1 class_balanced_focal"
    )
    table = search_report.leaderboard_table(board, "val_macro_f1", recommended)
    assert [line.rsplit("|", 2)[-2].strip() for line in table.splitlines()[2:]] == ["tied", "recommended", "", ""]
    # a fixed validation split: one score per trial, no tie can be judged
    single = [{**row, "fold_scores": [], "fold_std": None, "folds_run": None} for row in board]
    best = search_report.recommend_trial(single, objective)
    assert best["rank"] == 1 and best["tie"] is None and "no tie can be judged" in best["summary"]
