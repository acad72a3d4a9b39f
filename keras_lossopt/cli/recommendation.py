"""Which loss to recommend from scores on the same folds: the leader, or a tie inside the noise.

Every candidate is scored on the same folds (the same splits and seeds; for `compare
--folds 1`, the same validation split and seeds), so two candidates are compared fold by
fold: the differences `d_k = leader_k - other_k` cancel what the folds share (an easy fold
is easy for both). Their mean against its standard error `s_d / sqrt(K)` (`s_d` the sample
standard deviation of the `K` differences) says whether the leader's advantage is larger
than the folds' noise.

The rule (`RULE`): a candidate whose mean paired shortfall to the leader (the best mean) is
at most one standard error ties with it: the one-standard-error rule of cross-validated
model selection (Breiman et al. 1984; Hastie, Tibshirani and Friedman 2009, section 7.10).
Among tied candidates the one with the lowest spread over folds is recommended: when the
means cannot be told apart, the loss whose score varies least between folds is the safer
choice. Equal spreads keep the better mean.

Why not a 95 % paired t-interval: with the default 3 folds its half-width is 4.3 standard
errors (Student's t with 2 degrees of freedom), so every loss within a few points would tie
and the recommendation would mostly follow the spread; one standard error flags exactly the
leads that the folds do not support, such as 0.911 ± 0.102 against 0.898 ± 0.051.

A candidate is only compared over all of the leader's folds: a search trial stopped early
(racing) trailed by more than the racing margin and never ties. With one fold there is no
spread, so no tie can be judged and the best score is recommended.

References:
    Breiman, Friedman, Olshen and Stone, 1984. Classification and Regression Trees, section 3.4.
    Hastie, Tibshirani and Friedman, 2009. The Elements of Statistical Learning, section 7.10.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["RULE", "PairedComparison", "Recommendation", "paired_difference", "recommend"]

#: The decision rule, as the reports state it.
RULE = (
    "paired over the same {units}, a loss whose mean shortfall to the leader is within one standard error of "
    "that shortfall ties with it (the one-standard-error rule); among tied losses the one with the lowest "
    "spread over {units} is recommended"
)


def paired_difference(leader: Sequence[float], other: Sequence[float], direction: str = "max") -> tuple[float, float]:
    """The leader's mean advantage over `other` on the same folds, and its standard error.

    Args:
        leader: the leader's score per fold.
        other: the other candidate's score per fold, in the same fold order and as many.
        direction: `"max"` (default; higher scores are better) or `"min"`.

    Returns:
        `(mean, standard_error)` of the per-fold differences, signed so that a positive mean
        means the leader is better; the standard error is `std(d, ddof=1) / sqrt(K)`.

    Raises:
        ValueError: for fewer than two folds or different numbers of folds.

    Examples:
        >>> [round(v, 4) for v in paired_difference([0.9, 0.8, 0.7], [0.85, 0.8, 0.6])]
        [0.05, 0.0289]
    """
    a, b = np.asarray(leader, "float64"), np.asarray(other, "float64")
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"a paired comparison needs two equal-length sequences of at least 2 fold scores; "
            f"received {len(a)} and {len(b)} scores"
        )
    differences = (a - b) if direction == "max" else (b - a)
    return float(np.mean(differences)), float(np.std(differences, ddof=1) / math.sqrt(len(differences)))


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """The leader against one other candidate, over the folds both ran.

    Attributes:
        candidate: the other candidate.
        difference: the leader's mean advantage per fold (None when fewer than two folds pair).
        standard_error: the standard error of `difference` (None likewise).
        folds: the number of folds paired.
        tied: whether the candidate ties with the leader under `RULE`.
    """

    candidate: str
    difference: float | None
    standard_error: float | None
    folds: int
    tied: bool


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The recommended candidate and the comparisons that chose it.

    Attributes:
        chosen: the recommended candidate.
        leader: the candidate with the best mean.
        tied: the leader and every candidate tied with it, best mean first.
        comparisons: the leader against each other candidate, in the order given.
        means: each candidate's ranking score (mean over its folds unless given).
        spreads: each candidate's standard deviation over its folds.
        folds: the leader's number of folds (or seeds).
        units: what the scores are paired over, e.g. `"folds"`.
    """

    chosen: str
    leader: str
    tied: tuple[str, ...]
    comparisons: tuple[PairedComparison, ...]
    means: Mapping[str, float]
    spreads: Mapping[str, float]
    folds: int
    units: str = "folds"

    @property
    def is_tie(self) -> bool:
        """Whether other candidates tie with the leader."""
        return len(self.tied) > 1

    @property
    def rule(self) -> str:
        """The decision rule in words (or why none applies, with a single fold)."""
        if self.folds < 2:
            return "one score per loss gives no spread: the best is recommended, no tie can be judged"
        return RULE.format(units=self.units)

    def describe(self, digits: int = 4) -> str:
        """One sentence: the recommendation and why (a tie names every tied loss with its spread)."""

        def shown(name):
            return f"{name} ({self.means[name]:.{digits}f} ± {self.spreads[name]:.{digits}f})"

        if self.folds < 2:
            return f"{self.chosen}: the best score; {self.rule}"
        by_name = {c.candidate: c for c in self.comparisons}
        if not self.is_tie:
            close = [c for c in self.comparisons if c.difference is not None and c.folds == self.folds]
            skipped = len(self.comparisons) - len(close)
            note = f"; {skipped} stopped early or not finite, not compared" if skipped else ""
            if not close:
                return f"{self.chosen}: the only loss scored on all {self.folds} {self.units}{note}"
            closest = min(close, key=lambda c: c.difference / c.standard_error if c.standard_error else math.inf)
            return (
                f"{self.chosen}: ahead of each other loss by more than one standard error of the paired "
                f"difference over the same {self.folds} {self.units} (closest: {closest.candidate}, "
                f"{closest.difference:.{digits}f} behind, standard error {closest.standard_error:.{digits}f}){note}"
            )
        others = [name for name in self.tied if name != self.leader]
        leads = ", ".join(
            f"{n} by {by_name[n].difference:.{digits}f} (standard error {by_name[n].standard_error:.{digits}f})"
            for n in others
        )
        names = [shown(name) for name in self.tied]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        reason = (
            f"the tie goes to the lowest spread over {self.units}"
            if self.chosen != self.leader or any(self.spreads[n] != self.spreads[self.leader] for n in others)
            else "equal spreads, so the tie goes to the better mean"
        )
        return (
            f"{self.chosen}: a tie within the noise between {listed}: paired over the same {self.folds} "
            f"{self.units}, {self.leader} leads {leads}, within one standard error; {reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the decision."""
        return {
            "loss": self.chosen,
            "leader": self.leader,
            "tie": list(self.tied) if self.is_tie else None,
            "rule": self.rule,
            "paired_over": f"{self.folds} {self.units if self.folds != 1 else self.units.removesuffix('s')}",
            "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
        }


def recommend(
    scores: Mapping[str, Sequence[float]],
    *,
    direction: str = "max",
    ranking: Mapping[str, float] | None = None,
    units: str = "folds",
) -> Recommendation:
    """Recommends a candidate from its scores on the same folds (see the module's rule).

    Args:
        scores: candidate -> its score per fold, every candidate on the same folds in the
            same order (a candidate stopped early may hold fewer).
        direction: `"max"` (default) or `"min"`.
        ranking: candidate -> the score that ranks it (a search's trial score). Default:
            the mean over its folds.
        units: what the scores are paired over, for the sentences. Default `"folds"`.

    Returns:
        A `Recommendation`.

    Raises:
        ValueError: for no candidate, a direction other than `"max"` and `"min"`, or no
            candidate with finite scores.

    Examples:
        >>> pick = recommend({"a": [0.95, 0.80, 0.98], "b": [0.90, 0.85, 0.94]})
        >>> pick.leader, pick.tied, pick.chosen
        ('a', ('a', 'b'), 'b')
    """
    if direction not in ("max", "min"):
        raise ValueError(f"`direction` must be 'max' or 'min'. Received: direction={direction!r}")
    if not scores:
        raise ValueError("recommend needs at least one candidate's scores")
    arrays = {name: np.asarray(values, "float64").reshape(-1) for name, values in scores.items()}
    finite = [name for name, values in arrays.items() if len(values) and np.all(np.isfinite(values))]
    if not finite:
        raise ValueError(f"no candidate has finite scores: {dict(scores)}")
    means = {name: float(np.mean(arrays[name])) if ranking is None else float(ranking[name]) for name in finite}
    spreads = {name: float(np.std(arrays[name])) for name in finite}
    sign = 1.0 if direction == "max" else -1.0
    leader = max(finite, key=lambda name: sign * means[name])  # the first of equal means
    folds = len(arrays[leader])
    comparisons = []
    for name in arrays:
        if name == leader:
            continue
        paired = min(folds, len(arrays[name]))
        if name not in finite or paired < 2:
            comparisons.append(PairedComparison(name, None, None, paired, False))
            continue
        difference, error = paired_difference(arrays[leader][:paired], arrays[name][:paired], direction)
        tied = paired == folds and difference <= error
        comparisons.append(PairedComparison(name, difference, error, paired, tied))
    tied = (leader, *sorted((c.candidate for c in comparisons if c.tied), key=lambda n: -sign * means[n]))
    chosen = min(tied, key=lambda name: (spreads[name], -sign * means[name]))
    return Recommendation(
        chosen=chosen,
        leader=leader,
        tied=tied,
        comparisons=tuple(comparisons),
        means={name: means[name] for name in finite},
        spreads=spreads,
        folds=folds,
        units=units,
    )
