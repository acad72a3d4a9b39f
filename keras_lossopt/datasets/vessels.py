"""A synthetic, seeded thin-structure segmentation dataset: branching curvilinear "vessels".

Each image holds a few vessel trees. A vessel is a random walk whose direction drifts
smoothly (a curvilinear centre line), 1 to 3 pixels wide; along the way it may branch, and
a branch is one pixel thinner than its parent (at least 1). Vessels are darker than a smooth
random background, thinner ones with less contrast, and Gaussian noise covers everything, so
the thinnest branches are the hard part, as in retinal or neuron images. Overlap losses can
score well here while breaking vessels apart (a missed one-pixel stretch costs a few pixels);
topology-aware losses such as `SoftDiceClDiceLoss` target exactly that.

Binary labels: 0 background, 1 vessel. Everything depends only on `seed`; nothing is
downloaded. `load_vessels` is registered as `"vessels"` in `keras_lossopt.datasets.LOADERS`.
"""

from __future__ import annotations

import numpy as np

from keras_lossopt._validation import check_in_range, check_int, check_non_negative
from keras_lossopt.datasets.builtin import LOADERS, Dataset
from keras_lossopt.datasets.segmentation import split_images, split_sizes

__all__ = ["load_vessels", "make_vessels"]

_STEP = 0.5  # centre-line samples per pixel of length: dense enough for unbroken 1-pixel lines
_OFFSETS = np.stack(np.mgrid[-2:3, -2:3], axis=-1).reshape(-1, 2)  # pixels around a centre point


def _walk(rng, start, angle, length, image_size, curvature):
    """Centre-line points of one vessel: a walk whose direction drifts, stopped at the border."""
    turns = np.cumsum(rng.normal(scale=curvature * _STEP, size=int(length / _STEP)))
    angles = angle + turns
    steps = _STEP * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    points = start + np.cumsum(steps, axis=0)
    inside = np.all((points >= -0.5) & (points <= image_size - 0.5), axis=-1)
    stop = len(points) if inside.all() else int(np.argmin(inside))
    return points[:stop], angles[:stop]


def _paint(mask, points, width):
    """Marks the pixels whose centres lie within `width / 2` of a centre-line point."""
    if len(points) == 0:
        return
    nearest = np.rint(points).astype(np.int64)
    pixels = nearest[:, None, :] + _OFFSETS[None, :, :]
    close = np.sum((pixels - points[:, None, :]) ** 2, axis=-1) <= (width / 2.0) ** 2 + 1e-9
    # The nearest pixel always: a point between four pixel centres is farther than 0.5 from
    # each, and skipping it could cut a 1-pixel vessel (nearest pixels of points 0.5 apart
    # are 8-neighbours, so the line stays connected).
    close[:, len(_OFFSETS) // 2] = True
    size = mask.shape[0]
    keep = close & np.all((pixels >= 0) & (pixels < size), axis=-1)
    rows, cols = pixels[keep].T
    mask[rows, cols] = True


def _vessel_tree(rng, image_size, branch_probability, curvature, max_depth=2):
    """The (points, width) of one tree: a trunk entering from the border, and its branches."""
    side = rng.integers(4)
    along = rng.uniform(0.1, 0.9) * (image_size - 1)
    start = [(0.0, along), (image_size - 1.0, along), (along, 0.0), (along, image_size - 1.0)][side]
    towards_centre = np.arctan2((image_size - 1) / 2 - start[0], (image_size - 1) / 2 - start[1])
    pending = [(np.array(start), towards_centre + rng.normal(scale=0.4), int(rng.integers(2, 4)), 0)]
    segments = []
    while pending:
        origin, angle, width, depth = pending.pop()
        points, angles = _walk(rng, origin, angle, rng.uniform(0.5, 1.0) * image_size, image_size, curvature)
        segments.append((points, width))
        if depth >= max_depth or len(points) < 8:
            continue
        for i in np.flatnonzero(rng.uniform(size=len(points)) < branch_probability * _STEP):
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1)
            pending.append((points[i], angles[i] + turn, max(1, width - 1), depth + 1))
    return segments


