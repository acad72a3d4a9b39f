"""Square Attack (Andriushchenko et al. 2020): a score-based black-box attack by random search.

It never looks at a gradient, only at the model's outputs, so it is the check on gradient
masking: if it breaks samples that the gradient attacks left standing, their gradients were
misleading and the white-box robust accuracy is too optimistic. It follows the L-inf attack of
the authors' code as AutoAttack runs it (fra31/auto-attack, `autoattack/square.py`,
`SquareAttack.attack_single_run` and `p_selection`, with `resc_schedule=False`):

* start: `x + eps * s` with random signs `s` constant along each image column (vertical
  stripes), clipped to the valid range;
* each query: pick a square window of side `round(sqrt(p * H * W))` at a random position and
  a random sign per channel; inside the window move to the vertex `x + eps * sign` of the
  eps-ball; keep the candidate when it lowers the margin loss `z_y - max_{j != y} z_j` or
  misclassifies;
* `p` starts at `p_init = 0.8` and halves after queries 10, 50, 200, 500, 1000, 2000, 4000,
  6000 and 8000.

Two departures, both towards a stronger attack: every sample draws its own window and signs
(the reference draws one window position and sign per batch and query; the original Square
code, max-andr/square-attack, also draws them per sample), and a sample stops when it is
misclassified rather than at a margin of exactly zero. Inputs of shape `(N, H, W, C)`,
`(N, H, W)` or `(N, D)` (a feature vector is a 1 x D image whose windows cover `p * D`
consecutive features).
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice, check_in_range, check_int
from keras_lossopt.adversarial._keras_random import draw_with_state, generator_state, set_generator_state
from keras_lossopt.adversarial.objectives import class_scores, margin_from_scores, sparse_labels
from keras_lossopt.adversarial.survivors import SurvivorAttack

__all__ = ["SquareAttack", "square_p_schedule"]

_P_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_p_schedule(iteration, p_init=0.8, queries=5000, rescale=False):
    """The share `p` of the image that Square's window covers at a (0-based) query.

    Args:
        iteration: the query index, >= 0.
        p_init: the initial share, in (0, 1]. Default 0.8.
        queries: the query budget (only used when `rescale`). Default 5000.
        rescale: stretch the schedule, written for 10,000 queries, over `queries`
            (the reference's `resc_schedule`; AutoAttack sets it False). Default False.

    Returns:
        `p_init / 2 ** k`, `k` the number of thresholds (10, 50, 200, 500, 1000, 2000, 4000,
        6000, 8000) below the iteration.

    Examples:
        >>> [square_p_schedule(i) for i in (0, 10, 11, 50, 51, 4500)]
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.00625]
    """
    if rescale:
        iteration = int(iteration / queries * 10000)
    return p_init / 2 ** sum(iteration > t for t in _P_THRESHOLDS)


def _image_view(shape):
    """`(H, W, C)` of the image each sample is treated as."""
    if len(shape) == 4:
        return tuple(shape[1:])
    if len(shape) == 3:
        return (shape[1], shape[2], 1)
    if len(shape) == 2:
        return (1, shape[1], 1)
    raise ValueError(
        f"SquareAttack takes inputs of shape (N, H, W, C), (N, H, W) or (N, D). Received: x.shape={tuple(shape)}"
    )


@keras.saving.register_keras_serializable(package="keras_lossopt")
class SquareAttack(SurvivorAttack):
    """Square Attack (L-inf): query-efficient black-box random search (Andriushchenko et al. 2020).

    The gradient-free member of AutoAttack (5,000 queries in its standard version). It needs
    only the model's outputs, so it also runs on models without input gradients. Robust
    accuracy under Square well below that under APGD is the classic sign of gradient masking
    (`robustness_report` warns). See the module docstring for the algorithm.

    Args:
        eps: L-inf budget, >= 0. Default 0.3.
        norm: `"linf"` (the only norm implemented). Default `"linf"`.
        queries: queries per restart, >= 1. Default 5000.
        p_init: initial share of the image a window covers, in (0, 1]. Default 0.8.
        restarts: random restarts, each on the samples still standing. Default 1.
        rescale_schedule: stretch the `p` schedule over `queries` (see `square_p_schedule`).
            Default False (AutoAttack's setting).
        clip: `(low, high)` range of valid inputs, or None. Default `(0, 1)`.
        from_logits: whether the model outputs logits; None (default) detects it. The margin
            is the same on logits and on log-probabilities.
        seed: seed of the random search. Default None.
        name: name. Default `"square_attack"`.

    Returns:
        Calling the attack returns the adversarial batch, same shape and dtype as `x`.

    Raises:
        ValueError: for `eps < 0`, `queries < 1`, `restarts < 1`, `p_init` outside (0, 1],
            a norm other than L-inf, or inputs that are not `(N, H, W, C)`, `(N, H, W)` or
            `(N, D)`.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        >>> x = np.full((2, 8, 8, 1), 0.5, "float32")
        >>> x_adv = SquareAttack(eps=0.1, queries=20, seed=0)(model, x, np.array([0, 1]))
        >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
        True

    References:
        Andriushchenko, Croce, Flammarion, Hein (2020). Square Attack: a query-efficient
            black-box adversarial attack via random search. ECCV. Code as run by AutoAttack:
            github.com/fra31/auto-attack.
    """

    needs_gradient = False  # gradient-free: it runs on models without input gradients

    def __init__(
        self,
        eps=0.3,
        norm="linf",
        queries=5000,
        p_init=0.8,
        restarts=1,
        rescale_schedule=False,
        clip=(0.0, 1.0),
        from_logits=None,
        seed=None,
        name=None,
    ):
        super().__init__(eps, norm=norm, clip=clip, from_logits=from_logits, seed=seed, name=name)
        check_choice("norm", self.norm, ["linf"])
        self.queries = check_int("queries", queries, minimum=1)
        self.p_init = check_in_range("p_init", p_init, 0.0, 1.0, low_inclusive=False)
        self.restarts = check_int("restarts", restarts, minimum=1)
        self.rescale_schedule = bool(rescale_schedule)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "queries": self.queries,
            "p_init": self.p_init,
            "restarts": self.restarts,
            "rescale_schedule": self.rescale_schedule,
        }

    def objective(self, model, default_loss=None):
        """`(objective, success)`: minus the margin `z_y - max_{j != y} z_j`, and misclassification."""
        from_logits = self.resolved_from_logits(model)

        def objective(y_true, y_pred):
            scores = class_scores(y_pred, from_logits)
            return margin_from_scores(sparse_labels(y_true, scores.shape[-1]), scores)

        def success(y_true, y_pred):
            return objective(y_true, y_pred) > 0.0

        return objective, success

    # ----------------------------------------------------------------- graph code
    def _margin(self, model, x, labels, from_logits, shape):
        scores = class_scores(model(ops.reshape(x, shape), training=False), from_logits)
        return -margin_from_scores(labels, scores)  # z_y - max_{j != y} z_j: > 0 while robust

    def start(self, model, x, labels, *, seed_generator=None, eps_scale=None, budget=None):
        """Square's starting point (vertical stripes of +-eps) and its margin (graph-safe).

        Args:
            model: the Keras model.
            x: clean float batch.
            labels: true class indices `(N,)`.
            seed_generator: a `keras.random.SeedGenerator` (default: the attack's own).
            eps_scale: optional scalar tensor multiplying `eps`.
            budget: optional `{"eps": tensor}` replacing the attack's `eps` (see `round_budget`).

        Returns:
            `(x_best, margin)`: the start and `z_y - max_{j != y} z_j` there.
        """
        x = ops.convert_to_tensor(x)
        height, width, channels = _image_view(x.shape)
        seed_generator = seed_generator or self._own_seed_generator()
        eps = self._eps(x.dtype, eps_scale, budget)
        images = ops.reshape(x, (-1, height, width, channels))
        stripes = ops.sign(keras.random.uniform((ops.shape(x)[0], 1, width, channels), -1.0, 1.0, seed=seed_generator))
        x_best = self._clip(images + eps * ops.cast(stripes, x.dtype))
        margin = self._margin(model, x_best, labels, self.resolved_from_logits(model), ops.shape(x))
        return ops.reshape(x_best, ops.shape(x)), margin

    def search(
        self, model, x, labels, x_best, margin, first, last, *, seed_generator=None, eps_scale=None, budget=None
    ):
        """Queries `first` to `last - 1` of the random search from `(x_best, margin)` (graph-safe).

        Args:
            model: the Keras model.
            x: clean float batch.
            labels: true class indices `(N,)`.
            x_best: current points (from `start` or an earlier `search`).
            margin: their margins `z_y - max_{j != y} z_j`.
            first: index of the first query (sets `p`); int or scalar tensor.
            last: index after the last query.
            seed_generator: a `keras.random.SeedGenerator` (default: the attack's own).
            eps_scale: optional scalar tensor multiplying `eps`.
            budget: optional `{"eps": tensor}` replacing the attack's `eps` (see `round_budget`).

        Returns:
            `(x_best, margin)` after the queries; a sample stops once its margin is negative.
        """
        x = ops.convert_to_tensor(x)
        shape = ops.shape(x)
        height, width, channels = _image_view(x.shape)
        seed_generator = seed_generator or self._own_seed_generator()
        eps = self._eps(x.dtype, eps_scale, budget)
        from_logits = self.resolved_from_logits(model)
        images = ops.reshape(x, (-1, height, width, channels))
        best = ops.reshape(x_best, (-1, height, width, channels))
        features = height * width  # per channel: the window's share is of one channel's pixels
        rows = ops.reshape(ops.arange(height, dtype="int32"), (1, height, 1, 1))
        columns = ops.reshape(ops.arange(width, dtype="int32"), (1, 1, width, 1))
        thresholds = ops.convert_to_tensor(np.array(_P_THRESHOLDS, dtype="float32"))

        def window_side(i):
            it = ops.cast(i, "float32")
            if self.rescale_schedule:
                it = ops.floor(it / self.queries * 10000.0)
            p = self.p_init / ops.power(2.0, ops.sum(ops.cast(it > thresholds, "float32")))
            if height == 1:  # a feature vector: a run of p * D features
                return ops.cast(1, "int32"), ops.cast(ops.clip(ops.round(p * width), 1, width), "int32")
            side = ops.cast(ops.clip(ops.round(ops.sqrt(p * features)), 1, min(height, width)), "int32")
            return side, side

        def draws():
            n = ops.shape(images)[0]
            return (
                keras.random.uniform((n,), seed=seed_generator),
                keras.random.uniform((n,), seed=seed_generator),
                ops.sign(keras.random.uniform((n, 1, 1, channels), -1.0, 1.0, seed=seed_generator)),
            )

        def body(i, best, margin, random_state):
            active = margin >= 0.0
            side_h, side_w = window_side(i)
            (top, left, signs), random_state = draw_with_state(seed_generator, random_state, draws)
            # Positions uniform in [0, H - s) as the reference draws them (random_int(0, h - s)).
            top = ops.cast(top * ops.cast(height - side_h, "float32"), "int32")
            left = ops.cast(left * ops.cast(width - side_w, "float32"), "int32")
            top, left = ops.reshape(top, (-1, 1, 1, 1)), ops.reshape(left, (-1, 1, 1, 1))
            window = ops.logical_and(
                ops.logical_and(rows >= top, rows < top + side_h),
                ops.logical_and(columns >= left, columns < left + side_w),
            )
            candidate = ops.where(window, images + eps * ops.cast(signs, images.dtype), best)
            candidate = self._clip(ops.minimum(ops.maximum(candidate, images - eps), images + eps))
            new_margin = self._margin(model, candidate, labels, from_logits, shape)
            better = ops.logical_and(active, ops.logical_or(new_margin < margin, new_margin < 0.0))
            best = ops.where(ops.reshape(better, (-1, 1, 1, 1)), candidate, best)
            margin = ops.where(better, new_margin, margin)
            return i + 1, best, margin, random_state

        def cond(i, best, margin, random_state):
            return ops.logical_and(i < last, ops.any(margin >= 0.0))

        # The generator's state is a loop variable: every query draws anew on every backend.
        loop_vars = (ops.convert_to_tensor(first, "int32"), best, margin, generator_state(seed_generator))
        _, best, margin, random_state = ops.while_loop(cond, body, loop_vars)
        set_generator_state(seed_generator, random_state)
        return ops.reshape(best, shape), margin

    # ----------------------------------------------------------------- rounds
    def rounds(self, num_classes):
        """`(first, last)` query indices per stretch of each restart; the survivors are compacted between stretches."""
        return [bounds for _ in range(self.restarts) for bounds in itertools.pairwise(self._segments())]

    def initial_state(self, x):
        """The best point so far and its margin, carried from one stretch of queries to the next."""
        return (x, ops.zeros((ops.shape(x)[0],), "float32"))

    def round_budget(self, dtype):
        """`eps` as a tensor: one trace serves every budget."""
        return {"eps": ops.cast(self.eps, dtype)}

    def attack_round(
        self, model, x, labels, round_argument, state, *, seed_generator=None, eps_scale=None, budget=None
    ):
        """Queries `first` to `last - 1` (a restart's first stretch starts afresh with `start`)."""
        first, last = round_argument
        options = {"seed_generator": seed_generator, "eps_scale": eps_scale, "budget": budget}

        # Both branches are computed (one forward pass): a `cond` branch that draws from the generator
        # would not hand its new state out of a traced JAX branch.
        fresh_best, fresh_margin = self.start(model, x, labels, **options)
        restart = ops.equal(first, 0)
        best = ops.where(restart, fresh_best, ops.convert_to_tensor(state[0]))
        margin = ops.where(restart, fresh_margin, ops.convert_to_tensor(state[1]))
        best, margin = self.search(model, x, labels, best, margin, first, last, **options)
        return best, margin < 0.0, (best, margin)

    def check_model(self, model, x, y):
        """`Attack.check_model` without the gradient check, and the input layout Square can read."""
        _image_view(x.shape)
        super().check_model(model, x, y)

    def _eps(self, dtype, eps_scale, budget=None):
        eps = ops.cast(self.eps if budget is None else budget["eps"], dtype)
        return eps if eps_scale is None else eps * ops.cast(eps_scale, dtype)

    def _segments(self):
        """Query indices at which the survivors are compacted: where most samples fall, then every 500."""
        marks = {0, self.queries} | {m for m in (10, 50, 200, 500) if m < self.queries}
        marks |= set(range(1000, self.queries, 500))
        return sorted(marks)
