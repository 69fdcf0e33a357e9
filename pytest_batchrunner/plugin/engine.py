"""How commands run in a session: settings resolved once, and the stash keys the modules share.

A module of its own so that items, jobs, the API and the plugin wiring all
import it at the top, without an import cycle through :mod:`~pytest_batchrunner.plugin`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES, Echo
from pytest_batchrunner.process.command import DEFAULT_KILL_GRACE

__all__ = [
    "ATTEMPT_ENDED_KEY", "ATTEMPT_STARTED_KEY", "ENGINE_KEY", "ENVIRONMENT_KEY", "JOBS_KEY", "LIVE_KEY", "PRESTART_KEY",
    "ONLY_COMMANDS_KEY", "RECORDING_KEY", "REMOTE_KEY", "HOST_KEY", "WORKDIR_KEY", "EngineSettings", "MIN_RELATIVE_TIMEOUT",
    "default_timeout", "has_timeout_plugin", "is_remote",
]

MIN_RELATIVE_TIMEOUT = 1.0
"""Seconds: the least a relative timeout (``timeout=300%``) allows; a command that usually takes 10 ms still gets 1 s."""


@dataclass(frozen=True)
class EngineSettings:
    """How commands are run, resolved once per run from options and ini values."""

    capture_bytes: int = DEFAULT_CAPTURE_BYTES
    kill_grace: float = DEFAULT_KILL_GRACE
    echo: Echo | None = None
    output_lines: int = 15
    """Lines of each stream a failure shows in the terminal (``--batch-output-lines``)."""


ENGINE_KEY = pytest.StashKey[EngineSettings]()
RECORDING_KEY = pytest.StashKey[Any]()
"""The controller's :class:`~pytest_batchrunner.plugin.recording.BatchRecording`."""
JOBS_KEY = pytest.StashKey[Any]()
"""The process's :class:`~pytest_batchrunner.plugin.jobs.JobRunner`, when commands may start ahead."""
ENVIRONMENT_KEY = pytest.StashKey[dict[str, str]]()
"""The environment commands start from (see :mod:`~pytest_batchrunner.plugin.environment`)."""
LIVE_KEY = pytest.StashKey[Any]()
"""The process's :class:`~pytest_batchrunner.plugin.live.WorkerLive`, when commands are watched live."""
ATTEMPT_STARTED_KEY = pytest.StashKey[Any]()
"""``(nodeid, attempt, max_attempts, started)``: called (in any thread) when an attempt's command has started.

*started* is when its process started (epoch seconds), the record's ``started``: a wait
for file descriptors before the spawn is not part of it.

Set by the controller's recording (see :mod:`~pytest_batchrunner.plugin.recording`), so
in a run without xdist; the logs announce a command when it really starts."""
ATTEMPT_ENDED_KEY = pytest.StashKey[Any]()
"""``(item, attempt_number, attempt, rerun)``: called in a job slot's thread when a command started ahead of its
item's turn has ended, before pytest reports it; *rerun* says whether the slot runs it again (see
:mod:`~pytest_batchrunner.plugin.jobs`). Set by the controller's recording, so that logs written as commands
end (the audit log in parallel mode) need not wait for the item's turn."""
REMOTE_KEY = pytest.StashKey[Any]()
"""The controller's :class:`~pytest_batchrunner.plugin.remote.RemoteWorkers`, when some xdist gateway is remote."""
HOST_KEY = pytest.StashKey[str]()
"""Where this process runs commands, as the reports name it (see :mod:`~pytest_batchrunner.plugin.remote`); ``:`` if unset."""
WORKDIR_KEY = pytest.StashKey[Any]()
"""Where a remote worker runs commands (a :class:`~pathlib.Path`); unset: pytest's start directory."""
ONLY_COMMANDS_KEY = pytest.StashKey[bool]()
"""Whether the session's items are batch commands alone (collected here, or, on the xdist controller, by the workers)."""
PRESTART_KEY = pytest.StashKey[Any]()
"""The Python API's :class:`~pytest_batchrunner.process.prestart.Prestart`: commands started before pytest was ready."""


def has_timeout_plugin(config: pytest.Config) -> bool:
    """Whether pytest-timeout is active, loaded by its entry point (``timeout``) or as a module (``pytest_timeout``).

    The module name is what ``-p pytest_timeout`` registers, and what the Python
    API registers to skip the scan of every installed distribution's entry points.
    """
    return config.pluginmanager.hasplugin("timeout") or config.pluginmanager.hasplugin("pytest_timeout")


def default_timeout(config: pytest.Config) -> float | None:
    """The run's per-attempt timeout as pytest-timeout documents it (``--timeout`` > ``PYTEST_TIMEOUT`` > ini), or None."""
    if not has_timeout_plugin(config):
        return None
    value = config.getoption("timeout", None)
    if value is None:
        value = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout") or None
    return None if value is None else float(value)


def runs_commands(config: pytest.Config) -> bool:
    """False under ``--collect-only``, ``--setup-only`` and ``--setup-plan``: no item's call runs, so no command does."""
    option = config.option
    return not (option.collectonly or getattr(option, "setuponly", False) or getattr(option, "setupplan", False))


# Retry plugins that take over an item's protocol (they call a Python test's
# private fixture machinery, and share rerunfailures' ``flaky`` marker): refused
# beside batch commands, before any of them starts.
REFUSED_PLUGINS = {
    "pytest-retry": "its retries would bypass the reports (use retries= or --reruns)",
    "flaky": "it also takes over the flaky marker that retries= and --reruns use (use them instead)",
}


def refuse_retry_plugins(config: pytest.Config) -> None:
    """Stop a run of batch commands with a usage error if pytest-retry or flaky is on, naming the way out."""
    for name, why in REFUSED_PLUGINS.items():
        if config.pluginmanager.has_plugin(name):
            raise pytest.UsageError(
                f"pytest-batchrunner cannot run batch commands with the {name} plugin: {why}; "
                f"turn it off with -p no:{name}"
            )


def is_remote(spec: Any) -> bool:
    """Whether a gateway's worker sees other copies of the files: another machine, or another folder."""
    return not spec.popen or bool(spec.chdir)
