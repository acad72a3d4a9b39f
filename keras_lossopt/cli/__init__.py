"""The `keras-lossopt` command line: `compare`, `search` and `advise` (see `keras_lossopt.cli.main`).

`keras_lossopt.cli.main.main(argv)` runs the command (the `keras-lossopt` script); the
module `main` is the entry point and is not re-exported here, where its name would clash
with the function. The names below are the command's steps, for scripts and benchmarks
that reuse them: `load_data` (the `--data` argument as a `Dataset`), `model_builder`,
`run_compare`, `run_search` (with `search_role` for a distributed search), `run_advise`,
`train_once`, `targets`, `pooled`, `recommend` (the paired rule that names a tie) and the
report helpers. They load lazily, so that the command checks its arguments before Keras and TensorFlow start.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it (each module's __all__, nothing else).
_EXPORTS = {
    "load_data": "data",
    "MODEL_SUFFIXES": "paths",
    "REPORT_FILES": "paths",
    "DataError": "paths",
    "check_data_argument": "paths",
    "check_model_path": "paths",
    "check_output_folder": "paths",
    "check_trials_directory": "paths",
    "model_builder": "models",
    "run_compare": "compare",
    "targets": "compare",
    "train_once": "compare",
    "train_configuration": "training",
    "SPACE_PARTS": "space",
    "parse_space": "space",
    "STARTING_OPTIMIZER": "part_gains",
    "ablation_ladder": "part_gains",
    "measure_part_gains": "part_gains",
    "part_gains_table": "part_gains",
    "configuration_lines": "search_report",
    "leaderboard_rows": "search_report",
    "leaderboard_table": "search_report",
    "recommend_trial": "search_report",
    "write_search_report": "search_report",
    "run_search": "search",
    "RULE": "recommendation",
    "PairedComparison": "recommendation",
    "Recommendation": "recommendation",
    "paired_difference": "recommendation",
    "recommend": "recommendation",
    "pooled": "search",
    "SearchRole": "distributed",
    "search_role": "distributed",
    "run_advise": "advise",
    "OTHER_COLOR": "report",
    "RECOMMENDED_COLOR": "report",
    "TIED_HATCH": "report",
    "atomic_folder": "report",
    "backend_info": "report",
    "class_legend": "report",
    "curves_figure": "report",
    "describe_backend": "report",
    "markdown_table": "report",
    "metrics_figure": "report",
    "named_counts": "report",
    "plot_curves": "report",
    "plot_metrics": "report",
    "scores": "report",
    "write_csv": "report",
    "write_json": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"keras_lossopt.cli.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_lossopt.cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
