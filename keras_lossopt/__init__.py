"""keras-lossopt: better losses, gradient monitoring, adversarial robustness and loss search for Keras 3.

`import keras_lossopt` stays cheap: it imports no TensorFlow itself. The subpackages that
register classes with Keras' serialization (losses, metrics, shaping, callbacks, adversarial) are
imported as soon as Keras (and TensorFlow) are loaded, before or after this package, so
`keras.models.load_model` needs no `custom_objects`; the others load on first use:

* `keras_lossopt.losses` - classification and segmentation losses, `get(name)`.
* `keras_lossopt.metrics` - metrics that match the losses (dice, IoU, macro-F1, ...).
* `keras_lossopt.callbacks` - gradient monitoring and training diagnostics.
* `keras_lossopt.adversarial` - attacks, adversarial training, robustness evaluation.
* `keras_lossopt.tuning` - keras-tuner integration: search over the loss.
* `keras_lossopt.datasets` - offline, seeded built-in datasets.
* `keras_lossopt.shaping` - composite losses, reward/penalty terms, scheduled and adaptive term weights.
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_lossopt import _registration

__version__ = "0.1.0"

_SUBPACKAGES = ("losses", "metrics", "callbacks", "adversarial", "tuning", "datasets", "shaping")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"keras_lossopt.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_lossopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


_registration.install(_SUBPACKAGES)
