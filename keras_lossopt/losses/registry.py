"""Resolving losses by short name or config: `get`, `serialize`, `deserialize`.

Each loss module registers its short aliases with `register_alias` at import time, e.g.
`register_alias("poly1", PolyLoss, epsilon=1.0)`; `get("poly1")` then builds
`PolyLoss(epsilon=1.0)`. Names that are not aliases fall back to registered class names
and finally to Keras' own losses, so `get("categorical_crossentropy")` works too.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import keras

__all__ = ["available_aliases", "deserialize", "get", "register_alias", "serialize"]

_ALIASES: dict[str, tuple[type, dict[str, Any]]] = {}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def register_alias(alias: str, loss_class: type, **defaults: Any) -> None:
    """Makes `get(alias)` build `loss_class(**defaults)`."""
    key = _normalize(alias)
    if key in _ALIASES and _ALIASES[key] != (loss_class, defaults):
        raise ValueError(f"Loss alias {alias!r} is already registered for {_ALIASES[key][0].__name__}.")
    _ALIASES[key] = (loss_class, dict(defaults))


def available_aliases() -> list[str]:
    """Sorted short names that `get` resolves."""
    return sorted(_ALIASES)


def serialize(loss: keras.losses.Loss) -> dict[str, Any]:
    """A JSON-able config of `loss` that `deserialize` / `get` turn back into an equal loss."""
    return keras.saving.serialize_keras_object(loss)


def deserialize(config: dict[str, Any]) -> keras.losses.Loss:
    """The loss described by a config from `serialize` (or Keras' own serialization)."""
    return keras.saving.deserialize_keras_object(config)


def _keras_loss_class(name: str) -> type | None:
    """Keras' loss class for a class name ("SparseCategoricalCrossentropy") or its
    snake-case function name ("sparse_categorical_crossentropy"), else None."""
    candidates = [name, "".join(part.capitalize() for part in _normalize(name).split("_"))]
    for candidate in candidates:
        found = getattr(keras.losses, candidate, None)
        if isinstance(found, type) and issubclass(found, keras.losses.Loss) and found is not keras.losses.Loss:
            return found
    return None


def _from_name(name: str, overrides: dict[str, Any]):
    key = _normalize(name)
    if key in _ALIASES:
        loss_class, defaults = _ALIASES[key]
        try:
            return loss_class(**{**defaults, **overrides})
        except TypeError as error:  # a required argument (e.g. class_counts) was not given
            raise ValueError(f"Loss {name!r} ({loss_class.__name__}) cannot be built: {error}") from error
    registered = keras.saving.get_registered_object(name if ">" in name else f"keras_lossopt>{name}")
    if registered is not None:
        return registered(**overrides)
    keras_class = _keras_loss_class(name)
    if keras_class is not None:
        return keras_class(**overrides)
    try:
        keras_function = keras.losses.get(name)
    except ValueError:
        keras_function = None
    if keras_function is not None:
        if overrides:
            raise ValueError(f"Keras loss {name!r} is a function and takes no arguments. Received: {overrides}")
        return keras_function
    suggestion = difflib.get_close_matches(key, list(_ALIASES), n=1)
    hint = f" Did you mean {suggestion[0]!r}?" if suggestion else ""
    raise ValueError(
        f"Unknown loss {name!r}. Known short names: {available_aliases()}; class names of "
        f"keras_lossopt and Keras' own losses are accepted too.{hint}"
    )


def get(identifier: Any, **overrides: Any) -> keras.losses.Loss | Callable:
    """Resolves a loss from a short name, a class name, a config dict or an instance.

    Args:
        identifier: a short name (`"focal"`, `"poly1"`, ...; see `available_aliases()`), a
            keras-lossopt or Keras class name, a config dict from `serialize` or
            `{"name": short_name, "config": {...}}`, a loss instance or a callable.
        **overrides: constructor arguments that replace the alias defaults.

    Returns:
        A `keras.losses.Loss` (or the callable that was given).

    Raises:
        ValueError: for an unknown name, naming the closest known one.

    Examples:
        >>> get("focal", gamma=1.0).gamma
        1.0
    """
    if isinstance(identifier, keras.losses.Loss) or (callable(identifier) and not isinstance(identifier, type)):
        if overrides:
            raise ValueError("Keyword overrides apply to names and configs, not to loss instances.")
        return identifier
    if isinstance(identifier, str):
        return _from_name(identifier, overrides)
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            loss = deserialize(identifier)
            if overrides:
                loss = loss.__class__.from_config({**loss.get_config(), **overrides})
            return loss
        if "name" in identifier:
            return _from_name(identifier["name"], {**identifier.get("config", {}), **overrides})
    raise ValueError(
        "A loss identifier must be a name, a config dict or a loss instance. "
        f"Received: {identifier!r} of type {type(identifier).__name__}"
    )
