"""Run one shell command and account for every process it started.

Plain Python, no pytest import: the pytest items, the Python API and the command
line all run commands through :func:`run_command`.

What it guarantees (see RELIABILITY.md in the project's shared notes):

* the command runs as ``/bin/sh -c COMMAND`` in a new session (so its own
  process group), with stdin from ``/dev/null``;
* the attempt ends when the *shell* ends, with the shell's status, even if a
  background child still holds the output pipes; processes left in the group
  are then terminated and named in :attr:`Attempt.leftovers`;
* on timeout the whole group gets SIGTERM, then SIGKILL after a grace period,
  and the attempt is a timeout whatever the shell's exit status;
* output is captured through bounded buffers: the head and the tail of each
  stream and its total size, so memory stays flat whatever the command prints;
* if the caller is interrupted (KeyboardInterrupt, SystemExit...), the group is
  terminated before the exception propagates; if the caller's process dies
  outright, :mod:`pytest_batchrunner.process.guardian` terminates the group.
"""

from __future__ import annotations

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
    "terminate_in_flight",
    "signal_name",
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

Echo = Callable[[int, bytes], None]


def signal_name(signum: int) -> str:
    """``11`` -> ``"SIGSEGV"``; an unknown number gives ``"signal 99"``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


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
    """Start time, seconds since the epoch."""
    duration: float
    """Seconds from spawn to the end of the shell (or its killing)."""
    leftovers: list[str] = field(default_factory=list)
    """Processes still in the command's group after its shell ended, which were killed."""
    expected_exit: int = 0
    pid: int = 0
    """The shell's process id, which is also the command's process group id."""
    timeout_note: str = ""
    """Which bound the timeout was, when it was not given as such (``"300% of its usual 1.03 s"``)."""

    @property
    def success(self) -> bool:
        """Exited with the expected status, not by a signal, and not timed out."""
        return not self.timed_out and self.signal is None and self.exit_code == self.expected_exit

    def describe_status(self) -> str:
        """``"exit code 2"``, ``"killed by SIGSEGV"`` or ``"timed out after 30 s"``."""
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

    *timeout* bounds the attempt, counted from here (``None`` or ``0``: no
    bound). *echo*, if given, is called as ``echo(1 or 2, chunk)`` with output as
    it arrives (live streaming), and with ``b""`` when that stream ends. *ended*, if
    given, is called once the attempt is over (waited for or abandoned). *started*, if given, is called with the process
    group id right after the spawn (so that a caller running commands in threads
    can stop them). The caller must call :meth:`~RunningCommand.wait` (from any
    thread, once): it reads the output, enforces the timeout and accounts for
    every process; any exception raised while waiting (KeyboardInterrupt
    included) terminates the command's process group before it propagates.
    """
    token = guardian.start()
    env = dict(os.environ if env is None else env)
    if token is not None:
        env[guardian.ENV_VAR] = token
    wall_start = time.time()
    t0 = time.monotonic()
    # A Ctrl+C landing inside Popen, after the fork, would lose the child: hold
    # SIGINT/SIGTERM handlers until it is tracked, then replay them below.
    with DeferredSignals() as deferred:
        proc = subprocess.Popen(
            [SHELL, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        guardian.register(proc.pid)
        if started is not None:
            started(proc.pid)
        running = RunningCommand(command, proc, _Run(proc, capture_bytes, echo), wall_start, t0, timeout, kill_grace, expected_exit)
        running.ended = ended
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

    def _end(self) -> None:
        ended, self.ended = self.ended, None
        if ended is not None:
            ended()

    def abandon(self) -> None:
        """Terminate the command's group and release everything, without an :class:`Attempt`."""
        try:
            _terminate_group(self.run, self.pgid, self.kill_grace)
        finally:
            self.run.close()
            guardian.unregister(self.pgid)
            self._end()

    def wait(self) -> Attempt:
        """Wait for the shell, then kill what is left of its group; the attempt."""
        run, pgid, t0, timeout = self.run, self.pgid, self.t0, self.timeout
        timed_out = False
        leftovers: list[str] = []
        try:
            deadline = t0 + timeout if timeout else None
            if run.wait_exit(deadline):
                end = time.monotonic()
                if _group_alive(pgid):
                    # The shell is done; what is left of its group is a stray.
                    run.read_available()
                    leftovers = _group_members(pgid)
                    _terminate_group(run, pgid, self.kill_grace)
            else:
                timed_out = True
                _terminate_group(run, pgid, self.kill_grace)
                end = time.monotonic()
            run.drain(time.monotonic() + DRAIN_SECONDS)
        except BaseException:
            _terminate_group(run, pgid, self.kill_grace)
            raise
        finally:
            run.close()
            # Every path above ends with the group gone or sent SIGKILL.
            guardian.unregister(pgid)
            self._end()
        status = self.proc.returncode
        return Attempt(
            command=self.command,
            exit_code=status if status >= 0 else None,
            signal=signal_name(-status) if status < 0 else None,
            timed_out=timed_out,
            timeout=timeout if timeout else None,
            stdout=run.out.text(),
            stderr=run.err.text(),
            stdout_bytes=run.out.total,
            stderr_bytes=run.err.total,
            started=self.wall_start,
            duration=end - t0,
            leftovers=leftovers,
            expected_exit=self.expected_exit,
            pid=pgid,
        )


