import importlib
import importlib.resources
import subprocess
import sys
import zipfile

import pytest

import keras_lossopt


def test_public_subpackages_load_lazily_and_unknown_names_fail():
    assert keras_lossopt.losses is importlib.import_module("keras_lossopt.losses")
    assert keras_lossopt.datasets.load_digits is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_lossopt.nope  # noqa: B018


@pytest.mark.slow
def test_wheel_ships_py_typed_and_the_console_script(tmp_path):
    root = importlib.resources.files("keras_lossopt").parent
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("keras_lossopt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "keras_lossopt/py.typed" in names
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "keras-lossopt = keras_lossopt.cli.main:main" in entry_points
