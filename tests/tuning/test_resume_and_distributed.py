"""A killed search resumes without losing finished trials; chief/worker distributed search.

Both run real processes (tests/tuning/search_job.py), so they are marked slow.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

JOB = pathlib.Path(__file__).with_name("search_job.py")
REPO = JOB.parents[2]


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", **extra)
    return env


def completed_trials(project):
    trials = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):  # being written
            continue
        if trial["status"] == "COMPLETED":
            trials[trial["trial_id"]] = (trial["score"], trial["hyperparameters"]["values"])
    return trials


@pytest.mark.slow
def test_a_killed_search_resumes_without_losing_finished_trials(tmp_path):
    project = tmp_path / "job"
    command = [sys.executable, str(JOB), str(tmp_path), "6", "0.4"]
    process = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(completed_trials(project)) < 2:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the search finished no trial within 120 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    before = completed_trials(project)
    assert 2 <= len(before) < 6, "the kill must land in the middle of the search"
    trained_before = (tmp_path / "ran.txt").read_text().splitlines()

    resumed = subprocess.run(command, env=environment(), capture_output=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    after = completed_trials(project)
    for trial_id, result in before.items():
        assert after[trial_id] == result  # kept, with the same score and hyperparameters
    assert len(after) == 6
    # Only the trials that had not finished were trained again.
    trained_after = (tmp_path / "ran.txt").read_text().splitlines()
    assert len(trained_after) - len(trained_before) == 6 - len(before)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_one_chief_and_two_workers(tmp_path):
    port = str(free_port())
    address = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    command = [sys.executable, str(JOB), str(tmp_path), "6"]
    processes = {
        tuner_id: subprocess.Popen(
            command,
            env=environment(KERASTUNER_TUNER_ID=tuner_id, **address),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for tuner_id in ("chief", "tuner0", "tuner1")
    }
    try:
        for tuner_id in ("tuner0", "tuner1", "chief"):
            _, stderr = processes[tuner_id].communicate(timeout=240)
            assert processes[tuner_id].returncode == 0, f"{tuner_id}: {stderr.decode()[-2000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    trained = [line.split()[0] for line in (tmp_path / "ran.txt").read_text().splitlines()]
    # The chief only serves the oracle; the workers share the six trials between them.
    assert sorted(set(trained)) == ["tuner0", "tuner1"]
    assert len(trained) == 6
    assert len(completed_trials(tmp_path / "job")) == 6
