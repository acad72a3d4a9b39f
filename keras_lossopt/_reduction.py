"""Keras' loss reductions with validity masks and `tf.distribute` divisors, shared by the packages.

`reduce_loss_values` is the reduction step of the loss contract (`keras_lossopt.losses.base`):
it applies `sample_weight` (broadcast over trailing axes), a validity mask and one of Keras'
reductions. The adversarial TRADES term reduces its per-sample KL divergence with it too, so
the two agree under every reduction and under `MirroredStrategy`.
"""

from __future__ import annotations

import keras
from keras import ops

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


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


def distributed_mean(total, divisor, data_dependent):
    """`total / divisor` such that summing it over tf.distribute replicas gives the global mean.

    Keras divides each replica's mean by the number of replicas, which is exact only when
    every replica has the same divisor. A divisor that depends on the data (valid positions
    under `ignore_index`, the sum of sample weights) differs between replicas, so we sum it
    across replicas instead: every replica then divides by the global divisor.
    """
    divisor = ops.cast(divisor, total.dtype)
    replicas, context = replicas_in_sync()
    if replicas == 1:
        return _divide_no_nan(total, divisor)
    if data_dependent and context is not None:
        import tensorflow as tf

        return _divide_no_nan(total, context.all_reduce(tf.distribute.ReduceOp.SUM, divisor))
    return _divide_no_nan(total, divisor) * ops.cast(1.0 / replicas, total.dtype)


def _divide_no_nan(total, divisor):
    """`total / divisor`, 0 where the divisor is 0, in `total`'s dtype.

    Not `ops.divide_no_nan`: on PyTorch (Keras 3.15, torch 2.13) it returns float32 for float64
    input (`torch.where` with a Python 0), which turned a float64 loss into a float32 one.
    """
    empty = ops.equal(divisor, 0)
    quotient = total / ops.where(empty, ops.ones_like(divisor), divisor)
    return ops.where(empty, ops.zeros_like(quotient), quotient)


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
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {list(REDUCTIONS)}. Received: reduction={reduction!r}")
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
        return distributed_mean(total, ops.sum(ops.broadcast_to(weight, ops.shape(values))), True)
    if mask is not None:
        return distributed_mean(total, ops.sum(ops.broadcast_to(mask, ops.shape(values))), True)
    count = ops.prod(ops.convert_to_tensor(ops.shape(values), dtype="int32"))
    return distributed_mean(total, count, False)
