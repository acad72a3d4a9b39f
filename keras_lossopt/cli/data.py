"""The command's data: a built-in dataset by name, or the user's `.npz` / `.csv` file.

A user file becomes a `keras_lossopt.datasets.Dataset` with the same conventions as the
built-in ones: integer class labels (per pixel for segmentation), seeded stratified
splits when the file holds no splits, features standardized with training statistics.
Every problem is a `DataError` whose message names the file, key, column or label.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import pathlib
import zipfile
from collections.abc import Sequence

import numpy as np

from keras_lossopt.cli.paths import DataError, check_data_argument
from keras_lossopt.datasets import Dataset, available_datasets, load_dataset, train_val_test_indices

__all__ = ["load_data"]

_SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
# Cells that mean "no value" in CSV files written by pandas, R and spreadsheets.
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "#n/a"})
# A stratified train/validation/test split needs at least one sample of each class per split.
_MIN_PER_CLASS = 3


def load_data(data: str, *, target: str | None = None, task: str = "auto", seed: int = 0) -> Dataset:
    """The dataset named by `--data`: a built-in name or a path to a `.npz` or `.csv` file.

    Args:
        data: a name from `keras_lossopt.datasets.available_datasets()` or a file path.
        target: the label column of a `.csv` file.
        task: `"auto"` (infer), `"binary"`, `"multiclass"` or `"segmentation"`.
        seed: seed of the splits.

    Returns:
        The `Dataset`, its task set (inferred for `"auto"`).

    Raises:
        DataError: for a missing file, an unknown dataset, a missing column or key,
            non-numeric, missing (NaN, empty) or infinite features or labels, labels that
            are not class labels, too few samples of a class, or labels that do not fit
            the task. The message names the file, column or key, and the rows.
    """
    check_data_argument(data, target)
    if data in available_datasets():
        dataset = load_dataset(data, seed=seed)
    elif pathlib.Path(data).suffix.lower() == ".csv":
        dataset = _from_csv(pathlib.Path(data), target, seed)
    else:
        dataset = _from_npz(pathlib.Path(data), seed)
    return _check_task(dataset, task)


def _rows(positions: Sequence[int], word: str = "line") -> str:
    """`"lines 3, 7, 9 and 12 more"`: where a problem is, short enough for one line."""
    shown = ", ".join(str(p) for p in positions[:5])
    more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
    return f"{word}{'s' if len(positions) > 1 else ''} {shown}{more}"


def _parse_numbers(cells: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Floats of `cells` (NaN where a cell is not a number), a mask of missing cells (empty,
    NaN, NA, ...) and the index of the first cell that is neither (None when all parse)."""
    values = np.full(len(cells), np.nan)
    missing = np.zeros(len(cells), dtype=bool)
    unparsed = None
    for i, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in _MISSING:
            missing[i] = True
            continue
        try:
            values[i] = float(text)
        except ValueError:
            unparsed = i if unparsed is None else unparsed
            continue
        missing[i] = np.isnan(values[i])
    return values, missing, unparsed


def _labels(values: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]  # (N, 1) column of labels
    if values.dtype.kind in "fc":
        flat = values.ravel()
        bad = np.flatnonzero(~np.isfinite(flat))
        if bad.size:
            raise DataError(
                f"labels in {where} hold NaN or infinite values at {_rows(bad.tolist(), 'index')}; "
                "drop those samples or fill in their class"
            )
        fractional = np.flatnonzero(flat != np.round(flat))
        if fractional.size:
            raise DataError(
                f"labels in {where} must be integer class indices; found {flat[fractional[0]]:g} at index "
                f"{fractional[0]} ({fractional.size} non-integer values): the command classifies, it does not regress"
            )
        values = values.astype(np.int64)
    if values.dtype.kind not in "iub":
        raise DataError(f"labels in {where} must be integer class indices; found dtype {values.dtype}")
    if values.size and values.min() < 0:
        raise DataError(f"labels in {where} must be >= 0; found {int(values.min())}")
    return values.astype(np.int64)


