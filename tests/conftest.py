"""Test session set-up: TensorFlow backend, two logical CPUs for MirroredStrategy, seeds."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

# Logical devices can only be configured before TensorFlow initializes its runtime, so this
# runs at import time, before any test touches a tensor. Tests that need one device simply
# use the default strategy.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # runtime already initialized (e.g. by a plugin); MirroredStrategy tests skip
    pass


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
