"""Reading a model's structure: its layers with nested models expanded, the activations they apply.

The one model-walking helper of the package, shared by the training diagnostics
(`keras_lossopt.callbacks`) and the attacks (`keras_lossopt.adversarial`, which must know
whether a model outputs logits). Only public Keras attributes are read (`layers`,
`activation`).
"""

from __future__ import annotations

from typing import Any

_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")


def flat_layers(model: Any, *, with_nested_models: bool = False) -> list[Any]:
    """The model's layers with nested models expanded, input side first.

    Args:
        model: a Keras model (anything without `layers` has none).
        with_nested_models: also list each nested model, after its own layers.

    Returns:
        The layers, in the order of `model.layers`.
    """
    import keras

    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            out.extend(flat_layers(layer, with_nested_models=with_nested_models))
            if with_nested_models:
                out.append(layer)
        else:
            out.append(layer)
    return out


def activation_name(layer: Any) -> str | None:
    """Name of the activation a layer applies (`"relu"`, `"sigmoid"`, ...), or None."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def detect_from_logits(model: Any) -> bool | None:
    """Whether `model`'s output is logits (True), probabilities (False) or unknown (None).

    Looks at the activation of the last layer of a Sequential or functional model: a
    softmax/sigmoid activation (or `Softmax` layer) means probabilities, a linear one logits.
    """
    import keras

    layers = getattr(model, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return False
    activation = getattr(last, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    if name in _PROBABILITY_ACTIVATIONS:
        return False
    if name == "linear":
        return True
    return None
