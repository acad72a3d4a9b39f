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

from keras_lossopt._validation import check_choice, check_non_negative
from keras_lossopt.adversarial._survivors import as_float_batch, clean_predictions
from keras_lossopt.adversarial.apgd import AutoProjectedGradientDescent
from keras_lossopt.adversarial.base import Attack, _normalize_norm
from keras_lossopt.adversarial.objectives import detect_from_logits
from keras_lossopt.adversarial.square import SquareAttack

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
    norm = _normalize_norm(norm)
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
class AutoAttack:
    """The AutoAttack ensemble (or any list of attacks) run in sequence on the samples still standing.

    Use it (or `evaluate_robustness(..., version="standard")`) for a robust accuracy you can
    publish: `version="standard"` matches the budgets of published AutoAttack numbers (less
    FAB-T, see the module docstring). Calling it returns the adversarial batch like any
    attack, so it also fits `robust_accuracy` and `RobustnessEvaluation`; `run` also reports
    which samples each attack left standing and its time.

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
            or an entry that is not an untargeted attack.

    Examples:
        >>> attack = AutoAttack(8 / 255, version="standard", seed=0)
        >>> [(a.name, getattr(a, "num_target_classes", None)) for a in attack.attacks]
        [('apgd_ce', 9), ('apgd_t', 9), ('square', None)]

        `evaluate_robustness(model, (x, y), attack)` then reports each attack's accuracy.

    References:
        Croce, Hein (2020). Reliable evaluation of adversarial robustness with an ensemble of
            diverse parameter-free attacks. ICML. Code: github.com/fra31/auto-attack.
    """

    def __init__(
        self, eps, norm="linf", version="standard", attacks=None, clip=(0.0, 1.0), seed=None, name="auto_attack"
    ):
        self.eps = check_non_negative("eps", eps)
        self.norm = _normalize_norm(norm)
        self.version = check_choice("version", version, VERSIONS)
        self.clip = None if clip is None else tuple(float(v) for v in clip)
        self.seed = seed
        self.name = name
        self.targeted = False
        if attacks is not None:
            attacks = [keras.saving.deserialize_keras_object(a) if isinstance(a, dict) else a for a in attacks]
            if not attacks:
                raise ValueError("`attacks` must hold at least one attack, or be None. Received: attacks=[]")
            for attack in attacks:
                if not isinstance(attack, Attack) or attack.targeted:
                    raise ValueError(f"`attacks` must hold untargeted Attack objects. Received: {attack!r}")
        self.custom_attacks = attacks
        self.attacks = attacks or autoattack_attacks(eps, norm=self.norm, version=self.version, clip=clip, seed=seed)

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

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"AutoAttack(eps={self.eps!r}, norm={self.norm!r}, version={self.version!r})"

    def __call__(self, model, x, y):
        """The adversarial batch: per sample, the first attack's example that fools the model.

        Args:
            model: the Keras model.
            x: input batch; never modified.
            y: true labels (sparse, `(N, 1)` or one-hot).

        Returns:
            Same shape and dtype as `x` (NumPy in, NumPy out).
        """
        return self.run(model, x, y)["x_adv"]

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
        x_work, y_array, to_output = as_float_batch(x, y, model, self)
        labels, standing, _ = clean_predictions(model, x_work, y_array, detect_from_logits(model))
        clean = standing.copy()
        x_adv = x_work.copy()
        after, seconds = {}, {}
        for attack in self.attacks:
            start = time.perf_counter()
            index = np.flatnonzero(standing)
            if index.size:
                x_attack = np.asarray(attack(model, x_work[index], labels[index]))
                _, robust, _ = clean_predictions(model, x_attack, labels[index], detect_from_logits(model))
                fooled = index[~robust]
                x_adv[fooled] = x_attack[~robust]
                standing[fooled] = False
            after[attack.name] = standing.copy()
            seconds[attack.name] = time.perf_counter() - start
        return {"x_adv": to_output(x_adv), "clean": clean, "standing": after, "seconds": seconds}
