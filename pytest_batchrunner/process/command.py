"""Run one shell command and account for every process it started.

Plain Python, no pytest import: the pytest items, the Python API and the command
line all run commands through :func:`run_command` (or :func:`start_command`).

What it guarantees (see RELIABILITY.md in the project's shared notes):

* the command runs as ``/bin/sh -c COMMAND`` in a new session (so its own
  process group), with stdin from ``/dev/null``;
* the attempt ends when the *shell* ends, with the shell's status, even if a
  background child still holds the output pipes; processes left in its
  session (its own process group, or another one, as ``timeout(1)`` and
  ``set -m`` shells make) are then terminated and named in
  :attr:`Attempt.leftovers`;
* on timeout every process of the session gets SIGTERM, then SIGKILL after a
  grace period, and the attempt is a timeout whatever the shell's exit status;
* output is captured through bounded buffers: the head and the tail of each
  stream and its total size, so memory stays flat whatever the command prints;
* if the caller is interrupted (KeyboardInterrupt, SystemExit...), the group is
  terminated before the exception propagates; if the caller's process dies
  outright, :mod:`pytest_batchrunner.process.guardian` terminates the group.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_batchrunner.process import guardian
from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES, WAIT_MAX, Echo, Pipes
from pytest_batchrunner.process.kill import kill_group, terminate_session
from pytest_batchrunner.process.signals import DeferredSignals, signal_name
from pytest_batchrunner.process.spawn import SLOTS, WaitInterrupted, remove, spawn
from pytest_batchrunner.process.tree import SUBREAPER, describe, leftover_members

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import Future

__all__ = [
    "DEFAULT_KILL_GRACE",
    "Attempt",
    "RunningCommand",
    "run_command",
    "start_command",
    "stop_group",
    "terminate_in_flight",
]

DEFAULT_KILL_GRACE = 1.0
# After the shell has exited and its group is gone, how long output still held
# by an escaped process (``setsid cmd &``) may delay the end of the attempt.
DRAIN_SECONDS = 0.2


@dataclass
class Attempt:
    """The outcome of one run of one command."""

    command: str
    exit_code: int | None
    """The shell's exit status; ``None`` when the shell was killed by a signal."""
    signal: str | None
    """Name of the signal that killed the shell (``"SIGSEGV"``), else ``None``."""
    timed_out: bool
    timeout: float | None
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    started: float
    """When the process was started, seconds since the epoch (after any wait for file descriptors)."""
    duration: float
    """Seconds from the process's start to the end of the shell (or its killing): its own run time."""
    leftovers: list[str] = field(default_factory=list)
    """Processes of the command's session killed after its shell ended, or on timeout
    those outside the shell's own process group."""
    expected_exit: int = 0
    pid: int = 0
    """The shell's process id, which is also the command's process group id."""
    timeout_note: str = ""
    """Which bound the timeout was, when it was not given as such (``"300% of its usual 1.03 s"``)."""
    interrupted: bool = False
    """The run was stopped (Ctrl+C, SIGTERM...) while the command ran, and the command was killed:
    :attr:`duration` runs from its start to then; :attr:`exit_code` and :attr:`signal` are ``None``
    (how the killed shell ended says nothing about the command)."""
    leftovers_fail: bool = False
    """Its :attr:`leftovers` make it fail (the caller's choice: pytest's ``-W error``)."""

    @property
    def success(self) -> bool:
        """Exited with the expected status, not by a signal, not timed out, not interrupted, no failing leftovers."""
        return (not self.timed_out and not self.interrupted and self.signal is None
                and self.exit_code == self.expected_exit and not self.leftovers_fail)

    def describe_status(self) -> str:
        """``"exit code 2"``, ``"killed by SIGSEGV"``, ``"timed out after 30 s"`` or ``"interrupted after 1.93 s"``."""
        if self.leftovers_fail and self.exit_code == self.expected_exit and self.signal is None and not self.timed_out:
            return "left processes behind: " + ", ".join(self.leftovers)
        if self.interrupted:
            return f"interrupted after {self.duration:.2f} s"
        if self.timed_out:
            note = f" ({self.timeout_note})" if self.timeout_note else ""
            return f"timed out after {self.timeout:g} s{note}"
        if self.signal is not None:
            return f"killed by {self.signal}"
        if self.exit_code is not None and self.exit_code > 128 and self.exit_code - 128 < 65:
            return f"exit code {self.exit_code} (128+{signal_name(self.exit_code - 128)})"
        return f"exit code {self.exit_code}"


def run_command(command: str, **options: Any) -> Attempt:
    """Run *command* to its end: :func:`start_command` with the same *options*, then :meth:`RunningCommand.wait`."""
    return start_command(command, **options).wait()


