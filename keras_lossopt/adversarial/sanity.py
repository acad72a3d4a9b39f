"""Checks that catch false robustness, each turned into a warning of the evaluation result.

A high robust accuracy can come from a model that is robust or from an attack that failed:
gradients that are zero, noisy or misleading (gradient masking) stop gradient attacks without
making the model any harder to fool. These are the checks of AutoAttack's own code
(fra31/auto-attack, `autoattack/checks.py`: `check_zero_gradients`, `check_square_sr`) and of
Carlini et al.'s evaluation guide (2019, section 5: an unbounded attack must succeed,
iterative attacks must converge, black-box attacks must not beat white-box ones):

* `zero_gradient_warning`: samples whose input gradient is exactly zero;
* `black_box_warning`: the gradient-free Square attack breaks samples that the gradient
  attacks left standing, by more than 0.2 points (AutoAttack's `check_square_sr` threshold);
* `eps_growth_warning`: robust accuracy does not fall as eps grows, or stays above 5% at an
  eps that covers the whole input range;
* `more_iterations_warning`: an attack with four times the iterations breaks more than a
  tolerance of the samples the evaluation left standing (the attack had not converged).
"""

from __future__ import annotations

import itertools

import numpy as np
from keras import ops

from keras_lossopt.adversarial._backend import value_and_input_gradient
from keras_lossopt.adversarial.apgd import AutoProjectedGradientDescent
from keras_lossopt.adversarial.objectives import (
    class_scores,
    cross_entropy_from_scores,
    detect_from_logits,
    predicted_labels,
    sparse_labels,
)

__all__ = [
    "black_box_warning",
    "eps_growth_warning",
    "more_iterations_warning",
    "run_sanity_checks",
    "zero_gradient_warning",
]


def _robust(model, x, labels):
    scores = class_scores(model(ops.convert_to_tensor(x), training=False), detect_from_logits(model))
    return np.asarray(ops.convert_to_numpy(ops.equal(predicted_labels(scores), ops.convert_to_tensor(labels))))


def zero_gradient_warning(model, x, y):
    """A warning when some samples have an all-zero cross-entropy input gradient, else None.

    Args:
        model: the Keras model.
        x: clean inputs.
        y: labels.

    Returns:
        A message or None.
    """
    x = ops.convert_to_tensor(np.asarray(x, dtype="float32"))
    labels = ops.convert_to_tensor(y)

    def total(x):
        scores = class_scores(model(x, training=False), detect_from_logits(model))
        return ops.sum(cross_entropy_from_scores(sparse_labels(labels, scores.shape[-1]), scores)), ()

    _, gradient = value_and_input_gradient(total, x)
    if gradient is None:
        return "The input gradient is None: gradient attacks cannot run; the robust accuracy is not a bound."
    flat = np.abs(ops.convert_to_numpy(gradient).reshape(len(x), -1)).sum(axis=1)
    zero = int((flat == 0).sum())
    if zero == 0:
        return None
    return (
        f"{zero} of {len(flat)} checked samples have an all-zero input gradient: gradient attacks cannot move "
        "them, and the robust accuracy may be overstated (gradient masking: saturated softmax, quantization, "
        "non-differentiable layers)."
    )


def black_box_warning(accuracy_before, accuracy_after, tolerance=0.002):
    """A warning when the black-box attack lowers robust accuracy after the white-box ones, else None.

    Args:
        accuracy_before: robust accuracy after the gradient attacks.
        accuracy_after: robust accuracy after the black-box attack ran on their survivors.
        tolerance: the drop that is tolerated. Default 0.002 (AutoAttack's).

    Returns:
        A message or None.

    Examples:
        >>> black_box_warning(0.80, 0.799) is None
        True
        >>> black_box_warning(0.80, 0.70)[:41]
        'The black-box Square attack lowered the r'
    """
    drop = accuracy_before - accuracy_after
    if drop <= tolerance:
        return None
    return (
        f"The black-box Square attack lowered the robust accuracy left by the gradient attacks by "
        f"{100 * drop:.1f} points ({100 * accuracy_before:.1f}% -> {100 * accuracy_after:.1f}%): a gradient-free "
        "attack should not beat gradient attacks, so the gradients are likely masked and white-box numbers are "
        "unreliable. Run Square with more queries and restarts, or an adaptive attack."
    )


