"""The problem bench: every problem found in the first epoch, naming the right layers;
healthy models raise no finding; remedies rescue the diverging run."""

import math

import keras
import numpy as np
import pytest

from keras_lossopt.callbacks import check_training_setup
from tests.callbacks.problem_bench import CASES, SETUP_KINDS, bench_data, compiled_model, run_case

# Full runs of the bench's batch-32 digits cases; the faults visible before training are checked
# on their first batch without training; the rest (seeds, small batches) is benchmarks/bench_monitor.py.
FULL = [
    c
    for c in CASES
    if c.batch_size == 32 and c.epochs <= 3 and c.data == "digits" and c.loss != "sparse_categorical_crossentropy"
]
PROBLEMS = [c for c in FULL if c.expected and c.expected not in SETUP_KINDS]
HEALTHY = [c for c in FULL if not c.expected]
BEFORE_TRAINING = [c for c in CASES if c.expected in SETUP_KINDS]


@pytest.mark.slow  # full training runs; the TensorFlow run covers them, test_gradient_monitor the backends
@pytest.mark.parametrize("case", PROBLEMS, ids=[c.id for c in PROBLEMS])
def test_problem_is_found_in_the_first_epoch_and_names_the_layers(case):
    run = run_case(case)
    found = [f for f in run.findings if f.kind == case.expected]
    assert found, f"{case.id}: no {case.expected!r} finding; got {[str(f) for f in run.findings]}"
    first = min(found, key=lambda f: f.step)
    assert first.step < run.steps_per_epoch
    assert set(case.layers) <= set(first.layers), first.layers
    assert first.evidence and all(isinstance(v, (int, float)) for v in first.evidence.values())
    assert first.remedy and first.cause
    # The cause planted in the case is ranked first, with its numbers.
    assert first.causes and first.causes[0].key == case.cause, first.cause
    assert first.causes[0].evidence


@pytest.mark.parametrize("case", BEFORE_TRAINING, ids=[c.id for c in BEFORE_TRAINING])
def test_faults_visible_before_training_are_found_on_the_first_batch(case):
    keras.utils.set_random_seed(0)
    x, y, _, _ = bench_data(case, samples=case.batch_size)
    findings = check_training_setup(compiled_model(case), x, y)
    assert [f.kind for f in findings][:1] == [case.expected], [str(f) for f in findings]
    assert set(case.layers) <= set(findings[0].layers)


@pytest.mark.slow  # full training runs; the TensorFlow run covers them, test_gradient_monitor the backends
@pytest.mark.parametrize("case", HEALTHY, ids=[c.id for c in HEALTHY])
def test_healthy_models_raise_no_finding(case):
    run = run_case(case)
    assert run.findings == []
    losses = run.history.history["loss"]
    assert losses[-1] < losses[0]  # they do train
    assert len(run.monitor.history) == case.epochs * run.steps_per_epoch


@pytest.mark.slow  # full training runs; the TensorFlow run covers them, test_gradient_monitor the backends
def test_vanishing_evidence_matches_the_recorded_norms():
    run = run_case(CASES[0])
    finding = next(f for f in run.monitor.findings if f.kind == "vanishing")
    h = run.monitor.history
    row = int(np.flatnonzero(h.steps == finding.step)[0])
    norms = h.grad_norm[row]
    assert finding.evidence["last_layer_norm"] == pytest.approx(norms[-1])
    expected = tuple(n for n, v in zip(h.layers[:-1], norms[:-1]) if v < 1e-3 * norms[-1])
    assert finding.layers == expected
    assert "saturating" in finding.cause


@pytest.mark.slow  # full training runs; the TensorFlow run covers them, test_gradient_monitor the backends
def test_non_finite_restores_the_last_good_weights_and_stops():
    run = run_case(CASES[2], epochs=2)
    kinds = [f.kind for f in run.monitor.findings]
    assert "exploding" in kinds and "non_finite" in kinds
    assert kinds.index("exploding") < kinds.index("non_finite")  # the warning came first
    assert run.model.stop_training
    assert run.monitor.restored_step is not None and run.monitor.restored_step >= 0
    weights = [v.numpy() for v in run.model.trainable_variables]
    assert all(np.isfinite(w).all() for w in weights)
    # The restored weights are those the model had before the step named: its recorded
    # global norm is below the ceiling, the following steps' are not.
    h = run.monitor.history
    assert h.global_grad_norm[h.steps == run.monitor.restored_step][0] <= run.monitor.exploding_norm


@pytest.mark.slow  # full training runs; the TensorFlow run covers them, test_gradient_monitor the backends
@pytest.mark.parametrize("remedy", ["clip", "reduce_lr"])
def test_remedies_make_the_diverging_run_finish_with_a_finite_loss(remedy):
    run = run_case(CASES[2], on_problem=remedy, epochs=2)
    losses = run.history.history["loss"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 1.0
    assert any(remedy_word in f.action for f in run.monitor.findings for remedy_word in ("clipnorm", "learning rate"))
    if remedy == "clip":
        assert run.model.optimizer.global_clipnorm is not None
    else:
        assert float(run.model.optimizer.learning_rate.numpy()) < 1.0
