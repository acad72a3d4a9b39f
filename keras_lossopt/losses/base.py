"""The contract every keras-lossopt loss keeps: Keras' masks, reductions and `sample_weight`.

`LossFunctionBase.__call__` is the one entry point of every loss in the package. Like
`keras.losses.Loss.__call__` it starts from the Keras mask of `y_pred` (`_keras_mask`, set
by `Embedding(mask_zero=True)`, `Masking` or any layer with `compute_mask`), and it adds
two things Keras' losses lack:

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
per-position (region losses over an image or the batch, compound losses) override
`compute_reduced_loss` only; they never re-implement `__call__`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lossopt._validation import check_numeric_tensor
from keras_lossopt.losses.targets import sparse_valid_mask

# `merge_masks` and `replicas_in_sync` are public for losses built outside this package
# (`keras_lossopt.shaping.CompositeLoss` uses both).
__all__ = ["LossFunctionBase", "SparseTargetLoss", "merge_masks", "reduce_loss_values", "replicas_in_sync"]

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def replicas_in_sync():
    """The number of `tf.distribute` replicas of the current strategy and the replica context.

    A loss whose divisor depends on the data sums it across replicas in the replica context;
    other backends have one replica.

    Returns:
        `(replicas, context)`: an int, and the replica context when `replicas > 1`, else None.
    """
    if keras.backend.backend() != "tensorflow":
        return 1, None
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return replicas, (tf.distribute.get_replica_context() if replicas > 1 else None)


def _distributed_mean(total, divisor, data_dependent):
    """`total / divisor` such that summing it over tf.distribute replicas gives the global mean.

    Keras divides each replica's mean by the number of replicas, which is exact only when
    every replica has the same divisor. A divisor that depends on the data (valid positions
    under `ignore_index`, the sum of sample weights) differs between replicas, so we sum it
    across replicas instead: every replica then divides by the global divisor.
    """
    divisor = ops.cast(divisor, total.dtype)
    replicas, context = replicas_in_sync()
    if replicas == 1:
        return ops.divide_no_nan(total, divisor)
    if data_dependent and context is not None:
        import tensorflow as tf

        return ops.divide_no_nan(total, context.all_reduce(tf.distribute.ReduceOp.SUM, divisor))
    return ops.divide_no_nan(total, divisor) * ops.cast(1.0 / replicas, total.dtype)


def _broadcast_weight(weight, values):
    """Aligns a weight (sample_weight or mask) with `values` over trailing axes."""
    weight = ops.cast(weight, values.dtype)
    weight_rank, values_rank = len(weight.shape), len(values.shape)
    if weight_rank == values_rank + 1 and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, axis=-1)
        weight_rank -= 1
    while weight_rank < values_rank:
        weight = ops.expand_dims(weight, axis=-1)
        weight_rank += 1
    if weight_rank > values_rank:
        raise ValueError(
            "`sample_weight` has more dimensions than the per-sample loss: "
            f"sample_weight.shape={tuple(weight.shape)}, loss values shape={tuple(values.shape)}."
        )
    for weight_dim, values_dim in zip(weight.shape, values.shape):
        if weight_dim is not None and values_dim is not None and weight_dim not in (1, values_dim):
            raise ValueError(
                f"`sample_weight` must have one weight per sample ({values.shape[0]} here) or per position: "
                f"sample_weight.shape={tuple(weight.shape)}, loss values shape={tuple(values.shape)}."
            )
    return weight


def reduce_loss_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Weights, masks and reduces per-sample loss values exactly as `keras.losses.Loss` does.

    Args:
        values: unreduced loss values, shape `(N, ...)`.
        sample_weight: optional weights broadcastable to `values` over trailing axes.
        mask: optional validity mask (bool or 0/1) of the same shape as `values`; masked
            positions contribute nothing and mean reductions divide by the valid count.
        reduction: one of Keras' reductions.

    Returns:
        A scalar, or `values` weighted but unreduced for `reduction="none"`/`None`.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {list(_REDUCTIONS)}. Received: reduction={reduction!r}")
    weight = None
    if sample_weight is not None:
        weight = _broadcast_weight(ops.convert_to_tensor(sample_weight), values)
    if mask is not None:
        mask = _broadcast_weight(mask, values)
        weight = mask if weight is None else weight * mask
    if weight is not None:
        values = values * weight
    if reduction is None or reduction == "none" or tuple(values.shape) in ((), (0,)):
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        return _distributed_mean(total, ops.sum(ops.broadcast_to(weight, ops.shape(values))), True)
    if mask is not None:
        return _distributed_mean(total, ops.sum(ops.broadcast_to(mask, ops.shape(values))), True)
    count = ops.prod(ops.convert_to_tensor(ops.shape(values), dtype="int32"))
    return _distributed_mean(total, count, False)


def keras_mask_of(y_pred):
    """The Keras mask attached to `y_pred` (by `Embedding(mask_zero=True)`, `Masking`, ...), or None.

    Keras keeps the mask as the `_keras_mask` attribute of the tensor, which is where
    `keras.losses.Loss.__call__` reads it; there is no public getter. Backends whose
    arrays take no attributes (JAX) keep it in a private Keras table that this adapter
    does not read: on JAX pass the mask as `sample_weight` instead.
    """
    return getattr(y_pred, "_keras_mask", None)


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


class LossFunctionBase(keras.losses.Loss):
    """Base class of every keras-lossopt loss (see the module docstring for the contract).

    Targets keep an integer dtype when given as integers (sparse class indices); float
    targets and predictions are cast to the loss dtype, which is float32 unless `dtype`
    says otherwise, also under the `mixed_float16`/`mixed_bfloat16` policies. A Keras
    mask on `y_pred` is honoured exactly as `keras.losses.Loss` honours it.

    The constructor is `keras.losses.Loss`'s: `reduction` (default
    `"sum_over_batch_size"`), `name`, and `dtype` (default None: float32 under any mixed
    policy).
    """

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

        Region and compound losses override this step only.

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

    # Arithmetic builds a `keras_lossopt.shaping.CompositeLoss` (`FocalLoss() + 0.5 * DiceLoss()`).
    # `shaping` is built on `losses`, so it is imported when the operator is used.
    def __add__(self, other):
        from keras_lossopt.shaping.composite import CompositeLoss

        return CompositeLoss.from_operands(self, other)

    def __radd__(self, other):
        from keras_lossopt.shaping.composite import CompositeLoss

        return CompositeLoss.from_operands(other, self)

    def __mul__(self, factor):
        from keras_lossopt.shaping.composite import CompositeLoss

        return CompositeLoss.scaled(self, factor)

    __rmul__ = __mul__


def _is_integer_dtype(dtype) -> bool:
    name = keras.backend.standardize_dtype(dtype)
    return name.startswith("int") or name.startswith("uint") or name == "bool"


class SparseTargetLoss(LossFunctionBase):
    """Base of the softmax losses that take sparse class indices with an `ignore_index`.

    Subclasses set `self.ignore_index` (None or an int); positions whose sparse label
    equals it are masked out of the reduction (mean reductions divide by the others).
    """

    ignore_index = None

    def compute_mask(self, y_true, y_pred):
        return sparse_valid_mask(y_true, y_pred, self.ignore_index)
