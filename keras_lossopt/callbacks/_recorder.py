"""The in-graph recording of `GradientMonitor`: statistics, ring buffer, last good weights.

`GradientRecorder` computes, inside the train step and in `keras.ops`, the per-layer
statistics of the gradients the optimizer applies and of the update they make, writes them
into a small float32 ring buffer that the host reads once for many steps, and keeps a copy
of the last good weights. It does not know how it is called: `_optimizer_hook.OptimizerHook`
wraps the optimizer's `apply` and calls `record_around` (a step recorded by a function of its
own) or `before` / `after` (a recording decided by a `cond` in the graph), and creates the
variables for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["GradientRecorder", "layer_groups", "value_now"]

# Columns of a record's gradient statistics (one row per layer group, last row: the whole
# model). The summed columns come first so that one segment sum fills them.
SUMSQ, NONFINITE, SIZE, SUMSQ_CLIPPED, MAXABS = range(5)
# Columns of its update statistics: the update, and the weights before it.
UPDATE_SUMSQ, WEIGHT_SUMSQ = range(2)
# The recorded step is kept in the same float32 table as the statistics, so that the
# host reads one variable per read; split in two exact parts (step < 2**44).
_STEP_SPLIT = 2**20
# Columns of one record: gradient statistics, update statistics, step (high, low).
_COLUMNS = 9
_UPDATE_COLUMN = 5


def layer_groups(model: keras.Model) -> list[tuple[str, list[Any]]]:
    """Groups the model's trainable variables by the layer that owns them.

    Nested models are walked into, so a variable belongs to its innermost layer; names
    are joined with "/" (`"encoder/dense_1"`). Variables no layer claims (weights a
    subclassed model creates itself) form a group named after the model. Groups come in
    the order of `model.layers`, i.e. input side first for Sequential and functional
    models.

    Args:
        model: a built Keras model.

    Returns:
        `(name, variables)` pairs.
    """
    groups: list[tuple[str, list[Any]]] = []
    claimed: set[int] = set()

    def walk(container: Any, prefix: str) -> None:
        for layer in getattr(container, "layers", []):
            name = f"{prefix}{layer.name}"
            if isinstance(layer, keras.Model):
                walk(layer, name + "/")
            # A nested model keeps only the variables none of its layers claimed.
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
    # TensorFlow's sparse gradients (`IndexedSlices`, from embeddings) carry their non-zero
    # rows in `.values`; the statistics read those rows (exact unless an index repeats in
    # the batch). A torch tensor also has `values` and `indices`, but as methods of its
    # sparse layouts: Keras' torch step passes dense `.grad` tensors.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            gradient = gradient.values
    return ops.cast(gradient, "float32")


def value_now(variable: Any) -> Any:
    """The variable's value read at this point of the step, unaffected by later writes."""
    backend = keras.backend.backend()
    if backend == "jax":
        # JAX arrays are immutable and Keras' stateless step maps each variable to an
        # array: the current value is already a snapshot (a copy would go through the
        # Variable's `__jax_array__`, which JAX refuses while tracing).
        return variable.value
    if backend == "torch":
        # The optimizer writes the parameter in place.
        return ops.copy(variable.value)
    # `ops.copy` reads the value here; a bare conversion may be read lazily where it is
    # used, i.e. after the update (measured: the update then reads as zero).
    return ops.copy(variable)


def _assign_when(condition, variables: Sequence[Any], values: Callable[[], Sequence[Any]]) -> None:
    """Writes `values()` into `variables` when `condition` holds; nothing otherwise.

    `values` is only evaluated when the condition holds (it must not write itself). On
    TensorFlow (`tf.cond`) and torch (eager Python branches) the writes sit inside the
    branch. JAX's `lax.cond` is functional: a write inside a branch escapes it and
    happens at every step, so there the branch returns the new values (or the current
    ones) and the writes follow the `cond`.
    """
    variables = list(variables)
    if not variables:
        return
    if condition is True:
        for variable, value in zip(variables, values()):
            variable.assign(value)
        return
    if keras.backend.backend() == "jax":
        current = [v.value for v in variables]
        chosen = ops.cond(
            condition,
            lambda: [ops.cast(x, v.dtype) for x, v in zip(values(), variables)],
            lambda: current,
        )
        for variable, value in zip(variables, chosen):
            variable.assign(value)
        return

    def write():
        for variable, value in zip(variables, values()):
            variable.assign(value)

    ops.cond(condition, write, lambda: None)


