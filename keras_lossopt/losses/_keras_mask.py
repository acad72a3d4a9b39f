"""Adapter: the Keras mask of a tensor, which Keras keeps in the private attribute `_keras_mask`.

`Embedding(mask_zero=True)`, `Masking` and every layer with `compute_mask` attach their
output mask to the output tensor as `_keras_mask`, and `keras.losses.Loss.__call__` reads it
from `y_pred` there; Keras has no public getter or setter. This module is the one place of
the package that touches the attribute (checked against Keras 3.15.1 on TensorFlow 2.21;
`tests/test_private_adapters.py` fails when Keras stops attaching or reading it). Backends
whose arrays take no attributes (JAX) keep the mask in a private Keras table that is not
read here: on JAX pass the mask as `sample_weight` instead.
"""

from __future__ import annotations

from keras import ops


def keras_mask_of(tensor):
    """The Keras mask attached to `tensor`, or None."""
    return getattr(tensor, "_keras_mask", None)


def with_keras_mask(tensor, mask):
    """`tensor` as a tensor carrying `mask` (boolean) where a Keras loss reads it; unchanged for None."""
    if mask is None:
        return tensor
    tensor = ops.convert_to_tensor(tensor)
    tensor._keras_mask = ops.cast(mask, "bool")
    return tensor
