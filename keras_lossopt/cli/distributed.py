"""The role of a `keras-lossopt search` process in keras-tuner's chief/worker mode (standard library only).

keras-tuner runs one search over several processes (or machines) when every process gets
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` (where the chief listens) and its own
`KERASTUNER_TUNER_ID`: an id containing `chief` serves the oracle over gRPC and trains
nothing; every other id is a worker that asks the chief for trials and trains them. The
command checks these variables before TensorFlow starts, so a missing port or id is one line
and exit status 2 instead of keras-tuner's RuntimeError (or a worker that silently runs a
whole search of its own).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from keras_lossopt.cli.paths import DataError

__all__ = ["SearchRole", "search_role"]

_IP, _PORT, _ID = "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"


@dataclasses.dataclass(frozen=True)
class SearchRole:
    """Where this process stands in a distributed search.

    Attributes:
        tuner_id: the process' `KERASTUNER_TUNER_ID`.
        address: `ip:port` of the chief's oracle.
    """

    tuner_id: str
    address: str

    @property
    def is_chief(self) -> bool:
        """Whether this process serves the oracle (keras-tuner's rule: the id contains `chief`)."""
        return "chief" in self.tuner_id


def search_role(environ: Mapping[str, str] | None = None, *, overwrite: bool = False) -> SearchRole | None:
    """The distributed role from the environment, or None for a search in one process.

    Args:
        environ: the environment. Default: `os.environ`.
        overwrite: whether `--overwrite` was given (refused on a worker).

    Returns:
        A `SearchRole`, or None when no `KERASTUNER_*` variable is set.

    Raises:
        DataError: for a partial set of variables, a port that is not 1..65535, or
            `--overwrite` on a worker (it would delete the shared trials the chief and the
            other workers write).
    """
    environ = os.environ if environ is None else environ
    given = [name for name in (_IP, _PORT, _ID) if environ.get(name, "").strip()]
    if not given:
        return None
    missing = [name for name in (_IP, _PORT, _ID) if name not in given]
    if missing:
        raise DataError(
            f"a distributed search needs {_IP}, {_PORT} and {_ID}; {', '.join(given)} "
            f"{'is' if len(given) == 1 else 'are'} set but not {', '.join(missing)} (unset them all for a "
            "search in one process)"
        )
    port_text = environ[_PORT].strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise DataError(f"{_PORT} must be a port number from 1 to 65535, got {port_text!r}")
    role = SearchRole(environ[_ID].strip(), f"{environ[_IP].strip()}:{int(port_text)}")
    if overwrite and not role.is_chief:
        raise DataError(
            f"--overwrite on worker {role.tuner_id!r} would delete the trials the chief and the other workers "
            "write in the shared --directory; give --overwrite to the chief only"
        )
    return role
