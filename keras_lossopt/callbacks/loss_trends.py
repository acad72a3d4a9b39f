"""Oscillating and stalled training, read from the loss series: pure NumPy, noise-aware.

`LossTrendDetector` takes the per-batch training losses (`update`) and the epoch logs
(`update_epoch`) and returns `Finding`s (cause and remedy are left to the callback, which
ranks the causes with the model at hand). Per-batch losses are noisy: with batch size 1
each is the loss of one sample, whose spread is of the order of the loss itself, and a
rule tuned on batches of 32 fires on that noise. The rules therefore compare the trend
with the run's own noise:

* oscillating_loss: over the last `window` (20) losses, the mean absolute batch-to-batch
  change exceeds `oscillation_threshold` (1.0) times the starting loss (mean of the first 5
  batches), the window's second half has not gone down (medians), and its lower quartile
  is at least `oscillation_rise` (1.5) times the starting median: a run whose steps are too
  large climbs and stays there (the bench's unstable run 30x, the ported AUTOTRAINER case
  2.4x), small-batch noise swings around a level that falls or stays at the start. With
  `baseline_loss`, neither start reference goes below the trivial baseline (a network starts
  near it or above it): i.i.d. exponential losses (batch size 1 of a regression) at 1.07x it
  passed the rise in 27% of 200-step runs against the median of 5, in none against the
  baseline (300 simulated runs). A swing while the weights moved less than `still_weights`
  is small-batch noise around a model that does not learn.
* stalled_loss: the mean of the last `n` losses is not below `1 - stall_tolerance` (0.99)
  times the mean of the first `n`, `n >= 10` large enough for each mean's noise to be at
  most half the tolerance (`n >= (2 sigma / (tol x mean))^2`, sigma = `std(diff) / sqrt 2`
  of consecutive losses, which a trend does not inflate). It runs once, at the first step
  at or after `stall_steps` (50) with `2 n` losses (a few hundred at batch size 1), and not
  when the noise would need more than 40 x `stall_steps` losses.
* stalled_metric: with validation data, after `metric_patience + 1` (3) epochs, the best
  validation loss of the last `metric_patience` epochs improved on the best before them
  by less than `metric_rate` (2%) per epoch or by no more than twice the curve's
  epoch-to-epoch noise (the robust spread of its changes, from 4 changes on), or every
  logged validation accuracy (`val_*acc*`) gained less than `metric_accuracy_gain` (0.01)
  per epoch.
* no_signal (at `finish`, with `baseline_loss`): after `signal_epochs` epochs the best
  validation loss never got `signal_margin` below the baseline, no logged validation
  accuracy (3-epoch mean) ever beat the majority share, the weights moved, and the run is
  not still finding signal (the validation loss at its best in the last `metric_patience`
  epochs and either below the baseline or with a training loss `SIGNAL_TRAIN_ERRORS`
  standard errors of its epoch mean below it and a validation accuracy not under the
  majority share): labels shuffled against the inputs. From `EARLY_SIGNAL_EPOCHS` (5)
  epochs with evidence that needs no averaging: see `_learning_signal`.
* overfitting (severity "information"): the validation loss has been above its best for
  `overfit_epochs` (3) epochs while the training loss went on falling below its value at
  that best epoch (UMLAUT's and AUTOTRAINER's check).

A stall is a *problem* only when the weights barely moved for the steps taken and the run
made no progress: with `weight_change` (a callable giving
||w_now - w_start|| / ||w_start||, which `TrainingDiagnostics` passes), the weights changed
by less than `still_step_movement` x sqrt(steps seen) of their norm (the steps are too
small, or no gradient arrives: a learning rate far too small, a dead or saturated network,
a loss that gives no gradient), and either the training loss is not `signal_margin` below
its starting level (mean of the first 10 batches) or, with `baseline_loss`, it is not
`signal_margin` below the baseline nor a logged validation accuracy `SIGNAL_ACCURACY_GAIN`
above the majority share. A run that starts past its baseline by the luck of its initial
weights (a random tanh network at 0.78 on breast cancer) and stays there made no progress.
The training loss, not the validation loss, is compared: the
probe batch the baseline comes from is training data, and a validation set of 128 samples
can sit a third below it (the corpus' noisy regression: 0.43 against 0.67). Any other stall
is a plateau after real progress, a task at its ceiling or a converged run: information.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from keras_lossopt._validation import check_int, check_positive, check_probability
from keras_lossopt.callbacks._learning_signal import (
    SIGNAL_ACCURACY_GAIN,
    SIGNAL_EPOCHS,
    SIGNAL_MARGIN,
    SIGNAL_WINDOW,
    no_signal_evidence,
)
from keras_lossopt.callbacks.findings import Finding

__all__ = ["LOSS_KINDS", "LossTrendDetector"]

LOSS_KINDS = ("oscillating_loss", "stalled_loss", "stalled_metric", "overfitting", "no_signal")
"""The finding kinds `LossTrendDetector` reports."""
_START = 5  # batches that define the starting loss level of the oscillation test
_STALL_MEAN = 10  # the smallest number of losses averaged at each end by the stall test
_STALL_LIMIT = 40  # the stall test waits at most this many times `stall_steps` for enough losses
#: Mean absolute batch-to-batch change, over the starting loss, above which a loss that
#: makes no progress oscillates. Set on the corpus' calibration half (even seeds, 54 runs):
#: the two healthy runs that trained and swung (batch 4 on a noisy regression, batch 8)
#: reached 0.63 and 0.51, so 0.5 flagged them; the runs that oscillate because they
#: diverge swing from 0.5 to 1e17 but are found first as exploding, non-finite or vanishing
#: (no faulty run of the calibration half had an oscillation as its first problem).
OSCILLATION_THRESHOLD = 1.0
#: The window's lower-quartile loss over the starting median from which a swing is an oscillation.
#: Set on the corpus' calibration half: healthy runs that trained and swung past the
#: threshold sat at 0.97x (batch 1, GRU) and 1.07x (batch 4, noisy regression) of their
#: start; the runs that oscillate because of their steps climb (the ported AUTOTRAINER
#: case 2.4x, untrained high-rate draws 2.1x to 5e9x).
OSCILLATION_RISE = 1.5
#: Weights that moved less than this share of their norm since the start barely moved: their
#: swing is no oscillation, and a run without signal is left to the stall rules. Set on the
#: corpus' calibration half (54 runs): healthy stalls had moved 0.022 to 5.6, the stalls of
#: the learning-rate-too-small, dying-ReLU, deep-sigmoid and tiny-initialization faults 0.0
#: to 0.002 (a stall's own severity scales with its steps: `STILL_STEP_MOVEMENT`).
STILL_WEIGHTS = 0.005
#: A stall is a problem only when the weights moved less than this share of their norm times
#: sqrt(steps taken): a stall judged at its third epoch after 3 steps (batch 512) or 400 (batch
#: 1) must not be called still for its few steps. Set on the corpus' calibration half (even
#: seeds to 798 and 100318: 248 healthy runs that trained, 160 faulty; `python -m
#: benchmarks.diagnosis_corpus.calibrate`): at their third epoch healthy runs had moved 1.7e-4 x
#: sqrt(steps) or more (a 5-layer GRU at SGD 1.3e-3 whose loss never left log 3), the
#: learning-rate-too-small runs 1.6e-5 or less; 5e-5 sits between them on a log scale (3e-4,
#: set on the first 159 healthy runs, flagged that GRU and a breast-cancer MLP at SGD 1.6e-3).
STILL_STEP_MOVEMENT = 5e-5


class LossTrendDetector:
    """Finds oscillating and stalled training in the per-batch losses and epoch logs.

    Args:
        window: losses the oscillation test looks at. Default 20.
        oscillation_threshold: mean absolute change over the starting loss above which
            the loss oscillates. Default `OSCILLATION_THRESHOLD`.
        oscillation_rise: a window whose lower quartile of losses is below
            `oscillation_rise` times the starting median is not oscillating (small-batch
            noise around a level that did not climb). Default `OSCILLATION_RISE`.
        stall_steps: the earliest step of the stall test. Default 50.
        stall_tolerance: relative decrease below which the loss stalls. Default 0.01.
        metric_patience: epochs over which the validation loss' progress is measured.
            Default 2.
        metric_rate: relative decrease per epoch below which the validation loss stalls.
            Default 0.02.
        metric_accuracy_gain: a logged validation accuracy that gains less than this per
            epoch is flat. Default 0.01.
        overfit_epochs: epochs the validation loss must stay above its best, while the
            training loss falls, for an overfitting finding. Default 3.
        weight_change: a callable returning the relative change of the weights since the
            start (or None when unknown), called when a stall is found; None (default):
            every stall is a problem.
        still_weights: relative weight change below which a swing is not an oscillation
            and a run without signal is left to the stall rules. Default `STILL_WEIGHTS`.
        still_step_movement: a stall is a problem only when the relative weight change is
            below this times the square root of the steps seen. Default
            `STILL_STEP_MOVEMENT`.
        baseline_loss: the trivial baseline loss (`trivial_baseline.trivial_loss`: the
            best constant prediction's), for the `no_signal` rule; None (default): no
            such rule.
        baseline_accuracy: the accuracy of always predicting the most frequent class
            (`trivial_baseline.trivial_accuracy`); with a logged validation accuracy, a
            run whose validation accuracy (3-epoch mean) beat it by `SIGNAL_ACCURACY_GAIN` has
            found signal. None (default): the loss alone decides.
        signal_epochs: epochs after which a validation loss that never beat the baseline
            by `signal_margin` can be a `no_signal` problem. Default `SIGNAL_EPOCHS`.
        signal_margin: the share of the baseline loss the best validation loss must get
            below. Default `SIGNAL_MARGIN`.

    Raises:
        ValueError: for an invalid argument.

    Examples:
        >>> detector = LossTrendDetector(stall_steps=20)
        >>> found = [f for step in range(20) for f in detector.update(step, 2.30 - 1e-5 * step)]
        >>> [(f.kind, f.step) for f in found]
        [('stalled_loss', 19)]
    """

    def __init__(
        self,
        *,
        window: int = 20,
        oscillation_threshold: float = OSCILLATION_THRESHOLD,
        oscillation_rise: float = OSCILLATION_RISE,
        stall_steps: int = 50,
        stall_tolerance: float = 0.01,
        metric_patience: int = 2,
        metric_rate: float = 0.02,
        metric_accuracy_gain: float = 0.01,
        overfit_epochs: int = 3,
        weight_change: Callable[[], float | None] | None = None,
        still_weights: float = STILL_WEIGHTS,
        still_step_movement: float = STILL_STEP_MOVEMENT,
        baseline_loss: float | None = None,
        baseline_accuracy: float | None = None,
        signal_epochs: int = SIGNAL_EPOCHS,
        signal_margin: float = SIGNAL_MARGIN,
    ):
        self.window = check_int("window", window, minimum=4)
        self.oscillation_threshold = check_positive("oscillation_threshold", oscillation_threshold)
        self.oscillation_rise = check_positive("oscillation_rise", oscillation_rise)
        self.stall_steps = check_int("stall_steps", stall_steps, minimum=2 * _STALL_MEAN)
        self.stall_tolerance = check_probability("stall_tolerance", stall_tolerance)
        self.metric_patience = check_int("metric_patience", metric_patience, minimum=1)
        self.metric_rate = check_probability("metric_rate", metric_rate)
        self.metric_accuracy_gain = check_probability("metric_accuracy_gain", metric_accuracy_gain)
        self.overfit_epochs = check_int("overfit_epochs", overfit_epochs, minimum=1)
        if weight_change is not None and not callable(weight_change):
            raise ValueError(f"`weight_change` must be a callable or None. Received: weight_change={weight_change!r}")
        self.weight_change = weight_change
        self.still_weights = check_positive("still_weights", still_weights)
        self.still_step_movement = check_positive("still_step_movement", still_step_movement)
        if baseline_loss is not None and not (isinstance(baseline_loss, (int, float)) and baseline_loss > 0):
            raise ValueError(
                f"`baseline_loss` must be a positive number or None. Received: baseline_loss={baseline_loss!r}"
            )
        self.baseline_loss = None if baseline_loss is None else float(baseline_loss)
        self.baseline_accuracy = (
            None if baseline_accuracy is None else check_probability("baseline_accuracy", baseline_accuracy)
        )
        self.signal_epochs = check_int("signal_epochs", signal_epochs, minimum=1)
        self.signal_margin = check_probability("signal_margin", signal_margin)
        # O(window) work per batch: the first losses, the last `window`, and the whole
        # series only until the stall test has run.
        self.start_losses: list[float] = []
        self.recent_losses: collections.deque[float] = collections.deque(maxlen=self.window)
        self._series: list[float] | None = []
        self._count = 0
        self._quiet_until = 0
        self.val_losses: list[float] = []
        self.train_losses: list[float] = []
        self.val_accuracies: dict[str, list[float]] = {}
        self._epoch_begin_count = 0
        self.epoch_batches = 0
        self.reported: set[str] = set()

    def update(self, step: int, loss: float) -> list[Finding]:
        """Adds the loss of one batch and runs the loss rules.

        Args:
            step: the optimizer step of the batch (0-based).
            loss: its loss (per batch, not Keras' running mean).

        Returns:
            The findings (at most one per kind per run).
        """
        loss = float(loss)
        self._count += 1
        if len(self.start_losses) < _STALL_MEAN:
            self.start_losses.append(loss)
        self.recent_losses.append(loss)
        if self._series is not None:
            self._series.append(loss)
        if not math.isfinite(loss):
            return []  # a non-finite loss is GradientMonitor's finding
        findings = []
        oscillation = self._oscillation()
        if oscillation is not None:
            findings.append(self._finding("oscillating_loss", step, oscillation))
        stall = self._stall()
        if stall is not None:
            findings.append(self._finding("stalled_loss", step, stall, self._stall_severity(stall, stall["loss_now"])))
        return [f for f in findings if f is not None]

    def update_epoch(self, step: int, logs: Mapping[str, Any]) -> list[Finding]:
        """Adds one epoch's logs (`loss`, `val_loss`, validation metrics); runs the metric and overfitting rules.

        Args:
            step: the last optimizer step of the epoch (0-based).
            logs: the epoch logs Keras passes to `on_epoch_end`.

        Returns:
            The findings (a `stalled_metric` and an `overfitting` at most once per run each).
        """
        self.epoch_batches = self._count - self._epoch_begin_count
        self._epoch_begin_count = self._count
        value = logs.get("val_loss")
        if value is None or not math.isfinite(float(value)):
            return []
        self.val_losses.append(float(value))
        train = logs.get("loss")
        self.train_losses.append(float(train) if train is not None else math.nan)
        for key, metric in logs.items():
            if key.startswith("val_") and "acc" in key and isinstance(metric, (int, float, np.floating)):
                self.val_accuracies.setdefault(key, []).append(float(metric))
        findings = []
        overfitting = self._overfitting()
        if overfitting is not None:
            findings.append(self._finding("overfitting", step, overfitting, "information"))
        stalled = self._stalled_metric()
        if stalled is not None:
            severity = self._stall_severity(stalled, self.train_losses[-1])
            findings.append(self._finding("stalled_metric", step, stalled, severity))
        return [f for f in findings if f is not None]

    def finish(self, step: int) -> list[Finding]:
        """Runs the rules that judge the whole run, at the end of training (`no_signal`).

        Args:
            step: the last optimizer step (0-based).

        Returns:
            The findings (a `no_signal` at most once per run).
        """
        evidence = no_signal_evidence(self)
        found = None if evidence is None else self._finding("no_signal", step, evidence)
        return [] if found is None else [found]

    def _stalled_metric(self) -> dict[str, float] | None:
        p = self.metric_patience
        if len(self.val_losses) < p + 1 or "stalled_metric" in self.reported:
            return None
        values = np.asarray(self.val_losses, dtype="float64")
        now, before = float(values[-1]), float(values[-1 - p])
        # Progress of the best: what the last p epochs gained on the best before them, against
        # the rate and twice the epoch-to-epoch noise (robust spread of the changes around
        # their median, from 4 changes on): a noisy curve must gain past its noise.
        best_before, best_recent = float(values[:-p].min()), float(values[-p:].min())
        rate = (best_before - best_recent) / (abs(best_before) * p) if best_before else 0.0
        changes = np.diff(values)
        noise = 1.4826 * float(np.median(np.abs(changes - np.median(changes)))) if changes.size >= 4 else 0.0
        gained = best_before - best_recent
        gains = {
            key: (series[-1] - series[-1 - p]) / p for key, series in self.val_accuracies.items() if len(series) > p
        }
        flat_accuracy = bool(gains) and max(gains.values()) < self.metric_accuracy_gain
        if rate >= self.metric_rate and gained > 2 * noise and not flat_accuracy:
            return None
        finite = [v for v in self.start_losses if math.isfinite(v)]
        evidence = {
            "val_loss_now": now,
            f"val_loss_{p}_epochs_before": before,
            "decrease_per_epoch": rate,
            "val_loss_noise": noise,
            "epochs": len(self.val_losses),
        }
        if finite:
            evidence["starting_loss"] = float(np.mean(finite))
        for key, gain in gains.items():
            evidence[key] = self.val_accuracies[key][-1]
            evidence[f"{key}_gain_per_epoch"] = gain
        return evidence

    def _overfitting(self) -> dict[str, float] | None:
        k = self.overfit_epochs
        if "overfitting" in self.reported or len(self.val_losses) < k + 1:
            return None
        best = int(np.argmin(self.val_losses))
        since = len(self.val_losses) - 1 - best
        train_best, train_now = self.train_losses[best], self.train_losses[-1]
        if since < k or not train_now < train_best:
            return None
        return {
            "best_val_loss": self.val_losses[best],
            "best_epoch": best + 1,
            "val_loss_now": self.val_losses[-1],
            "train_loss_at_best": train_best,
            "train_loss_now": train_now,
            "epochs_since_best": since,
        }

    def _stall_severity(self, evidence: dict[str, float], train_loss: float) -> str:
        """A stall is a problem only when the weights barely moved for the steps taken and the
        training loss made no progress: not below its start, or not past the trivial baseline
        (see the module docstring)."""
        still = True
        if self.weight_change is not None:
            change = self.weight_change()
            if change is not None and math.isfinite(change):
                limit = self.still_step_movement * math.sqrt(max(self._count, 1))
                evidence.update(relative_weight_change=float(change), still_below=limit)
                still = change < limit
        progress = False
        if self.baseline_loss is not None and math.isfinite(train_loss):
            evidence.update(train_loss_over_baseline=train_loss / self.baseline_loss)
            progress = train_loss < (1 - self.signal_margin) * self.baseline_loss
        if self.baseline_accuracy is not None and self.val_accuracies:
            recent = max(float(np.mean(v[-SIGNAL_WINDOW:])) for v in self.val_accuracies.values())
            progress = progress or recent >= self.baseline_accuracy + SIGNAL_ACCURACY_GAIN
        start = [v for v in self.start_losses if math.isfinite(v)]
        if start and math.isfinite(train_loss):
            # Past the baseline from the start (the initial weights' luck) is no progress.
            evidence.update(train_loss_over_start=train_loss / float(np.mean(start)))
            progress = progress and train_loss < (1 - self.signal_margin) * float(np.mean(start))
        return "problem" if still and not progress else "information"

    # -- the rules -----------------------------------------------------------------------

    def _oscillation(self) -> dict[str, float] | None:
        w = self.window
        if self._count < w or "oscillating_loss" in self.reported or self._count < self._quiet_until:
            return None
        window = np.asarray(self.recent_losses, dtype="float64")
        first = np.asarray(self.start_losses[:_START], dtype="float64")
        if not np.isfinite(window).all() or not np.isfinite(first).all():
            return None
        start_scale = max(float(np.mean(np.abs(first))), 1e-12)
        start_median = float(np.median(first))
        if self.baseline_loss is not None:
            # The first 5 losses of a batch of 1 are 5 samples: their median can sit far below
            # the level the loss starts at, and the loss then looks risen. A network starts near
            # its trivial baseline or above it, so neither reference goes below it.
            start_scale, start_median = max(start_scale, self.baseline_loss), max(start_median, self.baseline_loss)
        swing = float(np.mean(np.abs(np.diff(window)))) / start_scale
        half = w // 2
        not_decreasing = np.median(window[half:]) >= np.median(window[:half])
        level = float(np.median(window))
        no_progress = float(np.quantile(window, 0.25)) >= self.oscillation_rise * start_median
        if not (swing > self.oscillation_threshold and not_decreasing and no_progress):
            return None
        change = self.weight_change() if self.weight_change is not None else None
        if change is not None and math.isfinite(change) and change < self.still_weights:
            # Steps too large to descend move the weights; a loss that swings while the
            # weights stay put is the noise of small batches around a model that is not
            # learning (a stall, judged by its own rule). Look again a window later.
            self._quiet_until = self._count + w
            return None
        return {
            "mean_abs_change_over_start_loss": swing,
            "threshold": self.oscillation_threshold,
            "window_median_over_start": level / start_median if start_median else math.inf,
            "window": w,
        }

    def _stall(self) -> dict[str, float] | None:
        if self._series is None or self._count < self.stall_steps:
            return None
        losses = np.asarray(self._series, dtype="float64")
        start = float(np.mean(losses[:_STALL_MEAN]))
        if not np.isfinite(losses).all() or start <= 0:
            self._series = None  # a non-finite or non-positive loss: no relative stall test
            return None
        noise = float(np.std(np.diff(losses))) / math.sqrt(2)
        n = max(_STALL_MEAN, math.ceil((2 * noise / (self.stall_tolerance * start)) ** 2))
        if 2 * n > len(losses):
            if 2 * n > _STALL_LIMIT * self.stall_steps:
                self._series = None  # too noisy to judge a change of `stall_tolerance`
            # Not enough losses yet to see a change of `stall_tolerance` through this noise.
            return None
        self._series = None
        start, end = float(np.mean(losses[:n])), float(np.mean(losses[-n:]))
        if end <= (1 - self.stall_tolerance) * start:
            return None
        return {"first_loss": start, "loss_now": end, "steps": len(losses), "averaged": n, "noise": noise}

    def _finding(self, kind: str, step: int, evidence: dict[str, float], severity: str = "problem") -> Finding | None:
        if kind in self.reported:
            return None
        self.reported.add(kind)
        return Finding(kind=kind, step=int(step), layers=(), evidence=evidence, cause="", remedy="", severity=severity)
