"""The loss search space: which losses a search may pick, and each one's own parameters.

The tables are data, not code: a `LossCandidate` names a loss by its registry identifier
(`keras_lossopt.losses.get`), the constructor arguments a task fixes (`mode`,
`from_logits`, class counts) and the `Param`s a search varies. A candidate's name is a
name `keras_lossopt.losses.get` knows for the same loss (`"focal"`, `"poly1"`,
`"class_balanced_focal"`, ...), so the search, the command and the registry share one
vocabulary; `crossentropy` builds Keras' binary or sparse categorical cross-entropy as
the task needs. A candidate whose loss is
not installed fails with a clear error when a search is set up, never silently.

`choose_loss` turns the table into keras-tuner hyperparameters: the loss is an
`hp.Choice` over names (keras-tuner only takes int, float, str and bool values) and every
candidate's parameters are declared under `hp.conditional_scope("loss", [name])`, for
every candidate on every build, so that they are active exactly when their loss is chosen
and the oracle sees the whole space from the first trial.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_lossopt._validation import check_choice

__all__ = [
    "DEFAULT_CANDIDATES",
    "LOSS_CANDIDATES",
    "TASKS",
    "LossCandidate",
    "Param",
    "build_loss",
    "choose_loss",
    "resolve_candidates",
]

TASKS = ("binary", "multiclass", "multilabel", "segmentation")
"""The tasks a loss search knows."""
LOSS_HP = "loss"


@dataclasses.dataclass(frozen=True)
class Param:
    """One tunable constructor argument of a loss.

    Attributes:
        argument: the constructor argument; `"loss.gamma"` sets `gamma` of a wrapped
            inner loss (e.g. the focal loss inside `ClassBalancedLoss`).
        kind: `"float"`, `"int"` or `"choice"`.
        low: lower bound for `"float"` and `"int"`.
        high: upper bound for `"float"` and `"int"`.
        sampling: `"linear"` or `"log"` for `"float"` and `"int"`.
        values: the options of a `"choice"`.
        default: the value of the first trial; None means keras-tuner's default (`low`
            or the first option).
    """

    argument: str
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    sampling: str = "linear"
    values: tuple[Any, ...] = ()
    default: Any = None

    def __post_init__(self):
        check_choice("kind", self.kind, ("float", "int", "choice"))
        if self.kind == "choice" and not self.values:
            raise ValueError(f"A choice parameter needs `values`. Received: values={self.values!r} for {self.argument}")
        if self.kind != "choice" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError(
                f"`low` must be below `high` for {self.argument}. Received: low={self.low}, high={self.high}"
            )

    def register(self, hp, name: str):
        """Declares this parameter as `name` in `hp` and returns its current value."""
        if self.kind == "float":
            return hp.Float(name, self.low, self.high, sampling=self.sampling, default=self.default)
        if self.kind == "int":
            return hp.Int(name, int(self.low), int(self.high), sampling=self.sampling, default=self.default)
        return hp.Choice(name, list(self.values), default=self.default)


@dataclasses.dataclass(frozen=True)
class LossCandidate:
    """A loss a search may choose, with its fixed arguments and its tunable `Param`s.

    Attributes:
        name: the value of the `loss` hyperparameter (and the name in reports).
        loss: the identifier `keras_lossopt.losses.get` resolves (alias or class name).
        fixed: constructor arguments fixed for the task (`mode`, an inner loss, ...).
        params: the tunable arguments.
        takes_from_logits: whether the loss (or its inner loss) takes `from_logits`;
            losses that do not (logit adjustment, LDAM) work on logits only.
        needs_class_counts: whether the loss needs the training class counts (passed to
            `choose_loss(class_counts=...)`) as its `class_counts` argument.
    """

    name: str
    loss: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    params: tuple[Param, ...] = ()
    takes_from_logits: bool = True
    needs_class_counts: bool = False


def loss_hyperparameter_name(candidate: str, argument: str) -> str:
    """The keras-tuner name of a candidate's parameter, e.g. `"focal/gamma"`."""
    return f"{candidate}/{argument.replace('loss.', '')}"


