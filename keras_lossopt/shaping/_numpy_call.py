"""Adapter: a NumPy function called from inside a (possibly compiled) train step, per backend.

`RewardTerm(differentiable=False)` scores sampled classes with the user's NumPy reward. Each
backend calls Python from its step its own way: TensorFlow through `tf.numpy_function` (not
under XLA: XLA cannot call Python), JAX through `jax.pure_callback` (also inside `jax.jit`,
so `jit_compile=True` works), PyTorch directly on the host copies (its step runs eagerly).
The value carries no gradient on any backend. Checked with TensorFlow 2.21, JAX 0.10.2 and
PyTorch 2.13 (tests/shaping/test_terms.py runs the estimator on each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


def call_numpy(fn: Callable[..., np.ndarray], arguments: Sequence[Any], shape: tuple[int, ...], name: str) -> Any:
    """`fn` on the NumPy values of `arguments`, as a float32 tensor of `shape` in the step.

    Args:
        fn: takes NumPy arrays, returns a float32 array of `shape` (it raises on bad values).
        arguments: tensors of the step.
        shape: the static shape of the result.
        name: the operation's name on TensorFlow (XLA's error names it).

    Returns:
        A float32 tensor of `shape`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = tf.numpy_function(fn, list(arguments), tf.float32, stateful=False, name=name)
        values.set_shape(shape)
        return values
    if backend == "jax":
        import jax

        return jax.pure_callback(fn, jax.ShapeDtypeStruct(shape, np.float32), *arguments)
    return ops.convert_to_tensor(fn(*[ops.convert_to_numpy(argument) for argument in arguments]), "float32")
