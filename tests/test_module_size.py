"""No module of the package is longer than 500 lines (one concept per module)."""

import pathlib

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent / "keras_lossopt"
LIMIT = 500


def line_counts():
    return {
        path.relative_to(PACKAGE_ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE_ROOT.rglob("*.py"))
    }


def test_no_module_is_over_the_limit():
    too_long = {name: lines for name, lines in line_counts().items() if lines > LIMIT}
    assert not too_long, f"modules over {LIMIT} lines: {too_long}"
