"""ADAPTER: a function of tensors run as one TensorFlow graph call when TensorFlow executes eagerly.

An eager TensorFlow step dispatches every op on its own and skips the graph optimizer; a
loss of about fifty ops on large arrays (the Lovasz-softmax loss) costs about 10% more that
way than inside `tf.function`, and on small arrays the dispatch dominates (docs/benchmarks.md,
"Lovasz-softmax against segmentation_models_pytorch"). `eager_graph_call` wraps such a
function in `tf.function` (one per combination of argument ranks, traced for any shape:
`reduce_retracing=True`) and calls it when TensorFlow executes eagerly. TensorFlow
differentiates a `tf.function` call recorded on a `GradientTape` like any op, so the function
may need a gradient. Inside a compiled step (`tf.function`, XLA) and on the other backends it
calls the plain function, which traces into the caller's graph as before. The function must
take tensors (or None) and static Python values only, and must raise nothing that an eager
caller should see as a Python error: checks of values belong before the call.
"""

from __future__ import annotations

import functools

import keras

__all__ = ["eager_graph_call"]


def eager_graph_call(function=None, *, fixed_last_axis=False):
    """`function`, run as one `tf.function` call when TensorFlow executes eagerly.

    Args:
        function: a function of tensors (and static Python values).
        fixed_last_axis: also trace once per length of the arguments' last axes, for a
            function that needs them known (a class axis); the other axes stay free.

    Returns:
        A function with the same signature and results (or a decorator, without `function`).
    """
    if function is None:
        return functools.partial(eager_graph_call, fixed_last_axis=fixed_last_axis)
    # One tf.function per combination of ranks: `reduce_retracing` would otherwise relax a
    # second rank to an unknown one, and the function needs known ranks.
    graph_functions = {}

    @functools.wraps(function)
    def call(*args, **kwargs):
        if keras.backend.backend() != "tensorflow":
            return function(*args, **kwargs)
        import tensorflow as tf

        if not tf.executing_eagerly():
            return function(*args, **kwargs)
        key = tuple(_signature(a, fixed_last_axis) for a in args)
        if key not in graph_functions:
            graph_functions[key] = tf.function(function, reduce_retracing=True)
        return graph_functions[key](*args, **kwargs)

    return call


def _signature(argument, fixed_last_axis):
    shape = getattr(argument, "shape", None)
    if shape is None:
        return None
    if fixed_last_axis and len(shape):
        return len(shape), shape[-1]
    return len(shape)
