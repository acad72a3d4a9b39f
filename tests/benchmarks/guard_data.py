"""Writes the regression guard's recorded runs: tests/benchmarks/data/guard_runs.jsonl and
guard_traces.npz, copied from the corpus cache (benchmarks/diagnosis_corpus/results.jsonl and
its local traces) for the runs `test_diagnosis_corpus.GUARD_REPLAYED` names.

test_diagnosis_corpus.py replays them through the current rules without training. Rerun
after the corpus is re-run with a change to what is recorded (not after a change to the
rules: the test checks them):

    python -m tests.benchmarks.guard_data
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from benchmarks.diagnosis_corpus.replay import load_trace
from benchmarks.diagnosis_corpus.runner import load_records, with_current_baseline

DATA = pathlib.Path(__file__).parent / "data"
RUNS = DATA / "guard_runs.jsonl"
TRACES = DATA / "guard_traces.npz"


def load_guard() -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]]:
    """The guard's records by run id, and their traces by run id."""
    records = {}
    for line in RUNS.read_text().splitlines():
        record = json.loads(line)
        records[record["id"]] = with_current_baseline(record)
    traces: dict[str, dict[str, np.ndarray]] = {}
    with np.load(TRACES) as data:
        for key in data.files:
            run_id, field = key.rsplit(":", 1)
            traces.setdefault(run_id, {})[field] = data[key]
    return records, traces


def main() -> None:
    from tests.benchmarks.test_diagnosis_corpus import GUARD_REPLAYED

    cached = load_records()
    DATA.mkdir(exist_ok=True)
    arrays = {}
    with RUNS.open("w") as out:
        for run_id in GUARD_REPLAYED:
            record = cached[run_id]
            out.write(json.dumps(record) + "\n")
            trace = load_trace(run_id)
            for field, value in (trace or {}).items():
                arrays[f"{run_id}:{field}"] = value
    np.savez_compressed(TRACES, **arrays)


if __name__ == "__main__":
    main()
