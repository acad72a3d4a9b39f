"""The `no_signal` rule of `LossTrendDetector`: the weights moved, yet the model never beat a constant prediction.

Labels shuffled against the inputs (or inputs without signal for the labels) bring the
training and validation losses down to the trivial baseline (the best constant prediction's
loss), not below it; a network that memorises them takes the training loss below while its
validation loss rises and its validation accuracy stays at or under the majority share.

From `signal_epochs` (7) epochs on, the rule needs: the best validation loss not
`signal_margin` below the baseline, no logged validation accuracy (best mean of 3
consecutive epochs) `SIGNAL_ACCURACY_GAIN` above the majority share, the weights moved, and
the run not still finding signal (`still_finding_signal`).

From `EARLY_SIGNAL_EPOCHS` (5) epochs, the shortest run the corpus draws, the same with
evidence that needs no averaging over epochs, on a classifier with a logged validation
accuracy (`early_evidence`): either no epoch's validation accuracy beat the majority share,
or the network memorises (training loss below the baseline while the validation loss
climbed above the baseline and above its first epoch's, and the best 3-epoch accuracy under
the majority share).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The rules read a `LossTrendDetector`'s epoch history; it is typed `Any` here because
# loss_trends imports this module (the layering test forbids the cycle, even for types).
LossTrendDetector = Any

__all__ = [
    "EARLY_SIGNAL_EPOCHS",
    "SIGNAL_ACCURACY_GAIN",
    "SIGNAL_EPOCHS",
    "SIGNAL_MARGIN",
    "SIGNAL_TRAIN_ERRORS",
    "SIGNAL_WINDOW",
    "best_window_mean",
    "early_evidence",
    "no_signal_evidence",
    "still_finding_signal",
]

#: The fewest epochs the `no_signal` rule needs with only its averaged evidence. Set on the
#: calibration half (159 healthy runs, 70 faulty): 5 or 6 flag 3 or 2 more healthy runs near
#: their baseline and find 1 more faulty run.
SIGNAL_EPOCHS = 7
#: The fewest epochs of the early rule (`early_evidence`): the corpus' shortest runs. Set on the
#: calibration half (even seeds, 235 healthy runs that trained, 154 faulty; the same with the
#: re-recorded runs, 248 and 160): with only the 7-epoch rule's evidence, 5 epochs flagged three
#: healthy runs (two GRUs at 0.42-0.43 against a 0.36 majority, a hard two-class MLP at 0.56
#: against 0.51; each beat the majority share in some epoch and none memorised); with
#: `early_evidence` none, and it finds the three shuffled-label runs of 5 and 6 epochs that the
#: 7-epoch rule missed.
EARLY_SIGNAL_EPOCHS = 5
#: The best validation loss must get this share below the trivial baseline loss. Set on the
#: calibration half: a healthy CNN (SGD 0.28, 5 epochs) reached 0.958 of its baseline, shuffled
#: labels 1.06 and 1.17 (regressions) and about 1.0 (classification).
SIGNAL_MARGIN = 0.03
#: A validation accuracy (3-epoch mean) this far above the majority share has found signal:
#: the corpus' own margin for "a healthy run trained" (`runner.ACCURACY_MARGIN`).
SIGNAL_ACCURACY_GAIN = 0.05
#: Epochs averaged for a validation accuracy (one epoch is noisy on 128 samples).
SIGNAL_WINDOW = 3
#: A training loss this many standard errors of its epoch mean below the trivial baseline, with
#: the validation loss at its best, is a slow run finding signal. Set on the calibration half (147
#: healthy runs that trained): those near the baseline with a validation loss above it had 1.6 to
#: 4.5 (a CNN at RMSprop 2.2e-3, batch 8: 1.9); shuffled labels still falling stayed 12.7 to 83
#: above it. One, not two: the probe's class shares (128 samples) put the baseline below the
#: training set's (for ten balanced classes by about 1.5%), so a run without signal sits above it.
SIGNAL_TRAIN_ERRORS = 1.0


def best_window_mean(values: list[float]) -> float:
    """The highest mean of `SIGNAL_WINDOW` consecutive epochs."""
    window = min(SIGNAL_WINDOW, len(values))
    return float(np.convolve(values, np.ones(window) / window, mode="valid").max())


def no_signal_evidence(detector: LossTrendDetector) -> dict[str, float] | None:
    """The evidence of a `no_signal` finding from the detector's epoch history, or None."""
    baseline = detector.baseline_loss
    epochs = len(detector.val_losses)
    fewest = min(detector.signal_epochs, EARLY_SIGNAL_EPOCHS)
    if baseline is None or "no_signal" in detector.reported or epochs < fewest:
        return None
    best = min(detector.val_losses)
    if best < (1 - detector.signal_margin) * baseline:
        return None
    learning = still_finding_signal(detector, baseline)
    if learning is None:
        return None
    evidence = {
        "best_val_loss": best,
        "baseline_loss": baseline,
        "best_over_baseline": best / baseline,
        "margin": detector.signal_margin,
        "epochs": epochs,
        **learning,
    }
    if detector.baseline_accuracy is not None and detector.val_accuracies:
        # An overconfident classifier can sit above the baseline loss while it beats chance,
        # and one that overfits may lose what it found: the best 3-epoch mean counts.
        found = max(best_window_mean(v) for v in detector.val_accuracies.values())
        evidence.update(val_accuracy_best=found, baseline_accuracy=detector.baseline_accuracy)
        if found >= detector.baseline_accuracy + SIGNAL_ACCURACY_GAIN:
            return None
    if epochs < detector.signal_epochs:
        early = early_evidence(detector, baseline)
        if early is None:
            return None
        evidence.update(early)
    change = detector.weight_change() if detector.weight_change is not None else None
    if change is None or not math.isfinite(change) or change < detector.still_weights:
        return None  # weights that barely moved: a stall (too small steps), judged by the stall rules
    evidence["relative_weight_change"] = float(change)
    return evidence


