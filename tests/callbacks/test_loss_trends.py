"""LossTrendDetector on synthetic loss series: each rule's fault, its noisy healthy twin, NumPy evidence."""

import math

import numpy as np
import pytest

from keras_lossopt.callbacks.loss_trends import LossTrendDetector


def feed(detector, losses):
    return [f for step, loss in enumerate(losses) for f in detector.update(step, loss)]


def per_sample_noise(rng, steps, start=2.3, end=0.4):
    """Per-sample losses of a healthy run at batch size 1 (digits, SGD): all close to log(10)
    at the start, then a falling mean with a spread that grows to the mean's size
    (gamma-distributed, coefficient of variation from 0.1 to 1)."""
    progress = np.arange(steps) / steps
    mean = start * (end / start) ** progress
    shape = 100.0 ** (1 - np.minimum(4 * progress, 1))
    return mean * rng.gamma(shape) / shape


def test_an_unstable_run_oscillates_above_its_start(rng):
    losses = np.concatenate([[2.4, 3.7, 17.0, 26.0, 27.0], rng.uniform(15, 100, size=40)])
    findings = feed(LossTrendDetector(), losses)
    finding = next(f for f in findings if f.kind == "oscillating_loss")
    window = losses[finding.step - 19 : finding.step + 1]
    assert finding.evidence["mean_abs_change_over_start_loss"] == pytest.approx(
        np.mean(np.abs(np.diff(window))) / np.mean(losses[:5])
    )
    assert finding.evidence["window_median_over_start"] == pytest.approx(np.median(window) / np.median(losses[:5]))


def test_per_sample_noise_of_batch_size_one_is_not_an_oscillation(rng):
    losses = per_sample_noise(rng, 1200)
    window_swings = [np.mean(np.abs(np.diff(losses[i - 20 : i]))) / np.mean(losses[:5]) for i in range(20, 1200)]
    assert max(window_swings) > 0.5  # the old rule's threshold is crossed by noise alone
    assert [f.kind for f in feed(LossTrendDetector(), losses)] == []


def test_batch_of_32_alternating_losses_that_climb_oscillate():
    findings = feed(LossTrendDetector(), [1.0, 3.0, 1.0, 3.0, 1.0] + [3.0, 6.0] * 15)
    assert [(f.kind, f.step) for f in findings] == [("oscillating_loss", 19)]


def test_a_flat_loss_stalls_at_stall_steps(rng):
    losses = 2.3 + 0.01 * rng.normal(size=60)
    findings = feed(LossTrendDetector(), losses)
    finding = next(f for f in findings if f.kind == "stalled_loss")
    assert finding.step == 49 and finding.evidence["averaged"] == 10
    assert finding.evidence["first_loss"] == pytest.approx(losses[:10].mean())
    assert finding.evidence["loss_now"] == pytest.approx(losses[40:50].mean())
    assert finding.evidence["noise"] == pytest.approx(np.std(np.diff(losses[:50])) / math.sqrt(2))


def test_noisy_single_sample_losses_wait_for_enough_samples_to_judge_a_stall(rng):
    # A flat loss with the per-sample noise of an untrained model (sd 10% of the loss): 50
    # single samples cannot show a 1% change; the test waits for n = (2 sd / (1% mean))^2.
    flat = 2.3 * (1 + 0.1 * rng.normal(size=1500))
    found = feed(LossTrendDetector(), flat)
    assert [f.kind for f in found] == ["stalled_loss"]
    noise = np.std(np.diff(flat[: found[0].step + 1])) / math.sqrt(2)
    n = math.ceil((2 * noise / (0.01 * flat[:10].mean())) ** 2)
    assert found[0].evidence["averaged"] == n and found[0].step == 2 * n - 1 > 49
    # A healthy per-sample run is never called stalled.
    assert feed(LossTrendDetector(), per_sample_noise(rng, 1200)) == []


def test_too_noisy_to_judge_is_not_a_stall(rng):
    flat = 2.3 * rng.exponential(size=3000)  # sd 100% of the loss: n would be 40,000
    assert "stalled_loss" not in [f.kind for f in feed(LossTrendDetector(), flat)]


def test_a_falling_loss_does_not_stall(rng):
    losses = 2.3 * np.exp(-np.arange(60) / 40) + 0.05 * rng.normal(size=60)
    assert feed(LossTrendDetector(), losses) == []


def epochs(detector, val_losses, logs=None):
    found = []
    for epoch, value in enumerate(val_losses):
        found += detector.update_epoch(37 * (epoch + 1) - 1, {"val_loss": value, **(logs or {})})
    return found


def test_a_validation_loss_that_stays_near_the_start_stalls():
    detector = LossTrendDetector()
    feed(detector, [2.37] * 10)
    findings = epochs(detector, [2.350, 2.348, 2.346, 2.343], {"val_accuracy": 0.41})
    assert [(f.kind, f.step) for f in findings] == [("stalled_metric", 110)]
    evidence = findings[0].evidence
    assert evidence["decrease_per_epoch"] == pytest.approx((2.350 - 2.346) / (2.350 * 2))
    assert evidence["val_accuracy"] == 0.41 and evidence["starting_loss"] == pytest.approx(2.37)
    assert evidence["val_accuracy_gain_per_epoch"] == 0.0