class DeferredSignals:
    """Hold Python-level SIGINT/SIGTERM handlers for a moment; :meth:`replay` runs them.

    Only in the main thread (the only one Python delivers signals to); elsewhere
    a no-op. Handlers that are not Python callables (SIG_DFL, SIG_IGN) are left
    alone. As a context manager: held inside the block, restored at its end, and
    replayed there if the block raised; else :meth:`restore` and :meth:`replay`.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

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
                handler = signal.getsignal(sig)
                if callable(handler):
                    self.previous[sig] = handler
                    signal.signal(sig, self._defer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        if exc[0] is not None:
            self.replay()

    def restore(self) -> None:
        """Put the held handlers back (signals caught so far wait for :meth:`replay`)."""
        for sig, handler in self.previous.items():
            if signal.getsignal(sig) == self._defer:
                signal.signal(sig, handler)

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
                wait = left if wait is None else min(wait, left)
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
        kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for future in futures:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:  # noqa: BLE001 - a killed command's result is dropped anyway
            pass
    with lock:
        groups = list(live)
    for pgid in groups:
        kill_group(pgid, signal.SIGKILL)


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
    return bool(_live_members(pgid))


def kill_group(pgid: int, sig: int) -> None:
    """Send *sig* to process group *pgid*; a group that is gone (or not ours) is no error."""
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _terminate_group(run: _Run, pgid: int, grace: float) -> None:
    """SIGTERM the group, give it *grace* seconds, then SIGKILL whatever is left.

    The shell is reaped. While waiting, output is still read, so that a process
    blocked on a full pipe can reach its exit. A second interruption while
    waiting (another Ctrl+C) goes straight to SIGKILL.
    """
    kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while True:
            if run.exited() and not _group_alive(pgid):
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
        kill_group(pgid, signal.SIGKILL)
        run.proc.wait()


_HAVE_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")


def _live_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, description)`` of the live processes of group *pgid*, from ``/proc``."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] in (b"Z", b"X"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").strip()
        except (OSError, ValueError, IndexError):
            continue
        name = cmdline or stat[stat.index(b"(") + 1: stat.rindex(b")")]
        members.append((int(entry), name.decode("utf-8", "replace")))
    return members


def _group_members(pgid: int) -> list[str]:
    """Describe the live processes in group *pgid*: ``"sleep 100 (pid 1234)"``."""
    if _HAVE_PROC:
        members = [f"{name} (pid {pid})" for pid, name in _live_members(pgid)]
    else:
        try:
            listing = subprocess.run(
                ["ps", "-A", "-o", "pid=,pgid=,stat=,command="], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        members = []
        for row in listing.splitlines():
            parts = row.split(None, 3)
            if len(parts) == 4 and parts[1] == str(pgid) and not parts[2].startswith("Z"):
                members.append(f"{parts[3]} (pid {parts[0]})")
    return members or [f"process group {pgid}"]
