"""The guides whose code is written to run as shown do run on the current API."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Guides whose Python blocks form one script, run top to bottom (the others show fragments).
RUNNABLE_GUIDES = ["docs/guides/loss-shaping.md"]


def python_blocks(page):
    return re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(encoding="utf-8"), re.S | re.M)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE_GUIDES)
def test_the_code_of_the_guide_runs(page, tmp_path):
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python blocks"
    script = tmp_path / "guide.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{page} failed:\n{result.stderr[-3000:]}"