# Ranges follow the papers' own sweeps: focal gamma 0.5-4 (Lin et al. 2017 sweep 0-5, best
# 2), Poly-1 epsilon -1..3 (Leng et al. 2022), class-balanced beta 0.9-0.9999 (Cui et al.
# 2019), asymmetric gamma_neg 1-6 and clip <= 0.1 (Ridnik et al. 2021), logit adjustment tau
# 0.5-2 (Menon et al. 2021), LDAM max margin 0.1-1 (Cao et al. 2019), Tversky false-positive
# weight alpha 0.1-0.7 and false-negative weight beta 0.3-0.9 (Salehi et al. 2017 pair
# beta = 1 - alpha; both are searched), focal Tversky gamma 0.5-3 (Abraham & Khan 2019).
_GAMMA = Param("gamma", low=0.5, high=4.0, default=2.0)
_LABEL_SMOOTHING = Param("label_smoothing", kind="choice", values=(0.0, 0.05, 0.1))
_POLY_EPSILON = Param("epsilon", low=-1.0, high=3.0, default=1.0)
# "reverse_log" samples 1 - beta log-uniformly, so 0.9, 0.99, 0.999 and 0.9999 are equally likely
# and the advisor's beta = (N - 1) / N from the counts lies inside the range.
_CB_BETA = Param("beta", low=0.9, high=0.9999, sampling="reverse_log", default=0.999)


def _classification_table(mode: str, crossentropy: str) -> dict[str, LossCandidate]:
    sigmoid = mode != "multiclass"
    focal_params = (_GAMMA, Param("alpha", low=0.1, high=0.9, default=0.25)) if sigmoid else (_GAMMA, _LABEL_SMOOTHING)
    return {
        "crossentropy": LossCandidate("crossentropy", crossentropy),
        "focal": LossCandidate("focal", "focal", {"mode": mode}, focal_params),
        "poly1": LossCandidate(
            "poly1", "poly1", {"mode": mode}, (_POLY_EPSILON,) if sigmoid else (_POLY_EPSILON, _LABEL_SMOOTHING)
        ),
        "class_balanced_focal": LossCandidate(
            "class_balanced_focal",
            "class_balanced_focal",
            {"loss": {"name": "focal", "config": {"mode": mode}}},
            (_CB_BETA, dataclasses.replace(_GAMMA, argument="loss.gamma")),
            needs_class_counts=True,
        ),
        "logit_adjusted": LossCandidate(
            "logit_adjusted",
            "logit_adjusted",
            {},
            (Param("tau", low=0.5, high=2.0, default=1.0),),
            takes_from_logits=False,
            needs_class_counts=True,
        ),
        "ldam": LossCandidate(
            "ldam",
            "ldam",
            {},
            (Param("max_margin", low=0.1, high=1.0, default=0.5),),
            takes_from_logits=False,
            needs_class_counts=True,
        ),
        "asymmetric": LossCandidate(
            "asymmetric",
            "asymmetric",
            {},
            (
                Param("gamma_neg", low=1.0, high=6.0, default=4.0),
                Param("gamma_pos", low=0.0, high=2.0, default=1.0),
                Param("clip", low=0.0, high=0.1, default=0.05),
            ),
        ),
        "generalized_cross_entropy": LossCandidate(
            "generalized_cross_entropy",
            "generalized_cross_entropy",
            {},
            (Param("q", low=0.1, high=1.0, default=0.7),),
        ),
        "symmetric_cross_entropy": LossCandidate(
            "symmetric_cross_entropy",
            "symmetric_cross_entropy",
            {},
            (Param("alpha", low=0.05, high=1.0, default=0.1), Param("beta", low=0.1, high=2.0, default=1.0)),
        ),
    }


def _segmentation_table() -> dict[str, LossCandidate]:
    # keras_lossopt's Tversky weighs false positives by alpha and false negatives by beta.
    tversky = (Param("alpha", low=0.1, high=0.7, default=0.3), Param("beta", low=0.3, high=0.9, default=0.7))
    return {
        "crossentropy": LossCandidate("crossentropy", "SparseCategoricalCrossentropy"),
        "focal": LossCandidate("focal", "focal", {"mode": "multiclass"}, (_GAMMA,)),
        "dice": LossCandidate("dice", "dice"),
        "dice_ce": LossCandidate("dice_ce", "dice_ce"),
        "log_dice": LossCandidate("log_dice", "log_dice"),
        "tversky": LossCandidate("tversky", "tversky", {}, tversky),
        "focal_tversky": LossCandidate(
            "focal_tversky", "focal_tversky", {}, (*tversky, Param("gamma", low=0.5, high=3.0, default=0.75))
        ),
        "lovasz": LossCandidate("lovasz", "lovasz"),
    }


LOSS_CANDIDATES: dict[str, dict[str, LossCandidate]] = {
    "binary": {
        name: c
        for name, c in _classification_table("binary", "BinaryCrossentropy").items()
        if name not in ("logit_adjusted", "ldam", "asymmetric")
    },
    "multiclass": {
        name: c
        for name, c in _classification_table("multiclass", "SparseCategoricalCrossentropy").items()
        if name != "asymmetric"
    },
    "multilabel": {
        name: c
        for name, c in _classification_table("multilabel", "BinaryCrossentropy").items()
        if name in ("crossentropy", "focal", "poly1", "asymmetric")
    },
    "segmentation": _segmentation_table(),
}
"""Task -> candidate name -> `LossCandidate`: every loss a search can choose from."""

