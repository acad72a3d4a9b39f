"""The attack base class: argument checks, the compiled ascent loop, restarts, serialization.

Every attack is an L-inf or L2 ascent on a per-sample objective (see `objectives`):

    x_0     = x (+ a random point of the eps-ball when `random_start`)
    x_{t+1} = clip(Proj_{B(x, eps)}(x_t + step_size * d_t), *clip)

where `d_t` is `sign(g_t)` (L-inf) or `g_t / ||g_t||_2` (L2) for the input gradient `g_t`
of the objective (MI-FGSM first accumulates L1-normalized gradients with momentum). The
loop runs as one `tf.while_loop` inside one `tf.function` per model (traced once and cached;
no Python loop per step), and the same graph code runs inside `AdversarialModel.train_step`.
Projecting onto the ball and then clipping to the valid range keeps every iterate in both
when `x` itself lies in the range: clipping moves each coordinate towards `x`.

The attacks use the TensorFlow backend (input gradients with `tf.GradientTape`).
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lossopt._validation import check_choice, check_int, check_non_negative, check_positive
from keras_lossopt.adversarial.objectives import BUILTIN_LOSSES, detect_from_logits, make_objective

__all__ = ["Attack", "NotDifferentiableError"]

_NORMS = {"linf": "linf", "inf": "linf", "l_inf": "linf", "l2": "l2", "2": "l2"}


class NotDifferentiableError(ValueError):
    """The model's output has no usable gradient with respect to its input."""


def _normalize_norm(norm: Any) -> str:
    """`"linf"` or `"l2"` from `"linf"`, `"inf"`, `np.inf`, `"l2"` or `2`; ValueError otherwise."""
    key = norm
    if isinstance(norm, (int, float, np.integer, np.floating)) and not isinstance(norm, bool):
        key = "linf" if math.isinf(norm) else str(int(norm)) if float(norm) == int(norm) else str(norm)
    if isinstance(key, str) and key.strip().lower().replace("-", "_") in _NORMS:
        return _NORMS[key.strip().lower().replace("-", "_")]
    return check_choice("norm", norm, ["linf", "l2"])


def _check_clip(clip):
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"`clip` must be None or a pair (low, high). Received: clip={clip!r}") from None
    if not low < high:
        raise ValueError(f"`clip` must satisfy low < high. Received: clip={clip!r}")
    return (low, high)


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


def _batch_axes(x):
    return tuple(range(1, len(x.shape)))


def _per_sample_norm(v, kind):
    axes = _batch_axes(v)
    if kind == "l2":
        return ops.sqrt(ops.sum(ops.square(v), axis=axes, keepdims=True))
    return ops.sum(ops.abs(v), axis=axes, keepdims=True)  # "l1"


def _expand_like(mask, x):
    return ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))


def keep_stronger(best, candidate):
    """Per sample, the stronger of two adversarial examples; graph code.

    Each argument is `(x, value, success)`: the batch, its per-sample strength (higher is
    stronger) and whether it fools the model. The candidate wins where it succeeds and the
    best does not, or where both agree on success and its value is higher. `best=None`
    takes the candidate. Used across restarts (`Attack`) and across attacks
    (`StrongestAttack`).
    """
    if best is None:
        return candidate
    best_x, best_value, best_success = best
    x, value, success = candidate
    better = ops.logical_or(
        ops.logical_and(success, ops.logical_not(best_success)),
        ops.logical_and(ops.equal(success, best_success), value > best_value),
    )
    return (
        ops.where(_expand_like(better, x), x, best_x),
        ops.where(better, value, best_value),
        ops.logical_or(best_success, success),
    )


def prepare_batch(x, y):
    """`(x_tensor, y_tensor, to_output)`: a float copy of `x` and the labels as tensors.

    `to_output` casts a result back to the dtype of `x`, and to NumPy when `x` was not a
    tensor. `x` is copied so that nothing downstream can write into the caller's array.

    Raises:
        TypeError: for inputs that are not numbers.
        ValueError: when `x` and `y` hold different numbers of samples.
    """
    numpy_in = not tf.is_tensor(x)
    x_array = np.asarray(x) if numpy_in else x
    if numpy_in and x_array.dtype.kind not in "biuf":
        raise TypeError(f"`x` must be a numeric array. Received: x of dtype {x_array.dtype}")
    in_dtype = keras.backend.standardize_dtype(x_array.dtype)
    work_dtype = in_dtype if in_dtype.startswith(("float", "bfloat")) else "float32"
    x_tensor = tf.identity(tf.cast(tf.convert_to_tensor(x_array), work_dtype))
    y_array = y if tf.is_tensor(y) else np.asarray(y)
    if y_array.ndim == 0 or len(x_tensor.shape) == 0 or y_array.shape[0] != x_tensor.shape[0]:
        raise ValueError(
            "`x` and `y` must hold the same number of samples (one label per input). "
            f"Received: x.shape={tuple(x_tensor.shape)}, y.shape={tuple(y_array.shape)}"
        )
    if not tf.is_tensor(y) and y_array.dtype.kind in "OSU":
        raise TypeError(f"`y` must hold numeric labels. Received: y of dtype {y_array.dtype}")
    y_tensor = tf.convert_to_tensor(y_array)

    def to_output(result):
        result = tf.cast(result, in_dtype)
        return result.numpy() if numpy_in else result

    return x_tensor, y_tensor, to_output


