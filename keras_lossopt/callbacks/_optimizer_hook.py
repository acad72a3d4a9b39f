"""The one place where `GradientMonitor` relies on Keras behaviour that is not public API.

`OptimizerHook` is a small adapter around three such behaviours, so that a Keras release
that changes one of them breaks this module only:

* the patched `apply`: `BaseOptimizer.apply(grads, trainable_variables)` is the one method
  through which every Keras 3 backend passes the real training gradients (on JAX,
  `apply_gradients` is bypassed by `stateless_apply`, which still calls `apply`). The hook
  wraps the bound method on the optimizer *instance* (never the class): no second forward
  or backward pass, and nothing changes for other optimizers or after `remove()`;
* the optimizer's variable list: the recorder's variables are created with
  `optimizer.add_variable`, because JAX's stateless training step drops writes to any
  other variable, and are taken out of `optimizer._variables` again at the end of the run,
  so that checkpoints saved afterwards neither carry nor expect them;
* the train-function switch: Keras' fit loop reads `model.train_function` at every step,
  so the hook can trace two functions (one that records at every call, and the plain Keras
  step) and choose one per step; the hook's `mode`, read while the step is traced, says
  which one is being traced. With `steps_per_execution > 1` there is one function, whose
  `cond`s on `optimizer.iterations` skip the recording at non-recorded steps.

Under a `LossScaleOptimizer` the hook wraps the inner optimizer, which receives the
unscaled gradients (and is not called at all on the steps the loss scale skips).
Under `tf.distribute` the wrapper runs in a replica context with the per-replica
gradients; the recording runs in a `merge_call` (cross-replica context, as
`LossScaleOptimizer` does), where it sums them across replicas itself, so the statistics
describe the reduced gradients that update the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossopt.callbacks._recorder import GradientRecorder, value_now

__all__ = ["OptimizerHook"]


class OptimizerHook:
    """Wraps `optimizer.apply` of one model so that a `GradientRecorder` sees each step.

    Args:
        model: the compiled model; its optimizer (a `LossScaleOptimizer` is unwrapped) is
            hooked.
        strategy: the model's `tf.distribute` strategy (variables are created in its
            scope), or None.

    Attributes:
        optimizer: the optimizer whose `apply` is wrapped.
        recorder: the `GradientRecorder` called from the wrapped `apply` (set by
            `install`).
        mode: `"always"` (record at every call), `"off"` (the plain step) or `"cond"`
            (decide in the graph); read while a train function is traced.
    """

    def __init__(self, model: Any, strategy=None):
        self.model = model
        inner = model.optimizer
        while isinstance(inner, keras.optimizers.LossScaleOptimizer):
            inner = inner.inner_optimizer
        self.optimizer = inner
        self.strategy = strategy
        self.recorder: GradientRecorder | None = None
        self.mode = "cond"
        self._created: list[Any] = []
        self._original = None
        self._record_function = self._plain_function = None

    # -- the optimizer's variables -------------------------------------------------------

    def add_variable(self, shape, dtype, name, initializer="zeros"):
        """A variable the train step may write on every backend (created by the optimizer)."""
        if not isinstance(initializer, str):
            initializer = keras.initializers.Constant(initializer)
        with self.strategy.scope() if self.strategy is not None else _null_scope():
            variable = self.optimizer.add_variable(
                shape, initializer=initializer, dtype=dtype, aggregation="only_first_replica", name=f"monitor_{name}"
            )
        self._created.append(variable)
        return variable

    def ensure_variables(self, trainable_variables: Sequence[Any] | None = None) -> None:
        """(Re)creates the recorder's variables when the model has variables it does not know.

        Called eagerly at the start of training, and again from the first trace of the
        train step for models (subclassed, no input shape) whose variables only exist
        once the model has been called; TensorFlow allows variable creation there, like
        the optimizer's own slots.
        """
        if self.recorder.needs_variables(trainable_variables):
            self._untrack()
            self.recorder.create_variables()

    def _untrack(self) -> None:
        tracked = getattr(self.optimizer, "_variables", None)
        if isinstance(tracked, list) and self._created:
            ids = {id(v) for v in self._created}
            for index in reversed([i for i, v in enumerate(tracked) if id(v) in ids]):
                tracked.pop(index)
        self._created = []

    def reset_nonfinite_optimizer_state(self) -> None:
        """Zeroes the optimizer's own float variables (slots) that hold a NaN or inf."""
        ours = {id(v) for v in self._created}
        for variable in self.model.optimizer.variables:
            if id(variable) in ours or not variable.dtype.startswith("float"):
                continue
            value = ops.convert_to_numpy(variable)
            if not np.isfinite(value).all():
                variable.assign(np.zeros_like(value))

    def clipping(self) -> tuple[Any, Any, Any]:
        """`(clipnorm, global_clipnorm, clipvalue)` of the hooked optimizer."""
        opt = self.optimizer
        return getattr(opt, "clipnorm", None), getattr(opt, "global_clipnorm", None), getattr(opt, "clipvalue", None)

    def turn_on_global_clipnorm(self, norm: float) -> bool:
        """Sets `global_clipnorm=norm` and re-traces; False when it was already at most `norm`.

        The optimizer reads its clipping attributes while the step is traced, hence the
        re-trace.
        """
        current = getattr(self.optimizer, "global_clipnorm", None)
        if current is not None and current <= norm:
            return False
        self.optimizer.clipnorm = None
        self.optimizer.clipvalue = None
        self.optimizer.global_clipnorm = norm
        self.build_train_functions()
        return True

    # -- install / remove ---------------------------------------------------------------

    def install(self, recorder: GradientRecorder) -> None:
        """Wraps `apply` so that `recorder` sees each step.

        Raises:
            RuntimeError: when the optimizer's `apply` is already wrapped.
        """
        if "apply" in vars(self.optimizer):
            raise RuntimeError(
                "The optimizer's `apply` is already wrapped by another monitor; use one GradientMonitor per model."
            )
        self.recorder = recorder
        self._original = self.optimizer.apply
        hook = self

        def apply(grads, trainable_variables=None):
            return hook._hooked_apply(grads, trainable_variables)

        self.optimizer.apply = apply

    def remove(self) -> None:
        """Unwraps `apply`, drops the recorder's variables and re-makes the plain train function."""
        if self._original is not None and vars(self.optimizer).get("apply") is not None:
            del self.optimizer.apply
        self._original = None
        self._untrack()
        self._record_function = self._plain_function = None
        # Later fits must not run a function traced with the (removed) hook.
        self.model.make_train_function(force=True)

    # -- the train functions -------------------------------------------------------------

    def build_train_functions(self) -> None:
        """Traces (lazily) the train function(s) that contain the hook.

        With one step per call, two functions: one that records at every call and the
        plain Keras step, chosen per step by `use_train_function`; non-recorded steps
        then run no monitoring op at all. With `steps_per_execution > 1`, one function in
        which a `cond` on `optimizer.iterations` decides.
        """
        model = self.model
        self._record_function = self._plain_function = None
        if getattr(model, "steps_per_execution", 1) == 1:
            self.mode = "always"
            _make_own_train_function(model)
            self._record_function = model.train_function
            if self.recorder.every_n_steps > 1:
                self.mode = "off"
                _make_own_train_function(model)
                self._plain_function = model.train_function
        else:
            self.mode = "cond"
            model.make_train_function(force=True)

    def use_train_function(self, record: bool) -> None:
        """Makes the next step run the recording function (`record`) or the plain one."""
        if self._record_function is None:
            return  # one function that decides in the graph
        if record or self._plain_function is None:
            self.mode = "always"
            self.model.train_function = self._record_function
        else:
            self.mode = "off"
            self.model.train_function = self._plain_function

    # -- the wrapped apply ---------------------------------------------------------------

    def _hooked_apply(self, grads, trainable_variables=None):
        # `mode` is read while the train step is traced: "cond" decides in the graph,
        # "always" records at every call, "off" traces the plain step.
        if self.mode == "off":
            return self._original(grads, trainable_variables)
        recorder = self.recorder
        grads = list(grads)
        self.ensure_variables(trainable_variables)
        variables = self.gradient_variables(trainable_variables)
        # Read now: torch's `apply` increments the counter in place before the recording reads it.
        step = value_now(self.optimizer.iterations)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        context = _replica_context()
        if context is None and self.mode == "always":
            return recorder.record_around(pairs, step, lambda: self._original(grads, trainable_variables))
        if self.mode == "always":
            record = ops.convert_to_tensor(True)
        else:
            record = ops.equal(ops.mod(step, recorder.every_n_steps), 0)
        if context is None:
            recorder.before(pairs, step, record)
        else:
            # A collective inside a `cond` in replica context is not supported, so the
            # recorded-step branch runs in cross-replica context (as LossScaleOptimizer
            # does), where it sums the per-replica gradients only when it records.
            context.merge_call(
                self._before_cross_replica, args=([g for g, _ in pairs], [v for _, v in pairs], step, record)
            )
        result = self._original(grads, trainable_variables)
        if context is None:
            recorder.after(step, record)
        else:
            context.merge_call(self._after_cross_replica, args=(step, record))
        return result

    def gradient_variables(self, trainable_variables=None) -> list[Any]:
        """The variables `apply`'s gradients belong to, in their order.

        Keras' JAX step calls `apply(grads)` without variables (inside `stateless_apply`);
        the gradients then follow the list the optimizer was built with, the private
        `_trainable_variables` that `apply` itself falls back to. That list is not
        `model.trainable_variables` in general (a subclassed model's own weights, layers
        created in another order), so the pairing must come from the optimizer.
        """
        if trainable_variables is not None:
            return list(trainable_variables)
        return list(self.optimizer._trainable_variables)

    def _before_cross_replica(self, distribution, grads, variables, step, record):
        import tensorflow as tf

        first = distribution.experimental_local_results
        step, record = first(step)[0], first(record)[0]

        def reduce_and_record():
            reduced = distribution.extended.batch_reduce_to(
                tf.distribute.ReduceOp.SUM,
                [(g, v.value if hasattr(v, "value") else v) for g, v in zip(grads, variables)],
            )
            self.recorder.before(list(zip([first(r)[0] for r in reduced], variables)), step, True)

        tf.cond(record, reduce_and_record, lambda: None)

    def _after_cross_replica(self, distribution, step, record):
        first = distribution.experimental_local_results
        step, record = first(step)[0], first(record)[0]
        self.recorder.after(step, record)


def _make_own_train_function(model: Any) -> None:
    """`model.make_train_function(force=True)`, with a trace of its own on every backend.

    Keras' JAX trainer jits `model.train_step`, and `jax.jit` keys its trace cache on the
    function: two train functions made from the same bound method (equal by `==`) share
    one trace, so the plain function would run the recording traced first. There the
    step is made from a new function object (an instance attribute `train_step`, which
    `make_train_function` reads), then the attribute is put back as it was.
    TensorFlow's `tf.function` and torch trace each made function apart.
    """
    if keras.backend.backend() != "jax":
        model.make_train_function(force=True)
        return
    own = vars(model).get("train_step")
    step = model.train_step

    def train_step(state, data):
        return step(state, data)

    model.train_step = train_step
    try:
        model.make_train_function(force=True)
    finally:
        if own is None:
            del model.train_step
        else:
            model.train_step = own


def _replica_context() -> Any:
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    if tf.distribute.in_cross_replica_context():
        return None
    return context


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
