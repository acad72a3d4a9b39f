"""Backend-neutral test helpers: gradients, compilation and markers for every Keras backend.

The tests take the backend from `KERAS_BACKEND` (tests/conftest.py); these helpers let one
test check the same numbers on TensorFlow, JAX and PyTorch through each backend's own
gradient function and compiler.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()

tensorflow_only = pytest.mark.tensorflow_only


def value_and_gradient(fn, x, dtype="float32"):
    """`(fn(x), d sum(fn(x)) / dx)` as NumPy arrays, by the backend's own autodiff.

    Args:
        fn: maps a float32 tensor to a tensor (any shape; the gradient is of its sum).
        x: the point, a NumPy array or nested list.
        dtype: the dtype of the point.

    Returns:
        The value and the gradient, both NumPy arrays.
    """
    x = np.asarray(x, dtype)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(variable)
            total = tf.reduce_sum(value)
        grad = tape.gradient(total, variable, unconnected_gradients="zero")
        return np.asarray(value), np.asarray(grad)
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(z):
            value = fn(z)
            return jnp.sum(value), value

        (_, value), grad = jax.value_and_grad(total, has_aux=True)(jnp.asarray(x))
        return np.asarray(value), np.asarray(grad)
    if BACKEND == "torch":
        import torch

        variable = torch.tensor(x, requires_grad=True)
        value = fn(variable)
        if not value.requires_grad:  # a value that does not depend on x (TF's "unconnected")
            return value.detach().cpu().numpy(), np.zeros_like(x)
        (grad,) = torch.autograd.grad(value.sum(), variable, allow_unused=True)
        grad = np.zeros_like(x) if grad is None else grad.detach().cpu().numpy()
        return value.detach().cpu().numpy(), grad
    raise NotImplementedError(f"no gradient helper for the {BACKEND!r} backend")


def value_and_variable_gradients(fn, variables):
    """`(fn(), [d fn() / d v for v in variables])` as NumPy, by the backend's own autodiff.

    Args:
        fn: takes no argument, reads the Keras `variables` (e.g. a model's forward and loss) and
            returns a scalar.
        variables: Keras variables.

    Returns:
        The value (a float) and one NumPy gradient per variable (zeros where it is unconnected).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        grads = tape.gradient(value, [v.value for v in variables], unconnected_gradients="zero")
    elif BACKEND == "jax":
        import jax

        def at(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        value, grads = jax.value_and_grad(at)([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        value = fn()
        leaves = [v.value for v in variables]
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
        grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]
    else:
        raise NotImplementedError(f"no gradient helper for the {BACKEND!r} backend")
    return float(to_numpy(value)), [to_numpy(g) for g in grads]


def float64_available():
    """Whether float64 computes in float64 (JAX truncates it to float32 unless `jax_enable_x64`)."""
    if BACKEND != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


def compiled(fn):
    """`fn` under the backend's compiler: XLA (tf.function jit_compile) on TF, jax.jit on JAX.

    On torch the function runs eagerly: Keras' own `jit_compile` defaults to eager there, and
    torch.compile is not what a Keras user gets from `model.fit`.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def jit_compile_setting():
    """The `jit_compile` a compiled Keras model gets on this backend (XLA on TF and JAX)."""
    return BACKEND in ("tensorflow", "jax")


def to_numpy(x):
    """A backend tensor (or NumPy value) as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def loss_gradients(model, loss_fn, x, y):
    """Gradients of `loss_fn(y, model(x, training=True))` by the backend's own autodiff.

    `tf.GradientTape` on TensorFlow, `jax.grad` over `model.stateless_call` on JAX,
    `torch.autograd.grad` on torch: independent of how Keras' train step takes them.

    Args:
        model: a built Keras model.
        loss_fn: `(y_true, y_pred) -> scalar loss`.
        x: the batch inputs (NumPy).
        y: the batch targets (NumPy).

    Returns:
        One float64 NumPy array per `model.trainable_variables` entry.
    """
    variables = model.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, variables)
    elif BACKEND == "jax":
        import inspect

        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]
        # Keras' __call__ passes `training` only to a `call` that takes it; stateless_call does not check.
        takes_training = "training" in inspect.signature(model.call).parameters
        kwargs = {"training": True} if takes_training else {}

        def loss_of(trainable):
            y_pred, _ = model.stateless_call(trainable, non_trainable, x, **kwargs)
            return loss_fn(y, y_pred)

        grads = jax.grad(loss_of)([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        loss = loss_fn(y, model(x, training=True))
        grads = torch.autograd.grad(loss, [v.value for v in variables])
    else:
        raise NotImplementedError(f"no gradient helper for the {BACKEND!r} backend")
    return [to_numpy(g).astype("float64") for g in grads]
