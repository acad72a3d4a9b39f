"""Runs the example notebooks top to bottom, small or full.

Small is what CI runs; full writes the outputs back into the file:

    python examples/run_notebooks.py --small            # all, small
    python examples/run_notebooks.py --save 01_*.ipynb  # one, full

The size switch is the environment variable
KERAS_LOSSOPT_NOTEBOOK_SIZE ("small" or "full"), which every
notebook reads in its set-up cell. Saved outputs drop the start-up
lines that TensorFlow's C++ runtime writes to stderr before Python
can silence them (oneDNN, "no CUDA driver"): they say nothing about
the notebook and differ per machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent
SIZE_VARIABLE = "KERAS_LOSSOPT_NOTEBOOK_SIZE"
_STARTUP_NOISE = re.compile(
    "|".join(
        [
            "All log messages before absl::InitializeLog",
            "oneDNN custom operations",
            "cudart_stub",
            "cuda_platform",
            "Could not find cuda drivers",
            "cuInit",
            "TF-TRT Warning",
            "computation placer already registered",
        ]
    )
)


def notebooks(patterns: list[str] | None = None) -> list[Path]:
    """The notebooks of `examples/` matching the glob `patterns`.

    All of them by default.
    """
    found = sorted(
        {
            path
            for pattern in (patterns or ["*.ipynb"])
            for path in EXAMPLES.glob(pattern)
        }
    )
    if not found:
        raise FileNotFoundError(
            f"no notebook in {EXAMPLES} matches {patterns}"
        )
    return found


def drop_startup_noise(notebook: nbformat.NotebookNode) -> None:
    """Removes TensorFlow's start-up lines from stderr, in place."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if (
                output.get("output_type") == "stream"
                and output.get("name") == "stderr"
            ):
                lines = [
                    line
                    for line in output["text"].splitlines(True)
                    if not _STARTUP_NOISE.search(line)
                ]
                if not "".join(lines).strip():
                    continue
                output["text"] = "".join(lines)
            kept.append(output)
        cell["outputs"] = kept


def run(
    path: Path, *, small: bool, timeout: int = 1800
) -> nbformat.NotebookNode:
    """Executes the notebook at `path` in its own kernel.

    Returns:
        The notebook with its outputs.
    """
    notebook = nbformat.read(path, as_version=4)
    previous = os.environ.get(SIZE_VARIABLE)
    os.environ[SIZE_VARIABLE] = "small" if small else "full"
    try:
        NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        if previous is None:
            del os.environ[SIZE_VARIABLE]
        else:
            os.environ[SIZE_VARIABLE] = previous
    drop_startup_noise(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "patterns",
        nargs="*",
        help="notebook names or globs in examples/ (default: all)",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--small",
        action="store_true",
        help="small mode, outputs not saved",
    )
    mode.add_argument(
        "--save",
        action="store_true",
        help="full mode, outputs written back into the notebook",
    )
    args = parser.parse_args(argv)
    for path in notebooks(args.patterns):
        start = time.perf_counter()
        notebook = run(path, small=args.small)
        if args.save:
            nbformat.write(notebook, path)
        seconds = time.perf_counter() - start
        saved = " (saved)" if args.save else ""
        print(f"{path.name}: ran in {seconds:.0f} s{saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
