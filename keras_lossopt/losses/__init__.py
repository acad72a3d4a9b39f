"""Loss functions: `keras.losses.Loss` subclasses and their per-sample functions.

Every loss keeps the contract in `keras_lossopt.losses.contract` (Keras masks and reductions,
`sample_weight`, ignore masks), combines with others by `+` and `*` into a `CompositeLoss`, and is
registered for `.keras` saving under the package name "keras_lossopt". Each class `XLoss` has
its per-sample function `x_loss`, as in Keras (`FocalLoss` / `focal_loss`). `get(name_or_config)`
resolves short names such as "focal".
"""

from keras_lossopt.losses.asymmetric import AsymmetricLoss, asymmetric_loss
from keras_lossopt.losses.base import LossFunctionBase, SparseTargetLoss
from keras_lossopt.losses.boundary import BoundaryLoss, boundary_loss
from keras_lossopt.losses.class_balanced import ClassBalancedLoss, class_balanced_weights
from keras_lossopt.losses.cldice import (
    SoftClDiceLoss,
    SoftDiceClDiceLoss,
    soft_cldice_loss,
    soft_dice_cldice_loss,
    soft_skeleton,
)
from keras_lossopt.losses.composite import CompositeLoss, FunctionTerm
from keras_lossopt.losses.compound import DiceCELoss, DiceFocalLoss, dice_ce_loss, dice_focal_loss
from keras_lossopt.losses.contract import LossContract
from keras_lossopt.losses.distance_maps import distance_to_nearest, signed_distance_maps
from keras_lossopt.losses.focal import FocalLoss, focal_loss
from keras_lossopt.losses.generalized_dice import GeneralizedDiceLoss, generalized_dice_loss
from keras_lossopt.losses.hausdorff import HausdorffDTLoss, HausdorffERLoss, hausdorff_dt_loss, hausdorff_er_loss
from keras_lossopt.losses.long_tail import LDAMLoss, LogitAdjustedLoss, ldam_loss, ldam_margins, logit_adjusted_loss
from keras_lossopt.losses.lovasz import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge_loss, lovasz_softmax_loss
from keras_lossopt.losses.noise_robust import (
    GeneralizedCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
    generalized_cross_entropy_loss,
    symmetric_cross_entropy_loss,
)
from keras_lossopt.losses.overlap import DiceLoss, JaccardLoss, dice_loss, jaccard_loss
from keras_lossopt.losses.poly import PolyLoss, poly1_term, poly_loss
from keras_lossopt.losses.registry import available_aliases, deserialize, get, register_alias, serialize
from keras_lossopt.losses.tversky import FocalTverskyLoss, TverskyLoss, focal_tversky_loss, tversky_loss
from keras_lossopt.losses.weight_penalty import WeightPenalty

__all__ = [
    "AsymmetricLoss",
    "BoundaryLoss",
    "ClassBalancedLoss",
    "CompositeLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "FunctionTerm",
    "GeneralizedCrossEntropyLoss",
    "GeneralizedDiceLoss",
    "HausdorffDTLoss",
    "HausdorffERLoss",
    "JaccardLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossContract",
    "LossFunctionBase",
    "LovaszHingeLoss",
    "LovaszSoftmaxLoss",
    "PolyLoss",
    "SoftClDiceLoss",
    "SoftDiceClDiceLoss",
    "SparseTargetLoss",
    "SymmetricCrossEntropyLoss",
    "TverskyLoss",
    "WeightPenalty",
    "asymmetric_loss",
    "available_aliases",
    "boundary_loss",
    "class_balanced_weights",
    "deserialize",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_loss",
    "distance_to_nearest",
    "focal_loss",
    "focal_tversky_loss",
    "generalized_cross_entropy_loss",
    "generalized_dice_loss",
    "get",
    "hausdorff_dt_loss",
    "hausdorff_er_loss",
    "jaccard_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "poly1_term",
    "poly_loss",
    "register_alias",
    "serialize",
    "signed_distance_maps",
    "soft_cldice_loss",
    "soft_dice_cldice_loss",
    "soft_skeleton",
    "symmetric_cross_entropy_loss",
    "tversky_loss",
]
