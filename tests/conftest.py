"""Test session set-up: the backend from KERAS_BACKEND (TensorFlow by default), two logical
CPUs for MirroredStrategy on TensorFlow, seeds, and the `tensorflow_only` marker."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

if keras.backend.backend() == "tensorflow":
    # Logical devices can only be configured before TensorFlow initializes its runtime, so
    # this runs at import time, before any test touches a tensor. Tests that need one device
    # simply use the default strategy.
    _cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    except RuntimeError:  # runtime already initialized (e.g. by a plugin); MirroredStrategy tests skip
        pass


def pytest_collection_modifyitems(config, items):
    """Skips `tensorflow_only` tests on the other backends, with the reason in the report."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow-specific (tf.distribute / tf.data / tf tensors); backend is {backend}")
    for item in items:
        if "tensorflow_only" in item.keywords or "two_device_strategy" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    """Parametrizes `case` from the `cases` attribute of contract test classes."""
    if "case" in metafunc.fixturenames and metafunc.cls is not None and hasattr(metafunc.cls, "cases"):
        cases = metafunc.cls.cases
        selector = getattr(metafunc.function, "case_filter", None)
        if selector is not None:
            cases = [c for c in cases if selector(c)]
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(autouse=True)
def _seed_and_reset():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    # free_memory=False: a full gc.collect() after each of ~1,300 tests cost more time than the tests.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def two_device_strategy():
    # One strategy for the whole session: every MirroredStrategy numbers its collective
    # instances from the same start, and a second strategy in the same process reusing an
    # instance key with another tensor shape aborts with "Shape mismatch in the collective
    # instance". Programs normally create one strategy; so do the tests.
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


def _with_nan_convention(op, convention):
    """`op` whose NaN inputs give NaN ("propagate") or whose NaN results give 0 ("zero")."""
    if keras.backend.backend() != "tensorflow":
        return _with_nan_convention_in_keras_ops(op, convention)

    def wrapped(x, *args, **kwargs):
        out = op(x, *args, **kwargs)
        if convention == "zero":
            return tf.where(tf.math.is_nan(out), tf.zeros_like(out), out)
        is_nan = tf.math.is_nan(tf.cast(x, out.dtype))
        if args:
            is_nan = tf.logical_or(is_nan, tf.math.is_nan(tf.cast(args[0], out.dtype)))
        return tf.where(is_nan, tf.fill(tf.shape(out), tf.constant(float("nan"), out.dtype)), out)

    return wrapped


def _with_nan_convention_in_keras_ops(op, convention):
    # JAX and torch: `where`, `isnan` and `cast` of these backends do not call max/min.
    ops = keras.ops

    def wrapped(x, *args, **kwargs):
        out = op(x, *args, **kwargs)
        if convention == "zero":
            return ops.where(ops.isnan(out), ops.zeros_like(out), out)
        is_nan = ops.isnan(ops.cast(x, out.dtype))
        if args:
            is_nan = ops.logical_or(is_nan, ops.isnan(ops.cast(args[0], out.dtype)))
        return ops.where(is_nan, ops.full_like(out, float("nan")), out)

    return wrapped


def _max_min_functions():
    """The max/min functions the backend's relu and maximum/minimum go through."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [(jax.nn, "relu"), (jax.numpy, "maximum"), (jax.numpy, "minimum")]
    if backend == "torch":
        import torch

        return [(torch.nn.functional, "relu"), (torch, "relu"), (torch, "maximum"), (torch, "minimum")]
    return [(tf.nn, "relu"), (tf.math, "maximum"), (tf, "maximum"), (tf.math, "minimum"), (tf, "minimum")]


@pytest.fixture(params=["propagate", "zero"])
def nan_max_convention(request, monkeypatch):
    """Runs a test under both conventions CPUs use for max/min with a NaN operand.

    `relu(nan)` is NaN on some CPUs and 0 on others (x86 MAXPS returns its second operand
    when either is NaN, and compilers order the operands differently); a test whose
    outcome depends on it passes on one machine and fails on the next. Tests that push
    NaN through a network take this fixture, so both outcomes are checked on every CPU,
    on the backend under test (TensorFlow's, JAX's or torch's relu and maximum/minimum).
    """
    for module, name in _max_min_functions():
        monkeypatch.setattr(module, name, _with_nan_convention(getattr(module, name), request.param))
    return request.param