def early_evidence(detector: LossTrendDetector, baseline: float) -> dict[str, float] | None:
    """Evidence of no signal that needs no averaging over epochs (see the module docstring), or None.

    A run of 5 or 6 epochs has too few epochs for a 3-epoch mean to settle: healthy runs near
    their baseline (a GRU at 0.42 against a 0.36 majority share) sit under the averaged
    margin, but each beat the majority share in some epoch, and none memorised.
    """
    if detector.baseline_accuracy is None or not detector.val_accuracies:
        return None  # a regression: its validation loss alone is too noisy after 5 epochs
    majority = detector.baseline_accuracy
    highest = max(max(v) for v in detector.val_accuracies.values())
    if highest <= majority:
        return {"val_accuracy_highest": highest, "never_beat_majority": 1.0}
    values, train = detector.val_losses, detector.train_losses[-1]
    averaged = max(best_window_mean(v) for v in detector.val_accuracies.values())
    memorising = (
        math.isfinite(train)
        and train < (1 - detector.signal_margin) * baseline
        and values[-1] > max(baseline, values[0])
        and averaged < majority
    )
    return {"train_loss_over_baseline": train / baseline, "memorising": 1.0} if memorising else None


def still_finding_signal(detector: LossTrendDetector, baseline: float) -> dict[str, float] | None:
    """None when a run near the baseline is still finding signal, else the evidence that it is not.

    Still finding signal: the validation loss reached its best in the last
    `metric_patience` epochs, and either it is below the baseline or the training loss
    is `SIGNAL_TRAIN_ERRORS` standard errors of its epoch mean below it while a logged
    validation accuracy is not below the majority share. Shuffled labels bring both
    losses down to the baseline, not below it; a network that memorises them takes the
    training loss below while its validation loss rises or its accuracy stays under the
    majority share (the corpus' shuffled five-class run: 0.20 against 0.26).
    """
    values = detector.val_losses
    best_recent = int(np.argmin(values)) >= len(values) - detector.metric_patience
    train = detector.train_losses[-1]
    recent = np.asarray(detector.recent_losses, dtype="float64")
    recent = recent[np.isfinite(recent)]
    noise = float(np.std(np.diff(recent))) / math.sqrt(2) if recent.size > 2 else math.nan
    error = noise / math.sqrt(max(detector.epoch_batches, 1))
    below = (baseline - train) / error if error > 0 and math.isfinite(train) else math.nan
    if detector.baseline_accuracy is not None and detector.val_accuracies:
        accuracy = max(float(np.mean(v[-SIGNAL_WINDOW:])) for v in detector.val_accuracies.values())
        below = below if accuracy >= detector.baseline_accuracy else math.nan
    if best_recent and (values[-1] < baseline or below >= SIGNAL_TRAIN_ERRORS):
        return None
    return {"val_loss_now": values[-1], "train_loss_now": train, "train_below_baseline_in_errors": below}
