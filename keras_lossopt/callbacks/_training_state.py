"""Where a backend's `fit` keeps the training state between steps (a private Keras behaviour).

TensorFlow and torch train the model's variables in place: a callback reads and writes
them at any time. Keras' JAX trainer runs a stateless step: during an epoch the current
weights, optimizer slots and metric values live in the model's private `_jax_state`,
and the variables themselves are emptied (`_purge_model_variables`, to save memory).
`model.jax_state_sync()` writes that state back into the variables and marks it synced;
the next step then gathers its state from the variables again, so a value a callback
assigns after the sync (restored weights, a learning rate, reset slots) is the one the
next step trains with. `keras.callbacks.Callback.model` calls it on every access for
the same reason. `tests/test_private_adapters.py` fails when this changes.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["sync_training_state"]


def sync_training_state(model: Any) -> None:
    """Makes `model`'s variables hold the running fit's values, and the next step read them.

    Call it before reading a variable on the host during `fit` or before assigning one
    that the next step must see. A no-op outside JAX and outside `fit`.

    Args:
        model: the model being trained.
    """
    if keras.backend.backend() == "jax":
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()
