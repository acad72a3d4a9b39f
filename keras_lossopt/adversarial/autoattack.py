"""AutoAttack-style evaluation: a fixed ensemble of attacks run in sequence on the survivors.

A robust accuracy is only as good as the attack behind it. AutoAttack (Croce and Hein 2020)
fixed one parameter-free ensemble so that numbers are comparable across papers. Its standard
version, as the authors' code runs it (fra31/auto-attack, `autoattack/autoattack.py`,
`AutoAttack.set_version("standard")` and `run_standard_evaluation`), is, in this order:

1. APGD-CE: APGD on the cross-entropy, 100 iterations, 1 restart;
2. APGD-T: APGD on the targeted DLR loss, 100 iterations, the 9 top classes as targets;
3. FAB-T: the targeted minimum-norm attack FAB, 9 targets (not implemented here; in the
   authors' published tables it almost never breaks a point that APGD-T left standing);
4. Square: 5,000 queries, `p_init = 0.8`.

Each attack runs only on the samples that every earlier attack left standing (and that are
classified correctly to begin with); a sample counts as robust when no attack fools it. Our
`"fast"` version keeps the order with a third of the cost: APGD-CE (100 iterations), APGD-T
on the 3 top classes and Square with 1,000 queries.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_choice
from keras_lossopt.adversarial._checks import check_norm, output_classes
from keras_lossopt.adversarial.apgd import AutoProjectedGradientDescent
from keras_lossopt.adversarial.base import Attack
from keras_lossopt.adversarial.square import SquareAttack
from keras_lossopt.adversarial.survivors import attack_survivors, clean_predictions

__all__ = ["VERSIONS", "AutoAttack", "autoattack_attacks"]

VERSIONS = ("standard", "fast")
"""The values of `AutoAttack(version=...)`."""


def autoattack_attacks(eps, *, norm="linf", version="standard", clip=(0.0, 1.0), seed=None):
    """The attacks of an AutoAttack version, in the order they run.

    Args:
        eps: perturbation budget, >= 0.
        norm: `"linf"` (default) or `"l2"`. Square is L-inf only, so the L2 ensemble runs
            the two APGD attacks.
        version: `"standard"` (default; AutoAttack's budgets) or `"fast"`.
        clip: valid input range. Default `(0, 1)`.
        seed: seed of the random starts and of Square. Default None.

    Returns:
        A list of attacks: APGD-CE, APGD-T and (L-inf) Square, named `"apgd_ce"`,
        `"apgd_t"`, `"square"`.

    Examples:
        >>> [a.name for a in autoattack_attacks(0.3)]
        ['apgd_ce', 'apgd_t', 'square']
    """
    version = check_choice("version", version, VERSIONS)
    norm = check_norm(norm)
    targets, queries = (9, 5000) if version == "standard" else (3, 1000)
    attacks = [
        AutoProjectedGradientDescent(eps, norm=norm, steps=100, loss="cross_entropy", clip=clip, seed=seed,
                                     name="apgd_ce"),
        AutoProjectedGradientDescent(eps, norm=norm, steps=100, loss="targeted_dlr", num_target_classes=targets,
                                     clip=clip, seed=seed, name="apgd_t"),
    ]  # fmt: skip
    if norm == "linf":
        attacks.append(SquareAttack(eps, queries=queries, p_init=0.8, clip=clip, seed=seed, name="square"))
    return attacks


@keras.saving.register_keras_serializable(package="keras_lossopt")
class AutoAttack(Attack):
    """The AutoAttack ensemble (or any list of attacks) run in sequence on the samples still standing.

    Use it (or `evaluate_robustness(..., strength="standard")`) for a robust accuracy you can
    publish: `version="standard"` matches the budgets of published AutoAttack numbers (less
    FAB-T, see the module docstring). Calling it returns the adversarial batch like any
    attack, so it also fits `robust_accuracy` and `RobustnessEvaluation`; `run` also reports
    which samples each attack left standing and its time. Its attacks are the rounds of the
    survivors loop (`survivors.attack_survivors`); it runs eagerly (not inside a train step).

    Before the first attack runs, the model's number of classes is checked against every
    attack (AutoAttack's own code checks it up front too, `checks.check_n_classes`): the DLR
    losses compare the largest logits and need 3 (untargeted) or 4 (targeted, APGD-T)
    classes, so the standard and fast versions need a model with at least 4 classes.

    Args:
        eps: perturbation budget, >= 0.
        norm: `"linf"` (default) or `"l2"`.
        version: `"standard"` (default) or `"fast"` (see `autoattack_attacks`).
        attacks: optional list of untargeted attacks that replaces the version's ensemble.
        clip: valid input range. Default `(0, 1)`.
        seed: seed of the attacks. Default None.
        name: name. Default `"auto_attack"`.

    Raises:
        ValueError: for `eps < 0`, an unknown `norm` or `version`, an empty `attacks` list,
            or an entry that is not an untargeted attack; at the first call, a model with
            fewer classes than an attack needs (naming the attack and what to use instead).

    Examples:
        >>> attack = AutoAttack(8 / 255, version="standard", seed=0)
        >>> [(a.name, getattr(a, "num_target_classes", None)) for a in attack.attacks]
        [('apgd_ce', 9), ('apgd_t', 9), ('square', None)]

        `evaluate_robustness(model, (x, y), attack)` then reports each attack's accuracy.

    References:
        Croce, Hein (2020). Reliable evaluation of adversarial robustness with an ensemble of
            diverse parameter-free attacks. ICML. Code: github.com/fra31/auto-attack.
    """

    graph_safe = False

    def __init__(
        self, eps, norm="linf", version="standard", attacks=None, clip=(0.0, 1.0), seed=None, name="auto_attack"
    ):
        super().__init__(eps, norm=norm, clip=clip, seed=seed, name=name)
        self.version = check_choice("version", version, VERSIONS)
        if attacks is not None:
            attacks = [keras.saving.deserialize_keras_object(a) if isinstance(a, dict) else a for a in attacks]
            if not attacks:
                raise ValueError("`attacks` must hold at least one attack, or be None. Received: attacks=[]")
            for attack in attacks:
                if not isinstance(attack, Attack) or attack.targeted:
                    raise ValueError(f"`attacks` must hold untargeted Attack objects. Received: {attack!r}")
        self.custom_attacks = attacks
        self.attacks = attacks or autoattack_attacks(eps, norm=self.norm, version=self.version, clip=clip, seed=seed)

    @property
    def stages(self) -> tuple:
        return tuple(self.attacks)

    @property
    def min_classes(self) -> int:
        return max(attack.min_classes for attack in self.attacks)

    def get_config(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.norm,
            "version": self.version,
            "attacks": None
            if self.custom_attacks is None
            else [keras.saving.serialize_keras_object(a) for a in self.custom_attacks],
            "clip": None if self.clip is None else list(self.clip),
            "seed": self.seed,
            "name": self.name,
        }

    def __repr__(self):
        return f"AutoAttack(eps={self.eps!r}, norm={self.norm!r}, version={self.version!r})"

    def check_model(self, model, x, y):
        """The number of classes against every attack, then each attack's own model checks, before any runs."""
        num_classes = output_classes(model, x)
        if num_classes < self.min_classes:
            raise ValueError(self._few_classes_message(model, num_classes))
        for attack in self.attacks:
            attack.prepare(model, x, y)

    def _few_classes_message(self, model, num_classes):
        needing = [a for a in self.attacks if a.min_classes > num_classes]
        names = ", ".join(f"{a.name} (loss={getattr(a, 'loss', None)!r})" for a in needing)
        which = (
            f"AutoAttack version={self.version!r} (the evaluation's strength={self.version!r})"
            if self.custom_attacks is None
            else "This AutoAttack ensemble"
        )
        three = " (from 3 classes, loss='dlr' also works)" if num_classes == 3 else ""
        return (
            f"{which} needs a model with at least {self.min_classes} classes; model {model.name!r} has "
            f"{num_classes}. {names} compare(s) the largest logits: the DLR loss needs 3 classes, the targeted DLR "
            f"loss 4 (AutoAttack's own check_n_classes refuses them below that). Evaluate with strength='pgd', or "
            f"give attacks that work with {num_classes} classes, e.g. AutoAttack(eps, attacks=["
            f"AutoProjectedGradientDescent(eps, loss='cross_entropy'), SquareAttack(eps)]){three}."
        )

    def perturb(self, model, x, y):
        return self._run(model, x, y)["x_adv"]

    def run(self, model, x, y):
        """Runs the attacks in order, each on the samples still standing.

        Args:
            model: the Keras model.
            x: input batch; never modified.
            y: true labels (sparse, `(N, 1)` or one-hot).

        Returns:
            A dict: `"x_adv"` (like `__call__`), `"clean"` (bool `(N,)`, classified correctly),
            `"standing"` (dict attack name -> bool `(N,)`, still robust after that attack and all
            before it), `"seconds"` (dict attack name -> wall time).
        """
        x_tensor, y_tensor, to_output = self.checked_batch(model, x, y)
        if self.eps > 0.0 and x_tensor.shape[0]:
            self.prepare(model, x_tensor, y_tensor)
        result = self._run(model, x_tensor, y_tensor)
        return {**result, "x_adv": to_output(result["x_adv"])}

    def _run(self, model, x, y):
        x_work = ops.convert_to_numpy(x)  # the checked copy: the caller's x is never written
        from_logits = self.resolved_from_logits(model)
        labels, clean, _ = clean_predictions(model, x_work, ops.convert_to_numpy(y), from_logits)
        seconds = {}

        def attack(index, member, state):
            start = time.perf_counter()
            x_attack = np.asarray(member(model, x_work[index], labels[index]))
            _, robust, _ = clean_predictions(model, x_attack, labels[index], from_logits)
            seconds[member.name] = time.perf_counter() - start
            # Only a fooling example replaces the input: a sample no attack fools is returned as given.
            keep = robust.reshape((-1,) + (1,) * (x_attack.ndim - 1))
            return np.where(keep, x_work[index], x_attack), ~robust, state

        x_adv, standing, history = attack_survivors(x_work, clean, self.attacks, attack)
        after = {member.name: history[i] if i < len(history) else standing for i, member in enumerate(self.attacks)}
        seconds = {member.name: seconds.get(member.name, 0.0) for member in self.attacks}
        return {"x_adv": x_adv, "clean": clean, "standing": after, "seconds": seconds}
