import pytest

from benchmarks import bench_search, report


def _record(name, advice):
    scores = {"crossentropy": [0.83, 0.84, 0.83], "dice_ce": [0.83, 0.84, 0.832], "lovasz": [0.82, 0.83, 0.83]}
    return {
        "name": name,
        "task": "segmentation",
        "description": "small U-Net",
        "epochs": 20,
        "seeds": 3,
        "folds": 3,
        "batch_size": 8,
        "profile": "segmentation",
        "advice": advice,
        "fixed": {loss: {"scores": s, "seconds": [1.0, 1.0, 1.0]} for loss, s in scores.items()},
        "search": {
            "loss": "dice_ce",
            "parameters": {},
            "learning_rate": 0.003,
            "scores": [0.83, 0.84, 0.832],
            "seconds": 6.0,
            "seconds_first_10": 6.0,
            "trial_losses": ["lovasz"],
            "trial_scores": [0.83],
            "trials_run": 1,
            "pruned": 0,
            "cv_score": 0.83,
            "best_found_at": 1,
        },
    }


@pytest.fixture
def doc(tmp_path, monkeypatch):
    path = tmp_path / "benchmarks.md"
    monkeypatch.setattr(report, "DOC", path)
    return path


def test_assemble_marks_the_advisors_pick_now_where_it_changed_after_the_runs(doc):
    # `vessels`' objects cover 11.1% of its images: DiceCE first now; these runs started from Lovasz.
    bench_search.assemble([_record("vessels", ["lovasz", "dice_ce", "crossentropy"])], "cmd")
    text = doc.read_text()
    assert "| vessels | lovasz *(advisor's first pick when run)* |" in text
    assert "| vessels | dice_ce **(best in hindsight)** *(advisor's first pick now)* |" in text
    assert "advisor's first pick when run lovasz 0.827" in text
    assert "the advisor now ranks dice_ce first here (0.834, +0.000; target >= -0.02: met)" in text


def test_assemble_marks_one_pick_where_the_advisor_did_not_change(doc):
    # `shapes`' objects cover 6%: Lovasz first then and now.
    bench_search.assemble([_record("shapes", ["lovasz", "dice_ce", "crossentropy"])], "cmd")
    text = doc.read_text()
    assert "| shapes | lovasz *(advisor's first pick)* |" in text
    assert "when run" not in text and "first pick now" not in text and "now ranks" not in text