def check_single_input_output(model, who="Attacks"):
    """Raises unless `model` is a keras.Model with one input tensor and one output (when known)."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    for kind, tensors in (("input", inputs), ("output", outputs)):
        if tensors and len(tensors) != 1:
            names = [getattr(t, "name", "?") for t in tensors]
            raise ValueError(
                f"{who} support models with one input tensor and one output; model {model.name!r} has "
                f"{len(tensors)} {kind}s {names}. Wrap the part to attack in a single-input, single-output "
                "keras.Model (e.g. fix the other inputs inside it)."
            )


def check_input_range(x, clip, attack):
    """Raises when `x` holds NaN/inf, or values outside `clip` that the attack would silently move.

    Eager: one min and one max of `x` (on its device), before any compiled code runs.
    """
    if math.prod(x.shape) == 0:
        return
    low, high = float(ops.convert_to_numpy(ops.min(x))), float(ops.convert_to_numpy(ops.max(x)))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"`x` must be finite; it holds NaN or inf values (min={low}, max={high}).")
    if clip is None:
        return
    tolerance = 1e-6 * (clip[1] - clip[0])
    if low < clip[0] - tolerance or high > clip[1] + tolerance:
        name = type(attack).__name__
        raise ValueError(
            f"`x` has values in [{low:g}, {high:g}], outside the valid input range clip={tuple(clip)} of "
            f"{name}, which would clip them into that range (moving them by up to "
            f"{max(clip[0] - low, high - clip[1], 0.0):g}, beyond eps). Set `clip` to the range of your data, "
            f"e.g. {name}(..., clip=({low:g}, {high:g})), or clip=None for unbounded inputs; or scale the "
            f"data into {tuple(clip)}."
        )


def check_class_labels(y, num_classes, name="y"):
    """Raises unless `y` holds class indices in `[0, num_classes)` or rows of `num_classes` scores.

    Args:
        y: labels: `(N,)` or `(N, 1)` class indices (integers, or floats with integer
            values), or one-hot/probability rows `(N, num_classes)`.
        num_classes: number of classes of the model (2 for a single sigmoid output).
        name: the argument named in the error.
    """
    y = np.asarray(y)
    if y.dtype.kind in "OSU":
        raise TypeError(f"`{name}` must hold numeric class labels. Received: {name} of dtype {y.dtype}")
    if y.ndim == 2 and y.shape[-1] == num_classes:
        return  # one-hot or probability rows
    if y.ndim == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must hold class indices of shape (N,) or (N, 1), or one-hot rows of shape "
            f"(N, {num_classes}) for a model with {num_classes} classes. Received: {name}.shape={y.shape}"
        )
    if y.size == 0:
        return
    if y.dtype.kind == "f" and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][:3]
        raise ValueError(
            f"`{name}` must hold integer class indices in [0, {num_classes - 1}]. Received non-integer "
            f"values such as {bad.tolist()}"
        )
    low, high = y.min(), y.max()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` holds labels from {low:g} to {high:g}, outside the {num_classes} classes of the model "
            f"(indices 0 to {num_classes - 1}): such labels give no gradient and the attack would return "
            "the input unchanged. Pass class indices of the model's outputs."
        )


def output_classes(model, x):
    """The number of classes of `model`'s output (2 for a single sigmoid/logit unit)."""
    outputs = getattr(model, "outputs", None)
    shape = outputs[0].shape if outputs else model(x[:1], training=False).shape
    width = shape[-1] if len(shape) > 1 else 1
    return max(int(width), 2)


