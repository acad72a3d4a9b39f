"""Adversarial training inside `model.fit`: `AdversarialModel` and its four methods.

`AdversarialModel(model, attack, method=...)` is a `keras.Model` whose `train_step`
attacks each batch (in the same compiled step: one `keras.ops.while_loop`, no extra `fit`
calls) and trains on the result, on TensorFlow, JAX and PyTorch (the parameter gradient and
the optimizer step are each backend's own: `_backend.adversarial_train_step`). Data,
`sample_weight`, callbacks, `jit_compile`, `evaluate`, `predict` and saving work as for any
Keras model; `evaluate` and `predict` use clean inputs. The wrapped model stays reachable
as `.model` and saves on its own.

Training metrics compiled with `metrics=[...]` are measured on the adversarial batch (for
every method), so `accuracy` during training is the accuracy on training attacks; the
validation metrics are clean. Add `keras_lossopt.callbacks.RobustnessEvaluation` for
robust validation accuracy.
"""

from __future__ import annotations

import copy

import keras
import numpy as np
from keras import ops

from keras_lossopt._reduction import reduce_loss_values
from keras_lossopt._validation import check_choice, check_int, check_non_negative, check_probability
from keras_lossopt.adversarial._backend import adversarial_train_step, assert_within, replicas_in_sync
from keras_lossopt.adversarial._checks import check_from_logits, check_input_range, check_single_input_output
from keras_lossopt.adversarial.attacks import FastGradientMethod
from keras_lossopt.adversarial.differentiability import check_differentiable
from keras_lossopt.adversarial.objectives import (
    BUILTIN_LOSSES,
    class_scores,
    detect_from_logits,
    kl_divergence_from_scores,
)
from keras_lossopt.adversarial.strongest import as_attack

__all__ = ["METHODS", "AdversarialModel"]

METHODS = ("madry", "fast", "mixed", "trades")
"""The values of `AdversarialModel(method=...)`."""


