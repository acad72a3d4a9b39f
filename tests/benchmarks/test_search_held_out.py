import numpy as np
import pytest

from benchmarks import search_held_out
from benchmarks.search_held_out import PICK_TARGET, describe_configuration, with_empty_images
from keras_lossopt.datasets import load_shapes
from keras_lossopt.tuning import advise
from keras_lossopt.tuning.advisor import EMPTY_MASK_SHARE


def _has_foreground(labels):
    return labels.reshape(len(labels), -1).max(axis=1) > 0


def test_with_empty_images_blanks_the_share_of_every_split_and_keeps_the_rest():
    data = load_shapes(num_images=40, image_size=16, foreground_fraction=0.1, seed=2)
    share = 0.6
    emptied = with_empty_images(data, share, seed=5)
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        new_x, new_y = getattr(emptied, f"x_{split}"), getattr(emptied, f"y_{split}")
        assert new_x.shape == x.shape and new_x.dtype == x.dtype and new_y.dtype == y.dtype
        blank = ~_has_foreground(new_y)
        assert blank.sum() == round(share * len(y))
        # The images kept are untouched; the blanked ones are new images, not the old ones relabelled.
        np.testing.assert_array_equal(new_x[~blank], x[~blank])
        np.testing.assert_array_equal(new_y[~blank], y[~blank])
        assert not np.any(np.all(new_x[blank] == x[blank], axis=(1, 2, 3)))
    # Backgrounds as make_shapes draws them: colour in [0.3, 0.6] plus a small gradient, noise 0.25.
    blank_train = emptied.x_train[~_has_foreground(emptied.y_train)]
    assert 0.3 < blank_train.mean() < 0.6
    assert abs(blank_train.std() - 0.25) < 0.05
    # The input is not modified.
    assert _has_foreground(data.y_train).all()


def test_the_empty_configuration_triggers_the_advisors_empty_mask_rule():
    loader = search_held_out.HELD_OUT["shapes-empty60"][0]
    data = loader()
    labels = np.concatenate([data.y_train, data.y_val])
    advice = advise(labels, "segmentation", num_classes=data.num_classes)
    assert advice.profile.empty_share >= EMPTY_MASK_SHARE
    assert [a.candidate for a in advice.ranked][:2] == ["dice_ce", "crossentropy"]


def _record(pick_scores, best_scores):
    return {
        "name": "case",
        "description": "small U-Net",
        "epochs": 20,
        "batch_size": 8,
        "first_seed": 3,
        "seeds": 3,
        "profile": "segmentation",
        "advice": ["pick", "best"],
        "fixed": {"pick": {"scores": pick_scores}, "best": {"scores": best_scores}},
    }


@pytest.mark.parametrize("shortfall", [PICK_TARGET / 2, PICK_TARGET * 2])
def test_describe_configuration_judges_the_first_pick_against_the_target(shortfall):
    best = [0.60, 0.64, 0.62]
    pick = [b - shortfall + d for b, d in zip(best, [0.004, -0.004, 0.0])]
    note = describe_configuration(_record(pick, best))
    gap = np.mean(pick) - np.mean(best)
    assert f"advisor's first pick pick {np.mean(pick):.3f}" in note
    assert f"({gap:+.3f}; target >= -{PICK_TARGET}: {'met' if shortfall < PICK_TARGET else 'NOT met'}" in note
    assert "seeds 3-5" in note