class GradientRecorder:
    """Records gradient and update statistics per layer group, and the last good weights.

    Args:
        model: the model whose trainable variables are grouped with `layer_groups`.
        add_variable: `(shape, dtype, name, initializer) -> variable`, creates a variable
            that the train step may write (the hook's `add_variable`).
        every_n_steps: record when `iterations % every_n_steps == 0`.
        good_norm: weights are snapshotted (as the last good weights) only at recorded
            steps whose weights and gradients are all finite, with a global gradient norm
            at most this.
        records: how many records the buffer keeps (the host must read at least this
            often, counted in recorded steps).
        clipping: `() -> (clipnorm, global_clipnorm, clipvalue)` of the optimizer, read
            while the step is traced.
        step_dtype: the dtype of the optimizer's step counter (int32 on JAX without x64).

    Attributes:
        groups: `(name, variables)` per layer group.
        table: `(records, len(groups) + 1, 9)` float32 variable, a ring buffer: record
            `(step // every_n_steps) % records` holds the gradient statistics (columns
            `SUMSQ`..`MAXABS`), the update statistics (`UPDATE_SUMSQ`, `WEIGHT_SUMSQ`) and
            the recorded step (high and low part); `read()` splits it. The host reads it
            once for many records: on CPU one read costs about as much as 100 graph ops.
        snapshot_step: int variable, the step whose pre-update weights `snapshots` hold
            (the last recorded step whose weights and gradients were finite and whose
            gradient norm was at most `good_norm`; where each step is recorded by a
            function of its own, only steps that are multiples of `snapshot_every`, the
            smallest multiple of `every_n_steps` that is at least 10), -1 before any.
        snapshots: one variable per trainable variable: the last good weights.
    """

    def __init__(
        self,
        model: Any,
        add_variable: Callable[..., Any],
        every_n_steps: int,
        good_norm: float = float("inf"),
        records: int = 1,
        clipping: Callable[[], tuple[Any, Any, Any]] = lambda: (None, None, None),
        step_dtype: str = "int64",
    ):
        self.model = model
        self._add_variable = add_variable
        self._clipping = clipping
        self.step_dtype = step_dtype
        self.every_n_steps = int(every_n_steps)
        self.good_norm = float(good_norm)
        self.records = max(1, int(records))
        # The smallest multiple of `every_n_steps` that is at least 10.
        self.snapshot_every = -(-10 // self.every_n_steps) * self.every_n_steps
        self.groups: list[tuple[str, list[Any]]] = []
        self.variables: list[Any] = []
        self._group_of: dict[Any, int] = {}
        self.table = None
        self._starting_weights: dict[int, np.ndarray] = {}

    @property
    def ready(self) -> bool:
        return self.table is not None

    def needs_variables(self, trainable_variables: Sequence[Any] | None = None) -> bool:
        """Whether the model has trainable variables the statistics do not cover yet."""
        known = {id(v) for v in self.variables}
        current = list(trainable_variables) if trainable_variables is not None else self.model.trainable_variables
        return not self.ready or not all(id(v) in known for v in current)

    def create_variables(self) -> None:
        """(Re)creates the statistics variables for the model's current variable groups."""
        self.groups = layer_groups(self.model)
        self.variables = [v for _, vs in self.groups for v in vs]
        self._group_of = {}
        for index, (_, vs) in enumerate(self.groups):
            for v in vs:
                self._group_of[id(v)] = index
                self._group_of[_path(v)] = index
        rows = len(self.groups) + 1
        add = self._add_variable
        self.table = add((self.records, rows, _COLUMNS), "float32", "statistics", -1.0)
        self.snapshot_step = add((), self.step_dtype, "snapshot_step", -1)
        self.snapshots = [add(tuple(v.shape), v.dtype, f"snapshot_{i}", "zeros") for i, v in enumerate(self.variables)]

    # -- in the train step -------------------------------------------------------------

    def record_around(self, pairs, step, apply):
        """Records a step in a function that records at every call (the fast path).

        The weights read before `apply` stay alive as tensors until the update is
        measured after it, so no snapshot variable has to be read back, the update is
        measured at every recorded step (also when it is not a good one), and the whole
        table is written once.
        """
        variables = [v for _, v in pairs]
        before = [value_now(v) for v in variables]
        gradient_table, good = self._gradient_table([_dense_values(g) for g, _ in pairs], variables)
        weight_sumsq = _sums_of_squares([ops.cast(b, "float32") for b in before])
        good = ops.logical_and(good, ops.isfinite(ops.sum(weight_sumsq)))
        # The update is measured from `before`; the last good weights are kept only every
        # `snapshot_every` steps, which saves a copy of all weights at most steps.
        due = ops.equal(ops.mod(step, self.snapshot_every), 0)
        self._snapshot_when(ops.logical_and(good, due), before, variables, step)
        result = apply()
        after = [ops.cast(ops.convert_to_tensor(v), "float32") for v in variables]
        update_sumsq = _sums_of_squares([a - ops.cast(b, "float32") for a, b in zip(after, before)])
        update_table = self._per_group(ops.stack([update_sumsq, weight_sumsq], axis=1), variables)
        row = ops.concatenate([gradient_table, update_table, self._step_columns(step)], axis=1)
        self.table.assign(self._written(step, 0, row))
        return result

    def before(self, pairs, step, record):
        """Statistics before `apply` where the update is measured from the snapshot.

        Args:
            pairs: `(gradient, variable)` pairs of the step.
            step: the optimizer step.
            record: boolean tensor, whether this step is recorded (nothing is computed
                or written otherwise).
        """
        variables = [v for _, v in pairs]
        snapshot_of = {id(v): s for s, v in zip(self.snapshots, self.variables)}
        kept = [v for v in variables if id(v) in snapshot_of]
        targets = [self.table, self.snapshot_step, *(snapshot_of[id(v)] for v in kept)]

        def values():
            gradient_table, good = self._gradient_table([_dense_values(g) for g, _ in pairs], variables)
            before = [value_now(v) for v in variables]
            weight_sumsq = _sums_of_squares([ops.cast(b, "float32") for b in before])
            good = ops.logical_and(good, ops.isfinite(ops.sum(weight_sumsq)))
            weight_table = self._per_group(weight_sumsq[:, None], variables)
            rows = len(self.groups) + 1
            row = ops.concatenate(
                [gradient_table, ops.zeros((rows, 1), "float32"), weight_table, self._step_columns(step)], axis=1
            )
            # The snapshot only moves at good steps: the branch keeps the old one otherwise.
            current = [ops.convert_to_tensor(s) for s in targets[1:]]
            now = [ops.cast(step, self.snapshot_step.dtype), *(value_now(v) for v in kept)]
            snapshot = ops.cond(good, lambda: now, lambda: current)
            return [self._written(step, 0, row), *snapshot]

        _assign_when(record, targets, values)

    def after(self, step, record):
        """Measures the update from the snapshot (taken only at good steps: NaN otherwise)."""
        snapshot_of = {id(v): s for s, v in zip(self.snapshots, self.variables)}
        variables = [v for v in self.variables if id(v) in snapshot_of]

        def measure():
            before = [ops.cast(ops.convert_to_tensor(snapshot_of[id(v)]), "float32") for v in variables]
            after = [ops.cast(ops.convert_to_tensor(v), "float32") for v in variables]
            update = _sums_of_squares([a - b for a, b in zip(after, before)])
            return self._per_group(update[:, None], variables)

        def unknown():
            return ops.full((len(self.groups) + 1, 1), float("nan"), dtype="float32")

        def values():
            taken = ops.equal(ops.convert_to_tensor(self.snapshot_step), ops.cast(step, self.snapshot_step.dtype))
            return [self._written(step, _UPDATE_COLUMN, ops.cond(taken, measure, unknown))]

        _assign_when(record, [self.table], values)

    def _written(self, step, column, values):
        """The table with `values` written into the record of `step`, from `column` on."""
        record = ops.mod(ops.floor_divide(step, self.every_n_steps), self.records)
        start = ops.stack([ops.cast(record, "int32"), 0, column])
        # `.value`, not the variable: JAX refuses a Variable as an operand while tracing.
        return ops.slice_update(self.table.value, start, values[None])

    def _snapshot_when(self, condition, before, variables, step):
        """Keeps `before` as the last good weights (of `step`) when `condition` holds."""
        snapshot_of = {id(v): s for s, v in zip(self.snapshots, self.variables)}
        kept = [(snapshot_of[id(v)], value) for value, v in zip(before, variables) if id(v) in snapshot_of]
        _assign_when(
            condition,
            [self.snapshot_step, *(s for s, _ in kept)],
            lambda: [ops.cast(step, self.snapshot_step.dtype), *(value for _, value in kept)],
        )

    # -- the statistics (few, batched ops: on CPU each op costs dispatch time) -------------

    def _group_index(self, variable) -> int:
        index = self._group_of.get(id(variable))
        if index is None:
            index = self._group_of.get(_path(variable), len(self.groups) - 1)
        return index

    def _segments(self, variables):
        """Group index of each variable, as a constant for the segment reductions."""
        return ops.convert_to_tensor(np.asarray([self._group_index(v) for v in variables], dtype="int32"))

    def _per_group(self, per_variable, variables):
        """`(groups + 1, columns)`: sums over each group's variables, then over all."""
        summed = ops.segment_sum(per_variable, self._segments(variables), len(self.groups))
        return ops.concatenate([summed, ops.sum(summed, axis=0, keepdims=True)], axis=0)

    def _gradient_table(self, values, variables):
        """`(groups + 1, 5)` gradient statistics and whether the gradients are good to snapshot."""
        groups = len(self.groups)
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
        summed = self._per_group(ops.stack([sumsq, nonfinite, sizes, clipped], axis=1), variables)
        # An empty segment's maximum is the lowest float: groups without gradients read 0.
        largest = ops.maximum(ops.segment_max(maxabs, self._segments(variables), groups), 0.0)
        # `axis=0`: Keras' torch `max` drops `keepdims` when no axis is given (a 0-d result).
        largest = ops.concatenate([largest, ops.max(largest, axis=0, keepdims=True)])[:, None]
        good = finite if not np.isfinite(self.good_norm) else ops.logical_and(finite, total_sumsq <= self.good_norm**2)
        return ops.concatenate([summed, largest], axis=1), good

    def _clipped_sumsq(self, values, sumsq, total_sumsq):
        clipnorm, global_clipnorm, clipvalue = self._clipping()
        if clipnorm:
            return ops.minimum(sumsq, float(clipnorm) ** 2)
        if global_clipnorm:
            c = float(global_clipnorm)
            # Same scale as keras' clip_by_global_norm: c / max(||g||, c).
            scale = c / ops.maximum(ops.sqrt(total_sumsq), c)
            return sumsq * ops.square(scale)
        if clipvalue:
            c = float(clipvalue)
            return _sums_of_squares([ops.clip(g, -c, c) for g in values])
        return sumsq

    def _step_columns(self, step):
        # The recorded step, split in two parts that float32 holds exactly.
        parts = ops.stack([ops.floor_divide(step, _STEP_SPLIT), ops.mod(step, _STEP_SPLIT)])
        return ops.broadcast_to(ops.cast(parts, "float32")[None, :], (len(self.groups) + 1, 2))

    # -- host side ------------------------------------------------------------------------

    def read(self, after: int = -1):
        """The records of steps after `after`, oldest first, from one read of the buffer.

        Args:
            after: the last step already read (-1: none).

        Returns:
            `(steps, grad_stats, update_stats)`: `(k,)` int64, `(k, groups + 1, 5)` and
            `(k, groups + 1, 2)` float32 NumPy arrays.
        """
        value = self.table.value
        # A TensorFlow tensor's own `.numpy()` skips half of the generic conversion's cost.
        table = value.numpy() if keras.backend.backend() == "tensorflow" else ops.convert_to_numpy(value)
        filled = table[:, 0, 8] >= 0
        steps = table[:, 0, 7].astype("int64") * _STEP_SPLIT + table[:, 0, 8].astype("int64")
        keep = np.flatnonzero(filled & (steps > after))
        keep = keep[np.argsort(steps[keep])]
        return steps[keep], table[keep, :, :5], table[keep, :, 5:7]

    def keep_starting_weights(self) -> None:
        """Copies the weights at the start of the run, the fallback of the last good weights."""
        self._starting_weights = {id(v): ops.convert_to_numpy(v) for v in self.variables}

    def nonfinite_groups(self) -> tuple[str, ...]:
        """Names of the groups whose current weights hold a NaN or inf (read on the host)."""
        return tuple(
            name for name, vs in self.groups if not all(np.isfinite(ops.convert_to_numpy(v)).all() for v in vs)
        )

    def restore_last_good_weights(self) -> int | None:
        """Copies the last good weights back into the model, if they are finite.

        The snapshot is only taken at steps whose weights were finite; the weights are
        checked again here, so that a restore never writes a NaN or inf.

        Returns:
            The step whose pre-update weights were restored, -1 for the weights at the
            start of the run, or None when no finite weights were kept (nothing is
            written then).
        """
        if not self.ready:
            return None
        step = int(ops.convert_to_numpy(self.snapshot_step))
        candidates = []
        if step >= 0:
            candidates.append((step, [ops.convert_to_numpy(s) for s in self.snapshots]))
        if self.variables and all(id(v) in self._starting_weights for v in self.variables):
            candidates.append((-1, [self._starting_weights[id(v)] for v in self.variables]))
        for restored, values in candidates:
            if all(np.isfinite(value).all() for value in values):
                for variable, value in zip(self.variables, values):
                    variable.assign(value)
                return restored
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
