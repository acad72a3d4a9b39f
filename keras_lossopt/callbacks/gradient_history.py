"""`GradientHistory`: the per-step gradient statistics a `GradientMonitor` recorded, as NumPy tables."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from keras_lossopt.callbacks import _recorder

__all__ = ["GradientHistory"]


class GradientHistory:
    """Recorded statistics, by step and layer (built by `GradientMonitor`).

    Args:
        layers: layer names, input side first.

    Attributes:
        layers: layer names, input side first (a nested model's layers as
            `"inner/dense"`).
        steps: `(T,)` optimizer steps (0-based) that were recorded.
        grad_norm: `(T, L)` L2 norm of each layer's gradient (all its variables).
        grad_norm_clipped: `(T, L)` the same after the optimizer's clipping (equal to
            `grad_norm` when the optimizer does not clip).
        max_abs: `(T, L)` largest absolute gradient entry.
        nonfinite_share: `(T, L)` share of NaN/inf gradient entries.
        update_ratio: `(T, L)` ||weights after - weights before|| / ||weights before||,
            measured from the real update (NaN when the step's gradients were not finite).
        weight_norm: `(T, L)` L2 norm of each layer's weights before the step (NaN or inf
            when a weight is).
        global_grad_norm: `(T,)` `grad_norm` over the whole model.
        global_grad_norm_clipped: `(T,)` `grad_norm_clipped` over the whole model.
        global_max_abs: `(T,)` `max_abs` over the whole model.
        global_nonfinite_share: `(T,)` `nonfinite_share` over the whole model.
        global_update_ratio: `(T,)` `update_ratio` over the whole model.
        global_weight_norm: `(T,)` `weight_norm` over the whole model.
    """

    FIELDS = ("grad_norm", "grad_norm_clipped", "max_abs", "nonfinite_share", "update_ratio", "weight_norm")

    def __init__(self, layers: tuple[str, ...] = ()):
        self.layers = tuple(layers)
        self._steps: list[np.ndarray] = []
        self._blocks: dict[str, list[np.ndarray]] = {f: [] for f in self.FIELDS}

    def extend(self, steps: np.ndarray, grad_stats: np.ndarray, update_stats: np.ndarray) -> dict[str, np.ndarray]:
        """Adds recorded steps `(k,)` from the raw `(k, L + 1, 5)` and `(k, L + 1, 2)` tables.

        Args:
            steps: `(k,)` the recorded steps.
            grad_stats: `(k, L + 1, 5)` gradient statistics (columns of `_recorder`).
            update_stats: `(k, L + 1, 2)` sums of squares of the update and the weights.

        Returns:
            The new rows by field, each `(k, L + 1)` (last column: the whole model).
        """
        g = np.asarray(grad_stats, dtype="float64")
        u = np.asarray(update_stats, dtype="float64")
        size = np.maximum(g[..., _recorder.SIZE], 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            weight_norm = np.sqrt(u[..., _recorder.WEIGHT_SUMSQ])
            block = {
                "grad_norm": np.sqrt(g[..., _recorder.SUMSQ]),
                "grad_norm_clipped": np.sqrt(g[..., _recorder.SUMSQ_CLIPPED]),
                "max_abs": g[..., _recorder.MAXABS],
                "nonfinite_share": g[..., _recorder.NONFINITE] / size,
                "update_ratio": np.sqrt(u[..., _recorder.UPDATE_SUMSQ])
                / np.where(weight_norm > 0, weight_norm, np.nan),
                "weight_norm": weight_norm,
            }
        self._steps.append(np.asarray(steps, dtype="int64").reshape(-1))
        for key, value in block.items():
            self._blocks[key].append(value)
        return block

    def __len__(self) -> int:
        return sum(len(s) for s in self._steps)

    @property
    def steps(self) -> np.ndarray:
        return np.concatenate(self._steps) if self._steps else np.zeros((0,), dtype="int64")

    def _table(self, field: str) -> np.ndarray:
        blocks = self._blocks[field]
        if not blocks:
            return np.zeros((0, len(self.layers) + 1))
        return np.concatenate(blocks)

    @property
    def grad_norm(self) -> np.ndarray:
        return self._table("grad_norm")[:, :-1]

    @property
    def grad_norm_clipped(self) -> np.ndarray:
        return self._table("grad_norm_clipped")[:, :-1]

    @property
    def max_abs(self) -> np.ndarray:
        return self._table("max_abs")[:, :-1]

    @property
    def nonfinite_share(self) -> np.ndarray:
        return self._table("nonfinite_share")[:, :-1]

    @property
    def update_ratio(self) -> np.ndarray:
        return self._table("update_ratio")[:, :-1]

    @property
    def weight_norm(self) -> np.ndarray:
        return self._table("weight_norm")[:, :-1]

    @property
    def global_grad_norm(self) -> np.ndarray:
        return self._table("grad_norm")[:, -1]

    @property
    def global_grad_norm_clipped(self) -> np.ndarray:
        return self._table("grad_norm_clipped")[:, -1]

    @property
    def global_max_abs(self) -> np.ndarray:
        return self._table("max_abs")[:, -1]

    @property
    def global_nonfinite_share(self) -> np.ndarray:
        return self._table("nonfinite_share")[:, -1]

    @property
    def global_update_ratio(self) -> np.ndarray:
        return self._table("update_ratio")[:, -1]

    @property
    def global_weight_norm(self) -> np.ndarray:
        return self._table("weight_norm")[:, -1]

    def summary_lines(self, every_n_steps: int = 1) -> list[str]:
        """The report's lines: recorded steps, the global norm, and one row per layer.

        Args:
            every_n_steps: the recording interval, for the first line.

        Returns:
            The lines, without line ends.
        """
        lines = []
        if len(self) == 0:
            lines.append("No step recorded.")
        else:
            lines.append(f"Recorded {len(self)} steps ({self.steps[0]}..{self.steps[-1]}, every {every_n_steps}).")
            g = self.global_grad_norm
            lines.append(
                f"Global gradient norm: first {g[0]:.3g}, median {np.nanmedian(g):.3g}, "
                f"max {np.nanmax(g):.3g}, last {g[-1]:.3g}."
            )
            width = max(len(n) for n in self.layers)
            lines.append(f"{'layer':<{width}}  median norm   last norm  median update ratio")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for i, name in enumerate(self.layers):
                    lines.append(
                        f"{name:<{width}}  {np.nanmedian(self.grad_norm[:, i]):11.3g} {self.grad_norm[-1, i]:11.3g}"
                        f"  {np.nanmedian(self.update_ratio[:, i]):19.3g}"
                    )
        return lines

    def as_dict(self) -> dict[str, Any]:
        """All arrays by name (e.g. to save with `np.savez`)."""
        out: dict[str, Any] = {"layers": np.asarray(self.layers), "steps": self.steps}
        for field in self.FIELDS:
            table = self._table(field)
            out[field] = table[:, :-1]
            out[f"global_{field}"] = table[:, -1]
        return out
