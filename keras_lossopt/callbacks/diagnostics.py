"""TrainingDiagnostics: training problems beyond the gradients.

Faults visible before training (`pretraining.check_training_setup`), dead ReLUs and
saturated sigmoid/tanh units are measured on a probe batch the user passes (the callback
sees no training data); loss problems are read from the batch and epoch logs
(`loss_trends.LossTrendDetector`); the learning rate from the optimizer. Causes are
ranked by `causes.rank_causes`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_lossopt._models import activation_name, flat_layers
from keras_lossopt._validation import check_int, check_positive, check_probability
from keras_lossopt.callbacks._training_state import sync_training_state
from keras_lossopt.callbacks.causes import describe_causes, rank_causes
from keras_lossopt.callbacks.findings import (
    REMEDIES,
    Finding,
    format_report,
    learning_rate_of,
)
from keras_lossopt.callbacks.loss_trends import OSCILLATION_THRESHOLD, LossTrendDetector
from keras_lossopt.callbacks.policy import ProblemPolicy
from keras_lossopt.callbacks.pretraining import check_training_setup
from keras_lossopt.callbacks.training_start import TrainingStart, training_start
from keras_lossopt.callbacks.trivial_baseline import trivial_accuracy, trivial_loss

__all__ = ["TrainingDiagnostics"]

_SIGMOID_LIKE = ("sigmoid", "hard_sigmoid")
_TANH_LIKE = ("tanh", "softsign")


def _output_of(layer: Any) -> Any:
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


@keras.saving.register_keras_serializable(package="keras_lossopt")
class TrainingDiagnostics(keras.callbacks.Callback):
    """Detects dead ReLUs, saturated activations, and loss and learning-rate problems.

    Use it next to `GradientMonitor` when a model trains badly and the gradients alone
    do not say why. Each finding (`diagnostics.findings`) carries its evidence, a likely
    cause read off the model, and remedies.

    Checks and their default thresholds:

    * before training (`on_train_begin`, on `probe_x`/`probe_y`, see
      `check_training_setup`): NaN/inf in the batch, the first layer whose forward pass
      at the starting weights is non-finite, input scale, regression target scale, and
      the loss against the output activations (needs `probe_y`);
    * dying_relu: in a hidden layer with a ReLU activation (or a `ReLU` layer), the share
      of units (last axis; a conv channel counts as one unit) that output zero for every
      sample and position of the probe batch is at least `dead_relu_share` (0.7,
      AUTOTRAINER's 70%).
    * saturation: in a hidden layer with a sigmoid/tanh activation, the share of its
      inputs (pre-activations) beyond +-`saturation_input` (5, DeepDiagnosis) is over
      `saturation_share` (0.5, DeepDiagnosis: "over half"). The pre-activation is read
      from the output: |z| > 5 exactly when sigmoid(z) lies outside
      [sigmoid(-5), sigmoid(5)], or |tanh(z)| > tanh(5). Output layers are not
      checked: their activation is the loss' link, and a confident classifier saturates
      it.
    * oscillating_loss: over the last `loss_window` (20) batches, the mean absolute
      batch-to-batch change exceeds `oscillation_threshold` (1.0) times the starting loss,
      the loss has not gone down, and it climbed to 1.5x where it started or above, the start
      taken no lower than the trivial baseline of `probe_y` (the noise guard of
      `LossTrendDetector`: small-batch noise swings around a level that falls or stays at
      the start).
    * stalled_loss: from `stall_steps` (50) batches on, the loss is not below
      `1 - stall_tolerance` (0.99) times the loss at the start, each averaged over enough
      batches for the batch-to-batch noise to be below half the tolerance.
    * stalled_metric: with validation data, the best validation loss of the last 2 epochs
      improves on the best before them by less than 2% per epoch or by no more than twice
      the curve's epoch-to-epoch noise, or a logged validation accuracy gains less than
      0.01 per epoch.
    * A stall is a problem only when the weights moved by less than
      `loss_trends.STILL_STEP_MOVEMENT` (5e-5) x sqrt(steps) of their norm since the start
      (measured, not read off the learning rate) and the training loss is not 3% below its
      start or, with `probe_y`, not 3% below the trivial baseline nor a validation accuracy
      0.05 above the majority share; a plateau after real progress, a task's ceiling, a
      converged run are information.
    * overfitting (information): the validation loss stays above its best for 3 epochs
      while the training loss falls.
    * no_signal (at the end of training): with `probe_y` and at least
      `_learning_signal.SIGNAL_EPOCHS` (7) epochs of validation data, the best validation loss
      is not below `1 - _learning_signal.SIGNAL_MARGIN` (0.97) times the trivial baseline loss
      of the probe targets (the best constant prediction's, `trivial_baseline.trivial_loss`),
      a logged validation accuracy (best mean of 3 consecutive epochs) never beat the majority
      class' share of the probe by 0.05, the weights moved, and the run is not still finding
      signal (its validation loss at its best in the last 2 epochs and below the baseline,
      or its training loss 1 standard error of an epoch's mean below it and its validation
      accuracy not under the majority share): labels shuffled
      against the inputs, or inputs without signal for the labels. From
      `_learning_signal.EARLY_SIGNAL_EPOCHS` (5) epochs on a classifier when, besides, no epoch's
      validation accuracy beat the majority share or the network memorises (see
      `_learning_signal`).
    * learning_rate (information): at the start of training the learning rate is outside
      `lr_range` (1e-6 to 1.0; `lr_range=None` turns this check off). A value is no
      diagnosis (SGD at 2 trains many models): what the steps do is judged by the
      exploding, oscillating and stall rules.

    Both activation checks run on the starting weights (in `on_train_begin`) and at each
    epoch end: a layer dead or saturated from the start is a problem (the
    initialization, the biases or the input scale); one that dies or saturates during
    training, while the run trains, is information (the corpus' healthy sigmoid and
    high-learning-rate ReLU networks do it and still beat their baselines).

    Per-batch losses are recovered from Keras' running epoch mean
    (`loss_k = k * mean_k - (k - 1) * mean_{k-1}`, exact for equal batch sizes).

    Args:
        probe_x: an input batch (array or a structure of arrays the model accepts) for
            the checks before training and the activation checks; `None` (default) skips
            them. Take it from the training data as the model sees it and keep it small
            (64-256 samples). Activation checks need a Sequential or functional model
            (layer outputs); subclassed models skip them.
        probe_y: the targets of `probe_x`, for the target-scale and loss checks before
            training; `None` (default) skips those.
        probe_every_n_steps: also run the activation checks every n steps (besides each
            epoch end); `None` (default) only at epoch ends.
        on_problem: `"warn"` (default), `"stop"`, `"raise"` or a callable taking a
            `Finding`.
        dead_relu_share: default 0.7.
        saturation_share: default 0.5.
        saturation_input: default 5.0.
        loss_window: default 20.
        oscillation_threshold: default 1.0 (`loss_trends.OSCILLATION_THRESHOLD`).
        stall_steps: default 50.
        stall_tolerance: default 0.01.
        lr_range: `(low, high)`, default `(1e-6, 1.0)`; `None` skips the learning rate
            check.

    Raises:
        ValueError: for an invalid argument.

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-50.0)),
        ...     keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> diagnostics = TrainingDiagnostics(probe_x=np.ones((8, 4)), on_problem=lambda f: None)
        >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=1, verbose=0, callbacks=[diagnostics])
        >>> [f.kind for f in diagnostics.findings]
        ['dying_relu']

    References:
        Zhang, Ren, Chen, Zhang, Xiong, Xie, Wu (2021). AUTOTRAINER: An Automatic DNN
        Training Problem Detection and Repair System. ICSE.
        Wardat, Cruz, Le, Rajan (2022). DeepDiagnosis: Automatically Diagnosing Faults
        and Recommending Actionable Fixes in Deep Learning Programs. ICSE.
        Schoop, Huang, Hartmann (2021). UMLAUT: Debugging Deep Learning Programs using
        Program Structure, Model Behavior, and Error Messages. CHI.
    """

    def __init__(
        self,
        probe_x: Any = None,
        probe_y: Any = None,
        probe_every_n_steps: int | None = None,
        on_problem: str | Callable[[Finding], Any] = "warn",
        dead_relu_share: float = 0.7,
        saturation_share: float = 0.5,
        saturation_input: float = 5.0,
        loss_window: int = 20,
        oscillation_threshold: float = OSCILLATION_THRESHOLD,
        stall_steps: int = 50,
        stall_tolerance: float = 0.01,
        lr_range: Sequence[float] | None = (1e-6, 1.0),
    ):
        super().__init__()
        self.probe_x = probe_x
        if probe_y is not None and probe_x is None:
            raise ValueError(
                "`probe_y` needs `probe_x`: pass the inputs of the probe batch too. Received: probe_x=None"
            )
        self.probe_y = probe_y
        self.probe_every_n_steps = (
            None if probe_every_n_steps is None else check_int("probe_every_n_steps", probe_every_n_steps, minimum=1)
        )
        # Validates `on_problem`; the remedies need GradientMonitor's hold on the optimizer.
        self._policy = ProblemPolicy(on_problem, allow_remedies=False)
        self.on_problem = on_problem
        self.dead_relu_share = check_probability("dead_relu_share", dead_relu_share)
        self.saturation_share = check_probability("saturation_share", saturation_share)
        self.saturation_input = check_positive("saturation_input", saturation_input)
        self.loss_window = check_int("loss_window", loss_window, minimum=4)
        self.oscillation_threshold = check_positive("oscillation_threshold", oscillation_threshold)
        self.stall_steps = check_int("stall_steps", stall_steps, minimum=20)
        self.stall_tolerance = check_probability("stall_tolerance", stall_tolerance)
        self.lr_range = _check_lr_range(lr_range)
        self._reset_state()

    def get_config(self) -> dict[str, Any]:
        probe = self.probe_x
        return {
            "probe_x": probe.tolist() if isinstance(probe, np.ndarray) else probe,
            "probe_y": self.probe_y.tolist() if isinstance(self.probe_y, np.ndarray) else self.probe_y,
            "probe_every_n_steps": self.probe_every_n_steps,
            "on_problem": self.on_problem,
            "dead_relu_share": self.dead_relu_share,
            "saturation_share": self.saturation_share,
            "saturation_input": self.saturation_input,
            "loss_window": self.loss_window,
            "oscillation_threshold": self.oscillation_threshold,
            "stall_steps": self.stall_steps,
            "stall_tolerance": self.stall_tolerance,
            "lr_range": None if self.lr_range is None else list(self.lr_range),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainingDiagnostics:
        config = dict(config)
        if isinstance(config.get("probe_x"), list):
            config["probe_x"] = np.asarray(config["probe_x"], dtype="float32")
        if isinstance(config.get("probe_y"), list):
            config["probe_y"] = np.asarray(config["probe_y"])
        return cls(**config)

    def __deepcopy__(self, memo: dict[int, Any]) -> TrainingDiagnostics:
        clone = type(self).from_config(
            {
                **self.get_config(),
                "probe_x": copy.deepcopy(self.probe_x, memo),
                "probe_y": copy.deepcopy(self.probe_y, memo),
            }
        )
        clone.findings = list(self.findings)
        return clone

    def _reset_state(self) -> None:
        self._policy = ProblemPolicy(self.on_problem, allow_remedies=False)
        self.findings: list[Finding] = []
        self.batch_losses: list[float] = []
        self._step = 0
        self._start_step = 0
        self._epoch_start = 0
        self._previous_mean: float | None = None
        self._seen: set[tuple[str, tuple[str, ...]]] = set()
        self._probe_model = None
        self._probe_layers: list[tuple[Any, str]] = []
        self._start: TrainingStart | None = None
        self._trends = LossTrendDetector(
            window=self.loss_window,
            oscillation_threshold=self.oscillation_threshold,
            stall_steps=self.stall_steps,
            stall_tolerance=self.stall_tolerance,
            weight_change=self._weight_change,
        )

    def _weight_change(self) -> float | None:
        if self._start is None or self.model is None:
            return None
        return self._start.moved(self.model)

    # -- callback hooks ------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._reset_state()
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            self._step = int(keras.ops.convert_to_numpy(optimizer.iterations))
            self._epoch_start = self._step
        self._start_step = self._step
        self._start = training_start(self.model, None if self.params is None else id(self.params))
        if self.probe_x is not None:
            setup = check_training_setup(self.model, self.probe_x, self.probe_y)
            self._start.setup_findings.extend(setup)
            for finding in setup:
                self._handle(finding)
            self._start.ensure_captured()  # the checks' forward pass built a subclassed model
            if self.probe_y is not None:
                self._trends.baseline_loss, self._trends.baseline_accuracy = _probe_baselines(
                    self.model, self.probe_x, self.probe_y
                )
        lr = learning_rate_of(optimizer)
        if self.lr_range is not None and lr is not None:
            low, high = self.lr_range
            if not low <= lr <= high:
                self._report("learning_rate", (), {"learning_rate": lr, "low": low, "high": high}, "information")
        self._build_probe()
        self._check_activations(at_start=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step
        self._previous_mean = None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        k = int(batch) + 1
        self._step = self._epoch_start + k
        self._start.ensure_captured()
        mean = logs.get("loss")
        if mean is not None:
            mean = float(mean)
            previous = self._previous_mean if self._previous_mean is not None else 0.0
            loss = k * mean - (k - 1) * previous if k > 1 else mean
            self.batch_losses.append(loss)
            self._previous_mean = mean
            if self._step - 1 == self._start.step and self._start.first_loss is None:
                self._start.first_loss = loss  # the loss of the starting weights
            for finding in self._trends.update(self._step - 1, loss):
                self._report(finding.kind, finding.layers, dict(finding.evidence), finding.severity)
        if self.probe_every_n_steps and self._step % self.probe_every_n_steps == 0:
            self._check_activations()

    def on_epoch_end(self, epoch, logs=None):
        self._check_activations()
        for finding in self._trends.update_epoch(self._step - 1, logs or {}):
            self._report(finding.kind, finding.layers, dict(finding.evidence), finding.severity)

    def on_train_end(self, logs=None):
        for finding in self._trends.finish(self._step - 1):
            self._report(finding.kind, finding.layers, dict(finding.evidence), finding.severity)

    # -- checks --------------------------------------------------------------------------

    def _build_probe(self) -> None:
        if self.probe_x is None:
            return
        watched = []
        outputs = {id(t) for t in keras.tree.flatten(getattr(self.model, "outputs", None) or [])}
        for layer in flat_layers(self.model):
            name = activation_name(layer)
            if name in ("relu", *_SIGMOID_LIKE, *_TANH_LIKE) and id(_output_of(layer)) not in outputs:
                watched.append((layer, name))
        if not watched:
            return
        try:
            outputs = [layer.output for layer, _ in watched]
            inputs = self.model.inputs
            self._probe_model = keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs)
        except (AttributeError, ValueError, TypeError):
            # Subclassed models have no symbolic layer outputs: no activation checks.
            self._probe_model = None
            return
        self._probe_layers = watched

    def _check_activations(self, at_start: bool = False) -> None:
        if self._probe_model is None:
            return
        severity = "problem" if at_start else "information"
        # Mid-epoch on JAX the probe model's (shared) variables hold the fit's weights only after a sync.
        sync_training_state(self.model)
        outputs = self._probe_model(self.probe_x, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        dead_layers, dead_evidence = [], {}
        saturated_layers, saturated_evidence = [], {}
        for (layer, name), out in zip(self._probe_layers, outputs):
            a = np.asarray(keras.ops.convert_to_numpy(out), dtype="float64")
            if name == "relu":
                units = a.reshape(-1, a.shape[-1])
                dead = float(np.mean(np.all(units <= 0, axis=0)))
                if dead >= self.dead_relu_share:
                    dead_layers.append(layer.name)
                    dead_evidence[f"{layer.name}.dead_share"] = dead
            else:
                share = self._saturated_share(a, name)
                if share > self.saturation_share:
                    saturated_layers.append(layer.name)
                    saturated_evidence[f"{layer.name}.saturated_share"] = share
        if dead_layers:
            self._report(
                "dying_relu", tuple(dead_layers), {**dead_evidence, "threshold": self.dead_relu_share}, severity
            )
        if saturated_layers:
            self._report(
                "saturation",
                tuple(saturated_layers),
                {**saturated_evidence, "threshold": self.saturation_share, "input_beyond": self.saturation_input},
                severity,
            )

    def _saturated_share(self, a: np.ndarray, name: str) -> float:
        z = self.saturation_input
        if name in _SIGMOID_LIKE:
            if name == "hard_sigmoid":
                # keras' hard_sigmoid is relu6(x + 3) / 6: flat beyond +-3, so +-5 maps to 0/1.
                return float(np.mean((a <= 0.0) | (a >= 1.0)))
            low = 1.0 / (1.0 + math.exp(z))
            return float(np.mean((a < low) | (a > 1.0 - low)))
        if name == "softsign":
            edge = z / (1.0 + z)
        else:
            edge = math.tanh(z)
        return float(np.mean(np.abs(a) > edge))

    # -- acting --------------------------------------------------------------------------

    def _report(
        self, kind: str, layers: tuple[str, ...], evidence: dict[str, float], severity: str = "problem"
    ) -> None:
        key = (kind, layers)
        if key in self._seen:
            return
        self._seen.add(key)
        # 0-based index of the last finished step, like GradientMonitor's findings.
        step = max(self._step - 1, self._start_step)
        causes = rank_causes(kind, self.model, layers, start=self._start, step=step)
        cause, remedy = describe_causes(causes)
        finding = Finding(
            kind=kind,
            step=step,
            layers=layers,
            evidence=evidence,
            cause=cause,
            remedy=remedy or REMEDIES[kind],
            causes=tuple(causes),
            severity=severity,
        )
        self._handle(finding)

    def _handle(self, finding: Finding) -> None:
        self._policy.handle(finding, self.model, self.findings.append)

    def report(self) -> str:
        """A readable summary of the findings."""
        lines = [f"Watched {len(self.batch_losses)} batches."]
        if self.probe_x is None:
            lines.append(
                "No probe batch given: the checks before training and the activation checks (dead ReLU, "
                "saturation) were skipped."
            )
        elif self.probe_y is None:
            lines.append("No probe targets given: the target-scale and loss checks before training were skipped.")
        elif self._probe_model is None and self.model is not None:
            lines.append("Activation checks skipped (no ReLU/sigmoid/tanh layer, or a subclassed model).")
        return format_report("Training diagnostics report", self.findings, lines)


def _probe_baselines(model: keras.Model, probe_x: Any, probe_y: Any) -> tuple[float | None, float | None]:
    """The trivial baseline loss and accuracy on the probe targets (single-output models with a known size)."""
    loss = getattr(model, "loss", None)
    try:
        outputs = [output.shape for output in model.outputs]
    except (AttributeError, ValueError):  # a subclassed model declares no outputs: what its call returns
        outputs = [keras.ops.shape(out) for out in keras.tree.flatten(model(_first(probe_x), training=False))]
    if loss is None or len(outputs) != 1 or outputs[0][-1] is None:
        return None, None
    units = int(outputs[0][-1])
    value = trivial_loss(loss, probe_y, units)
    return (value if value is not None and value > 0 else None), trivial_accuracy(probe_y, units)


def _first(x: Any) -> Any:
    """The first sample of every input of `x`, with its batch axis."""
    return keras.tree.map_structure(lambda array: array[:1], x)


def _check_lr_range(lr_range: Any) -> tuple[float, float] | None:
    """`(low, high)` as floats with 0 < low < high, or None (no learning rate check)."""
    if lr_range is None:
        return None
    wanted = "`lr_range` must be (low, high) with 0 < low < high, or None to skip the learning rate check."
    if isinstance(lr_range, (str, bytes)) or not isinstance(lr_range, Sequence) or len(lr_range) != 2:
        raise TypeError(f"{wanted} Received: lr_range={lr_range!r}")
    try:
        low, high = float(lr_range[0]), float(lr_range[1])
    except (TypeError, ValueError):
        raise TypeError(f"{wanted} Received: lr_range={lr_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"{wanted} Received: lr_range={lr_range!r}")
    return low, high
