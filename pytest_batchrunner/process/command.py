"""Run one shell command and account for every process it started.

Plain Python, no pytest import: the pytest items, the Python API and the command
line all run commands through :func:`run_command`.

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

How the session is found without scanning every process after every command: on
Linux the runner is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) while
at least one command runs, so a process orphaned by a command's shell is
re-parented to it instead of to PID 1; after the shell exits, the runner's own children (one small ``/proc``
read) with ``getsid() == `` the command's session are what is left, with their
descendants. The runner never waits for "any child" (it would steal exit
statuses from other code's :class:`subprocess.Popen` objects): it reaps
exactly the pids it killed. Elsewhere, ``ps`` lists the session, only when
something may be left (a timeout, an interruption, a live process group).
* output is captured through bounded buffers: the head and the tail of each
  stream and its total size, so memory stays flat whatever the command prints;
* if the caller is interrupted (KeyboardInterrupt, SystemExit...), the group is
  terminated before the exception propagates; if the caller's process dies
  outright, :mod:`pytest_batchrunner.process.guardian` terminates the group.
"""

from __future__ import annotations

import ctypes
import errno
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_batchrunner.process import guardian

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "DEFAULT_CAPTURE_BYTES",
    "DEFAULT_KILL_GRACE",
    "Attempt",
    "DeferredSignals",
    "OutputBuffer",
    "RunningCommand",
    "run_command",
    "start_command",
    "kill_group",
    "kill_session",
    "stop_adopting",
    "stop_group",
    "terminate_in_flight",
    "signal_name",
    "signal_number",
]

SHELL = "/bin/sh"
DEFAULT_CAPTURE_BYTES = 1024 * 1024
DEFAULT_KILL_GRACE = 1.0
HEAD_BYTES = 8 * 1024
# After the shell has exited and its group is gone, how long output still held
# by an escaped process (``setsid cmd &``) may delay the end of the attempt.
DRAIN_SECONDS = 0.2
_READ_SIZE = 65536
_POLL_MAX = 0.05
# The longest single wait handed to poll(2) (its timeout is an int of
# milliseconds): a longer timeout is waited for in steps, never overflowing.
_WAIT_MAX = 2_147_483.0

Echo = Callable[[int, bytes], None]


def signal_name(signum: int) -> str:
    """``11`` -> ``"SIGSEGV"``, ``37`` -> ``"SIGRTMIN+3"`` (a realtime signal); an unknown number gives ``"signal 99"``."""
    rtmin, rtmax = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    if rtmin < signum < rtmax:
        return f"SIGRTMIN+{signum - rtmin}"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signal_number(name: str | None) -> int | None:
    """The number :func:`signal_name` gave *name* (``None`` for none, or a name it never gives)."""
    if name and name.startswith("SIGRTMIN+") and name[9:].isdigit():
        return int(signal.SIGRTMIN) + int(name[9:])
    if name and name.startswith("signal ") and name[7:].isdigit():
        return int(name[7:])
    try:
        return int(signal.Signals[name]) if name else None
    except KeyError:
        return None


