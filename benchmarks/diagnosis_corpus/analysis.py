"""The corpus' tables: false alarms on healthy runs, detections per fault family, causes ranked first.

A run is *flagged* when either callback reports a finding of severity "problem" (findings
of severity "information" are shown in `report()` and the logs and do not count). Healthy
draws count only when they trained (`trained`: the validation metric beyond the trivial
baseline, see `runner.ACCURACY_MARGIN`, and a training loss that stayed finite and ended
below its first epoch's); healthy draws that did not train are dropped, and counted.
The planted cause is *ranked first* when the earliest problem finding (checks before
training come first, at step -1) ranks it first; a check before training is its own cause.
Rates come with their Wilson 95% interval.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping

from benchmarks.report import markdown_table

__all__ = [
    "FRESH_FAULTY_FROM",
    "FRESH_HEALTHY_FROM",
    "corpus_tables",
    "first_problem",
    "flagged",
    "is_fresh",
    "rule_table",
    "top_cause",
    "trained",
    "verdicts",
    "wilson",
]

SETUP_KINDS = ("non_finite_data", "non_finite_forward", "input_scale", "target_scale", "loss_mismatch")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a binomial rate (0, 0 for n = 0)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def trained(record: Mapping) -> bool:
    """Whether a run trained: beat its baseline, and its training loss stayed finite and fell.

    A run that diverged and was rescued (the monitor restores the last finite weights and
    stops) can still beat the baseline with its restored weights; it did not train.
    """
    losses = record.get("history", {}).get("loss", [])
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    return bool(record.get("trained")) and finite and losses[-1] < losses[0]


def problems(record: Mapping) -> list[dict]:
    return [f for f in record.get("findings", []) if f.get("severity", "problem") == "problem"]


def flagged(record: Mapping) -> bool:
    return bool(problems(record))


def top_cause(finding: Mapping) -> str | None:
    if finding["kind"] in SETUP_KINDS:
        return finding["kind"]
    return finding["causes"][0] if finding.get("causes") else None


def first_problem(record: Mapping) -> dict | None:
    found = problems(record)
    return min(found, key=lambda f: f["step"]) if found else None


def _rate(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k}/{n} = {100 * k / max(n, 1):.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def split_groups(records: Iterable[Mapping], split: str) -> tuple[list, list, list]:
    """(healthy that trained, healthy dropped for not training, faulty) of one split (see `trained`)."""
    healthy, dropped, faulty = [], [], []
    for r in records:
        if r.get("split") != split:
            continue
        if r["spec"]["group"] == "healthy":
            (healthy if trained(r) else dropped).append(r)
        else:
            faulty.append(r)
    return healthy, dropped, faulty


def summary(records: Iterable[Mapping], split: str) -> dict:
    """The headline numbers of one split (used by the tables and the regression test)."""
    healthy, dropped, faulty = split_groups(list(records), split)
    detected = [r for r in faulty if flagged(r)]
    right = [r for r in detected if top_cause(first_problem(r)) == r["spec"]["planted_cause"]]
    return {
        "healthy": len(healthy),
        "dropped": len(dropped),
        "healthy_flagged": sum(flagged(r) for r in healthy),
        "faulty": len(faulty),
        "detected": len(detected),
        "cause_first": len(right),
    }


def _split_tables(records: list, split: str, title: str | None = None) -> str:
    healthy, _, faulty = split_groups(records, split)
    s = summary(records, split)
    versions = sorted({r.get("rules", "?") for r in healthy + faulty})
    lines = [
        f"**{title or split}** (rules version {', '.join(versions)}): {s['healthy']} healthy runs that trained "
        f"({s['dropped']} healthy draws dropped: they did not beat the trivial baseline, or their training loss "
        f"went non-finite or ended above its first epoch's), {s['faulty']} faulty runs.",
        "",
        f"- healthy runs flagged as a problem: {_rate(s['healthy_flagged'], s['healthy'])}",
        f"- faulty runs detected: {_rate(s['detected'], s['faulty'])}",
        f"- planted cause ranked first: {_rate(s['cause_first'], s['detected'])} of the detections",
        "",
    ]
    lines.append(rule_table(healthy, faulty))
    lines.append("")
    by_family = collections.defaultdict(list)
    for r in faulty:
        by_family[r["spec"]["family"]].append(r)
    rows = []
    for family, runs in sorted(by_family.items()):
        hits = [r for r in runs if flagged(r)]
        right = [r for r in hits if top_cause(first_problem(r)) == r["spec"]["planted_cause"]]
        firsts = collections.Counter(f"{first_problem(r)['kind']}: {top_cause(first_problem(r))}" for r in hits)
        rows.append(
            [
                family,
                runs[0]["spec"]["planted_cause"],
                f"{len(hits)}/{len(runs)}",
                f"{len(right)}/{len(hits)}",
                ", ".join(f"{k} ({n})" for k, n in firsts.most_common(3)) or "-",
            ]
        )
    lines.append(
        markdown_table(
            ["fault family", "planted cause", "detected", "cause ranked first", "first problem: its top cause (runs)"],
            rows,
        )
    )
    return "\n".join(lines)


def rule_table(healthy: list, faulty: list) -> str:
    """Per rule: healthy runs it flags as a problem (Wilson 95%), healthy runs with it as information,
    faulty runs where it is the first problem, and of those, the planted cause ranked first."""
    kinds: collections.Counter = collections.Counter()
    info: collections.Counter = collections.Counter()
    for r in healthy:
        kinds.update({f["kind"] for f in problems(r)})
        info.update({f["kind"] for f in r.get("findings", []) if f.get("severity") == "information"})
    first: collections.Counter = collections.Counter()
    right: collections.Counter = collections.Counter()
    for r in faulty:
        found = first_problem(r)
        if found is not None:
            first[found["kind"]] += 1
            right[found["kind"]] += top_cause(found) == r["spec"]["planted_cause"]
    rows = [
        [
            kind,
            _rate(kinds[kind], len(healthy)),
            info[kind],
            first[kind],
            f"{right[kind]}/{first[kind]}" if first[kind] else "-",
        ]
        for kind in sorted(set(kinds) | set(info) | set(first))
    ]
    return markdown_table(
        [
            "rule",
            "healthy runs flagged (problem) [Wilson 95%]",
            "healthy runs with it as information",
            "faulty runs where it is the first problem",
            "of those, planted cause ranked first",
        ],
        rows,
    )


def peer_table(records: list) -> str:
    peers = [r for r in records if r.get("split") == "peer"]
    rows = []
    for r in sorted(peers, key=lambda r: (r["spec"]["group"], r["id"])):
        first = first_problem(r)
        rows.append(
            [
                r["id"].split("/", 1)[1],
                r["spec"]["group"],
                r["spec"]["planted_cause"] or "-",
                "flagged" if first else "quiet",
                f"{first['kind']}: {top_cause(first)}" if first else "-",
                f"{r.get('score', float('nan')):.3g} (baseline {r.get('baseline', float('nan')):.3g})",
                r["spec"]["source"],
            ]
        )
    faulty = [r for r in peers if r["spec"]["group"] == "faulty"]
    healthy = [r for r in peers if r["spec"]["group"] == "healthy"]
    head = (
        f"Ported peer cases: {sum(flagged(r) for r in faulty)}/{len(faulty)} faulty detected, "
        f"{sum(flagged(r) for r in healthy)}/{len(healthy)} healthy flagged."
    )
    table = markdown_table(
        ["case", "group", "planted cause", "verdict", "first problem: top cause", "val score", "source"], rows
    )
    return head + "\n\n" + table


#: The fresh held-out part, the judge of the rules: odd seeds of the healthy draws from 700 and
#: of the faulty runs from 100_160, recorded after the first held-out tables (2026-12-07) and
#: read by nobody before the rules they are judged by were final. The rest of the held-out
#: half was read (its alarms and misses are named in issue notes) while rules still changed:
#: held out from thresholds but not from eyes.
FRESH_HEALTHY_FROM = 700
FRESH_FAULTY_FROM = 100_160


def is_fresh(record: Mapping) -> bool:
    """Whether a record belongs to the fresh held-out part (see `FRESH_HEALTHY_FROM`)."""
    if record.get("split") != "held-out":
        return False
    seed = record["spec"].get("seed", -1)
    return seed >= (FRESH_HEALTHY_FROM if record["spec"]["group"] == "healthy" else FRESH_FAULTY_FROM)


def verdicts(records: Iterable[Mapping], part: str = "held-out half") -> str:
    """The issue's targets against the held-out records given (named `part`) and the peer
    cases among them, each met or not, with its numbers."""
    values = list(records)
    s = summary(values, "held-out")
    low, high = wilson(s["healthy_flagged"], s["healthy"])
    rate = s["healthy_flagged"] / max(s["healthy"], 1)
    detected = s["detected"] / max(s["faulty"], 1)
    first = s["cause_first"] / max(s["detected"], 1)
    peers = [r for r in values if r.get("split") == "peer"]
    peer_faulty = [r for r in peers if r["spec"]["group"] == "faulty"]
    peer_healthy = [r for r in peers if r["spec"]["group"] == "healthy"]
    peer_hits = sum(flagged(r) for r in peer_faulty)
    peer_alarms = sum(flagged(r) for r in peer_healthy)

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = [
        [
            "healthy runs flagged as a problem: at most 1%, upper end of the 95% interval at most 3%",
            f"{s['healthy_flagged']}/{s['healthy']} = {100 * rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}]",
            f"rate {met(rate <= 0.01)}, interval {met(high <= 0.03)}",
        ],
        [
            "faulty runs detected: at least 95%",
            f"{s['detected']}/{s['faulty']} = {100 * detected:.1f}%",
            met(detected >= 0.95),
        ],
        [
            "planted cause ranked first: at least 90% of detections",
            f"{s['cause_first']}/{s['detected']} = {100 * first:.1f}%",
            met(first >= 0.9),
        ],
    ]
    if peers:
        rows.append(
            [
                "ported peer runs: 12/12 faulty detected, 0/6 healthy flagged",
                f"{peer_hits}/{len(peer_faulty)}, {peer_alarms}/{len(peer_healthy)}",
                met(peer_hits == len(peer_faulty) == 12 and peer_alarms == 0 and len(peer_healthy) == 6),
            ]
        )
    return markdown_table([f"target ({part})", "measured", "verdict"], rows)


def corpus_tables(records: Mapping[str, Mapping]) -> str:
    """The markdown of the corpus section: the targets, both halves, then the peer cases and the timing."""
    values = list(records.values())
    seconds = [r.get("seconds", 0.0) for r in values if r.get("seconds")]
    errors = [r for r in values if r.get("error")]
    fresh = [r for r in values if is_fresh(r) or r.get("split") == "peer"]
    parts = [
        verdicts(fresh, "fresh held-out part"),
        verdicts(values, "whole held-out half"),
        _split_tables([r for r in fresh if r.get("split") != "peer"], "held-out", "fresh held-out part"),
        _split_tables(values, "held-out", "whole held-out half"),
        _split_tables(values, "calibration"),
        peer_table(values),
    ]
    if seconds:
        median = sorted(seconds)[len(seconds) // 2]
        ended = f"; {len(errors)} runs ended with an error (counted as they are)" if errors else ""
        parts.append(
            f"{len(values)} runs, {sum(seconds) / 60:.0f} min of fits in all (median {median:.1f} s per run){ended}."
        )
    return "\n\n".join(p for p in parts if p)
