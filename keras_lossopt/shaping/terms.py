"""Loss terms for composites: rewards (subtracted), confidence and output penalties.

Each term is a `keras.losses.Loss` returning one value per sample (`call`), reduced by the
loss contract, so it also works alone. Terms that take a user function check its output
at every call (`check_per_sample`): it must keep the batch axis, since a value already
reduced over the batch cannot be weighted per sample, masked or averaged correctly. A plain
function becomes a term through `keras_lossopt.losses.FunctionTerm`.

A term's `weight` attribute is the weight a `CompositeLoss` gives it when none is set
there (`FocalLoss() + ConfidencePenalty(beta=0.1)` weights the penalty by 0.1), and
`sign = -1` marks a quantity to maximize: the composite subtracts it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import (
    check_arguments_accepted,
    check_choice,
    check_function,
    check_int,
    check_non_negative,
    check_per_sample,
)
from keras_lossopt._value_checks import is_concrete, probability_poison
from keras_lossopt.losses.base import LossFunctionBase
from keras_lossopt.shaping._numpy_call import call_numpy

__all__ = ["ConfidencePenalty", "OutputPenalty", "RewardTerm"]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class OutputPenalty(LossFunctionBase):
    """A cost on the prediction alone, e.g. the energy of a controller's predicted actions.

    Formula:
        `penalty_i = fn(y_pred)_i`, one value per sample; `y_true` is ignored.

    Args:
        fn: function `y_pred -> per-sample cost` (register it to reload without `custom_objects`).
        weight: default weight in a `CompositeLoss`, >= 0. Default 1.0.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"output_penalty"`.
        dtype: computation dtype. Default None.

    Raises:
        TypeError: for a `fn` that cannot take one positional argument (`y_pred`).
        ValueError: when `fn` is not a function, `weight` < 0, or `fn` does not return one value per sample.

    Examples:
        >>> import numpy as np
        >>> from keras import ops
        >>> energy = OutputPenalty(lambda u: ops.sum(ops.square(u), axis=-1))
        >>> float(energy(None, np.array([[1.0, 2.0], [0.0, 1.0]])))
        3.0
    """

    def __init__(self, fn, weight=1.0, reduction="sum_over_batch_size", name="output_penalty", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = check_function("fn", fn)
        check_arguments_accepted(
            "fn", self.fn, ["y_pred"], hint="; OutputPenalty calls fn(y_pred): for fn(y_true, y_pred) use FunctionTerm."
        )
        self.weight = check_non_negative("weight", weight)

    def standardize_inputs(self, y_true, y_pred):
        # `y_true` plays no part (it may be None or a dummy target).
        y_pred = ops.convert_to_tensor(y_pred)
        return y_true, ops.cast(y_pred, self.dtype) if y_pred.dtype != self.dtype else y_pred

    def call(self, y_true, y_pred):
        return check_per_sample(self.name, self.fn(y_pred), y_pred)

    def get_config(self):
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn), "weight": self.weight}


_PENALTY_MODES = ("multiclass", "multilabel")


@keras.saving.register_keras_serializable(package="keras_lossopt")
class ConfidencePenalty(LossFunctionBase):
    """Negative entropy of the predicted distribution: penalizes over-confident predictions.

    Added to cross-entropy with weight `beta`, it is the confidence penalty of Pereyra et
    al. (2017): `CE - beta * H(p)`, which keeps the output distribution from collapsing to
    one class (a regularizer close to label smoothing, but on the prediction).

    Formula:
        multiclass: `-H(p) = sum_c p_c log p_c` (softmax over the last axis);
        multilabel: the Bernoulli negative entropy averaged over the last axis.

    Args:
        beta: the penalty's default weight in a `CompositeLoss`, >= 0. Default 0.1.
        from_logits: whether `y_pred` holds logits. Default False: `y_pred` must then be
            probabilities (in [0, 1], rows summing to 1 for `"multiclass"`); logits raise a
            ValueError at the first eager call, fail an assertion in a graph and give a NaN
            loss under XLA, instead of a finite, wrong penalty.
        mode: `"multiclass"` (softmax) or `"multilabel"` (sigmoid). Default `"multiclass"`.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"confidence_penalty"`.
        dtype: computation dtype. Default None.

    Raises:
        ValueError: for `beta` < 0 or an unknown `mode`; at the call, for outputs that are
            not probabilities with `from_logits=False`.

    Examples:
        >>> import numpy as np
        >>> uniform = np.full((1, 4), 0.25)
        >>> round(float(ConfidencePenalty()(None, uniform)), 4)  # -log(4)
        -1.3863

    References:
        Pereyra, Tucker, Chorowski, Kaiser, Hinton (2017). Regularizing neural networks by
        penalizing confident output distributions. ICLR workshop.
    """

    def __init__(
        self,
        beta=0.1,
        from_logits=False,
        mode="multiclass",
        reduction="sum_over_batch_size",
        name="confidence_penalty",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = check_non_negative("beta", beta)
        self.from_logits = bool(from_logits)
        self.mode = check_choice("mode", mode, _PENALTY_MODES)

    @property
    def weight(self) -> float:
        """The default weight in a composite: `beta`."""
        return self.beta

    @property
    def loss_family(self) -> str:
        """What `y_pred` is: class scores through a softmax (multiclass) or sigmoids (multilabel)."""
        return "softmax_ce" if self.mode == "multiclass" else "sigmoid_ce"

    def standardize_inputs(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        return y_true, ops.cast(y_pred, self.dtype) if y_pred.dtype != self.dtype else y_pred

    def call(self, y_true, y_pred):
        poison = None
        if not self.from_logits:
            # Logits read as probabilities give a finite, wrong penalty: refuse them (see probability_poison).
            poison = probability_poison(y_pred, rows_sum_to_one=self.mode == "multiclass")
        if self.mode == "multiclass":
            if self.from_logits:
                log_p = ops.log_softmax(y_pred, axis=-1)
            else:
                log_p = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
            values = ops.sum(ops.exp(log_p) * log_p, axis=-1)
        else:
            if self.from_logits:
                log_p, log_q = ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
            else:
                eps = keras.config.epsilon()
                log_p, log_q = ops.log(ops.clip(y_pred, eps, 1.0)), ops.log(ops.clip(1.0 - y_pred, eps, 1.0))
            values = ops.mean(ops.exp(log_p) * log_p + ops.exp(log_q) * log_q, axis=-1)
        return values if poison is None else values + ops.cast(poison, values.dtype)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "from_logits": self.from_logits, "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_lossopt")
class RewardTerm(LossFunctionBase):
    """A quantity to maximize; a `CompositeLoss` subtracts `weight * reward`.

    With `differentiable=True` (default) `fn(y_true, y_pred)` is a per-sample reward written
    in `keras.ops`. With `differentiable=False`, `fn(y_true, classes)` may be any NumPy
    function of the true labels and the predicted class indices (a business metric, a
    simulator): the term then draws `num_samples` classes per sample from the model's
    predicted distribution `p(.|x)` (softmax of the last axis) and uses the score-function
    (REINFORCE) estimator with a leave-one-out baseline over those samples,

        grad E_p[r] ~ 1/K sum_k (r_k - b_k) grad log p(a_k|x),  b_k = mean of the other K-1 rewards,

    an unbiased estimate with lower variance than a plain REINFORCE (Kool et al. 2019). The
    term's value is the mean sampled reward (what is logged); only its gradient is the
    estimator. The NumPy call runs on the host through each backend's own mechanism
    (`tf.numpy_function`, `jax.pure_callback`, a direct call on PyTorch). On TensorFlow
    it needs `jit_compile=False` (XLA there cannot call Python: the shaping callbacks and
    `track_loss_terms` refuse such a model, and XLA's own error names the node
    `numpy_reward_needs_jit_compile_False`); on JAX it also runs inside `jax.jit`.

    Args:
        fn: the reward function (register it to reload without `custom_objects`).
        weight: default weight in a `CompositeLoss`, >= 0. Default 1.0.
        differentiable: whether `fn` is differentiable `keras.ops` code on `y_pred`. Default True.
        num_samples: classes drawn per sample for the estimator, >= 2. Default 4.
        from_logits: whether `y_pred` holds logits (estimator only). Default False.
        seed: seed of the class sampling (estimator only). Default None.
        reduction: Keras reduction. Default `"sum_over_batch_size"`.
        name: loss name. Default `"reward"`.
        dtype: computation dtype. Default None.

    Raises:
        TypeError: for a `fn` that cannot take two positional arguments.
        ValueError: for a bad argument; at the call, for `fn` not returning one finite reward
            per sample, or NumPy code given with `differentiable=True`.

    Examples:
        >>> import numpy as np
        >>> def hit_rate(y_true, classes):  # NumPy, not differentiable
        ...     return (classes == y_true.reshape(-1)).astype("float32")
        >>> reward = RewardTerm(hit_rate, differentiable=False, num_samples=64, seed=0)
        >>> certain = np.array([[0.0, 1.0], [1.0, 0.0]])
        >>> float(reward(np.array([1, 0]), certain))  # every sampled class is right
        1.0

    References:
        Williams (1992). Simple statistical gradient-following algorithms for connectionist
        reinforcement learning. Machine Learning.
        Kool, van Hoof, Welling (2019). Buy 4 REINFORCE samples, get a baseline for free! ICLR workshop.
    """

    sign = -1.0

    def __init__(
        self,
        fn,
        weight=1.0,
        differentiable=True,
        num_samples=4,
        from_logits=False,
        seed=None,
        reduction="sum_over_batch_size",
        name="reward",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = check_function("fn", fn)
        self.differentiable = bool(differentiable)
        check_arguments_accepted("fn", self.fn, ["y_true", "y_pred" if self.differentiable else "classes"])
        self.weight = check_non_negative("weight", weight)
        self.num_samples = check_int("num_samples", num_samples, minimum=2)
        self.from_logits = bool(from_logits)
        self.seed = seed
        if not self.differentiable:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def standardize_inputs(self, y_true, y_pred):
        if not self.differentiable:
            y_pred = ops.convert_to_tensor(y_pred)
            return ops.convert_to_tensor(y_true), ops.cast(y_pred, self.dtype)
        return super().standardize_inputs(y_true, y_pred)

    def call(self, y_true, y_pred):
        if self.differentiable:
            return check_per_sample(self.name, self._differentiable_reward(y_true, y_pred), y_pred)
        return self._score_function_reward(y_true, y_pred)

    def _differentiable_reward(self, y_true, y_pred):
        """`fn(y_true, y_pred)`, refusing a NumPy reward (no gradient; in a compiled step, no values)."""
        numpy_hint = (
            "a differentiable reward is keras.ops code on y_pred; for a NumPy reward of the predicted classes "
            "pass RewardTerm(fn, differentiable=False), which estimates its gradient by sampling"
        )
        try:
            value = self.fn(y_true, y_pred)
        except Exception as error:
            if is_concrete(y_pred):
                raise
            # NumPy (or plain Python) code cannot read the values of a compiled step's tensors.
            first_line = str(error).splitlines()[0] if str(error) else ""
            raise ValueError(
                f"Reward {self.name!r} failed on the symbolic tensors of a compiled step ({type(error).__name__}: "
                f"{first_line}); if fn is NumPy code: {numpy_hint}."
            ) from error
        if isinstance(value, (np.ndarray, np.generic, float, int)):
            raise ValueError(f"Reward {self.name!r} returned a NumPy value, which has no gradient: {numpy_hint}.")
        return value

    def _score_function_reward(self, y_true, y_pred):
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            log_probs = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
        classes = keras.random.categorical(
            ops.stop_gradient(log_probs), self.num_samples, seed=self.seed_generator, dtype="int32"
        )
        rewards = ops.stop_gradient(self._numpy_rewards(y_true, classes))
        others = (ops.sum(rewards, axis=-1, keepdims=True) - rewards) / (self.num_samples - 1)
        log_p_sampled = ops.take_along_axis(log_probs, classes, axis=-1)
        surrogate = ops.mean(ops.stop_gradient(rewards - others) * log_p_sampled, axis=-1)
        # Forward value: the mean sampled reward; gradient: the score-function estimate.
        return ops.mean(rewards, axis=-1) + surrogate - ops.stop_gradient(surrogate)

    def _numpy_rewards(self, y_true, classes):
        fn, name, samples = self.fn, self.name, self.num_samples

        def rewards(labels, drawn):
            count = drawn.shape[0]
            value = np.asarray(fn(np.repeat(labels, samples, axis=0), drawn.reshape(-1)), dtype=np.float32)
            if value.shape != (count * samples,):
                raise ValueError(
                    f"Reward {name!r} must return one reward per sample, shape ({count * samples},) for "
                    f"{count * samples} sampled classes. Received: shape {value.shape}"
                )
            bad = np.flatnonzero(~np.isfinite(value))
            if bad.size:
                first = int(bad[0])
                raise ValueError(
                    f"Reward {name!r} returned {bad.size} non-finite value(s) of {value.size}, e.g. {value[first]} "
                    f"for the label {labels.reshape(count, -1)[first // samples].tolist()} and the sampled class "
                    f"{int(drawn.reshape(-1)[first])}; rewards must be finite numbers."
                )
            return value.reshape(count, samples)

        # XLA on TensorFlow cannot compile a Python call; its error names the node, so the node says what to do.
        values = call_numpy(rewards, [y_true, classes], tuple(classes.shape), "numpy_reward_needs_jit_compile_False")
        return ops.cast(values, self.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "fn": keras.saving.serialize_keras_object(self.fn),
            "weight": self.weight,
            "differentiable": self.differentiable,
            "num_samples": self.num_samples,
            "from_logits": self.from_logits,
            "seed": self.seed,
        }