class OutputBuffer:
    """Keep the first ``head`` bytes and the last ``limit`` bytes of a stream.

    Everything in between is counted, not kept, so a command printing gigabytes
    costs at most ``head + 2 * limit`` bytes.
    """

    __slots__ = ("limit", "head_limit", "head", "tail", "total")

    def __init__(self, limit: int = DEFAULT_CAPTURE_BYTES, head: int = HEAD_BYTES) -> None:
        self.limit = max(0, limit)
        # The head is a bonus for reading how a command started; the tail is what counts.
        self.head_limit = min(head, self.limit // 8)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
            if not data:
                return
        self.tail += data
        keep = self.limit - self.head_limit
        # Trim only when the tail is twice its size: amortised O(1) per byte.
        if len(self.tail) > 2 * keep + _READ_SIZE:
            del self.tail[: len(self.tail) - keep]

    @property
    def dropped(self) -> int:
        """How many bytes were counted but not kept."""
        return self.total - len(self.head) - min(len(self.tail), self.limit - self.head_limit)

    def text(self) -> str:
        """The kept output as text (invalid UTF-8 replaced), with a marker where bytes were dropped."""
        keep = self.limit - self.head_limit
        tail = self.tail[len(self.tail) - keep:] if len(self.tail) > keep else self.tail
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return (bytes(self.head) + bytes(tail)).decode("utf-8", "replace")
        return (
            self.head.decode("utf-8", "replace")
            + f"\n[... {dropped} bytes dropped by pytest-batchrunner ...]\n"
            + tail.decode("utf-8", "replace")
        )


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
    :func:`_spawn`) is neither run time nor counted against the timeout.
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
    if not 0 <= kill_grace <= _WAIT_MAX:
        raise ValueError(f"kill_grace must be a finite number of seconds, 0 to {_WAIT_MAX:g}, not {kill_grace!r}")
    token = guardian.start()
    if os.getpid() not in _ADOPTING:
        _raise_open_file_limit()
        _adopt_orphans()
    env = dict(os.environ if env is None else env)
    if token is not None:
        env[guardian.ENV_VAR] = token
    # A Ctrl+C landing inside Popen, after the fork, would lose the child: hold
    # SIGINT/SIGTERM handlers until it is tracked, then replay them below.
    while True:
        try:
            with DeferredSignals() as deferred:
                proc, script, wall_start, t0 = _spawn(command, cwd, env, lambda: bool(deferred.caught))
                guardian.register(proc.pid)
                running = RunningCommand(
                    command, proc, _Run(proc, capture_bytes, echo), wall_start, t0, timeout, kill_grace, expected_exit
                )
                running.ended = ended
                running.script = script
                if started is not None:
                    started(proc.pid)
        except _WaitInterrupted:
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


class SpawnError(OSError):
    """A command could not be started (no file descriptor left with nothing else running...)."""


class _WaitInterrupted(Exception):
    """A signal came while a spawn waited for a file-descriptor slot: nothing was started."""


# Commands started and not yet waited for, and spawns in progress (each holds
# a few descriptors), in this process: a spawn that finds no file descriptor
# left waits until one of them ends (``_ends`` counts the ends).
_running = 0
_spawning = 0
_ends = 0
_running_changed = threading.Condition()
# Commands (three descriptors each) allowed at once, from the open-files limit.
_fd_budget = [1 << 30]
_FD_RESERVE = 64


