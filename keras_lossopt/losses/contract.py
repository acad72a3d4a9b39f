"""The contract every keras-lossopt loss keeps: Keras' masks, reductions and `sample_weight`.

`LossContract.__call__` is the one entry point of every loss in the package. Like
`keras.losses.Loss.__call__` it starts from the Keras mask of `y_pred` (set by
`Embedding(mask_zero=True)`, `Masking` or any layer with `compute_mask`), and it adds two
things Keras' losses lack:

* the loss' own *validity mask* from `compute_mask(y_true, y_pred)` (used for
  `ignore_index`), merged with the Keras mask: masked positions count nowhere and mean
  reductions divide by the number of valid positions, as Keras does for masked timesteps;
* `sample_weight` broadcasting over trailing axes, so a per-image weight of shape `(N,)`
  applies to a per-pixel loss of shape `(N, H, W)`.

The steps of `__call__`:

1. read the Keras mask of `y_pred` (before any cast, which would drop it);
2. `standardize_inputs`: `y_pred` and float `y_true` in the loss dtype, integer labels kept;
3. merge the Keras mask with `compute_mask(y_true, y_pred)` (`merge_masks`);
4. `compute_reduced_loss(y_true, y_pred, sample_weight, mask)`: by default the per-sample
   values of `call(y_true, y_pred)` reduced by `reduce_loss_values` (Keras' reductions
   `sum_over_batch_size`, `sum`, `mean`, `mean_with_sample_weight`, `none`, with scaling
   for `tf.distribute` replicas).

Subclasses implement `call(y_true, y_pred)` returning one unreduced value per sample
(and per spatial position), with the class axis already reduced. Losses that are not
per-position (region losses over an image or the batch, composite losses) override
`compute_reduced_loss` only; they never re-implement `__call__`. The loss arithmetic
(`FocalLoss() + 0.5 * DiceLoss()`) sits one step above, in `composite.py`, and
`base.LossFunctionBase` joins the two.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._reduction import reduce_loss_values
from keras_lossopt._validation import check_numeric_tensor
from keras_lossopt.losses._keras_mask import keras_mask_of

__all__ = ["LossContract"]


def merge_masks(dtype, *masks):
    """The product of the masks that are not None, as `dtype` (None when all are None).

    A lower-rank mask is aligned with a higher-rank one over trailing axes, so a
    per-time-step Keras mask `(N, T)` combines with a per-position mask `(N, T)` or `(N, T, 1)`.

    Args:
        dtype: the dtype of the merged mask (the loss dtype).
        *masks: masks (boolean or numeric tensors) or None.

    Returns:
        The merged mask with the rank of the highest-rank mask, or None.
    """
    present = [ops.cast(m, dtype) for m in masks if m is not None]
    if not present:
        return None
    merged = present[0]
    for mask in present[1:]:
        while len(mask.shape) < len(merged.shape):
            mask = ops.expand_dims(mask, -1)
        while len(merged.shape) < len(mask.shape):
            merged = ops.expand_dims(merged, -1)
        merged = merged * mask
    return merged


class FamilyFromMode:
    """`loss_family` of a loss with a `mode`: `"sigmoid_ce"` for binary/multilabel, else `"softmax_ce"`."""

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return "sigmoid_ce" if instance.mode in ("binary", "multilabel") else "softmax_ce"


def _is_integer_dtype(dtype) -> bool:
    name = keras.backend.standardize_dtype(dtype)
    return name.startswith("int") or name.startswith("uint") or name == "bool"


class LossContract(keras.losses.Loss):
    """The loss contract (see the module docstring); losses subclass `LossFunctionBase`.

    Targets keep an integer dtype when given as integers (sparse class indices); float
    targets and predictions are cast to the loss dtype, which is float32 unless `dtype`
    says otherwise, also under the `mixed_float16`/`mixed_bfloat16` policies. A Keras
    mask on `y_pred` is honoured exactly as `keras.losses.Loss` honours it.

    The constructor is `keras.losses.Loss`'s: `reduction` (default
    `"sum_over_batch_size"`), `name`, and `dtype` (default None: float32 under any mixed
    policy).
    """

    #: What the loss expects of `y_pred`, read by the checks before training
    #: (`keras_lossopt.callbacks.check_training_setup`): `"softmax_ce"` (class scores through a
    #: softmax), `"sigmoid_ce"` (independent sigmoids), `"regression"`, `"other"`, or None when
    #: the loss does not say (its name then decides, as for Keras' losses).
    loss_family: str | None = None

    def __call__(self, y_true, y_pred, sample_weight=None):
        input_mask = keras_mask_of(y_pred)
        with keras.name_scope(self.name):
            return self.masked_call(y_true, y_pred, sample_weight, input_mask)

    def masked_call(self, y_true, y_pred, sample_weight=None, mask=None):
        """`__call__` with the input mask given explicitly (used by losses that hold child losses).

        Args:
            y_true: targets.
            y_pred: predictions.
            sample_weight: optional weights, per sample or per position.
            mask: optional validity mask of the positions (e.g. a Keras mask), merged with
                `compute_mask(y_true, y_pred)`.

        Returns:
            The reduced loss, or unreduced values for `reduction="none"`.
        """
        y_true, y_pred = self.standardize_inputs(y_true, y_pred)
        mask = merge_masks(y_pred.dtype, mask, self.compute_mask(y_true, y_pred))
        return self.compute_reduced_loss(y_true, y_pred, sample_weight, mask)

    def compute_reduced_loss(self, y_true, y_pred, sample_weight, mask):
        """The reduction step: per-sample values of `call`, weighted, masked and reduced.

        Region and composite losses override this step only.

        Args:
            y_true: standardized targets.
            y_pred: standardized predictions.
            sample_weight: optional weights, per sample or per position.
            mask: the merged validity mask (Keras mask and `compute_mask`), or None.

        Returns:
            The reduced loss, or unreduced values for `reduction="none"`.
        """
        return reduce_loss_values(self.call(y_true, y_pred), sample_weight, mask, self.reduction)

    def standardize_inputs(self, y_true, y_pred):
        """Tensors in the loss dtype; integer targets (class indices) stay integers."""
        check_numeric_tensor("y_true", y_true)
        check_numeric_tensor("y_pred", y_pred)
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.dtype != self.dtype:
            y_pred = ops.cast(y_pred, self.dtype)
        y_true = ops.convert_to_tensor(y_true)
        if not _is_integer_dtype(y_true.dtype) and y_true.dtype != self.dtype:
            y_true = ops.cast(y_true, self.dtype)
        return y_true, y_pred

    def get_config(self):
        return {**super().get_config(), "dtype": self.dtype}

    def compute_mask(self, y_true, y_pred):
        """Validity mask of the per-sample values, or `None` when every position counts."""
        return None
