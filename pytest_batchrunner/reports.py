"""Report files written on the controller: options and registration.

Each report owns a module; this one only adds their options and registers the
writers that the options ask for. A writer may implement ``on_start(nodeid,
command)`` and ``on_attempt(record, outcome)`` (called as the run goes, via
:class:`~pytest_batchrunner.results.Recorder` listeners) and ``finish(recorder)``
(called once at session finish, also when the run is interrupted).
"""

from __future__ import annotations

import pytest


def add_options(group, parser: pytest.Parser) -> None:  # type: ignore[no-untyped-def]
    """Add the report options to the ``batchrunner`` option group."""


def configure(config: pytest.Config, recording) -> None:  # type: ignore[no-untyped-def]
    """Register the writers the options ask for (controller only)."""
