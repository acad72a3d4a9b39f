"""choose_optimizer and select_optimizers refuse unknown, repeated or empty families, naming them."""

import keras_tuner
import pytest

from keras_lossopt.tuning import choose_optimizer, select_optimizers
from tests.bad_input.cases import BadInputCase, assert_bad_input

CASES = [
    BadInputCase("unknown family", lambda: select_optimizers(["adamm"]), mentions=("'adamm'", "Did you mean 'adam'")),
    BadInputCase(
        "not a name", lambda: select_optimizers([3]), mentions=("Unknown optimizer family 3", "Known families")
    ),
    BadInputCase("empty", lambda: select_optimizers([]), mentions=("at least one optimizer family",)),
    BadInputCase("twice", lambda: select_optimizers(["sgd", "SGD"]), mentions=("twice", "'sgd', 'sgd'")),
    BadInputCase(
        "default not offered",
        lambda: choose_optimizer(keras_tuner.HyperParameters(), ["adam"], default="sgd"),
        mentions=("default", "sgd"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_optimizer_space_bad_input(case):
    assert_bad_input(case)