@pytest.mark.parametrize("accuracies, fires", [([0.40, 0.41, 0.41], True), ([0.40, 0.55, 0.70], False)])
def test_a_flat_validation_accuracy_stalls_while_the_loss_still_falls(accuracies, fires):
    # MNIST at Adam 1e-5: the loss falls about 5% per epoch, accuracy stays at 0.41.
    detector = LossTrendDetector()
    feed(detector, [2.30] * 10)
    found = []
    for epoch, (loss, accuracy) in enumerate(zip([2.10, 2.00, 1.90], accuracies)):
        found += detector.update_epoch(epoch, {"val_loss": loss, "val_accuracy": accuracy})
    assert [f.kind for f in found] == (["stalled_metric"] if fires else [])
    if fires:
        assert found[0].evidence["decrease_per_epoch"] == pytest.approx((2.10 - 1.90) / (2.10 * 2))


def test_a_learning_run_does_not_stall():
    detector = LossTrendDetector()
    feed(detector, [2.3] * 10)
    assert epochs(detector, [2.16, 1.77, 1.21, 0.9]) == []


@pytest.mark.parametrize("moved, severity", [(0.4, "information"), (0.001, "problem"), (None, "problem")])
def test_a_plateau_is_a_problem_only_when_the_weights_stayed_put(moved, severity):
    # A run at its task's ceiling (validation loss 0.67 of a two-class task that starts at
    # 0.69) moved its weights to get there; a learning rate far too small did not.
    calls = []

    def weight_change():
        calls.append(1)
        return moved

    detector = LossTrendDetector(weight_change=weight_change)
    feed(detector, [0.693] * 10)
    findings = epochs(detector, [0.672, 0.670, 0.671, 0.670])
    assert [(f.kind, f.severity) for f in findings] == [("stalled_metric", severity)]
    assert len(calls) == 1  # asked once, when the stall is found
    if moved is not None:
        assert findings[0].evidence["relative_weight_change"] == moved
        assert findings[0].evidence["still_weights"] == detector.still_weights
    else:
        assert "relative_weight_change" not in findings[0].evidence


def test_without_a_weight_change_every_stall_is_a_problem(rng):
    findings = feed(LossTrendDetector(), 2.3 + 0.01 * rng.normal(size=60))
    assert [(f.kind, f.severity) for f in findings] == [("stalled_loss", "problem")]


def test_a_stalled_loss_with_moving_weights_is_information(rng):
    detector = LossTrendDetector(weight_change=lambda: 0.3)
    findings = feed(detector, 2.3 + 0.01 * rng.normal(size=60))
    assert [(f.kind, f.severity) for f in findings] == [("stalled_loss", "information")]


def test_a_swinging_loss_with_still_weights_is_not_an_oscillation():
    # Batch size 4 at SGD 1e-7: the loss swings by its per-sample noise around a model
    # that does not move; the same swings with moving weights are an oscillation.
    swings = [1.0, 3.0, 1.0, 3.0, 1.0] + [3.0, 6.0] * 15
    still = LossTrendDetector(weight_change=lambda: 1e-6)
    assert feed(still, swings) == []
    moving = LossTrendDetector(weight_change=lambda: 0.5)
    assert [(f.kind, f.severity) for f in feed(moving, swings)] == [("oscillating_loss", "problem")]


def overfit_logs(train, val):
    return [{"loss": t, "val_loss": v} for t, v in zip(train, val)]


