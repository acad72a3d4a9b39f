"""The loss advisor: read the labels, rank the losses, and derive their starting parameters.

`advise(y, x=x)` profiles the labels (task, class counts and imbalance ratio, multi-label
cardinality, foreground share and empty masks for segmentation, duplicated inputs with
conflicting labels as a hint of label noise) and returns every candidate loss of the task,
ranked, each with parameters computed from the data and a one-line reason that cites its
paper. A loss search starts from this ranking (`make_tuner(..., starting_points=...)`),
so its first trials are the advisor's picks.

The rules are short and follow the papers' own claims, checked on this project's
benchmarks (docs/benchmarks.md, "Loss search"): logit adjustment first on long-tailed
multiclass labels (Menon et al. 2021), Lovasz-softmax first for segmentation scored by IoU
when the objects cover under 10% of the images that hold them, DiceCE first from there (Berman
et al. 2018; Isensee et al. 2021; measured on `shapes` and `vessels` and on held-out runs with and
without empty masks), then cross-entropy and log-Dice, asymmetric loss first for multi-label
targets with few positives (Ridnik et al. 2021), noise-robust losses first when the same
input carries different labels (Zhang & Sabuncu 2018; Wang et al. 2019).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_lossopt._validation import check_int
from keras_lossopt.tuning.search_space import LOSS_CANDIDATES, resolve_candidates
from keras_lossopt.tuning.validation import _infer_task, _one_hot_classes, check_labels, stratification_key

__all__ = ["Advice", "LabelProfile", "LossAdvice", "advise", "profile_labels"]

#: Imbalance ratio (largest / smallest class) from which the long-tail rules apply.
LONG_TAIL_RATIO = 3.0
#: Share of duplicated inputs carrying different labels from which noise-robust losses lead.
NOISE_SHARE = 0.02
#: Foreground share of the segmentation images that hold foreground (how much of such an image the
#: objects cover) from which DiceCE leads instead of Lovasz: set after held-out runs (docs/benchmarks.md,
#: "Segmentation advisor on held-out runs"), where Lovasz led at 6% and DiceCE tied or led at 11-15%.
OBJECT_SHARE_FOR_DICE_CE = 0.10
#: The learning rate of the advisor's picks (the command's `compare` default).
STARTING_LEARNING_RATE = 3e-3


@dataclasses.dataclass(frozen=True)
class LabelProfile:
    """What the labels say about the loss to use.

    Attributes:
        task: `"binary"`, `"multiclass"`, `"multilabel"` or `"segmentation"`.
        num_samples: samples (images for segmentation).
        class_counts: samples per class (pixels per class for segmentation, positives per
            label for multi-label).
        imbalance_ratio: largest over smallest nonzero count.
        label_cardinality: multi-label only: mean positive labels per sample.
        foreground_share: segmentation only: share of non-background (class > 0) pixels.
        empty_share: segmentation only: share of images without foreground.
        duplicated_inputs: samples whose input occurs more than once (0 without `x`).
        conflicting_inputs: samples whose input occurs with more than one label.
    """

    task: str
    num_samples: int
    class_counts: tuple[int, ...]
    imbalance_ratio: float
    label_cardinality: float | None = None
    foreground_share: float | None = None
    empty_share: float | None = None
    duplicated_inputs: int = 0
    conflicting_inputs: int = 0

    @property
    def conflict_share(self) -> float:
        """Share of samples whose input also occurs with another label."""
        return self.conflicting_inputs / self.num_samples if self.num_samples else 0.0

    def summary(self) -> str:
        """One line: task, counts, ratio and the task's own statistics."""
        parts = [
            f"{self.task}, {self.num_samples} samples, class counts {list(self.class_counts)}",
            f"imbalance ratio {self.imbalance_ratio:.1f}",
        ]
        if self.label_cardinality is not None:
            parts.append(f"{self.label_cardinality:.2f} positive labels per sample")
        if self.foreground_share is not None:
            parts.append(f"foreground {100 * self.foreground_share:.1f}% of pixels")
        if self.empty_share is not None:
            parts.append(f"{100 * self.empty_share:.0f}% of images without foreground")
        if self.duplicated_inputs:
            parts.append(
                f"{self.duplicated_inputs} samples with duplicated inputs, "
                f"{self.conflicting_inputs} with conflicting labels"
            )
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class LossAdvice:
    """One ranked loss: the search candidate, its starting parameters and why.

    Attributes:
        candidate: the name in `LOSS_CANDIDATES[task]`.
        parameters: constructor argument -> value (`"loss.gamma"` for a wrapped loss).
        reason: one line, citing the paper.
    """

    candidate: str
    parameters: dict[str, Any]
    reason: str


