"""The paths the command reads and writes, checked before anything is loaded or trained.

These checks need neither NumPy nor Keras, so a mistyped file name costs the start of
Python, not TensorFlow's start-up (about 10 s) or a whole training run.
"""

from __future__ import annotations

import difflib
import os
import pathlib

__all__ = [
    "MODEL_SUFFIXES",
    "REPORT_FILES",
    "DataError",
    "check_data_argument",
    "check_model_path",
    "check_output_folder",
    "check_trials_directory",
]

#: File endings `keras.models.load_model` reads.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


class DataError(ValueError):
    """Input the command cannot use; the message says why in one line."""


def check_data_argument(data: str, target: str | None) -> None:
    """Checks `--data` and `--target` without reading the data (no Keras, no file contents).

    Args:
        data: the `--data` argument.
        target: the `--target` argument.

    Raises:
        DataError: for an unknown dataset name, a missing or unsupported file, or a
            `--target` that does not fit the kind of data.
    """
    path = pathlib.Path(data)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv"):
        if not path.exists():
            raise DataError(f"data file not found: {data}")
        if not path.is_file():
            raise DataError(f"--data {data} is not a file")
        if suffix == ".csv" and target is None:
            raise DataError(f"a .csv file needs --target COLUMN naming its label column ({path.name})")
        if suffix == ".npz" and target is not None:
            raise DataError("--target applies to .csv files; a .npz file holds its labels under 'y' or 'y_train'")
        return
    from keras_lossopt.datasets import available_datasets  # NumPy; only for names that are not files

    if data in available_datasets():
        if target is not None:
            raise DataError(f"--target applies to .csv files, not to the built-in dataset {data!r}")
        return
    if path.suffix or path.exists():
        raise DataError(f"unsupported data file {data!r}: use a .npz or .csv file, or a built-in dataset")
    close = difflib.get_close_matches(data, available_datasets(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(f"unknown dataset {data!r}; built-in datasets: {', '.join(available_datasets())}{hint}")


def check_model_path(model: str) -> None:
    """Checks that `--model` names an existing Keras model file (its contents load later, with Keras).

    Args:
        model: the `--model` argument.

    Raises:
        DataError: for a missing path, a folder, or a file that is not a Keras model file.
    """
    path = pathlib.Path(model)
    if not path.exists():
        raise DataError(f"model file not found: {model}")
    if not path.is_file():
        raise DataError(f"--model {model} is not a file")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise DataError(f"--model {model}: expected a Keras model file ({', '.join(MODEL_SUFFIXES)})")


def check_trials_directory(directory: str) -> None:
    """Checks that the search's `--directory` can hold trial folders.

    Args:
        directory: the `--directory` argument.

    Raises:
        DataError: when it is a file.
    """
    if pathlib.Path(directory).expanduser().is_file():
        raise DataError(f"--directory {directory} is a file; name a folder for the trials")


#: Every file a report of `compare`, `search` or `advise` writes (tests check each command against it):
#: a folder holding only these is an earlier report, which a new report may replace; any other
#: file marks the folder as the user's.
REPORT_FILES = frozenset(
    {
        "advice.json",
        "best_loss.json",
        "configuration.json",
        "curves.png",
        "metrics.png",
        "report.md",
        "results.csv",
        "results.json",
        "trials.png",
    }
)


def check_output_folder(target: str | os.PathLike, option: str = "--output") -> pathlib.Path:
    """Checks, before any training, that `atomic_folder(target)` will be able to write there.

    Args:
        target: the report folder.
        option: the command-line option that named it, for the message.

    Returns:
        The resolved path.

    Raises:
        DataError: when `target` is a file, an existing folder that holds a file no report
            of this command writes (replacing the folder would delete the user's files), or
            lies under a file or a folder that cannot be written.
    """
    path = pathlib.Path(target).expanduser().resolve()
    if path.is_file():
        raise DataError(f"{option} {target} is a file; name a folder for the report")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in REPORT_FILES)
        if foreign:
            shown = ", ".join(repr(name) for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise DataError(
                f"{option} {target} holds files that no keras-lossopt report writes ({shown}); a report replaces "
                "its whole folder, so name a new folder (or one that holds only an earlier report)"
            )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{option} {target} lies under {parent}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{option} {target}: cannot write in {parent} (permission denied)")
    return path
