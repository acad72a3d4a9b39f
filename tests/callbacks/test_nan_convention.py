import keras, numpy as np
def test_conv(nan_max_convention):
    x = keras.ops.convert_to_tensor(np.array([np.nan, -1.0, 2.0], "float32"))
    r = keras.ops.convert_to_numpy(keras.ops.relu(x))
    m = keras.ops.convert_to_numpy(keras.ops.maximum(x, 0.0))
    expect = np.nan if nan_max_convention == "propagate" else 0.0
    for v in (r, m):
        np.testing.assert_array_equal(v, [expect, 0.0, 2.0])