def _spawn(
    command: str, cwd: str | os.PathLike[str] | None, env: Mapping[str, str],
    signalled: Callable[[], bool] = lambda: False,
) -> tuple[subprocess.Popen[bytes], str | None, float, float]:
    """``/bin/sh -c command`` in a new session; out of file descriptors, wait for a running command and retry.

    Only when nothing else is running is it an error (:class:`SpawnError`).
    A command longer than the kernel takes as one argument (128 KiB on Linux)
    is handed to the shell as a temporary script file instead (``sh FILE``,
    so ``$0`` is the file's name), removed when the command ends; returns the
    process, that file's name (if any), and when the process was started
    (``time.time()``, ``time.monotonic()``): taken just before the ``Popen``
    that succeeded, so a wait for descriptors is not part of its run time.
    While it waits, *signalled* is asked every 0.1 s: a signal held meanwhile
    (see :class:`DeferredSignals`) ends the wait with :class:`_WaitInterrupted`,
    since it may be the Ctrl+C that stops the run, and the slot may come only
    when a command it stops ends.
    """
    global _running, _spawning, _ends
    script = None
    argv = [SHELL, "-c", command]
    if len(command) > _MAX_ARGUMENT // 4 and len(command.encode("utf-8", "surrogateescape")) > _MAX_ARGUMENT:
        script = _script_file(command)
        argv = [SHELL, script]
    try:
        while True:
            with _running_changed:
                # Leave descriptors for the rest of the program (imports, reports):
                # beyond the budget, a spawn waits for a running command to end.
                while _running + _spawning >= _fd_budget[0] and _running + _spawning > 0:
                    if signalled():
                        raise _WaitInterrupted
                    _running_changed.wait(timeout=0.1)
                if _running + _spawning == 0:
                    _set_subreaper(True)
                _spawning += 1
                seen = _ends
            # The command's clock starts here, not when it was asked for: the
            # wait above (seconds under a low ``ulimit -n``) is not its run time
            # and must never count against its timeout.
            wall_start, t0 = time.time(), time.monotonic()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    with _running_changed:
                        _spawning -= 1
                        if _running + _spawning == 0:
                            _set_subreaper(False)
                    raise
                with _running_changed:
                    _spawning -= 1
                    if _running + _spawning == 0:
                        _set_subreaper(False)
                    if _running == 0 and _spawning == 0 and _ends == seen:
                        raise SpawnError(
                            exc.errno, f"cannot start the command: {exc.strerror} (nothing else is running)"
                        ) from None
                    # Something else holds descriptors and will let them go: wait for it.
                    if signalled():
                        raise _WaitInterrupted from None
                    if _ends == seen:  # else something ended already: retry at once
                        _running_changed.wait(timeout=0.1)
                continue
            with _running_changed:
                _spawning -= 1
                _running += 1
                _ends += 1
                _running_changed.notify_all()
            return proc, script, wall_start, t0
    except BaseException:
        _remove(script)
        raise


# Above this many bytes a command goes to the shell as a script file: Linux
# refuses a single argument of 128 KiB or more (MAX_ARG_STRLEN), and the
# environment shares the total; well below both.
_MAX_ARGUMENT = 64 * 1024


