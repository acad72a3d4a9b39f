"""`keras-lossopt search --space`: which parts of the training objective a search varies.

Checked with the standard library only, before TensorFlow starts. The loss is always
searched (the search chooses the loss; the other parts are searched with it):

    --space loss                          the loss and its parameters, Adam's learning rate (default)
    --space loss,optimizer                + the optimizer family and its parameters
    --space loss,regularization           + the weight penalty, label smoothing and dropout strengths
    --space loss,optimizer,regularization all three
"""

from __future__ import annotations

import difflib

__all__ = ["SPACE_PARTS", "parse_space"]

SPACE_PARTS = ("loss", "optimizer", "regularization")
"""The parts `--space` may name, in the order a report adds them."""


def parse_space(text: str) -> list[str]:
    """The parts a `--space` value names, in `SPACE_PARTS` order.

    Args:
        text: a comma-separated list, e.g. `"loss,optimizer"`.

    Returns:
        The parts, e.g. `["loss", "optimizer"]`.

    Raises:
        ValueError: for an empty list, a part not in `SPACE_PARTS` (naming it, listing the
            allowed parts and suggesting the closest), a repeated part, or a list without
            `loss`.

    Examples:
        >>> parse_space("regularization, loss")
        ['loss', 'regularization']
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"expected comma-separated parts from {', '.join(SPACE_PARTS)}; got {text!r}")
    allowed = ", ".join(SPACE_PARTS)
    for name in names:
        if name.lower() not in SPACE_PARTS:
            close = difflib.get_close_matches(name.lower(), SPACE_PARTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown part {name!r} in {text!r}; allowed parts: {allowed}{hint}")
    parts = [name.lower() for name in names]
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ValueError(f"{text!r} names {repeated[0]!r} twice")
    if "loss" not in parts:
        raise ValueError(
            f"{text!r} leaves out 'loss': the search always chooses the loss, the other parts are searched "
            f"with it (e.g. --space loss,{parts[0]})"
        )
    return [part for part in SPACE_PARTS if part in parts]
