"""The attack base classes: what every attack shares, and the compiled kind.

`Attack` owns the arguments every attack has (`eps`, `norm`, `clip`, `from_logits`, `seed`,
`name`), the eager checks (`_checks`, `differentiability`) and the modes, and leaves one
override point, `perturb(model, x, y)`, the eager attack of a checked batch (as torchattacks'
`Attack.forward`). A call `attack(model, x, y)`:

1. checks the batch (one input and one output, numeric `x` inside `clip`, one label per
   input, class labels inside the model's classes), on every call;
2. returns a copy of `x` for `eps=0` or an empty batch;
3. checks the model once (`check_model`: `from_logits` against the model, the number of
   classes, the input gradient), eagerly, before any compiled code runs;
4. runs `perturb` and casts the result back to the dtype (and NumPy-ness) of `x`.

Three kinds derive from it, each with one override point:

* `CompiledAttack`: `generate` (graph code), compiled once per model; `GradientAttack`
  (`ascent.py`: FGSM, PGD, MI-FGSM) and `StrongestAttack` (`strongest.py`);
* `SurvivorAttack` (`survivors.py`): `attack_round`, one round (a restart, a target class, a
  stretch of queries) that the base runs on the samples still standing (APGD, Square);
* `AutoAttack` (`autoattack.py`): whole attacks as the rounds of the same survivors loop.

Class attributes declare what a kind can do, so that callers decide from a field and not
from a class: `needs_gradient` (white-box: check the input gradient), `graph_safe`
(`generate` runs inside a train step and `StrongestAttack`) and `custom_objective`
(`generate(objective=...)` maximizes a caller's objective, as TRADES needs).
"""

from __future__ import annotations

import copy
import functools
import weakref
from typing import Any

import keras
from keras import ops

from keras_lossopt._validation import check_int, check_non_negative
from keras_lossopt.adversarial._backend import compile_attack_function
from keras_lossopt.adversarial._checks import (
    check_clip,
    check_from_logits,
    check_from_logits_argument,
    check_input_range,
    check_labels_for_model,
    check_norm,
    check_single_input_output,
    prepare_batch,
)
from keras_lossopt.adversarial._keras_random import copy_random_states
from keras_lossopt.adversarial.differentiability import check_differentiable
from keras_lossopt.adversarial.objectives import detect_from_logits

__all__ = ["Attack"]


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def expand_like(mask, x):
    """`mask` `(N,)` reshaped to broadcast against the batch `x`."""
    return ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))


def write_row(buffer, row, value):
    """`buffer` with `buffer[row] = value` (graph code; `row` may be a loop counter), for recorded trajectories."""
    rows = ops.arange(ops.shape(buffer)[0], dtype="int32")
    selected = ops.reshape(ops.equal(rows, ops.cast(row, "int32")), (-1,) + (1,) * len(value.shape))
    return ops.where(selected, ops.expand_dims(value, 0), buffer)


