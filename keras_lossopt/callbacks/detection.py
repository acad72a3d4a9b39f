"""Detection of gradient problems on recorded statistics: pure NumPy, one copy of each rule.

`GradientDetector.update(steps, block)` takes the records a `GradientMonitor` read since
its last read (a block of rows, one per recorded step) and returns the `Finding`s they
raise. Each rule is written once, vectorised over the rows of a block; the detector keeps
what carries from one block to the next (how long each condition has lasted, the recent
global norms for the growth test, which kinds were reported). It needs no model and no
Keras: tests feed it arrays.

A block is a mapping of `(k, L + 1)` float arrays (one row per recorded step, one column
per layer group, the last column the whole model), as `GradientHistory.extend` returns:

* `grad_norm`: L2 norm of the gradient;
* `nonfinite_share`: share of NaN/inf gradient entries;
* `weight_norm` (optional): L2 norm of the weights before the step; NaN or inf when a
  weight is (a NaN gradient on a step that was not recorded shows here, at the next
  recorded step);
* `loss` (optional, `(k,)`): the loss of each row's batch.

Rules (defaults of `GradientMonitor`), with guards against the noise of small batches
(at batch size 1 each record is the gradient of one sample: its norm spans orders of
magnitude from one sample to the next, and a sample whose ReLU units are all off has no
gradient below them):

* non_finite: a row with a non-finite gradient entry or non-finite weights. At once, one
  finding per block at most (the rows after it describe steps that a restore undoes).
  Non-finite rows take no part in the other rules.
* vanishing: the global norm is below `vanishing_floor` (every layer is named) on a batch
  that is not already fit (its loss at least `FIT_LOSS` of the run's first loss, when that
  is positive: a sample predicted with full confidence has a loss of 0 and a gradient of
  exactly 0), or, with at least two layers and all layer norms finite, some layer's norm
  is below `vanishing_ratio` times the last layer's (AUTOTRAINER's test); for `patience`
  consecutive rows, and for the *same* layer in at least `vanishing_share` (0.8) of the
  last `growth_window` rows (20; a full window from the first record on: rows not yet
  recorded do not vanish). The share is the noise guard: a structural cause (saturated
  or dead layers) holds in nearly every row, while at batch sizes 1-2 the early layers'
  norms of a healthy network swing over orders of magnitude from one sample to the next
  (tanh with BatchNorm at batch 2: 1e-7 to 1e2), and a sample that switches all units of
  a layer off is one row among many.
* exploding: the global norm is above the ceiling, `exploding_norm` times `loss_scale`
  (1; for a regression loss `GradientMonitor` sets the square root of the run's first
  loss), and for a regression (`scale_with_start`) also times the run's first recorded
  global norm (the gradient at the starting weights, which no learning rate has touched:
  a regression in natural units starts with errors, and gradients, in the thousands or
  millions while it trains fine; between the two ceilings a norm counts when it has
  also grown 100x over its reference); or it exceeds its reference by more than
  `exploding_growth` and by more than 4 robust standard deviations of the log10 of the
  positive finite global norms of the previous `growth_window` rows (1.4826 x the median
  absolute deviation; also an infinite norm: a float32 overflow of the sum of squares of
  finite entries); for `patience` consecutive rows. The reference is the larger of those
  rows' median and the run's first norm: growth is measured from the run's typical level
  and its own early scale, not from the smallest recent norm (per-sample norms of a
  healthy run at batch size 1 span about two orders of magnitude, 0.2 to 14 on digits,
  and once most samples are fit their gradients are near 0, so that the median of the
  recent ones says nothing of the scale). The layers named are those within 10x of the
  largest layer norm.

A kind is reported once per run, except the kinds in `repeat` (those a remedy acts on):
after such a finding the detector watches afresh (the condition's count restarts and the
growth test forgets the norms before it), so a persisting problem is reported again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from keras_lossopt._validation import check_in_range, check_int, check_positive
from keras_lossopt.callbacks.findings import REMEDIES, Finding

__all__ = ["GRADIENT_KINDS", "GradientDetector"]

GRADIENT_KINDS = ("non_finite", "vanishing", "exploding")
"""The finding kinds `GradientDetector` reports."""
#: Robust standard deviations of the recent log10 norms a growth must exceed. Log-normal
#: per-sample noise passes 4 of them with probability 3e-5 per record, and `patience` (2)
#: records in a row about once in 10^9; an explosion leaves them behind within a few
#: steps. More would let an explosion outrun the threshold: its own first records widen
#: the window's spread (6 missed a 6x-per-step explosion out of 0.5-decade noise).
_SPREADS = 4.0
#: A batch whose loss is below this share of the run's first loss is fit: a gradient below
#: the floor there is a sample predicted with full confidence, not a vanishing gradient.
#: Set on the corpus' calibration half: healthy/266 (tanh, SGD 1.49, batch 1; trained to
#: 0.97 validation accuracy) has an exactly zero gradient in 82% of its records, each on a
#: sample whose loss is 0 (read as |loss| <= 1e-3 through the running mean, against a
#: first loss of 1.8); the zero gradients of the faulty runs come with losses near their
#: first (wrong_output_activation/100000 and /100020: 0.69 and 7-9, first losses 2.4e-7
#: and 7.4). 1e-2 lies a decade above the first and two below the second.
FIT_LOSS = 1e-2
#: For a regression, a norm above the plain ceiling (`exploding_norm` x `loss_scale`) but
#: below the one scaled with the run's first norm counts when it has also grown this much
#: over its reference: a regression in natural units sits above the plain ceiling while it
#: trains (the corpus' calibration run healthy/240: 19 records, at most 14.7x and typically
#: 2.7x over their reference), a divergence passes it while rising (the problem bench's
#: huge_learning_rate_to_nan: 263x at the record before its float32 overflow).
_RISING_GROWTH = 100.0
_COUNTED = ("vanishing", "exploding")


#: The rules' arguments: attributes of `GradientDetector` and of `GradientMonitor`, which
#: checks them at construction and passes them on.
RULE_ARGUMENTS = (
    "patience",
    "vanishing_ratio",
    "vanishing_floor",
    "vanishing_share",
    "exploding_norm",
    "exploding_growth",
    "growth_window",
)


def checked_rule_arguments(
    *, patience, vanishing_ratio, vanishing_floor, vanishing_share, exploding_norm, exploding_growth, growth_window
) -> dict[str, float | int]:
    """The rules' arguments, checked: a clear error names the first bad one."""
    return {
        "patience": check_int("patience", patience, minimum=1),
        "vanishing_ratio": check_positive("vanishing_ratio", vanishing_ratio),
        "vanishing_floor": check_positive("vanishing_floor", vanishing_floor),
        "vanishing_share": check_in_range("vanishing_share", vanishing_share, 0.0, 1.0, low_inclusive=False),
        "exploding_norm": check_positive("exploding_norm", exploding_norm),
        "exploding_growth": check_positive("exploding_growth", exploding_growth),
        "growth_window": check_int("growth_window", growth_window, minimum=1),
    }


