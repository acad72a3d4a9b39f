"""The diagnosis corpus: its space and split, the analysis' statistics, and a fixed sample of
runs trained for real as a regression guard of the rules' decisions (slow)."""

import collections
import dataclasses
import math

import numpy as np
import pytest

from benchmarks.diagnosis_corpus.analysis import (
    FRESH_FAULTY_FROM,
    FRESH_HEALTHY_FROM,
    first_problem,
    flagged,
    is_fresh,
    summary,
    top_cause,
    verdicts,
    wilson,
)
from benchmarks.diagnosis_corpus.data import TASKS, load_task
from benchmarks.diagnosis_corpus.runner import with_current_baseline
from benchmarks.diagnosis_corpus.space import (
    FAULT_FAMILIES,
    MAX_STEPS,
    RunSpec,
    corpus_specs,
    draw_healthy,
    peer_cases,
    split_of,
)


def test_the_corpus_is_seeded_wide_and_split_evenly():
    specs = corpus_specs()
    assert [s.to_dict() for s in specs] == [s.to_dict() for s in corpus_specs()]  # seeded
    assert len({s.id for s in specs}) == len(specs)
    healthy = [s for s in specs if s.group == "healthy"]
    faulty = [s for s in specs if s.group == "faulty"]
    assert len(healthy) >= 300 and len(faulty) >= 150
    assert {s.task for s in healthy} == set(list(TASKS)[:13])
    assert {s.architecture for s in healthy} == {"mlp", "cnn", "lstm", "gru"}
    assert {s.activation for s in healthy} == {"relu", "tanh", "sigmoid", "selu", "gelu"}
    assert {s.optimizer for s in healthy} == {"sgd", "adam", "rmsprop"}
    assert {s.batch_size for s in healthy} == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
    assert min(s.epochs for s in specs) >= 5 and max(s.epochs for s in specs) <= 50
    assert max(s.epochs * -(-s.n_train // s.batch_size) for s in specs) <= max(MAX_STEPS, 5 * 128)
    # Both halves hold every fault family equally, and about half the healthy draws.
    per_half = collections.Counter((split_of(s), s.family) for s in faulty)
    for family in FAULT_FAMILIES:
        assert per_half["calibration", family] == per_half["held-out", family] >= 8
    halves = collections.Counter(split_of(s) for s in healthy)
    assert halves["calibration"] == halves["held-out"]
    for s in faulty:
        assert s.planted_cause == FAULT_FAMILIES[s.family]
    assert RunSpec.from_dict(specs[-1].to_dict()) == specs[-1]


def test_the_peer_cases_are_twelve_faulty_and_six_healthy_with_their_sources():
    peers = peer_cases()
    assert collections.Counter(p.group for p in peers) == {"faulty": 12, "healthy": 6}
    assert all(split_of(p) == "peer" for p in peers)
    assert all("AUTOTRAINER" in p.source or "DeepDiagnosis" in p.source for p in peers)
    assert all(p.planted_cause for p in peers if p.group == "faulty")


@pytest.mark.parametrize("task", list(TASKS))
def test_tasks_have_the_asked_sizes_and_a_trivial_baseline(task):
    data = load_task(task, seed=3, n_train=128)
    assert len(data.x_train) == 128 and len(data.x_val) == 128
    assert np.isfinite(data.x_train).all()
    if data.kind == "classification":
        # The best constant prediction on the validation set, whichever class it is.
        best_constant = max(np.mean(data.y_val == c) for c in range(data.num_classes))
        assert data.baseline == pytest.approx(best_constant)
        assert data.baseline >= np.mean(data.y_val == np.argmax(np.bincount(data.y_train)))
    else:
        assert data.baseline == pytest.approx(np.mean((data.y_val - data.y_train.mean()) ** 2))
    if task == "regression_thousands":
        assert np.sqrt(np.mean(data.y_train**2)) > 300


def test_old_records_are_judged_trained_against_the_validation_majority():
    # A ten-class run at 12% beat the training majority class' validation share by the
    # margin, yet a constant prediction of the validation majority class scores more.
    spec = draw_healthy(0)
    spec = dataclasses.replace(spec, task="digits", n_train=300)
    data = load_task(spec.task, spec.seed, spec.n_train)
    record = {"metric": "accuracy", "spec": spec.to_dict(), "score": data.baseline + 0.04, "trained": True}
    judged = with_current_baseline(record)
    assert judged["baseline"] == pytest.approx(data.baseline)
    assert not judged["trained"]
    assert with_current_baseline({**record, "score": data.baseline + 0.06})["trained"]
    assert not with_current_baseline({**record, "score": float("nan")})["trained"]
    regression = {"metric": "mse", "score": 1.0, "baseline": 2.0, "trained": True}
    assert with_current_baseline(regression) is regression


@pytest.mark.parametrize("k, n, low, high", [(0, 100, 0.0, 0.0370), (5, 100, 0.0215, 0.1118), (3, 10, 0.1078, 0.6032)])
def test_wilson_interval_matches_its_formula(k, n, low, high):
    # Values of the Wilson score interval (z = 1.96), e.g. Newcombe (1998), Table I.
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)
    p, z = k / n, 1.96
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    assert (got[0] + got[1]) / 2 == pytest.approx(center if k else (got[1] / 2), abs=1e-9)


def record(group, findings, split="held-out", trained=True, family="healthy", cause=None, losses=(1.0, 0.5)):
    return {
        "spec": {"group": group, "family": family, "planted_cause": cause},
        "split": split,
        "trained": trained,
        "findings": findings,
        "history": {"loss": list(losses)},
    }


def finding(kind, step, causes=(), severity="problem"):
    return {"kind": kind, "step": step, "causes": list(causes), "severity": severity}


def test_the_fresh_part_is_the_late_odd_seeds_and_its_verdicts_count_only_what_they_are_given():
    def run(seed, group="healthy", split="held-out", findings=(), trained=True):
        family = "healthy" if group == "healthy" else "dying_relu"
        r = record(group, list(findings), split=split, trained=trained, family=family, cause="negative_bias")
        r["spec"]["seed"] = seed
        return r

    alarm = [finding("vanishing", 3, ["negative_bias"])]
    records = [
        run(FRESH_HEALTHY_FROM - 1, findings=alarm),  # read before: not fresh
        run(FRESH_HEALTHY_FROM + 1, findings=alarm),
        run(FRESH_HEALTHY_FROM + 3),
        run(FRESH_HEALTHY_FROM + 5, trained=False, findings=alarm),  # did not train: dropped
        run(FRESH_HEALTHY_FROM + 2, split="calibration", findings=alarm),
        run(FRESH_FAULTY_FROM - 1, group="faulty"),  # a faulty seed below the fresh ones
        run(FRESH_FAULTY_FROM + 1, group="faulty", findings=alarm),
        run(FRESH_HEALTHY_FROM + 1, group="faulty"),  # faulty seeds count from FRESH_FAULTY_FROM
    ]
    fresh = [r for r in records if is_fresh(r)]
    assert [r["spec"]["seed"] for r in fresh] == [FRESH_HEALTHY_FROM + i for i in (1, 3, 5)] + [FRESH_FAULTY_FROM + 1]
    assert summary(fresh, "held-out") == {
        "healthy": 2,
        "dropped": 1,
        "healthy_flagged": 1,
        "faulty": 1,
        "detected": 1,
        "cause_first": 1,
    }
    table = verdicts(fresh, "fresh held-out part")
    assert "1/2 = 50.0%" in table and "1/1 = 100.0%" in table and "target (fresh held-out part)" in table
    assert "peer" not in table  # no peer rows without peer records


def test_information_does_not_flag_and_the_earliest_problem_names_the_cause():
    quiet = record("healthy", [finding("overfitting", 40, severity="information")])
    assert not flagged(quiet)
    run = record(
        "faulty",
        [finding("stalled_metric", 30, ["learning_rate_low"]), finding("loss_mismatch", -1)],
        family="wrong_loss",
        cause="loss_mismatch",
    )
    assert first_problem(run)["kind"] == "loss_mismatch" and top_cause(first_problem(run)) == "loss_mismatch"
    dropped = record("healthy", [finding("exploding", 3)], trained=False)
    rescued = record("healthy", [finding("non_finite", 9)], losses=(1.0, math.nan))  # beat the baseline, restored
    diverged = record("healthy", [finding("oscillating_loss", 9)], losses=(1.0, 3.0))
    other_half = record("healthy", [finding("exploding", 3)], split="calibration")
    counts = summary([quiet, run, dropped, rescued, diverged, other_half], "held-out")
    assert counts == {
        "healthy": 1,
        "dropped": 3,
        "healthy_flagged": 0,
        "faulty": 1,
        "detected": 1,
        "cause_first": 1,
    }
    assert math.isfinite(wilson(counts["healthy_flagged"], counts["healthy"])[1])


# The regression guard: a fixed sample of the corpus' calibration half and peer cases.
# Most runs are replayed: their recorded signals (tests/benchmarks/data, written by
# tests/benchmarks/guard_data.py) go through the current rules, without training. A few
# short runs train for real and must agree with their own replay (the replay is what the
# corpus tables are made of) as well as keep their diagnosis. Healthy runs must stay free
# of problems; faulty runs must be detected with the planted cause ranked first.
GUARD_REPLAYED = [
    # Healthy: batch sizes 1-4 (per-sample noise), SGD at 0.76, RNN, CNN, slow runs near
    # their baseline, and two repaired peer cases.
    "healthy/22",
    "healthy/34",
    "healthy/46",
    "healthy/10",
    "healthy/40",
    "healthy/48",
    "healthy/66",
    "peer/blob_sgd_batch1",
    "peer/circle_adam_repaired",
    # Faulty: every fault family, and three peer faults.
    "nan_in_data/100036",
    "learning_rate_too_large/100026",
    "learning_rate_too_small/100008",
    "dying_relu/100012",
    "wrong_output_activation/100000",
    "wrong_loss/100022",
    "unnormalized_inputs/100024",
    "deep_sigmoid/100014",
    "bad_initialization/100030",
    "shuffled_labels/100038",
    "peer/circle_oscillating_sgd",
    "peer/blob_adam_1e-6",
    "peer/circle_gradient_vanish",
]
# The quickest runs (under 200 steps or a few seconds each on an idle 2-core machine).
# (healthy/300 replaced healthy/14, which ended at 0.125 against a validation majority share of 0.133.)
GUARD_TRAINED = ["peer/reg20_sgd_explode", "healthy/28", "learning_rate_too_small/100028", "healthy/300"]


@pytest.fixture(scope="module")
def corpus_by_id():
    return {spec.id: spec for spec in corpus_specs() + peer_cases()}


@pytest.fixture(scope="module")
def guard_runs():
    from tests.benchmarks.guard_data import load_guard

    return load_guard()


def check_diagnosis(spec, record):
    problems = [f"{f['kind']}: {f['causes'][:1]}" for f in record["findings"] if f["severity"] == "problem"]
    if spec.group == "healthy":
        assert problems == [], f"{spec.id} flagged: {problems}"
    else:
        assert flagged(record), f"{spec.id} missed; findings: {[f['kind'] for f in record['findings']]}"
        assert top_cause(first_problem(record)) == spec.planted_cause, f"{spec.id}: {problems}"


@pytest.mark.parametrize("run_id", GUARD_REPLAYED)
def test_replayed_corpus_runs_keep_their_diagnosis(corpus_by_id, guard_runs, run_id):
    from benchmarks.diagnosis_corpus.replay import replay_record
    from benchmarks.diagnosis_corpus.runner import probe_baselines

    records, traces = guard_runs
    spec = corpus_by_id[run_id]
    record = records[run_id]
    assert RunSpec.from_dict(record["spec"]) == spec  # the recorded run is the corpus' run
    if spec.group == "healthy":
        assert record["trained"], f"{run_id} did not beat its baseline"
    check_diagnosis(spec, replay_record(record, traces.get(run_id), probe_baselines(spec)))


@pytest.mark.slow
@pytest.mark.parametrize("run_id", GUARD_TRAINED)
def test_trained_corpus_runs_keep_their_diagnosis_and_agree_with_their_replay(corpus_by_id, run_id):
    from benchmarks.diagnosis_corpus.replay import REPLAYED_KINDS, replay_record
    from benchmarks.diagnosis_corpus.runner import probe_baselines, run_spec

    spec = corpus_by_id[run_id]
    record = run_spec(spec)
    if spec.group == "healthy":
        assert record["trained"], f"{run_id} did not beat its baseline: {record['score']} vs {record['baseline']}"
    check_diagnosis(spec, record)
    replayed = replay_record(record, record["trace"], probe_baselines(spec))
    kinds = (*REPLAYED_KINDS, "no_signal")

    def decisions(findings):
        return sorted((f["kind"], f["step"], f["severity"]) for f in findings if f["kind"] in kinds)

    assert decisions(replayed["findings"]) == decisions(record["findings"])