DEFAULT_CANDIDATES: dict[str, tuple[str, ...]] = {
    "binary": ("crossentropy", "focal", "poly1", "class_balanced_focal"),
    # The long-tail losses belong here: on digits-imbalanced logit adjustment beats cross-entropy by
    # 0.15 test macro-F1 (docs/benchmarks.md, "Loss search versus fixed losses").
    "multiclass": ("crossentropy", "focal", "poly1", "class_balanced_focal", "logit_adjusted", "ldam"),
    "multilabel": ("crossentropy", "focal", "poly1", "asymmetric"),
    # Only losses that train a U-Net from scratch on rare foreground: plain Dice and focal Tversky end
    # at foreground IoU 0 (docs/benchmarks.md, "Segmentation losses").
    "segmentation": ("crossentropy", "dice_ce", "log_dice", "lovasz"),
}
"""Task -> the candidates a search and `keras-lossopt compare` use when none are given."""


def select_candidates(task: str, candidates: Sequence[str | LossCandidate] | None = None) -> list[LossCandidate]:
    """The `LossCandidate`s that names refer to, without building them (no Keras needed).

    Args:
        task: `"binary"`, `"multiclass"`, `"multilabel"` or `"segmentation"`.
        candidates: names from `LOSS_CANDIDATES[task]` and/or `LossCandidate`s. Default:
            `DEFAULT_CANDIDATES[task]`.

    Returns:
        The candidates, in the given order.

    Raises:
        ValueError: for an unknown task, an empty list, or an unknown or repeated name
            (listing the task's candidates and suggesting the closest).

    Examples:
        >>> [c.loss for c in select_candidates("binary", ["focal", "poly1"])]
        ['focal', 'poly1']
    """
    task = check_choice("task", task, TASKS)
    table = LOSS_CANDIDATES[task]
    names = DEFAULT_CANDIDATES[task] if candidates is None else candidates
    if isinstance(names, (str, LossCandidate)):
        names = [names]
    if not names:
        raise ValueError("`candidates` must name at least one loss. Received an empty list.")
    resolved = []
    for item in names:
        if isinstance(item, LossCandidate):
            resolved.append(item)
        elif isinstance(item, str) and item in table:
            resolved.append(table[item])
        else:
            raise ValueError(_unknown_candidate_message(item, task))
    seen = [c.name for c in resolved]
    if len(set(seen)) != len(seen):
        raise ValueError(f"`candidates` names a loss twice. Received: {seen}")
    return resolved


def _unknown_candidate_message(item: Any, task: str) -> str:
    table = LOSS_CANDIDATES[task]
    message = f"Unknown loss candidate {item!r} for task={task!r}. Known candidates: {sorted(table)}."
    other_tasks = [t for t in TASKS if t != task and item in LOSS_CANDIDATES[t]]
    if other_tasks:
        return f"{message} {item!r} is a candidate for task={other_tasks[0]!r}."
    close = difflib.get_close_matches(str(item), list(table), n=1)
    return f"{message} Did you mean {close[0]!r}?" if close else message


def resolve_candidates(
    task: str,
    candidates: Sequence[str | LossCandidate] | None = None,
    *,
    from_logits: bool = True,
    class_counts: Sequence[float] | None = None,
) -> list[LossCandidate]:
    """The `LossCandidate`s of a search, each checked to build.

    `select_candidates`, then every candidate is built once through `build_loss` (that is,
    `keras_lossopt.losses.get`), so an identifier the registry does not know, or fixed
    arguments its loss refuses, fail here with the registry's own message rather than in a
    later trial. A candidate that needs class counts is built only when `class_counts` is
    given.

    Args:
        task: `"binary"`, `"multiclass"`, `"multilabel"` or `"segmentation"`.
        candidates: names from `LOSS_CANDIDATES[task]` and/or `LossCandidate`s. Default:
            `DEFAULT_CANDIDATES[task]`.
        from_logits: whether the model outputs logits (as in `build_loss`). Default True.
        class_counts: training samples per class, for the candidates that need them.
            Default None.

    Returns:
        The candidates, in the given order.

    Raises:
        ValueError: for an unknown task, an unknown or repeated name, or a candidate
            whose loss cannot be built (naming the candidate, its loss and the reason).
    """
    resolved = select_candidates(task, candidates)
    for candidate in resolved:
        if candidate.needs_class_counts and class_counts is None:
            continue
        try:
            build_loss(candidate, from_logits=from_logits, class_counts=class_counts)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Loss candidate {candidate.name!r} (loss {candidate.loss!r}) cannot be built: {error}"
            ) from error
    return resolved


