"""The keras-lossopt command, run in-process with tiny budgets (and once as the installed script)."""

import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, recall_score

from keras_lossopt import losses, tuning
from keras_lossopt.cli import compare as compare_module
from keras_lossopt.cli.main import main
from keras_lossopt.cli.paths import REPORT_FILES
from keras_lossopt.cli.recommendation import recommend
from keras_lossopt.cli.report import scores
from keras_lossopt.tuning.validation import FoldScores

TINY = ["--seeds", "1", "--epochs", "1", "--folds", "1"]


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def leftovers(folder: pathlib.Path):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_compare_writes_a_complete_report_with_consistent_numbers(tmp_path, capsys):
    out = tmp_path / "report"
    status, stdout, _ = run(
        capsys, "compare", "--losses", "crossentropy,focal", "--seeds", "2", "--epochs", "2", "--folds", "2",
        "--output", str(out),
    )  # fmt: skip
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png",
        "metrics.png",
        "report.md",
        "results.csv",
        "results.json",
    ]
    assert {p.name for p in out.iterdir()} <= REPORT_FILES
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"] == "digits-imbalanced"
    assert [(r["loss"], r["seed"]) for r in results["runs"]] == [
        ("crossentropy", 0),
        ("crossentropy", 1),
        ("focal", 0),
        ("focal", 1),
    ]
    for name in ("crossentropy", "focal"):
        f1 = [r["macro_f1"] for r in results["runs"] if r["loss"] == name]
        assert results["summary"][name]["macro_f1"]["mean"] == pytest.approx(np.mean(f1))
        assert results["summary"][name]["macro_f1"]["std"] == pytest.approx(np.std(f1))
        assert f"{np.mean(f1):.3f} ± {np.std(f1):.3f}" in stdout
    assert all(0 <= r[m] <= 1 for r in results["runs"] for m in ("accuracy", "macro_f1", "worst_class_recall"))
    assert len(results["curves"]["focal"]["val_macro_f1"]) == 2
    # The recommendation comes from 2-fold cross-validation on train+val, never from the test scores.
    recommended = results["recommended"]
    assert recommended["method"].startswith("stratified 2-fold cross-validation")
    estimates = recommended["estimates"]
    assert all(len(e["scores"]) == 2 and e["mean"] == pytest.approx(np.mean(e["scores"])) for e in estimates.values())
    pick = recommend({name: e["scores"] for name, e in estimates.items()})
    assert recommended["loss"] == pick.chosen and recommended["decision"]["summary"] == pick.describe()
    assert f"recommended: {pick.describe()}" in stdout
    # Each loss in the report is loadable, and the CSV repeats the JSON runs.
    assert isinstance(losses.get(results["losses"]["focal"]), losses.FocalLoss)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("loss,seed,accuracy,macro_f1,worst_class_recall")
    assert len(csv_lines) == 5
    assert "| focal |" in (out / "report.md").read_text()
    assert "folds that weigh every class the same" in (out / "report.md").read_text()
    assert leftovers(tmp_path) == []


def test_version_and_help(capsys):
    from importlib import metadata

    import keras_lossopt

    status, stdout, _ = run(capsys, "--version")
    assert status == 0 and stdout == f"keras-lossopt {metadata.version('keras-lossopt')}\n"
    assert metadata.version("keras-lossopt") == keras_lossopt.__version__  # the installed tree is this one
    status, stdout, _ = run(capsys, "compare", "--help")
    assert status == 0
    assert "required with a .csv file" in " ".join(stdout.split())


