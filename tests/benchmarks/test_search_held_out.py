import numpy as np
import pytest

from benchmarks import search_held_out
from benchmarks.search_held_out import EMPTY_MASK_RULE_SHARE, PICK_TARGET, describe_configuration, with_empty_images
from keras_lossopt.datasets import load_shapes
from keras_lossopt.tuning import advise


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


@pytest.mark.parametrize("name", ["shapes-empty60", "shapes-fg15-empty50", "shapes-fg25-empty60"])
def test_the_empty_configurations_reach_the_old_empty_mask_rule(name):
    data = search_held_out.HELD_OUT[name][0]()
    labels = np.concatenate([data.y_train, data.y_val])
    advice = advise(labels, "segmentation", num_classes=data.num_classes)
    # They test the region where DiceCE and CE used to go first.
    assert advice.profile.empty_share >= EMPTY_MASK_RULE_SHARE
    non_empty = labels[_has_foreground(labels)]
    assert [a.candidate for a in advice.ranked] == [
        a.candidate for a in advise(non_empty, "segmentation", num_classes=data.num_classes).ranked
    ]


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


def test_describe_configuration_says_when_the_advisor_changed_after_the_runs():
    record = _record([0.50, 0.52, 0.51], [0.60, 0.61, 0.62])
    assert "changed after these runs" not in describe_configuration(record, current_first="pick")
    note = describe_configuration(record, current_first="best", object_share=0.123)
    assert f"The advisor now ranks best first here ({np.mean([0.60, 0.61, 0.62]):.3f}, +0.000)" in note
    assert "objects cover 12.3% of the images that hold them" in note


def test_merge_seeds_joins_consecutive_seed_ranges_and_refuses_gaps():
    first = {**_record([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]), "first_seed": 3}
    later = {**_record([0.1, 0.2], [0.3, 0.4]), "first_seed": 6, "seeds": 2}
    for record in (first, later):
        for v in record["fixed"].values():
            v["seconds"] = [1.0] * len(v["scores"])
    (merged,) = search_held_out.merge_seeds([later, first])
    assert merged["seeds"] == 5 and merged["first_seed"] == 3
    assert merged["fixed"]["pick"]["scores"] == [0.5, 0.6, 0.7, 0.1, 0.2]
    assert first["fixed"]["pick"]["scores"] == [0.5, 0.6, 0.7]  # the inputs are not modified
    assert "seeds 3-7" in describe_configuration(merged)
    with pytest.raises(ValueError, match="gapped"):
        search_held_out.merge_seeds([first, {**later, "first_seed": 7}])


def test_the_verdict_passes_a_first_pick_tied_with_the_best_even_beyond_the_target():
    # 0.03 behind on the mean, but the paired differences are too noisy to separate the two.
    tied = describe_configuration(_record([0.50, 0.70, 0.56], [0.60, 0.61, 0.64]))
    assert "-0.030; target >= -0.02: NOT met" in tied
    assert "the first pick is in the tie" in tied and "Verdict (within 0.02 or in the tie): pass." in tied
    # 0.03 behind on every seed: outside the target and the tie.
    behind = describe_configuration(_record([0.57, 0.58, 0.61], [0.60, 0.61, 0.64]))
    assert "the first pick is outside the tie" in behind and "Verdict (within 0.02 or in the tie): FAIL." in behind


@pytest.mark.parametrize(
    ("name", "low", "high", "first"),
    [
        ("shapes-fg08", 0.07, 0.09, "lovasz"),
        ("vessels-two", 0.085, 0.10, "lovasz"),
        ("shapes-fg11", 0.10, 0.115, "dice_ce"),
        ("shapes-64", 0.10, 0.15, "dice_ce"),
        ("shapes-5class", 0.07, 0.09, "lovasz"),
    ],
)
def test_the_configurations_near_the_threshold_lie_where_they_were_declared(name, low, high, first):
    loader = search_held_out.HELD_OUT[name][0]
    pick, object_share = search_held_out.current_first_pick(loader)
    assert low <= object_share < high
    assert pick == first
