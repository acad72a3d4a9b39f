"""Robustness evaluation: the worst case over several attacks, robust accuracy, batch generation.

A single FGSM run, or one PGD run on the cross-entropy, overstates robustness (gradient
masking, unlucky starts). `StrongestAttack` runs several attacks and keeps, per sample,
the example that fools the model (else the one with the smallest true-class margin);
`robust_accuracy` counts a sample as robust only when the model classifies it correctly
clean and under that worst case. `default_evaluation_attacks(eps)` gives PGD on the
cross-entropy and on the Carlini-Wagner margin, both with random starts.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lossopt._validation import check_int
from keras_lossopt.adversarial.attacks import ProjectedGradientDescent
from keras_lossopt.adversarial.base import Attack, CompiledAttack, keep_stronger
from keras_lossopt.adversarial.objectives import (
    class_scores,
    detect_from_logits,
    make_objective,
    predicted_labels,
    sparse_labels,
)

__all__ = [
    "StrongestAttack",
    "default_evaluation_attacks",
    "evaluate_robustness",
    "generate_adversarial",
    "robust_accuracy",
]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class StrongestAttack(CompiledAttack):
    """Per sample, the strongest example over several attacks (untargeted).

    Use it to evaluate: it keeps an example that fools the model if any attack finds one,
    otherwise the one with the smallest margin `z_y - max_{j != y} z_j`.

    Args:
        attacks: a list of untargeted attacks (at least one).
        from_logits: how to read the model's outputs when comparing examples; None
            (default) detects it (see `keras_lossopt.adversarial.objectives`).
        name: name. Default `"strongest_attack"`.

    Raises:
        ValueError: for an empty list, a targeted attack, or an object that is not an attack.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> attack = StrongestAttack(default_evaluation_attacks(0.1, steps=3))
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> bool(np.abs(attack(model, x, np.array([0, 1])) - x).max() <= 0.1 + 1e-6)
        True
    """

    def __init__(self, attacks, from_logits=None, name="strongest_attack"):
        attacks = [keras.saving.deserialize_keras_object(a) if isinstance(a, dict) else a for a in attacks]
        if not attacks:
            raise ValueError("`attacks` must hold at least one attack. Received: attacks=[]")
        for attack in attacks:
            if not isinstance(attack, Attack):
                raise ValueError(f"`attacks` must hold Attack objects. Received: {attack!r}")
            if attack.targeted:
                raise ValueError(f"StrongestAttack takes untargeted attacks. Received targeted: {attack!r}")
        self.attacks = list(attacks)
        self.from_logits = from_logits
        self.name = name
        self.targeted = False
        super().__init__()

    @property
    def eps(self) -> float:
        return max(a.eps for a in self.attacks)

    @property
    def norm(self) -> str:
        return self.attacks[0].norm

    @property
    def clip(self):
        return self.attacks[0].clip

    def get_config(self) -> dict[str, Any]:
        return {
            "attacks": [keras.saving.serialize_keras_object(a) for a in self.attacks],
            "from_logits": self.from_logits,
            "name": self.name,
        }

    def __repr__(self):
        return f"StrongestAttack({self.attacks!r})"

    def generate(self, model, x, y, *, default_loss=None, seed_generator=None, eps_scale=None):
        """Graph-safe: the strongest example per sample over `self.attacks`."""
        from_logits = self.from_logits if self.from_logits is not None else detect_from_logits(model)
        strength, success = make_objective("margin", from_logits, targeted=False)
        best = None
        for attack in self.attacks:
            x_adv = attack.generate(
                model, x, y, default_loss=default_loss, seed_generator=seed_generator, eps_scale=eps_scale
            )
            y_pred = model(x_adv, training=False)
            best = keep_stronger(best, (x_adv, strength(y, y_pred), success(y, y_pred)))
        return best[0]

    def _prepare_model(self, model, x, y):
        for attack in self.attacks:
            attack._prepare_model(model, x, y)


def default_evaluation_attacks(eps, *, norm="linf", steps=20, restarts=1, clip=(0.0, 1.0), seed=None):
    """PGD on the cross-entropy and on the margin loss, both from random starts.

    Args:
        eps: perturbation budget.
        norm: `"linf"` (default) or `"l2"`.
        steps: PGD steps. Default 20.
        restarts: random restarts of each attack. Default 1.
        clip: valid input range. Default `(0, 1)`.
        seed: seed of the random starts. Default None.

    Returns:
        A list of two `ProjectedGradientDescent` attacks.
    """
    common = dict(eps=eps, norm=norm, steps=steps, restarts=restarts, clip=clip, random_start=True)
    return [
        ProjectedGradientDescent(loss="cross_entropy", seed=seed, name="pgd_cross_entropy", **common),
        ProjectedGradientDescent(loss="margin", seed=None if seed is None else seed + 1, name="pgd_margin", **common),
    ]


# --------------------------------------------------------------------- data plumbing
def _input_rank(model):
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) == 1:
        return len(inputs[0].shape)
    return None


def _batches(model, data, batch_size):
    """`(batches, samples, num_batches)`: a generator of `(x, y)` NumPy batches and its size.

    `samples` is known for arrays; for a dataset only `num_batches` may be known.
    """
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise ValueError(f"A dataset must yield (x, y) or (x, y, sample_weight). Received element_spec={spec}")
        rank = _input_rank(model)
        if rank is not None and len(spec[0].shape) == rank - 1:
            data = data.batch(batch_size)
        cardinality = int(data.cardinality())

        def gen():
            for element in data:
                yield np.asarray(element[0]), np.asarray(element[1])

        return gen(), None, cardinality if cardinality >= 0 else None
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise ValueError(f"`data` must be a tuple (x, y) or a tf.data.Dataset. Received: {type(data).__name__}")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` must have the same length. Received: len(x)={len(x)}, len(y)={len(y)}")

    def gen():
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    return gen(), len(x), None


def generate_adversarial(model, data, attack, *, batch_size=256, verbose=1):
    """Runs `attack` over a whole dataset in batches, with a progress bar.

    Args:
        model: the Keras model to attack.
        data: `(x, y)` arrays, or a `tf.data.Dataset` of `(x, y)` (batched or not).
        attack: an attack object (`attack(model, x, y)`), e.g. `ProjectedGradientDescent`.
        batch_size: batch size for arrays (and unbatched datasets). Default 256.
        verbose: 1 shows a `keras.utils.Progbar`, 0 is silent. Default 1.

    Returns:
        The adversarial inputs as one NumPy array, in the order of `data`.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> x = np.full((5, 4), 0.5, "float32")
        >>> from keras_lossopt.adversarial import FastGradientMethod
        >>> attack = FastGradientMethod(0.1)
        >>> x_adv = generate_adversarial(model, (x, np.zeros(5, int)), attack, batch_size=2, verbose=0)
        >>> x_adv.shape
        (5, 4)
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    batches, total, num_batches = _batches(model, data, batch_size)
    progbar = _progbar(total, num_batches, verbose)
    out = []
    for x, y in batches:
        out.append(np.asarray(attack(model, x, y)))
        progbar.add(len(x) if total is not None else 1)
    return np.concatenate(out, axis=0) if out else np.zeros((0,))


