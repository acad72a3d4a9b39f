"""What each searched part adds to the recommended configuration, measured on the search's own folds.

The ladder removes the parts one at a time from the recommended trial's configuration:

1. `loss only`: its loss (with the loss' own parameters) and no regularization; the
   optimizer is Adam at the advisor's starting rate (3e-3, where a loss-only search
   starts) when the optimizer was searched, else the trial's own Adam rate;
2. `loss + optimizer`: its optimizer family and parameters added (when searched);
3. the whole configuration: its regularization strengths added (when searched).

Every step is cross-validated on the folds and seeds of the search
(`tuning.cross_validate_configuration` with the search's seed: the same splits, early
stopping and balanced folds), so consecutive steps differ by one part and are compared
fold by fold. A part's gain is the mean paired difference with its standard error
(`recommendation.paired_difference`); a gain within one standard error is a tie inside the
noise, the rule the command recommends by (`recommendation.RULE`), and `recommend` over
the steps says which configuration that rule keeps (a simpler one when they tie and it
varies less over folds).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_lossopt.cli import report
from keras_lossopt.cli.recommendation import paired_difference, recommend
from keras_lossopt.cli.space import SPACE_PARTS

__all__ = ["STARTING_OPTIMIZER", "ablation_ladder", "measure_part_gains", "part_gains_table"]

STARTING_OPTIMIZER = ("adam", 3e-3)
"""The optimizer of the `loss only` step when the optimizer was searched: a loss-only search's start."""


def _starting_optimizer() -> dict[str, Any]:
    import keras

    family, rate = STARTING_OPTIMIZER
    serialized = keras.optimizers.serialize(keras.optimizers.Adam(rate))
    config = {k: v for k, v in serialized["config"].items() if k != "name"}
    return {"family": family, "parameters": {"learning_rate": rate}, "config": {**serialized, "config": config}}


def _label(parts: Sequence[str]) -> str:
    return "loss only" if list(parts) == ["loss"] else " + ".join(parts)


def ablation_ladder(configuration: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The configurations of the ladder, from the loss alone to the whole configuration.

    Args:
        configuration: the recommended trial's configuration
            (`tuning.configuration_from_hyperparameters`).

    Returns:
        `(label, configuration)` pairs, one per searched part, e.g. `("loss only", ...)`,
        `("loss + optimizer", ...)`, `("loss + optimizer + regularization", ...)`.
    """
    space = [part for part in SPACE_PARTS if part in configuration["space"]]
    steps = []
    for count in range(1, len(space) + 1):
        parts = space[:count]
        step = copy.deepcopy(dict(configuration))
        step["space"] = parts
        if "optimizer" in space and "optimizer" not in parts:
            step["optimizer"] = _starting_optimizer()
        if "regularization" not in parts:
            step["regularization"] = None
        steps.append((_label(parts), step))
    return steps


def measure_part_gains(
    configuration: Mapping[str, Any],
    score: Callable[[dict[str, Any]], Sequence[float]],
    *,
    direction: str = "max",
    units: str = "folds",
) -> dict[str, Any]:
    """Scores the ladder and the gain of each part over the step before it.

    Args:
        configuration: the recommended trial's configuration.
        score: `configuration -> its score per fold`, the same folds for every call (the
            command passes `tuning.cross_validate_configuration` with the search's folds and seed).
        direction: `"max"` (default) or `"min"`, the objective's direction.
        units: what the scores are paired over. Default `"folds"`.

    Returns:
        A JSON-ready dict: `steps` (label, parts, scores, mean, std), `gains` (part, from, to,
        gain, standard_error, verdict: `"gain"`, `"worse"` or `"tie"` within one standard
        error), `total` (the whole configuration against the loss alone, the same fields),
        `recommended` (`recommend` over the steps: label, tie, summary) and `rule`.
    """
    ladder = ablation_ladder(configuration)
    steps = []
    scored: dict[str, list[float]] = {}
    for label, step in ladder:
        # A part the winner left at its starting value (Adam at 3e-3) gives the step before: scored once.
        trained = {"loss": step["loss"]["config"], "optimizer": step["optimizer"]["config"],
                   "regularization": step["regularization"]}  # fmt: skip
        key = json.dumps(trained, sort_keys=True, default=str)
        if key not in scored:
            scored[key] = [float(v) for v in score(step)]
        values = scored[key]
        steps.append(
            {
                "label": label,
                "parts": step["space"],
                "scores": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
            }
        )

    def compare(before, after, part):
        if len(before["scores"]) < 2 or len(before["scores"]) != len(after["scores"]):
            return {"part": part, "from": before["label"], "to": after["label"], "gain": None,
                    "standard_error": None, "verdict": "not judged (one score each)"}  # fmt: skip
        gain, error = paired_difference(after["scores"], before["scores"], direction)
        verdict = "tie" if abs(gain) <= error else ("gain" if gain > 0 else "worse")
        return {"part": part, "from": before["label"], "to": after["label"], "gain": gain,
                "standard_error": error, "verdict": verdict}  # fmt: skip

    gains = [compare(steps[k - 1], steps[k], steps[k]["parts"][-1]) for k in range(1, len(steps))]
    result: dict[str, Any] = {"steps": steps, "gains": gains, "paired_over": f"{len(steps[0]['scores'])} {units}"}
    if len(steps) > 2:
        result["total"] = compare(steps[0], steps[-1], " + ".join(steps[-1]["parts"][1:]))
    pick = recommend({s["label"]: s["scores"] for s in steps}, direction=direction, units=units)
    result["recommended"] = {"label": pick.chosen, "tie": list(pick.tied) if pick.is_tie else None,
                             "summary": pick.describe()}  # fmt: skip
    result["rule"] = (
        f"paired over the same {units}, a part whose mean gain is within one standard error of the paired "
        f"difference is a tie inside the noise; {pick.rule}"
    )
    return result


def _verdict_text(gain: Mapping[str, Any]) -> str:
    if gain["gain"] is None:
        return gain["verdict"]
    shown = f"{gain['gain']:+.4f} (standard error {gain['standard_error']:.4f})"
    words = {"gain": "a gain", "worse": "worse", "tie": "a tie within the noise"}[gain["verdict"]]
    return f"{shown}: {words}"


def part_gains_table(gains: Mapping[str, Any], objective_name: str) -> str:
    """The markdown table of `measure_part_gains`: one row per step, the part it adds and its verdict."""
    by_target = {g["to"]: g for g in gains["gains"]}
    rows = []
    for step in gains["steps"]:
        gain = by_target.get(step["label"])
        rows.append(
            [
                step["label"],
                f"{step['mean']:.4f} ± {step['std']:.4f}",
                gain["part"] if gain else "-",
                _verdict_text(gain) if gain else "-",
                "recommended" if step["label"] == gains["recommended"]["label"] else "",
            ]
        )
    header = ["configuration", f"{objective_name} ({gains['paired_over']})", "part added", "gain over the row above",
              "decision"]  # fmt: skip
    return report.markdown_table(header, rows)