class CompiledAttack:
    """What every attack object shares: `attack(model, x, y)` runs `generate` compiled per model.

    Internal to `keras_lossopt.adversarial` (`Attack` and `StrongestAttack` derive from it).
    A subclass implements `generate(model, x, y, **options)` (graph code) and
    `_prepare_model(model, x, y)`, the eager checks made once per model on its first batch
    before tracing. The compiled functions are kept per model in a `WeakKeyDictionary`
    (the model is referenced weakly inside them too, so the cache never keeps it alive),
    one per set of options and input dtype, traced with `reduce_retracing=True`.
    """

    eps: float

    def __init__(self):
        self._functions = weakref.WeakKeyDictionary()

    def __call__(self, model, x, y):
        """The adversarial batch for `model` at inputs `x` with labels (or targets) `y`.

        Args:
            model: a Keras model (logits or probabilities; see `from_logits`).
            x: input batch (NumPy array or tensor); never modified.
            y: true labels (untargeted) or target labels (`targeted=True`): sparse class
                indices, `(N, 1)` indices or one-hot rows.

        Returns:
            The adversarial batch, same shape and dtype as `x` (NumPy in, NumPy out).

        Raises:
            NotDifferentiableError: (a ValueError) when the output of `model` has no
                gradient with respect to its input, naming the layer that blocks it.
            ValueError: when `x` holds NaN/inf or values outside `clip` (set `clip` to the
                range of the data, or None), when `len(y) != len(x)`, when class labels
                lie outside the model's classes, or for a model with several inputs or outputs.
            TypeError: for non-numeric `x` or `y`.

        Models with one input tensor and one output are supported.
        """
        x_tensor, y_tensor, to_output = self._checked_batch(model, x, y)
        if self.eps == 0.0 or x_tensor.shape[0] == 0:
            return to_output(x_tensor)
        return to_output(self._compiled(model, x_tensor, y_tensor)(x_tensor, y_tensor))

    def _checked_batch(self, model, x, y):
        # Every input check runs here, eagerly and once per call, so that the compiled
        # ascent loop carries no checks.
        check_single_input_output(model)
        x_tensor, y_tensor, to_output = prepare_batch(x, y)
        self._check_batch(model, x_tensor, y_tensor)
        return x_tensor, y_tensor, to_output

    def generate(self, model, x, y, **options):  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def _prepare_model(self, model, x, y):  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def _check_batch(self, model, x, y):  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def _compiled(self, model, x, y, **options):
        functions = self._functions.setdefault(model, {})
        key = (tuple(sorted(options.items())), x.dtype.name)
        if key not in functions:
            self._prepare_model(model, x, y)
            model_ref = weakref.ref(model)

            def run(x, y):
                return self.generate(model_ref(), x, y, **options)

            functions[key] = tf.function(run, reduce_retracing=True)
        return functions[key]

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        # Traced functions and random state are per instance; a copy starts afresh.
        return self.__class__.from_config(copy.deepcopy(self.get_config(), memo))

    def get_config(self) -> dict[str, Any]:  # pragma: no cover - every subclass implements it
        raise NotImplementedError