def _as_attack(attacks, eps):
    if attacks is None:
        if eps is None:
            raise ValueError("Give `attacks` or `eps` (for the default PGD cross-entropy + margin attacks).")
        attacks = default_evaluation_attacks(eps)
    if isinstance(attacks, (list, tuple)):
        attacks = attacks[0] if len(attacks) == 1 else StrongestAttack(list(attacks))
    if getattr(attacks, "targeted", False):
        raise ValueError(f"Robust accuracy takes untargeted attacks. Received a targeted attack: {attacks!r}")
    return attacks


def evaluate_robustness(model, data, attacks=None, *, eps=None, batch_size=256, verbose=0, return_adversarial=False):
    """Clean accuracy, robust accuracy (worst case per sample) and attack success rate.

    Args:
        model: the Keras model.
        data: `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)`; `y` sparse or one-hot.
        attacks: an attack, a list of attacks (worst case per sample), or None for
            `default_evaluation_attacks(eps)`.
        eps: budget of the default attacks (when `attacks` is None).
        batch_size: batch size. Default 256.
        verbose: 1 shows a progress bar. Default 0.
        return_adversarial: also return the adversarial inputs under `"x_adv"`.

    Returns:
        A dict with `clean_accuracy`, `robust_accuracy` (correct clean and under attack),
        `attack_success_rate` (share of the correctly classified samples the attack
        fools; NaN when none is correct) and `num_samples`.
    """
    attack = _as_attack(attacks, eps)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    from_logits = detect_from_logits(model)
    batches, total, num_batches = _batches(model, data, batch_size)
    progbar = _progbar(total, num_batches, verbose)
    clean_correct = robust_correct = count = 0
    adversarial = []
    for x, y in batches:
        x_adv = np.asarray(attack(model, x, y))
        clean = _correct(model, x, y, from_logits)
        robust = clean & _correct(model, x_adv, y, from_logits)
        clean_correct += int(clean.sum())
        robust_correct += int(robust.sum())
        count += len(x)
        if return_adversarial:
            adversarial.append(x_adv)
        progbar.add(len(x) if total is not None else 1)
    result = {
        "clean_accuracy": clean_correct / count if count else math.nan,
        "robust_accuracy": robust_correct / count if count else math.nan,
        "attack_success_rate": (clean_correct - robust_correct) / clean_correct if clean_correct else math.nan,
        "num_samples": count,
    }
    if return_adversarial:
        result["x_adv"] = np.concatenate(adversarial, axis=0) if adversarial else np.zeros((0,))
    return result


def robust_accuracy(model, x, y, attacks=None, *, eps=None, batch_size=256, verbose=0):
    """Share of samples classified correctly both clean and under the strongest of `attacks`.

    Args:
        model: the Keras model.
        x, y: inputs and labels (sparse or one-hot).
        attacks: an attack, a list of attacks, or None for `default_evaluation_attacks(eps)`
            (PGD-20 on cross-entropy and margin, random starts).
        eps: budget of the default attacks.
        batch_size: batch size. Default 256.
        verbose: 1 shows a progress bar. Default 0.

    Returns:
        A float in [0, 1].

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).uniform(size=(8, 4)).astype("float32")
        >>> y = np.argmax(model.predict(x, verbose=0), axis=1)
        >>> robust_accuracy(model, x, y, eps=0.0)
        1.0
    """
    return evaluate_robustness(model, (x, y), attacks, eps=eps, batch_size=batch_size, verbose=verbose)[
        "robust_accuracy"
    ]


def _correct(model, x, y, from_logits):
    scores = class_scores(model(x, training=False), from_logits)
    labels = sparse_labels(ops.convert_to_tensor(y), scores.shape[-1])
    return np.asarray(ops.convert_to_numpy(ops.equal(predicted_labels(scores), labels)))


def _progbar(samples, num_batches, verbose):
    if samples is not None:
        return keras.utils.Progbar(samples, verbose=verbose, unit_name="sample")
    return keras.utils.Progbar(num_batches, verbose=verbose, unit_name="batch")