def _features(x: np.ndarray, where: str) -> np.ndarray:
    """`x` as float32, refusing text, missing and infinite values (naming the samples)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} must hold numbers; found dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{where} must be shaped (samples, features...); found shape {x.shape} (reshape to (-1, 1))")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if not len(x32):
        return x32
    bad = np.flatnonzero(~np.isfinite(x32.reshape(len(x32), -1)).all(axis=1))
    if bad.size:
        kind = "NaN" if np.isnan(x.reshape(len(x), -1)[bad[0]].astype(np.float64)).any() else "infinite or too large"
        raise DataError(
            f"{where} holds {kind} values in {_rows(bad.tolist(), 'sample')}; "
            "fill them in or drop those samples (training on them gives NaN)"
        )
    return x32


def _from_npz(path: pathlib.Path, seed: int) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
        arrays = {k: np.asarray(archive[k]) for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read {path.name} as a NumPy .npz archive: {str(error).splitlines()[0]}") from None
    if set(_SPLIT_KEYS) <= keys:
        for split in ("train", "val", "test"):
            y = arrays[f"y_{split}"] = _labels(arrays[f"y_{split}"], f"{path.name}:y_{split}")
            x = arrays[f"x_{split}"] = _features(arrays[f"x_{split}"], f"x_{split} in {path.name}")
            if len(x) != len(y):
                raise DataError(f"{path.name}: x_{split} has {len(x)} samples but y_{split} has {len(y)}")
            if not len(y):
                raise DataError(f"{path.name}: the {split} split is empty; every split needs samples")
            if x.shape[1:] != arrays["x_train"].shape[1:]:
                raise DataError(
                    f"{path.name}: x_{split} samples have shape {x.shape[1:]}, x_train {arrays['x_train'].shape[1:]}"
                )
        labels = np.concatenate([arrays["y_train"].ravel(), arrays["y_val"].ravel(), arrays["y_test"].ravel()])
        _check_every_class_present(labels, path.name)
        num_classes = int(labels.max()) + 1
        return Dataset(
            name=path.stem, task="multiclass", **arrays, num_classes=num_classes,
            class_names=tuple(str(i) for i in range(num_classes)),
        )  # fmt: skip
    if not {"x", "y"} <= keys:
        raise DataError(
            f"{path.name} must hold arrays 'x' and 'y' (or x_train, y_train, x_val, y_val, x_test, y_test); "
            f"found {sorted(keys)}"
        )
    y = _labels(arrays["y"], f"{path.name}:y")
    x = _features(arrays["x"], f"x in {path.name}")
    if len(x) != len(y):
        raise DataError(f"{path.name}: 'x' has {len(x)} samples but 'y' has {len(y)}")
    _check_every_class_present(y.ravel(), path.name)
    class_names = [str(i) for i in range(int(y.max()) + 1)]
    return _split_arrays(path.stem, x, y, class_names, seed, where=f"{path.name}:y")


def _check_every_class_present(labels: np.ndarray, file_name: str) -> None:
    absent = np.flatnonzero(np.bincount(labels, minlength=int(labels.max()) + 1) == 0)
    if absent.size:
        raise DataError(
            f"labels in {file_name} skip class {', '.join(map(str, absent[:5]))} (no sample has it): class indices "
            f"must run 0..K-1 with every class present, or the missing classes count as never found; relabel them"
        )


def _read_csv(path: pathlib.Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-empty rows with their line numbers."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            body = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        reason = f"{error.reason} at byte {error.start}"
        raise DataError(f"{path.name} is not UTF-8 text ({reason}); save it as UTF-8 CSV") from None
    except csv.Error as error:
        raise DataError(f"cannot read {path.name} as CSV: {error}") from None
    return [h.strip() for h in header], body


def _from_csv(path: pathlib.Path, target: str | None, seed: int) -> Dataset:
    header, body = _read_csv(path)
    if not header or not any(header):
        raise DataError(f"{path.name} is empty")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{path.name} has more than one column named {repeated[0]!r}; give each column its own name")
    if target not in header:
        if _parse_numbers(header)[2] is None:  # every cell of the first line is a number (or empty)
            shown = ", ".join(header[:4]) + (", ..." if len(header) > 4 else "")
            raise DataError(
                f"column {target!r} not found in {path.name}: its first line ({shown}) looks like data, so the "
                f"header seems to be missing; add a first line naming the {len(header)} columns"
            )
        close = difflib.get_close_matches(str(target), header, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"column {target!r} not found in {path.name}; columns: {', '.join(header)}{hint}")
    if not body:
        raise DataError(f"{path.name} has a header but no rows")
    short = [line for line, row in body if len(row) != len(header)]
    if short:
        raise DataError(
            f"{path.name}: {_rows(short)} {'have' if len(short) > 1 else 'has'} a different number of fields "
            f"than the header ({len(header)})"
        )
    lines = [line for line, _ in body]
    column = header.index(target)
    y, class_names = _csv_labels([row[column] for _, row in body], lines, f"column {target!r} of {path.name}")
    features = [i for i in range(len(header)) if i != column]
    if not features:
        raise DataError(f"{path.name} has no feature column besides {target!r}")
    x = np.empty((len(body), len(features)), dtype=np.float32)
    for j, i in enumerate(features):
        x[:, j] = _csv_feature([row[i] for _, row in body], lines, f"column {header[i]!r} of {path.name}")
    where = f"column {target!r} of {path.name}"
    return _split_arrays(path.stem, x, y, class_names, seed, where=where, standardize=True)


def _csv_labels(cells: Sequence[str], lines: Sequence[int], where: str) -> tuple[np.ndarray, list[str]]:
    """Class indices and names of a label column: numbers in numeric order, else text in sorted order."""
    values, missing, unparsed = _parse_numbers(cells)
    if missing.any():
        raise DataError(
            f"{where} has missing labels (empty or NaN) at {_rows([lines[i] for i in np.flatnonzero(missing)])}; "
            "drop those rows or fill in their class"
        )
    if unparsed is None:
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise DataError(f"{where} has infinite labels at {_rows([lines[i] for i in infinite])}; drop those rows")
        fractional = np.flatnonzero(values != np.round(values))
        if fractional.size:
            first = fractional[0]
            raise DataError(
                f"{where} holds non-integer numbers ({cells[first].strip()} at line {lines[first]}, "
                f"{fractional.size} such rows): --target must name a column of class labels (integers or "
                "names); the command classifies, it does not regress"
            )
        classes = np.unique(values)
        return np.searchsorted(classes, values).astype(np.int64), [f"{c:g}" for c in classes]
    names = sorted({cell.strip() for cell in cells})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[cell.strip()] for cell in cells], dtype=np.int64), names


def _csv_feature(cells: Sequence[str], lines: Sequence[int], where: str) -> np.ndarray:
    values, missing, unparsed = _parse_numbers(cells)
    if unparsed is not None:
        raise DataError(
            f"{where} is not numeric ({cells[unparsed].strip()!r} at line {lines[unparsed]}); "
            "encode it as numbers or drop the column"
        )
    if missing.any():
        raise DataError(
            f"{where} has missing values (empty or NaN) at {_rows([lines[i] for i in np.flatnonzero(missing)])}; "
            "fill them in or drop those rows"
        )
    with np.errstate(over="ignore"):
        too_large = np.flatnonzero(~np.isfinite(values.astype(np.float32)))
    if too_large.size:
        raise DataError(
            f"{where} has infinite or too large values (beyond float32) at "
            f"{_rows([lines[i] for i in too_large])}; fix or drop those rows"
        )
    return values


def _split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    seed: int,
    *,
    where: str,
    standardize: bool = False,
) -> Dataset:
    rng = np.random.default_rng(seed)
    per_sample = y if y.ndim == 1 else np.zeros(len(y), dtype=np.int64)
    if len(class_names) < 2:
        raise DataError(f"{where} holds a single class ({class_names[0]!r}); a classifier needs two or more")
    counts = np.bincount(per_sample)
    if len(y) < _MIN_PER_CLASS or (y.ndim == 1 and counts.min() < _MIN_PER_CLASS):
        rare = int(np.argmin(counts)) if y.ndim == 1 else None
        what = f"class {class_names[rare]!r} has {counts[rare]} sample(s)" if rare is not None else f"{len(y)} samples"
        hint = ""
        if y.ndim == 1 and len(class_names) > max(20, len(y) // 4):
            hint = f" ({len(class_names)} distinct labels in {len(y)} rows: is this column a class label?)"
        raise DataError(
            f"{where}: {what}; every class needs at least {_MIN_PER_CLASS} to split into train, validation "
            f"and test{hint}; add samples, or merge or drop rare classes"
        )
    train, val, test = train_val_test_indices(per_sample, validation_split=0.15, test_split=0.2, rng=rng)
    if standardize:
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        # A feature constant in training carries no information; dividing by ~0 would blow up the others' scale.
        x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    return Dataset.from_indices(name, "multiclass", x, y, (train, val, test), list(class_names))


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
