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
import importlib.abc
import sys
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = ("losses", "metrics", "callbacks", "adversarial", "tuning", "datasets", "shaping")

# Subpackages whose import registers classes with Keras' serialization (losses, metrics,
# composite losses, attacks, AdversarialModel, callbacks), so `keras.models.load_model` finds them without
# `custom_objects`. The first two need only Keras; the others import TensorFlow at module level.
_KERAS_ONLY = ("losses", "metrics", "shaping")
_NEEDS_TENSORFLOW = ("callbacks", "adversarial")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"keras_lossopt.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_lossopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def _loaded(name: str, just_loaded: str | None = None) -> bool:
    """Whether module `name` is imported completely (not in the middle of its own import)."""
    if name == just_loaded:
        return True
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _importing_ours(just_loaded: str | None = None) -> bool:
    """Whether a module of this package is in the middle of its import (other than `just_loaded`)."""
    return any(
        name.startswith("keras_lossopt.") and name != just_loaded and not _loaded(name) for name in list(sys.modules)
    )


def _register_serializables(just_loaded: str | None = None) -> bool:
    """Imports the registering subpackages whose dependencies are loaded; True when all are done.

    Keras may finish loading in the middle of one of our own imports (`import keras_lossopt.shaping`
    imports `losses`, which imports Keras): importing the other subpackages then would meet a
    partially initialized one, so registration waits until our outermost import completes.
    """
    if not _loaded("keras", just_loaded) or _importing_ours(just_loaded):
        return False
    names = _KERAS_ONLY + (_NEEDS_TENSORFLOW if _loaded("tensorflow", just_loaded) else ())
    for name in names:
        if f"keras_lossopt.{name}" not in sys.modules:
            __getattr__(name)
    return all(f"keras_lossopt.{name}" in sys.modules for name in _KERAS_ONLY + _NEEDS_TENSORFLOW)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers keras_lossopt's classes right after `keras` (and `tensorflow`) finish importing.

    `import keras_lossopt` must not import TensorFlow itself (the command checks its
    arguments first, and the import stays cheap), yet a saved model must load after
    `import keras_lossopt` in either order with `import keras`. This finder wraps only the
    loaders of `keras`, `tensorflow` and our subpackages, and removes itself once everything is
    registered.
    """

    # Our own subpackages too: when Keras loads during one of their imports, registration runs
    # once that import completes.
    watched = ("keras", "tensorflow", *(f"keras_lossopt.{name}" for name in _SUBPACKAGES))

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.watched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            if _register_serializables(just_loaded=fullname) and self in sys.meta_path:
                sys.meta_path.remove(self)

        loader.exec_module = exec_and_register
        return spec


if not _register_serializables():
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
