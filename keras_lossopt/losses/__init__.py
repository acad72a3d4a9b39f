"""Loss functions: `keras.losses.Loss` subclasses and their per-sample functions.

Every loss keeps the contract in `keras_lossopt.losses.base` (Keras reductions,
`sample_weight`, ignore masks) and is registered for `.keras` saving under the package
name "keras_lossopt". `get(name_or_config)` resolves short names such as "focal".
"""

from keras_lossopt.losses.asymmetric import AsymmetricLoss, asymmetric_loss
from keras_lossopt.losses.base import LossFunctionBase, reduce_loss_values
from keras_lossopt.losses.class_balanced import ClassBalancedLoss, class_balanced_weights
from keras_lossopt.losses.compound import DiceCELoss, DiceFocalLoss
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.long_tail import LDAMLoss, LogitAdjustedLoss, ldam_loss, ldam_margins, logit_adjusted_loss
from keras_lossopt.losses.lovasz import LovaszHingeLoss, LovaszSoftmaxLoss
from keras_lossopt.losses.noise_robust import (
    GeneralizedCrossEntropy,
    SymmetricCrossEntropy,
    generalized_cross_entropy,
    symmetric_cross_entropy,
)
from keras_lossopt.losses.overlap import DiceLoss, FocalTverskyLoss, GeneralizedDiceLoss, JaccardLoss, TverskyLoss
from keras_lossopt.losses.poly import PolyLoss, poly_loss
from keras_lossopt.losses.registry import deserialize, get, serialize

__all__ = [
    "AsymmetricLoss",
    "ClassBalancedLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "GeneralizedCrossEntropy",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossFunctionBase",
    "LovaszHingeLoss",
    "LovaszSoftmaxLoss",
    "PolyLoss",
    "SymmetricCrossEntropy",
    "TverskyLoss",
    "asymmetric_loss",
    "class_balanced_weights",
    "deserialize",
    "focal_loss",
    "generalized_cross_entropy",
    "get",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "poly_loss",
    "reduce_loss_values",
    "serialize",
    "symmetric_cross_entropy",
]
