"""The environment a batch command gets; plain Python, no pytest import.

Shared by the items (:meth:`~pytest_batchrunner.plugin.items.CommandItem.environment`)
and by :mod:`~pytest_batchrunner.process.prestart`, which starts commands before pytest
is ready: both must give a command exactly the same environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

__all__ = ["command_environment", "snapshot"]


def snapshot() -> dict[str, str]:
    """``os.environ`` as commands get it.

    ``PYTEST_CURRENT_TEST`` is pytest's own per-phase marker, not part of the
    environment we hand on.
    """
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def command_environment(
    base: Mapping[str, str], file: str, line: int, attempt: int, extra: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """*base* plus the ``BATCH_*`` variables of attempt *attempt* of the command at *file*:*line*, then *extra*.

    *extra* is the line's ``env=`` setting, which wins over everything else.
    """
    env = dict(base)
    env["BATCH_FILE"] = file
    env["BATCH_LINE"] = str(line)
    env["BATCH_ATTEMPT"] = str(attempt)
    env["BATCH_WORKER"] = env.get("PYTEST_XDIST_WORKER", "main")
    env.update(extra)
    return env
