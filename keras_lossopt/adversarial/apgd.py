"""APGD (Auto-PGD, Croce and Hein 2020): PGD with momentum and a step size it adapts by itself.

PGD's fixed step size is either too small (slow) or too large (oscillating); a published
robust accuracy then depends on someone's tuning. APGD starts at `2 * eps` and halves the
step at checkpoints when the objective stopped improving, restarting from the best point
found so far. It follows the authors' code, fra31/auto-attack, `autoattack/autopgd_base.py`
(`APGDAttack.attack_single_run`, `APGDAttack.perturb`, `APGDAttack_targeted.perturb`):

    x_0      a random point on the boundary of the eps-ball (clipped to the valid range)
    z        = P(x_k + eta_k * d(grad_k))                 d: sign (L-inf), g / ||g||_2 (L2)
    x_{k+1}  = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))     a = 1 at k = 0, else 0.75

P projects onto the eps-ball around `x` and clips to `clip`. Checkpoints: the first after
`max(int(0.22 N), 1)` iterations, then windows shrinking by `max(int(0.03 N), 1)` down to
`max(int(0.06 N), 1)` (for N = 100: 22, 41, 57, 70, 80, 87, 93, 99). At a checkpoint the
step halves for a sample when

1. the objective increased in at most `rho * window` of the window's steps (rho = 0.75), or
2. the step was not halved at the previous checkpoint and the best objective did not improve
   since then;

those samples continue from their best point and its gradient. The first comparison of a run
is with the objective at the starting point (the paper's rule; the reference code compares the
first step with an unset entry, 0). Every iterate stays inside the eps-ball and the clip range.

With `loss="targeted_dlr"` the attack runs once per target class, the classes ranked 2, 3, ...
by the clean logits (`num_target_classes` of them, 9 in AutoAttack), on the targeted DLR loss;
success still means any misclassification. Calling the attack runs every restart and every
target only on the samples that are still classified correctly; `generate` (graph code, for
use inside `StrongestAttack` or a train step) attacks the whole batch each round.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice, check_in_range, check_int
from keras_lossopt.adversarial._backend import eager_function, value_and_input_gradient
from keras_lossopt.adversarial._checks import output_classes
from keras_lossopt.adversarial.base import write_row
from keras_lossopt.adversarial.differentiability import NotDifferentiableError
from keras_lossopt.adversarial.dlr import dlr_loss, targeted_dlr_loss
from keras_lossopt.adversarial.objectives import (
    class_scores,
    cross_entropy_from_scores,
    predicted_labels,
    sparse_labels,
)
from keras_lossopt.adversarial.survivors import SurvivorAttack, clean_predictions

__all__ = ["APGD_LOSSES", "AutoProjectedGradientDescent", "apgd_checkpoints"]

APGD_LOSSES = ("cross_entropy", "dlr", "targeted_dlr")
"""The losses `AutoProjectedGradientDescent(loss=...)` can attack."""


def apgd_checkpoints(steps):
    """The iterations after which APGD may halve its step size.

    Args:
        steps: number of iterations `N`, >= 1.

    Returns:
        Increasing list of iteration counts; the windows between them shrink from
        `max(int(0.22 N), 1)` by `max(int(0.03 N), 1)` to at least `max(int(0.06 N), 1)`.

    Examples:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    steps = check_int("steps", steps, minimum=1)
    window, minimum, decrease = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    points = []
    while (points[-1] if points else 0) + window <= steps:
        points.append((points[-1] if points else 0) + window)
        window = max(window - decrease, minimum)
    return points


def _checkpoint_tables(steps):
    """Per iteration (0-based): whether a checkpoint ends it, and the length of its window."""
    is_checkpoint = np.zeros(steps, dtype=bool)
    window = np.ones(steps, dtype="float32")
    previous = 0
    for point in apgd_checkpoints(steps):
        is_checkpoint[point - 1] = True
        window[point - 1] = point - previous
        previous = point
    return is_checkpoint, window