def test_scores_match_scikit_learn(rng):
    labels = rng.integers(0, 4, size=200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[labels]
    predicted = logits.argmax(-1)
    got = scores("multiclass", labels, logits, 4)
    assert got["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert got["worst_class_recall"] == pytest.approx(recall_score(labels, predicted, average=None).min())
    assert got["accuracy"] == pytest.approx(np.mean(labels == predicted))
    binary = scores("binary", labels[:, None] % 2, logits[:, :1], 2)
    assert binary["macro_f1"] == pytest.approx(f1_score(labels % 2, (logits[:, 0] > 0).astype(int), average="macro"))
    pixels = rng.integers(0, 3, size=(2, 6, 6))
    pixel_logits = rng.normal(size=(2, 6, 6, 3)) + 1.0 * np.eye(3)[pixels]
    seg = scores("segmentation", pixels, pixel_logits, 3)
    expected_iou = jaccard_score(pixels.ravel(), pixel_logits.argmax(-1).ravel(), average="macro")
    assert seg["mean_iou"] == pytest.approx(expected_iou)


def test_compare_reports_a_tie_inside_the_noise_with_both_losses_and_the_rule(tmp_path, capsys, monkeypatch):
    # Constructed fold scores (the training is real, the cross-validation is replaced): the case of issue 19,
    # class-balanced focal ahead on the mean with twice logit adjustment's spread, crossentropy far behind.
    folds = {
        "crossentropy": (0.60, 0.62, 0.61),
        "class_balanced_focal": (0.770, 0.975, 0.988),
        "logit_adjusted": (0.830, 0.930, 0.934),
    }

    in_order = iter(folds.values())  # compare cross-validates the losses in the order given

    def constructed(make_model, loss, *args, **kwargs):
        return FoldScores(next(in_order), 3)

    monkeypatch.setattr(compare_module, "cross_validate_loss", constructed)
    figures = {}
    for plot in ("plot_metrics", "plot_curves"):
        real_plot = getattr(compare_module.report, plot)

        def spy(path, *args, real_plot=real_plot, **kwargs):
            figures[path.name] = kwargs
            return real_plot(path, *args, **kwargs)

        monkeypatch.setattr(compare_module.report, plot, spy)
    out = tmp_path / "tie"
    status, stdout, err = run(
        capsys, "compare", "--losses", ",".join(folds), "--seeds", "1", "--epochs", "1", "--folds", "3",
        "--output", str(out),
    )  # fmt: skip
    assert status == 0, err
    decision = json.loads((out / "results.json").read_text())["recommended"]["decision"]
    assert decision["loss"] == "logit_adjusted" and decision["leader"] == "class_balanced_focal"
    assert decision["tie"] == ["class_balanced_focal", "logit_adjusted"]
    line = next(line for line in stdout.splitlines() if line.startswith("recommended: "))
    assert line.startswith(
        "recommended: logit_adjusted: a tie within the noise between class_balanced_focal (0.9110 ± "
    )
    assert "and logit_adjusted (0.8980 ± 0.0481)" in line and "lowest spread over folds" in line
    assert "crossentropy" not in line
    assert "rule: paired over the same folds, a loss whose mean shortfall" in stdout
    text = (out / "report.md").read_text()
    assert "Recommended: `logit_adjusted`" in text and "Decision: logit_adjusted: a tie within the noise" in text
    assert "Rule: paired over the same folds" in text
    assert "| logit_adjusted | 0.8980 ± 0.0481 |" in text and text.count("| tied |") == 1
    assert "| crossentropy | 0.6100 ± 0.0082 |" in text
    # the figures mark the same decision, and the curves say which seeds they average
    assert figures["metrics.png"] == {"recommended": "logit_adjusted", "tied": decision["tie"]}
    assert figures["curves.png"] == {"seeds": [0], "recommended": "logit_adjusted"}


def test_compare_on_a_binary_dataset(tmp_path, capsys):
    out = str(tmp_path / "r")
    status, _, _ = run(
        capsys, "compare", "--data", "breast-cancer", "--losses", "crossentropy,poly1", "--seeds", "2",
        "--epochs", "1", "--folds", "1", "--output", out,
    )  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["dataset"]["task"] == "binary"
    # --folds 1: each seed's best validation epoch, the losses paired over the seeds
    recommended = results["recommended"]
    assert all(len(e["scores"]) == 2 for e in recommended["estimates"].values())
    assert recommended["decision"]["paired_over"] == "2 seeds"
    pick = recommend({name: e["scores"] for name, e in recommended["estimates"].items()}, units="seeds")
    assert recommended["loss"] == pick.chosen
    assert results["losses"]["poly1"]["config"]["mode"] == "binary"


def test_compare_on_user_csv_and_npz_files_and_a_user_model(tmp_path, capsys, rng):
    x = rng.normal(size=(90, 3)).astype("float32")
    names = np.array(["cat", "dog", "owl"])[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.7).astype(int)]
    csv_path = tmp_path / "animals.csv"
    csv_path.write_text("a,b,kind,c\n" + "\n".join(f"{r[0]},{r[1]},{n},{r[2]}" for r, n in zip(x, names)) + "\n")
    status, stdout, err = run(
        capsys, "compare", "--data", str(csv_path), "--target", "kind", "--losses", "focal", *TINY,
        "--output", str(tmp_path / "csv-report"),
    )  # fmt: skip
    assert status == 0, err
    assert "animals (multiclass, 3 classes, input (3,))" in stdout
    # Text labels: the class indices of the tables get their names, and the counts say whose they are.
    assert "classes: 0 = cat, 1 = dog, 2 = owl" in stdout
    saved = json.loads((tmp_path / "csv-report" / "results.json").read_text())["dataset"]
    assert saved["class_names"] == ["cat", "dog", "owl"]
    cat, dog, owl = saved["train_class_counts"]
    assert (
        f"training class counts cat: {cat}, dog: {dog}, owl: {owl}."
        in (tmp_path / "csv-report" / "report.md").read_text()
    )

    npz_path = tmp_path / "points.npz"
    np.savez(npz_path, x=x, y=(x[:, 0] > 0).astype("int64"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(1)])
    model.save(tmp_path / "mine.keras")
    status, stdout, err = run(
        capsys, "compare", "--data", str(npz_path), "--model", str(tmp_path / "mine.keras"), "--losses", "focal",
        *TINY, "--output", str(tmp_path / "npz-report"),
    )  # fmt: skip
    assert status == 0, err
    assert "user model mine.keras" in stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--data", "no-such-set"], "unknown dataset 'no-such-set'"),
        (["--data", "missing.csv", "--target", "y"], "data file not found: missing.csv"),
        (["--data", "table.csv", "--target", "label"], "column 'label' not found"),
        (["--data", "table.csv", "--target", "kind"], "column 'b' of table.csv is not numeric"),
        (["--losses", "focl"], "Did you mean 'focal'"),
        (["--data", "halves.npz"], "labels in halves.npz:y must be integer class indices"),
        (["--task", "binary"], "--task binary needs labels 0 and 1; found 10 classes"),
        (["--task", "segmentation"], "--task segmentation needs one label per pixel"),
        (["--model", "absent.keras"], "model file not found: absent.keras"),
        (["--model", "wrong.keras"], "outputs shape (4,)"),
        (["--epochs", "0"], "expected a positive integer"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "table.csv").write_text("a,b,kind\n1,x,0\n2,y,1\n")
    np.savez(tmp_path / "halves.npz", x=np.zeros((4, 2)), y=np.array([0.0, 0.5, 1.0, 1.0]))
    keras.Sequential([keras.Input((64,)), keras.layers.Dense(4)]).save(tmp_path / "wrong.keras")
    status, _, err = run(capsys, "compare", *arguments, "--folds", "1", "--output", "out")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("keras-lossopt: error: ")
    assert message in err
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_compare_leaves_no_report(tmp_path, capsys, monkeypatch):
    calls = []
    real = compare_module.train_once

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "train_once", interrupted)
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')
    status, _, err = run(capsys, "compare", "--losses", "crossentropy,focal", *TINY, "--output", str(out))
    assert status == 130
    assert "interrupted" in err
    # The previous report is untouched; no half-written folder appears beside it.
    assert json.loads((out / "results.json").read_text()) == {"old": True}
    assert leftovers(tmp_path) == []