def start_command(
    command: str,
    *,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    capture_bytes: int = DEFAULT_CAPTURE_BYTES,
    kill_grace: float = DEFAULT_KILL_GRACE,
    expected_exit: int = 0,
    echo: Echo | None = None,
    started: Callable[[int], None] | None = None,
    ended: Callable[[], None] | None = None,
) -> RunningCommand:
    """Start *command* with ``/bin/sh -c``; :meth:`RunningCommand.wait` gives its :class:`Attempt`.

    *timeout* bounds the attempt, counted from the process's start (``None``
    or ``0``: no bound): a wait for a file-descriptor slot before it (see
    :func:`~pytest_batchrunner.process.spawn.spawn`) is neither run time nor counted against the timeout.
    *echo*, if given, is called as ``echo(1 or 2, chunk)`` with output as
    it arrives (live streaming), and with ``b""`` when that stream ends. *ended*, if
    given, is called once the attempt is over (waited for or abandoned). *started*, if given, is called with the process
    group id right after the spawn (so that a caller running commands in threads
    can stop them). The caller must call :meth:`~RunningCommand.wait` (from any
    thread, once): it reads the output, enforces the timeout and accounts for
    every process; any exception raised while waiting (KeyboardInterrupt
    included) terminates the command's process group before it propagates.
    """
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or a number of seconds, 0 or more, not {timeout!r}")
    if not 0 <= kill_grace <= WAIT_MAX:
        raise ValueError(f"kill_grace must be a finite number of seconds, 0 to {WAIT_MAX:g}, not {kill_grace!r}")
    token = guardian.start()
    if not SUBREAPER.checked():
        SLOTS.raise_open_file_limit()
        SUBREAPER.check()
    env = dict(os.environ if env is None else env)
    if token is not None:
        env[guardian.ENV_VAR] = token
    # A Ctrl+C landing inside Popen, after the fork, would lose the child: hold
    # SIGINT/SIGTERM handlers until it is tracked, then replay them below.
    while True:
        try:
            with DeferredSignals() as deferred:
                proc, script, wall_start, t0 = spawn(command, cwd, env, lambda: bool(deferred.caught))
                guardian.register(proc.pid)
                running = RunningCommand(
                    command, proc, Pipes(proc, capture_bytes, echo), wall_start, t0, timeout, kill_grace, expected_exit
                )
                running.ended = ended
                running.script = script
                if _killed_before_its_session(proc.pid):
                    running._decide("stopped")
                if started is not None:
                    started(proc.pid)
        except WaitInterrupted:
            # Leaving the block replayed the signal (a Ctrl+C raised there); a
            # handler that did not raise lets the wait for a slot go on.
            continue
        break
    try:
        deferred.replay()  # in this thread: the one the signal was meant for
    except BaseException:
        running.abandon()
        raise
    return running