def make_vessels(
    num_images: int,
    *,
    image_size: int = 64,
    max_vessels: int = 3,
    branch_probability: float = 0.03,
    curvature: float = 0.15,
    noise: float = 0.12,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `num_images` grey images of branching vessels and their binary label maps.

    Args:
        num_images: number of images.
        image_size: height and width in pixels (>= 16). Default 64.
        max_vessels: each image holds 1..`max_vessels` vessel trees. Default 3.
        branch_probability: chance per pixel of centre line that a vessel branches, in
            [0, 1]. Default 0.03.
        curvature: standard deviation of the direction's drift per pixel, in radians. Default 0.15.
        noise: standard deviation of the Gaussian pixel noise. Default 0.12.
        seed: the only source of randomness. Default 0.

    Returns:
        `(images, labels)`: float32 `(num_images, image_size, image_size, 1)` in roughly
        [0, 1], and int64 `(num_images, image_size, image_size)`, 1 on vessels.

    Raises:
        ValueError: for sizes, counts or probabilities out of range.

    Examples:
        >>> images, labels = make_vessels(4, image_size=32, seed=1)
        >>> images.shape, sorted(set(labels.ravel().tolist()))
        ((4, 32, 32, 1), [0, 1])
    """
    num_images = check_int("num_images", num_images, minimum=1)
    image_size = check_int("image_size", image_size, minimum=16)
    max_vessels = check_int("max_vessels", max_vessels, minimum=1)
    branch_probability = check_in_range("branch_probability", branch_probability, 0.0, 1.0)
    curvature = check_non_negative("curvature", curvature)
    noise = check_non_negative("noise", noise)

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    images = np.empty((num_images, image_size, image_size, 1), np.float32)
    labels = np.zeros((num_images, image_size, image_size), np.int64)
    for n in range(num_images):
        image = rng.uniform(0.55, 0.75) + rng.normal(scale=0.1) * rows + rng.normal(scale=0.1) * cols
        vessels = np.zeros((image_size, image_size), bool)
        for _ in range(rng.integers(1, max_vessels + 1)):
            for points, width in _vessel_tree(rng, image_size, branch_probability, curvature):
                segment = np.zeros_like(vessels)
                _paint(segment, points, width)
                # Thinner vessels have less contrast, as capillaries do.
                image = np.where(segment, np.minimum(image, image - 0.12 - 0.08 * width), image)
                vessels |= segment
        labels[n] = vessels
        images[n, ..., 0] = image + rng.normal(scale=noise, size=image.shape)
    return images, labels


def load_vessels(
    *,
    num_images: int = 400,
    image_size: int = 64,
    max_vessels: int = 3,
    branch_probability: float = 0.03,
    curvature: float = 0.15,
    noise: float = 0.12,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
) -> Dataset:
    """The synthetic thin-structure ("vessels") segmentation dataset, split into train, validation and test.

    Use it to test topology-aware segmentation losses (clDice) and boundary metrics: thin,
    branching, connected foreground, about 5-15% of the pixels, small and offline.

    Args:
        num_images: total number of images. Default 400.
        image_size: height and width in pixels (>= 16). Default 64.
        max_vessels: each image holds 1..`max_vessels` vessel trees. Default 3.
        branch_probability: chance per pixel of centre line that a vessel branches. Default 0.03.
        curvature: standard deviation of the direction's drift per pixel, in radians. Default 0.15.
        noise: standard deviation of the Gaussian pixel noise. Default 0.12.
        validation_split: share of images for validation. Default 0.15.
        test_split: share of images for test. Default 0.15.
        seed: the only source of randomness. Default 0.

    Returns:
        A `Dataset` with `task="segmentation"`, images `(N, H, W, 1)` float32 and labels
        `(N, H, W)` int64 (0 background, 1 vessel).

    Raises:
        ValueError: for out-of-range sizes, probabilities or splits.

    Examples:
        >>> data = load_vessels(num_images=20, image_size=32, seed=1)
        >>> data.x_train.shape[1:], data.num_classes, data.class_names
        ((32, 32, 1), 2, ('background', 'vessel'))
    """
    split_sizes(num_images, validation_split, test_split)
    x, y = make_vessels(
        num_images,
        image_size=image_size,
        max_vessels=max_vessels,
        branch_probability=branch_probability,
        curvature=curvature,
        noise=noise,
        seed=seed,
    )
    return split_images(
        "vessels",
        x,
        y,
        validation_split=validation_split,
        test_split=test_split,
        num_classes=2,
        class_names=("background", "vessel"),
    )


LOADERS["vessels"] = load_vessels
