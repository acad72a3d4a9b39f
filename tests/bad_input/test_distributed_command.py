"""keras-tuner's distributed variables given to `keras-lossopt search`: one line and exit status 2.

keras-tuner reads KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID; a
partial set either fails with its RuntimeError after TensorFlow has started or, with only
the tuner id, runs a whole search of its own. The command checks them before TensorFlow
starts (`keras_lossopt.cli.distributed`).
"""

import re
import sys

import numpy as np
import pytest

from keras_lossopt.cli.distributed import search_role
from keras_lossopt.cli.main import main

IP, PORT, ID = "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"

CASES = [
    ("tuner id alone", {ID: "tuner0"}, [], r"needs KERASTUNER_ORACLE_IP, .*KERASTUNER_TUNER_ID is set but not .*IP"),
    ("no port", {IP: "127.0.0.1", ID: "tuner0"}, [], r"are set but not KERASTUNER_ORACLE_PORT"),
    ("no tuner id", {IP: "127.0.0.1", PORT: "8000"}, [], r"are set but not KERASTUNER_TUNER_ID"),
    ("port not a number", {IP: "127.0.0.1", PORT: "http", ID: "chief"}, [], r"PORT must be a port .* got 'http'"),
    ("port 0", {IP: "127.0.0.1", PORT: "0", ID: "chief"}, [], r"from 1 to 65535, got '0'"),
    ("port too large", {IP: "127.0.0.1", PORT: "70000", ID: "chief"}, [], r"got '70000'"),
    ("blank tuner id", {IP: "127.0.0.1", PORT: "8000", ID: "  "}, [], r"set but not KERASTUNER_TUNER_ID"),
    (
        "overwrite on a worker",
        {IP: "127.0.0.1", PORT: "8000", ID: "tuner1"},
        ["--overwrite"],
        r"--overwrite on worker 'tuner1' would delete the trials .*give --overwrite to the chief only",
    ),
]


@pytest.mark.parametrize("name, environ, extra, message", CASES, ids=[c[0] for c in CASES])
def test_search_refuses_a_partial_distributed_setup_before_tensorflow(
    tmp_path, capsys, monkeypatch, name, environ, extra, message
):
    for variable in (IP, PORT, ID):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((40, 3)), y=np.repeat([0, 1], 20))
    tensorflow_loaded = "tensorflow" in sys.modules
    status = main(["search", "--data", str(data), "--directory", str(tmp_path / "trials"), *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("keras-lossopt: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "trials").exists()
    if not tensorflow_loaded:
        assert "tensorflow" not in sys.modules


@pytest.mark.parametrize(
    "environ, role",
    [
        ({}, None),
        ({IP: "10.0.0.5", PORT: "8000", ID: "chief"}, ("chief", "10.0.0.5:8000", True)),
        ({IP: "10.0.0.5", PORT: " 8000 ", ID: "tuner3"}, ("tuner3", "10.0.0.5:8000", False)),
        ({IP: "10.0.0.5", PORT: "8000", ID: "chief-a"}, ("chief-a", "10.0.0.5:8000", True)),  # keras-tuner's rule
    ],
)
def test_search_role_reads_keras_tuners_variables(environ, role):
    found = search_role(environ, overwrite=True if role is None or role[2] else False)
    assert (found if found is None else (found.tuner_id, found.address, found.is_chief)) == role


def test_search_summary_on_a_worker_says_to_call_it_on_the_chief(monkeypatch):
    import keras_tuner

    from keras_lossopt.tuning import search_summary

    monkeypatch.setenv(IP, "127.0.0.1")
    monkeypatch.setenv(PORT, "1")
    monkeypatch.setenv(ID, "tuner0")
    from keras_tuner.src.distribute.oracle_client import OracleClient  # what a worker's tuner holds

    class WorkerTuner:
        oracle = OracleClient(keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=1))

    with pytest.raises(ValueError, match=r"search_summary needs the search's trials.*call it on the chief"):
        search_summary(WorkerTuner())
