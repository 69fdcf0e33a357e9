"""How commands run in a session: settings resolved once, and the stash keys the modules share.

A module of its own so that items, jobs, the API and the plugin wiring all
import it at the top, without an import cycle through :mod:`.plugin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .process import DEFAULT_CAPTURE_BYTES, DEFAULT_KILL_GRACE, Echo

__all__ = ["ENGINE_KEY", "JOBS_KEY", "PATTERNS_KEY", "RECORDING_KEY", "EngineSettings"]


@dataclass(frozen=True)
class EngineSettings:
    """How commands are run, resolved once per run from options and ini values."""

    capture_bytes: int = DEFAULT_CAPTURE_BYTES
    kill_grace: float = DEFAULT_KILL_GRACE
    echo: Echo | None = None


ENGINE_KEY = pytest.StashKey[EngineSettings]()
RECORDING_KEY = pytest.StashKey[Any]()
"""The controller's :class:`~pytest_batchrunner.recording.BatchRecording`."""
JOBS_KEY = pytest.StashKey[Any]()
"""The process's :class:`~pytest_batchrunner.jobs.JobRunner`, when commands may start ahead."""
PATTERNS_KEY = pytest.StashKey[list[str]]()