class Attack(CompiledAttack):
    """Base class of the attacks; subclasses set the iteration (`steps`, `step_size`, ...).

    Subclasses implement nothing numeric: they pass their schedule to `__init__` and their
    arguments to `get_config`. See `ProjectedGradientDescent` for the arguments.
    """

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
        self.eps = check_non_negative("eps", eps)
        self.norm = _normalize_norm(norm)
        self.steps = check_int("steps", steps, minimum=1)
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.random_start = bool(random_start)
        self.restarts = check_int("restarts", restarts, minimum=1)
        self.decay = None if decay is None else check_non_negative("decay", decay)
        self.targeted = bool(targeted)
        self.clip = _check_clip(clip)
        self.loss = _check_loss(loss)
        if from_logits not in (None, True, False):
            raise ValueError(f"`from_logits` must be None (auto), True or False. Received: from_logits={from_logits!r}")
        self.from_logits = from_logits
        self.seed = None if seed is None else check_int("seed", seed)
        self.name = name or _snake(type(self).__name__)
        self._seed_generator = None
        super().__init__()

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
        return {
            "eps": self.eps,
            "norm": self.norm,
            "targeted": self.targeted,
            "clip": None if self.clip is None else list(self.clip),
            "loss": loss,
            "from_logits": self.from_logits,
            "seed": self.seed,
            "name": self.name,
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- public calls
    def trajectory(self, model, x, y):
        """Every iterate of every restart, for checking and plotting the ascent.

        Returns:
            NumPy array of shape `(restarts, steps + 1, *x.shape)`: index 0 of each
            restart is the starting point (after the random start), index `t` the iterate
            after step `t`.
        """
        x_tensor, y_tensor, _ = self._checked_batch(model, x, y)
        path = ops.convert_to_numpy(self._compiled(model, x_tensor, y_tensor, record=True)(x_tensor, y_tensor))
        return path.reshape((self.restarts, self.steps + 1, *x_tensor.shape))

    # ----------------------------------------------------------------- graph code
    def generate(
        self, model, x, y, *, default_loss=None, seed_generator=None, objective=None, eps_scale=None, record=False
    ):
        """Graph-safe attack of one batch; what `__call__` compiles, usable inside a train step.

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
        ta = tf.TensorArray(x.dtype, size=self.restarts * (self.steps + 1)) if record else None
        best = None
        for restart in range(self.restarts):
            x_adv, ta = self._ascend(model, x, y, objective, seed_generator, ta, restart, eps_scale)
            if self.restarts == 1 or record:
                best = (x_adv, None, None)
                continue
            y_pred = model(x_adv, training=False)
            value = objective(y, y_pred)
            hit = success(y, y_pred) if success is not None else ops.zeros_like(value, dtype="bool")
            best = keep_stronger(best, (x_adv, value, hit))
        if record:
            return ta.stack()
        return tf.stop_gradient(best[0])

    def objective(self, model, default_loss=None):
        """`(objective, success)` for `model`: see `objectives.make_objective`."""
        loss = self.loss
        if loss is None:
            loss = default_loss if default_loss is not None else getattr(model, "loss", None)
            if loss is None:
                loss = "cross_entropy"
        from_logits = self.from_logits if self.from_logits is not None else detect_from_logits(model)
        return make_objective(loss, from_logits, self.targeted)

    def _ascend(self, model, x0, y, objective, seed_generator, ta, restart, eps_scale=None):
        eps, step, norm = self.eps, self.effective_step_size, self.norm
        dtype = x0.dtype
        if eps_scale is not None:
            eps_scale = ops.cast(eps_scale, dtype)
            eps, step = eps * eps_scale, step * eps_scale
        x = x0
        if self.random_start:
            x = self._clip(x0 + self._random_delta(x0, seed_generator, eps))
        if ta is not None:
            ta = ta.write(restart * (self.steps + 1), x)

        def body(i, x, velocity, ta):
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
            x = tf.stop_gradient(self._clip(x))
            if ta is not None:
                ta = ta.write(restart * (self.steps + 1) + i + 1, x)
            return i + 1, x, velocity, ta

        velocity = ops.zeros_like(x0)
        if self.steps == 1:
            _, x, _, ta = body(0, x, velocity, ta)
            return x, ta
        loop_vars = (tf.constant(0), x, velocity) + ((ta,) if ta is not None else ())

        def cond(i, *_):
            return i < self.steps

        def loop_body(i, x, velocity, *rest):
            i, x, velocity, new_ta = body(i, x, velocity, rest[0] if rest else None)
            return (i, x, velocity) + ((new_ta,) if rest else ())

        out = tf.while_loop(cond, loop_body, loop_vars, maximum_iterations=self.steps)
        return out[1], (out[3] if ta is not None else None)

    def _input_gradient(self, model, x, y, objective):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_pred = model(x, training=False)
            _check_output_dtype(model, y_pred, x)
            value = ops.sum(objective(y, y_pred))
        gradient = tape.gradient(value, x)
        if gradient is None:
            raise NotDifferentiableError(_not_differentiable_message(model, x, "the gradient is None"))
        return gradient

    def _random_delta(self, x, seed_generator, eps):
        shape, dtype = tf.shape(x), x.dtype
        if self.norm == "linf":
            return eps * keras.random.uniform(shape, -1.0, 1.0, dtype=dtype, seed=seed_generator)
        # Uniform in the L2 ball: a Gaussian direction and radius eps * u ** (1 / d).
        direction = keras.random.normal(shape, dtype=dtype, seed=seed_generator)
        direction = ops.divide_no_nan(direction, _per_sample_norm(direction, "l2"))
        dims = float(np.prod(x.shape[1:]))
        radius_shape = tf.concat([shape[:1], tf.ones([len(x.shape) - 1], tf.int32)], axis=0)
        u = keras.random.uniform(radius_shape, dtype=dtype, seed=seed_generator)
        return direction * eps * ops.power(u, 1.0 / dims)

    def _clip(self, x):
        if self.clip is None:
            return x
        return ops.clip(x, self.clip[0], self.clip[1])

    def _own_seed_generator(self):
        if self._seed_generator is None:
            self._seed_generator = keras.random.SeedGenerator(self.seed)
        return self._seed_generator

    # ----------------------------------------------------------------- eager plumbing
    def _prepare_model(self, model, x, y):
        _check_differentiable(model, x, y, self.objective(model)[0])
        self._own_seed_generator()  # created eagerly, outside the traced function

    def _check_batch(self, model, x, y):
        check_input_range(x, self.clip, self)
        # Class labels are checked where the objective reads them as classes: the built-in
        # objectives always, a Keras loss when the labels are sparse and the model has
        # several outputs (a loss on other targets, e.g. soft binary ones, checks its own).
        sparse = len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1)
        classes = output_classes(model, x)
        if self.loss in BUILTIN_LOSSES or (sparse and classes > 2):
            check_class_labels(y, classes, name="y (targets)" if self.targeted else "y")


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# --------------------------------------------------------------------- gradient checks
def _check_output_dtype(model, y_pred, x=None):
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise NotDifferentiableError(
            f"Cannot attack model {model.name!r}: its output has dtype {dtype}, and an integer output "
            f"carries no gradient with respect to the input.{_blocking_hint(model, x)}"
        )


def _not_differentiable_message(model, x, reason):
    return (
        f"Cannot attack model {model.name!r}: its output has no gradient with respect to its input "
        f"({reason}). Attacks need a differentiable path from input to output; argmax, rounding, "
        f"integer casts and stop_gradient cut it.{_blocking_hint(model, x)}"
    )


def _blocking_hint(model, x):
    found = _first_blocking_layer(model, x)
    if found is None:
        return ""
    layer, why = found
    return f" First layer that blocks it: {layer.name!r} ({type(layer).__name__}: {why})."


def _first_blocking_layer(model, x):
    """The first layer of a functional/Sequential model whose output has no input gradient."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or x is None:
        return None
    eager = tf.executing_eagerly()
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            probe = keras.Model(inputs, layer.output)
        except Exception:  # layers used twice, nested inputs: we cannot probe them
            continue
        dtype = keras.backend.standardize_dtype(layer.output.dtype)
        if not dtype.startswith(("float", "bfloat")):
            return layer, f"outputs {dtype}"
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = probe(x, training=False)
            total = ops.sum(ops.cast(out, "float32") * _probe_weights(out))
        gradient = tape.gradient(total, x)
        if gradient is None:
            return layer, "passes no gradient"
        if eager and not np.any(gradient.numpy()):
            return layer, "passes an all-zero gradient"
    return None


def _probe_weights(out):
    # Fixed pseudo-random weights: a plain sum of softmax outputs has zero gradient.
    size = int(np.prod(out.shape[1:])) if all(d is not None for d in out.shape[1:]) else 1
    weights = np.random.default_rng(0).normal(size=max(size, 1)).astype("float32")
    return ops.reshape(ops.convert_to_tensor(weights), (1, *out.shape[1:])) if size > 1 else weights[0]


def _check_differentiable(model, x, y, objective):
    """Raises `NotDifferentiableError` when the input gradient of the objective is structurally absent.

    Runs eagerly on (a slice of) the first batch. A `None` gradient (argmax, rounding,
    integer casts, stop_gradient) is an error. A gradient that is zero everywhere is an
    error only when a weightless layer (a `Lambda` computing `sign`, say) is the first to
    pass zeros; a layer with weights can be zero numerically (dead ReLUs, a saturated
    softmax), which only warns: the attack then cannot move those samples.
    """
    x = x[:16]
    y = y[:16]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_pred = model(x, training=False)
        _check_output_dtype(model, y_pred, x)
        value = ops.sum(objective(y, y_pred))
    gradient = tape.gradient(value, x)
    if gradient is None:
        raise NotDifferentiableError(_not_differentiable_message(model, x, "the gradient is None"))
    if np.any(gradient.numpy()):
        return
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = ops.cast(model(x, training=False), "float32")
        total = ops.sum(out * _probe_weights(out))
    probe_gradient = tape.gradient(total, x)
    if probe_gradient is not None and np.any(probe_gradient.numpy()):
        return  # only the loss is flat here (e.g. a saturated softmax)
    found = _first_blocking_layer(model, x)
    if found is not None and not found[0].weights:
        raise NotDifferentiableError(_not_differentiable_message(model, x, "the gradient is zero everywhere"))
    warnings.warn(
        f"The output of model {model.name!r} has an all-zero gradient with respect to its input on the first "
        f"batch (dead or saturated units?{_blocking_hint(model, x)}); the attack cannot move these samples.",
        stacklevel=3,
    )
