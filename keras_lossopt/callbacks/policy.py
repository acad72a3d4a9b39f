"""What happens on a problem: one policy for `GradientMonitor` and `TrainingDiagnostics`.

`ProblemPolicy` turns a user's `on_problem` into actions. Every option is in `ON_PROBLEM`;
the remedies (`REMEDY_OPTIONS`) change the run and need a callback that can change it
(`GradientMonitor`); the others only report. On a non-finite finding, a callback that can
restore weights always restores the last good (finite) weights first, whatever the option,
except when the first step of the run already failed: then the starting weights (or the
first batch) are the problem, nothing is restored, no remedy is applied (a lower learning
rate or clipping cannot make a non-finite starting point finite) and training stops.

* `"warn"`: issue a `TrainingProblemWarning` (after a non-finite finding: restore, stop
  training, warn);
* `"stop"`: set `model.stop_training` and warn;
* `"raise"`: raise `TrainingProblemError` (after a non-finite finding: restore first);
* a callable: call it with the `Finding` (after a non-finite finding: restore and stop);
* `"restore"`: after a non-finite finding, restore, zero the optimizer slots that hold a
  NaN or inf, reset the epoch's metrics and train on (the bad steps are skipped); warn on
  the other findings;
* `"clip"`: turn on `global_clipnorm=clip_norm` (when clipping is already that tight,
  reduce the learning rate instead); after a non-finite finding, restore and reset as
  `"restore"` does first; warn;
* `"reduce_lr"`: multiply the learning rate by `lr_factor`, not below `min_lr`; after a
  non-finite finding, restore and reset first; warn.

A remedy acts again each time its problem is found anew (`repeats(kind)`); everything
else is reported once per run.

Only findings of severity `"problem"` are acted on. A finding of severity `"information"`
(a plateau after progress, overfitting, a noisy small-batch loss, targets in natural units)
is recorded with the action `"noted"` and logged on the `keras_lossopt.callbacks` logger
at INFO level; it never warns, stops, remedies or raises.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from keras_lossopt._validation import check_choice, check_positive
from keras_lossopt.callbacks.findings import Finding, TrainingProblemError, TrainingProblemWarning, learning_rate_of

__all__ = ["ON_PROBLEM", "REMEDY_OPTIONS", "ProblemPolicy", "Remedies"]

_LOGGER = logging.getLogger("keras_lossopt.callbacks")

ON_PROBLEM = ("warn", "stop", "raise", "restore", "clip", "reduce_lr")
"""The values of `on_problem` (besides a callable)."""
REMEDY_OPTIONS = ("restore", "clip", "reduce_lr")
"""The options of `ON_PROBLEM` that change the run (need a callback that can)."""


class Remedies(Protocol):
    """What a callback that can change the run offers the policy (`GradientMonitor`)."""

    def restore_weights(self) -> str:
        """Restores the last good finite weights; returns what was done, for the action."""

    def reset_optimizer_state(self) -> None:
        """Zeroes the optimizer slots that hold a NaN or inf."""

    def turn_on_clipping(self, clip_norm: float) -> bool:
        """Sets `global_clipnorm`; False when clipping was already at most `clip_norm`."""

    def fails_from_the_start(self, finding: Finding) -> bool:
        """Whether a non-finite `finding` came at the first step, from the starting weights."""


class ProblemPolicy:
    """Acts on findings as the user's `on_problem` says.

    Args:
        on_problem: one of `ON_PROBLEM`, or a callable taking a `Finding`.
        allow_remedies: whether the callback can carry out `REMEDY_OPTIONS`; when not,
            they are refused with the options that remain.
        clip_norm: the global norm `"clip"` sets. Default 1.0.
        lr_factor: factor `"reduce_lr"` applies, in (0, 1). Default 0.1.
        min_lr: floor of `"reduce_lr"`. Default 1e-6.

    Raises:
        ValueError: for an unknown option or an invalid number.
    """

    def __init__(
        self,
        on_problem: str | Callable[[Finding], Any] = "warn",
        *,
        allow_remedies: bool = True,
        clip_norm: float = 1.0,
        lr_factor: float = 0.1,
        min_lr: float = 1e-6,
    ):
        if not callable(on_problem):
            allowed = ON_PROBLEM if allow_remedies else tuple(o for o in ON_PROBLEM if o not in REMEDY_OPTIONS)
            check_choice("on_problem", on_problem, allowed)
        self.on_problem = on_problem
        self.clip_norm = check_positive("clip_norm", clip_norm)
        self.lr_factor = check_positive("lr_factor", lr_factor)
        if self.lr_factor >= 1:
            raise ValueError(f"`lr_factor` must be in (0, 1). Received: lr_factor={lr_factor}")
        self.min_lr = check_positive("min_lr", min_lr)

    @property
    def remedy(self) -> str | None:
        """The remedy option chosen, or None when the policy only reports."""
        return self.on_problem if self.on_problem in REMEDY_OPTIONS else None

    def repeats(self, kind: str) -> bool:
        """Whether findings of `kind` are acted on each time (a remedy for them) or once."""
        if self.remedy == "restore":
            return kind == "non_finite"
        return self.remedy is not None

    def handle(
        self, finding: Finding, model: Any, record: Callable[[Finding], None], remedies: Remedies | None = None
    ) -> Finding:
        """Acts on a problem `finding`, records it with the action taken, then warns, calls or raises;
        records and logs an information finding only.

        Args:
            finding: what was found (its `action` is filled in here).
            model: the model being trained (`stop_training`, metrics, optimizer).
            record: receives the finding with its action, before any warning or error.
            remedies: the callback's means to restore weights and change the optimizer;
                None for a callback that only reports (then no remedy option is allowed
                and non-finite findings restore nothing).

        Returns:
            The finding with its action.

        Raises:
            TrainingProblemError: when `on_problem="raise"`.
        """
        if finding.severity != "problem":
            finding = dataclasses.replace(finding, action="noted")
            record(finding)
            _LOGGER.info("%s", finding)
            return finding
        actions: list[str] = []
        stop = self.on_problem == "stop"
        remedy = self.remedy
        if finding.kind == "non_finite" and remedies is not None:
            if remedies.fails_from_the_start(finding):
                # No earlier weights exist and no smaller step avoids a NaN the starting
                # point already gives: restoring, clipping or a lower rate would only hide it.
                actions.append(
                    "nothing restored: the first step already failed, from the starting weights, so a lower "
                    "learning rate, clipping or a restore cannot help"
                )
                stop, remedy = True, None
            else:
                actions.append(remedies.restore_weights())
                if remedy is not None:
                    remedies.reset_optimizer_state()
                    model.reset_metrics()
                else:
                    stop = True
        if stop:
            model.stop_training = True
            actions.append("stopped training")
        if remedy == "clip":
            if remedies.turn_on_clipping(self.clip_norm):
                actions.append(f"turned on global_clipnorm={self.clip_norm:g}")
            else:
                actions.append(self._reduce_learning_rate(model) + " (clipping was already on)")
        elif remedy == "reduce_lr":
            actions.append(self._reduce_learning_rate(model))
        elif self.on_problem == "raise":
            actions.append("raised TrainingProblemError")
        elif callable(self.on_problem):
            actions.append(f"called {getattr(self.on_problem, '__name__', 'on_problem')}")
        elif self.on_problem != "stop":
            actions.append("warned" if finding.kind != "non_finite" or remedy is None else "trained on")
        finding = dataclasses.replace(finding, action="; ".join(a for a in actions if a), stopped_training=stop)
        record(finding)
        if self.on_problem == "raise":
            raise TrainingProblemError(finding)
        if callable(self.on_problem):
            self.on_problem(finding)
        else:
            warnings.warn(str(finding), TrainingProblemWarning, stacklevel=3)
        return finding

    def _reduce_learning_rate(self, model: Any) -> str:
        optimizer = model.optimizer
        lr = learning_rate_of(optimizer)
        if lr is None:
            return "could not reduce a scheduled learning rate"
        new = max(lr * self.lr_factor, self.min_lr)
        optimizer.learning_rate = new
        return f"reduced the learning rate from {lr:.3g} to {new:.3g}"
