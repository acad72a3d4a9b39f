"""GradientMonitor: per-layer statistics of the gradients the optimizer really applies.

The callback wires three parts together and writes what they produce (history, logs,
TensorBoard, report, plot):

* `_optimizer_hook.OptimizerHook` wraps the optimizer's `apply` (no second forward or
  backward pass; works inside `tf.function`, under `jit_compile=True`, `MirroredStrategy`
  and mixed precision) and switches between the recording and the plain train function;
  `_recorder.GradientRecorder` computes the statistics in the train step and keeps the
  last good weights;
* `detection.GradientDetector` finds vanishing, exploding and non-finite gradients in the
  records, in NumPy;
* `policy.ProblemPolicy` acts on what is found (warn, stop, raise, a callable, restore,
  clip, reduce the learning rate).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_lossopt._validation import check_int
from keras_lossopt.callbacks._optimizer_hook import OptimizerHook
from keras_lossopt.callbacks._plots import plot_gradient_history
from keras_lossopt.callbacks._recorder import GradientRecorder
from keras_lossopt.callbacks._tensorboard import write_gradient_row
from keras_lossopt.callbacks._training_state import sync_training_state
from keras_lossopt.callbacks.causes import describe_causes, rank_causes
from keras_lossopt.callbacks.detection import RULE_ARGUMENTS, GradientDetector, checked_rule_arguments
from keras_lossopt.callbacks.findings import Finding, TrainingProblemError, format_report
from keras_lossopt.callbacks.gradient_history import GradientHistory
from keras_lossopt.callbacks.loss_fit import loss_family
from keras_lossopt.callbacks.policy import ProblemPolicy
from keras_lossopt.callbacks.training_start import TrainingStart, training_start

__all__ = ["GradientMonitor"]


@keras.saving.register_keras_serializable(package="keras_lossopt")
class GradientMonitor(keras.callbacks.Callback):
    """Watches the real training gradients per layer, detects problems and acts on them.

    Use it while developing a model, to see whether gradients vanish in the early layers
    of a deep stack, explode, or turn NaN; and in long runs with `on_problem="clip"`,
    `"reduce_lr"` or `"stop"` as a safety net. It reads the gradients the optimizer
    applies (no extra backward pass), so it costs a fraction of the naive extra
    `GradientTape` pass. A recorded step costs a few passes over the parameters (about
    0.3 ms for a 57k-parameter CNN on one CPU thread, +7% of its step at batch 64, less at
    larger batches and models); with `every_n_steps=10` the other steps run Keras' plain
    step (measured in docs/benchmarks.md).

    Each recorded step gives, per layer (all variables of a layer together) and over the
    whole model: the gradient L2 norm (before and after the optimizer's clipping), the
    largest absolute entry, the share of non-finite entries, and the update-to-weight
    ratio ||w_after - w_before|| / ||w_before|| of the real update. The statistics are
    computed inside the train step into a small buffer, which the host reads every
    `detect_every_n_steps` steps, at the end of each epoch and of training, and at once
    when the loss turns non-finite; detection and actions run at those reads, on every
    record since the previous one. The records are kept in `monitor.history`; the
    latest global norm (`grad_norm`) and update ratio (`update_ratio`) go into the
    batch `logs` at each read and, averaged over the epoch's recorded steps (plus
    `grad_norm_max`), into the epoch `logs`, where `History`, `CSVLogger` and
    keras-tuner see them.

    Detection (`detection.GradientDetector`; a problem must persist for `patience`
    consecutive recorded steps, except non-finite values, which act at the next read;
    each kind is reported once per run, except what a remedy acts on: `"clip"` and
    `"reduce_lr"` act again when any problem is found anew, `"restore"` when non-finite
    values come back):

    * vanishing: a layer's norm below `vanishing_ratio` times the last layer's
      (AUTOTRAINER's test, 1e-3), or the global norm below `vanishing_floor` on a batch
      not already fit (loss at least 1% of the first), for the same layer in
      `vanishing_share` of the last `growth_window` records (batch-size-1 noise is not);
    * exploding: the global norm above `exploding_norm` (a regression: times the larger of
      sqrt(first loss) and the first norm, or the square root alone while growing 100x), or
      above the larger of the last `growth_window` records' median and the first norm by
      `exploding_growth` and 4 robust standard deviations of their log10 (its own noise);
    * non_finite: a NaN/inf gradient entry, NaN/inf weights, or a NaN/inf loss in the
      batch logs. The loss is checked at every step; a NaN gradient on a step that is
      not recorded is found through the weights it spoils (their norm is part of every
      record, and they are checked once more at the end of training). A NaN that leaves
      neither the loss nor the weights non-finite is only seen on recorded steps.

    Actions (`on_problem`, `policy.ProblemPolicy`): `"warn"` issues a
    `TrainingProblemWarning`; `"stop"` sets `model.stop_training`; `"raise"` raises
    `TrainingProblemError`; a callable receives the `Finding`; `"restore"` only acts on
    non-finite values (below) and warns on the rest; `"clip"` turns on
    `global_clipnorm=clip_norm` in the optimizer (the train function is re-traced once);
    `"reduce_lr"` multiplies the learning rate by `lr_factor`, not below `min_lr`. On
    non-finite values the monitor first restores the last good weights: those before
    the last recorded step whose weights and gradients were all finite, with a global
    gradient norm at most `exploding_norm`, among the steps that are multiples of the
    smallest multiple of `every_n_steps` not below 10; else the starting weights, if they
    are finite. When no finite weights were kept it restores nothing and says so in the
    finding's action. With `"restore"`, `"clip"` or `"reduce_lr"` it also resets
    non-finite optimizer slots and the epoch's loss mean, applies the remedy and trains
    on; otherwise it stops training. When the very first step of the run is already
    non-finite (the loss of the starting weights, or the first gradients), it restores
    nothing, applies no remedy and stops: a lower learning rate or clipping cannot help,
    and the finding names the starting point as the cause.

    Causes (`causes.rank_causes`, in each finding's `causes`, strongest first): the checks
    `TrainingDiagnostics(probe_x=, probe_y=)` made before training, the initial weight
    scale (captured at the start of the run), the learning rate measured as the median
    relative update of the records before the finding, and the model's structure.

    Args:
        every_n_steps: record every n-th optimizer step. Default 1.
        on_problem: `"warn"` (default), `"stop"`, `"raise"`, `"restore"`, `"clip"`,
            `"reduce_lr"` or a callable taking a `Finding`.
        patience: recorded steps a vanishing/exploding condition must last. Default 2.
        vanishing_ratio: layer-to-last-layer norm ratio below which a layer's gradient
            vanishes. Default 1e-3 (AUTOTRAINER).
        vanishing_floor: global norm below which all gradients vanish. Default 1e-7.
        exploding_norm: global norm ceiling. Default 1e3.
        exploding_growth: the smallest growth factor over the median norm of the
            previous `growth_window` records that counts. Default 1e3.
        growth_window: records the noise guards look back over (growth reference, share
            of vanishing records). Default 20.
        clip_norm: the global norm `"clip"` sets. Default 1.0.
        lr_factor: factor `"reduce_lr"` applies, in (0, 1). Default 0.1.
        min_lr: floor of `"reduce_lr"`. Default 1e-6.
        log_dir: if given, TensorBoard scalars (global and per-layer norms, update
            ratios) and histograms (the distribution of the per-layer norms and update
            ratios across layers) are written there at each recorded step; the writer
            opens at the first record and needs no tensorboard package (it writes
            through TensorFlow's summary writer: TensorFlow must be installed, also
            on JAX and torch). Default None.
        detect_every_n_steps: how often, in optimizer steps, the host reads the records
            and runs detection (also at each epoch end and at once on a non-finite loss).
            Default 16: a finding comes at most 15 steps after its step, for a tenth of
            the host cost of reading at every step; 1 reacts at the step itself.
        vanishing_share: share of the last `growth_window` records in which the same layer
            must vanish, in (0, 1]. Default 0.8 (`detection.GradientDetector`).

    Attributes:
        history: a `GradientHistory`.
        findings: list of `Finding` records.
        restored_step: after a non-finite finding, the step whose pre-update weights
            were restored (-1: the starting weights); None when nothing was restored
            (no finite weights were kept).

    Raises:
        ValueError: for an invalid argument (at construction), or when the model has no
            optimizer (at the start of training).

    Examples:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> monitor = GradientMonitor(every_n_steps=2)
        >>> _ = model.fit(np.ones((16, 4)), np.ones((16, 1)), batch_size=4, epochs=1, verbose=0,
        ...               callbacks=[monitor])
        >>> monitor.history.grad_norm.shape, monitor.history.steps.tolist()
        ((2, 2), [0, 2])

    References:
        Zhang, Ren, Chen, Zhang, Xiong, Xie, Wu (2021). AUTOTRAINER: An Automatic DNN
        Training Problem Detection and Repair System. ICSE.
        Wardat, Cruz, Le, Rajan (2022). DeepDiagnosis: Automatically Diagnosing Faults
        and Recommending Actionable Fixes in Deep Learning Programs. ICSE.
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        on_problem: str | Callable[[Finding], Any] = "warn",
        patience: int = 2,
        vanishing_ratio: float = 1e-3,
        vanishing_floor: float = 1e-7,
        exploding_norm: float = 1e3,
        exploding_growth: float = 1e3,
        growth_window: int = 20,
        clip_norm: float = 1.0,
        lr_factor: float = 0.1,
        min_lr: float = 1e-6,
        log_dir: str | None = None,
        detect_every_n_steps: int = 16,
        vanishing_share: float = 0.8,
    ):
        super().__init__()
        self.every_n_steps = check_int("every_n_steps", every_n_steps, minimum=1)
        policy = ProblemPolicy(on_problem, clip_norm=clip_norm, lr_factor=lr_factor, min_lr=min_lr)
        self.on_problem = on_problem
        vars(self).update(
            checked_rule_arguments(
                patience=patience,
                vanishing_ratio=vanishing_ratio,
                vanishing_floor=vanishing_floor,
                vanishing_share=vanishing_share,
                exploding_norm=exploding_norm,
                exploding_growth=exploding_growth,
                growth_window=growth_window,
            )
        )
        self.clip_norm, self.lr_factor, self.min_lr = policy.clip_norm, policy.lr_factor, policy.min_lr
        self.log_dir = None if log_dir is None else str(log_dir)
        self.detect_every_n_steps = check_int("detect_every_n_steps", detect_every_n_steps, minimum=1)
        self._reset_state()

    # -- configuration -------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "every_n_steps": self.every_n_steps,
            "on_problem": self.on_problem,
            **self._rule_arguments(),
            "clip_norm": self.clip_norm,
            "lr_factor": self.lr_factor,
            "min_lr": self.min_lr,
            "log_dir": self.log_dir,
            "detect_every_n_steps": self.detect_every_n_steps,
        }

    def _rule_arguments(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RULE_ARGUMENTS}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GradientMonitor:
        return cls(**config)

    def __deepcopy__(self, memo: dict[int, Any]) -> GradientMonitor:
        # keras-tuner copies callbacks per trial: a copy is a fresh monitor with the same
        # settings plus copies of what was recorded, never a copy of the model.
        clone = type(self).from_config(copy.deepcopy(self.get_config(), memo))
        clone.history = copy.deepcopy(self.history, memo)
        clone.findings = list(self.findings)
        return clone

    # -- state ---------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.history = GradientHistory()
        self.findings: list[Finding] = []
        self._hook: OptimizerHook | None = None
        self._recorder: GradientRecorder | None = None
        self._detector: GradientDetector | None = None
        self._policy: ProblemPolicy | None = None
        self._writer = None
        self._steps_done = 0
        self._epoch_start = 0
        self._epoch_blocks: list[dict[str, np.ndarray]] = []
        self._stopped_reason: str | None = None
        self.restored_step: int | None = None
        self._last_read_step = -1
        self._read_at = 0
        self._start: TrainingStart | None = None
        self._batch_losses, self._previous = {}, (-1, 0.0)  # step -> batch loss until read; (batch, running mean)

    # -- callback hooks ------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._reset_state()
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError("GradientMonitor needs a compiled model: call `model.compile(optimizer=...)` first.")
        strategy = model.distribute_strategy if keras.backend.backend() == "tensorflow" else None
        # The buffer holds the records of one read interval, also when one call of the
        # train function runs several steps.
        steps_per_call = int(getattr(model, "steps_per_execution", 1) or 1)
        interval = max(self.detect_every_n_steps, steps_per_call) + steps_per_call
        self._policy = ProblemPolicy(
            self.on_problem, clip_norm=self.clip_norm, lr_factor=self.lr_factor, min_lr=self.min_lr
        )
        # The model as it is now, shared with TrainingDiagnostics: causes name the initial
        # weights, never those after a divergence. Callbacks of one fit share `params`.
        self._start = training_start(model, None if self.params is None else id(self.params))
        hook = OptimizerHook(model, strategy)
        recorder = GradientRecorder(
            model,
            hook.add_variable,
            self.every_n_steps,
            good_norm=self.exploding_norm,
            records=-(-interval // self.every_n_steps) + 1,
            clipping=hook.clipping,
            step_dtype=hook.optimizer.iterations.dtype,
        )
        hook.install(recorder)
        self._hook, self._recorder = hook, recorder
        if model.trainable_variables:
            # Models built before fit get their variables now; unbuilt subclassed models
            # get them in the first trace of the train step.
            hook.ensure_variables()
            recorder.keep_starting_weights()
        self._detector = GradientDetector(
            [name for name, _ in recorder.groups],
            **self._rule_arguments(),
            repeat=[kind for kind in ("non_finite", "vanishing", "exploding") if self._policy.repeats(kind)],
        )
        self._steps_done = int(keras.ops.convert_to_numpy(hook.optimizer.iterations))
        self._epoch_start = self._read_at = self._steps_done
        hook.build_train_functions()

    def on_train_batch_begin(self, batch, logs=None):
        if self._hook is not None:
            self._hook.use_train_function((self._epoch_start + int(batch)) % self.every_n_steps == 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._steps_done
        self._epoch_blocks = []
        self._previous = (-1, 0.0)  # Keras' running mean of the epoch's loss, before its first batch

    def on_train_batch_end(self, batch, logs=None):
        if self._hook is None:
            return
        logs = logs if logs is not None else {}
        self._steps_done = self._epoch_start + int(batch) + 1
        loss = logs.get("loss")
        loss_finite = loss is None or math.isfinite(float(loss))
        if loss is not None and batch > self._previous[0]:  # from Keras' running mean: the mean loss of
            (seen, mean), self._previous = self._previous, (int(batch), float(loss))  # the steps since then
            self._batch_losses[self._steps_done - 1] = ((batch + 1) * float(loss) - (seen + 1) * mean) / (batch - seen)
        if loss is not None and self._steps_done - 1 == self._start.step:
            if self._start.first_loss is None:
                self._start.first_loss = float(loss)  # the loss of the starting weights
            loss_fn = getattr(self.model, "loss", None)
            regression = loss_fn is not None and loss_family(loss_fn)[0] == "regression"
            if regression and math.isfinite(self._start.first_loss):
                # A regression's gradients scale with its errors, sqrt(loss) for squared
                # errors: targets in natural units start with errors (and gradients) in the
                # thousands and train fine. Cross-entropy's output gradient is bounded by 1.
                self._detector.loss_scale = max(1.0, math.sqrt(abs(self._start.first_loss)))
                self._detector.scale_with_start = True  # and with its first norm: the model's gain
        findings_before = len(self.findings)
        if not loss_finite or self._steps_done - self._read_at >= self.detect_every_n_steps:
            block = self._read_records()
            if block is not None:
                logs["grad_norm"] = float(block["grad_norm"][-1, -1])
                logs["update_ratio"] = float(block["update_ratio"][-1, -1])
        if not loss_finite and not any(f.kind == "non_finite" for f in self.findings[findings_before:]):
            finding = self._detector.report_non_finite(self._steps_done - 1, {"loss": float(loss)})
            if finding is not None:
                self._handle(finding)

    def _read_records(self) -> dict[str, np.ndarray] | None:
        """Reads the records made since the last read, adds them to the history, detects.

        The host reads the statistics every `detect_every_n_steps` steps, not at every
        recorded step: one read and the bookkeeping in Python cost about as much as the
        recording itself on a small model.
        """
        self._read_at = self._steps_done
        # On JAX the variables hold the fit's values only after a sync; the detection and
        # the actions that may follow read and write them.
        sync_training_state(self._hook.model)
        n = self.every_n_steps
        last_recorded = (self._steps_done - 1) // n * n
        if last_recorded <= self._last_read_step or not self._recorder.ready:
            return None
        steps, grad_stats, update_stats = self._recorder.read(after=self._last_read_step)
        if len(steps) == 0:
            return None
        names = tuple(name for name, _ in self._recorder.groups)
        if self.history.layers != names and len(self.history) == 0:
            # An unbuilt model's layers are known from the first trace on.
            self.history = GradientHistory(names)
            self._detector.layers = names
        self._last_read_step = int(steps[-1])
        block = self.history.extend(steps, grad_stats, update_stats)
        self._start.record_updates(steps, block["update_ratio"][:, -1])
        self._epoch_blocks.append(block)
        for i, step in enumerate(steps):
            self._write_tensorboard(int(step), {key: value[i] for key, value in block.items()})
        losses = np.array([self._batch_losses.get(int(step), np.nan) for step in steps], dtype="float64")
        self._batch_losses = {s: v for s, v in self._batch_losses.items() if s > self._last_read_step}
        for finding in self._detector.update(steps, {**block, "loss": losses}):
            self._handle(finding)
        return block

    def on_epoch_end(self, epoch, logs=None):
        if self._hook is not None:
            self._read_records()
        if logs is None or self._hook is None:
            return
        if not self._epoch_blocks:
            # No recorded step in this epoch: keep the keys (NaN) so CSVLogger's columns stay.
            logs.update(grad_norm=float("nan"), grad_norm_max=float("nan"), update_ratio=float("nan"))
            return
        norms = np.concatenate([b["grad_norm"][:, -1] for b in self._epoch_blocks])
        ratios = np.concatenate([b["update_ratio"][:, -1] for b in self._epoch_blocks])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            logs["grad_norm"] = float(np.nanmean(norms)) if np.isfinite(norms).any() else float("nan")
            logs["grad_norm_max"] = float(np.max(norms))
            logs["update_ratio"] = float(np.nanmean(ratios)) if np.isfinite(ratios).any() else float("nan")

    def on_train_end(self, logs=None):
        if self._hook is not None:
            self._read_records()
            self._check_final_weights()
        self._detach()

    def _check_final_weights(self) -> None:
        """Finds a NaN that arrived after the last recorded step (read once, on the host)."""
        if not self._recorder.ready or self._stopped_reason == "non_finite":
            return  # training already stopped on non-finite values: the weights say nothing new
        layers = self._recorder.nonfinite_groups()
        if layers:
            finding = self._detector.report_non_finite(
                self._steps_done - 1, {"layers_with_nonfinite_weights": len(layers)}, layers
            )
            if finding is not None:
                self._handle(finding)

    def _detach(self) -> None:
        if self._hook is not None:
            # Stopped by an error mid-epoch on JAX: the state still holds the recorder's
            # variables, which must reach them before they leave the optimizer's list.
            sync_training_state(self._hook.model)
            self._hook.remove()
            self._hook = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    # -- acting --------------------------------------------------------------------------

    def _handle(self, finding: Finding) -> None:
        sync_training_state(self._hook.model)  # the actions write variables the next step reads
        causes = rank_causes(finding.kind, self.model, finding.layers, start=self._start, step=finding.step)
        cause, remedy = describe_causes(causes)
        finding = dataclasses.replace(finding, cause=cause, remedy=remedy or finding.remedy, causes=tuple(causes))
        try:
            done = self._policy.handle(finding, self.model, self.findings.append, _Remedies(self))
        except TrainingProblemError:
            self._detach()
            raise
        if done.stopped_training:
            self._stopped_reason = done.kind

    # -- output --------------------------------------------------------------------------

    def _write_tensorboard(self, step: int, row: dict[str, np.ndarray]) -> None:
        if self.log_dir is None:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        write_gradient_row(self._writer, step, row, self.history.layers)

    def report(self) -> str:
        """A readable summary of the run: recorded steps, per-layer norms, findings."""
        lines = self.history.summary_lines(self.every_n_steps)
        if self._stopped_reason:
            lines.append(f"Training was stopped ({self._stopped_reason}).")
        return format_report("Gradient monitor report", self.findings, lines)

    def plot(self, figsize: tuple[float, float] = (9.0, 7.0)):
        """A matplotlib figure: per-layer norms (heatmap), global norm, update ratio.

        Returns:
            A `matplotlib.figure.Figure`.

        Raises:
            ImportError: when matplotlib is not installed (the `[plot]` extra).
        """
        return plot_gradient_history(self.history, [finding.step for finding in self.findings], figsize)


class _Remedies:
    """What the problem policy may do to the run of a `GradientMonitor`."""

    def __init__(self, monitor: GradientMonitor):
        self._monitor = monitor

    def restore_weights(self) -> str:
        monitor = self._monitor
        step = monitor._recorder.restore_last_good_weights()
        monitor.restored_step = step
        if step is None:
            return "no finite weights to restore (none were kept before the problem)"
        return f"restored the weights from before step {step}" if step >= 0 else "restored the starting weights"

    def reset_optimizer_state(self) -> None:
        self._monitor._hook.reset_nonfinite_optimizer_state()

    def turn_on_clipping(self, clip_norm: float) -> bool:
        return self._monitor._hook.turn_on_global_clipnorm(clip_norm)

    def fails_from_the_start(self, finding: Finding) -> bool:
        start = self._monitor._start
        if start is None:
            return False
        first_loss_bad = start.first_loss is not None and not math.isfinite(start.first_loss)
        return first_loss_bad or finding.step <= start.step
