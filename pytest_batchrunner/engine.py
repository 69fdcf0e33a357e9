"""How commands run in a session: settings resolved once, and the stash keys the modules share.

A module of its own so that items, jobs, the API and the plugin wiring all
import it at the top, without an import cycle through :mod:`.plugin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .process import DEFAULT_CAPTURE_BYTES, DEFAULT_KILL_GRACE, Echo

__all__ = ["ENGINE_KEY", "JOBS_KEY", "PATTERNS_KEY", "PRESTART_KEY", "RECORDING_KEY", "EngineSettings", "has_timeout_plugin"]


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
PRESTART_KEY = pytest.StashKey[Any]()
"""The Python API's :class:`~pytest_batchrunner.prestart.Prestart`: commands started before pytest was ready."""


def has_timeout_plugin(config: pytest.Config) -> bool:
    """Whether pytest-timeout is active, loaded by its entry point (``timeout``) or as a module (``pytest_timeout``).

    The module name is what ``-p pytest_timeout`` registers, and what the Python
    API registers to skip the scan of every installed distribution's entry points.
    """
    return config.pluginmanager.hasplugin("timeout") or config.pluginmanager.hasplugin("pytest_timeout")
