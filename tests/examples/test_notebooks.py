"""Every example notebook runs top to bottom in its small mode and keeps the shape users rely on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))

nbclient = pytest.importorskip("nbclient", reason="the notebooks run with nbclient (the [dev] extra)")


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", EXAMPLES / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_colab_badge_install_cell_and_saved_outputs(path):
    cells = _cells(path)
    badge = f"https://colab.research.google.com/github/keras-lossopt/keras-lossopt/blob/main/examples/{path.name}"
    assert cells[0]["cell_type"] == "markdown" and badge in "".join(cells[0]["source"])
    install = "".join(cells[1]["source"])
    assert cells[1]["cell_type"] == "code" and '"google.colab" in sys.modules' in install and "pip" in install
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert all(cell.get("outputs") is not None for cell in code)
    assert sum(bool(cell.get("outputs")) for cell in code) >= len(code) // 2, "commit the outputs of a full run"
    assert not any(output.get("output_type") == "error" for cell in code for output in cell.get("outputs", []))
    assert "KERAS_LOSSOPT_NOTEBOOK_SIZE" in "".join("".join(cell["source"]) for cell in code)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path):
    notebook = _runner().run(path, small=True, timeout=600)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
