"""Adapter: the Keras mask of a tensor, where Keras keeps it on each backend.

`Embedding(mask_zero=True)`, `Masking` and every layer with `compute_mask` attach their
output mask to the output tensor, and `keras.losses.Loss.__call__` reads it from `y_pred`;
Keras has no public getter or setter. Where the mask lives depends on the backend:

- TensorFlow and PyTorch tensors take attributes: the mask is the attribute `_keras_mask`.
- JAX arrays and tracers take none: Keras keeps the mask in a table of its global state
  (`_keras_mask_dict`, keyed by `id(tensor)`, the entry dropped when the tensor is
  collected), in the module that also defines `keras.utils.clear_session` (which
  replaces that state, so the table is looked up on every call, never cached).

This module is the one place of the package that touches either (checked against Keras
3.15.1 on TensorFlow 2.21, JAX 0.10.2 and PyTorch 2.13; `tests/test_private_adapters.py`
fails when Keras stops attaching or reading the mask there). It follows Keras' own rule
(`keras.src.backend.common.tensor_attributes`): the attribute first, the table when the
tensor takes no attribute. The module of Keras' global state is found through the public
`keras.utils.clear_session` that it defines rather than imported by its `keras.src` path.
"""

from __future__ import annotations

import sys
import weakref

import keras
from keras import ops

_ATTRIBUTE = "_keras_mask"
_TABLE = f"{_ATTRIBUTE}_dict"


def _global_state():
    """Keras' module of global state (thread-local), which defines `clear_session`."""
    return sys.modules[keras.utils.clear_session.__module__]


def keras_mask_of(tensor):
    """The Keras mask attached to `tensor`, or None."""
    if hasattr(tensor, _ATTRIBUTE):
        return getattr(tensor, _ATTRIBUTE)
    table = _global_state().get_global_attribute(_TABLE)
    return None if table is None else table.get(id(tensor))


def with_keras_mask(tensor, mask):
    """`tensor` as a tensor carrying `mask` (boolean) where a Keras loss reads it; unchanged for None."""
    if mask is None:
        return tensor
    tensor = ops.convert_to_tensor(tensor)
    mask = ops.cast(mask, "bool")
    try:
        setattr(tensor, _ATTRIBUTE, mask)
    except AttributeError:
        state = _global_state()
        table = state.get_global_attribute(_TABLE)
        if table is None:
            table = {}
            state.set_global_attribute(_TABLE, table)
        table[id(tensor)] = mask
        # A new tensor may reuse the id once this one is collected: drop the entry with it.
        weakref.finalize(tensor, table.pop, id(tensor), None)
    return tensor