def _script_file(command: str) -> str:
    """Write *command* to a new private file (mode 0600) for ``sh FILE``."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="batchrunner-", suffix=".sh")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(command.encode("utf-8", "surrogateescape"))
    except BaseException:
        _remove(path)
        raise
    return path


def _remove(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def _command_ended() -> None:
    global _running, _ends
    with _running_changed:
        _running -= 1
        _ends += 1
        if _running + _spawning == 0:
            _set_subreaper(False)
        _running_changed.notify_all()


class RunningCommand:
    """A command started by :func:`start_command`, not yet waited for."""

    def __init__(
        self,
        command: str,
        proc: subprocess.Popen[bytes],
        run: _Run,
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
        with _in_flight_lock:
            _in_flight[self.pgid] = self

    def _decide(self, cause: str) -> str:
        """Record *cause* as what ended the command, unless something did first; what did."""
        with _in_flight_lock:
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
            _terminate_session(self.run, self.pgid, self.kill_grace)
        finally:
            self._forget()
            self.run.close()
            guardian.unregister(self.pgid)
            self._end()
            _command_ended()
            _remove(self.script)

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
                members = _leftover_members(pgid)
                if members:
                    # The shell is done; what is left of its session is a stray.
                    run.read_available()
                    leftovers = _describe(members, pgid)
                    _terminate_session(run, pgid, self.kill_grace, members)
            else:
                self._decide("timed out")
                killed = _terminate_session(run, pgid, self.kill_grace)
                # The shell's group was the target; what had left it is named.
                leftovers = [name for name, group in killed if group != pgid]
                end = time.monotonic()
            run.drain(time.monotonic() + DRAIN_SECONDS)
        except BaseException:
            try:
                killed = _terminate_session(run, pgid, self.kill_grace)
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

    def _forget(self) -> None:
        with _in_flight_lock:
            if _in_flight.get(self.pgid) is self:
                del _in_flight[self.pgid]

    def _release(self) -> None:
        # Every path of wait() gets here with the session gone or sent SIGKILL.
        self._forget()
        self.run.close()
        guardian.unregister(self.pgid)
        self._end()
        _command_ended()
        _remove(self.script)

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


try:
    # The C functions behind the signal module's wrappers, which convert every
    # handler and number to an enum: ten times the cost, on every spawn in a
    # main thread (an xdist worker's), about 40 us a command.
    import _signal as _raw_signal
except ImportError:  # another Python than CPython
    _raw_signal = signal  # type: ignore[assignment]


class DeferredSignals:
    """Hold Python-level SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers for a moment; :meth:`replay` runs them.

    Only in the main thread (the only one Python delivers signals to); elsewhere
    a no-op. Handlers that are not Python callables (SIG_DFL, SIG_IGN) are left
    alone. As a context manager: held inside the block, restored at its end, and
    replayed there if the block raised; else :meth:`restore` and :meth:`replay`.
    """

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.caught: list[int] = []

    def _defer(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)

    def __enter__(self) -> DeferredSignals:
        return self.hold()

    def hold(self) -> DeferredSignals:
        """Start holding the signals (what entering the context does)."""
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                handler = _raw_signal.getsignal(sig)
                if callable(handler):
                    self.previous[sig] = handler
                    _raw_signal.signal(sig, self._defer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        if exc[0] is not None:
            self.replay()

    def restore(self) -> None:
        """Put the held handlers back (signals caught so far wait for :meth:`replay`)."""
        for sig, handler in self.previous.items():
            if _raw_signal.getsignal(sig) == self._defer:
                _raw_signal.signal(sig, handler)

    def replay(self) -> None:
        """Run the held handlers for the signals caught (``KeyboardInterrupt`` for a Ctrl+C)."""
        caught, self.caught = self.caught, []
        for signum in caught:
            self.previous[signum](signum, None)


class _Run:
    """The pipes and exit notification of one running shell."""

    def __init__(self, proc: subprocess.Popen[bytes], capture_bytes: int, echo: Echo | None) -> None:
        self.proc = proc
        self.echo = echo
        self.out = OutputBuffer(capture_bytes)
        self.err = OutputBuffer(capture_bytes)
        assert proc.stdout is not None and proc.stderr is not None
        self.streams = {proc.stdout.fileno(): (self.out, 1), proc.stderr.fileno(): (self.err, 2)}
        # poll(2) needs no kernel object of its own, unlike epoll: cheaper for a
        # selector that lives for one short command.
        self.sel: selectors.BaseSelector = (
            selectors.PollSelector() if hasattr(selectors, "PollSelector") else selectors.SelectSelector()
        )
        for fd in self.streams:
            self.sel.register(fd, selectors.EVENT_READ)
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
                self.sel.register(self.pidfd, selectors.EVENT_READ)
            except OSError:  # kernel older than 5.3: poll for the exit instead
                self.pidfd = None

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            _, stream = self.streams.pop(fd)
            if self.echo is not None:
                self.echo(stream, b"")
            return
        buffer, stream = self.streams[fd]
        buffer.add(data)
        if self.echo is not None:
            self.echo(stream, data)

    def _handle(self, fd: int) -> None:
        if fd == self.pidfd:
            self._reap()
        elif fd in self.streams:
            self._read(fd)

    def _reap(self) -> None:
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self.proc.wait()

    def exited(self) -> bool:
        """Whether the shell has ended (it is then reaped)."""
        if self.proc.returncode is not None:
            return True
        if self.pidfd is None:
            return self.proc.poll() is not None
        return False

    def wait_exit(self, deadline: float | None) -> bool:
        """Read output until the shell exits (True) or *deadline* passes (False)."""
        poll = 0.001
        while not self.exited():
            # Without a pidfd (macOS, old kernels) the exit is polled, backing off to 50 ms.
            wait: float | None = None
            if self.pidfd is None:
                wait, poll = poll, min(poll * 2, _POLL_MAX)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(left, _WAIT_MAX) if wait is None else min(wait, left)
            for key, _ in self.sel.select(wait):
                self._handle(key.fd)
        return True

    def read_available(self) -> None:
        """Read what the pipes hold right now, without waiting."""
        while self.streams:
            ready = [key.fd for key, _ in self.sel.select(0)]
            if not ready:
                return
            for fd in ready:
                self._handle(fd)

    def drain(self, deadline: float) -> None:
        """Read until both pipes are closed, or until *deadline*."""
        while self.streams:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _ in self.sel.select(left):
                self._handle(key.fd)

    def close(self) -> None:
        self.sel.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


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


# Commands of this process not yet waited for, by process group (see stop_group).
_in_flight: dict[int, RunningCommand] = {}
_in_flight_lock = threading.Lock()


def stop_group(pgid: int, sig: int) -> None:
    """Send *sig* to command group *pgid* because the run stops: an attempt whose shell still runs is then interrupted."""
    with _in_flight_lock:
        running = _in_flight.get(pgid)
    if running is not None and not _exited(pgid):
        running._decide("stopped")
    kill_group(pgid, sig)


def _exited(pid: int) -> bool:
    """Whether our child *pid* has exited, without reaping it (its waiting thread does)."""
    if not hasattr(os, "waitid"):  # macOS: not known, so the stop decides
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already


def kill_group(pgid: int, sig: int) -> None:
    """Send *sig* to process group *pgid*; a group that is gone (or not ours) is no error."""
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def kill_session(sid: int, sig: int) -> None:
    """Send *sig* to every process of session *sid* (a command's shell is its session leader)."""
    kill_group(sid, sig)
    for pid in _session_members(sid):
        _kill(pid, sig)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass  # gone, or not ours any more


def _terminate_session(run: _Run, sid: int, grace: float, members: list[int] | None = None) -> list[tuple[str, int]]:
    """SIGTERM the session, give it *grace* seconds, then SIGKILL whatever is left.

    *sid* is the shell's pid, its session and its process group. The shell is
    reaped, and so is every killed process that is (or, once its parent is
    reaped, becomes) our child. While waiting, output is still read, so that a
    process blocked on a full pipe can reach its exit. A second interruption
    while waiting (another Ctrl+C) goes straight to SIGKILL. Returns the live
    processes found, as ``(description, process group)``.
    """
    if members is None:
        members = _session_members(sid)
    killed = _describe_groups(members)
    kill_group(sid, signal.SIGTERM)
    for pid in members:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while True:
            if run.exited():
                members = _merge(members, _session_members(sid))
                if not _any_alive(sid, members):
                    break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            step = min(deadline, time.monotonic() + 0.01)
            if run.exited():
                if run.streams:
                    run.drain(step)
                else:
                    time.sleep(min(left, 0.01))
            else:
                run.wait_exit(step)
    finally:
        kill_group(sid, signal.SIGKILL)
        for pid in members:
            _kill(pid, signal.SIGKILL)
        run.proc.wait()
        # Orphans of the processes just killed come to us once those exit.
        late = _session_members(sid)
        for pid in late:
            _kill(pid, signal.SIGKILL)
        _reap(_merge(members, late))
    return killed


def _merge(first: list[int], second: list[int]) -> list[int]:
    seen = set(first)
    return first + [pid for pid in second if pid not in seen]


def _any_alive(sid: int, members: list[int]) -> bool:
    if _group_alive(sid):
        return True
    return any(_state(pid) not in (None, "Z", "X") for pid in members)


def _reap(pids: list[int]) -> None:
    """Wait for exactly these pids (sent SIGKILL), those that are our children; never "any child".

    In the order found (parents first): reaping a parent re-parents its dead
    children to us, so they can be reaped next. Bounded: a process stuck in the
    kernel is left to PID 1.
    """
    deadline = time.monotonic() + 1.0
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # not our child: its own parent reaps it
            except OSError:
                break
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.001)


