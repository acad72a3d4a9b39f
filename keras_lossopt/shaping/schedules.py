"""Scheduled term weights: schedules of a weight over time and the `LossWeightScheduler` callback.

A schedule maps a time `t` (the epoch, or the global training step, counted from 0) to a
weight. `LossWeightScheduler({"dice": LinearWarmup(1.0, steps=5)})` assigns each named
term's weight before every epoch (`by="epoch"`) or before every step (`by="step"`). The
assignment changes a variable that the compiled step reads, so the step is not retraced
and the new weight is used from the very step it was set for, also with `jit_compile=True`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keras_lossopt._validation import check_arguments_accepted, check_choice, check_int, check_non_negative
from keras_lossopt.shaping.tracking import TermWeightCallback

__all__ = ["CosineSchedule", "LinearWarmup", "LossWeightScheduler", "StepSchedule", "WeightSchedule"]


class WeightSchedule:
    """Base of the weight schedules: `schedule(t) -> weight` for `t = 0, 1, 2, ...`."""

    def __call__(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class LinearWarmup(WeightSchedule):
    """Linear ramp from `start` to `target` over `steps`, then constant.

    Formula:
        `w(t) = start + (target - start) * min(t / steps, 1)`.

    Args:
        target: weight reached at `t = steps`, >= 0.
        steps: length of the ramp in epochs or steps, >= 1.
        start: weight at `t = 0`, >= 0. Default 0.0.

    Raises:
        ValueError: for negative weights or `steps` < 1.

    Examples:
        >>> [LinearWarmup(1.0, steps=4)(t) for t in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, target: float, steps: int, start: float = 0.0):
        self.target = check_non_negative("target", target)
        self.steps = check_int("steps", steps, minimum=1)
        self.start = check_non_negative("start", start)

    def __call__(self, t: int) -> float:
        return self.start + (self.target - self.start) * min(t / self.steps, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"target": self.target, "steps": self.steps, "start": self.start}


class CosineSchedule(WeightSchedule):
    """Half-cosine from `start` to `end` over `steps`, then constant (as cosine learning-rate decay).

    Formula:
        `w(t) = end + (start - end) * (1 + cos(pi * min(t, steps) / steps)) / 2`.

    Args:
        start: weight at `t = 0`, >= 0.
        end: weight from `t = steps` on, >= 0.
        steps: length of the curve, >= 1.

    Raises:
        ValueError: for negative weights or `steps` < 1.

    Examples:
        >>> [round(CosineSchedule(1.0, 0.0, steps=2)(t), 3) for t in range(4)]
        [1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, start: float, end: float, steps: int):
        self.start = check_non_negative("start", start)
        self.end = check_non_negative("end", end)
        self.steps = check_int("steps", steps, minimum=1)

    def __call__(self, t: int) -> float:
        progress = min(t, self.steps) / self.steps
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps}


class StepSchedule(WeightSchedule):
    """Piecewise-constant weight: `values[i]` from `boundaries[i - 1]` (inclusive) on.

    Formula:
        `w(t) = values[#{b in boundaries : b <= t}]`.

    Args:
        boundaries: increasing times >= 1 at which the weight changes.
        values: `len(boundaries) + 1` weights, each >= 0.

    Raises:
        ValueError: for unsorted boundaries, a wrong number of values or negative values.

    Examples:
        >>> [StepSchedule([2, 4], [1.0, 0.5, 0.0])(t) for t in range(6)]
        [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        self.boundaries = [check_int("boundaries", b, minimum=1) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"`boundaries` must be strictly increasing. Received: boundaries={list(boundaries)}")
        if len(values) != len(self.boundaries) + 1:
            raise ValueError(
                f"`values` needs len(boundaries) + 1 = {len(self.boundaries) + 1} entries. "
                f"Received: values={list(values)}"
            )
        self.values = [check_non_negative("values", v) for v in values]

    def __call__(self, t: int) -> float:
        return self.values[sum(1 for b in self.boundaries if b <= t)]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


_BY = ("epoch", "step")


class LossWeightScheduler(TermWeightCallback):
    """Sets composite-loss term weights from schedules, by epoch or by training step.

    Args:
        schedules: `{term name: schedule}`; a schedule is a `WeightSchedule` or any function
            `t -> weight` (weight finite and >= 0). Term names are checked against the
            model's composites when training starts.
        by: `"epoch"` (weights set before each epoch, `t` = epoch) or `"step"` (before each
            step, `t` = global step since the start of this `fit`). Default `"epoch"`.

    Raises:
        TypeError: for a schedule function that cannot take one argument `t`.
        ValueError: for an empty `schedules`, an unknown `by`, a schedule that is not
            callable, an unknown term name (at the start of training, naming the closest
            term), a schedule value that is negative or not finite (when it is computed), or
            `by="step"` with `steps_per_execution > 1`.

    Examples:
        >>> scheduler = LossWeightScheduler({"dice": LinearWarmup(1.0, steps=5)}, by="epoch")
        >>> scheduler.by
        'epoch'
    """

    def __init__(self, schedules: Mapping[str, Callable[[int], float]], by: str = "epoch"):
        super().__init__()
        if not isinstance(schedules, Mapping) or not schedules:
            raise ValueError(f"`schedules` must be a non-empty dict {{term: schedule}}. Received: {schedules!r}")
        for term, schedule in schedules.items():
            if not callable(schedule):
                raise ValueError(
                    f"The schedule of term {term!r} must be a WeightSchedule or a function t -> weight. "
                    f"Received: {schedule!r}"
                )
            check_arguments_accepted(f"schedules[{term!r}]", schedule, ["t"])
        self.schedules = dict(schedules)
        self.by = check_choice("by", by, _BY)
        self._step = 0

    def managed_terms(self) -> list[str]:
        self.check_terms("schedules", self.schedules)
        return list(self.schedules)

    def _describe(self) -> str:
        return f"LossWeightScheduler({sorted(self.schedules)})"

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        if self.by == "step" and getattr(self.model, "steps_per_execution", 1) > 1:
            raise ValueError(
                "LossWeightScheduler(by='step') sets the weights between steps and needs steps_per_execution=1. "
                f"Received: steps_per_execution={self.model.steps_per_execution}"
            )
        self._step = 0

    def _apply(self, t: int) -> None:
        for term, schedule in self.schedules.items():
            value = schedule(t)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"The schedule of term {term!r} returned {value!r} at t={t}; expected a number."
                ) from None
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"The schedule of term {term!r} returned {value!r} at t={t}; weights must be finite and >= 0."
                )
            self.assign(term, value)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.by == "epoch":
            self._apply(epoch)

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        if self.by == "step":
            self._apply(self._step)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._step += 1