@keras.saving.register_keras_serializable(package="keras_lossopt")
class AdversarialModel(keras.Model):
    """Trains a Keras model on adversarial examples generated inside `fit`.

    Training methods:
        * `"madry"`: minimize the loss on the attack's examples (use
          `ProjectedGradientDescent`; Madry et al. 2018). Cost per step: `steps + 1`
          forward/backward passes.
        * `"fast"`: FGSM from a random start with step `1.25 * eps` (Wong et al. 2020),
          built from the attack's `eps`, `norm`, `clip` and `loss` (a `FastGradientMethod`
          with `random_start=True` is used as given). About 2x the cost of clean training;
          watch for catastrophic overfitting with `RobustnessEvaluation(collapse_fraction=...)`.
        * `"mixed"`: `(1 - adversarial_weight) * L(x) + adversarial_weight * L(x_adv)`
          (Goodfellow et al. 2015).
        * `"trades"`: `L(x) + beta * KL(f(x) || f(x_adv))` where `x_adv` maximizes the KL
          term by the attack's iteration (Zhang et al. 2019). The attack starts from a
          uniform random point of the eps-ball (the paper uses `x + 0.001 * N(0, 1)`):
          at `x` itself the KL gradient is zero. As in the authors' `trades.py`
          (yaodongyu/TRADES), the clean and the adversarial batch go through the model
          in two training-mode passes (see `single_pass`); the reference's second,
          identical clean pass is not repeated, so BatchNormalization's moving averages
          are updated twice per step instead of three times.

    `L` is the loss given to `compile` (any Keras loss or a keras-lossopt loss, with
    `sample_weight`). An attack with `loss=None` attacks that compiled loss.

    Inputs must lie in the attack's `clip` range: `fit` checks array inputs before training,
    and `train_step` checks every batch with a TensorFlow assertion (XLA, i.e.
    `jit_compile=True`, compiles assertions away: there only the array check holds, so check
    a dataset once with the attack, e.g. `robust_accuracy`, or fit once without XLA).

    Args:
        model: the Keras model to train (its outputs: logits or probabilities).
        attack: an attack object, e.g. `ProjectedGradientDescent(eps=0.3, steps=7)`, or a
            `StrongestAttack` (for `"madry"` and `"mixed"`).
        method: one of `"madry"` (default), `"fast"`, `"mixed"`, `"trades"`.
        adversarial_weight: weight of the adversarial loss for `"mixed"`, in [0, 1].
            Default 0.5.
        beta: weight of the KL term for `"trades"`, >= 0. Default 6.0.
        warmup_steps: grow the attack's `eps` (and step size) linearly from 0 to its full
            value over this many optimizer steps; 0 (default) trains at full `eps` from the
            start. Large budgets (MNIST at eps 0.3) often stall at a constant prediction
            without it.
        seed: seed of the random starts. Default None.
        single_pass: for `"mixed"` and `"trades"`, run the clean and the adversarial batch
            through the model as one concatenated training-mode pass instead of two. False
            (default) follows the TRADES reference code (two passes: BatchNormalization
            normalizes each batch with its own statistics). True shares the statistics of
            the joint batch, which changes the weight update of a model with
            BatchNormalization (measured on one TRADES step of a two-convolution CNN
            with BatchNormalization: 15-18% on the convolution kernels, up to 20% on
            BatchNormalization's scales and offsets); without batch-dependent layers
            both give the same update. It is not faster on CPU (measured: 0.77 s against
            0.75 s of CPU time per epoch for that CNN with PGD-5, 1024 images).
        **kwargs: `keras.Model` arguments such as `name`.

    Raises:
        ValueError: for an unknown `method`, `adversarial_weight` outside [0, 1],
            `beta < 0`, `warmup_steps < 0`, an attack that is not an attack object (a
            name such as `"pgd"` names the class to build), a targeted attack, or a model
            with several inputs or outputs.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_lossopt.adversarial import ProjectedGradientDescent
        >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model = AdversarialModel(inner, ProjectedGradientDescent(eps=0.1, steps=3), method="madry")
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> x = np.random.default_rng(0).uniform(size=(16, 4)).astype("float32")
        >>> history = model.fit(x, (x[:, 0] > 0.5).astype(int), epochs=1, verbose=0)
        >>> model.model is inner
        True

    References:
        Madry, Makelov, Schmidt, Tsipras, Vladu (2018). Towards Deep Learning Models
            Resistant to Adversarial Attacks. ICLR.
        Wong, Rice, Kolter (2020). Fast is better than free: Revisiting adversarial training. ICLR.
        Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan (2019). Theoretically Principled Trade-off
            between Robustness and Accuracy. ICML.
        Goodfellow, Shlens, Szegedy (2015). Explaining and Harnessing Adversarial Examples. ICLR.
    """

    def __init__(
        self,
        model,
        attack,
        method="madry",
        adversarial_weight=0.5,
        beta=6.0,
        warmup_steps=0,
        seed=None,
        single_pass=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        check_single_input_output(model, "AdversarialModel and its attacks")
        attack = as_attack(attack)
        if attack.targeted:
            raise ValueError(f"`attack` must be untargeted to train against it. Received: {attack!r}")
        self.model = model
        self.attack = attack
        self.method = check_choice("method", method, METHODS)
        self.adversarial_weight = check_probability("adversarial_weight", adversarial_weight)
        self.beta = check_non_negative("beta", beta)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.seed = None if seed is None else check_int("seed", seed)
        self.single_pass = bool(single_pass)
        if not attack.graph_safe:
            raise ValueError(
                f"`attack` must run inside the train step (graph code); {type(attack).__name__} runs eagerly. Train "
                f"against one of its attacks, and evaluate with it (evaluate_robustness). Received: {attack!r}"
            )
        if self.method == "trades" and not attack.custom_objective:
            raise ValueError(
                "`method='trades'` needs a single Attack that maximizes a given objective (it maximizes a KL term "
                "with the attack's ascent): FastGradientMethod, ProjectedGradientDescent or MomentumIterativeMethod. "
                f"{type(attack).__name__} optimizes its own loss. Received: attack={attack!r}"
            )
        for each in getattr(attack, "attacks", [attack]):
            check_from_logits(model, each.from_logits, repr(each))
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._training_attack = self._make_training_attack()

    def _make_training_attack(self):
        attack = self.attack
        if self.method == "fast":
            if isinstance(attack, FastGradientMethod) and attack.random_start:
                return attack
            loss = getattr(attack, "loss", None)
            if not attack.custom_objective and loss not in BUILTIN_LOSSES:
                loss = None  # APGD's DLR losses are its own: the FGSM attacks the compiled loss
            return FastGradientMethod(
                eps=attack.eps,
                norm=attack.norm,
                clip=attack.clip,
                loss=loss,
                from_logits=attack.from_logits,
                random_start=True,
                step_size=1.25 * attack.eps if attack.eps > 0 else None,
            )
        if self.method == "trades":
            trades = copy.deepcopy(attack)
            trades.random_start = True
            return trades
        return attack

    @property
    def training_attack(self):
        """The attack `train_step` runs (for `"fast"`: the FGSM built from `attack`)."""
        return self._training_attack

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def build(self, input_shape=None):
        if not self.model.built and input_shape is not None:
            self.model.build(input_shape)
        self.built = True

    def _from_logits(self):
        attack_from_logits = getattr(self._training_attack, "from_logits", None)
        return attack_from_logits if attack_from_logits is not None else detect_from_logits(self.model)

    def _eps_scale(self):
        if not self.warmup_steps:
            return None
        done = ops.cast(self.optimizer.iterations + 1, "float32") / float(self.warmup_steps)
        return ops.minimum(done, 1.0)

    def _adversarial(self, x, y):
        attack = self._training_attack
        eps_scale = self._eps_scale()
        if self.method == "trades":
            clean_scores = ops.stop_gradient(class_scores(self.model(x, training=False), self._from_logits()))
            from_logits = self._from_logits()

            def kl_objective(_, y_pred):
                return kl_divergence_from_scores(clean_scores, class_scores(y_pred, from_logits))

            return attack.generate(
                self.model, x, y, seed_generator=self.seed_generator, objective=kl_objective, eps_scale=eps_scale
            )
        return attack.generate(
            self.model, x, y, default_loss=self.loss, seed_generator=self.seed_generator, eps_scale=eps_scale
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking that array inputs lie in the attack's `clip` range.

        The check runs eagerly on the whole array before training, so it also holds under
        `jit_compile=True`, where XLA drops the assertion inside `train_step`; datasets and
        generators are checked batch by batch by that assertion. With arrays, the model's input
        gradient is checked on the first samples too (a layer that cuts it is named), on every
        backend: inside a jitted JAX step a cut gradient is zeros, not an error.

        Args:
            x: inputs, as for `keras.Model.fit`.
            y: targets, as for `keras.Model.fit`.
            *args: further positional arguments of `keras.Model.fit`.
            **kwargs: keyword arguments of `keras.Model.fit`.

        Returns:
            The `History` of `keras.Model.fit`.
        """
        if isinstance(x, np.ndarray) or ops.is_tensor(x):
            check_input_range(x, self._training_attack.clip, self._training_attack)
            if y is not None and len(x):
                self._check_differentiable(x[:16], y[:16])
        return super().fit(x, y, *args, **kwargs)

    def _check_differentiable(self, x, y):
        # Eagerly, before training: inside a jitted JAX step a cut input gradient is zeros, not an error.
        x = ops.cast(ops.convert_to_tensor(x), "float32")
        y = ops.convert_to_tensor(y)
        for attack in getattr(self._training_attack, "attacks", [self._training_attack]):
            if attack.needs_gradient:
                check_differentiable(self.model, x, y, attack.objective(self.model, self.loss)[0])

    def _check_input_range(self, x):
        clip = self._training_attack.clip
        if clip is None:
            return
        message = (
            f"AdversarialModel: training inputs lie outside clip={tuple(clip)} of the attack, which would clip "
            "them into that range. Set `clip` on the attack to the range of your data, or None."
        )
        tolerance = 1e-6 * (clip[1] - clip[0])
        assert_within(x, clip[0] - tolerance, clip[1] + tolerance, message)

    def train_step(self, *args):
        """One step of adversarial training: `(data)`, or `(state, data)` on JAX (Keras' own signatures)."""
        return adversarial_train_step(self, args, self._checked_adversarial, self._adversarial_loss, self._track_loss)

    def _checked_adversarial(self, x, y):
        self._check_input_range(x)
        return self._adversarial(x, y)

    def _adversarial_loss(self, x, x_adv, y, sample_weight):
        """`(loss, y_pred_adv)`: the method's training loss (training-mode passes) and the outputs on `x_adv`."""
        if self.method in ("madry", "fast"):
            y_pred_adv = self(x_adv, training=True)
            loss = self.compute_loss(x=x_adv, y=y, y_pred=y_pred_adv, sample_weight=sample_weight, training=True)
            return loss, y_pred_adv
        if self.single_pass:
            y_pred, y_pred_adv = ops.split(self(ops.concatenate([x, x_adv], axis=0), training=True), 2)
        else:
            y_pred = self(x, training=True)
            y_pred_adv = self(x_adv, training=True)
        clean_loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        if self.method == "mixed":
            adv_loss = self.compute_loss(x=x_adv, y=y, y_pred=y_pred_adv, sample_weight=sample_weight, training=True)
            weight = self.adversarial_weight
            return (1.0 - weight) * clean_loss + weight * adv_loss, y_pred_adv
        from_logits = self._from_logits()
        kl = kl_divergence_from_scores(class_scores(y_pred, from_logits), class_scores(y_pred_adv, from_logits))
        return clean_loss + self.beta * reduce_loss_values(kl, sample_weight), y_pred_adv

    def _track_loss(self, loss, x):
        # Keras scales losses by 1 / replicas under tf.distribute; the logged loss is unscaled.
        replicas = replicas_in_sync()
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(ops.stop_gradient(loss) * replicas, sample_weight=ops.shape(x)[0])

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "model": keras.saving.serialize_keras_object(self.model),
            "attack": keras.saving.serialize_keras_object(self.attack),
            "method": self.method,
            "adversarial_weight": self.adversarial_weight,
            "beta": self.beta,
            "warmup_steps": self.warmup_steps,
            "seed": self.seed,
            "single_pass": self.single_pass,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        attack = keras.saving.deserialize_keras_object(config.pop("attack"), custom_objects=custom_objects)
        return cls(model, attack, **config)
