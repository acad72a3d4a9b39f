"""Oscillating and stalled training, read from the loss series: pure NumPy, noise-aware.

`LossTrendDetector` takes the per-batch training losses (`update`) and the epoch logs
(`update_epoch`) and returns `Finding`s (cause and remedy are left to the callback, which
ranks the causes with the model at hand). Per-batch losses are noisy: with batch size 1
each is the loss of one sample, whose spread is of the order of the loss itself, and a
rule tuned on batches of 32 fires on that noise. The rules therefore compare the trend
with the run's own noise:

* oscillating_loss: over the last `window` (20) losses, the mean absolute
  batch-to-batch change exceeds `oscillation_threshold` (0.5) times the starting loss
  (mean of the first 5 batches); the window's second half has not gone down (medians);
  and the window's median is not below `1 - progress_tolerance` (0.9) times the starting
  median. The last condition is the noise guard: a run that oscillates because its steps
  are too large makes no progress (the loss stays at or above where it started; in the
  bench's unstable run it is 30x the start), while the per-sample noise of a small batch
  swings around a falling loss (batch size 1 on digits: swing 0.52 of the start loss,
  median 0.4x the start).
* stalled_loss: the mean of the last `n` losses is not below `1 - stall_tolerance`
  (0.99) times the mean of the first `n`, where `n` is at least 10 and large enough that
  the noise of each mean is at most half the tolerance (`n >= (2 sigma / (tol x mean))^2`,
  sigma the batch-to-batch noise estimated from the differences of consecutive losses,
  `std(diff) / sqrt 2`, which a trend does not inflate). The check runs once, at the first
  step at or after `stall_steps` (50) with `2 n` losses: 50 steps at batch 32, a few
  hundred at batch size 1, where 50 single samples cannot show a 1% change. When the
  noise would need more than 40 x `stall_steps` losses, the test is not made.
* stalled_metric: with validation data, after `metric_patience + 1` (3) epochs the
  validation loss is still above `1 - metric_progress` (0.5) of the starting loss, and
  over the last `metric_patience` epochs it fell by less than `metric_rate` (2%) per
  epoch or every logged validation accuracy (`val_*acc*`) gained less than
  `metric_accuracy_gain` (0.01) per epoch: the run is far from trained and not getting
  there (Adam at 1e-5: validation loss within 1% of the start after 3 epochs on digits;
  validation accuracy flat at 0.41 for 8 epochs on MNIST while the loss still falls a
  few percent). A run that trained and then plateaued (validation loss below half the
  start) is left to `EarlyStopping`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_lossopt._validation import check_int, check_positive, check_probability
from keras_lossopt.callbacks.findings import Finding

__all__ = ["LOSS_KINDS", "LossTrendDetector"]

LOSS_KINDS = ("oscillating_loss", "stalled_loss", "stalled_metric")
"""The finding kinds `LossTrendDetector` reports."""
_START = 5  # batches that define the starting loss level of the oscillation test
_STALL_MEAN = 10  # the smallest number of losses averaged at each end by the stall test
_STALL_LIMIT = 40  # the stall test waits at most this many times `stall_steps` for enough losses


class LossTrendDetector:
    """Finds oscillating and stalled training in the per-batch losses and epoch logs.

    Args:
        window: losses the oscillation test looks at. Default 20.
        oscillation_threshold: mean absolute change over the starting loss above which
            the loss oscillates. Default 0.5.
        progress_tolerance: a window whose median loss is below `1 - progress_tolerance`
            times the starting median is making progress (no oscillation). Default 0.1.
        stall_steps: the earliest step of the stall test. Default 50.
        stall_tolerance: relative decrease below which the loss stalls. Default 0.01.
        metric_patience: epochs over which the validation loss' progress is measured.
            Default 2.
        metric_rate: relative decrease per epoch below which the validation loss stalls.
            Default 0.02.
        metric_progress: share of the starting loss the validation loss must have shed
            for the run to count as trained. Default 0.5.
        metric_accuracy_gain: a logged validation accuracy that gains less than this per
            epoch is flat. Default 0.01.

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
        oscillation_threshold: float = 0.5,
        progress_tolerance: float = 0.1,
        stall_steps: int = 50,
        stall_tolerance: float = 0.01,
        metric_patience: int = 2,
        metric_rate: float = 0.02,
        metric_progress: float = 0.5,
        metric_accuracy_gain: float = 0.01,
    ):
        self.window = check_int("window", window, minimum=4)
        self.oscillation_threshold = check_positive("oscillation_threshold", oscillation_threshold)
        self.progress_tolerance = check_probability("progress_tolerance", progress_tolerance)
        self.stall_steps = check_int("stall_steps", stall_steps, minimum=2 * _STALL_MEAN)
        self.stall_tolerance = check_probability("stall_tolerance", stall_tolerance)
        self.metric_patience = check_int("metric_patience", metric_patience, minimum=1)
        self.metric_rate = check_probability("metric_rate", metric_rate)
        self.metric_progress = check_probability("metric_progress", metric_progress)
        self.metric_accuracy_gain = check_probability("metric_accuracy_gain", metric_accuracy_gain)
        # O(window) work per batch: the first losses, the last `window`, and the whole
        # series only until the stall test has run.
        self.start_losses: list[float] = []
        self._recent: collections.deque[float] = collections.deque(maxlen=self.window)
        self._series: list[float] | None = []
        self._count = 0
        self.val_losses: list[float] = []
        self.val_accuracies: dict[str, list[float]] = {}
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
        self._recent.append(loss)
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
            findings.append(self._finding("stalled_loss", step, stall))
        return [f for f in findings if f is not None]

    def update_epoch(self, step: int, logs: Mapping[str, Any]) -> list[Finding]:
        """Adds one epoch's logs (`val_loss`, validation metrics) and runs the metric rule.

        Args:
            step: the last optimizer step of the epoch (0-based).
            logs: the epoch logs Keras passes to `on_epoch_end`.

        Returns:
            The findings (a `stalled_metric` at most once per run).
        """
        value = logs.get("val_loss")
        if value is None or not math.isfinite(float(value)):
            return []
        self.val_losses.append(float(value))
        for key, metric in logs.items():
            if key.startswith("val_") and "acc" in key and isinstance(metric, (int, float, np.floating)):
                self.val_accuracies.setdefault(key, []).append(float(metric))
        p = self.metric_patience
        finite = [v for v in self.start_losses if math.isfinite(v)]
        if len(self.val_losses) < p + 1 or not finite or "stalled_metric" in self.reported:
            return []
        start = float(np.mean(finite))
        now, before = self.val_losses[-1], self.val_losses[-1 - p]
        rate = (before - now) / (abs(before) * p) if before else 0.0
        gains = {
            key: (values[-1] - values[-1 - p]) / p for key, values in self.val_accuracies.items() if len(values) > p
        }
        flat_accuracy = bool(gains) and max(gains.values()) < self.metric_accuracy_gain
        if now <= (1 - self.metric_progress) * start or (rate >= self.metric_rate and not flat_accuracy):
            return []
        evidence = {
            "starting_loss": start,
            "val_loss_now": now,
            f"val_loss_{p}_epochs_before": before,
            "decrease_per_epoch": rate,
            "epochs": len(self.val_losses),
        }
        for key, gain in gains.items():
            evidence[key] = self.val_accuracies[key][-1]
            evidence[f"{key}_gain_per_epoch"] = gain
        finding = self._finding("stalled_metric", step, evidence)
        return [finding] if finding is not None else []

    # -- the rules -----------------------------------------------------------------------

    def _oscillation(self) -> dict[str, float] | None:
        w = self.window
        if self._count < w or "oscillating_loss" in self.reported:
            return None
        window = np.asarray(self._recent, dtype="float64")
        first = np.asarray(self.start_losses[:_START], dtype="float64")
        if not np.isfinite(window).all() or not np.isfinite(first).all():
            return None
        start_scale = max(float(np.mean(np.abs(first))), 1e-12)
        start_median = float(np.median(first))
        swing = float(np.mean(np.abs(np.diff(window)))) / start_scale
        half = w // 2
        not_decreasing = np.median(window[half:]) >= np.median(window[:half])
        level = float(np.median(window))
        no_progress = level >= (1 - self.progress_tolerance) * start_median
        if not (swing > self.oscillation_threshold and not_decreasing and no_progress):
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

    def _finding(self, kind: str, step: int, evidence: dict[str, float]) -> Finding | None:
        if kind in self.reported:
            return None
        self.reported.add(kind)
        return Finding(kind=kind, step=int(step), layers=(), evidence=evidence, cause="", remedy="")
