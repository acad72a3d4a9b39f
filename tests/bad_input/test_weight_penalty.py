"""WeightPenalty refuses bad strengths and layer lists at construction, and unbound or unknown layers at the call."""

import keras
import numpy as np
import pytest

from keras_lossopt.shaping import WeightPenalty
from tests.bad_input.cases import BadInputCase, assert_bad_input


def _model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Dropout(0.1, name="drop")(hidden)))


def _call(penalty):
    model = _model()
    return penalty.bind(model)(None, model(np.ones((2, 3), "float32")))


def _frozen_call():
    model = _model()
    model.get_layer("hidden").trainable = False
    return WeightPenalty(l2=0.1, layers=["hidden"]).bind(model)(None, model(np.ones((2, 3), "float32")))


CASES = [
    BadInputCase("negative l1", lambda: WeightPenalty(l1=-0.1), mentions=("l1", "-0.1")),
    BadInputCase("nan l2", lambda: WeightPenalty(l2=float("nan")), mentions=("l2", "nan")),
    BadInputCase("no strength", lambda: WeightPenalty(), mentions=("l1` > 0 or `l2` > 0",)),
    BadInputCase("negative weight", lambda: WeightPenalty(l2=0.1, weight=-1), mentions=("weight", "-1")),
    BadInputCase("layers a string", lambda: WeightPenalty(l2=0.1, layers="out"), mentions=("layers", "'out'")),
    BadInputCase("layers empty", lambda: WeightPenalty(l2=0.1, layers=[]), mentions=("layers", r"\[\]")),
    BadInputCase("layers not names", lambda: WeightPenalty(l2=0.1, layers=[3]), mentions=("layer names", r"\[3\]")),
    BadInputCase("bind to a layer", lambda: WeightPenalty(l2=0.1).bind(keras.layers.Dense(2)), mentions=("Dense",)),
    BadInputCase(
        "unbound",
        lambda: WeightPenalty(l2=0.1)(None, np.ones((2, 2), "float32")),
        mentions=("not bound", "track_loss_terms"),
    ),
    BadInputCase(
        "unknown layer",
        lambda: _call(WeightPenalty(l2=0.1, layers=["outt"])),
        mentions=("no layer named 'outt'", "'out'"),
    ),
    BadInputCase("layer without kernel", lambda: _call(WeightPenalty(l2=0.1, layers=["drop"])), mentions=("'drop'",)),
    BadInputCase("frozen layer", _frozen_call, mentions=("'hidden'", "no trainable kernel")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_weight_penalty_bad_input(case):
    assert_bad_input(case)