class RunningCommand:
    """A command started by :func:`start_command`, not yet waited for."""

    def __init__(
        self,
        command: str,
        proc: subprocess.Popen[bytes],
        run: Pipes,
        wall_start: float,
        t0: float,
        timeout: float | None,
        kill_grace: float,
        expected_exit: int,
    ) -> None:
        self.command = command
        self.proc = proc
        self.run = run
        self.pgid = proc.pid
        self.wall_start = wall_start
        self.t0 = t0
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.expected_exit = expected_exit
        self.ended: Callable[[], None] | None = None
        """Called once when the attempt is over (see :func:`start_command`)."""
        self.interrupted_attempt: Attempt | None = None
        """The attempt an interruption of :meth:`wait` cut short (the command killed), if any."""
        self.script: str | None = None
        """The temporary script file of a very long command, removed when it ends."""
        self.end_cause: str | None = None
        """Who ended it, decided once (see :meth:`_decide`): ``"exited"``, ``"timed out"`` or ``"stopped"``."""
        IN_FLIGHT.add(self)

    def _decide(self, cause: str) -> str:
        """Record *cause* as what ended the command, unless something did first; what did."""
        with IN_FLIGHT.lock:
            if self.end_cause is None:
                self.end_cause = cause
            return self.end_cause

    def _end(self) -> None:
        ended, self.ended = self.ended, None
        if ended is not None:
            ended()

    def abandon(self) -> None:
        """Terminate the command's session and release everything, without an :class:`Attempt`."""
        try:
            terminate_session(self.run, self.pgid, self.kill_grace)
        finally:
            IN_FLIGHT.forget(self)
            self.run.close()
            guardian.unregister(self.pgid)
            self._end()
            SLOTS.ended()
            remove(self.script)

    def wait(self) -> Attempt:
        """Wait for the shell, then kill what is left of its group; the attempt.

        If the wait is interrupted (``KeyboardInterrupt``, ``SystemExit``...), the
        command's session is killed and the exception propagates; the attempt
        it cut short, with its run time up to the kill and the output read so
        far, is then :attr:`interrupted_attempt` (marked :attr:`Attempt.interrupted`).
        """
        run, pgid, t0, timeout = self.run, self.pgid, self.t0, self.timeout
        leftovers: list[str] = []
        try:
            deadline = t0 + timeout if timeout else None
            # What ended the attempt is decided once, by whoever came first: its own exit, its
            # timeout, or the run's stop (see stop_group); never by the exit status a signal left.
            if run.wait_exit(deadline):
                self._decide("exited")
                end = time.monotonic()
                members = leftover_members(pgid)
                if members:
                    # The shell is done; what is left of its session is a stray.
                    run.read_available()
                    leftovers = describe(members, pgid)
                    terminate_session(run, pgid, self.kill_grace, members)
            else:
                self._decide("timed out")
                killed = terminate_session(run, pgid, self.kill_grace)
                # The shell's group was the target; what had left it is named.
                leftovers = [name for name, group in killed if group != pgid]
                end = time.monotonic()
            run.drain(time.monotonic() + DRAIN_SECONDS)
        except BaseException:
            try:
                killed = terminate_session(run, pgid, self.kill_grace)
                # Its run time ends when it is dead, as a timeout's does; what it
                # wrote until then is still read from the pipes.
                end = time.monotonic()
                run.drain(end + DRAIN_SECONDS)
                self.interrupted_attempt = self._attempt(
                    end - t0, leftovers=[name for name, group in killed if group != pgid], interrupted=True
                )
            finally:
                self._release()
            raise
        self._release()
        cause = self.end_cause
        return self._attempt(end - t0, leftovers=leftovers, timed_out=cause == "timed out", interrupted=cause == "stopped")

    def _release(self) -> None:
        # Every path of wait() gets here with the session gone or sent SIGKILL.
        IN_FLIGHT.forget(self)
        self.run.close()
        guardian.unregister(self.pgid)
        self._end()
        SLOTS.ended()
        remove(self.script)

    def _attempt(self, duration: float, leftovers: list[str], timed_out: bool = False,
                 interrupted: bool = False) -> Attempt:
        run, status = self.run, self.proc.returncode
        if interrupted or status is None:
            # Killed by the runner as the run stopped: its shell's end is ours, not the command's.
            exit_code, signal_ = None, None
        else:
            exit_code, signal_ = (status, None) if status >= 0 else (None, signal_name(-status))
        return Attempt(
            command=self.command,
            exit_code=exit_code,
            signal=signal_,
            timed_out=timed_out,
            timeout=self.timeout if self.timeout else None,
            stdout=run.out.text(),
            stderr=run.err.text(),
            stdout_bytes=run.out.total,
            stderr_bytes=run.err.total,
            started=self.wall_start,
            duration=duration,
            leftovers=leftovers,
            expected_exit=self.expected_exit,
            pid=self.pgid,
            interrupted=interrupted,
        )


def terminate_in_flight(lock: threading.Lock, live: set[int], futures: Iterable[Future[Any]], grace: float) -> None:
    """Stop commands that threads are running: SIGTERM every group in *live*, wait up
    to *grace* seconds for *futures* (their attempts), then SIGKILL the groups still
    in *live*. *live* is read under *lock*; the threads remove a group once its
    attempt is over. Results and exceptions of *futures* are dropped.
    """
    with lock:
        groups = list(live)
    for pgid in groups:
        stop_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for future in futures:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:  # noqa: BLE001 - a killed command's result is dropped anyway
            pass
    with lock:
        groups = list(live)
    for pgid in groups:
        stop_group(pgid, signal.SIGKILL)


class InFlight:
    """The commands of this process not yet waited for, by process group (see :func:`stop_group`).

    Its lock also guards each command's :attr:`~RunningCommand.end_cause`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commands: dict[int, RunningCommand] = {}

    def add(self, running: RunningCommand) -> None:
        with self.lock:
            self.commands[running.pgid] = running

    def forget(self, running: RunningCommand) -> None:
        with self.lock:
            if self.commands.get(running.pgid) is running:
                del self.commands[running.pgid]

    def get(self, pgid: int) -> RunningCommand | None:
        with self.lock:
            return self.commands.get(pgid)


IN_FLIGHT = InFlight()


def stop_group(pgid: int, sig: int) -> None:
    """Send *sig* to command group *pgid* because the run stops: an attempt whose shell still runs is then interrupted."""
    running = IN_FLIGHT.get(pgid)
    if running is not None and not _exited(pgid):
        running._decide("stopped")
    kill_group(pgid, sig)


def _killed_before_its_session(pid: int) -> bool:
    """Whether the shell *pid* died before it made its session: between the fork and ``setsid`` it is
    still in the runner's process group, and a signal sent to that group (a terminal's Ctrl+C) kills it."""
    try:
        return os.getsid(pid) != pid
    except OSError:
        return False  # reaped already, or not known (a zombie's session on macOS): as before


def _exited(pid: int) -> bool:
    """Whether our child *pid* has exited, without reaping it (its waiting thread does)."""
    if not hasattr(os, "waitid"):  # macOS: not known, so the stop decides
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already