@pytest.mark.parametrize(
    "train, val, fires_at",
    [
        # Training loss falls throughout; validation bottoms out at epoch 3 (index 2).
        ([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.0, 0.9, 0.85, 0.9, 0.95, 1.0], 5),
        # Validation above its best for only 2 epochs: not yet.
        ([1.0, 0.8, 0.6, 0.5, 0.4], [1.0, 0.9, 0.85, 0.9, 0.95], None),
        # Both rise (divergence, not overfitting).
        ([1.0, 0.8, 0.6, 0.9, 1.2, 1.5], [1.0, 0.9, 0.85, 0.9, 0.95, 1.0], None),
    ],
    ids=["overfits", "too_early", "both_rise"],
)
def test_overfitting_is_information_after_k_epochs_above_the_best(train, val, fires_at):
    detector = LossTrendDetector(metric_rate=1e-9, metric_accuracy_gain=1e-9, weight_change=lambda: 1.0)
    found = []
    for epoch, logs in enumerate(overfit_logs(train, val)):
        found += [(epoch, f) for f in detector.update_epoch(epoch, logs) if f.kind == "overfitting"]
    if fires_at is None:
        assert found == []
        return
    [(epoch, finding)] = found
    assert epoch == fires_at and finding.severity == "information"
    best = int(np.argmin(val))
    assert finding.evidence["best_epoch"] == best + 1
    assert finding.evidence["epochs_since_best"] == fires_at - best == 3
    assert finding.evidence["train_loss_now"] < finding.evidence["train_loss_at_best"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 3}, r"`window` must be >= 4"),
        ({"oscillation_rise": 0}, r"`oscillation_rise` must be > 0"),
        ({"stall_steps": 10}, r"`stall_steps` must be >= 20"),
        ({"oscillation_threshold": 0}, r"`oscillation_threshold` must be > 0"),
        ({"metric_rate": 2.0}, r"`metric_rate`"),
        ({"metric_patience": 0}, r"`metric_patience` must be >= 1"),
        ({"overfit_epochs": 0}, r"`overfit_epochs` must be >= 1"),
        ({"still_weights": 0}, r"`still_weights` must be > 0"),
        ({"weight_change": 0.1}, r"`weight_change` must be a callable"),
        ({"baseline_loss": 0.0}, r"`baseline_loss` must be a positive number or None"),
        ({"baseline_accuracy": 1.5}, r"`baseline_accuracy`"),
        ({"signal_epochs": 0}, r"`signal_epochs` must be >= 1"),
        ({"signal_margin": -0.1}, r"`signal_margin`"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossTrendDetector(**kwargs)


def run_epochs(detector, train, val, accuracy=None):
    found = []
    for epoch, (t, v) in enumerate(zip(train, val)):
        logs = {"loss": t, "val_loss": v}
        if accuracy is not None:
            logs["val_accuracy"] = accuracy[epoch]
        found += detector.update_epoch(10 * epoch + 9, logs)
    return found + detector.finish(10 * len(val) - 1)


# Shapes of the corpus' calibration runs: shuffled labels keep the validation loss at the
# trivial baseline (ln 3 for three balanced classes) while the weights move.
SHUFFLED_VAL = [1.125, 1.112, 1.105, 1.101, 1.099, 1.102, 1.100, 1.101]
LEARNING_VAL = [1.09, 0.95, 0.80, 0.71, 0.66, 0.62, 0.60, 0.59]


@pytest.mark.parametrize(
    "val, moved, accuracy, fires",
    [
        (SHUFFLED_VAL, 0.3, None, True),
        (SHUFFLED_VAL, 0.001, None, False),  # weights that stayed put: the stall rules judge it
        (LEARNING_VAL, 0.3, None, False),
        # Above the baseline loss but clearly above chance: an overconfident classifier.
        (SHUFFLED_VAL, 0.3, [0.45, 0.47, 0.48, 0.50, 0.51, 0.52, 0.52, 0.53], False),
        (SHUFFLED_VAL, 0.3, [0.33, 0.36, 0.31, 0.34, 0.35, 0.33, 0.34, 0.32], True),
        (SHUFFLED_VAL[:6], 0.3, None, False),  # too few epochs to judge (5-6 epoch slow starters)
        # Within the margin of the baseline but below it and still falling 1.4% per epoch:
        # a slow run finding signal (the corpus' healthy RMSprop run on five classes).
        ([1.18, 1.17, 1.16, 1.14, 1.12, 1.10, 1.085, 1.07], 0.3, None, False),
        ([1.18, 1.17, 1.16, 1.14, 1.12, 1.10, 1.10, 1.099], 0.3, None, True),  # flat at the baseline
    ],
)
def test_no_signal_when_the_validation_loss_never_beats_the_trivial_baseline(val, moved, accuracy, fires):
    baseline = math.log(3)
    detector = LossTrendDetector(
        weight_change=lambda: moved, baseline_loss=baseline, baseline_accuracy=1 / 3 if accuracy else None
    )
    found = [f for f in run_epochs(detector, [1.1] * len(val), val, accuracy) if f.kind == "no_signal"]
    assert bool(found) == fires
    if fires:
        (finding,) = found
        assert finding.severity == "problem" and finding.step == 10 * len(val) - 1
        assert finding.evidence["best_over_baseline"] == pytest.approx(min(val) / baseline)
        assert min(val) >= (1 - detector.signal_margin) * baseline


def test_no_signal_needs_a_baseline():
    detector = LossTrendDetector(weight_change=lambda: 0.3)
    assert [f.kind for f in run_epochs(detector, [1.1] * 8, SHUFFLED_VAL) if f.kind == "no_signal"] == []


def test_a_swing_at_the_starting_level_is_noise_and_a_climbing_swing_oscillates():
    # Alternating losses swing by the starting loss: at the start's level they are noise
    # (a small batch), climbed to 2.5x the start they oscillate (steps too large).
    start = [1.0, 3.0, 1.0, 3.0, 1.0]
    at_start = LossTrendDetector(weight_change=lambda: 0.3)
    assert [f.kind for f in feed(at_start, start + [0.9, 3.3] * 30) if f.kind == "oscillating_loss"] == []
    climbing = LossTrendDetector(weight_change=lambda: 0.3)
    found = [f for f in feed(climbing, start + [3.0, 6.0] * 30) if f.kind == "oscillating_loss"]
    window = np.array((start + [3.0, 6.0] * 30)[found[0].step - 19 : found[0].step + 1])
    assert np.quantile(window, 0.25) >= climbing.oscillation_rise * np.median(start)
