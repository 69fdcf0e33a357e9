"""Starting ``/bin/sh -c COMMAND`` in its own session, within the open-files budget of this process."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

from pytest_batchrunner.process.tree import SUBREAPER

__all__ = ["SpawnError", "stop_adopting"]

SHELL = "/bin/sh"
_FD_RESERVE = 64
# Above this many bytes a command goes to the shell as a script file: Linux
# refuses a single argument of 128 KiB or more (MAX_ARG_STRLEN), and the
# environment shares the total; well below both.
_MAX_ARGUMENT = 64 * 1024


class SpawnError(OSError):
    """A command could not be started (no file descriptor left with nothing else running...)."""


class WaitInterrupted(Exception):
    """A signal came while a spawn waited for a file-descriptor slot: nothing was started."""


class Slots:
    """Commands started and not yet waited for, and spawns in progress (each holds a few descriptors).

    A spawn that finds no file descriptor left waits until one of them ends
    (:attr:`ends` counts the starts and ends). The first to start turns the
    subreaper on; the last to end turns it off.
    """

    def __init__(self) -> None:
        self.running = 0
        self.spawning = 0
        self.ends = 0
        self.changed = threading.Condition()
        self.budget = 1 << 30
        """Commands (three descriptors each) allowed at once, from the open-files limit."""

    def raise_open_file_limit(self) -> None:
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
                self.budget = max(1, (soft - _FD_RESERVE) // 4)
        except (ImportError, ValueError, OSError):
            pass  # keep the limit we have; a spawn that hits it waits for a running command

    def take(self, signalled: Callable[[], bool]) -> int:
        """Wait for room under the budget, then count one spawn in progress; :attr:`ends` as it was then."""
        with self.changed:
            # Leave descriptors for the rest of the program (imports, reports):
            # beyond the budget, a spawn waits for a running command to end.
            while self.running + self.spawning >= self.budget and self.running + self.spawning > 0:
                if signalled():
                    raise WaitInterrupted
                self.changed.wait(timeout=0.1)
            if self.running + self.spawning == 0:
                SUBREAPER.set(True)
            self.spawning += 1
            return self.ends

    def started(self) -> None:
        """The spawn in progress started its command."""
        with self.changed:
            self.spawning -= 1
            self.running += 1
            self.ends += 1
            self.changed.notify_all()

    def failed(self) -> None:
        """The spawn in progress failed for another reason than a lack of descriptors."""
        with self.changed:
            self.spawning -= 1
            if self.running + self.spawning == 0:
                SUBREAPER.set(False)

    def out_of_descriptors(self, exc: OSError, seen: int, signalled: Callable[[], bool]) -> None:
        """The spawn in progress found no descriptor: wait a little for one (an error when nothing else runs)."""
        with self.changed:
            self.spawning -= 1
            if self.running + self.spawning == 0:
                SUBREAPER.set(False)
            if self.running == 0 and self.spawning == 0 and self.ends == seen:
                raise SpawnError(exc.errno, f"cannot start the command: {exc.strerror} (nothing else is running)") from None
            # Something else holds descriptors and will let them go: wait for it.
            if signalled():
                raise WaitInterrupted from None
            if self.ends == seen:  # else something ended already: retry at once
                self.changed.wait(timeout=0.1)

    def ended(self) -> None:
        """A command started here is over (waited for or abandoned)."""
        with self.changed:
            self.running -= 1
            self.ends += 1
            if self.running + self.spawning == 0:
                SUBREAPER.set(False)
            self.changed.notify_all()

    def stop_adopting(self) -> None:
        """Stop being the child subreaper if no command runs."""
        with self.changed:
            if self.running == 0 and self.spawning == 0:
                SUBREAPER.set(False)


SLOTS = Slots()
"""This process's commands and spawns."""


def stop_adopting() -> None:
    """Stop being the child subreaper if no command runs (at the end of a run; a no-op normally)."""
    SLOTS.stop_adopting()


def spawn(
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
    (see :class:`~pytest_batchrunner.process.signals.DeferredSignals`) ends the
    wait with :class:`WaitInterrupted`, since it may be the Ctrl+C that stops
    the run, and the slot may come only when a command it stops ends.
    """
    script = None
    argv = [SHELL, "-c", command]
    if len(command) > _MAX_ARGUMENT // 4 and len(command.encode("utf-8", "surrogateescape")) > _MAX_ARGUMENT:
        script = _script_file(command)
        argv = [SHELL, script]
    try:
        while True:
            seen = SLOTS.take(signalled)
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
                    SLOTS.failed()
                    raise
                SLOTS.out_of_descriptors(exc, seen, signalled)
                continue
            SLOTS.started()
            return proc, script, wall_start, t0
    except BaseException:
        remove(script)
        raise


def _script_file(command: str) -> str:
    """Write *command* to a new private file (mode 0600) for ``sh FILE``."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="batchrunner-", suffix=".sh")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(command.encode("utf-8", "surrogateescape"))
    except BaseException:
        remove(path)
        raise
    return path


def remove(path: str | None) -> None:
    """Remove a command's script file, if it had one."""
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