def _expand(v, x):
    return ops.reshape(v, (-1,) + (1,) * (len(x.shape) - 1))


def _l2(v):
    return ops.sqrt(ops.sum(ops.square(v), axis=tuple(range(1, len(v.shape))), keepdims=True))


@keras.saving.register_keras_serializable(package="keras_lossopt")
class AutoProjectedGradientDescent(SurvivorAttack):
    """APGD (Croce and Hein 2020) on the cross-entropy, DLR or targeted DLR loss; L-inf or L2.

    The gradient attack of AutoAttack: no step size to tune, momentum, and checkpoints that
    halve the step when the ascent stalls (see the module docstring for the algorithm). Use
    `loss="cross_entropy"` (APGD-CE) and `loss="targeted_dlr"` (APGD-T) as AutoAttack's
    standard version does; `loss="dlr"` is the untargeted DLR variant of its "plus" version.
    `keras_lossopt.adversarial.autoattack_attacks` builds the ensemble.

    Formula:
        CE: `-log p_y`; DLR: `-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`; targeted DLR:
        `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)` for target `t` (see `dlr`).

    Args:
        eps: perturbation budget, >= 0. Default 0.3.
        norm: `"linf"` (default) or `"l2"`.
        steps: iterations per run, >= 1. Default 100 (AutoAttack's).
        loss: `"cross_entropy"` (default), `"dlr"` or `"targeted_dlr"`.
        restarts: random restarts per target class, >= 1; later ones attack only the samples
            still classified correctly. Default 1 (AutoAttack standard; 5 in its "plus").
        num_target_classes: with `loss="targeted_dlr"`, how many of the top classes to target
            (capped at the number of classes - 1). Default 9.
        rho: the share of improving steps below which a checkpoint halves the step, in
            (0, 1]. Default 0.75.
        momentum: weight `a` of the new step against the previous one, in [0, 1]. Default 0.75.
        clip: `(low, high)` range of valid inputs, or None. Default `(0, 1)`.
        from_logits: whether the model outputs logits; None (default) detects it. DLR uses
            log-probabilities for probability outputs, which gives the same values.
        seed: seed of the random starts. Default None.
        name: name. Default `"auto_projected_gradient_descent"`.

    Returns:
        Calling the attack returns the adversarial batch, same shape and dtype as `x`: a
        misclassified point where one was found, else the run's highest-loss point.

    Raises:
        ValueError: for `eps < 0`, `steps < 1`, `restarts < 1`, `num_target_classes < 1`,
            `rho` outside (0, 1], `momentum` outside [0, 1], an unknown `norm` or `loss`,
            fewer than 3 classes for DLR (4 for targeted DLR), or a model whose output has no
            gradient with respect to its input (at the first call).

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> x_adv = AutoProjectedGradientDescent(eps=0.1, steps=10, seed=0)(model, x, np.array([0, 1]))
        >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
        True

    References:
        Croce, Hein (2020). Reliable evaluation of adversarial robustness with an ensemble of
            diverse parameter-free attacks. ICML. Code: github.com/fra31/auto-attack.
    """

    budget_arguments = ("eps", "steps")

    def __init__(
        self,
        eps=0.3,
        norm="linf",
        steps=100,
        loss="cross_entropy",
        restarts=1,
        num_target_classes=9,
        rho=0.75,
        momentum=0.75,
        clip=(0.0, 1.0),
        from_logits=None,
        seed=None,
        name=None,
    ):
        super().__init__(eps, norm=norm, clip=clip, from_logits=from_logits, seed=seed, name=name)
        self.steps = check_int("steps", steps, minimum=1)
        self.loss = check_choice("loss", loss, APGD_LOSSES)
        self.restarts = check_int("restarts", restarts, minimum=1)
        self.num_target_classes = check_int("num_target_classes", num_target_classes, minimum=1)
        self.rho = check_in_range("rho", rho, 0.0, 1.0, low_inclusive=False)
        self.momentum = check_in_range("momentum", momentum, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "steps": self.steps,
            "loss": self.loss,
            "restarts": self.restarts,
            "num_target_classes": self.num_target_classes,
            "rho": self.rho,
            "momentum": self.momentum,
        }

    # ----------------------------------------------------------------- loss
    def _target_ranks(self, num_classes):
        """`[0]` (untargeted) or the ranks 2 .. K + 1 of the clean logits to target."""
        if self.loss != "targeted_dlr":
            return [0]
        return list(range(2, min(self.num_target_classes, num_classes - 1) + 2))

    def _loss_values(self, labels, targets, scores):
        if self.loss == "cross_entropy":
            return cross_entropy_from_scores(labels, scores)
        if self.loss == "dlr":
            return dlr_loss(labels, scores)
        return targeted_dlr_loss(labels, targets, scores)

    def objective(self, model, default_loss=None):
        """`(objective, success)` as in `Attack.objective`; the targeted loss aims at the runner-up class."""
        from_logits = self.resolved_from_logits(model)

        def objective(y_true, y_pred):
            scores = class_scores(y_pred, from_logits)
            labels = sparse_labels(y_true, scores.shape[-1])
            return self._loss_values(labels, _ranked_classes(scores, 2), scores)

        def success(y_true, y_pred):
            scores = class_scores(y_pred, from_logits)
            return ops.not_equal(predicted_labels(scores), sparse_labels(y_true, scores.shape[-1]))

        return objective, success

    @property
    def min_classes(self) -> int:
        """3 for the DLR loss, 4 for the targeted DLR loss (they compare the largest logits), else 2."""
        return {"dlr": 3, "targeted_dlr": 4}.get(self.loss, 2)

    def check_model(self, model, x, y):
        """`Attack.check_model`, and first the number of classes the loss needs."""
        num_classes = output_classes(model, x)
        if num_classes < self.min_classes:
            raise ValueError(
                f"`loss={self.loss!r}` needs a model with at least {self.min_classes} classes; this model has "
                f"{num_classes}. Use loss='cross_entropy'."
            )
        super().check_model(model, x, y)

    # ----------------------------------------------------------------- one run (graph code)
    def single_run(
        self, model, x0, labels, targets=None, *, seed_generator=None, eps_scale=None, record=False, budget=None
    ):
        """One APGD run from a random start on the whole batch (graph-safe).

        Args:
            model: the Keras model.
            x0: clean float input batch.
            labels: true class indices `(N,)` int32.
            targets: target class indices `(N,)` for `loss="targeted_dlr"`, else None.
            seed_generator: a `keras.random.SeedGenerator` (default: the attack's own).
            eps_scale: optional scalar tensor multiplying `eps`.
            record: also return the history of the run.
            budget: optional tensors that replace the attack's own numbers (see `round_budget`),
                so that one traced function serves every `eps` and `steps`.

        Returns:
            `(x_adv, fooled)`: per sample the last misclassified iterate when there is one,
            else the highest-loss iterate; and whether any iterate was misclassified. With
            `record`, a third item: a dict of `"x"` `(steps + 1, *x0.shape)` (the start, then the
            point each iteration ends on, after a checkpoint's reset), `"loss"` `(steps + 1, N)`
            (the loss at the start and at each new iterate, before any reset) and
            `"step_size"` `(steps + 1, N)` (the step size each iteration ends with).
        """
        x0 = ops.convert_to_tensor(x0)
        dtype = x0.dtype
        budget = budget or self.round_budget(dtype)
        is_checkpoint, window = budget["is_checkpoint"], budget["window"]
        # A budget passed into a traced function has a `None` length: the loop bound is then a tensor.
        steps = is_checkpoint.shape[0] if is_checkpoint.shape[0] is not None else ops.shape(is_checkpoint)[0]
        norm = self.norm
        from_logits = self.resolved_from_logits(model)
        seed_generator = seed_generator or self._own_seed_generator()
        eps = ops.cast(budget["eps"], dtype)
        eps = eps if eps_scale is None else eps * ops.cast(eps_scale, dtype)
        labels = ops.cast(labels, "int32")

        def project(x):
            if norm == "linf":
                x = ops.minimum(ops.maximum(x, x0 - eps), x0 + eps)
            else:
                delta = x - x0
                x = x0 + delta * ops.minimum(1.0, eps / ops.maximum(_l2(delta), 1e-12))
            return x if self.clip is None else ops.clip(x, self.clip[0], self.clip[1])

        def direction(gradient):
            if norm == "linf":
                return ops.sign(gradient)
            return gradient / (_l2(gradient) + 1e-12)

        def total(x):
            scores = class_scores(model(x, training=False), from_logits)
            value = self._loss_values(labels, targets, scores)
            return ops.sum(value), (value, scores)

        def evaluate(x):
            (value, scores), gradient = value_and_input_gradient(total, x)
            if gradient is None:
                raise NotDifferentiableError(
                    f"Cannot attack model {model.name!r}: its output has no gradient with respect to its input."
                )
            return value, ops.cast(gradient, dtype), ops.not_equal(predicted_labels(scores), labels)

        # The reference's start: eps times a random direction scaled to unit norm (the boundary).
        if norm == "linf":
            t = keras.random.uniform(ops.shape(x0), -1.0, 1.0, dtype=dtype, seed=seed_generator)
            t = t / (ops.max(ops.abs(t), axis=tuple(range(1, len(x0.shape))), keepdims=True) + 1e-12)
        else:
            t = keras.random.normal(ops.shape(x0), dtype=dtype, seed=seed_generator)
            t = t / (_l2(t) + 1e-12)
        x_start = x0 + eps * t
        x_start = x_start if self.clip is None else ops.clip(x_start, self.clip[0], self.clip[1])
        loss0, grad0, fooled0 = evaluate(x_start)
        step0 = ops.ones_like(loss0) * ops.cast(2.0 * eps, loss0.dtype)

        record_arrays = ()
        if record:
            # One buffer row per iteration, written by index (graph code on every backend).
            record_arrays = tuple(
                write_row(ops.zeros((steps + 1, *ops.shape(v)), v.dtype), 0, v) for v in (x_start, loss0, step0)
            )

        def body(i, x, x_prev, grad, loss_prev, step, x_best, grad_best, loss_best, x_fooling, fooled, increases,
                 best_at_check, reduced_last, *arrays):  # fmt: skip
            a = ops.where(i > 0, self.momentum, 1.0)
            z = project(x + ops.cast(_expand(step, x), dtype) * direction(grad))
            x_new = project(x + ops.cast(a, dtype) * (z - x) + ops.cast(1.0 - a, dtype) * (x - x_prev))
            loss, gradient, fooled_now = evaluate(x_new)
            x_fooling = ops.where(_expand(fooled_now, x), x_new, x_fooling)
            fooled = ops.logical_or(fooled, fooled_now)
            increases = increases + ops.cast(loss > loss_prev, "float32")
            improved = loss > loss_best
            x_best = ops.where(_expand(improved, x), x_new, x_best)
            grad_best = ops.where(_expand(improved, x), gradient, grad_best)
            loss_best = ops.where(improved, loss, loss_best)
            check = ops.take(is_checkpoint, i)
            oscillating = increases <= ops.take(window, i) * self.rho
            stalled = ops.logical_and(ops.logical_not(reduced_last), best_at_check >= loss_best)
            halve = ops.logical_and(check, ops.logical_or(oscillating, stalled))
            reduced_last = ops.where(check, halve, reduced_last)
            best_at_check = ops.where(check, loss_best, best_at_check)
            increases = ops.where(check, ops.zeros_like(increases), increases)
            step = ops.where(halve, step / 2.0, step)
            x_next = ops.where(_expand(halve, x), x_best, x_new)
            gradient = ops.where(_expand(halve, x), grad_best, gradient)
            if arrays:
                arrays = tuple(write_row(arr, i + 1, v) for arr, v in zip(arrays, (x_next, loss, step)))
            return (i + 1, x_next, x, gradient, loss, step, x_best, grad_best, loss_best, x_fooling, fooled,
                    increases, best_at_check, reduced_last, *arrays)  # fmt: skip

        state = (
            ops.convert_to_tensor(0, "int32"),
            x_start,
            x_start,
            grad0,
            loss0,
            step0,
            x_start,
            grad0,
            loss0,
            x_start,
            fooled0,
            ops.zeros_like(loss0),
            loss0,
            ops.ones_like(fooled0),
            *record_arrays,
        )
        out = ops.while_loop(lambda i, *_: i < steps, body, state, maximum_iterations=steps)
        x_best, x_fooling, fooled = out[6], out[9], out[10]
        x_adv = ops.stop_gradient(ops.where(_expand(fooled, x0), x_fooling, x_best))
        if not record:
            return x_adv, fooled
        history = dict(zip(("x", "loss", "step_size"), out[14:]))
        return x_adv, fooled, history

    # ----------------------------------------------------------------- rounds
    def rounds(self, num_classes):
        """`(rank,)` per target class and restart: rank 0 is untargeted, 2.. the clean logit ranks to target."""
        return [(rank,) for rank in self._target_ranks(num_classes) for _ in range(self.restarts)]

    def round_budget(self, dtype):
        """`eps` and the checkpoint tables of `steps` as tensors: one trace serves every budget and length."""
        is_checkpoint, window = _checkpoint_tables(self.steps)
        return {"eps": ops.cast(self.eps, dtype), "is_checkpoint": ops.convert_to_tensor(is_checkpoint),
                "window": ops.convert_to_tensor(window)}  # fmt: skip

    def attack_round(
        self, model, x, labels, round_argument, state, *, seed_generator=None, eps_scale=None, budget=None
    ):
        """One APGD run (`single_run`) on the batch, at the target ranked `round_argument[0]` by the clean scores."""
        targets = None
        if self.loss == "targeted_dlr":
            scores = class_scores(model(x, training=False), self.resolved_from_logits(model))
            targets = _ranked_classes(scores, ops.maximum(round_argument[0], 2))
        x_adv, fooled = self.single_run(
            model, x, labels, targets, seed_generator=seed_generator, eps_scale=eps_scale, budget=budget
        )
        return x_adv, fooled, state

    def history(self, model, x, y, target_rank=None):
        """One recorded run on the whole batch: iterates, losses and step sizes.

        Args:
            model: the Keras model.
            x: clean input batch.
            y: true labels.
            target_rank: for `loss="targeted_dlr"`, the rank of the clean logit to target
                (2 = runner-up, the default).

        Returns:
            A dict of NumPy arrays: `"x"` `(steps + 1, *x.shape)`, `"loss"` and `"step_size"`
            `(steps + 1, N)` (see `single_run`), `"x_adv"` and `"fooled"`.
        """
        x_tensor, y_tensor, _ = self.checked_batch(model, x, y)
        self.prepare(model, x_tensor, y_tensor)
        from_logits = self.resolved_from_logits(model)
        labels, _, _ = clean_predictions(model, x_tensor, y_tensor, from_logits)
        targets = None
        if self.loss == "targeted_dlr":
            scores = class_scores(model(x_tensor, training=False), from_logits)
            targets = _ranked_classes(scores, target_rank or 2)
        x_adv, fooled, history = eager_function(
            lambda x: self.single_run(model, x, ops.convert_to_tensor(labels, "int32"), targets, record=True)
        )(x_tensor)
        values = {**history, "x_adv": x_adv, "fooled": fooled}
        return {key: ops.convert_to_numpy(value) for key, value in values.items()}


def _ranked_classes(scores, rank):
    """The class with the `rank`-th largest score per sample (rank 1 = the prediction)."""
    order = ops.argsort(-scores, axis=-1)
    rank = ops.convert_to_tensor(rank, "int32")
    index = ops.broadcast_to(ops.reshape(rank - 1, (1, 1)), (ops.shape(scores)[0], 1))
    return ops.cast(ops.take_along_axis(order, index, axis=-1)[:, 0], "int32")
