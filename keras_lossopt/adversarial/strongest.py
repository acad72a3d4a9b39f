"""The worst case per sample over several attacks, and what the evaluation accepts as an attack.

A single FGSM run, or one PGD run on the cross-entropy, overstates robustness (gradient
masking, unlucky starts). `StrongestAttack` runs several attacks and keeps, per sample, the
example that fools the model (else the one with the smallest true-class margin). `as_attack`
turns an `attack`/`attacks` argument (an attack, a list of attacks, a serialized attack) into
one attack object, and refuses names and classes with the constructor to call instead.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_lossopt.adversarial._checks import check_from_logits, check_input_range, check_labels_for_model
from keras_lossopt.adversarial.base import Attack, CompiledAttack, keep_stronger
from keras_lossopt.adversarial.objectives import make_objective

__all__ = ["StrongestAttack"]


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
        ValueError: for an empty list, a targeted attack, or an object that is not an attack
            running in graph code.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_lossopt.adversarial import ProjectedGradientDescent
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> attack = StrongestAttack([ProjectedGradientDescent(0.1, steps=3), ProjectedGradientDescent(0.1, steps=3,
        ...                          loss="margin")])
        >>> x = np.full((2, 4), 0.5, "float32")
        >>> bool(np.abs(attack(model, x, np.array([0, 1])) - x).max() <= 0.1 + 1e-6)
        True
    """

    def __init__(self, attacks, from_logits=None, name="strongest_attack"):
        attacks = [keras.saving.deserialize_keras_object(a) if isinstance(a, dict) else a for a in attacks]
        if not attacks:
            raise ValueError("`attacks` must hold at least one attack. Received: attacks=[]")
        for attack in attacks:
            if not isinstance(attack, Attack) or not attack.graph_safe:
                raise ValueError(
                    f"`attacks` must hold Attack objects that run in graph code (not AutoAttack). Received: {attack!r}"
                )
            if attack.targeted:
                raise ValueError(f"StrongestAttack takes untargeted attacks. Received targeted: {attack!r}")
        self.attacks = list(attacks)
        super().__init__(
            max(a.eps for a in self.attacks),
            norm=self.attacks[0].norm,
            clip=self.attacks[0].clip,
            from_logits=from_logits,
            name=name,
        )

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
        strength, success = make_objective("margin", self.resolved_from_logits(model), targeted=False)
        best = None
        for attack in self.attacks:
            x_adv = attack.generate(
                model, x, y, default_loss=default_loss, seed_generator=seed_generator, eps_scale=eps_scale
            )
            y_pred = model(x_adv, training=False)
            best = keep_stronger(best, (x_adv, strength(y, y_pred), success(y, y_pred)))
        return best[0]

    def random_generators(self):
        """Every member's seed generators: each member draws from its own stream."""
        return [generator for attack in self.attacks for generator in attack.random_generators()]

    def check_model(self, model, x, y):
        """`from_logits` against the model, then each attack's own model checks."""
        check_from_logits(model, self.from_logits, repr(self), model(x, training=False))
        for attack in self.attacks:
            attack.prepare(model, x, y)

    def check_inputs(self, model, x, y):
        for attack in self.attacks:
            check_input_range(x, attack.clip, attack)
        check_labels_for_model(y, model, x)


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
    if isinstance(value, Attack):
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
