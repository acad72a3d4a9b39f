"""Threshold sweeps on the corpus' calibration half, by replay (no training).

Prints, for the calibration half only (even seeds; the held-out half is never read here),
what the current rules flag on healthy runs that trained and what they miss of the faulty
runs, then, for each swept threshold, the healthy runs flagged as a problem and the faulty
runs detected at each value. The thresholds in `keras_lossopt.callbacks` name the rates
printed here.

    python -m benchmarks.diagnosis_corpus.calibrate
    python -m benchmarks.diagnosis_corpus.calibrate --tables   # the corpus tables of this half and the peers
"""

from __future__ import annotations

import argparse
import collections
import math
from collections.abc import Mapping, Sequence

from benchmarks.diagnosis_corpus.analysis import (
    _split_tables,
    first_problem,
    peer_table,
    problems,
    rule_table,
    split_groups,
    top_cause,
)
from benchmarks.diagnosis_corpus.replay import replayed_records
from benchmarks.diagnosis_corpus.runner import load_records

__all__ = ["SWEEPS", "main", "sweep"]

#: (label, rule family, argument, values): the thresholds swept.
SWEEPS: Sequence[tuple[str, str, str, Sequence[float]]] = (
    ("oscillation threshold", "trend", "oscillation_threshold", (0.5, 1.0, 1.5, 2.0, 3.0)),
    ("no_signal margin", "trend", "signal_margin", (0.01, 0.02, 0.03, 0.05, 0.1)),
    ("still weights", "trend", "still_weights", (0.001, 0.002, 0.005, 0.01)),
    ("still step movement", "trend", "still_step_movement", (1e-4, 3e-4, 1e-3, 3e-3)),
    ("vanishing ratio", "gradient", "vanishing_ratio", (1e-4, 3e-4, 1e-3, 3e-3)),
    ("vanishing share", "gradient", "vanishing_share", (0.5, 0.6, 0.7, 0.8, 0.9)),
    ("exploding growth", "gradient", "exploding_growth", (1e2, 1e3, 1e4)),
)


def _counts(records: Sequence[Mapping]) -> tuple[int, int, int, int]:
    healthy, _, faulty = split_groups(records, "calibration")
    return (
        sum(bool(problems(r)) for r in healthy),
        len(healthy),
        sum(bool(problems(r)) for r in faulty),
        len(faulty),
    )


def movement_per_root_step(record: Mapping, epoch: int = 3) -> float | None:
    """How far the weights had moved at the end of `epoch`, over sqrt(steps): what sets
    `loss_trends.STILL_STEP_MOVEMENT` (a stalled metric is first judged at the third epoch)."""
    spec = record["spec"]
    step = epoch * -(-spec["n_train"] // spec["batch_size"])
    moved = record.get("weights_moved") or []
    if step > len(moved) or moved[step - 1] is None:
        return None
    return float(moved[step - 1]) / math.sqrt(step)


def _movement_lines(healthy: Sequence[Mapping], faulty: Sequence[Mapping]) -> list[str]:
    lines = ["weights moved / sqrt(steps) at the third epoch:"]
    values = sorted((v, r["id"]) for r in healthy if (v := movement_per_root_step(r)) is not None)
    if values:
        lines.append(f"  healthy runs that trained: lowest {values[0][0]:.2g} ({values[0][1]}), {len(values)} runs")
    for family in ("learning_rate_too_small", "dying_relu", "deep_sigmoid", "bad_initialization"):
        found = [v for r in faulty if r["spec"]["family"] == family and (v := movement_per_root_step(r)) is not None]
        if found:
            lines.append(f"  {family}: {min(found):.2g} to {max(found):.2g} ({len(found)} runs)")
    return lines


def sweep(records: Mapping[str, Mapping], kind: str, argument: str, values: Sequence[float]) -> list[str]:
    """One line per value: healthy runs flagged and faulty runs detected on the calibration half."""
    lines = []
    for value in values:
        args = {"trend_args" if kind == "trend" else "detector_args": {argument: value}}
        replayed = replayed_records(records, **args)
        flagged, healthy, detected, faulty = _counts(list(replayed.values()))
        lines.append(f"  {argument}={value:g}: healthy flagged {flagged}/{healthy}, detected {detected}/{faulty}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-sweeps", action="store_true", help="only the current rules' decisions")
    parser.add_argument(
        "--tables", action="store_true", help="the corpus tables of the calibration half and the peer cases, then stop"
    )
    args = parser.parse_args(argv)
    # Only runs that recorded the signals the rules read (the current corpus version); the
    # held-out half is filtered out here, before any replay.
    loaded = load_records()
    records = {k: r for k, r in loaded.items() if r.get("split") == "calibration" and r.get("batch_losses")}
    if args.tables:
        peers = {k: r for k, r in loaded.items() if r.get("split") == "peer"}
        replayed = list(replayed_records({**records, **peers}).values())
        print(_split_tables(replayed, "calibration"))
        print()
        print(peer_table(replayed))
        return
    replayed = replayed_records(records)
    healthy, dropped, faulty = split_groups(list(replayed.values()), "calibration")
    flagged, n_healthy, detected, n_faulty = _counts(list(replayed.values()))
    print(f"calibration half: {n_healthy} healthy runs that trained ({len(dropped)} dropped), {n_faulty} faulty")
    print(f"healthy flagged as a problem: {flagged}/{n_healthy}; faulty detected: {detected}/{n_faulty}")
    by_rule = collections.Counter(f["kind"] for r in healthy for f in {f["kind"]: f for f in problems(r)}.values())
    print("healthy runs flagged, per rule:", dict(by_rule))
    for r in healthy:
        if problems(r):
            s = r["spec"]
            print(
                f"  {r['id']}: {[f['kind'] for f in problems(r)]} ({s['task']}, {s['architecture']}, "
                f"{s['optimizer']} {s['learning_rate']:.3g}, batch {s['batch_size']})"
            )
    print(rule_table(healthy, faulty))
    print("\n".join(_movement_lines(healthy, faulty)))
    for r in faulty:
        first = first_problem(r)
        if first is None:
            print(f"  missed {r['id']}: {[f['kind'] for f in r['findings']]}")
        elif top_cause(first) != r["spec"]["planted_cause"]:
            print(f"  wrong cause {r['id']}: {first['kind']} -> {first.get('causes')}")
    if not args.no_sweeps:
        for label, kind, argument, values in SWEEPS:
            print(label)
            print("\n".join(sweep(records, kind, argument, values)))


if __name__ == "__main__":
    main()
