"""`keras-lossopt search` as keras-tuner's chief and workers: one search over several processes.

The command runs as three real processes on 127.0.0.1 sharing one `--directory` (as machines
share a network folder): the chief serves the trials and alone writes the report; the two
workers train the trials and write nothing.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MAX_TRIALS = 3


def _command() -> list[str]:
    """The installed `keras-lossopt` script beside this Python (as pip installs it), else its module."""
    script = pathlib.Path(sys.executable).with_name("keras-lossopt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_lossopt.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(tuner_id: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(
        PYTHONPATH=str(REPO),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(port),
        KERASTUNER_TUNER_ID=tuner_id,
    )
    return env


@pytest.mark.slow
def test_search_command_runs_as_a_chief_and_two_workers(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype("float32")
    np.savez(tmp_path / "tiny.npz", x=x, y=(x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5))
    port = _free_port()
    search = [
        *_command(), "search", "--data", str(tmp_path / "tiny.npz"), "--tuner", "random",
        "--max-trials", str(MAX_TRIALS), "--epochs", "1", "--folds", "1", "--losses", "crossentropy,focal",
        "--directory", str(tmp_path / "shared"),
    ]  # fmt: skip
    outputs = {tuner_id: tmp_path / f"report-{tuner_id}" for tuner_id in ("chief", "tuner0", "tuner1")}
    processes = {
        tuner_id: subprocess.Popen(
            [*search, "--output", str(outputs[tuner_id])],
            env=_environment(tuner_id, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tuner_id in outputs
    }
    logs = {}
    try:
        for tuner_id in ("tuner0", "tuner1", "chief"):
            stdout, stderr = processes[tuner_id].communicate(timeout=400)
            logs[tuner_id] = stdout
            assert processes[tuner_id].returncode == 0, f"{tuner_id}:\n{stdout[-2000:]}\n{stderr[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()

    # The workers share the trials and write no report.
    trained = {}
    for tuner_id in ("tuner0", "tuner1"):
        assert f"worker {tuner_id}: training trials from the chief at 127.0.0.1:{port}" in logs[tuner_id]
        done = re.search(rf"worker {tuner_id}: trained (\d+) trial\(s\); the search is done", logs[tuner_id])
        assert done, logs[tuner_id]
        trained[tuner_id] = int(done.group(1))
        assert len(re.findall(rf"^\[trial \d+ on {tuner_id}\]", logs[tuner_id], re.M)) == trained[tuner_id]
        assert not outputs[tuner_id].exists()
    assert sum(trained.values()) == MAX_TRIALS

    # The chief trained nothing, printed every trial with the worker that ran it, and wrote the report once.
    chief_lines = re.findall(rf"^\[trial \d+/{MAX_TRIALS}, (tuner[01])\]", logs["chief"], re.M)
    assert sorted(chief_lines) == sorted(t for t, n in trained.items() for _ in range(n))
    results = json.loads((outputs["chief"] / "results.json").read_text())
    assert results["timing"]["trials_run"] == MAX_TRIALS
    assert len(results["leaderboard"]) == MAX_TRIALS
    assert {row["loss"] for row in results["leaderboard"]} <= {"crossentropy", "focal"}
    assert all(0.0 <= v <= 1.0 for v in results["best_test_scores"].values())
    assert (outputs["chief"] / "best_loss.json").exists()


def test_the_chief_trains_the_best_configuration_again_when_its_checkpoint_is_on_another_disk(tmp_path):
    import keras_tuner

    from keras_lossopt.cli import search
    from keras_lossopt.cli.data import load_data
    from keras_lossopt.cli.models import model_builder
    from keras_lossopt.tuning import LossSearchHyperModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype("float32")
    np.savez(tmp_path / "tiny.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    dataset = load_data(str(tmp_path / "tiny.npz"), target=None, task="auto", seed=0)
    make_model, _ = model_builder(dataset)
    hypermodel = LossSearchHyperModel(make_model, task=dataset.task, candidates=["focal"])
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    best_trial = keras_tuner.engine.trial.Trial(hp, trial_id="00")

    class CheckpointOnAWorkersDisk:
        def load_model(self, trial):
            raise FileNotFoundError(f"no checkpoint of trial {trial.trial_id} here")

    loss, scores = search._evaluate_best_trial(
        CheckpointOnAWorkersDisk(), hypermodel, best_trial, dataset,
        folds=1, make_model=make_model, epochs=1, batch_size=32, seed=0,
    )  # fmt: skip
    assert type(loss).__name__ == "FocalLoss"
    assert set(scores) == {"accuracy", "macro_f1", "worst_class_recall"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
