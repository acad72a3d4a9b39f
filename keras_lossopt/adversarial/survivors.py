"""Attack only the samples still standing: the one round loop, and the kind built on it.

An evaluation attack runs in rounds: APGD's restarts and target classes, Square's stretches
of queries, AutoAttack's attacks. Each round runs only on the samples that the model
classifies correctly to begin with and that no earlier round has fooled, as the reference
AutoAttack code does (fra31/auto-attack: `perturb` over `acc.nonzero()`, and
`run_standard_evaluation` over the robust flags). A sample that is already misclassified
costs nothing more. `attack_survivors` is that loop, written once; `SurvivorAttack` and
`AutoAttack` run it.

`SurvivorAttack`'s override point is `attack_round` (graph code): one round on a batch,
from a state that a round may pass to the next (Square continues its random search from
the best point of the previous stretch). Calling the attack compiles it once per model
with a `None` batch dimension, so the shrinking survivor batches are not retraced;
`generate` (graph code, for `StrongestAttack` and a train step) runs every round on the
whole batch.

The compiled round is shared by every attack of the same class and structure on a model:
the numbers that differ between such attacks (`eps`, APGD's `steps`) enter as tensors
(`round_budget`), and the random draws come from the calling attack's own stream (its seed
state is copied in before the rounds and back after them). An evaluation builds new attack
objects at every call, and its sanity checks build one APGD per budget: without the
sharing each was a new trace of the same code (TensorFlow's "triggered tf.function
retracing" warning); with it a second evaluation of the same model traces nothing.
"""

from __future__ import annotations

import functools
import weakref

import keras
import numpy as np
from keras import ops

from keras_lossopt.adversarial._backend import backend, compile_attack_function
from keras_lossopt.adversarial._keras_random import copy_random_states
from keras_lossopt.adversarial.base import Attack, expand_like
from keras_lossopt.adversarial.objectives import class_scores, predicted_labels, sparse_labels

__all__ = ["SurvivorAttack"]

# model -> {structure: (compiled round, its seed generator)}; weak in the model, like every attack cache.
_SHARED_ROUNDS = weakref.WeakKeyDictionary()


def attack_survivors(x, standing, rounds, run, state=()):
    """Runs `run` for each round on the samples still `standing`; the one survivors loop.

    Args:
        x: float NumPy batch (not modified).
        standing: bool `(N,)`, the samples to attack (correctly classified); a copy is updated.
        rounds: the per-round arguments.
        run: `run(index, round_argument, state) -> (x_adv, fooled, state)`: the round on the
            samples `index` (NumPy arrays of their rows), with their rows of each state array.
        state: a tuple of NumPy arrays with one row per sample, carried from round to round.

    Returns:
        `(x_adv, standing, history)`: the adversarial batch (a fooling example where one was
        found, else the last round's point), which samples are still standing, and the
        standing samples after each round that ran.
    """
    x_adv = x.copy()
    standing = np.array(standing, dtype=bool)
    state = tuple(np.array(s) for s in state)
    history = []
    for round_argument in rounds:
        index = np.flatnonzero(standing)
        if index.size == 0:
            break
        x_round, fooled, new_state = run(index, round_argument, tuple(s[index] for s in state))
        for full, part in zip(state, new_state):
            full[index] = part
        x_adv[index] = x_round
        standing[index[np.asarray(fooled, dtype=bool)]] = False
        history.append(standing.copy())
    return x_adv, standing, history


def _padded_rows(count, size):
    """The rows that feed a round of `count` survivors: all of them, repeated up to a bucket size on JAX.

    `jax.jit` compiles once per input shape; padding the survivors (the first one repeated) to the next
    power of two, at most the batch size, bounds the compilations per evaluation by log2 of the batch
    size instead of one per survivor count (TensorFlow's `None` batch dimension and eager PyTorch need
    no padding). A padded row is attacked and dropped; it only shifts the random stream.
    """
    if backend() != "jax" or count == 0:
        return np.arange(count)
    bucket = min(size, 1 << (count - 1).bit_length())
    return np.concatenate([np.arange(count), np.zeros(bucket - count, dtype=int)])


