"""The API pages of the documentation site render the public objects, not the module internals."""

import pathlib
import re

import pytest

API_PAGES = sorted((pathlib.Path(__file__).resolve().parents[1] / "docs" / "api").glob("*.md"))


@pytest.mark.parametrize("page", API_PAGES, ids=lambda page: page.name)
def test_api_pages_let_the_filters_choose_the_members(page):
    # `members: true` renders every member mkdocstrings collects, past the filters: each page
    # then opened with a dump of the module's `__all__` (and `__getattr__`, `_EXPORTS`).
    assert not re.search(r"^\s*members:\s*true\s*$", page.read_text(encoding="utf-8"), re.M)
