"""Commands started before pytest is ready; plain Python, no pytest import.

The Python API and the ``batchrunner`` command know their commands before
pytest has been imported and configured, which costs about 0.1 s. Rather than
wait, :class:`Prestart` starts the first attempts of the leading commands at
once, under the same rules as ``--batch-jobs`` look-ahead
(:mod:`~pytest_batchrunner.plugin.jobs`): at most *jobs* commands at once, in order,
and a finishing command starts the next only if it passed (so with one job,
commands never overlap and nothing starts after a failure). When pytest's run
loop begins, :meth:`Prestart.handoff` stops it and the
:class:`~pytest_batchrunner.plugin.jobs.JobRunner` adopts what was started: each item
takes its command's attempt instead of running it, and reports it as usual
(retries, timeouts, reports, progress are the plugin's).

Only commands that need nothing from pytest are started: the leading lines
without ``# batch:`` settings, each with the environment, directory and
timeout its item would give it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from pytest_batchrunner.batchfile import CommandSpec, LineSettings
from pytest_batchrunner.process.environment import command_environment, snapshot
from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES
from pytest_batchrunner.process.command import (
    DEFAULT_KILL_GRACE, Attempt, run_command, stop_group, terminate_in_flight,
)

__all__ = ["Prestart", "PrestartKey", "prestart_key"]

PrestartKey = tuple[str, int, str]
"""``(batch file path, line, command)``: how an item finds its command's attempt."""

_NO_SETTINGS = LineSettings()


def prestart_key(path: str, spec: CommandSpec) -> PrestartKey:
    """The key of *spec*'s command, collected from the file at *path*."""
    return (path, spec.line, spec.command)


class Prestart:
    """Start the first attempts of *specs* (from the batch file at *path*) ahead of pytest.

    *timeout* is the per-attempt timeout their items will have (``None``: none).
    Commands run in the current directory, as their items would. Call
    :meth:`start`, then :meth:`handoff` when pytest is ready, and always
    :meth:`close`.
    """

    def __init__(
        self,
        specs: Iterable[CommandSpec],
        path: str,
        *,
        jobs: int,
        timeout: float | None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        capture_bytes: int = DEFAULT_CAPTURE_BYTES,
    ) -> None:
        # Read as commands start, not all up front: most lines of a long batch never start here.
        self.specs: Iterator[CommandSpec] = iter(specs)
        self.next_spec: CommandSpec | None = self._plain(next(self.specs, None))
        self.path = path
        # Taken now, in the caller's thread: the environment the items will snapshot at configure.
        self.base_env = snapshot()
        self.jobs = jobs
        self.timeout = timeout or None
        self.kill_grace = kill_grace
        self.capture_bytes = capture_bytes
        self.cwd = os.getcwd()
        self.lock = threading.Lock()
        self.started: dict[PrestartKey, Future[Attempt]] = {}
        self.start_times: dict[PrestartKey, float] = {}
        """When each command's process started (``time.time()``, taken once it is spawned, so after
        any wait for file descriptors), for the logs' ``Executing`` lines."""
        self.running = 0
        self.live: set[int] = set()
        self.stopped = False
        self.closing = False
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the first commands (nothing if there is nothing to start)."""
        if self.next_spec is None:
            return
        self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="batchrunner-prestart")
        self._fill()

    def handoff(self) -> dict[PrestartKey, Future[Attempt]]:
        """Start nothing more; the commands started so far (some may still run), by key."""
        with self.lock:
            self.stopped = True
            return dict(self.started)

    def close(self) -> None:
        """Stop, and terminate commands still running (SIGTERM, the kill grace, SIGKILL). Idempotent."""
        self.handoff()
        if self.pool is None:
            return
        with self.lock:
            self.closing = True
        terminate_in_flight(self.lock, self.live, list(self.started.values()), self.kill_grace)
        self.pool.shutdown(wait=True)

    # -- the work -----------------------------------------------------------------------------

    def _fill(self) -> None:
        with self.lock:
            while not self.stopped and self.next_spec is not None and self.running < self.jobs:
                spec, self.next_spec = self.next_spec, self._plain(next(self.specs, None))
                self.running += 1
                assert self.pool is not None
                self.started[prestart_key(self.path, spec)] = self.pool.submit(self._run, spec)

    @staticmethod
    def _plain(spec: CommandSpec | None) -> CommandSpec | None:
        # A line with settings of its own, and everything after it, waits for pytest.
        return spec if spec is not None and spec.settings == _NO_SETTINGS else None

    def _run(self, spec: CommandSpec) -> Attempt:
        success = False
        try:
            attempt = run_command(
                spec.command,
                timeout=self.timeout,
                cwd=self.cwd,
                env=command_environment(self.base_env, self.path, spec.line, 1),
                kill_grace=self.kill_grace,
                capture_bytes=self.capture_bytes,
                started=lambda pgid: self._started(pgid, spec),
            )
            success = attempt.success
            with self.lock:
                self.live.discard(attempt.pid)
            return attempt
        finally:
            with self.lock:
                self.running -= 1
            # As with --batch-jobs: only a success starts the next command.
            if success:
                self._fill()

    def _started(self, pgid: int, spec: CommandSpec) -> None:
        with self.lock:
            self.live.add(pgid)
            self.start_times[prestart_key(self.path, spec)] = time.time()
            closing = self.closing
        if closing:  # started by a thread that was already on its way when close() began
            stop_group(pgid, signal.SIGKILL)
