"""Adapter: registers keras_lossopt's serializable classes as soon as Keras (and TensorFlow) are loaded.

`import keras_lossopt` imports no TensorFlow (the command checks its arguments first, and
the import stays cheap), yet a saved model must load after `import keras_lossopt` in either
order with `import keras`, and after importing any subpackage first. `install` imports the
registering subpackages at once when their dependencies are loaded, else it puts a finder
on `sys.meta_path` that wraps the loaders of `keras`, `tensorflow` and our subpackages and
removes itself once everything is registered.

Keras can finish loading in the middle of one of our own imports (`import keras_lossopt.losses`
in a fresh process: `losses/__init__.py` -> `losses/asymmetric.py` -> `import keras`), when the
modules on the import stack have defined nothing yet. Registration then imports the other
subpackages at once; that is safe because no registering subpackage takes a name from
another one's `__init__` at the top of a module (they import modules such as
`keras_lossopt.losses.composite`, and the imports only go down: tests/test_package_layering.py
checks both). TensorFlow, in turn, counts as loaded only once its own import has completed:
whether a module is still initializing is the CPython import system's private flag
`module.__spec__._initializing` (set by `importlib._bootstrap` while a module executes;
checked on CPython 3.11; tests/test_private_adapters.py fails when it changes). A loader's
`exec_module` is the public hook the finder wraps.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

# Subpackages whose import registers classes with Keras' serialization (losses, metrics,
# composite terms, attacks, AdversarialModel, callbacks), so `keras.models.load_model` finds
# them without `custom_objects`. The first four need only Keras (the attacks import a backend's
# autodiff inside functions, on every backend); the others import TensorFlow at module level.
KERAS_ONLY = ("losses", "metrics", "shaping", "adversarial")
NEEDS_TENSORFLOW = ("callbacks",)


def is_initializing(module) -> bool:
    """Whether `module` is in the middle of its own import (CPython's private `_initializing` flag)."""
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _loaded(name: str, just_loaded: str | None = None) -> bool:
    """Whether module `name` is imported completely (not in the middle of its own import)."""
    if name == just_loaded:
        return True
    module = sys.modules.get(name)
    return module is not None and not is_initializing(module)


def register_serializables(just_loaded: str | None = None) -> bool:
    """Imports the registering subpackages whose dependencies are loaded; True when all are done."""
    if not _loaded("keras", just_loaded):
        return False
    names = KERAS_ONLY + (NEEDS_TENSORFLOW if _loaded("tensorflow", just_loaded) else ())
    for name in names:
        if f"keras_lossopt.{name}" not in sys.modules:
            importlib.import_module(f"keras_lossopt.{name}")
    return all(f"keras_lossopt.{name}" in sys.modules for name in KERAS_ONLY + NEEDS_TENSORFLOW)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Runs `register_serializables` right after a watched module finishes importing."""

    def __init__(self, subpackages):
        # Our own subpackages too: when Keras loads during one of their imports, registration
        # runs once that import completes.
        self.watched = ("keras", "tensorflow", *(f"keras_lossopt.{name}" for name in subpackages))

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
            if register_serializables(just_loaded=fullname) and self in sys.meta_path:
                sys.meta_path.remove(self)

        loader.exec_module = exec_and_register
        return spec


def install(subpackages) -> None:
    """Registers now when Keras is loaded, else when it (or one of `subpackages`) finishes loading."""
    if not register_serializables():
        sys.meta_path.insert(0, _RegisterWhenKerasLoads(subpackages))
