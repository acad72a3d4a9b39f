"""Models the command trains: one chosen to fit the data, or the user's `.keras` file.

Tabular vectors get an MLP, images a small CNN, per-pixel labels a small U-Net. Every
model outputs logits: one unit for binary tasks, one per class otherwise. A user model
is cloned for every run so that each seed starts from fresh weights.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from keras_lossopt.cli.paths import DataError
from keras_lossopt.datasets import Dataset

if TYPE_CHECKING:
    import keras

__all__ = ["model_builder"]


def _output_units(dataset: Dataset) -> int:
    """1 for binary tasks (a sigmoid logit), else the number of classes."""
    return 1 if dataset.task == "binary" else dataset.num_classes


def _mlp(input_shape, units):
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(units),
        ],
        name="mlp",
    )


def _cnn(input_shape, units):
    import keras

    if len(input_shape) == 2:
        input_shape = (*input_shape, 1)
    small = min(input_shape[:2]) < 16
    layers = [keras.Input(input_shape), keras.layers.Conv2D(16, 3, padding="same", activation="relu")]
    if not small:
        layers += [keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, padding="same", activation="relu")]
    layers += [keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(units)]
    return keras.Sequential(layers, name="small_cnn")


def _unet(input_shape, units):
    import keras

    inputs = keras.Input(input_shape)
    down = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    bottom = keras.layers.MaxPooling2D()(down)
    bottom = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(bottom)
    up = keras.layers.UpSampling2D()(bottom)
    merged = keras.layers.Concatenate()([up, down])
    merged = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(merged)
    return keras.Model(inputs, keras.layers.Conv2D(units, 1)(merged), name="small_unet")


def _reshape_inputs(dataset: Dataset) -> tuple[int, ...]:
    return tuple(dataset.x_train.shape[1:])


def model_builder(dataset: Dataset, model_path: str | None = None) -> tuple[Callable[[], keras.Model], str]:
    """A function that builds a fresh, uncompiled model for `dataset`, and its description.

    The default models are checked against the data here, without Keras (it is imported
    when the function is called); a user model is loaded (with Keras) and checked.

    Args:
        dataset: the data the model is for.
        model_path: a `.keras` file, or None for the default model of the data.

    Returns:
        `(make_model, description)`.

    Raises:
        DataError: for a missing or unreadable model file, or one whose input or output
            does not fit the data.
    """
    units = _output_units(dataset)
    input_shape = _reshape_inputs(dataset)
    if model_path is None:
        if dataset.task == "segmentation":
            if input_shape[0] % 2 or input_shape[1] % 2:
                raise DataError(
                    f"the default U-Net needs even image height and width; images have shape {input_shape} "
                    "(pad or crop them, or pass --model)"
                )
            return (lambda: _unet(input_shape, units)), "small U-Net"
        if len(input_shape) >= 2:
            return (lambda: _cnn(input_shape, units)), "small CNN"
        return (lambda: _mlp(input_shape, units)), "MLP (64 hidden units)"
    import keras

    path = pathlib.Path(model_path)
    if not path.is_file():
        raise DataError(f"model file not found: {model_path}")
    try:
        template = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise DataError(f"cannot load model {model_path}: {str(error).splitlines()[0]}") from None
    expected_output = (*input_shape[:-1], units) if dataset.task == "segmentation" else (units,)
    model_input = tuple(template.inputs[0].shape[1:])
    if any(m is not None and m != d for m, d in zip(model_input, input_shape)) or len(model_input) != len(input_shape):
        raise DataError(f"model {path.name} takes inputs of shape {model_input}, but the data has {input_shape}")
    model_output = tuple(template.outputs[0].shape[1:])
    if model_output[-1] != expected_output[-1] or len(model_output) != len(expected_output):
        raise DataError(
            f"model {path.name} outputs shape {model_output}, but a {dataset.task} task with "
            f"{dataset.num_classes} classes needs {expected_output} (logits)"
        )
    return (lambda: keras.models.clone_model(template)), f"user model {path.name}"
