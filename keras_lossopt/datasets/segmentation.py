"""A synthetic, seeded segmentation dataset: random shapes on noisy backgrounds.

Each foreground class is one kind of shape (circle, rectangle, triangle, ellipse, ring)
drawn in its own mean colour with per-shape colour jitter; the background is a smooth
random gradient; Gaussian noise covers everything, so colour alone does not solve the task
and shape matters. `foreground_fraction` sets the share of foreground pixels (the class
imbalance against the background) and `class_weights` the relative frequency of the
foreground classes. Everything depends only on `seed`; nothing is downloaded.

`load_shapes` is registered as `"shapes"` in `keras_lossopt.datasets.LOADERS`, so
`load_dataset("shapes", ...)` and the command line see it.
"""

from __future__ import annotations

import numpy as np

from keras_lossopt._validation import check_in_range, check_int, check_non_negative, check_per_class
from keras_lossopt.datasets.builtin import LOADERS, Dataset

__all__ = ["SHAPE_KINDS", "load_shapes", "make_shapes"]

SHAPE_KINDS = ("circle", "rectangle", "triangle", "ellipse", "ring")
"""The shapes `make_shapes` draws; class `c` is `SHAPE_KINDS[c - 1]` (0 is the background)."""

# Well separated mean colours (RGB) per foreground class; the noise makes them overlap.
_COLOURS = np.array([[0.9, 0.3, 0.3], [0.3, 0.8, 0.3], [0.3, 0.4, 0.9], [0.9, 0.8, 0.2], [0.8, 0.3, 0.9]], np.float32)


def split_sizes(num_images, validation_split, test_split):
    """`(train, validation, test)` image counts of a generated set, checked before generating it.

    Raises:
        ValueError: for a split outside [0, 1), splits that sum to 1 or more, or no image left to train on.
    """
    check_in_range("validation_split", validation_split, 0.0, 1.0, high_inclusive=False)
    check_in_range("test_split", test_split, 0.0, 1.0, high_inclusive=False)
    if validation_split + test_split >= 1.0:
        raise ValueError(
            "`validation_split + test_split` must be < 1. "
            f"Received: validation_split={validation_split}, test_split={test_split}"
        )
    n_test = round(test_split * num_images)
    n_val = round(validation_split * num_images)
    n_train = num_images - n_test - n_val
    if n_train < 1:
        raise ValueError(f"No training images left: num_images={num_images} is too small for the splits.")
    return n_train, n_val, n_test


def split_images(name, x, y, *, validation_split, test_split, num_classes, class_names):
    """A segmentation `Dataset` of generated images, split in order (the images are already random)."""
    n_train, n_val, _ = split_sizes(len(x), validation_split, test_split)
    return Dataset(
        name=name,
        task="segmentation",
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_val=x[n_train : n_train + n_val],
        y_val=y[n_train : n_train + n_val],
        x_test=x[n_train + n_val :],
        y_test=y[n_train + n_val :],
        num_classes=num_classes,
        class_names=class_names,
    )


def _shape_mask(kind, rows, cols, centre, area, rng):
    """Boolean mask of one shape of about `area` pixels centred at `centre`."""
    cy, cx = centre
    dy, dx = rows - cy, cols - cx
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated coordinates
    if kind == "circle":
        return dx**2 + dy**2 <= area / np.pi
    if kind == "rectangle":
        aspect = rng.uniform(0.5, 2.0)
        half_w, half_h = np.sqrt(area * aspect) / 2, np.sqrt(area / aspect) / 2
        return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
    if kind == "ellipse":
        aspect = rng.uniform(1.8, 3.0)
        a, b = np.sqrt(area * aspect / np.pi), np.sqrt(area / (aspect * np.pi))
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == "ring":
        outer = np.sqrt(area / (np.pi * 0.75))
        radius2 = dx**2 + dy**2
        return (radius2 <= outer**2) & (radius2 >= (outer / 2) ** 2)
    # Equilateral triangle of the given area, rotated.
    side = np.sqrt(4 * area / np.sqrt(3))
    circumradius = side / np.sqrt(3)
    angles = angle + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    vy, vx = cy + circumradius * np.sin(angles), cx + circumradius * np.cos(angles)
    inside = np.ones_like(rows, bool)
    for i in range(3):
        j = (i + 1) % 3
        cross = (vx[j] - vx[i]) * (rows - vy[i]) - (vy[j] - vy[i]) * (cols - vx[i])
        inside &= cross >= 0
    return inside


