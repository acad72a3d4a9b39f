"""`cli/recommendation.py`: the paired one-standard-error rule on constructed fold scores (NumPy only)."""

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from keras_lossopt.cli.recommendation import RULE, paired_difference, recommend


def reference_difference(leader, other):
    """The mean per-fold difference and its standard error, written out with the standard library."""
    differences = [a - b for a, b in zip(leader, other)]
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def test_paired_difference_matches_the_textbook_formula_and_scipys_paired_t():
    leader, other = [0.93, 0.71, 0.88, 0.90], [0.90, 0.74, 0.80, 0.85]
    mean, error = paired_difference(leader, other)
    expected_mean, expected_error = reference_difference(leader, other)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert error == pytest.approx(expected_error, rel=1e-12)
    assert mean / error == pytest.approx(stats.ttest_rel(leader, other).statistic, rel=1e-10)
    # lower is better: the sign follows the direction
    assert paired_difference(other, leader, "min") == pytest.approx((mean, error))


@pytest.mark.parametrize(("leader", "other"), [([0.9], [0.8]), ([0.9, 0.8], [0.8]), ([], [])])
def test_paired_difference_needs_two_paired_folds(leader, other):
    with pytest.raises(ValueError, match="at least 2 fold scores"):
        paired_difference(leader, other)


def test_the_issues_case_is_a_tie_broken_by_the_lower_spread():
    # 3-fold scores like the report of issue 19: class-balanced focal leads on the mean with twice the spread.
    focal = [0.770, 0.975, 0.988]
    adjusted = [0.830, 0.930, 0.934]
    pick = recommend({"class_balanced_focal": focal, "logit_adjusted": adjusted})
    assert pick.leader == "class_balanced_focal"
    assert pick.is_tie and pick.tied == ("class_balanced_focal", "logit_adjusted")
    assert pick.chosen == "logit_adjusted"
    assert np.std(adjusted) < np.std(focal)
    difference, error = reference_difference(focal, adjusted)
    assert 0 < difference <= error
    text = pick.describe()
    assert text.startswith("logit_adjusted: a tie within the noise between ")
    assert f"class_balanced_focal ({np.mean(focal):.4f} ± {np.std(focal):.4f})" in text
    assert f"logit_adjusted ({np.mean(adjusted):.4f} ± {np.std(adjusted):.4f})" in text
    assert f"by {difference:.4f} (standard error {error:.4f})" in text
    assert text.endswith("within one standard error; the tie goes to the lowest spread over folds")
    saved = pick.to_dict()
    assert saved["loss"] == "logit_adjusted" and saved["tie"] == ["class_balanced_focal", "logit_adjusted"]
    assert saved["rule"] == RULE.format(units="folds") and saved["paired_over"] == "3 folds"


def test_a_lead_larger_than_the_noise_is_not_a_tie():
    # B trails A on every fold by about 0.05: small next to the folds' spread, large next to its own noise.
    a = [0.95, 0.70, 0.85]
    b = [0.90, 0.66, 0.79]
    pick = recommend({"b": b, "a": a})
    assert (pick.leader, pick.tied, pick.chosen, pick.is_tie) == ("a", ("a",), "a", False)
    difference, error = reference_difference(a, b)
    assert difference > error
    assert pick.describe().startswith("a: ahead of each other loss by more than one standard error")
    assert f"closest: b, {difference:.4f} behind, standard error {error:.4f}" in pick.describe()


def test_a_three_way_tie_names_every_tied_loss_and_leaves_out_the_clear_loser():
    scores = {
        "crossentropy": [0.60, 0.62, 0.61],  # far behind on every fold
        "focal": [0.88, 0.79, 0.93],
        "poly1": [0.90, 0.84, 0.86],
        "ldam": [0.84, 0.85, 0.86],
    }
    pick = recommend(scores)
    assert pick.leader == "focal" and pick.tied == ("focal", "poly1", "ldam")
    assert pick.chosen == "ldam"  # the lowest spread of the three
    text = pick.describe()
    assert "between focal (" in text and "poly1 (" in text and " and ldam (" in text
    assert "crossentropy" not in text
    assert [c.candidate for c in pick.comparisons if not c.tied] == ["crossentropy"]


def test_equal_spreads_keep_the_better_mean():
    # Binary fractions: both spreads are exactly sqrt(1/24).
    pick = recommend({"a": [0.5, 0.75, 0.25], "b": [0.625, 0.375, 0.875]})
    assert pick.spreads["a"] == pick.spreads["b"]
    assert pick.tied == ("b", "a") and pick.chosen == "b"
    assert pick.describe().endswith("equal spreads, so the tie goes to the better mean")


def test_a_lead_of_the_same_size_on_every_fold_is_beyond_the_noise():
    pick = recommend({"a": [0.8, 0.9, 0.7], "b": [0.75, 0.85, 0.65]})
    assert not pick.is_tie and pick.chosen == "a"


def test_a_candidate_stopped_early_or_not_finite_never_ties():
    pick = recommend({"full": [0.80, 0.90, 0.85], "raced": [0.80, 0.88], "broken": [0.81, float("nan"), 0.84]})
    assert pick.tied == ("full",) and pick.chosen == "full"
    raced = next(c for c in pick.comparisons if c.candidate == "raced")
    assert raced.folds == 2 and not raced.tied
    assert "2 stopped early or not finite, not compared" in pick.describe()
    assert "broken" not in pick.means


def test_one_fold_gives_no_tie_and_says_so():
    pick = recommend({"a": [0.8], "b": [0.9]}, units="seeds")
    assert pick.chosen == "b" and not pick.is_tie
    assert pick.to_dict()["paired_over"] == "1 seed" and pick.to_dict()["tie"] is None
    assert "no tie can be judged" in pick.describe()


def test_a_search_ranking_score_and_a_lower_is_better_direction():
    scores = {"x": [0.30, 0.20, 0.25], "y": [0.31, 0.22, 0.24]}
    pick = recommend(scores, direction="min")
    assert pick.leader == "x" and pick.tied == ("x", "y")
    assert recommend(scores, ranking={"x": 0.9, "y": 0.1}).leader == "x"


def test_on_random_fold_scores_a_tie_is_a_paired_t_of_at_most_one(rng):
    for _ in range(200):
        folds = int(rng.integers(2, 8))
        shared = rng.normal(0.8, 0.08, size=folds)  # what the folds share
        a = shared + rng.normal(0.0, 0.03, size=folds)
        b = shared + rng.normal(-0.02, 0.03, size=folds)
        pick = recommend({"a": a, "b": b})
        leader, other = (a, b) if pick.leader == "a" else (b, a)
        t = stats.ttest_rel(leader, other).statistic
        assert pick.is_tie == bool(t <= 1 + 1e-9)


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        ({}, {}, "at least one candidate"),
        ({"a": [float("nan")]}, {}, "no candidate has finite scores"),
        ({"a": [0.5]}, {"direction": "up"}, "`direction` must be 'max' or 'min'"),
    ],
)
def test_bad_arguments_are_named(scores, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recommend(scores, **kwargs)
