"""Kill our commands' process groups when the process that started them dies.

A command runs in its own session, so nothing ties its life to ours: if an
xdist worker is killed (``kill -9 $PPID`` in a command, the OOM killer, a
crashed interpreter), its running command would go on under PID 1. The
guardian is one small helper process per runner process, started on first use.
We tell it, through a pipe, which process groups are running; when that pipe
reaches end-of-file without our "bye" (we died, whatever the way), it
terminates the groups still registered and, on Linux, every process carrying
its token in the environment (``BATCHRUNNER_GUARDIAN``, set for every
command), which covers a command spawned but not yet registered. Registering
costs one ``write`` of a few bytes per command.

Plain Python, no pytest import.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading

__all__ = ["ENV_VAR", "GUARDIAN", "Guardian", "register", "start", "unregister"]

# Run as a script by path: with -I -S it needs nothing from site-packages.
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guardian_process.py")

ENV_VAR = "BATCHRUNNER_GUARDIAN"
"""Set in every command's environment to the guardian's token (see :func:`start`)."""

GRACE_SECONDS = 0.2


class Guardian:
    """This process's guardian: the helper process, the pipe to it and its token (started again after a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        """The process that started the guardian (a forked child needs its own)."""
        self.fd: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None

    def own_pid(self) -> int | None:
        """The pid of this process's own guardian, if it started one."""
        return self.proc.pid if self.proc is not None and self.pid == os.getpid() else None

    def writer(self) -> int | None:
        """The pipe to this process's guardian, started on first use (and again after a fork)."""
        fd = self.fd
        if fd is not None and self.pid == os.getpid():
            return fd
        with self.lock:
            if self.fd is not None and self.pid == os.getpid():
                return self.fd
            token = os.urandom(8).hex()
            env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", _SCRIPT, str(GRACE_SECONDS), token],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError:
                return None  # no guardian: commands are still killed on every normal path
            assert proc.stdin is not None
            self.pid, self.fd, self.proc, self.token = os.getpid(), proc.stdin.fileno(), proc, token
            atexit.register(self.stop, proc)
            return self.fd

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """At a normal exit: close the pipe and reap the guardian, which then exits at once."""
        if self.proc is not proc or self.pid != os.getpid():
            return
        assert proc.stdin is not None
        try:
            os.write(proc.stdin.fileno(), b"bye\n")
        except OSError:
            pass
        proc.stdin.close()
        try:
            proc.wait(timeout=GRACE_SECONDS + 1)
        except subprocess.TimeoutExpired:
            pass

    def send(self, message: bytes) -> None:
        fd = self.writer()
        if fd is None:
            return
        try:
            os.write(fd, message)
        except OSError:
            pass  # the guardian is gone; nothing better to do than go on


GUARDIAN = Guardian()


def start() -> str | None:
    """Start this process's guardian now, if it is not running yet; return its token.

    Called before a command is spawned, and the token goes into the command's
    environment as ``BATCHRUNNER_GUARDIAN``: a command that kills our process at
    once (``kill -9 $PPID``) is then found by the guardian even if it was not
    registered yet.
    """
    if GUARDIAN.writer() is None:
        return None
    return GUARDIAN.token


def register(pgid: int) -> None:
    """Ask the guardian to kill process group *pgid* should this process die."""
    GUARDIAN.send(b"+%d\n" % pgid)


def unregister(pgid: int) -> None:
    """Process group *pgid* is gone; the guardian forgets it."""
    GUARDIAN.send(b"-%d\n" % pgid)
