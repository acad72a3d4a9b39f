"""Adaptive term weights: uncertainty weighting, Dynamic Weight Averaging and GradNorm.

Each method is a callback over the terms of the model's composite losses, so it balances
the terms of one `CompositeLoss` on one output as well as the outputs of a multi-output
model compiled with one composite per output (`task_losses({...})`). Each logs the
weights at every epoch end (`weight_<term>`).

* `UncertaintyWeighting` (Kendall et al. 2018): one trainable log-variance `s_i` per term,
  trained with the model; loss `sum_i exp(-s_i) L_i + s_i`.
* `DynamicWeightAveraging` (Liu et al. 2019): weights from the ratio of each term's last
  two epoch losses, `K softmax(L(t-1) / L(t-2) / T)`.
* `GradNorm` (Chen et al. 2018): weights learned so that each term's gradient norm on the
  last shared layer follows its relative inverse training rate to the power `alpha`
  (TensorFlow backend: it reads the per-term gradients from a `tf.GradientTape`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_non_negative, check_positive
from keras_lossopt.shaping._keras_model import retrace_steps, unwrap_train_step, wrap_train_step
from keras_lossopt.shaping.tracking import TermWeightCallback

__all__ = ["DynamicWeightAveraging", "GradNorm", "UncertaintyWeighting", "dwa_weights"]


class UncertaintyWeighting(TermWeightCallback):
    """Weights each term by a learned homoscedastic uncertainty (Kendall et al. 2018).

    Adds one trainable log-variance `s_i = log sigma_i^2` per term to the model (through the
    composites' state) and switches the composites to `sum_i exp(-s_i) * L_i + s_i`, the
    form of the authors' Keras example (yaringal/multi-task-learning-example,
    `CustomMultiLossLayer`). For a mean squared error the optimum is `s_i = log MSE_i`, so
    `exp(s_i)` estimates each task's noise variance. The log-variances are trained by the
    model's optimizer, so the callback must see the model before the optimizer is built:
    passing it to `fit` is enough on TensorFlow without a distribution strategy; otherwise
    call `callback.set_model(model)` after `compile` and before `fit`.

    Logs `weight_<term>` (= `exp(-s_i)`) and `log_variance_<term>` at each epoch end.

    Args:
        initial_log_variance: starting `s_i` of every term. Default 0.0 (weight 1).

    Raises:
        ValueError: for reward terms (their loss is unbounded below under this weighting),
            or an optimizer already built without the log-variances.

    Examples:
        >>> UncertaintyWeighting().initial_log_variance
        0.0

    References:
        Kendall, Gal, Cipolla (2018). Multi-task learning using uncertainty to weigh losses
        for scene geometry and semantics. CVPR.
    """

    weighs_by_uncertainty = True

    def __init__(self, initial_log_variance: float = 0.0):
        super().__init__()
        self.initial_log_variance = float(initial_log_variance)
        if not np.isfinite(self.initial_log_variance):
            raise ValueError(f"`initial_log_variance` must be finite. Received: {initial_log_variance!r}")

    def set_model(self, model) -> None:
        super().set_model(model)
        created = False
        for composite in self.composites:
            rewards = [term for term in composite.term_names if composite.sign(term) < 0]
            if rewards:
                raise ValueError(
                    f"UncertaintyWeighting cannot weight reward terms {rewards}: exp(-s) * (-reward) + s has no "
                    "minimum in s. Keep rewards in a composite without uncertainty weighting."
                )
            created |= not composite.uncertainty_weighting
            composite.state.add_log_variances(self.initial_log_variance)
        if not created:
            return
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and optimizer.built:
            # A built Keras optimizer only updates the variables it was built with.
            raise ValueError(
                "The optimizer was built before UncertaintyWeighting could add its log-variances. Call "
                "`callback.set_model(model)` after compile and before the first fit or train step (under a "
                "distribution strategy or on JAX, fit builds the optimizer before the callbacks see the model)."
            )
        # The composites' formula changed: let fit trace new train and test functions.
        retrace_steps(model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is None:
            return
        for composite in self.composites:
            for term, log_variance in composite.state.log_variances.items():
                logs[f"log_variance_{term}"] = float(ops.convert_to_numpy(log_variance))


def dwa_weights(loss_history: Sequence[Sequence[float]], temperature: float = 2.0) -> np.ndarray:
    """Dynamic Weight Averaging weights for the next epoch from the per-epoch term losses.

    Formula (Liu et al. 2019, eq. 7; as in the authors' code, lorenmt/mtan):
        `r_k = L_k(t-1) / L_k(t-2)`, `lambda_k = K exp(r_k / T) / sum_i exp(r_i / T)`;
        `lambda_k = 1` while fewer than two epochs are recorded.

    Args:
        loss_history: one row per finished epoch, one average training loss per term.
        temperature: softmax temperature `T` > 0 (larger: closer to equal weights). Default 2.0.

    Returns:
        Float64 array of K weights summing to K.

    Raises:
        ValueError: for `temperature` <= 0, rows of different lengths, or losses that are not
            finite and positive in the last two rows.

    Examples:
        >>> dwa_weights([[1.0, 1.0], [0.5, 1.0]], temperature=2.0).round(4)
        array([0.8756, 1.1244])
    """
    temperature = check_positive("temperature", temperature)
    history = [np.asarray(row, dtype=np.float64) for row in loss_history]
    if not history:
        raise ValueError("`loss_history` needs at least one epoch to know the number of terms. Received: []")
    terms = history[0].shape
    if any(row.shape != terms or row.ndim != 1 for row in history):
        raise ValueError(
            f"Every epoch of `loss_history` needs one loss per term. Received shapes {[r.shape for r in history]}"
        )
    if len(history) < 2:
        return np.ones(terms, dtype=np.float64)
    previous, before = history[-1], history[-2]
    if not (np.all(np.isfinite(previous)) and np.all(np.isfinite(before)) and np.all(before > 0)):
        raise ValueError(
            f"DWA needs finite losses and positive losses two epochs back. Received: {before} and {previous}"
        )
    ratios = previous / before / temperature
    exponentials = np.exp(ratios - ratios.max())
    return len(ratios) * exponentials / exponentials.sum()


class DynamicWeightAveraging(TermWeightCallback):
    """Dynamic Weight Averaging (Liu et al. 2019): weight terms by how slowly their losses fall.

    Before each epoch the weights become `dwa_weights` of the epoch-average training losses
    of the terms (the unweighted `loss_<term>` logs); a term whose loss fell less in the last
    epoch gets more weight. The first two epochs use weight 1 for every term, as the
    authors' code (lorenmt/mtan) does. The epoch average is Keras' running mean over the
    epoch's samples (mtan averages over batches; equal unless the last batch is partial).

    Args:
        temperature: softmax temperature `T` > 0. Default 2.0 (the paper's value).

    Raises:
        ValueError: for `temperature` <= 0; at an epoch end, naming the term, for a term
            loss that is not finite and positive (the weights divide by it).

    Examples:
        >>> DynamicWeightAveraging(temperature=2.0).temperature
        2.0

    References:
        Liu, Johns, Davison (2019). End-to-end multi-task learning with attention. CVPR.
    """

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.loss_history: list[list[float]] = []

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        self.loss_history = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if not self.loss_history:
            weights = np.ones(len(self.term_names))
        else:
            weights = dwa_weights(self.loss_history, self.temperature)
        for term, weight in zip(self.term_names, weights):
            self.assign(term, float(weight))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        keys = [f"loss_{term}" for term in self.term_names]
        missing = [key for key in keys if key not in logs]
        if missing:
            raise ValueError(
                f"DynamicWeightAveraging needs the term losses {missing} in the epoch logs; found {sorted(logs)}."
            )
        row = [float(logs[key]) for key in keys]
        # The weights divide by these losses: refuse a bad one at the epoch that logged it, by name.
        bad = {term: value for term, value in zip(self.term_names, row) if not (np.isfinite(value) and value > 0)}
        if bad:
            shown = ", ".join(f"{term!r} averaged {value:.6g}" for term, value in bad.items())
            raise ValueError(
                f"DynamicWeightAveraging needs finite, positive term losses (it divides by them); in epoch {epoch} "
                f"{shown}. Shift such a term to be positive (e.g. a FunctionTerm of loss + constant) or weight it "
                "outside DWA."
            )
        self.loss_history.append(row)
        super().on_epoch_end(epoch, logs)


class GradNorm(TermWeightCallback):
    """GradNorm (Chen et al. 2018): learn weights that balance the terms' gradient norms.

    At every training step, with `G_i = ||grad_W w_i L_i||` on the weights `W` of the last
    shared layer, `r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))` (relative inverse training
    rate) and the target `G*_i = mean_j G_j * r_i^alpha` held constant, the weights take one
    Adam step on `L_grad = sum_i |G_i - G*_i|` and are renormalized to sum to the number of
    terms (Algorithm 1 of the paper; the step structure follows LucasBoTang/GradNorm:
    `L(0)` from the first step, the target detached, Adam on the weights). The per-term
    gradients come from a `tf.GradientTape` around Keras' own train step, which also runs
    unchanged: TensorFlow backend only.

    Logs at each epoch end `weight_<term>`, and the epoch means of `grad_norm_<term>` (`G_i`)
    and `grad_norm_target_<term>` (`G*_i`).

    Args:
        alpha: strength of the restoring force, >= 0 (0: equal gradient norms). Default 1.5.
        learning_rate: Adam learning rate of the weights, >= 0. Default 0.025.
        shared_layer: the last shared layer (a layer or its name). Default None: the last
            layer with trainable weights, which is right when all terms sit on one output;
            a multi-output model must name it.

    Raises:
        ValueError: for bad arguments, another backend than TensorFlow, a multi-output model
            without `shared_layer`, a layer without trainable weights, or a term whose loss
            does not depend on the shared layer.

    Examples:
        >>> GradNorm(alpha=0.5).alpha
        0.5

    References:
        Chen, Badrinarayanan, Lee, Rabinovich (2018). GradNorm: gradient normalization for
        adaptive loss balancing in deep multitask networks. ICML.
    """

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, shared_layer: Any = None):
        super().__init__()
        self.alpha = check_non_negative("alpha", alpha)
        self.learning_rate = check_non_negative("learning_rate", learning_rate)
        if shared_layer is not None and not isinstance(shared_layer, (str, keras.layers.Layer)):
            raise ValueError(f"`shared_layer` must be a layer or a layer name. Received: {shared_layer!r}")
        self.shared_layer = shared_layer

    def set_model(self, model) -> None:
        super().set_model(model)
        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"GradNorm needs the TensorFlow backend. Received: {keras.backend.backend()!r}")
        self.shared_weights = self._resolve_shared_weights(model)

    def _resolve_shared_weights(self, model) -> list[Any]:
        layer = self.shared_layer
        if isinstance(layer, str):
            layer = model.get_layer(layer)
        elif layer is None:
            if len(getattr(model, "outputs", None) or []) > 1:
                raise ValueError(
                    "GradNorm needs `shared_layer` (the last layer shared by all outputs) for a multi-output model."
                )
            candidates = [candidate for candidate in model.layers if candidate.trainable_weights]
            if not candidates:
                if not all(candidate.built for candidate in model.layers):
                    raise ValueError(
                        "GradNorm needs the model's layers built to find the last shared layer, and fit builds a "
                        "subclassed model (or a Sequential model without keras.Input) only in its first step: call "
                        "model.build(input_shape) or model(x[:1]) before fit."
                    )
                raise ValueError("GradNorm found no layer with trainable weights in the model.")
            layer = candidates[-1]
        if not layer.trainable_weights:
            raise ValueError(f"The shared layer {layer.name!r} has no trainable weights.")
        self.shared_layer_name = layer.name
        return list(layer.trainable_weights)

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        terms = len(self.term_names)
        self._weight_variables = [self.term_index[t].state.term_weights[t] for t in self.term_names]
        self._initial_losses = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_l0")
        self._started = keras.Variable(0.0, dtype="float32", trainable=False, name="gradnorm_started")
        self._norm_sums = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_norms")
        self._target_sums = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_targets")
        self._steps = keras.Variable(0.0, dtype="float32", trainable=False, name="gradnorm_steps")
        self._optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self._optimizer.build(self._weight_variables)
        wrap_train_step(self.model, self._train_step)

    def on_train_end(self, logs=None) -> None:
        super().on_train_end(logs)
        unwrap_train_step(self.model)

    def _train_step(self, train_step, data):
        import tensorflow as tf  # GradNorm's adapter: per-term gradients on the shared layer

        shared = [weight.value for weight in self.shared_weights]  # the backend's tf.Variables
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(shared)
            logs = train_step(data)
        values = [self.term_index[t].last_term_values[t] for t in self.term_names]
        norms = []
        for term, value in zip(self.term_names, values):
            gradients = tape.gradient(value, shared)
            if all(g is None for g in gradients):
                raise ValueError(
                    f"GradNorm: term {term!r} does not depend on the shared layer {self.shared_layer_name!r}."
                )
            norms.append(ops.sqrt(sum(ops.sum(ops.square(g)) for g in gradients if g is not None)))
        del tape
        self._update(ops.stack([ops.cast(v, "float32") for v in values]), ops.stack(norms))
        return logs

    def _update(self, losses, raw_norms) -> None:
        weights = ops.stack([ops.cast(w, "float32") for w in self._weight_variables])
        first = ops.equal(self._started, 0.0)
        initial = ops.where(first, losses, self._initial_losses)
        self._initial_losses.assign(initial)
        self._started.assign(1.0)
        norms = weights * raw_norms
        ratios = losses / initial
        rates = ratios / ops.mean(ratios)
        targets = ops.stop_gradient(ops.mean(norms) * ops.power(rates, self.alpha))
        # d/dw_i of sum_j |w_j n_j - target_j| with the target held constant.
        gradients = ops.sign(norms - targets) * raw_norms
        self._optimizer.apply([gradients[i] for i in range(len(self._weight_variables))], self._weight_variables)
        updated = ops.maximum(ops.stack([ops.cast(w, "float32") for w in self._weight_variables]), 1e-6)
        updated = updated * (len(self._weight_variables) / ops.sum(updated))
        for i, variable in enumerate(self._weight_variables):
            variable.assign(updated[i])
        self._norm_sums.assign_add(norms)
        self._target_sums.assign_add(targets)
        self._steps.assign_add(1.0)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        for variable in (self._norm_sums, self._target_sums):
            variable.assign(np.zeros(variable.shape))
        self._steps.assign(0.0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is None:
            return
        steps = max(float(ops.convert_to_numpy(self._steps)), 1.0)
        norms = ops.convert_to_numpy(self._norm_sums) / steps
        targets = ops.convert_to_numpy(self._target_sums) / steps
        for term, norm, target in zip(self.term_names, norms, targets):
            logs[f"grad_norm_{term}"] = float(norm)
            logs[f"grad_norm_target_{term}"] = float(target)
