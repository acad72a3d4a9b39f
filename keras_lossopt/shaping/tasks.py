"""`task_losses`: one composite per output of a multi-output model, so that schedules and
adaptive weighting address each output's loss by the output's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_lossopt.losses.composite import CompositeLoss

__all__ = ["task_losses"]


def task_losses(losses: Mapping[str, Any]) -> dict[str, CompositeLoss]:
    """One single-term `CompositeLoss` per output of a multi-output model, named after the output.

    Compile a multi-output model with it (`model.compile(loss=task_losses({"digit": ce, "size": "mse"}))`)
    so that schedules and adaptive weighting address each output's loss by the output's name.

    Args:
        losses: `{output name: loss}`; a loss is anything `CompositeLoss` accepts as a term.

    Returns:
        `{output name: CompositeLoss({output name: loss})}`.

    Raises:
        ValueError: as `CompositeLoss`.

    Examples:
        >>> losses = task_losses({"digit": "sparse_categorical_crossentropy", "size": "mse"})
        >>> [loss.term_names for loss in losses.values()]
        [('digit',), ('size',)]
    """
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError(f"`losses` must be a non-empty dict {{output name: loss}}. Received: {losses!r}")
    return {output: CompositeLoss({output: loss}, name=f"{output}_loss") for output, loss in losses.items()}