def test_search_ranks_trials_writes_a_loadable_best_loss_and_resumes(tmp_path, capsys):
    directory, out = tmp_path / "search", tmp_path / "report"
    common = ["search", "--tuner", "random", "--losses", "crossentropy,focal,poly1", "--epochs", "2", "--folds", "1"]
    status, stdout, err = run(capsys, *common, "--max-trials", "2", "--directory", str(directory), "--output", str(out))
    assert status == 0, err
    assert "[trial 2/2]" in stdout
    results = json.loads((out / "results.json").read_text())
    board = results["leaderboard"]
    assert [row["rank"] for row in board] == [1, 2]
    assert board[0]["val_macro_f1"] >= board[1]["val_macro_f1"]
    best = losses.get(json.loads((out / "best_loss.json").read_text()))
    assert isinstance(best, keras.losses.Loss)
    assert type(best).__name__ == {"crossentropy": "SparseCategoricalCrossentropy", "focal": "FocalLoss",
                                   "poly1": "PolyLoss"}[board[0]["loss"]]  # fmt: skip
    assert 0 <= results["best_test_scores"]["macro_f1"] <= 1
    assert {p.name for p in out.iterdir()} <= REPORT_FILES

    status, stdout, err = run(capsys, *common, "--max-trials", "3", "--directory", str(directory), "--output", str(out))
    assert status == 0, err
    assert "2 finished trials kept" in stdout
    assert "[trial 3/3]" in stdout and "[trial 1/" not in stdout
    resumed = json.loads((out / "results.json").read_text())["leaderboard"]
    assert len(resumed) == 3
    assert {(r["trial"], r["val_macro_f1"]) for r in board} <= {(r["trial"], r["val_macro_f1"]) for r in resumed}


def test_search_refuses_val_loss(tmp_path, capsys):
    status, _, err = run(
        capsys, "search", "--objective", "val_loss", "--directory", str(tmp_path / "s"), "--output", str(tmp_path / "o")
    )
    assert status == 2
    assert "cannot rank trials by 'val_loss'" in err
    assert not (tmp_path / "o").exists()


