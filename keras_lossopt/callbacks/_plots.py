"""The figure of `GradientMonitor.plot`: per-layer gradient norms, the global norm and the update ratio."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_lossopt.callbacks.gradient_history import GradientHistory


def plot_gradient_history(history: GradientHistory, marked_steps: Sequence[int], figsize: tuple[float, float]):
    """A matplotlib figure of `history`, with a dashed line at each of `marked_steps` (the findings)."""
    plt = _pyplot()
    h = history
    fig, axes = plt.subplots(3, 1, figsize=figsize, sharex=False, height_ratios=[2, 1, 1])
    steps = h.steps
    with np.errstate(divide="ignore", invalid="ignore"):
        heat = np.log10(h.grad_norm.T) if len(h) else np.zeros((len(h.layers), 0))
    image = axes[0].imshow(
        heat,
        aspect="auto",
        interpolation="nearest",
        extent=(steps[0] - 0.5, steps[-1] + 0.5, len(h.layers) - 0.5, -0.5) if len(h) else None,
        cmap="viridis",
    )
    axes[0].set_yticks(range(len(h.layers)))
    axes[0].set_yticklabels(h.layers)
    axes[0].set_title("log10 gradient norm per layer")
    fig.colorbar(image, ax=axes[0])
    axes[1].plot(steps, h.global_grad_norm, label="global norm")
    if not np.allclose(h.global_grad_norm, h.global_grad_norm_clipped, equal_nan=True):
        axes[1].plot(steps, h.global_grad_norm_clipped, label="after clipping")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("gradient norm")
    axes[1].legend(loc="best")
    axes[2].plot(steps, h.global_update_ratio)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("||update|| / ||w||")
    axes[2].set_xlabel("step")
    for step in marked_steps:
        for ax in axes[1:]:
            ax.axvline(step, color="red", alpha=0.5, linestyle="--")
    fig.tight_layout()
    return fig


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("plot() needs matplotlib. Install it with: pip install 'keras-lossopt[plot]'") from error
    return plt
