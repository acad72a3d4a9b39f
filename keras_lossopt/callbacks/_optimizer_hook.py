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

# Columns of `grad_stats` (one row per layer group, last row: the whole model).
SUMSQ, MAXABS, NONFINITE, SIZE, SUMSQ_CLIPPED = range(5)
# Columns of `update_stats`.
UPDATE_SUMSQ, WEIGHT_SUMSQ = range(2)
# The recorded step is kept in the same float32 table as the statistics, so that the
# host reads one variable per recorded step; split in two exact parts (step < 2**44).
_STEP_SPLIT = 2**20


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

    Attributes:
        table: `(len(groups) + 1, 9)` float32 variable: the gradient statistics (columns
            `SUMSQ`..`SUMSQ_CLIPPED`), then the update statistics (`UPDATE_SUMSQ`,
            `WEIGHT_SUMSQ`), then the recorded step (high and low part); `read()` splits it.
        snapshot_step: int variable, the step whose pre-update weights `snapshots` hold
            (the last recorded step whose gradients were finite and at most `good_norm`), -1
            before any.
        snapshots: one variable per trainable variable: the last good weights.
    """

    def __init__(
        self,
        model: Any,
        every_n_steps: int,
        strategy=None,
        good_norm: float = float("inf"),
    ):
        self.model = model
        inner = model.optimizer
        while isinstance(inner, keras.optimizers.LossScaleOptimizer):
            inner = inner.inner_optimizer
        self.optimizer = inner
        self.every_n_steps = int(every_n_steps)
        self.good_norm = float(good_norm)
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
            self.table = self._add((rows, 9), "float32", "statistics", initializer=-1.0)
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
        step = ops.convert_to_tensor(self.optimizer.iterations)
        step = ops.cast(step, "int64")
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        context = _replica_context()
        if self.mode == "always":
            record = ops.convert_to_tensor(True)
        else:
            record = ops.equal(ops.mod(step, self.every_n_steps), 0)
        if context is None and self.mode == "always":
            self._before(pairs, step)
            result = self._original(grads, trainable_variables)
            self._after(step)
            return result
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
        values = [_dense_values(g) for g, _ in pairs]
        per_var_sumsq = [ops.sum(ops.square(g)) for g in values]
        per_var_max = [ops.max(ops.abs(g)) if len(g.shape) else ops.abs(g) for g in values]
        # A non-finite entry makes its variable's sum of squares non-finite, so the
        # entries are only counted (arithmetic, not check_numerics) when a sum is.
        sums = ops.stack(per_var_sumsq)

        def count_nonfinite():
            return ops.stack([ops.sum(ops.cast(ops.logical_not(ops.isfinite(g)), "float32")) for g in values])

        per_var_nonfinite = ops.cond(
            ops.all(ops.isfinite(sums)), lambda: ops.zeros((len(values),), "float32"), count_nonfinite
        )
        clipped = self._clipped_sumsq(values, per_var_sumsq)
        rows = [[ops.zeros((), "float32")] * 5 for _ in range(len(self.groups))]
        sizes: list[Any] = [0.0] * len(self.groups)
        for i, (sumsq, maxabs, clip_sumsq, (_, v)) in enumerate(zip(per_var_sumsq, per_var_max, clipped, pairs)):
            index = self._group_index(v)
            r = rows[index]
            r[SUMSQ] = r[SUMSQ] + sumsq
            r[MAXABS] = ops.maximum(r[MAXABS], maxabs)
            r[NONFINITE] = r[NONFINITE] + per_var_nonfinite[i]
            r[SUMSQ_CLIPPED] = r[SUMSQ_CLIPPED] + clip_sumsq
            shape = tuple(values[i].shape)
            if all(d is not None for d in shape):
                sizes[index] = sizes[index] + float(np.prod(shape))
            else:  # rows of a sparse gradient: known only at run time
                sizes[index] = sizes[index] + ops.cast(ops.size(values[i]), "float32")
        for r, size in zip(rows, sizes):
            r[SIZE] = ops.cast(ops.convert_to_tensor(size), "float32")
        table = ops.stack([ops.stack(r) for r in rows])
        total = ops.concatenate(
            [
                ops.sum(table[:, SUMSQ : SUMSQ + 1], axis=0),
                ops.max(table[:, MAXABS : MAXABS + 1], axis=0),
                ops.sum(table[:, NONFINITE:], axis=0),
            ]
        )
        total_nonfinite = total[NONFINITE]
        step_f = ops.cast(step, "float32")
        hi = ops.floor(step_f / _STEP_SPLIT)
        step_columns = ops.stack([hi, ops.cast(step - ops.cast(hi, "int64") * _STEP_SPLIT, "float32")])
        rows = len(self.groups) + 1
        self.table.assign(
            ops.concatenate(
                [
                    ops.concatenate([table, total[None, :]], axis=0),
                    ops.zeros((rows, 2), "float32"),
                    ops.broadcast_to(step_columns[None, :], (rows, 2)),
                ],
                axis=1,
            )
        )

        def snapshot():
            for snap, v in zip(self.snapshots, self.variables):
                snap.assign(v)
            self.snapshot_step.assign(step)

        good = ops.logical_and(ops.equal(total_nonfinite, 0.0), ops.sqrt(total[SUMSQ]) <= self.good_norm)
        ops.cond(good, snapshot, lambda: None)

    def _clipped_sumsq(self, values, per_var_sumsq):
        opt = self.optimizer
        if getattr(opt, "clipnorm", None):
            c2 = float(opt.clipnorm) ** 2
            return [ops.minimum(s, c2) for s in per_var_sumsq]
        if getattr(opt, "global_clipnorm", None):
            c = float(opt.global_clipnorm)
            total = ops.sum(ops.stack(per_var_sumsq))
            # Same scale as keras' clip_by_global_norm: c / max(||g||, c).
            scale = c / ops.maximum(ops.sqrt(total), c)
            return [s * ops.square(scale) for s in per_var_sumsq]
        if getattr(opt, "clipvalue", None):
            c = float(opt.clipvalue)
            return [ops.sum(ops.square(ops.clip(g, -c, c))) for g in values]
        return list(per_var_sumsq)

    def _after(self, step):
        def measure():
            rows = [[ops.zeros((), "float32")] * 2 for _ in range(len(self.groups))]
            for snap, v in zip(self.snapshots, self.variables):
                before = ops.cast(ops.convert_to_tensor(snap), "float32")
                after = ops.cast(ops.convert_to_tensor(v), "float32")
                r = rows[self._group_index(v)]
                r[UPDATE_SUMSQ] = r[UPDATE_SUMSQ] + ops.sum(ops.square(after - before))
                r[WEIGHT_SUMSQ] = r[WEIGHT_SUMSQ] + ops.sum(ops.square(before))
            table = ops.stack([ops.stack(r) for r in rows])
            return ops.concatenate([table, ops.sum(table, axis=0, keepdims=True)], axis=0)

        def unknown():
            return ops.full((len(self.groups) + 1, 2), float("nan"), dtype="float32")

        taken = ops.equal(ops.convert_to_tensor(self.snapshot_step), step)
        current = ops.convert_to_tensor(self.table)
        update = ops.cond(taken, measure, unknown)
        self.table.assign(ops.concatenate([current[:, :5], update, current[:, 7:]], axis=1))

    # -- host side ------------------------------------------------------------------------

    def read(self):
        """Returns `(recorded_step, grad_stats, update_stats)` as NumPy values (one read)."""
        table = ops.convert_to_numpy(self.table)
        step = int(table[0, 7]) * _STEP_SPLIT + int(table[0, 8]) if table[0, 8] >= 0 else -1
        return step, table[:, :5], table[:, 5:7]

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


def _path(variable) -> str:
    return getattr(variable, "path", None) or getattr(variable, "name", "")


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
