"""Bad input to the synthetic thin-structure dataset (table-driven)."""

import pytest

from keras_lossopt.datasets import load_vessels, make_vessels
from tests.bad_input.cases import BadInputCase, assert_bad_input

CASES = [
    BadInputCase(
        "image_size < 16", lambda: make_vessels(2, image_size=8), ValueError, (r"`image_size` must be >= 16",)
    ),
    BadInputCase(
        "branch_probability > 1",
        lambda: make_vessels(2, branch_probability=1.5),
        ValueError,
        (r"`branch_probability` must be in \[0, 1\]", "1.5"),
    ),
    BadInputCase("max_vessels 0", lambda: make_vessels(2, max_vessels=0), ValueError, (r"`max_vessels` must be >= 1",)),
    BadInputCase("noise < 0", lambda: make_vessels(2, noise=-0.1), ValueError, (r"`noise` must be >= 0",)),
    BadInputCase("num_images float", lambda: make_vessels(2.5), TypeError, ("num_images",)),
    BadInputCase(
        "splits leave nothing",
        lambda: load_vessels(num_images=10, validation_split=0.5, test_split=0.5),
        ValueError,
        (r"validation_split \+ test_split", "0.5"),
    ),
    BadInputCase(
        "too few images for the splits",
        lambda: load_vessels(num_images=2, validation_split=0.45, test_split=0.45),
        ValueError,
        ("No training images left", "num_images=2"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case):
    assert_bad_input(case)