@dataclasses.dataclass(frozen=True)
class Advice:
    """The advisor's answer: the label profile and the ranked losses (best first)."""

    profile: LabelProfile
    ranked: tuple[LossAdvice, ...]

    @property
    def first(self) -> LossAdvice:
        """The advisor's first pick."""
        return self.ranked[0]

    def table(self) -> str:
        """The ranking as a Markdown table (rank, loss, parameters, reason)."""
        lines = ["| rank | loss | parameters | reason |", "| --- | --- | --- | --- |"]
        for rank, item in enumerate(self.ranked, start=1):
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in item.parameters.items()) or "-"
            lines.append(f"| {rank} | {item.candidate} | {shown} | {item.reason} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        profile = dataclasses.asdict(self.profile)
        profile["class_counts"] = list(profile["class_counts"])
        return {"profile": profile, "ranked": [dataclasses.asdict(item) for item in self.ranked]}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def class_balanced_beta(class_counts: Sequence[float], low: float = 0.9, high: float = 0.9999) -> float:
    """The class-balanced `beta` for these counts: `(N - 1) / N` with `N` the largest class count.

    Cui et al. (2019, Sec. 3) set `beta = (N - 1) / N` for a class whose samples cover
    `N` unique prototypes; taking `N` as the largest class count makes the effective
    number of that class `(1 - beta**N) / (1 - beta) ~ 0.63 N`, so the weights are close
    to inverse frequency for the rare classes and saturate for the largest one. The
    value is clipped to `[low, high]`, the paper's sweep.

    Args:
        class_counts: training samples per class.
        low: smallest beta. Default 0.9.
        high: largest beta. Default 0.9999.

    Returns:
        `beta` as a float.

    Examples:
        >>> class_balanced_beta([115, 119, 6, 6])
        0.9915966386554622
    """
    largest = float(np.max(np.asarray(class_counts, "float64")))
    return float(np.clip((largest - 1.0) / largest, low, high))


def _duplicates(x, labels: np.ndarray) -> tuple[int, int]:
    """Samples whose input occurs more than once, and those whose input occurs with several labels."""
    if x is None:
        return 0, 0
    rows = np.ascontiguousarray(np.asarray(x).reshape(len(labels), -1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, group, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    flat = np.ascontiguousarray(labels.reshape(len(labels), -1))
    label_keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    duplicated = sizes[group] > 1
    distinct = {}
    for g, lab in zip(group[duplicated], label_keys[duplicated]):
        distinct.setdefault(g, set()).add(lab.tobytes())
    conflicting = np.array([len(distinct.get(g, ())) > 1 for g in group])
    return int(duplicated.sum()), int(conflicting.sum())


def _check_num_classes(num_classes: int | None, found: int, task: str, what: str, *, exact: bool) -> None:
    """`num_classes` must cover the labels: at least `found` classes (exactly `found` columns if `exact`)."""
    if num_classes is None:
        return
    check_int("num_classes", num_classes, minimum=2)
    if task == "binary" and num_classes != 2:
        raise ValueError(
            f"`num_classes` must be 2 for task='binary'. Received: num_classes={num_classes}; "
            "pass task='multiclass' (or None) for more classes."
        )
    if num_classes < found or (exact and num_classes != found):
        raise ValueError(
            f"`num_classes` must {'equal' if exact else 'be at least'} the {found} {what} of the labels. "
            f"Received: num_classes={num_classes}; leave it None to count the classes from `y`."
        )


def profile_labels(y, task: str | None = None, *, x=None, num_classes: int | None = None) -> LabelProfile:
    """Profiles the labels (and, with `x`, duplicated inputs) for the advisor.

    Args:
        y: labels: `(N,)` classes, `(N, L)` 0/1 multi-label targets or `(N, H, W)` masks.
        task: the task, or None to infer it from `y`.
        x: the inputs, to find duplicated inputs with conflicting labels. Default None.
        num_classes: the number of classes, when some are absent from `y` (counts of 0 for
            the absent ones); it must cover every label (and equal the columns of one-hot or
            multi-label targets). Default None: counted from `y`.

    Returns:
        A `LabelProfile`. One-hot rows (exactly one 1 per row) are one class per sample:
        they are profiled as the classes of their 1s, not as multi-label targets.

    Raises:
        ValueError: for labels `check_labels` refuses (NaN, continuous, one class, ...);
            for a `num_classes` below 2 or smaller than the labels' classes.
    """
    labels = check_labels(y, task)
    if task is None:
        task = _infer_task(labels)
        if task == "binary" and num_classes is not None and num_classes > 2:
            # 0/1 labels of a task with more classes, some absent from this sample.
            task = "multiclass"
    if x is not None and len(np.asarray(x)) != len(labels):
        raise ValueError(f"`x` has {len(np.asarray(x))} samples but `y` has {len(labels)}: pass matching arrays.")
    duplicated, conflicting = _duplicates(x, labels)
    extra: dict[str, Any] = {}
    if task == "multilabel":
        _check_num_classes(num_classes, labels.reshape(len(labels), -1).shape[1], task, "label columns", exact=True)
        counts = labels.reshape(len(labels), -1).sum(axis=0)
        extra["label_cardinality"] = float(labels.reshape(len(labels), -1).sum(axis=1).mean())
    else:
        one_hot = _one_hot_classes(labels) if task in ("binary", "multiclass") else None
        if one_hot is not None:
            _check_num_classes(num_classes, labels.shape[1], task, "one-hot columns", exact=True)
            counts = np.bincount(one_hot, minlength=labels.shape[1])
        else:
            _check_num_classes(num_classes, int(labels.max()) + 1, task, "classes (largest label + 1)", exact=False)
            counts = np.bincount(labels.ravel(), minlength=num_classes or 0)
    if task == "segmentation":
        extra["foreground_share"] = float((labels > 0).mean())
        extra["empty_share"] = float((stratification_key(labels, task) == 0).mean())
    nonzero = counts[counts > 0]
    return LabelProfile(
        task=task,
        num_samples=len(labels),
        class_counts=tuple(int(c) for c in counts),
        imbalance_ratio=float(nonzero.max() / nonzero.min()),
        duplicated_inputs=duplicated,
        conflicting_inputs=conflicting,
        **extra,
    )


def _classification_advice(profile: LabelProfile) -> list[LossAdvice]:
    counts = np.asarray(profile.class_counts, "float64")
    ratio = profile.imbalance_ratio
    beta = class_balanced_beta(counts[counts > 0])
    long_tail = ratio >= LONG_TAIL_RATIO
    rare = f"imbalance {ratio:.0f}:1"
    conflicts = profile.conflicting_inputs
    noisy = f"{conflicts} samples share an input with another label: " if conflicts else ""
    items = {
        "logit_adjusted": LossAdvice(
            "logit_adjusted",
            {"tau": 1.0},
            f"{rare}: adds log class priors (from the counts) to the logits, the Bayes-consistent fix for "
            "balanced error at tau=1 (Menon et al. 2021, Long-Tail Learning via Logit Adjustment)",
        ),
        "ldam": LossAdvice(
            "ldam",
            {"max_margin": 0.5},
            f"{rare}: per-class margins n_c^(-1/4), largest 0.5 as in the paper (Cao et al. 2019, LDAM)",
        ),
        "class_balanced_focal": LossAdvice(
            "class_balanced_focal",
            {"beta": beta, "loss.gamma": 2.0},
            f"{rare}: weights by effective number with beta=(N-1)/N={beta:.4g} from the largest class "
            "(Cui et al. 2019, Class-Balanced Loss)",
        ),
        "focal": LossAdvice(
            "focal",
            {"gamma": 2.0, **({"alpha": 0.25 if counts[1] < counts[0] else 0.75} if profile.task == "binary" else {})},
            "down-weights easy examples, gamma=2 (Lin et al. 2017, Focal Loss)",
        ),
        "poly1": LossAdvice(
            "poly1", {"epsilon": 1.0}, "cross-entropy plus epsilon(1-p_t), epsilon=1 (Leng et al. 2022, PolyLoss)"
        ),
        "crossentropy": LossAdvice(
            "crossentropy", {}, "the maximum-likelihood baseline, calibrated on balanced labels (Bishop 2006, ch. 4.3)"
        ),
        "generalized_cross_entropy": LossAdvice(
            "generalized_cross_entropy",
            {"q": 0.7},
            f"{noisy}robust to label noise, q=0.7 (Zhang & Sabuncu 2018, Generalized Cross Entropy)",
        ),
        "symmetric_cross_entropy": LossAdvice(
            "symmetric_cross_entropy",
            {"alpha": 0.1, "beta": 1.0},
            f"{noisy}adds reverse CE for label noise, alpha=0.1, beta=1 (Wang et al. 2019, Symmetric Cross Entropy)",
        ),
        "asymmetric": LossAdvice(
            "asymmetric",
            {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05},
            f"{profile.label_cardinality or 0:.2f} positives per sample of {len(counts)} labels: down-weights "
            "and clips easy negatives (Ridnik et al. 2021, Asymmetric Loss)",
        ),
    }
    if profile.task == "multilabel":
        share = (profile.label_cardinality or 0.0) / max(1, len(counts))
        order = (
            ["asymmetric", "focal", "poly1", "crossentropy"]
            if share < 0.3
            else ["crossentropy", "poly1", "focal", "asymmetric"]
        )
    elif long_tail:
        order = ["logit_adjusted", "ldam", "class_balanced_focal", "focal", "poly1", "crossentropy"]
        if profile.task == "binary":
            order = ["class_balanced_focal", "focal", "poly1", "crossentropy"]
    else:
        order = ["crossentropy", "poly1", "focal", "class_balanced_focal", "logit_adjusted", "ldam"]
    if profile.conflict_share >= NOISE_SHARE and profile.task != "multilabel":
        order = ["symmetric_cross_entropy", "generalized_cross_entropy", *order]
    rest = [name for name in items if name not in order]
    return [items[name] for name in [*order, *rest] if name in LOSS_CANDIDATES[profile.task]]


def _segmentation_advice(profile: LabelProfile) -> list[LossAdvice]:
    share = profile.foreground_share or 0.0
    empty = profile.empty_share or 0.0
    object_share = share / (1.0 - empty) if empty < 1.0 else 0.0
    rare = f"foreground {100 * share:.1f}% of pixels, {100 * object_share:.1f}% of the images that hold it"
    items = {
        "lovasz": LossAdvice(
            "lovasz",
            {},
            f"{rare}: optimizes the IoU itself through its Lovasz extension, trains from scratch "
            "(Berman et al. 2018, The Lovasz-Softmax Loss)",
        ),
        "log_dice": LossAdvice(
            "log_dice",
            {},
            f"{rare}: -log(Dice) keeps a gradient as a rare class's Dice falls, unlike plain Dice "
            "(Wong et al. 2018, exponential logarithmic loss)",
        ),
        "dice_ce": LossAdvice(
            "dice_ce",
            {},
            f"{rare}: Dice for overlap plus per-pixel CE so no class collapses (Isensee et al. 2021, nnU-Net)",
        ),
        "crossentropy": LossAdvice(
            "crossentropy",
            {},
            f"{100 * empty:.0f}% empty masks: per-pixel CE is defined on every image (Long et al. 2015, FCN)",
        ),
        "focal": LossAdvice("focal", {"gamma": 2.0}, "per-pixel, down-weights easy background (Lin et al. 2017)"),
        "tversky": LossAdvice(
            "tversky",
            {"alpha": 0.3, "beta": 0.7},
            "weights false negatives over false positives (Salehi et al. 2017, Tversky loss)",
        ),
        "dice": LossAdvice(
            "dice", {}, "plain soft Dice (Milletari et al. 2016); collapses on rare classes from scratch"
        ),
        "focal_tversky": LossAdvice(
            "focal_tversky",
            {"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
            "Tversky with a focal exponent (Abraham & Khan 2019); collapses on rare classes from scratch",
        ),
    }
    # Set (docs/benchmarks.md, "Segmentation loss search at a deciding budget"; 3 seeds, 20 epochs, 48x48)
    # on `shapes` (foreground 6%: Lovasz 0.574, DiceCE 0.519, CE 0.433, log-Dice 0.426 mean IoU) and
    # `vessels` (11%: CE and DiceCE 0.834, a tie, Lovasz 0.829, log-Dice 0.820), then changed after
    # held-out runs ("Segmentation advisor on held-out runs"). DiceCE and CE used to go first when half
    # the masks or more were empty (nnU-Net's reasoning, never measured): with 60% empty masks and shapes
    # covering 6% of the other images Lovasz led DiceCE by 0.09; without the rule, with 50% empty and 15%,
    # DiceCE led Lovasz by 0.04. What told them apart was how much of an image holding foreground the
    # objects cover, not the empty masks (they only dilute the pixel share): Lovasz, the IoU surrogate,
    # led at 6% (`shapes`, with and without empty masks), DiceCE tied or led from 11% (`vessels`, `shapes`
    # at 15%). The threshold was chosen after those runs; seven sets run afterwards judged it (16% and 23%,
    # then 7.9%, 9.2%, 10.8%, 12.5% at 64x64 and 8.0% with five classes, declared before running): the
    # pick within 0.02 on all.
    if object_share >= OBJECT_SHARE_FOR_DICE_CE:
        order = ["dice_ce", "lovasz", "crossentropy", "log_dice"]
    else:
        order = ["lovasz", "dice_ce", "crossentropy", "log_dice"]
    rest = [name for name in items if name not in order]
    return [items[name] for name in [*order, *rest] if name in LOSS_CANDIDATES["segmentation"]]


def advise(
    y,
    task: str | None = None,
    *,
    x=None,
    candidates: Sequence[str] | None = None,
    num_classes: int | None = None,
    folds: int = 1,
) -> Advice:
    """Ranks the losses for these labels, with starting parameters derived from the data.

    Use it before training to pick a loss, or let a search start from it. Every loss of
    the ranking is a candidate of `LOSS_CANDIDATES[task]`; losses that need the class
    counts (logit adjustment, LDAM, class-balanced) take them from the training labels
    when they are built (`build_loss(..., class_counts=...)`).

    Args:
        y: training labels: `(N,)` or `(N, 1)` classes, `(N, L)` 0/1 multi-label targets,
            `(N, H, W)` segmentation masks.
        task: the task, or None (default) to infer it from `y`.
        x: the inputs, to detect duplicated inputs with conflicting labels (a hint of label
            noise). Default None.
        candidates: keep only these candidates (in the advisor's order). Default: all of
            the task's candidates.
        num_classes: number of classes, when some are absent from `y`; it must cover every
            label (see `profile_labels`). Default None: counted from `y`.
        folds: the folds the search will use; every class needs that many samples.
            Default 1.

    Returns:
        An `Advice`: `.profile`, `.ranked` (best first), `.first`, `.table()`.

    Raises:
        ValueError: one line naming the problem and the fix for labels that are NaN,
            continuous, a single class, or have a class with fewer samples than `folds`;
            for unknown candidates.

    Examples:
        >>> import numpy as np
        >>> advice = advise(np.repeat([0, 1, 2], [100, 100, 5]))
        >>> advice.first.candidate, advice.first.parameters
        ('logit_adjusted', {'tau': 1.0})
    """
    check_labels(y, task, folds=folds)
    profile = profile_labels(y, task, x=x, num_classes=num_classes)
    ranked = _segmentation_advice(profile) if profile.task == "segmentation" else _classification_advice(profile)
    if candidates is not None:
        wanted = [c.name for c in resolve_candidates(profile.task, candidates)]
        ranked = [item for item in ranked if item.candidate in wanted]
        known = {item.candidate for item in ranked}
        ranked += [LossAdvice(name, {}, "named by the user") for name in wanted if name not in known]
    return Advice(profile, tuple(ranked))
