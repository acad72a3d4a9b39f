"""Adapter: per-term gradient norms by each backend's own autodiff.

GradNorm needs, for each of K loss terms, the norm of that term's gradient with respect to
the weights of one shared layer. Keras has no backend-neutral gradient function, so this
module holds the one small function per backend (`tf.GradientTape`, `jax.vjp`,
`torch.autograd.grad`); everything else in GradNorm is `keras.ops`. Checked with
TensorFlow 2.21, JAX 0.10.2 and PyTorch 2.13 (tests/shaping/test_gradnorm_backends.py compares
each backend's norms with a NumPy float64 reference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import ops


def values_and_gradient_norms(fn: Callable[[list[Any]], Any], points: Sequence[Any]) -> tuple[Any, list[Any]]:
    """`fn(points)` (K values) and, for each value, the L2 norm of its gradient over all of `points`.

    Args:
        fn: maps a list of tensors (the shared weights) to a list of K scalars (a list, not
            one stacked tensor: a stack would connect every value to every input).
        points: the tensors at which to differentiate.

    Returns:
        `(values, norms)`: the K values stacked (without gradient) and a list of K scalar norms; a
        norm is None where the backend knows the value does not depend on `points`
        (TensorFlow and PyTorch; JAX gives a zero gradient there).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(fn, points)
    if backend == "jax":
        return _jax(fn, points)
    if backend == "torch":
        return _torch(fn, points)
    raise ValueError(f"GradNorm has no gradient function for the {backend!r} backend (TensorFlow, JAX, PyTorch).")


def _norm(gradients: Sequence[Any]) -> Any:
    present = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in gradients if g is not None]
    return ops.sqrt(sum(present)) if present else None


def _tensorflow(fn, points):
    import tensorflow as tf

    points = [tf.convert_to_tensor(p) for p in points]
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(points)
        values = fn(points)
    norms = [_norm(tape.gradient(value, points)) for value in values]
    del tape
    return tf.stop_gradient(tf.stack(values)), norms


def _jax(fn, points):
    import jax
    import jax.numpy as jnp

    values, pullback = jax.vjp(fn, list(points))
    norms = []
    for k in range(len(values)):
        (gradients,) = pullback([jnp.ones_like(v) if i == k else jnp.zeros_like(v) for i, v in enumerate(values)])
        norms.append(_norm(gradients))
    return jnp.stack(values), norms


def _torch(fn, points):
    import torch

    leaves = [p.detach().requires_grad_(True) for p in points]
    values = fn(leaves)
    norms = []
    for value in values:
        if not value.requires_grad:
            norms.append(None)
            continue
        gradients = torch.autograd.grad(value, leaves, retain_graph=True, allow_unused=True)
        norms.append(_norm([None if g is None else g.detach() for g in gradients]))
    return torch.stack([value.detach() for value in values]), norms
