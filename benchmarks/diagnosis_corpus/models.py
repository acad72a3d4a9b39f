"""Model builders of the corpus: MLP (depth 1-8 and deeper for the faults), small CNN, small LSTM/GRU.

A `RunSpec` (see `space.py`) names the architecture; `build_model(spec, data)` returns the
uncompiled Keras model. Hidden layers are named `dense_<i>` / `conv_<i>` / `rnn`, the output
layer `out`, so findings name them in the records.
"""

from __future__ import annotations

from typing import Any

import keras

L = keras.layers

__all__ = ["build_model", "output_units"]


def _initializer(spec: Any):
    if spec.init_std is not None:
        return keras.initializers.RandomNormal(stddev=spec.init_std)
    if spec.kernel_init == "variance_scaling_2":  # AUTOTRAINER's VarianceScaling(2.0, fan_in, uniform)
        return keras.initializers.VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform")
    return spec.kernel_init


def _block(x, units, spec, index, bias):
    """Dense (or conv) -> [BatchNorm] -> activation -> [Dropout]."""
    init = _initializer(spec)
    if spec.batchnorm:
        x = L.Dense(units, kernel_initializer=init, bias_initializer=bias, name=f"dense_{index}")(x)
        x = L.BatchNormalization(name=f"bn_{index}")(x)
        x = L.Activation(spec.activation, name=f"act_{index}")(x)
    else:
        x = L.Dense(
            units, activation=spec.activation, kernel_initializer=init, bias_initializer=bias, name=f"dense_{index}"
        )(x)
    if spec.dropout:
        x = L.Dropout(spec.dropout, name=f"dropout_{index}")(x)
    return x


def output_units(spec: Any, num_classes: int) -> int:
    if spec.output in ("sigmoid_binary", "linear", "softmax_one_unit", "relu_binary"):
        return 1
    return num_classes


def _output_activation(spec: Any) -> str | None:
    return {
        "logits": None,
        "softmax": "softmax",
        "softmax_onehot": "softmax",
        "sigmoid_binary": "sigmoid",
        "linear": None,
        "relu": "relu",
        "sigmoid_multiclass": "sigmoid",
        "softmax_one_unit": "softmax",
        "relu_binary": "relu",
    }[spec.output]


def build_model(spec: Any, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = inputs
    bias = keras.initializers.Constant(spec.hidden_bias)
    dead = set(spec.dead_layers)
    if spec.architecture == "cnn":
        for i, filters in enumerate((8, 16)):
            x = L.Conv2D(
                filters,
                3,
                padding="same",
                activation=None if spec.batchnorm else spec.activation,
                kernel_initializer=_initializer(spec),
                name=f"conv_{i}",
            )(x)
            if spec.batchnorm:
                x = L.BatchNormalization(name=f"bn_{i}")(x)
                x = L.Activation(spec.activation, name=f"act_{i}")(x)
            x = L.MaxPooling2D(name=f"pool_{i}")(x)
        x = L.Flatten(name="flatten")(x)
        if spec.dropout:
            x = L.Dropout(spec.dropout, name="dropout")(x)
    elif spec.architecture in ("lstm", "gru"):
        rnn = L.LSTM if spec.architecture == "lstm" else L.GRU
        x = rnn(spec.width, name="rnn")(x)
        if spec.dropout:
            x = L.Dropout(spec.dropout, name="dropout")(x)
    else:
        if len(input_shape) > 1:
            x = L.Flatten(name="flatten")(x)
        for i in range(spec.depth):
            layer_bias = keras.initializers.Constant(spec.dead_bias) if i in dead else bias
            x = _block(x, spec.width, spec, i, layer_bias)
    x = L.Dense(
        output_units(spec, num_classes),
        activation=_output_activation(spec),
        kernel_initializer=_initializer(spec) if spec.init_std is not None else "glorot_uniform",
        name="out",
    )(x)
    return keras.Model(inputs, x, name=spec.id.replace("/", "_"))
