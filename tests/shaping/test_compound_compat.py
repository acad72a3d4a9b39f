"""DiceCELoss / DiceFocalLoss as composites: the .keras files of tests/shaping/data (no state) load and agree."""

import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_lossopt.losses import DiceCELoss, DiceFocalLoss
from keras_lossopt.shaping import CompositeLoss, LossWeightScheduler, StepSchedule

DATA = pathlib.Path(__file__).parent / "data"
SAVED = json.loads((DATA / "values.json").read_text())


@pytest.mark.parametrize("name", sorted(SAVED))
def test_files_without_composite_state_load_with_the_same_config_and_value(name):
    model = keras.models.load_model(DATA / f"{name}.keras")  # no custom_objects
    loss = model.loss
    assert isinstance(loss, (DiceCELoss, DiceFocalLoss)) and isinstance(loss, CompositeLoss)
    assert json.loads(json.dumps(loss.get_config(), default=str)) == SAVED[name]["config"]
    batch = np.load(DATA / "batch.npz")
    value = float(loss(batch["y"], model.predict(batch["x"], verbose=0)))
    assert value == pytest.approx(SAVED[name]["loss"], rel=1e-6)


def test_compound_terms_are_named_logged_and_schedulable(rng):
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=(8, 6, 6))
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    loss = DiceCELoss(from_logits=True, dice_weight=0.5)
    assert loss.term_names == ("dice", "ce") and loss.dice_weight == 0.5
    model.compile("adam", loss=loss)
    scheduler = LossWeightScheduler({"dice": StepSchedule([1], [0.0, 2.0])})
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[scheduler]).history
    assert history["weight_dice"] == [0.0, 2.0]
    assert loss.dice_weight == 2.0 and loss.get_config()["dice_weight"] == 2.0
    assert {"loss_dice", "loss_ce"} <= set(history)


def test_importing_shaping_first_works():
    code = (
        "import keras_lossopt.shaping as s, keras_lossopt.losses as l; print(issubclass(l.DiceCELoss, s.CompositeLoss))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("True"), out.stderr[-2000:]