class GradientDetector:
    """Finds vanishing, exploding and non-finite gradients in blocks of recorded rows.

    Args:
        layers: the names of the layer groups, input side first (the columns of a block
            without the last, whole-model column).
        patience: consecutive rows a vanishing/exploding condition must last. Default 2.
        vanishing_ratio: layer-to-last-layer norm ratio below which a layer's gradient
            vanishes. Default 1e-3.
        vanishing_floor: global norm below which all gradients vanish. Default 1e-7.
        vanishing_share: the share of the last `growth_window` rows in which the same
            layer must vanish. Default 0.8: on the corpus' calibration half (169 healthy
            runs that trained) the healthy runs reached at most 0.6 (healthy/290, tanh
            with BatchNorm at batch 2, whose early layers' norms swing from 1e-7 to 1e2
            between samples) but one whose first layers' gradients do vanish (healthy/454:
            BatchNorm at batch 2 under 8 ReLU layers, norms of 1e-12 to 1e-19 there; it
            beats its baseline through its top layers), and every faulty run found
            vanishing reached 0.9-1.0 (1.0 for all the deep_sigmoid, bad_initialization
            and learning_rate_too_large runs).
        exploding_norm: global norm ceiling. Default 1e3.
        exploding_growth: the smallest growth factor over the median norm of the previous
            `growth_window` rows that counts (a wider spread of the norms asks for
            more). Default 1e3.
        growth_window: rows the noise guards look back over (the growth's reference, the
            share of vanishing rows). Default 20.
        repeat: kinds that are reported again while they persist (those a remedy acts
            on); the others are reported once per run. Default none.

    Examples:
        >>> import numpy as np
        >>> detector = GradientDetector(["dense", "out"])
        >>> norms = np.array([[1e-6, 1.0, 1.0]] * 20)  # dense, out, whole model; 20 steps
        >>> block = {"grad_norm": norms, "nonfinite_share": np.zeros_like(norms)}
        >>> [(f.kind, f.step, f.layers) for f in detector.update(np.arange(20), block)]
        [('vanishing', 16, ('dense',))]
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        patience: int = 2,
        vanishing_ratio: float = 1e-3,
        vanishing_floor: float = 1e-7,
        vanishing_share: float = 0.8,
        exploding_norm: float = 1e3,
        exploding_growth: float = 1e3,
        growth_window: int = 20,
        repeat: Iterable[str] = (),
    ):
        self.layers = tuple(layers)
        vars(self).update(
            checked_rule_arguments(
                patience=patience,
                vanishing_ratio=vanishing_ratio,
                vanishing_floor=vanishing_floor,
                vanishing_share=vanishing_share,
                exploding_norm=exploding_norm,
                exploding_growth=exploding_growth,
                growth_window=growth_window,
            )
        )
        self.repeat = frozenset(repeat)
        #: Multiplies `exploding_norm`: 1, or sqrt(|first loss|) of a regression (set by the monitor).
        self.loss_scale = 1.0
        #: Whether the ceiling also scales with the run's first global norm (set by the
        #: monitor for a regression loss, whose gradients carry the targets' units).
        self.scale_with_start = False
        self.reported: set[str] = set()
        self._streak = dict.fromkeys(_COUNTED, 0)
        self._recent = np.zeros((0,), dtype="float64")
        self._recent_vanishing = np.zeros((0, len(self.layers)), dtype=bool)
        self._first_norm: float | None = None
        self._first_loss: float | None = None
        self._last_nonfinite_layers: tuple[str, ...] = ()

    @property
    def last_nonfinite_layers(self) -> tuple[str, ...]:
        """The layers with non-finite gradients or weights in the last row seen."""
        return self._last_nonfinite_layers

    # -- the rules -----------------------------------------------------------------------

    def update(self, steps: np.ndarray, block: Mapping[str, np.ndarray]) -> list[Finding]:
        """Runs the rules on the rows of one block, in step order.

        Args:
            steps: `(k,)` the recorded steps of the rows, increasing.
            block: `grad_norm` and `nonfinite_share` (and optionally `weight_norm`), each
                `(k, L + 1)`; optionally `loss`, `(k,)`.

        Returns:
            The findings, in step order (`cause` empty: the monitor reads it off the
            model).

        Raises:
            ValueError: when the arrays do not have one row per step and one column per
                layer plus one.
        """
        steps = np.asarray(steps, dtype="int64").reshape(-1)
        norms = np.asarray(block["grad_norm"], dtype="float64")
        shape = (len(steps), len(self.layers) + 1)
        weights = block.get("weight_norm")
        weights = np.zeros(shape) if weights is None else np.asarray(weights, dtype="float64")
        share = np.asarray(block["nonfinite_share"], dtype="float64")
        for name, array in (("grad_norm", norms), ("nonfinite_share", share), ("weight_norm", weights)):
            if array.shape != shape:
                raise ValueError(f"`{name}` must have shape {shape} (steps, layers + 1). Received: {array.shape}")
        losses = block.get("loss")
        losses = np.full(len(steps), np.nan) if losses is None else np.asarray(losses, dtype="float64").reshape(-1)
        if losses.shape != (len(steps),):
            raise ValueError(f"`loss` must have shape {(len(steps),)} (steps,). Received: {losses.shape}")
        if len(steps) == 0:
            return []
        if self._recent_vanishing.shape[1] != len(self.layers):  # the layers became known
            self._recent_vanishing = np.zeros((0, len(self.layers)), dtype=bool)
        bad_layers = (share[:, :-1] > 0) | ~np.isfinite(weights[:, :-1])
        bad = (share > 0).any(axis=1) | bad_layers.any(axis=1)
        self._last_nonfinite_layers = self._names(bad_layers[-1])
        findings: list[Finding] = []
        start = 0
        non_finite_done = False
        while start < len(steps):
            # One vectorised pass from `start`; state only changes where a repeating
            # finding fires, so without one, each kind's first finding comes from this pass.
            good = np.flatnonzero(~bad[start:]) + start
            self._note_start(norms[good, -1], losses[good])
            conditions, raw_vanishing = self._conditions(norms[good], losses[good])
            streaks = {kind: _streaks(self._streak[kind], conditions[kind][0]) for kind in _COUNTED}
            events: dict[str, int] = {}  # kind -> row of its first finding from `start`
            if not non_finite_done and self._armed("non_finite"):
                rows = np.flatnonzero(bad[start:])
                if rows.size:
                    events["non_finite"] = start + int(rows[0])
            for kind in _COUNTED:
                if self._armed(kind):
                    fired = np.flatnonzero(streaks[kind] >= self.patience)
                    if fired.size:
                        events[kind] = int(good[fired[0]])
            end = min(events.values()) if events else len(steps)
            # Carry the state through the row of the first finding (or the whole block).
            through = int(np.searchsorted(good, end, side="right" if events else "left"))
            if through:
                for kind in _COUNTED:
                    self._streak[kind] = int(streaks[kind][through - 1])
                self._recent = np.concatenate([self._recent, norms[good[:through], -1]])[-self.growth_window :]
                self._recent_vanishing = np.concatenate([self._recent_vanishing, raw_vanishing[:through]])[
                    -self.growth_window :
                ]
            if not events:
                break
            for kind in GRADIENT_KINDS:
                if events.get(kind) != end:
                    continue
                if kind == "non_finite":
                    findings.append(self._non_finite(int(steps[end]), norms[end], share[end], bad_layers[end]))
                    non_finite_done = True
                else:
                    q = through - 1
                    evidence = conditions[kind][1](q)
                    layers = evidence.pop("layers")
                    evidence["records"] = self._streak[kind]
                    findings.append(self._finding(kind, int(steps[end]), layers, evidence))
            start = end + 1
        return findings

    def _note_start(self, global_norms: np.ndarray, losses: np.ndarray) -> None:
        """Keeps the run's first positive finite global norm and first finite loss (its early scale)."""
        if self._first_norm is None:
            usable = global_norms[np.isfinite(global_norms) & (global_norms > 0)]
            if usable.size:
                self._first_norm = float(usable[0])
        if self._first_loss is None:
            finite = losses[np.isfinite(losses)]
            if finite.size:
                self._first_loss = float(finite[0])

    def _ceilings(self) -> tuple[float, float]:
        """(the plain ceiling, the ceiling scaled with the run's first norm for a regression)."""
        plain = self.exploding_norm * max(self.loss_scale, 1.0)
        if self.scale_with_start and self._first_norm is not None:
            return plain, max(plain, self.exploding_norm * self._first_norm)
        return plain, plain

    def _conditions(self, norms: np.ndarray, losses: np.ndarray):
        """Per rule: `(k,)` whether each row meets its condition, and `row -> evidence`;
        and the raw per-layer vanishing test (before the share guard), which the state carries."""
        k = len(norms)
        window = self.growth_window
        layer_norms, global_norm = norms[:, :-1], norms[:, -1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # vanishing
            below_floor = global_norm < self.vanishing_floor
            if self._first_loss is not None and self._first_loss > 0:  # a loss whose best is 0 (not cosine)
                below_floor &= ~(losses < FIT_LOSS * self._first_loss)  # NaN: not known to be fit
            if layer_norms.shape[1] >= 2:
                last = layer_norms[:, -1:]
                ratios = layer_norms[:, :-1] / last
                comparable = (last[:, 0] > 0) & np.isfinite(layer_norms).all(axis=1)
                low = (ratios < self.vanishing_ratio) & comparable[:, None]
            else:
                ratios = low = np.zeros((k, 0), dtype=bool)
            # Per layer (the last layer only through the floor), then the share of the last
            # `window` rows (this one included) in which the same layer vanished, over a
            # full window from the first row on: rows not yet recorded count as not
            # vanishing. Over the rows seen so far, two samples of a batch-1 run that switch
            # a layer off at steps 0 and 1 were a "share" of 1.0 (the corpus' calibration
            # draw healthy/70, Adam at batch 1); a structural cause holds in nearly every
            # row and passes `vanishing_share` of a window at its 16th record.
            raw_vanishing = np.zeros((k, len(self.layers)), dtype=bool)
            raw_vanishing[:, : low.shape[1]] = low
            raw_vanishing |= below_floor[:, None]
            flags = np.concatenate([self._recent_vanishing, raw_vanishing]).astype("float64")
            counts = np.concatenate([np.zeros((1, flags.shape[1])), np.cumsum(flags, axis=0)])
            ends = np.arange(len(self._recent_vanishing), len(flags)) + 1
            begins = np.maximum(ends - window, 0)
            share = (counts[ends] - counts[begins]) / window
            sustained = raw_vanishing & (share >= self.vanishing_share - 1e-9)
            vanishing = sustained.any(axis=1)
            # exploding: growth over the window's median (or the run's first norm, if
            # larger), against a threshold that is at least `_SPREADS` robust standard
            # deviations of the window's log10 norms.
            past = np.concatenate([np.full(window, np.nan), self._recent, global_norm])
            views = np.lib.stride_tricks.sliding_window_view(past, window)
            previous = views[len(self._recent) : len(self._recent) + k]  # the window before each row
            usable = np.isfinite(previous) & (previous > 0)
            logs = np.log10(np.where(usable, previous, 1.0))
            has_past = usable.any(axis=1)
            center = _row_medians(logs, usable)
            spread = 1.4826 * _row_medians(np.abs(logs - center[:, None]), usable)
            baseline = np.maximum(10.0**center, self._first_norm or 0.0)
            growth = np.where(has_past, global_norm / baseline, 1.0)
            allowed = np.maximum(self.exploding_growth, 10.0 ** (_SPREADS * spread))
            top = layer_norms.max(axis=1)
            named = layer_norms >= 0.1 * top[:, None]
            plain, ceiling = self._ceilings()
            rising = (global_norm > plain) & (growth > _RISING_GROWTH)
            exploding = ~((global_norm <= ceiling) & (growth <= allowed)) | rising
            exploding &= named.any(axis=1)  # a NaN layer norm names no layer

        def vanishing_evidence(q: int) -> dict:
            guard = {"share_of_window": float(share[q][sustained[q]].max()), "window": int(ends[q] - begins[q])}
            if below_floor[q]:
                return {
                    "layers": self._names(sustained[q]),
                    "global_grad_norm": float(global_norm[q]),
                    "floor": self.vanishing_floor,
                    **guard,
                }
            rows = np.flatnonzero(sustained[q, : low.shape[1]])
            return {
                "layers": tuple(self.layers[i] for i in rows),
                "last_layer_norm": float(layer_norms[q, -1]),
                "min_norm": float(layer_norms[q, rows].min()),
                "min_ratio_to_last": float(ratios[q, rows].min()),
                "threshold": self.vanishing_ratio,
                **guard,
            }

        def exploding_evidence(q: int) -> dict:
            evidence = {
                "layers": self._names(named[q]),
                "global_grad_norm": float(global_norm[q]),
                "ceiling": ceiling,
                "growth": float(growth[q]),
                "max_layer_norm": float(top[q]),
            }
            if has_past[q]:
                evidence["previous_median_norm"] = float(10.0 ** center[q])
                evidence["growth_reference"] = float(baseline[q])
                evidence["spread_decades"] = float(spread[q])
                evidence["growth_allowed"] = float(allowed[q])
                evidence["window"] = int(usable[q].sum())
            return evidence

        return {
            "vanishing": (vanishing, vanishing_evidence),
            "exploding": (exploding, exploding_evidence),
        }, raw_vanishing

    def report_non_finite(self, step: int, evidence: Mapping[str, float], layers: Sequence[str] | None = None):
        """A non-finite finding seen outside the records (the loss, the weights at the end).

        Args:
            step: the step it was seen at.
            evidence: the numbers behind it (e.g. `{"loss": nan}`).
            layers: the layers involved; default: those non-finite in the last row seen.

        Returns:
            The `Finding`, or None when non-finite values were already reported and are
            not a repeating kind.
        """
        if not self._armed("non_finite"):
            return None
        layers = self._last_nonfinite_layers if layers is None else tuple(layers)
        return self._finding("non_finite", step, tuple(layers), dict(evidence))

    # -- bookkeeping ---------------------------------------------------------------------

    def _armed(self, kind: str) -> bool:
        return kind in self.repeat or kind not in self.reported

    def _names(self, mask: np.ndarray) -> tuple[str, ...]:
        return tuple(n for n, m in zip(self.layers, mask) if m)

    def _non_finite(self, step, norms, share, bad_layers) -> Finding:
        evidence = {"global_grad_norm": float(norms[-1]), "nonfinite_share": float(share[-1])}
        # Layers whose weights are non-finite although their gradients were not: a NaN
        # that arrived on a step that was not recorded.
        weights_only = int((bad_layers & ~(share[:-1] > 0)).sum())
        if weights_only:
            evidence["layers_with_nonfinite_weights"] = weights_only
        return self._finding("non_finite", step, self._names(bad_layers), evidence)

    def _finding(self, kind: str, step: int, layers: tuple[str, ...], evidence: dict) -> Finding:
        if kind in self.repeat:
            # A remedy changed the run: watch afresh for the problem coming back.
            if kind in self._streak:
                self._streak[kind] = 0
            self._recent = self._recent[:0]
            self._recent_vanishing = self._recent_vanishing[:0]
        else:
            self.reported.add(kind)
        return Finding(kind=kind, step=int(step), layers=layers, evidence=evidence, cause="", remedy=REMEDIES[kind])


def _row_medians(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The median of each row's entries where `mask` holds (0 for a row without any).

    One sort of the rows (masked entries sorted to the end) instead of `np.nanmedian`,
    which costs about 4x the rest of a block's detection.
    """
    if values.shape[1] == 0:
        return np.zeros(len(values))
    counts = mask.sum(axis=1)
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    rows = np.arange(len(values))
    low = np.maximum((counts - 1) // 2, 0)
    high = np.minimum(counts // 2, values.shape[1] - 1)
    return np.where(counts > 0, 0.5 * (ordered[rows, low] + ordered[rows, high]), 0.0)


def _streaks(start: int, condition: np.ndarray) -> np.ndarray:
    """How many consecutive rows, up to each row, meet `condition` (`start` before the first)."""
    positions = np.arange(len(condition))
    last_miss = np.maximum.accumulate(np.where(condition, -1, positions)) if len(condition) else positions
    return np.where(last_miss >= 0, positions - last_miss, positions + 1 + start)
