"""Reads the gradients an optimizer really applies, by wrapping its `apply` method.

`BaseOptimizer.apply(grads, trainable_variables)` is the one method through which every
Keras 3 backend passes the real training gradients (on JAX, `apply_gradients` is
bypassed by `stateless_apply`, which still calls `apply`). Wrapping the bound method on
the optimizer *instance* (never the class) means no second forward or backward pass,
and nothing changes for other optimizers or after `remove()`.

Statistics live in variables created with `optimizer.add_variable`, because JAX's
stateless training step drops writes to any other variable. Before `apply` the hook
computes the gradient statistics and snapshots the weights, after it measures the
update. The hook's `mode`, read while the train step is traced, says when: `"always"`
(a train function that records at every call; `GradientMonitor` switches between it
and the plain one, traced with `"off"`, per step), or `"cond"` (one function whose two
`cond`s on `optimizer.iterations` skip the work at non-recorded steps; used with
`steps_per_execution > 1`).

Under a `LossScaleOptimizer` the hook wraps the inner optimizer, which receives the
unscaled gradients (and is not called at all on the steps the loss scale skips).
Under `tf.distribute` the wrapper runs in a replica context with the per-replica
gradients; the recording runs in a `merge_call` (cross-replica context), where it sums
them across replicas itself, so the statistics describe the reduced gradients that
update the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

# Columns of `grad_stats` (one row per layer group, last row: the whole model). The
# summed columns come first so that one segment sum fills them.
SUMSQ, NONFINITE, SIZE, SUMSQ_CLIPPED, MAXABS = range(5)
# Columns of `update_stats`.
UPDATE_SUMSQ, WEIGHT_SUMSQ = range(2)
# The recorded step is kept in the same float32 table as the statistics, so that the
# host reads one variable per read; split in two exact parts (step < 2**44).
_STEP_SPLIT = 2**20
# Columns of one record: gradient statistics, update statistics, step (high, low).
_COLUMNS = 9


def layer_groups(model: keras.Model) -> list[tuple[str, list[Any]]]:
    """Groups the model's trainable variables by the layer that owns them.

    Nested models are walked into, so a variable belongs to its innermost layer; names
    are joined with "/" (`"encoder/dense_1"`). Variables no layer claims (weights a
    subclassed model creates itself) form a group named after the model. Groups come in
    the order of `model.layers`, i.e. input side first for Sequential and functional
    models.
    """
    groups: list[tuple[str, list[Any]]] = []
    claimed: set[int] = set()

    def walk(container: Any, prefix: str) -> None:
        for layer in getattr(container, "layers", []):
            name = f"{prefix}{layer.name}"
            if isinstance(layer, keras.Model):
                walk(layer, name + "/")
                rest = [v for v in layer.trainable_variables if id(v) not in claimed]
            else:
                rest = [v for v in layer.trainable_variables if id(v) not in claimed]
            if rest:
                claimed.update(id(v) for v in rest)
                groups.append((name, rest))

    walk(model, "")
    own = [v for v in model.trainable_variables if id(v) not in claimed]
    if own:
        groups.append((model.name, own))
    return groups


def _dense_values(gradient: Any) -> Any:
    # Sparse gradients (embeddings) carry their non-zero rows in `.values`; the
    # statistics read those rows (exact unless an index repeats in the batch).
    values = getattr(gradient, "values", None)
    if values is not None and hasattr(gradient, "indices"):
        gradient = values
    return ops.cast(gradient, "float32")


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


class ApplyHook:
    """Wraps `optimizer.apply` to record gradient and update statistics.

    Args:
        model: the compiled model; its optimizer (a `LossScaleOptimizer` is unwrapped)
            is hooked, its variables grouped with `layer_groups`.
        every_n_steps: record when `iterations % every_n_steps == 0`.
        strategy: the model's `tf.distribute` strategy (variables are created in its
            scope), or None.
        good_norm: weights are snapshotted (as the last good weights) only at recorded
            steps whose gradients are all finite with a global norm at most this.
        records: how many records the buffer keeps (the host must read at least this
            often, counted in recorded steps).

    Attributes:
        table: `(records, len(groups) + 1, 9)` float32 variable, a ring buffer: record
            `(step // every_n_steps) % records` holds the gradient statistics (columns
            `SUMSQ`..`MAXABS`), the update statistics (`UPDATE_SUMSQ`, `WEIGHT_SUMSQ`) and
            the recorded step (high and low part); `read()` splits it. The host reads it
            once for many records: on CPU one read costs about as much as 100 graph ops.
        snapshot_step: int variable, the step whose pre-update weights `snapshots` hold
            (the last recorded step whose gradients were finite and at most `good_norm`;
            where each step is recorded by a function of its own, only steps that are
            multiples of `snapshot_every`, the smallest multiple of `every_n_steps` that
            is at least 10), -1 before any.
        snapshots: one variable per trainable variable: the last good weights.
    """

    def __init__(
        self,
        model: Any,
        every_n_steps: int,
        strategy=None,
        good_norm: float = float("inf"),
        records: int = 1,
    ):
        self.model = model
        inner = model.optimizer
        while isinstance(inner, keras.optimizers.LossScaleOptimizer):
            inner = inner.inner_optimizer
        self.optimizer = inner
        self.every_n_steps = int(every_n_steps)
        self.good_norm = float(good_norm)
        self.records = max(1, int(records))
        # The smallest multiple of `every_n_steps` that is at least 10.
        self.snapshot_every = -(-10 // self.every_n_steps) * self.every_n_steps
        self.mode = "cond"
        self.strategy = strategy
        self.groups: list[tuple[str, list[Any]]] = []
        self.variables: list[Any] = []
        self._group_of: dict[Any, int] = {}
        self._created: list[Any] = []
        self._original = None
        self.table = None

    @property
    def ready(self) -> bool:
        return self.table is not None

    def ensure_variables(self, trainable_variables: Sequence[Any] | None = None) -> None:
        """(Re)creates the statistics variables when the model has variables we do not know.

        Called eagerly at the start of training, and again from the first trace of the
        train step for models (subclassed, no input shape) whose variables only exist
        once the model has been called; TensorFlow allows variable creation there, like
        the optimizer's own slots.
        """
        known = {id(v) for v in self.variables}
        current = list(trainable_variables) if trainable_variables is not None else self.model.trainable_variables
        if self.ready and all(id(v) in known for v in current):
            return
        self._untrack()
        self.groups = layer_groups(self.model)
        self.variables = [v for _, vs in self.groups for v in vs]
        self._group_of = {}
        for index, (_, vs) in enumerate(self.groups):
            for v in vs:
                self._group_of[id(v)] = index
                self._group_of[_path(v)] = index
        scope = self.strategy.scope() if self.strategy is not None else _null_scope()
        rows = len(self.groups) + 1
        with scope:
            self.table = self._add((self.records, rows, _COLUMNS), "float32", "statistics", initializer=-1.0)
            self.snapshot_step = self._add((), "int64", "snapshot_step", initializer=-1)
            self.snapshots = [self._add(tuple(v.shape), v.dtype, f"snapshot_{i}") for i, v in enumerate(self.variables)]

    def _add(self, shape, dtype, name, initializer="zeros"):
        if not isinstance(initializer, str):
            initializer = keras.initializers.Constant(initializer)
        variable = self.optimizer.add_variable(
            shape, initializer=initializer, dtype=dtype, aggregation="only_first_replica", name=f"monitor_{name}"
        )
        self._created.append(variable)
        return variable

    # -- install / remove ---------------------------------------------------------------

    def install(self) -> None:
        if "apply" in vars(self.optimizer):
            raise RuntimeError(
                "The optimizer's `apply` is already wrapped by another monitor; use one GradientMonitor per model."
            )
        self._original = self.optimizer.apply
        hook = self

        def apply(grads, trainable_variables=None):
            return hook._hooked_apply(grads, trainable_variables)

        self.optimizer.apply = apply

    def remove(self) -> None:
        if self._original is not None and vars(self.optimizer).get("apply") is not None:
            del self.optimizer.apply
        self._original = None
        self._untrack()

    def _untrack(self) -> None:
        # Our variables must not outlive the run in the optimizer's state: a checkpoint
        # saved afterwards would otherwise carry (and expect) them.
        tracked = getattr(self.optimizer, "_variables", None)
        if isinstance(tracked, list) and self._created:
            ids = {id(v) for v in self._created}
            for index in reversed([i for i, v in enumerate(tracked) if id(v) in ids]):
                tracked.pop(index)
        self._created = []

    # -- the wrapped apply ---------------------------------------------------------------

    def _hooked_apply(self, grads, trainable_variables=None):
        # `mode` is read while the train step is traced: "cond" decides in the graph,
        # "always" records at every call, "off" traces the plain step (the monitor then
        # switches between an "always" and an "off" train function per step).
        if self.mode == "off":
            return self._original(grads, trainable_variables)
        grads = list(grads)
        self.ensure_variables(trainable_variables)
        variables = list(trainable_variables) if trainable_variables is not None else self.variables
        step = ops.cast(ops.convert_to_tensor(self.optimizer.iterations), "int64")
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        context = _replica_context()
        if context is None and self.mode == "always":
            return self._record_around(pairs, step, lambda: self._original(grads, trainable_variables))
        if self.mode == "always":
            record = ops.convert_to_tensor(True)
        else:
            record = ops.equal(ops.mod(step, self.every_n_steps), 0)
        if context is None:
            ops.cond(record, lambda: self._before(pairs, step), lambda: None)
        else:
            # A collective inside a `cond` in replica context is not supported, so the
            # recorded-step branch runs in cross-replica context (as LossScaleOptimizer
            # does), where it sums the per-replica gradients only when it records.
            context.merge_call(
                self._before_cross_replica, args=([g for g, _ in pairs], [v for _, v in pairs], step, record)
            )
        result = self._original(grads, trainable_variables)
        if context is None:
            ops.cond(record, lambda: self._after(step), lambda: None)
        else:
            context.merge_call(self._after_cross_replica, args=(step, record))
        return result

    def _record_around(self, pairs, step, apply):
        """Records a step in a function that records at every call (the fast path).

        The weights read before `apply` stay alive as tensors until the update is
        measured after it, so no snapshot variable has to be read back, the update is
        measured at every recorded step (also when it is not a good one), and the whole
        table is written once.
        """
        variables = [v for _, v in pairs]
        # `ops.copy` reads the value here; a bare conversion may be read lazily where it
        # is used, i.e. after the update (measured: the update then reads as zero).
        before = [ops.copy(v) for v in variables]
        gradient_table, good = self._gradient_table([_dense_values(g) for g, _ in pairs], variables)
        # The update is measured from `before`; the last good weights are kept only every
        # `snapshot_every` steps, which saves a copy of all weights at most steps.
        due = ops.equal(ops.mod(step, self.snapshot_every), 0)
        ops.cond(ops.logical_and(good, due), lambda: self._take_snapshot(before, variables, step), lambda: None)
        result = apply()
        after = [ops.convert_to_tensor(v) for v in variables]
        update_table = self._update_table(before, after, variables)
        self._write(step, 0, ops.concatenate([gradient_table, update_table, self._step_columns(step)], axis=1))
        return result

    def _group_index(self, variable) -> int:
        index = self._group_of.get(id(variable))
        if index is None:
            index = self._group_of.get(_path(variable), len(self.groups) - 1)
        return index

    def _before_cross_replica(self, distribution, grads, variables, step, record):
        import tensorflow as tf

        first = distribution.experimental_local_results
        step, record = first(step)[0], first(record)[0]

        def reduce_and_record():
            reduced = distribution.extended.batch_reduce_to(
                tf.distribute.ReduceOp.SUM,
                [(g, v.value if hasattr(v, "value") else v) for g, v in zip(grads, variables)],
            )
            self._before(list(zip([first(r)[0] for r in reduced], variables)), step)

        tf.cond(record, reduce_and_record, lambda: None)

    def _after_cross_replica(self, distribution, step, record):
        import tensorflow as tf

        first = distribution.experimental_local_results
        step, record = first(step)[0], first(record)[0]
        tf.cond(record, lambda: self._after(step), lambda: None)

    def _before(self, pairs, step):
        """Statistics before `apply` where the update is measured from the snapshot."""
        variables = [v for _, v in pairs]
        gradient_table, good = self._gradient_table([_dense_values(g) for g, _ in pairs], variables)
        rows = len(self.groups) + 1
        self._write(
            step,
            0,
            ops.concatenate([gradient_table, ops.zeros((rows, 2), "float32"), self._step_columns(step)], axis=1),
        )
        ops.cond(
            good,
            lambda: self._take_snapshot([ops.copy(v) for v in variables], variables, step),
            lambda: None,
        )

    def _after(self, step):
        """Measures the update from the snapshot (taken only at good steps: NaN otherwise)."""
        snapshot_of = {id(v): s for s, v in zip(self.snapshots, self.variables)}
        variables = [v for v in self.variables if id(v) in snapshot_of]

        def measure():
            before = [ops.convert_to_tensor(snapshot_of[id(v)]) for v in variables]
            return self._update_table(before, [ops.convert_to_tensor(v) for v in variables], variables)

        def unknown():
            return ops.full((len(self.groups) + 1, 2), float("nan"), dtype="float32")

        taken = ops.equal(ops.convert_to_tensor(self.snapshot_step), step)
        self._write(step, 5, ops.cond(taken, measure, unknown))

    def _write(self, step, column, values):
        """Writes `values` into the record of `step`, from `column` on."""
        record = ops.mod(ops.floor_divide(step, self.every_n_steps), self.records)
        start = ops.stack([ops.cast(record, "int32"), 0, column])
        self.table.assign(ops.slice_update(self.table, start, values[None]))

    def _take_snapshot(self, before, variables, step):
        snapshot_of = {id(v): s for s, v in zip(self.snapshots, self.variables)}
        for value, v in zip(before, variables):
            snapshot = snapshot_of.get(id(v))
            if snapshot is not None:
                snapshot.assign(value)
        self.snapshot_step.assign(step)

    # -- the statistics (few, batched ops: on CPU each op costs dispatch time) -------------

    def _segments(self, variables):
        """Group index of each variable, as a constant for the segment reductions."""
        return ops.convert_to_tensor(np.asarray([self._group_index(v) for v in variables], dtype="int32"))

    def _with_total(self, per_group, reduce):
        return ops.concatenate([per_group, reduce(per_group, axis=0, keepdims=True)], axis=0)

    def _gradient_table(self, values, variables):
        """`(groups + 1, 5)` gradient statistics and whether the step is good to snapshot."""
        groups = len(self.groups)
        segments = self._segments(variables)
        sumsq = _sums_of_squares(values)
        maxabs = ops.stack([ops.max(ops.abs(g)) if len(g.shape) else ops.abs(g) for g in values])
        total_sumsq = ops.sum(sumsq)

        # A non-finite entry makes its variable's sum of squares non-finite, so the
        # entries are only counted (arithmetic, not check_numerics) when the total is.
        def count_nonfinite():
            return ops.stack([ops.sum(ops.cast(ops.logical_not(ops.isfinite(g)), "float32")) for g in values])

        finite = ops.isfinite(total_sumsq)
        nonfinite = ops.cond(finite, lambda: ops.zeros((len(values),), "float32"), count_nonfinite)
        static_sizes = [int(np.prod(g.shape)) if all(d is not None for d in g.shape) else None for g in values]
        if all(s is not None for s in static_sizes):
            sizes = ops.convert_to_tensor(np.asarray(static_sizes, dtype="float32"))
        else:  # rows of a sparse gradient: known only at run time
            sizes = ops.stack([ops.cast(ops.size(g), "float32") for g in values])
        clipped = self._clipped_sumsq(values, sumsq, total_sumsq)
        summed = self._with_total(
            ops.segment_sum(ops.stack([sumsq, nonfinite, sizes, clipped], axis=1), segments, groups), ops.sum
        )
        # An empty segment's maximum is the lowest float: groups without gradients read 0.
        largest = ops.maximum(ops.segment_max(maxabs, segments, groups), 0.0)
        largest = ops.concatenate([largest, ops.max(largest, keepdims=True)])[:, None]
        good = finite if not np.isfinite(self.good_norm) else ops.logical_and(finite, total_sumsq <= self.good_norm**2)
        return ops.concatenate([summed, largest], axis=1), good

    def _clipped_sumsq(self, values, sumsq, total_sumsq):
        opt = self.optimizer
        if getattr(opt, "clipnorm", None):
            return ops.minimum(sumsq, float(opt.clipnorm) ** 2)
        if getattr(opt, "global_clipnorm", None):
            c = float(opt.global_clipnorm)
            # Same scale as keras' clip_by_global_norm: c / max(||g||, c).
            scale = c / ops.maximum(ops.sqrt(total_sumsq), c)
            return sumsq * ops.square(scale)
        if getattr(opt, "clipvalue", None):
            c = float(opt.clipvalue)
            return _sums_of_squares([ops.clip(g, -c, c) for g in values])
        return sumsq

    def _update_table(self, before, after, variables):
        """`(groups + 1, 2)`: sum of squares of the update and of the weights before it."""
        before = [ops.cast(b, "float32") for b in before]
        update = _sums_of_squares([ops.cast(a, "float32") - b for a, b in zip(after, before)])
        weight = _sums_of_squares(before)
        summed = ops.segment_sum(ops.stack([update, weight], axis=1), self._segments(variables), len(self.groups))
        return self._with_total(summed, ops.sum)

    def _step_columns(self, step):
        # The recorded step, split in two parts that float32 holds exactly.
        parts = ops.stack([ops.floor_divide(step, _STEP_SPLIT), ops.mod(step, _STEP_SPLIT)])
        return ops.broadcast_to(ops.cast(parts, "float32")[None, :], (len(self.groups) + 1, 2))

    # -- host side ------------------------------------------------------------------------

    def read(self, after: int = -1):
        """The records of steps after `after`, oldest first, from one read of the buffer.

        Returns:
            `(steps, grad_stats, update_stats)`: `(k,)` int64, `(k, groups + 1, 5)` and
            `(k, groups + 1, 2)` float32 NumPy arrays.
        """
        value = self.table.value
        # A TensorFlow tensor's own `.numpy()` skips half of the generic conversion's cost.
        table = value.numpy() if hasattr(value, "numpy") else ops.convert_to_numpy(value)
        filled = table[:, 0, 8] >= 0
        steps = table[:, 0, 7].astype("int64") * _STEP_SPLIT + table[:, 0, 8].astype("int64")
        keep = np.flatnonzero(filled & (steps > after))
        keep = keep[np.argsort(steps[keep])]
        return steps[keep], table[keep, :, :5], table[keep, :, 5:7]

    def restore_last_good_weights(self, starting_weights=None) -> int | None:
        """Copies the last good weights back into the model.

        Args:
            starting_weights: `{id(variable): array}` taken at the start of the run, used
                when no recorded step was good yet.

        Returns:
            The step whose pre-update weights were restored, -1 for the starting weights,
            or None when there was nothing to restore.
        """
        if not self.ready:
            return None
        step = int(ops.convert_to_numpy(self.snapshot_step))
        if step >= 0:
            for snap, v in zip(self.snapshots, self.variables):
                v.assign(ops.convert_to_numpy(snap))
            return step
        if starting_weights and all(id(v) in starting_weights for v in self.variables):
            for v in self.variables:
                v.assign(starting_weights[id(v)])
            return -1
        return None


def _sums_of_squares(tensors):
    """`(len(tensors),)` sum of squares of each tensor."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One fused op per tensor (l2_loss is half the sum of squares): on CPU, without
        # XLA, each op of the recording costs dispatch time comparable to its arithmetic
        # on these small tensors.
        return 2.0 * ops.stack([tf.nn.l2_loss(x) for x in tensors])
    return ops.stack([ops.sum(ops.square(x)) for x in tensors])


def _path(variable) -> str:
    return getattr(variable, "path", None) or getattr(variable, "name", "")


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
