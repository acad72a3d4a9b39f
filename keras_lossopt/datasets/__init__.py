"""Offline, seeded datasets: real data shipped by packages, and generated data.

See `keras_lossopt.datasets.builtin` for the loaders and their split conventions, and
`keras_lossopt.datasets.segmentation` for the synthetic shapes segmentation data ("shapes").
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
    train_val_test_indices,
)
from keras_lossopt.datasets.segmentation import SHAPE_KINDS, load_shapes, make_shapes
from keras_lossopt.datasets.vessels import load_vessels, make_vessels

__all__ = [
    "LOADERS",
    "SHAPE_KINDS",
    "Dataset",
    "available_datasets",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_shapes",
    "load_vessels",
    "make_shapes",
    "make_vessels",
    "stratified_split",
    "subsample_classes",
    "train_val_test_indices",
]
