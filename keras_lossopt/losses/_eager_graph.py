"""ADAPTER: a helper without gradient run as one TensorFlow graph call when TensorFlow executes eagerly.

An eager TensorFlow step dispatches every op on its own and skips the graph optimizer; a
sort-based helper of about twenty ops on large arrays (the Lovasz weights) costs about 10%
more that way than inside `tf.function` (docs/benchmarks.md, "Lovasz-softmax against
segmentation_models_pytorch"). `eager_graph_call` wraps such a helper in `tf.function`
(one per combination of argument ranks, traced for any shape: `reduce_retracing=True`) and calls it when
TensorFlow executes eagerly. Inside a compiled step (`tf.function`, XLA) and on the other
backends it calls the plain function, which traces into the caller's graph as before.
The helper must take tensors and static Python values only and must not need a gradient
(its results are used under `stop_gradient`).
"""

from __future__ import annotations

import functools

import keras

__all__ = ["eager_graph_call"]


def eager_graph_call(function):
    """`function`, run as one `tf.function` call when TensorFlow executes eagerly.

    Args:
        function: a function of tensors (and static Python values) whose results need no gradient.

    Returns:
        A function with the same signature and results.
    """
    # One tf.function per combination of ranks: `reduce_retracing` would otherwise relax a
    # second rank to an unknown one, and the helper needs known ranks.
    graph_functions = {}

    @functools.wraps(function)
    def call(*args, **kwargs):
        if keras.backend.backend() != "tensorflow":
            return function(*args, **kwargs)
        import tensorflow as tf

        if not tf.executing_eagerly():
            return function(*args, **kwargs)
        ranks = tuple(len(a.shape) if hasattr(a, "shape") else None for a in args)
        if ranks not in graph_functions:
            graph_functions[ranks] = tf.function(function, reduce_retracing=True)
        return graph_functions[ranks](*args, **kwargs)

    return call