def make_shapes(
    num_images: int,
    *,
    image_size: int = 64,
    num_classes: int = 4,
    foreground_fraction: float = 0.15,
    class_weights=None,
    max_shapes: int = 3,
    noise: float = 0.25,
    channels: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `num_images` images and their label maps.

    Returns:
        `(images, labels)`: float32 `(num_images, image_size, image_size, channels)` in
        roughly [0, 1], and int64 `(num_images, image_size, image_size)` with 0 for the
        background and `c` for shape kind `SHAPE_KINDS[c - 1]`.
    """
    num_images = check_int("num_images", num_images, minimum=1)
    image_size = check_int("image_size", image_size, minimum=8)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if num_classes > len(SHAPE_KINDS) + 1:
        raise ValueError(
            f"`num_classes` must be <= {len(SHAPE_KINDS) + 1} (background + {list(SHAPE_KINDS)}). "
            f"Received: num_classes={num_classes}"
        )
    fraction = check_in_range("foreground_fraction", foreground_fraction, 0.0, 0.9, low_inclusive=False)
    max_shapes = check_int("max_shapes", max_shapes, minimum=1)
    noise = check_non_negative("noise", noise)
    channels = check_int("channels", channels, minimum=1)
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    weights = check_per_class("class_weights", class_weights, allow_scalar=False, minimum=0.0)
    if weights is None:
        weights = (1.0,) * (num_classes - 1)
    if len(weights) != num_classes - 1 or sum(weights) <= 0:
        raise ValueError(
            f"`class_weights` needs one non-negative weight per foreground class ({num_classes - 1}), "
            f"not all 0. Received: class_weights={list(weights)}"
        )
    probs = np.asarray(weights) / np.sum(weights)

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    images = np.empty((num_images, image_size, image_size, 3), np.float32)
    labels = np.zeros((num_images, image_size, image_size), np.int64)
    pixels = image_size * image_size
    for n in range(num_images):
        slope = rng.normal(scale=0.15, size=(2, 3)) / image_size
        image = rng.uniform(0.3, 0.6, size=3) + rows[..., None] * slope[0] + cols[..., None] * slope[1]
        count = rng.integers(1, max_shapes + 1)
        target_area = fraction * pixels * rng.uniform(0.6, 1.4)
        for _ in range(count):
            cls = 1 + rng.choice(num_classes - 1, p=probs)
            area = max(target_area / count, 6.0)
            margin = np.sqrt(area) * 0.6
            centre = rng.uniform(margin, image_size - margin, size=2)
            mask = _shape_mask(SHAPE_KINDS[cls - 1], rows, cols, centre, area, rng)
            colour = _COLOURS[cls - 1] + rng.normal(scale=0.08, size=3)
            image[mask] = colour
            labels[n][mask] = cls
        images[n] = image + rng.normal(scale=noise, size=image.shape)
    if channels == 1:
        images = images.mean(axis=-1, keepdims=True)
    return images.astype(np.float32), labels


def load_shapes(
    *,
    num_images: int = 600,
    image_size: int = 64,
    num_classes: int = 4,
    foreground_fraction: float = 0.15,
    class_weights=None,
    max_shapes: int = 3,
    noise: float = 0.25,
    channels: int = 3,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
) -> Dataset:
    """The synthetic shapes segmentation dataset, split into train, validation and test.

    Use it for tests, examples and benchmarks of segmentation losses: small, offline,
    reproducible, with a tunable class imbalance.

    Args:
        num_images: total number of images. Default 600.
        image_size: height and width in pixels. Default 64.
        num_classes: background plus up to 5 shape classes (2..6). Default 4.
        foreground_fraction: mean share of foreground pixels per image (about, shapes
            may overlap or be clipped), in (0, 0.9]. Default 0.15; 0.04 gives foreground
            classes covering under 5% of the pixels.
        class_weights: relative frequency of each foreground class, one value per class.
            Default None (uniform).
        max_shapes: each image holds 1..`max_shapes` shapes. Default 3.
        noise: standard deviation of the Gaussian pixel noise. Default 0.25.
        channels: 3 (colour; default) or 1 (grey).
        validation_split: share of images for validation. Default 0.15.
        test_split: share of images for test. Default 0.15.
        seed: the only source of randomness. Default 0.

    Returns:
        A `Dataset` with `task="segmentation"`, images `(N, H, W, channels)` float32 and
        labels `(N, H, W)` int64 class indices.

    Raises:
        ValueError: for out-of-range sizes, fractions, class counts or weights.

    Examples:
        >>> data = load_shapes(num_images=20, image_size=32, foreground_fraction=0.04, seed=1)
        >>> data.y_train.shape[1:], data.num_classes
        ((32, 32), 4)
        >>> bool(data.class_counts("train")[1:].sum() < 0.08 * data.y_train.size)
        True
    """
    split_sizes(num_images, validation_split, test_split)
    x, y = make_shapes(
        num_images,
        image_size=image_size,
        num_classes=num_classes,
        foreground_fraction=foreground_fraction,
        class_weights=class_weights,
        max_shapes=max_shapes,
        noise=noise,
        channels=channels,
        seed=seed,
    )
    return split_images(
        "shapes",
        x,
        y,
        validation_split=validation_split,
        test_split=test_split,
        num_classes=num_classes,
        class_names=("background", *SHAPE_KINDS[: num_classes - 1]),
    )


LOADERS["shapes"] = load_shapes