def keep_stronger(best, candidate):
    """Per sample, the stronger of two adversarial examples; graph code.

    Each argument is `(x, value, success)`: the batch, its per-sample strength (higher is
    stronger) and whether it fools the model. The candidate wins where it succeeds and the
    best does not, or where both agree on success and its value is higher. `best=None`
    takes the candidate. Used across restarts (`GradientAttack`) and across attacks
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
        ops.where(expand_like(better, x), x, best_x),
        ops.where(better, value, best_value),
        ops.logical_or(best_success, success),
    )


class Attack:
    """Base class of every attack: arguments, eager checks, modes, configuration.

    A subclass implements `perturb(model, x, y)` (or derives from a kind that does, see the
    module docstring), adds its own arguments to `get_config`, and may extend `check_model`.

    Args:
        eps: perturbation budget, >= 0.
        norm: `"linf"` or `"l2"` (also `np.inf`, `2`). Default `"linf"`.
        targeted: whether `y` holds target classes. Default False.
        clip: `(low, high)` range of valid inputs, or None. Default `(0, 1)`.
        from_logits: whether the model outputs logits; None (default) detects it.
        seed: seed of the attack's random draws. Default None.
        name: name; default the class name in snake case.
    """

    needs_gradient = True
    graph_safe = True
    custom_objective = False

    def __init__(self, eps, *, norm="linf", targeted=False, clip=(0.0, 1.0), from_logits=None, seed=None, name=None):
        self.eps = check_non_negative("eps", eps)
        self.norm = check_norm(norm)
        self.targeted = bool(targeted)
        self.clip = check_clip(clip)
        self.from_logits = check_from_logits_argument(from_logits)
        self.seed = None if seed is None else check_int("seed", seed)
        self.name = name or _snake(type(self).__name__)
        self._seed_generator = None
        self._checked_models = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- what a kind declares
    @property
    def min_classes(self) -> int:
        """The fewest classes a model needs for this attack (2; 3 or 4 for the DLR losses)."""
        return 2

    @property
    def stages(self) -> tuple:
        """The attacks an ensemble runs in sequence (reported one by one), else empty."""
        return ()

    # ----------------------------------------------------------------- the eager call
    def __call__(self, model, x, y):
        """The adversarial batch for `model` at inputs `x` with labels (or targets) `y`.

        Args:
            model: a Keras model with one input and one output (logits or probabilities).
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
                lie outside the model's classes, when `from_logits` contradicts the model,
                or for a model with several inputs or outputs.
            TypeError: for non-numeric `x` or `y`.
        """
        x_tensor, y_tensor, to_output = self.checked_batch(model, x, y)
        if self.eps == 0.0 or x_tensor.shape[0] == 0:
            return to_output()
        self.prepare(model, x_tensor, y_tensor)
        return to_output(self.perturb(model, x_tensor, y_tensor))

    def perturb(self, model, x, y):  # pragma: no cover - every kind implements it
        """The attack of a checked batch: float tensor `x`, label tensor `y`; returns the adversarial batch."""
        raise NotImplementedError

    def run(self, model, x, y):
        """The adversarial batch and, for an ensemble, who each stage left standing and its time.

        Returns:
            A dict: `"x_adv"` (like calling the attack), `"standing"` and `"seconds"` (dicts
            stage name -> bool `(N,)` / wall seconds; empty unless the attack has `stages`).
        """
        return {"x_adv": self(model, x, y), "standing": {}, "seconds": {}}

    # ----------------------------------------------------------------- checks
    def checked_batch(self, model, x, y):
        """`(x_tensor, y_tensor, to_output)` after the per-call checks (see `Attack.__call__`)."""
        check_single_input_output(model)
        x_tensor, y_tensor, to_output = prepare_batch(x, y)
        self.check_inputs(model, x_tensor, y_tensor)
        return x_tensor, y_tensor, to_output

    def check_inputs(self, model, x, y):
        """The per-call checks of a batch: `x` inside `clip`, and class labels when they are read as classes."""
        check_input_range(x, self.clip, self)
        if self.reads_labels_as_classes(model, x, y):
            check_labels_for_model(y, model, x, name="y (targets)" if self.targeted else "y")

    def reads_labels_as_classes(self, model, x, y) -> bool:
        """Whether `y` must hold the model's class indices (always, except for a gradient attack on a Keras loss)."""
        return True

    def prepare(self, model, x, y):
        """Runs `check_model` once per model (on the first non-empty batch)."""
        if model not in self._checked_models:
            self.check_model(model, x[:16], y[:16])
            self._checked_models[model] = True

    def check_model(self, model, x, y):
        """The eager checks made once per model before anything is compiled.

        `from_logits` against the model (its last layer, then the outputs on `x`), the input
        gradient for white-box attacks, and the attack's seed generator (created eagerly,
        outside any traced function).

        Args:
            model: the Keras model.
            x: a few samples of the first batch (float tensor).
            y: their labels.
        """
        check_from_logits(model, self.from_logits, repr(self), model(x, training=False))
        if self.needs_gradient:
            check_differentiable(model, x, y, self.objective(model)[0])
        self._own_seed_generator()

    def objective(self, model, default_loss=None):  # pragma: no cover - white-box kinds implement it
        """`(objective, success)`: the per-sample value to maximize and whether a result fools the model."""
        raise NotImplementedError

    def resolved_from_logits(self, model):
        """`from_logits`, or what the model's last layer says (None: decided per batch)."""
        return self.from_logits if self.from_logits is not None else detect_from_logits(model)

    def _clip(self, x):
        """`x` clipped to the valid input range (graph code)."""
        if self.clip is None:
            return x
        return ops.clip(x, self.clip[0], self.clip[1])

    # ----------------------------------------------------------------- random state
    def random_generators(self):
        """The seed generators the attack draws from when given none (created eagerly)."""
        return [self._own_seed_generator()]

    def _own_seed_generator(self):
        if self._seed_generator is None:
            self._seed_generator = keras.random.SeedGenerator(self.seed)
        return self._seed_generator

    # ----------------------------------------------------------------- configuration
    def get_config(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.norm,
            "clip": None if self.clip is None else list(self.clip),
            "from_logits": self.from_logits,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        # Traced functions and random state are per instance; a copy starts afresh.
        return self.__class__.from_config(copy.deepcopy(self.get_config(), memo))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


# model -> {structure: (compiled generate, the twin it was traced with)}; weak in the model.
_SHARED_GENERATE = weakref.WeakKeyDictionary()


def _generate(twin, model_ref, options, x, y):
    return twin.generate(model_ref(), x, y, **options)


class CompiledAttack(Attack):
    """The kind whose override point is `generate` (graph code); calling it runs `generate` compiled per model.

    The compiled function is shared, per model, by every attack of the same class and
    configuration (an evaluation builds new attack objects at every call; without the
    sharing each call traced again): it is traced with a private twin of the first such
    attack, and each call lends the twin the caller's random state and takes it back after,
    so results equal those of an unshared function. Kept in a `WeakKeyDictionary` keyed by
    the model (referenced weakly inside the function too), one per set of options and input
    dtype: a `tf.function` traced with `reduce_retracing=True` on TensorFlow, a `jax.jit` on
    JAX (the model's variables passed in, so a later training step is seen), eager on PyTorch
    (`_backend.compile_attack_function`).
    """

    def generate(self, model, x, y, **options):  # pragma: no cover - every subclass implements it
        """Graph-safe attack of one batch; what the call compiles, usable inside a train step."""
        raise NotImplementedError

    def perturb(self, model, x, y):
        return self.run_compiled(model, x, y)

    def run_compiled(self, model, x, y, **options):
        """`generate(model, x, y, **options)` through the shared compiled function, with this attack's random state."""
        function, twin = self._compiled(model, x, y, **options)
        mine, shared = self.random_generators(), twin.random_generators()
        copy_random_states(mine, shared)
        try:
            return function(x, y)
        finally:
            copy_random_states(shared, mine)

    def _compiled(self, model, x, y, **options):
        functions = _SHARED_GENERATE.setdefault(model, {})
        config = {k: v for k, v in self.get_config().items() if k != "name"}
        # The label layout and the input rank are part of the key: `reduce_retracing` may then relax
        # the batch size (and feature sizes), never the rank that the objectives read.
        layout = (
            len(x.shape),
            keras.backend.standardize_dtype(x.dtype),
            tuple(y.shape[1:]),
            keras.backend.standardize_dtype(y.dtype),
        )
        key = (type(self), repr(config), tuple(sorted(options.items())), layout)
        if key not in functions:
            twin = copy.deepcopy(self)  # never called by users: it only traces
            for member in [twin, *getattr(twin, "attacks", [])]:
                # Seeded, so that making them draws nothing from the global random state (every later
                # model initialization would shift); their states are always lent by the caller.
                member._seed_generator = keras.random.SeedGenerator(0)
            # A partial, not a closure: TensorFlow counts traces per code object, across models.
            model_ref = weakref.ref(model)
            function = functools.partial(_generate, twin, model_ref, options)
            functions[key] = (compile_attack_function(function, model_ref, twin.random_generators()), twin)
        return functions[key]
