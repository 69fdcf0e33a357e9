"""Signals to a command's process group and session, and the TERM-then-KILL sequence that ends them."""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import TYPE_CHECKING

from pytest_batchrunner.process.tree import describe_groups, group_alive, reap, session_members, state

if TYPE_CHECKING:
    from pytest_batchrunner.process.capture import Pipes

__all__ = ["kill_group", "terminate_session"]


def kill_group(pgid: int, sig: int) -> None:
    """Send *sig* to process group *pgid*; a group that is gone (or not ours) is no error."""
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def kill_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass  # gone, or not ours any more


def terminate_session(run: Pipes, sid: int, grace: float, members: list[int] | None = None) -> list[tuple[str, int]]:
    """SIGTERM the session, give it *grace* seconds, then SIGKILL whatever is left.

    *sid* is the shell's pid, its session and its process group. The shell is
    reaped, and so is every killed process that is (or, once its parent is
    reaped, becomes) our child. While waiting, output is still read, so that a
    process blocked on a full pipe can reach its exit. A second interruption
    while waiting (another Ctrl+C) goes straight to SIGKILL. Returns the live
    processes found, as ``(description, process group)``.
    """
    if members is None:
        members = session_members(sid)
    killed = describe_groups(members)
    kill_group(sid, signal.SIGTERM)
    for pid in members:
        kill_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while True:
            if run.exited():
                members = merge(members, session_members(sid))
                if not any_alive(sid, members):
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
            kill_pid(pid, signal.SIGKILL)
        run.proc.wait()
        # Orphans of the processes just killed come to us once those exit.
        late = session_members(sid)
        for pid in late:
            kill_pid(pid, signal.SIGKILL)
        reap(merge(members, late))
    return killed


def merge(first: list[int], second: list[int]) -> list[int]:
    seen = set(first)
    return first + [pid for pid in second if pid not in seen]


def any_alive(sid: int, members: list[int]) -> bool:
    if group_alive(sid):
        return True
    return any(state(pid) not in (None, "Z", "X") for pid in members)