def test_installed_console_script(tmp_path):
    script = pathlib.Path(sys.executable).with_name("keras-lossopt")
    assert script.exists(), "the package must be installed (pip install -e .)"
    ok = subprocess.run(
        [
            str(script),
            "compare",
            "--data",
            "breast-cancer",
            "--losses",
            "focal",
            *TINY,
            "--output",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "r" / "results.json").exists()
    bad = subprocess.run([str(script), "compare", "--data", "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("keras-lossopt: error: unknown dataset 'nope'")


def test_compare_on_per_pixel_labels_uses_a_unet_and_reports_iou(tmp_path, capsys, rng):
    x = rng.uniform(size=(30, 8, 8, 1)).astype("float32")
    y = (x[..., 0] > 0.6).astype("int64") + (x[..., 0] > 0.9).astype("int64")
    np.savez(tmp_path / "masks.npz", x=x, y=y)
    out = tmp_path / "seg"
    status, stdout, err = run(
        capsys,
        "compare",
        "--data",
        str(tmp_path / "masks.npz"),
        "--losses",
        "crossentropy,dice",
        *TINY,
        "--output",
        str(out),
    )
    assert status == 0, err
    assert "model: small U-Net" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["task"] == "segmentation"
    assert set(results["curves"]["dice"]) == {"loss", "val_iou_score"}
    assert all(0 <= r["mean_iou"] <= 1 for r in results["runs"])


def test_compare_on_the_builtin_shapes_segmentation_set(tmp_path, capsys):
    out = tmp_path / "shapes"
    status, stdout, err = run(capsys, "compare", "--data", "shapes", "--losses", "dice_ce", *TINY, "--output", str(out))
    assert status == 0, err
    assert "shapes (segmentation, 4 classes" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "small U-Net"
    assert 0 <= results["runs"][0]["mean_iou"] <= 1


@pytest.mark.slow
def test_a_joint_search_reports_the_whole_configuration_and_what_each_part_adds(tmp_path, capsys, rng):
    x = rng.normal(size=(60, 3)).astype("float32")
    y = (x[:, 0] > 0.3).astype("int64") + (x[:, 1] > 0.8).astype("int64")
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    directory, out = tmp_path / "search", tmp_path / "report"
    common = ["search", "--data", str(tmp_path / "tiny.npz"), "--tuner", "random", "--losses", "crossentropy,focal",
              "--epochs", "1", "--batch-size", "32", "--folds", "2", "--directory", str(directory)]  # fmt: skip
    space = ["--space", "regularization,loss,optimizer"]
    status, stdout, err = run(capsys, *common, *space, "--max-trials", "2", "--output", str(out))
    assert status == 0, err
    assert "searched: loss, optimizer, regularization" in stdout
    assert (directory / "tiny-optimizer-regularization").is_dir()  # its own default project
    results = json.loads((out / "results.json").read_text())
    configuration = json.loads((out / "configuration.json").read_text())
    assert configuration == results["configuration"] and configuration["space"] == results["settings"]["space"]
    winner = results["leaderboard"][results["recommended"]["rank"] - 1]
    assert (
        configuration["loss"]["name"] == winner["loss"] and configuration["optimizer"]["family"] == winner["optimizer"]
    )
    assert configuration["regularization"]["l2"] == winner["regularization"]["l2"]
    assert winner["optimizer"] in ("adam", "adamw", "sgd", "rmsprop", "adagrad")
    # best_loss.json is the configuration's loss (without the penalty, which needs a model).
    assert json.loads((out / "best_loss.json").read_text()) == losses.serialize(tuning.configured_loss(configuration))
    gains = results["part_gains"]
    assert [s["label"] for s in gains["steps"]] == [
        "loss only",
        "loss + optimizer",
        "loss + optimizer + regularization",
    ]
    assert all(len(s["scores"]) == 2 for s in gains["steps"]) and gains["paired_over"] == "2 folds"
    for gain, (before, after) in zip(gains["gains"], zip(gains["steps"], gains["steps"][1:])):
        assert gain["gain"] == pytest.approx(np.mean(after["scores"]) - np.mean(before["scores"]))
        assert gain["verdict"] == ("tie" if abs(gain["gain"]) <= gain["standard_error"] else
                                   "gain" if gain["gain"] > 0 else "worse")  # fmt: skip
    text = (out / "report.md").read_text()
    assert "## The recommended configuration" in text and f"- loss: {winner['loss']}" in text
    assert "- weight penalty: L2 " in text and "- dropout: not searched (the model has no Dropout layer)" in text
    assert "## What each searched part adds" in text and "| loss + optimizer |" in text
    assert "optimizer" in (out / "results.csv").read_text().splitlines()[0]
    assert {p.name for p in out.iterdir()} <= REPORT_FILES
    # Resuming the same project with another space would mix trials that do not compare.
    status, _, err = run(capsys, *common, "--space", "loss", "--project-name", "tiny-optimizer-regularization",
                         "--output", str(tmp_path / "other"))  # fmt: skip
    assert status == 2 and "searched --space loss,optimizer,regularization, not loss" in err
    assert not (tmp_path / "other").exists()