_HAVE_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_PRCTL: dict[int, Any] = {}
# pid -> whether that process adopts orphans (a forked child does not inherit it).
_ADOPTING: dict[int, bool] = {}


def _raise_open_file_limit() -> None:
    """Raise the soft limit of open files toward the hard one, as many runners do (once per process).

    Each running command holds three descriptors (two pipes, a pidfd); the
    common soft limit of 1,024 would cap ``--batch-jobs`` well below what a
    machine can run. Capped at 65,536: nothing here needs more. Under a low
    hard limit, commands at once are bounded so that 64 descriptors stay free
    for the rest of the program (imports, report files).
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if sys.platform == "darwin":
            want = min(want, 10240)  # OPEN_MAX: macOS refuses more for the soft limit
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        if soft != resource.RLIM_INFINITY:
            # Four descriptors per command while it spawns, three while it runs;
            # keep a reserve for everything else.
            _fd_budget[0] = max(1, (soft - _FD_RESERVE) // 4)
    except (ImportError, ValueError, OSError):
        pass  # keep the limit we have; a spawn that hits it waits for a running command


def _adopt_orphans() -> bool:
    """Whether this process can be the child subreaper (Linux), checked once per process."""
    pid = os.getpid()
    adopting = False
    if _HAVE_PROC:
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
            state = ctypes.c_int(0)
            adopting = prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(state), 0, 0, 0) == 0
            _PRCTL[pid] = prctl
        except (OSError, AttributeError):
            adopting = False
    _ADOPTING[pid] = adopting
    return adopting


def _set_subreaper(on: bool) -> None:
    """Adopt orphans (or stop), called as the first command of this process starts and the last one ends.

    Only while commands run: a process orphaned at another time (a Python
    test's daemon, another program's helper) is not adopted, so it never
    waits as a zombie for us, who never wait for children we did not start.
    """
    prctl = _PRCTL.get(os.getpid())
    if prctl is not None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


_PR_SET_PDEATHSIG = 1


def signal_when_parent_dies(signum: int) -> bool:
    """Ask the kernel to send *signum* to this process when its parent dies (Linux); whether it took.

    An xdist worker's commands are its own: killed outright, its controller
    cannot stop them, and the worker would go on until its link times out.
    """
    if not _HAVE_PROC:
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        parent = os.getppid()
        if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the request: act now
        os.kill(os.getpid(), signum)
    return True


def stop_adopting() -> None:
    """Stop being the child subreaper if no command runs (at the end of a run; a no-op normally)."""
    with _running_changed:
        if _running == 0 and _spawning == 0:
            _set_subreaper(False)


def _children(pid: int, tids: list[str] | None = None) -> list[int]:
    """The children of *pid*, from ``/proc/PID/task/*/children``."""
    if tids is None:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
    found: list[int] = []
    for tid in tids:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
        except OSError:
            continue
        try:
            # Small reads: a large buffer costs more than the read itself.
            data = os.read(fd, 4096)
            if len(data) == 4096:  # hundreds of children: read the rest
                while chunk := os.read(fd, 65536):
                    data += chunk
            found.extend(map(int, data.split()))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return found


def _session_members(sid: int, leader_alive: bool = True) -> list[int]:
    """Processes of session *sid* other than its leader, parents before children.

    As a subreaper (Linux): the leader's descendants and our own children (the
    orphans we adopted) in that session, with their descendants. Otherwise a
    scan of every process (``/proc``, or ``ps`` elsewhere).
    """
    me = os.getpid()
    if _ADOPTING.get(me):
        # Orphans are re-parented to our thread-group leader, the main thread.
        queue = _children(me, [str(me)])
        if leader_alive:
            queue += _children(sid)
        found: list[int] = []
        seen = {sid, me}
        while queue:
            pid = queue.pop(0)
            if pid in seen:
                continue
            seen.add(pid)
            try:
                if os.getsid(pid) != sid:
                    continue
            except OSError:
                continue
            found.append(pid)
            queue.extend(_children(pid))
        return found
    return [pid for pid, _, _ in _scan_sessions(sid)]


def _leftover_members(sid: int) -> list[int]:
    """After the shell exited: what is left of its session (empty in the common case, cheaply).

    Zombies among them (adopted orphans that ended by themselves) are reaped and
    not reported.
    """
    if _ADOPTING.get(os.getpid()):
        members = _session_members(sid, leader_alive=False)
        if not members:
            if not _group_alive(sid):
                return []
            members = [pid for pid, _, _ in _scan_sessions(sid)]
    elif _group_alive(sid):
        members = _session_members(sid) or [sid]
    else:
        return []
    live = []
    for pid in members:
        if pid != sid and _state(pid) in (None, "Z", "X"):
            _reap([pid])
        else:
            live.append(pid)
    return live


def _state(pid: int) -> str | None:
    """The process state letter (``"R"``, ``"S"``, ``"Z"``...), or ``None`` when it is gone."""
    if not _HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "S"
        return "S"
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return chr(stat[stat.rindex(b")") + 2])
    except (OSError, ValueError, IndexError):
        return None


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in group *pgid*.

    One ``killpg(pgid, 0)`` answers the common case. When it finds members, the
    shell's orphans may only be zombies waiting for PID 1 to reap them (seen on
    this project's CI machines, where init reaps lazily), so on Linux ``/proc``
    has the last word.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _HAVE_PROC:
        return True
    return any(group == pgid for _, group, _ in _scan_sessions(None, pgid))


def _scan_sessions(sid: int | None, pgid: int | None = None) -> list[tuple[int, int, str]]:
    """``(pid, process group, command)`` of the live processes of session *sid* (or of group
    *pgid*), leader excluded, from a scan of every process: ``/proc`` on Linux, ``ps`` elsewhere."""
    found = []
    if _HAVE_PROC:
        try:
            entries = os.listdir("/proc")
        except OSError:
            return found
        for entry in entries:
            if not entry.isdigit() or int(entry) == sid:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                # The command name may hold spaces and parentheses: split after the last ')'.
                fields = stat[stat.rindex(b")") + 2:].split()
                group, session = int(fields[2]), int(fields[3])
            except (OSError, ValueError, IndexError):
                continue
            if fields[0] in (b"Z", b"X") or (sid is not None and session != sid) or (pgid is not None and group != pgid):
                continue
            found.append((int(entry), group, ""))
        return found
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,pgid=,sess=,stat=,command="], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return found
    for row in listing.splitlines():
        parts = row.split(None, 4)
        if len(parts) < 4 or not parts[0].isdigit() or parts[3].startswith("Z") or int(parts[0]) == sid:
            continue
        try:
            group, session = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        # Where ``sess`` is not a session id, the command's group is what can be matched.
        if (sid is not None and session != sid and group != sid) or (pgid is not None and group != pgid):
            continue
        found.append((int(parts[0]), group, parts[4] if len(parts) > 4 else ""))
    return found


def _name(pid: int) -> str:
    """``"sleep 100 (pid 1234)"``."""
    name = ""
    if _HAVE_PROC:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().replace(b"\0", b" ").strip().decode("utf-8", "replace")
            if not name:
                with open(f"/proc/{pid}/comm", "rb") as f:
                    name = f.read().strip().decode("utf-8", "replace")
        except OSError:
            pass
    else:
        try:
            name = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"{name} (pid {pid})" if name else f"pid {pid}"


def _describe_groups(pids: list[int]) -> list[tuple[str, int]]:
    out = []
    for pid in pids:
        if _state(pid) in (None, "Z", "X"):
            continue
        try:
            group = os.getpgid(pid)
        except OSError:
            continue
        out.append((_name(pid), group))
    return out


def _describe(pids: list[int], sid: int) -> list[str]:
    """Describe the live processes *pids* (``[sid]`` alone: the group, members unknown)."""
    names = [name for name, _ in _describe_groups([p for p in pids if p != sid])]
    return names or [f"process group {sid}"]