def _set_argument(kwargs: dict[str, Any], argument: str, value: Any) -> None:
    if argument.startswith("loss."):
        inner = kwargs["loss"]
        inner.setdefault("config", {})[argument[len("loss.") :]] = value
    else:
        kwargs[argument] = value


def build_loss(
    candidate: LossCandidate,
    values: Mapping[str, Any] | None = None,
    *,
    from_logits: bool = True,
    class_counts: Sequence[float] | None = None,
):
    """Builds the loss of `candidate` with the given parameter values.

    Args:
        candidate: the `LossCandidate`.
        values: argument -> value for its `Param`s (`{"gamma": 1.5, "loss.gamma": ...}`);
            missing ones take the loss' own defaults.
        from_logits: whether the model outputs logits. Default True.
        class_counts: training samples per class, for candidates that need them.

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ValueError: when the candidate needs `class_counts` and none are given.
    """
    from keras_lossopt import losses

    kwargs: dict[str, Any] = {
        key: (
            {"name": value["name"], "config": dict(value.get("config", {}))}
            if isinstance(value, Mapping) and key == "loss"
            else value
        )
        for key, value in candidate.fixed.items()
    }
    for argument, value in (values or {}).items():
        _set_argument(kwargs, argument, value)
    if not candidate.takes_from_logits and not from_logits:
        raise ValueError(
            f"Loss candidate {candidate.name!r} works on logits only; the model must output logits "
            "(from_logits=True) or the candidate must be left out."
        )
    if candidate.takes_from_logits:
        if "loss" in kwargs and isinstance(kwargs["loss"], dict):
            kwargs["loss"]["config"]["from_logits"] = bool(from_logits)
        else:
            kwargs["from_logits"] = bool(from_logits)
    if candidate.needs_class_counts:
        if class_counts is None:
            raise ValueError(
                f"Loss candidate {candidate.name!r} needs the training class counts: pass "
                "`class_counts=` (e.g. numpy.bincount(y_train)) or leave it out of `candidates`."
            )
        kwargs["class_counts"] = [float(c) for c in np.asarray(class_counts).ravel()]
    return losses.get(candidate.loss, **kwargs)


def choose_loss(
    hp,
    task: str = "multiclass",
    candidates: Sequence[str | LossCandidate] | None = None,
    *,
    from_logits: bool = True,
    class_counts: Sequence[float] | None = None,
    default: str | None = None,
):
    """Registers the choice of loss (and each loss' parameters) in `hp`; returns the chosen loss.

    Use it inside a keras-tuner `build(hp)` to make the loss part of the search. The loss
    is `hp.Choice("loss", names)`; each candidate's parameters are declared as
    `"<candidate>/<argument>"` (e.g. `"focal/gamma"`) inside
    `hp.conditional_scope("loss", [candidate])`, for every candidate on every call, so a
    parameter is active exactly when its loss is chosen. (Declared only inside an `if`
    branch, keras-tuner would treat them as always active and never learn the
    condition.)

    Args:
        hp: a `keras_tuner.HyperParameters`.
        task: `"binary"`, `"multiclass"` (default), `"multilabel"` or `"segmentation"`.
        candidates: candidate names (see `LOSS_CANDIDATES[task]`) or `LossCandidate`s.
            Default: `DEFAULT_CANDIDATES[task]`.
        from_logits: whether the model outputs logits. Default True.
        class_counts: training samples per class, for class-balanced, logit-adjusted and
            LDAM candidates. Default None.
        default: the candidate of the first trial. Default: the first candidate.

    Returns:
        The chosen, configured `keras.losses.Loss`.

    Raises:
        ValueError: for an unknown task or candidate, a candidate whose loss is not
            installed, or a missing `class_counts`.

    Examples:
        >>> import keras_tuner
        >>> hp = keras_tuner.HyperParameters()
        >>> loss = choose_loss(hp, "multiclass", ["crossentropy", "focal"], default="focal")
        >>> type(loss).__name__, hp.get("focal/gamma"), hp.is_active("focal/gamma")
        ('FocalLoss', 2.0, True)
    """
    resolved = resolve_candidates(task, candidates, from_logits=from_logits, class_counts=class_counts)
    names = [c.name for c in resolved]
    chosen = hp.Choice(LOSS_HP, names, default=check_choice("default", default, names) if default else None)
    values: dict[str, Any] = {}
    for candidate in resolved:
        with hp.conditional_scope(LOSS_HP, [candidate.name]):
            for param in candidate.params:
                value = param.register(hp, loss_hyperparameter_name(candidate.name, param.argument))
                if candidate.name == chosen:
                    values[param.argument] = value
    candidate = resolved[names.index(chosen)]
    return build_loss(candidate, values, from_logits=from_logits, class_counts=class_counts)
