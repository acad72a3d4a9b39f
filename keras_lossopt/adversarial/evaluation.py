"""Robustness evaluation: robust accuracy, per-attack reports, batch generation.

`robust_accuracy` counts a sample as robust only when the model classifies it correctly
clean and under the attack (for a list of attacks, the worst case per sample,
`StrongestAttack`). Without `attacks`, `strength` chooses them, in one place
(`evaluation_attack`): `"pgd"` (PGD-20 on the cross-entropy and on the Carlini-Wagner
margin, random starts), `"fast"` and `"standard"` (AutoAttack's versions).
`evaluate_robustness` also reports each stage of an ensemble and runs the sanity checks.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice, check_int
from keras_lossopt.adversarial._backend import is_tf_dataset
from keras_lossopt.adversarial._checks import check_labels_for_model
from keras_lossopt.adversarial.attacks import ProjectedGradientDescent
from keras_lossopt.adversarial.autoattack import AutoAttack
from keras_lossopt.adversarial.objectives import class_scores, detect_from_logits, predicted_labels, sparse_labels
from keras_lossopt.adversarial.sanity import run_sanity_checks
from keras_lossopt.adversarial.strongest import StrongestAttack, as_attack

__all__ = [
    "STRENGTHS",
    "default_evaluation_attacks",
    "evaluate_robustness",
    "evaluation_attack",
    "generate_adversarial",
    "robust_accuracy",
]


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
"""The values of `strength` (`evaluation_attack`, `robust_accuracy`, `evaluate_robustness`): which attacks evaluate."""
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
    if is_tf_dataset(data):
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


def resolve_evaluation_attack(attacks, eps, strength="pgd", norm="linf", *, name="attacks"):
    """The attack of an evaluation: `attacks` as given, or the attacks of `strength` at `eps`; the one rule.

    Args:
        attacks: an attack, a list of attacks, a serialized attack, a callable
            `f(model, x, y)`, or None.
        eps: the budget of the attacks of `strength` (only when `attacks` is None).
        strength: `"pgd"`, `"fast"` or `"standard"` (see `evaluation_attack`).
        norm: norm of the attacks of `strength`.
        name: the argument the caller calls `attacks`, named in the messages.

    Raises:
        ValueError: for an unknown `strength`, neither `attacks` nor `eps`, `attacks` together
            with `eps` or with a `strength` other than `"pgd"`, or a targeted attack.
    """
    strength = check_choice("strength", strength, STRENGTHS)
    if attacks is None:
        if eps is None:
            raise ValueError(
                f"Give `{name}`, or `eps` for the attacks of `strength` (PGD-20 cross-entropy + margin by default, "
                "AutoAttack for 'fast' and 'standard'). Received neither."
            )
        return evaluation_attack(eps, strength, norm=norm)
    if eps is not None:
        raise ValueError(
            f"Give either `{name}` or `eps` (the budget of the attacks of `strength`), not both. Received: "
            f"eps={eps!r} and {name} with their own eps."
        )
    if strength != "pgd":
        raise ValueError(
            f"Give either `{name}` or `strength`, not both. Received: {name}={attacks!r}, strength={strength!r}"
        )
    attack = as_attack(attacks, name, allow_callable=True)
    if getattr(attack, "targeted", False):
        raise ValueError(f"`{name}` must be untargeted for a robust accuracy. Received a targeted attack: {attack!r}")
    return attack


def evaluate_robustness(
    model,
    data,
    attacks=None,
    *,
    eps=None,
    strength="pgd",
    norm="linf",
    sanity_checks=None,
    sanity_samples=100,
    batch_size=256,
    verbose=0,
    return_adversarial=False,
):
    """Clean accuracy, robust accuracy (worst case per sample) and attack success rate.

    With `strength="standard"` this is an AutoAttack evaluation (APGD-CE, APGD-T, Square, in
    sequence on the survivors; see `AutoAttack`), the setting that matches published
    AutoAttack numbers; `strength="fast"` is a cheaper one. Such runs (any attack with
    `stages`) also report each stage's robust accuracy and time, and run the sanity checks of
    `keras_lossopt.adversarial.sanity` on the first `sanity_samples` samples: each failed
    check is a message in `"warnings"` (and a Python `UserWarning`).

    Args:
        model: the Keras model.
        data: `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)`; `y` sparse or one-hot.
        attacks: an attack, a list of attacks (worst case per sample), an `AutoAttack`, or
            None for the attacks of `strength`.
        eps: budget of the attacks of `strength` (when `attacks` is None).
        strength: `"pgd"` (default: PGD-20 cross-entropy + margin), `"fast"` or `"standard"`
            (see `evaluation_attack`).
        norm: norm of the attacks of `strength`, `"linf"` (default) or `"l2"`.
        sanity_checks: run the sanity checks; None (default) runs them for ensembles
            (AutoAttack) only.
        sanity_samples: how many of the first samples the checks attack again. Default 100.
        batch_size: batch size. Default 256.
        verbose: 1 shows a progress bar. Default 0.
        return_adversarial: also return the adversarial inputs under `"x_adv"`.

    Returns:
        A dict with `clean_accuracy`, `robust_accuracy` (correct clean and under attack),
        `attack_success_rate` (share of the correctly classified samples the attack
        fools; NaN when none is correct) and `num_samples`. Ensembles add
        `per_attack_accuracy` (attack name -> robust accuracy after it and every attack
        before it) and `attack_seconds`; sanity checks add `warnings` (a list of messages)
        and `sanity` (their measurements).

    Raises:
        ValueError: for an unknown `strength` or `norm`, `attacks` together with `strength`
            or with `eps`, neither `attacks` nor `eps`, a targeted attack, an attack given
            by name (`"pgd"`: build `ProjectedGradientDescent(eps=...)`), labels outside
            the model's classes, a model with fewer classes than the attacks need (2 or 3
            classes with `strength="fast"` or `"standard"`), `x` outside an attack's `clip`
            (set `clip` to the data's range), or `len(y) != len(x)`.
    """
    attack = resolve_evaluation_attack(attacks, eps, strength, norm)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    sanity_samples = check_int("sanity_samples", sanity_samples, minimum=1)
    ensemble = bool(getattr(attack, "stages", ()))
    sanity_checks = ensemble if sanity_checks is None else bool(sanity_checks)
    from_logits = detect_from_logits(model)
    batches, total, num_batches = _batches(model, data, batch_size)
    progbar = _progbar(total, num_batches, verbose)
    clean_correct = robust_correct = count = 0
    per_attack, seconds = {}, {}
    adversarial, checked = [], {"x": [], "y": [], "standing": []}
    for x, y in batches:
        check_labels_for_model(y, model, x)  # robust accuracy reads `y` as classes, whatever the attack does
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
    x = np.concatenate(checked["x"])
    scores = class_scores(model(ops.convert_to_tensor(x), training=False), from_logits)
    labels = np.asarray(ops.convert_to_numpy(sparse_labels(ops.convert_to_tensor(np.concatenate(checked["y"])),
                                                           scores.shape[-1])))  # fmt: skip
    # The black-box check compares the accuracy before and after the first gradient-free stage
    # that follows a gradient stage.
    before = after = None
    stages = list(getattr(attack, "stages", ()))
    accuracies = result.get("per_attack_accuracy", {})
    for position, stage in enumerate(stages):
        if not stage.needs_gradient and position > 0 and stage.name in accuracies:
            before, after = accuracies[stages[position - 1].name], accuracies[stage.name]
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
        eps: budget of the attacks of `strength` (only when `attacks` is None).
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
    result = evaluate_robustness(model, (x, y), attacks, eps=eps, strength=strength, batch_size=batch_size,
                                 verbose=verbose, sanity_checks=False)  # fmt: skip
    return result["robust_accuracy"]


def _correct(model, x, y, from_logits):
    scores = class_scores(model(x, training=False), from_logits)
    labels = sparse_labels(ops.convert_to_tensor(y), scores.shape[-1])
    return np.asarray(ops.convert_to_numpy(ops.equal(predicted_labels(scores), labels)))


def _progbar(samples, num_batches, verbose):
    if samples is not None:
        return keras.utils.Progbar(samples, verbose=verbose, unit_name="sample")
    return keras.utils.Progbar(num_batches, verbose=verbose, unit_name="batch")
