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
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lossopt._validation import check_choice, check_int
from keras_lossopt.adversarial.attacks import ProjectedGradientDescent
from keras_lossopt.adversarial.autoattack import VERSIONS, AutoAttack
from keras_lossopt.adversarial.base import (
    Attack,
    CompiledAttack,
    check_class_labels,
    check_input_range,
    keep_stronger,
    output_classes,
)
from keras_lossopt.adversarial.objectives import (
    class_scores,
    detect_from_logits,
    make_objective,
    predicted_labels,
    sparse_labels,
)

__all__ = [
    "STRENGTHS",
    "StrongestAttack",
    "default_evaluation_attacks",
    "evaluate_robustness",
    "evaluation_attack",
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

    Examples:
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

    def _check_batch(self, model, x, y):
        for attack in self.attacks:
            check_input_range(x, attack.clip, attack)
        check_class_labels(y, output_classes(model, x))


_ATTACK_CLASS_NAMES = {
    "fgsm": "FastGradientMethod",
    "fast_gradient_method": "FastGradientMethod",
    "pgd": "ProjectedGradientDescent",
    "projected_gradient_descent": "ProjectedGradientDescent",
    "mim": "MomentumIterativeMethod",
    "mifgsm": "MomentumIterativeMethod",
    "mi_fgsm": "MomentumIterativeMethod",
    "momentum_iterative_method": "MomentumIterativeMethod",
}


def as_attack(value, name="attack", *, allow_callable=False):
    """An attack object from an attack, a list of attacks (their worst case) or a serialized attack.

    Args:
        value: the argument as given.
        name: the argument named in the error.
        allow_callable: also accept any other callable `f(model, x, y)` (evaluation only).

    Raises:
        ValueError: for names such as `"pgd"` (an attack needs its budget `eps`, so the
            message names the class to build), classes, empty lists and other objects.
    """
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{name}` must hold at least one attack. Received: {name}={value!r}")
        attacks = [as_attack(item, name) for item in value]
        value = attacks[0] if len(attacks) == 1 else StrongestAttack(attacks)
    if isinstance(value, CompiledAttack):
        return value
    if allow_callable and callable(value) and not isinstance(value, type):
        return value
    hint = ""
    if isinstance(value, str):
        known = _ATTACK_CLASS_NAMES.get(value.strip().lower().replace("-", "_"))
        hint = (
            f" An attack needs its budget: build it as {known}(eps=...)."
            if known
            else " Attacks are objects, e.g. ProjectedGradientDescent(eps=...)."
        )
    elif isinstance(value, type):
        hint = f" Pass an instance, e.g. {value.__name__}(eps=...), not the class."
    raise ValueError(
        f"`{name}` must be an attack object such as ProjectedGradientDescent(eps=0.03), a list of attacks "
        f"(their worst case per sample) or a serialized attack. Received: {name}={value!r}.{hint}"
    )


def default_evaluation_attacks(eps, *, norm="linf", steps=20, restarts=1, clip=(0.0, 1.0), seed=None):
    """PGD on the cross-entropy and on the margin loss, both from random starts.

    Args:
        eps: perturbation budget.
        norm: `"linf"` (default) or `"l2"`.
        steps: PGD steps. Default 20.
        restarts: random restarts of each attack. Default 1.
        clip: valid input range (inputs outside it are an error), or None. Default `(0, 1)`.
        seed: seed of the random starts. Default None.

    Returns:
        A list of two `ProjectedGradientDescent` attacks.
    """
    common = dict(eps=eps, norm=norm, steps=steps, restarts=restarts, clip=clip, random_start=True)
    return [
        ProjectedGradientDescent(loss="cross_entropy", seed=seed, name="pgd_cross_entropy", **common),
        ProjectedGradientDescent(loss="margin", seed=None if seed is None else seed + 1, name="pgd_margin", **common),
    ]


STRENGTHS = ("pgd", "fast", "standard")
"""The values of `strength` (`evaluation_attack`, `robust_accuracy`): which attacks evaluate."""


def evaluation_attack(eps, strength="pgd", *, norm="linf", seed=None):
    """The attack behind a robust-accuracy `strength`.

    * `"pgd"`: PGD-20 on the cross-entropy and on the margin loss, worst case per sample
      (`default_evaluation_attacks`); cheap enough to run every epoch, but it overstates
      robustness by about a point on adversarially trained models.
    * `"fast"`: `AutoAttack(version="fast")`: APGD-CE, APGD-T on 3 targets, Square 1,000 queries.
    * `"standard"`: `AutoAttack(version="standard")`: the budgets of published AutoAttack
      numbers (APGD-CE, APGD-T on 9 targets, Square 5,000 queries; no FAB-T).

    Args:
        eps: perturbation budget.
        strength: `"pgd"` (default), `"fast"` or `"standard"`.
        norm: `"linf"` (default) or `"l2"`.
        seed: seed of the attacks. Default None.

    Returns:
        An attack object (`attack(model, x, y)`).

    Examples:
        >>> evaluation_attack(0.3, "standard")
        AutoAttack(eps=0.3, norm='linf', version='standard')
    """
    strength = check_choice("strength", strength, STRENGTHS)
    if strength == "pgd":
        return StrongestAttack(default_evaluation_attacks(eps, norm=norm, seed=seed))
    return AutoAttack(eps, norm=norm, version=strength, seed=seed)


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

    Examples:
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
    attack = as_attack(attack, allow_callable=True)
    batches, total, num_batches = _batches(model, data, batch_size)
    progbar = _progbar(total, num_batches, verbose)
    out = []
    for x, y in batches:
        out.append(np.asarray(attack(model, x, y)))
        progbar.add(len(x) if total is not None else 1)
    return np.concatenate(out, axis=0) if out else np.zeros((0,))


def _evaluation_attack(attacks, eps, strength="pgd", norm="linf"):
    if attacks is None:
        if eps is None:
            raise ValueError(
                "Give `attacks` or `eps` (for the attacks of the chosen strength: PGD-20 cross-entropy + margin by "
                "default, AutoAttack for 'fast' and 'standard')."
            )
        return evaluation_attack(eps, strength, norm=norm)
    if eps is not None:
        raise ValueError(
            f"Give either `attacks` or `eps` (the budget of the default attacks), not both. Received: eps={eps!r} "
            "and attacks with their own eps."
        )
    if strength != "pgd":
        raise ValueError(
            f"Give either `attacks` or a `strength`/`version`, not both. Received: attacks={attacks!r}, "
            f"strength={strength!r}"
        )
    attacks = as_attack(attacks, "attacks", allow_callable=True)
    if getattr(attacks, "targeted", False):
        raise ValueError(f"Robust accuracy takes untargeted attacks. Received a targeted attack: {attacks!r}")
    return attacks


def evaluate_robustness(
    model,
    data,
    attacks=None,
    *,
    eps=None,
    version=None,
    norm="linf",
    sanity_checks=None,
    sanity_samples=100,
    batch_size=256,
    verbose=0,
    return_adversarial=False,
):
    """Clean accuracy, robust accuracy (worst case per sample) and attack success rate.

    With `version="standard"` this is an AutoAttack evaluation (APGD-CE, APGD-T, Square, in
    sequence on the survivors; see `AutoAttack`), the setting that matches published
    AutoAttack numbers; `version="fast"` is a cheaper one. Such runs also report each attack's
    robust accuracy and time, and run the sanity checks of `keras_lossopt.adversarial.sanity`
    on the first `sanity_samples` samples: each failed check is a message in `"warnings"` (and
    a Python `UserWarning`).

    Args:
        model: the Keras model.
        data: `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)`; `y` sparse or one-hot.
        attacks: an attack, a list of attacks (worst case per sample), an `AutoAttack`, or
            None for the attacks of `version` (None: `default_evaluation_attacks(eps)`).
        eps: budget of the default attacks (when `attacks` is None).
        version: None (default: PGD-20 cross-entropy + margin), `"standard"` or `"fast"`.
        norm: norm of the default attacks, `"linf"` (default) or `"l2"`.
        sanity_checks: run the sanity checks; None (default) runs them for AutoAttack
            evaluations only.
        sanity_samples: how many of the first samples the checks attack again. Default 100.
        batch_size: batch size. Default 256.
        verbose: 1 shows a progress bar. Default 0.
        return_adversarial: also return the adversarial inputs under `"x_adv"`.

    Returns:
        A dict with `clean_accuracy`, `robust_accuracy` (correct clean and under attack),
        `attack_success_rate` (share of the correctly classified samples the attack
        fools; NaN when none is correct) and `num_samples`. AutoAttack evaluations add
        `per_attack_accuracy` (attack name -> robust accuracy after it and every attack
        before it) and `attack_seconds`; sanity checks add `warnings` (a list of messages)
        and `sanity` (their measurements).

    Raises:
        ValueError: for an unknown `version` or `norm`, `attacks` together with `version`
            or with `eps`, neither `attacks` nor `eps`, a targeted attack, an attack given
            by name (`"pgd"`: build `ProjectedGradientDescent(eps=...)`), labels outside
            the model's classes, `x` outside an attack's `clip` (set `clip` to the data's
            range), or `len(y) != len(x)`.
    """
    if version is not None:
        version = check_choice("version", version, VERSIONS)
    attack = _evaluation_attack(attacks, eps, version or "pgd", norm)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    sanity_samples = check_int("sanity_samples", sanity_samples, minimum=1)
    ensemble = isinstance(attack, AutoAttack)
    sanity_checks = ensemble if sanity_checks is None else bool(sanity_checks)
    from_logits = detect_from_logits(model)
    batches, total, num_batches = _batches(model, data, batch_size)
    progbar = _progbar(total, num_batches, verbose)
    clean_correct = robust_correct = count = 0
    per_attack, seconds = {}, {}
    adversarial, checked = [], {"x": [], "y": [], "standing": []}
    classes = None
    for x, y in batches:
        classes = classes or output_classes(model, x)
        check_class_labels(y, classes)  # robust accuracy reads `y` as classes, whatever the attack does
        if ensemble:
            run = attack.run(model, x, y)
            x_adv = np.asarray(run["x_adv"])
            for name, standing in run["standing"].items():
                per_attack[name] = per_attack.get(name, 0) + int(standing.sum())
                seconds[name] = seconds.get(name, 0.0) + run["seconds"][name]
        else:
            x_adv = np.asarray(attack(model, x, y))
        clean = _correct(model, x, y, from_logits)
        robust = clean & _correct(model, x_adv, y, from_logits)
        clean_correct += int(clean.sum())
        robust_correct += int(robust.sum())
        count += len(x)
        if sanity_checks and sum(len(v) for v in checked["x"]) < sanity_samples:
            take = sanity_samples - sum(len(v) for v in checked["x"])
            checked["x"].append(np.asarray(x)[:take])
            checked["y"].append(np.asarray(y)[:take])
            checked["standing"].append(robust[:take])
        if return_adversarial:
            adversarial.append(x_adv)
        progbar.add(len(x) if total is not None else 1)
    result = {
        "clean_accuracy": clean_correct / count if count else math.nan,
        "robust_accuracy": robust_correct / count if count else math.nan,
        "attack_success_rate": (clean_correct - robust_correct) / clean_correct if clean_correct else math.nan,
        "num_samples": count,
    }
    if ensemble:
        result["per_attack_accuracy"] = {name: n / count if count else math.nan for name, n in per_attack.items()}
        result["attack_seconds"] = seconds
    if sanity_checks and count:
        result["warnings"], result["sanity"] = _sanity(model, attack, checked, result, from_logits)
        for message in result["warnings"]:
            warnings.warn(message, stacklevel=2)
    if return_adversarial:
        result["x_adv"] = np.concatenate(adversarial, axis=0) if adversarial else np.zeros((0,))
    return result


def _sanity(model, attack, checked, result, from_logits):
    from keras_lossopt.adversarial.sanity import run_sanity_checks
    from keras_lossopt.adversarial.square import SquareAttack

    x = np.concatenate(checked["x"])
    scores = class_scores(model(ops.convert_to_tensor(x), training=False), from_logits)
    labels = np.asarray(ops.convert_to_numpy(sparse_labels(ops.convert_to_tensor(np.concatenate(checked["y"])),
                                                           scores.shape[-1])))  # fmt: skip
    before = after = None
    attacks = getattr(attack, "attacks", [attack])
    names = [getattr(a, "name", None) for a in attacks]
    accuracies = result.get("per_attack_accuracy", {})
    for position, member in enumerate(attacks):
        if isinstance(member, SquareAttack) and position > 0 and names[position] in accuracies:
            before, after = accuracies[names[position - 1]], accuracies[names[position]]
            break
    return run_sanity_checks(
        model,
        x,
        labels,
        np.concatenate(checked["standing"]),
        before,
        after,
        attack.eps,
        norm=getattr(attack, "norm", "linf"),
        clip=getattr(attack, "clip", (0.0, 1.0)),
        seed=0,
    )


def robust_accuracy(model, x, y, attacks=None, *, eps=None, strength="pgd", batch_size=256, verbose=0):
    """Share of samples classified correctly both clean and under the strongest of `attacks`.

    Args:
        model: the Keras model.
        x: inputs.
        y: labels (sparse or one-hot).
        attacks: an attack, a list of attacks, or None for the attacks of `strength`.
        eps: budget of the default attacks (only when `attacks` is None).
        strength: the attacks used when `attacks` is None (see `evaluation_attack`):
            `"pgd"` (default: PGD-20 on cross-entropy and margin, random starts; cheap,
            about a point optimistic on robust models), `"fast"` or `"standard"` (AutoAttack's
            budgets: use it for numbers you publish).
        batch_size: batch size. Default 256.
        verbose: 1 shows a progress bar. Default 0.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: as `evaluate_robustness`; inputs outside the attacks' `clip` (default
            `(0, 1)`) are an error rather than silently clipped.

    Examples:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).uniform(size=(8, 4)).astype("float32")
        >>> y = np.argmax(model.predict(x, verbose=0), axis=1)
        >>> robust_accuracy(model, x, y, eps=0.0)
        1.0
    """
    strength = check_choice("strength", strength, STRENGTHS)
    attack = _evaluation_attack(attacks, eps, strength)
    return evaluate_robustness(model, (x, y), attack, batch_size=batch_size, verbose=verbose, sanity_checks=False)[
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
