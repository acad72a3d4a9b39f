"""Offline, seeded datasets: real data shipped by packages, and generated data.

See `keras_lossopt.datasets.builtin` for the loaders and their split conventions.
"""

from keras_lossopt.datasets.builtin import (
    LOADERS,
    Dataset,
    available_datasets,
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_mnist,
    stratified_split,
    subsample_classes,
)

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
]
