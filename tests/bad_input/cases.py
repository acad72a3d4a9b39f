"""A shared shape for table-driven bad-input cases: what is done, and the error (or answer) due."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest


@dataclasses.dataclass(frozen=True)
class BadInputCase:
    """One bad input and the outcome the package documents for it.

    Attributes:
        id: test id.
        action: does the bad thing; returns a value when an answer (not an error) is due.
        error: the exception type due, or None when `action` must return the right answer.
        mentions: substrings (regular expressions) the message must contain: the argument
            or value, and what is expected.
        check_result: for `error=None`, a predicate on the returned value.
    """

    id: str
    action: Callable[[], Any]
    error: type[BaseException] | tuple[type[BaseException], ...] | None = ValueError
    mentions: tuple[str, ...] = ()
    check_result: Callable[[Any], bool] | None = None

    def __repr__(self):
        return self.id


def assert_bad_input(case: BadInputCase) -> None:
    """Runs `case` and checks its documented outcome."""
    if case.error is None:
        result = case.action()
        assert case.check_result is not None and case.check_result(result), f"{case.id}: unexpected result {result!r}"
        return
    with pytest.raises(case.error) as raised:
        case.action()
    message = str(raised.value)
    for pattern in case.mentions:
        assert re.search(pattern, message), f"{case.id}: {pattern!r} not in the message: {message}"
