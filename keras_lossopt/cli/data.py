"""The command's data: a built-in dataset by name, or the user's `.npz` / `.csv` file.

A user file becomes a `keras_lossopt.datasets.Dataset` with the same conventions as the
built-in ones: integer class labels (per pixel for segmentation), seeded stratified
splits when the file holds no splits, features standardized with training statistics.
Every problem is a `DataError` whose message names the file, key, column or label.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import numpy as np

from keras_lossopt.datasets import Dataset, available_datasets, load_dataset, train_val_test_indices

__all__ = ["TASKS", "DataError", "load_data"]

TASKS = ("auto", "binary", "multiclass", "segmentation")
_SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


class DataError(ValueError):
    """Input data the command cannot use; the message says why in one line."""


def load_data(data: str, *, target: str | None = None, task: str = "auto", seed: int = 0) -> Dataset:
    """The dataset named by `--data`: a built-in name or a path to a `.npz` or `.csv` file.

    Args:
        data: a name from `keras_lossopt.datasets.available_datasets()` or a file path.
        target: the label column of a `.csv` file.
        task: `"auto"` (infer), `"binary"`, `"multiclass"` or `"segmentation"`.
        seed: seed of the splits.

    Raises:
        DataError: for a missing file, an unknown dataset, a missing column or key,
            non-numeric features, or labels that do not fit the task.
    """
    path = pathlib.Path(data)
    if data in available_datasets():
        if target is not None:
            raise DataError(f"--target applies to .csv files, not to the built-in dataset {data!r}")
        dataset = load_dataset(data, seed=seed)
    elif path.suffix.lower() in (".npz", ".csv"):
        if not path.is_file():
            raise DataError(f"data file not found: {data}")
        if path.suffix.lower() == ".csv":
            dataset = _from_csv(path, target, seed)
        else:
            if target is not None:
                raise DataError("--target applies to .csv files; a .npz file holds its labels under 'y' or 'y_train'")
            dataset = _from_npz(path, seed)
    elif path.suffix:
        raise DataError(f"unsupported data file {data!r}: use a .npz or .csv file, or a built-in dataset")
    else:
        raise DataError(f"unknown dataset {data!r}; built-in datasets: {', '.join(available_datasets())}")
    return _check_task(dataset, task)


def _labels(values: np.ndarray, where: str) -> np.ndarray:
    # One rule for class labels, shared with the loss search (tuning.validation).
    from keras_lossopt.tuning.validation import check_class_labels

    try:
        return check_class_labels(values, where=f"labels in {where}")
    except ValueError as error:
        raise DataError(str(error)) from None


def _from_npz(path: pathlib.Path, seed: int) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    keys = set(archive.files)
    if set(_SPLIT_KEYS) <= keys:
        arrays = {k: np.asarray(archive[k]) for k in _SPLIT_KEYS}
        for split in ("train", "val", "test"):
            arrays[f"y_{split}"] = _labels(arrays[f"y_{split}"], f"{path.name}:y_{split}")
            if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
                raise DataError(f"{path.name}: x_{split} and y_{split} have different lengths")
        labels = np.concatenate([arrays["y_train"].ravel(), arrays["y_val"].ravel(), arrays["y_test"].ravel()])
        num_classes = int(labels.max()) + 1
        return Dataset(
            name=path.stem,
            task="multiclass",
            **{k: (v.astype(np.float32) if k.startswith("x") else v) for k, v in arrays.items()},
            num_classes=num_classes,
            class_names=tuple(str(i) for i in range(num_classes)),
        )
    if not {"x", "y"} <= keys:
        raise DataError(
            f"{path.name} must hold arrays 'x' and 'y' (or x_train, y_train, x_val, y_val, x_test, y_test); "
            f"found {sorted(keys)}"
        )
    x, y = np.asarray(archive["x"]), _labels(archive["y"], f"{path.name}:y")
    if len(x) != len(y):
        raise DataError(f"{path.name}: 'x' has {len(x)} samples but 'y' has {len(y)}")
    return _split_arrays(path.stem, x.astype(np.float32), y, seed)


def _from_csv(path: pathlib.Path, target: str | None, seed: int) -> Dataset:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0]:
        raise DataError(f"{path.name} is empty")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target is None:
        raise DataError(f"a .csv file needs --target COLUMN naming the label column; columns: {', '.join(header)}")
    if target not in header:
        raise DataError(f"column {target!r} not found in {path.name}; columns: {', '.join(header)}")
    if not body:
        raise DataError(f"{path.name} has a header but no rows")
    if any(len(r) != len(header) for r in body):
        bad = next(i for i, r in enumerate(body, start=2) if len(r) != len(header))
        raise DataError(f"{path.name}: line {bad} has a different number of fields than the header")
    column = header.index(target)
    raw_labels = [r[column].strip() for r in body]
    try:
        y = _labels(np.array([float(v) for v in raw_labels]), f"{path.name}:{target}")
    except ValueError:
        # Text labels: classes in sorted order.
        names = sorted(set(raw_labels))
        y = np.array([names.index(v) for v in raw_labels], dtype=np.int64)
    features = [i for i in range(len(header)) if i != column]
    if not features:
        raise DataError(f"{path.name} has no feature column besides {target!r}")
    x = np.empty((len(body), len(features)), dtype=np.float32)
    for j, i in enumerate(features):
        try:
            x[:, j] = [float(r[i]) for r in body]
        except ValueError:
            raise DataError(f"column {header[i]!r} of {path.name} is not numeric") from None
    return _split_arrays(path.stem, x, y, seed, standardize=True)


def _split_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int, standardize: bool = False) -> Dataset:
    rng = np.random.default_rng(seed)
    per_sample = y if y.ndim == 1 else np.zeros(len(y), dtype=np.int64)
    counts = np.bincount(per_sample)
    if y.ndim == 1 and counts[counts > 0].min() < 3:
        raise DataError(
            f"every class needs at least 3 samples to split; class "
            f"{int(np.argmin(np.where(counts > 0, counts, 10**9)))} has fewer"
        )
    train, val, test = train_val_test_indices(per_sample, validation_split=0.15, test_split=0.2, rng=rng)
    if standardize:
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
        x = ((x - mean) / std).astype(np.float32)
    class_names = [str(i) for i in range(int(y.max()) + 1)]
    return Dataset.from_indices(name, "multiclass", x, y, (train, val, test), class_names)


def _check_task(dataset: Dataset, task: str) -> Dataset:
    y, x = dataset.y_train, dataset.x_train
    per_pixel = y.ndim >= 2 and x.ndim >= 3 and y.shape[1:3] == x.shape[1:3]
    inferred = "segmentation" if per_pixel else ("binary" if dataset.num_classes == 2 else "multiclass")
    if dataset.task in ("binary", "segmentation") and task == "auto":
        inferred = dataset.task
    if task == "auto":
        task = inferred
    if task == "segmentation" and not per_pixel:
        raise DataError(
            "--task segmentation needs one label per pixel (labels shaped like the images); "
            f"labels have shape {y.shape}"
        )
    if task != "segmentation" and y.ndim != 1:
        raise DataError(f"--task {task} needs one integer label per sample; labels have shape {y.shape}")
    if task == "binary" and dataset.num_classes != 2:
        raise DataError(f"--task binary needs labels 0 and 1; found {dataset.num_classes} classes")
    present = np.unique(y)
    if len(present) < 2:
        raise DataError(f"the training labels hold a single class ({int(present[0])}); a classifier needs two or more")
    return dataclasses.replace(dataset, task=task)