def eps_growth_warning(model, x, y, eps, *, norm="linf", clip=(0.0, 1.0), steps=25, max_accuracy=0.05, seed=None):
    """A warning when robust accuracy does not fall towards 0 as eps grows to the whole input range.

    Runs APGD-CE at `eps * 2 ** k` up to the eps that covers the input range (`high - low` for
    L-inf, `(high - low) * sqrt(d)` for L2).

    Args:
        model: the Keras model.
        x: clean inputs (a small sample: 100 is plenty).
        y: labels.
        eps: the evaluated budget, > 0.
        norm: `"linf"` or `"l2"`. Default `"linf"`.
        clip: valid input range; None means an unbounded range, where the check uses
            `eps * 2 ** 6` as its largest budget. Default `(0, 1)`.
        steps: APGD iterations per budget. Default 25.
        max_accuracy: the robust accuracy tolerated at the largest budget. Default 0.05.
        seed: seed. Default None.

    Returns:
        `(message or None, curve)`, `curve` a list of `(eps, robust accuracy)`.
    """
    labels = np.asarray(y)
    dims = int(np.prod(np.shape(x)[1:]))
    if clip is None:
        largest = eps * 64
    else:
        width = clip[1] - clip[0]
        largest = width if norm == "linf" else width * float(np.sqrt(dims))
    budgets = []
    current = eps * 2
    while current < largest:
        budgets.append(current)
        current *= 2
    budgets.append(largest)
    curve = []
    for budget in budgets:
        attack = AutoProjectedGradientDescent(budget, norm=norm, steps=steps, clip=clip, seed=seed)
        curve.append((float(budget), float(_robust(model, attack(model, x, labels), labels).mean())))
    problems = []
    for (eps_low, low), (eps_high, high) in itertools.pairwise(curve):
        if high > low + 0.02:
            problems.append(f"it rose from {100 * low:.1f}% at eps {eps_low:g} to {100 * high:.1f}% at {eps_high:g}")
    if curve[-1][1] > max_accuracy:
        problems.append(
            f"it is still {100 * curve[-1][1]:.1f}% at eps {curve[-1][0]:g}, a budget that reaches any input"
        )
    if not problems:
        return None, curve
    return (
        "Robust accuracy does not fall to ~0 as eps grows (" + "; ".join(problems) + "): the attack fails for a "
        "reason other than robustness (gradient masking or a bounded, saturated output).",
        curve,
    )


def more_iterations_warning(model, x, y, standing, eps, *, norm="linf", clip=(0.0, 1.0), steps=400, tolerance=0.01,
                            seed=None):  # fmt: skip
    """A warning when more iterations break more than `tolerance` of the samples, else None.

    Runs APGD-CE with `steps` iterations (four times AutoAttack's 100 by default) on the
    samples the evaluation left standing.

    Args:
        model: the Keras model.
        x: clean inputs (a small sample).
        y: labels.
        standing: bool `(N,)`: robust under the evaluation.
        eps: budget.
        norm: `"linf"` or `"l2"`. Default `"linf"`.
        clip: valid input range. Default `(0, 1)`.
        steps: iterations of the longer attack. Default 400.
        tolerance: the share of the checked samples that may still fall. Default 0.01.
        seed: seed. Default None.

    Returns:
        `(message or None, accuracy drop)`.
    """
    labels = np.asarray(y)
    standing = np.asarray(standing, dtype=bool)
    if not standing.any():
        return None, 0.0
    attack = AutoProjectedGradientDescent(eps, norm=norm, steps=steps, clip=clip, seed=seed)
    x_more = attack(model, np.asarray(x)[standing], labels[standing])
    drop = float((~_robust(model, x_more, labels[standing])).sum() / len(labels))
    if drop <= tolerance:
        return None, drop
    return (
        f"APGD-CE with {steps} iterations lowered robust accuracy by a further {100 * drop:.1f} points on "
        f"{len(labels)} checked samples: the evaluation has not converged; use more iterations or restarts.",
        drop,
    )


def run_sanity_checks(model, x, y, standing, accuracy_before_black_box, accuracy_after_black_box, eps, *,
                      norm="linf", clip=(0.0, 1.0), seed=None):  # fmt: skip
    """All checks on a sample; returns `(warnings, details)`.

    Args:
        model: the Keras model.
        x: a sample of clean inputs (the first 100 of the evaluation, say).
        y: their labels (sparse).
        standing: bool `(N,)`: robust under the evaluation, for these samples.
        accuracy_before_black_box: robust accuracy (whole evaluation) after the gradient
            attacks; None when no black-box attack ran.
        accuracy_after_black_box: robust accuracy after the black-box attack.
        eps: the evaluated budget.
        norm: `"linf"` or `"l2"`. Default `"linf"`.
        clip: valid input range. Default `(0, 1)`.
        seed: seed. Default None.

    Returns:
        `(warnings, details)`: a list of messages and a dict with the eps curve and the
        accuracy drop under more iterations.
    """
    warnings, details = [], {}
    message = zero_gradient_warning(model, x, y)
    if message:
        warnings.append(message)
    if accuracy_before_black_box is not None:
        message = black_box_warning(accuracy_before_black_box, accuracy_after_black_box)
        if message:
            warnings.append(message)
    if eps > 0:
        message, details["eps_curve"] = eps_growth_warning(model, x, y, eps, norm=norm, clip=clip, seed=seed)
        if message:
            warnings.append(message)
        message, details["more_iterations_drop"] = more_iterations_warning(
            model, x, y, standing, eps, norm=norm, clip=clip, seed=seed
        )
        if message:
            warnings.append(message)
    return warnings, details
