"""Loss functions: `keras.losses.Loss` subclasses and their per-sample functions.

Every loss keeps the contract in `keras_lossopt.losses.base` (Keras reductions,
`sample_weight`, ignore masks) and is registered for `.keras` saving under the package
name "keras_lossopt". `get(name_or_config)` resolves short names such as "focal".
"""

from keras_lossopt.losses.base import LossFunctionBase, reduce_loss_values
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.registry import deserialize, get, serialize

__all__ = [
    "FocalLoss",
    "LossFunctionBase",
    "deserialize",
    "focal_loss",
    "get",
    "reduce_loss_values",
    "serialize",
]
