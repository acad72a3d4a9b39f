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
  (the per-term gradients by each backend's own autodiff, `shaping/_backend_gradients.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt._validation import check_non_negative, check_positive
from keras_lossopt.shaping._backend_gradients import values_and_gradient_norms
from keras_lossopt.shaping._keras_model import (
    retrace_steps,
    step_data_and_variables,
    unwrap_train_step,
    wrap_train_step,
)
from keras_lossopt.shaping.tracking import TermWeightCallback

__all__ = ["DynamicWeightAveraging", "GradNorm", "UncertaintyWeighting", "dwa_weights"]

# The logs through which GradNorm's compiled JAX step hands one step's term losses and norms to the host.
_STEP_LOSS, _STEP_NORM = "gradnorm_step_loss_", "gradnorm_step_norm_"


class UncertaintyWeighting(TermWeightCallback):
    """Weights each term by a learned homoscedastic uncertainty (Kendall et al. 2018).

    Adds one trainable log-variance `s_i = log sigma_i^2` per term to the model (through the
    composites' state) and switches the composites to `sum_i exp(-s_i) * L_i + s_i`, the
    form of the authors' Keras example (yaringal/multi-task-learning-example,
    `CustomMultiLossLayer`). For a mean squared error the optimum is `s_i = log MSE_i`, so
    `exp(s_i)` estimates each task's noise variance. The log-variances are trained by the
    model's optimizer, so the callback must see the model before the optimizer is built:
    passing it to `fit` is enough on TensorFlow without a distribution strategy; otherwise
    (also on JAX and PyTorch, whose `fit` builds the optimizer first) call
    `callback.set_model(model)` after `compile` and before `fit`.

    Logs `weight_<term>` (= `exp(-s_i)`) and `log_variance_<term>` at each epoch end.

    Args:
        initial_log_variance: starting `s_i` of every term. Default 0.0 (weight 1).

    Raises:
        ValueError: for reward terms (their loss is unbounded below under this weighting),
            an optimizer already built without the log-variances, or, on JAX, a Sequential
            model that is not built yet.

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
        if keras.backend.backend() == "jax" and isinstance(model, keras.Sequential) and not model.built:
            # The state then hangs under the first layer, and JAX's fit builds that layer after the optimizer was
            # built: the log-variances come out of order with the variables the step was made for.
            raise ValueError(
                "UncertaintyWeighting on JAX needs a built Sequential model: give it a keras.Input, or call "
                "model.build(input_shape) before set_model or fit."
            )
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
                "distribution strategy, or on JAX or PyTorch, fit builds the optimizer before the callbacks see the "
                "model)."
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
    gradients come from a second forward pass at the step's weights (the same dropout draws:
    variable updates inside it are discarded) differentiated by the backend's own autodiff
    (`tf.GradientTape`, `jax.vjp`, `torch.autograd`); Keras' own train step runs unchanged.
    On TensorFlow and PyTorch the weights are updated inside the step; on JAX, whose
    compiled step is a pure function of the model's state, the step hands the term losses
    and norms to the host through its logs and the callback updates the weights between
    steps (so `steps_per_execution` must be 1 there).

    Logs at each epoch end `weight_<term>`, and the epoch means of `grad_norm_<term>` (`G_i`)
    and `grad_norm_target_<term>` (`G*_i`).

    Args:
        alpha: strength of the restoring force, >= 0 (0: equal gradient norms). Default 1.5.
        learning_rate: Adam learning rate of the weights, >= 0. Default 0.025.
        shared_layer: the last shared layer (a layer or its name). Default None: the last
            layer with trainable weights, which is right when all terms sit on one output;
            a multi-output model must name it.

    Raises:
        ValueError: for bad arguments, a multi-output model without `shared_layer`, a layer
            without trainable weights, a term whose loss does not depend on the shared layer
            (on JAX: whose gradient there is zero at the first step), or, on JAX,
            `steps_per_execution` > 1.

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
        self._host_update = keras.backend.backend() == "jax"
        if self._host_update and int(getattr(self.model, "steps_per_execution", 1) or 1) > 1:
            raise ValueError(
                "GradNorm on JAX updates the weights between steps and needs steps_per_execution=1. Received: "
                f"steps_per_execution={self.model.steps_per_execution}"
            )
        self._weight_variables = [self.term_index[t].state.term_weights[t] for t in self.term_names]
        self._initial_losses = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_l0")
        self._started = keras.Variable(0.0, dtype="float32", trainable=False, name="gradnorm_started")
        self._norm_sums = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_norms")
        self._target_sums = keras.Variable(np.zeros(terms), dtype="float32", trainable=False, name="gradnorm_targets")
        self._steps = keras.Variable(0.0, dtype="float32", trainable=False, name="gradnorm_steps")
        self._optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self._optimizer.build(self._weight_variables)
        self._checked_first_step = False
        wrap_train_step(self.model, self._train_step)

    def on_train_end(self, logs=None) -> None:
        super().on_train_end(logs)
        unwrap_train_step(self.model)

    def _term_losses(self, data, state_mapping, shared_values):
        """The unweighted term losses of a forward pass with the shared weights set to `shared_values`."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        mapping = state_mapping + list(zip(self.shared_weights, shared_values))
        # The scope discards what the pass would update (term means, dropout seeds, batch statistics).
        with keras.StatelessScope(state_mapping=mapping):
            y_pred = self.model(x, training=True)
            self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            return [ops.cast(self.term_index[t].last_term_values[t], "float32") for t in self.term_names]

    def _train_step(self, train_step, *arguments):
        data, state_mapping = step_data_and_variables(self.model, arguments)
        step_values = {id(variable): value for variable, value in state_mapping}
        shared = [step_values[id(w)] if id(w) in step_values else w.value for w in self.shared_weights]
        losses, norms = values_and_gradient_norms(lambda points: self._term_losses(data, state_mapping, points), shared)
        for term, norm in zip(self.term_names, norms):
            if norm is None:
                raise ValueError(
                    f"GradNorm: term {term!r} does not depend on the shared layer {self.shared_layer_name!r}."
                )
        result = train_step(*arguments)
        if not self._host_update:
            self._update(losses, ops.stack(norms))
            return result
        logs, state = result
        step_logs = {f"{_STEP_LOSS}{t}": losses[i] for i, t in enumerate(self.term_names)}
        step_logs.update({f"{_STEP_NORM}{t}": norms[i] for i, t in enumerate(self.term_names)})
        return {**logs, **step_logs}, state

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self._host_update or logs is None:
            return
        losses = [logs.pop(f"{_STEP_LOSS}{t}") for t in self.term_names]
        norms = [logs.pop(f"{_STEP_NORM}{t}") for t in self.term_names]
        if not self._checked_first_step:
            self._checked_first_step = True
            flat = [t for t, n in zip(self.term_names, norms) if n == 0.0]
            if flat:
                raise ValueError(
                    f"GradNorm: the gradient of the terms {flat} on the shared layer {self.shared_layer_name!r} is "
                    "zero at the first step: they do not depend on it."
                )
        self.sync_state()  # the step's state back into the variables, so that the next step reads the new weights
        self._update(
            ops.convert_to_tensor(np.asarray(losses, "float32")), ops.convert_to_tensor(np.asarray(norms, "float32"))
        )

    def _update(self, losses, raw_norms) -> None:
        # `.value`: JAX arrays, not Variables, go into the ops (JAX no longer converts objects implicitly).
        weights = ops.stack([ops.cast(w.value, "float32") for w in self._weight_variables])
        first = ops.equal(self._started.value, 0.0)
        initial = ops.where(first, losses, self._initial_losses.value)
        self._initial_losses.assign(initial)
        self._started.assign(1.0)
        norms = weights * raw_norms
        ratios = losses / initial
        rates = ratios / ops.mean(ratios)
        targets = ops.stop_gradient(ops.mean(norms) * ops.power(rates, self.alpha))
        # d/dw_i of sum_j |w_j n_j - target_j| with the target held constant.
        gradients = ops.sign(norms - targets) * raw_norms
        self._optimizer.apply([gradients[i] for i in range(len(self._weight_variables))], self._weight_variables)
        updated = ops.maximum(ops.stack([ops.cast(w.value, "float32") for w in self._weight_variables]), 1e-6)
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
        for key in [key for key in logs if key.startswith((_STEP_LOSS, _STEP_NORM))]:
            del logs[key]  # on JAX the epoch logs are the last step's
        steps = max(float(ops.convert_to_numpy(self._steps)), 1.0)
        norms = ops.convert_to_numpy(self._norm_sums) / steps
        targets = ops.convert_to_numpy(self._target_sums) / steps
        for term, norm, target in zip(self.term_names, norms, targets):
            logs[f"grad_norm_{term}"] = float(norm)
            logs[f"grad_norm_target_{term}"] = float(target)
