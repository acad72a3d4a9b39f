"""The `nan_max_convention` fixture gives both NaN conventions of max/min on this backend."""

import keras
import numpy as np


def test_relu_and_maximum_follow_the_convention_under_test(nan_max_convention):
    x = keras.ops.convert_to_tensor(np.array([np.nan, -1.0, 2.0], "float32"))
    expected = np.nan if nan_max_convention == "propagate" else 0.0
    for value in (keras.ops.relu(x), keras.ops.maximum(x, 0.0)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), [expected, 0.0, 2.0])
