"""Every example notebook runs top to bottom in its small mode and keeps the shape users rely on."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))

# On the documentation site a notebook's code cell shows 68 characters before it scrolls
# sideways (measured in Chromium on the built site, 800 to 1600 px wide; see examples/ruff.toml).
SITE_CODE_WIDTH = 68

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


def test_examples_are_formatted_to_the_site_width():
    # ruff format and ruff check (E501) apply this to examples/ on every CI run.
    config = (EXAMPLES / "ruff.toml").read_text()
    line_length = re.search(r"^line-length\s*=\s*(\d+)", config, re.MULTILINE)
    assert line_length, "examples/ruff.toml must set line-length"
    assert int(line_length.group(1)) <= SITE_CODE_WIDTH


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_code_fits_the_site_width(path):
    # ruff's E501 lets a line without spaces (a long f-string) through; the page does not.
    too_long = [
        (number, line)
        for number, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if len(line) > SITE_CODE_WIDTH
    ]
    assert not too_long, f"cells (index, line) wider than {SITE_CODE_WIDTH} characters: {too_long}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path):
    notebook = _runner().run(path, small=True, timeout=600)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
