"""The gradient-ascent kind: FGSM, PGD and MI-FGSM share one compiled loop.

Every such attack is an L-inf or L2 ascent on a per-sample objective (see `objectives`):

    x_0     = x (+ a random point of the eps-ball when `random_start`)
    x_{t+1} = clip(Proj_{B(x, eps)}(x_t + step_size * d_t), *clip)

where `d_t` is `sign(g_t)` (L-inf) or `g_t / ||g_t||_2` (L2) for the input gradient `g_t`
of the objective (MI-FGSM first accumulates L1-normalized gradients with momentum). The
loop runs as one `keras.ops.while_loop` inside one compiled function per model (a `tf.function`
on TensorFlow, `jax.jit` on JAX, traced once and cached; eager on PyTorch), and the same graph
code runs inside `AdversarialModel.train_step`.
Projecting onto the ball and then clipping to the valid range keeps every iterate in both
when `x` itself lies in the range: clipping moves each coordinate towards `x`.

The input gradient is each backend's own (`_backend.value_and_input_gradient`: `tf.GradientTape`,
`jax.value_and_grad`, `torch.autograd.grad`); everything else is `keras.ops`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_int, check_non_negative, check_positive
from keras_lossopt.adversarial._backend import value_and_input_gradient
from keras_lossopt.adversarial._checks import output_classes
from keras_lossopt.adversarial.base import CompiledAttack, keep_stronger, write_row
from keras_lossopt.adversarial.differentiability import (
    NotDifferentiableError,
    check_output_dtype,
    not_differentiable_message,
)
from keras_lossopt.adversarial.objectives import BUILTIN_LOSSES, make_objective

__all__ = ["GradientAttack"]


def _check_loss(loss):
    if loss is None or loss in BUILTIN_LOSSES:
        return loss
    if isinstance(loss, str):
        from keras_lossopt.losses import get as get_loss

        get_loss(loss)  # fails now, naming the closest known loss, rather than at the first call
        return loss
    if isinstance(loss, dict):
        return keras.saving.deserialize_keras_object(loss)
    if isinstance(loss, keras.losses.Loss) or callable(loss):
        return loss
    raise ValueError(
        f"`loss` must be None, one of {list(BUILTIN_LOSSES)}, a Keras loss or its name. Received: loss={loss!r}"
    )


def _per_sample_norm(v, kind):
    axes = tuple(range(1, len(v.shape)))
    if kind == "l2":
        return ops.sqrt(ops.sum(ops.square(v), axis=axes, keepdims=True))
    return ops.sum(ops.abs(v), axis=axes, keepdims=True)  # "l1"


class GradientAttack(CompiledAttack):
    """Base of the gradient-ascent attacks; subclasses set the iteration (`steps`, `step_size`, ...).

    Subclasses implement nothing numeric: they pass their schedule to `__init__`, their
    default step size to `_default_step_size` and their arguments to `get_config`. See
    `ProjectedGradientDescent` for the arguments.
    """

    custom_objective = True

    def __init__(
        self,
        eps,
        *,
        norm="linf",
        steps=1,
        step_size=None,
        random_start=False,
        restarts=1,
        decay=None,
        targeted=False,
        clip=(0.0, 1.0),
        loss=None,
        from_logits=None,
        seed=None,
        name=None,
    ):
        super().__init__(eps, norm=norm, targeted=targeted, clip=clip, from_logits=from_logits, seed=seed, name=name)
        self.steps = check_int("steps", steps, minimum=1)
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.random_start = bool(random_start)
        self.restarts = check_int("restarts", restarts, minimum=1)
        self.decay = None if decay is None else check_non_negative("decay", decay)
        self.loss = _check_loss(loss)

    # ----------------------------------------------------------------- configuration
    @property
    def effective_step_size(self) -> float:
        """The step size used: `step_size`, or the subclass default derived from `eps`."""
        return self.step_size if self.step_size is not None else self._default_step_size()

    def _default_step_size(self) -> float:
        return self.eps / self.steps

    def get_config(self) -> dict[str, Any]:
        loss = self.loss
        if loss is not None and not isinstance(loss, str):
            loss = keras.saving.serialize_keras_object(loss)
        return {**super().get_config(), "targeted": self.targeted, "loss": loss}

    # ----------------------------------------------------------------- public calls
    def trajectory(self, model, x, y):
        """Every iterate of every restart, for checking and plotting the ascent.

        Returns:
            NumPy array of shape `(restarts, steps + 1, *x.shape)`: index 0 of each
            restart is the starting point (after the random start), index `t` the iterate
            after step `t`.
        """
        x_tensor, y_tensor, _ = self.checked_batch(model, x, y)
        if x_tensor.shape[0]:
            self.prepare(model, x_tensor, y_tensor)
        path = ops.convert_to_numpy(self.run_compiled(model, x_tensor, y_tensor, record=True))
        return path.reshape((self.restarts, self.steps + 1, *x_tensor.shape))

    def reads_labels_as_classes(self, model, x, y) -> bool:
        # The built-in objectives always read classes; a Keras loss does when the labels are
        # sparse and the model has several outputs (a loss on other targets, e.g. soft binary
        # ones, checks its own).
        sparse = len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1)
        return self.loss in BUILTIN_LOSSES or (sparse and output_classes(model, x) > 2)

    # ----------------------------------------------------------------- graph code
    def generate(
        self, model, x, y, *, default_loss=None, seed_generator=None, objective=None, eps_scale=None, record=False
    ):
        """Graph-safe attack of one batch; what the call compiles, usable inside a train step.

        Args:
            model: the Keras model.
            x: float input tensor.
            y: labels or targets.
            default_loss: the loss used when `loss=None` (the compiled loss of the model
                being trained); falls back to the model's own compiled loss, then to
                cross-entropy.
            seed_generator: a `keras.random.SeedGenerator` for the random start (by
                default the attack's own).
            objective: optional `(y, y_pred) -> (N,)` that replaces the attack's objective
                (TRADES maximizes a KL divergence).
            eps_scale: optional scalar tensor in [0, 1] multiplying `eps` and the step size
                (`AdversarialModel`'s eps warm-up).
            record: return the stacked iterates instead of the final batch.

        Returns:
            The adversarial batch (stop-gradient), or the trajectory when `record`.
        """
        x = ops.convert_to_tensor(x)
        if self.eps == 0.0 and not record:
            return x
        if objective is None:
            objective, success = self.objective(model, default_loss)
        else:
            success = None
        seed_generator = seed_generator or self._own_seed_generator()
        # The trajectory: one buffer row per iterate, written in place by index (graph code on every backend).
        path = ops.zeros((self.restarts * (self.steps + 1), *ops.shape(x)), x.dtype) if record else None
        best = None
        for restart in range(self.restarts):
            x_adv, path = self._ascend(model, x, y, objective, seed_generator, path, restart, eps_scale)
            if self.restarts == 1 or record:
                best = (x_adv, None, None)
                continue
            y_pred = model(x_adv, training=False)
            value = objective(y, y_pred)
            hit = success(y, y_pred) if success is not None else ops.zeros_like(value, dtype="bool")
            best = keep_stronger(best, (x_adv, value, hit))
        if record:
            return path
        return ops.stop_gradient(best[0])

    def objective(self, model, default_loss=None):
        """`(objective, success)` for `model`: see `objectives.make_objective`."""
        loss = self.loss
        if loss is None:
            loss = default_loss if default_loss is not None else getattr(model, "loss", None)
            if loss is None:
                loss = "cross_entropy"
        return make_objective(loss, self.resolved_from_logits(model), self.targeted)

    def _ascend(self, model, x0, y, objective, seed_generator, path, restart, eps_scale=None):
        eps, step, norm = self.eps, self.effective_step_size, self.norm
        dtype = x0.dtype
        if eps_scale is not None:
            eps_scale = ops.cast(eps_scale, dtype)
            eps, step = eps * eps_scale, step * eps_scale
        x = x0
        if self.random_start:
            x = self._clip(x0 + self._random_delta(x0, seed_generator, eps))
        first_row = restart * (self.steps + 1)
        if path is not None:
            path = write_row(path, first_row, x)

        def body(i, x, velocity, *rest):
            gradient = self._input_gradient(model, x, y, objective)
            if self.decay is not None:
                # MI-FGSM: accumulate L1-normalized gradients with momentum `decay`.
                l1 = _per_sample_norm(gradient, "l1")
                velocity = self.decay * velocity + gradient / ops.maximum(l1, 1e-12)
                gradient = velocity
            if norm == "linf":
                x = x + ops.cast(step, dtype) * ops.sign(gradient)
                x = x0 + ops.clip(x - x0, -eps, eps)
            else:
                l2 = _per_sample_norm(gradient, "l2")
                x = x + ops.cast(step, dtype) * ops.divide_no_nan(gradient, l2)
                delta = x - x0
                scale = ops.minimum(1.0, ops.divide_no_nan(ops.cast(eps, dtype), _per_sample_norm(delta, "l2")))
                scale = ops.where(_per_sample_norm(delta, "l2") > 0, scale, ops.ones_like(scale))
                x = x0 + delta * scale
            x = ops.stop_gradient(self._clip(x))
            rest = tuple(write_row(buffer, first_row + i + 1, x) for buffer in rest)
            return (i + 1, x, velocity, *rest)

        loop_vars = (ops.convert_to_tensor(0, "int32"), x, ops.zeros_like(x0)) + ((path,) if path is not None else ())
        if self.steps == 1:
            out = body(*loop_vars)
        else:
            out = ops.while_loop(lambda i, *_: i < self.steps, body, loop_vars, maximum_iterations=self.steps)
        return out[1], (out[3] if path is not None else None)

    def _input_gradient(self, model, x, y, objective):
        def total(x):
            y_pred = model(x, training=False)
            check_output_dtype(model, y_pred, x)
            return ops.sum(objective(y, y_pred)), ()

        _, gradient = value_and_input_gradient(total, x)
        if gradient is None:
            raise NotDifferentiableError(not_differentiable_message(model, x, "the gradient is None"))
        return gradient

    def _random_delta(self, x, seed_generator, eps):
        shape, dtype = ops.shape(x), x.dtype
        if self.norm == "linf":
            return eps * keras.random.uniform(shape, -1.0, 1.0, dtype=dtype, seed=seed_generator)
        # Uniform in the L2 ball: a Gaussian direction and radius eps * u ** (1 / d).
        direction = keras.random.normal(shape, dtype=dtype, seed=seed_generator)
        direction = ops.divide_no_nan(direction, _per_sample_norm(direction, "l2"))
        dims = float(np.prod(x.shape[1:]))
        radius_shape = (shape[0],) + (1,) * (len(x.shape) - 1)
        u = keras.random.uniform(radius_shape, dtype=dtype, seed=seed_generator)
        return direction * eps * ops.power(u, 1.0 / dims)
