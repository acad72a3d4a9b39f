"""Writes a benchmark's section of docs/benchmarks.md between its own markers.

Each benchmark owns one section, delimited by `<!-- name:start -->` and `<!-- name:end -->`,
so benchmarks can be rerun independently without touching each other's figures.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import platform
import sys

import numpy as np

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nMeasured figures; each section says the command that produced it and the machine.\n"


def machine() -> str:
    import os

    import tensorflow as tf

    cores = os.cpu_count()
    return f"{platform.machine()}, {cores} CPU cores, Python {platform.python_version()}, TensorFlow {tf.__version__}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str, command: str | None = None) -> None:
    """Replaces (or appends) the section `name` of docs/benchmarks.md."""
    command = command or "python " + " ".join(sys.argv)
    stamp = datetime.date.today().isoformat()
    section = (
        f"<!-- {name}:start -->\n## {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine()}; run {stamp}.\n\n{body.strip()}\n<!-- {name}:end -->"
    )
    text = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def load_results(paths: list[str]) -> list:
    """The result lists of several JSON files (one per seed or data set), in order, as one list."""
    results = []
    for path in paths:
        with open(path) as f:
            results += json.load(f)
    return results
