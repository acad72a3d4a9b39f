"""`cli/paths.py`: which folders a report may replace."""

import pytest

from keras_lossopt.cli.paths import REPORT_FILES, DataError, check_output_folder


@pytest.mark.parametrize(
    "earlier_report",
    [
        ["advice.json", "report.md"],  # advise
        ["results.json", "results.csv", "report.md", "metrics.png", "curves.png"],  # compare
        ["results.json", "results.csv", "report.md", "trials.png", "best_loss.json"],  # search
    ],
)
def test_an_earlier_report_of_each_command_may_be_replaced(tmp_path, earlier_report):
    folder = tmp_path / "report"
    folder.mkdir()
    for name in earlier_report:
        (folder / name).write_text("")
    assert set(earlier_report) <= REPORT_FILES
    assert check_output_folder(folder) == folder.resolve()


def test_a_folder_with_the_users_files_is_refused_naming_them(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("report.md", "thesis.tex", "a.txt", "b.txt", "c.txt"):
        (folder / name).write_text("")
    with pytest.raises(DataError, match=r"no keras-lossopt report writes \('a\.txt', 'b\.txt', 'c\.txt', \.\.\.\)"):
        check_output_folder(folder)
