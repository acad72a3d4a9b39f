"""A `.keras` file saved on this backend loads on the other backends with the same loss and metric values."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_lossopt.losses import DiceLoss, FocalLoss
from keras_lossopt.metrics import DiceScore

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

LOAD_AND_EVALUATE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_lossopt  # registers the classes the file names
    data = np.load(sys.argv[2])
    model = keras.models.load_model(sys.argv[1])
    values = model.evaluate(data["x"], data["y"], batch_size=len(data["x"]), verbose=0, return_dict=True)
    print(json.dumps({"backend": keras.backend.backend(), "loss_class": type(model.loss).__name__,
                      "values": {k: float(v) for k, v in values.items()}}))
    """
)


def _other_backends():
    current = keras.backend.backend()
    return [b for b in BACKENDS if b != current]


def _segmentation_model():
    inputs = keras.Input((4, 4, 2))
    logits = keras.layers.Conv2D(3, 1, kernel_initializer=keras.initializers.GlorotUniform(seed=3))(inputs)
    return keras.Model(inputs, logits)


@pytest.mark.parametrize(
    "make_loss",
    [lambda: FocalLoss(gamma=2.0, from_logits=True), lambda: DiceLoss(from_logits=True)],
    ids=["focal", "dice"],
)
@pytest.mark.parametrize("target", _other_backends())
def test_file_saved_here_loads_on_the_other_backend(tmp_path, make_loss, target):
    if importlib.util.find_spec(BACKENDS[target]) is None:
        pytest.skip(f"the {target} backend is not installed (pip install keras-lossopt[{target}])")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 4, 4, 2)).astype("float32")
    y = rng.integers(0, 3, size=(4, 4, 4))
    model = _segmentation_model()
    model.compile(loss=make_loss(), metrics=[DiceScore(num_classes=3, from_logits=True)])
    here = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    env = {**os.environ, "KERAS_BACKEND": target, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AND_EVALUATE, str(tmp_path / "model.keras"), str(tmp_path / "data.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    there = json.loads(run.stdout.strip().splitlines()[-1])
    assert there["backend"] == target
    assert there["loss_class"] == type(model.loss).__name__
    assert set(there["values"]) == set(here)
    for name, value in here.items():
        np.testing.assert_allclose(there["values"][name], value, rtol=1e-5, err_msg=name)