def _run_round(owner, model_ref, generator, x, labels, argument, state, budget):
    return owner.attack_round(model_ref(), x, labels, argument, state, seed_generator=generator, budget=budget)


def clean_predictions(model, x, y, from_logits):
    """`(labels, correct, num_classes)`: sparse labels `(N,)` int32 and whether the clean input is classified right."""
    scores = class_scores(model(ops.convert_to_tensor(x), training=False), from_logits)
    labels = sparse_labels(ops.convert_to_tensor(y), scores.shape[-1])
    correct = ops.equal(predicted_labels(scores), labels)
    return np.asarray(ops.convert_to_numpy(labels)), np.asarray(ops.convert_to_numpy(correct)), scores.shape[-1]


class SurvivorAttack(Attack):
    """The kind that attacks in rounds, each on the samples still standing; override `attack_round`.

    A subclass lists its rounds (`rounds`, each a tuple of ints) and implements one round
    in graph code (`attack_round`); it may carry per-sample state between rounds
    (`initial_state`). Arguments as in `Attack`.
    """

    budget_arguments = ("eps",)

    # ----------------------------------------------------------------- what a subclass defines
    def rounds(self, num_classes):  # pragma: no cover - every subclass implements it
        """The round arguments, in order: a list of equally long tuples of ints."""
        raise NotImplementedError

    def attack_round(
        self, model, x, labels, round_argument, state, *, seed_generator=None, eps_scale=None, budget=None
    ):
        """One round on a batch (graph code); the override point.

        Args:
            model: the Keras model.
            x: clean float batch.
            labels: true class indices `(N,)` int32.
            round_argument: the round's tuple of int32 scalar tensors.
            state: the per-sample state from the previous round (see `initial_state`).
            seed_generator: a `keras.random.SeedGenerator` (default: the attack's own).
            eps_scale: optional scalar tensor multiplying `eps`.
            budget: optional tensors replacing the attack's own `budget_arguments` (see
                `round_budget`); None uses the attack's values.

        Returns:
            `(x_adv, fooled, state)`: the round's points, whether each fools the model, and
            the state for the next round.
        """
        raise NotImplementedError  # pragma: no cover - every subclass implements it

    def initial_state(self, x):
        """The state the first round starts from: a tuple of arrays with one row per sample (none by default)."""
        return ()

    def round_budget(self, dtype):
        """The `budget_arguments` as a dict of tensors, passed into the shared compiled round."""
        return {"eps": ops.cast(self.eps, dtype)}

    # ----------------------------------------------------------------- graph entry point
    def generate(
        self, model, x, y, *, default_loss=None, seed_generator=None, objective=None, eps_scale=None, record=False
    ):
        """Graph-safe attack of a whole batch: every round on all samples.

        Args:
            model: the Keras model.
            x: float input tensor.
            y: true labels (sparse, `(N, 1)` or one-hot).
            default_loss: unused (the attack's loss is its own); accepted for `StrongestAttack`.
            seed_generator: a `keras.random.SeedGenerator` (default: the attack's own).
            objective: must be None (the attack optimizes its own loss).
            eps_scale: optional scalar tensor multiplying `eps`.
            record: must be False.

        Returns:
            The adversarial batch (stop-gradient): per sample the first round's example that
            fools the model, else the last round's point.

        Raises:
            ValueError: for a custom `objective` or `record=True`.
        """
        if objective is not None or record:
            raise ValueError(
                f"{type(self).__name__} optimizes its own loss; `objective` and `record` are not supported."
            )
        x = ops.convert_to_tensor(x)
        if self.eps == 0.0:
            return x
        scores = class_scores(model(x, training=False), self.resolved_from_logits(model))
        labels = sparse_labels(y, scores.shape[-1])
        fooled = ops.not_equal(predicted_labels(scores), labels)
        best, state = x, tuple(ops.convert_to_tensor(s) for s in self.initial_state(x))
        for argument in self.rounds(scores.shape[-1]):
            argument = tuple(ops.convert_to_tensor(value, "int32") for value in argument)
            x_run, fooled_run, state = self.attack_round(
                model, x, labels, argument, state, seed_generator=seed_generator, eps_scale=eps_scale
            )
            best = ops.where(expand_like(fooled, x), best, x_run)
            fooled = ops.logical_or(fooled, fooled_run)
        return ops.stop_gradient(best)

    # ----------------------------------------------------------------- eager entry point
    def perturb(self, model, x, y):
        # x is the checked copy: the caller's x is never written.
        x_work, y_array = ops.convert_to_numpy(x), ops.convert_to_numpy(y)
        labels, standing, num_classes = clean_predictions(model, x_work, y_array, self.resolved_from_logits(model))
        rounds = self.rounds(num_classes)
        state = tuple(np.asarray(s) for s in self.initial_state(x_work))
        budget = self.round_budget(x_work.dtype)
        run, generator = self._round_function(model, x_work, state, len(rounds[0]) if rounds else 0, budget)

        def attack(index, argument, state_rows):
            count = len(index)
            rows = _padded_rows(count, len(x_work))
            x_adv, fooled, new_state = run(
                ops.convert_to_tensor(x_work[index][rows]),
                ops.convert_to_tensor(labels[index][rows], "int32"),
                tuple(ops.convert_to_tensor(value, "int32") for value in argument),
                tuple(ops.convert_to_tensor(part[rows]) for part in state_rows),
                budget,
            )

            def kept(value):
                return ops.convert_to_numpy(value)[:count]

            return kept(x_adv), kept(fooled), tuple(kept(s) for s in new_state)

        own = [self._own_seed_generator()]
        copy_random_states(own, [generator])  # the shared trace draws from this attack's own stream
        try:
            x_adv, _, _ = attack_survivors(x_work, standing, rounds, attack, state)
        finally:
            copy_random_states([generator], own)
        return x_adv

    def _structure(self):
        """What a traced round depends on: the class and every setting except the budget, seed and name."""
        skip = {"seed", "name", *self.budget_arguments}
        return (type(self), repr(sorted((k, v) for k, v in self.get_config().items() if k not in skip)))

    def _round_function(self, model, x, state, argument_length, budget):
        functions = _SHARED_ROUNDS.setdefault(model, {})
        key = (self._structure(), x.dtype.name, tuple(x.shape[1:]), tuple((s.dtype.name, s.shape[1:]) for s in state),
               argument_length)  # fmt: skip
        if key not in functions:
            model_ref = weakref.ref(model)  # the cache is keyed weakly by the model: do not keep it alive
            generator = keras.random.SeedGenerator(0)  # created eagerly; each call loads the caller's state

            # The survivors shrink round by round: on TensorFlow one trace for every batch size (a `None`
            # batch dimension); jax.jit once per padded size (`_padded_rows`).
            def signature(tf):
                return (
                    tf.TensorSpec((None, *x.shape[1:]), x.dtype),
                    tf.TensorSpec((None,), "int32"),
                    tuple(tf.TensorSpec((), "int32") for _ in range(argument_length)),
                    tuple(tf.TensorSpec((None, *s.shape[1:]), s.dtype) for s in state),
                    {name: tf.TensorSpec((None,) * len(v.shape), v.dtype) for name, v in budget.items()},
                )

            # A partial, not a closure: TensorFlow counts traces per code object, so the one trace of
            # each (model, structure) would add up across models into a "frequent retracing" warning.
            # With a fixed input_signature these functions cannot retrace at all.
            round_function = functools.partial(_run_round, self, model_ref, generator)
            compiled = compile_attack_function(round_function, model_ref, [generator], signature=signature)
            functions[key] = (compiled, generator)
        return functions[key]
