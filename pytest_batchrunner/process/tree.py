"""The processes of a command's session: found (as the child subreaper, or by a scan), named and reaped.

How the session is found without scanning every process after every command: on
Linux the runner is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) while
at least one command runs, so a process orphaned by a command's shell is
re-parented to it instead of to PID 1; after the shell exits, the runner's own children (one small ``/proc``
read) with ``getsid()`` equal to the command's session are what is left, with their
descendants. The runner never waits for "any child" (it would steal exit
statuses from other code's :class:`subprocess.Popen` objects): it reaps
exactly the pids it killed. Elsewhere, ``ps`` lists the session, only when
something may be left (a timeout, an interruption, a live process group).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from typing import Any

__all__ = ["SUBREAPER", "Subreaper", "signal_when_parent_dies"]

HAVE_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class Subreaper:
    """Whether this process adopts its commands' orphans (Linux's child subreaper), and turning it on and off.

    Kept per process id: a forked child inherits neither the setting nor the check.
    """

    def __init__(self) -> None:
        self._prctl: dict[int, Any] = {}
        self._adopting: dict[int, bool] = {}

    def checked(self) -> bool:
        """Whether :meth:`check` ran in this process."""
        return os.getpid() in self._adopting

    @property
    def adopting(self) -> bool:
        """Whether this process can adopt orphans (as :meth:`check` found)."""
        return self._adopting.get(os.getpid(), False)

    def check(self) -> bool:
        """Whether this process can be the child subreaper (Linux), checked once per process."""
        pid = os.getpid()
        adopting = False
        if HAVE_PROC:
            try:
                prctl = ctypes.CDLL(None, use_errno=True).prctl
                state = ctypes.c_int(0)
                adopting = prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(state), 0, 0, 0) == 0
                self._prctl[pid] = prctl
            except (OSError, AttributeError):
                adopting = False
        self._adopting[pid] = adopting
        return adopting

    def set(self, on: bool) -> None:
        """Adopt orphans (or stop), called as the first command of this process starts and the last one ends.

        Only while commands run: a process orphaned at another time (a Python
        test's daemon, another program's helper) is not adopted, so it never
        waits as a zombie for us, who never wait for children we did not start.
        """
        prctl = self._prctl.get(os.getpid())
        if prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


SUBREAPER = Subreaper()
"""This process's subreaper state."""


def signal_when_parent_dies(signum: int) -> bool:
    """Ask the kernel to send *signum* to this process when its parent dies (Linux); whether it took.

    An xdist worker's commands are its own: killed outright, its controller
    cannot stop them, and the worker would go on until its link times out.
    """
    if not HAVE_PROC:
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


def children(pid: int, tids: list[str] | None = None) -> list[int]:
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


def session_members(sid: int, leader_alive: bool = True) -> list[int]:
    """Processes of session *sid* other than its leader, parents before children.

    As a subreaper (Linux): the leader's descendants and our own children (the
    orphans we adopted) in that session, with their descendants. Otherwise a
    scan of every process (``/proc``, or ``ps`` elsewhere).
    """
    me = os.getpid()
    if SUBREAPER.adopting:
        # Orphans are re-parented to our thread-group leader, the main thread.
        queue = children(me, [str(me)])
        if leader_alive:
            queue += children(sid)
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
            queue.extend(children(pid))
        return found
    return [pid for pid, _, _ in scan_sessions(sid)]


def leftover_members(sid: int) -> list[int]:
    """After the shell exited: what is left of its session (empty in the common case, cheaply).

    Zombies among them (adopted orphans that ended by themselves) are reaped and
    not reported.
    """
    if SUBREAPER.adopting:
        members = session_members(sid, leader_alive=False)
        if not members:
            if not group_alive(sid):
                return []
            members = [pid for pid, _, _ in scan_sessions(sid)]
    elif group_alive(sid):
        members = session_members(sid) or [sid]
    else:
        return []
    live = []
    for pid in members:
        if pid != sid and state(pid) in (None, "Z", "X"):
            reap([pid])
        else:
            live.append(pid)
    return live


def state(pid: int) -> str | None:
    """The process state letter (``"R"``, ``"S"``, ``"Z"``...), or ``None`` when it is gone."""
    if not HAVE_PROC:
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


def group_alive(pgid: int) -> bool:
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
    if not HAVE_PROC:
        return True
    return any(group == pgid for _, group, _ in scan_sessions(None, pgid))


def scan_sessions(sid: int | None, pgid: int | None = None) -> list[tuple[int, int, str]]:
    """``(pid, process group, command)`` of the live processes of session *sid* (or of group
    *pgid*), leader excluded, from a scan of every process: ``/proc`` on Linux, ``ps`` elsewhere."""
    found = []
    if HAVE_PROC:
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


def process_name(pid: int) -> str:
    """``"sleep 100 (pid 1234)"``."""
    name = ""
    if HAVE_PROC:
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


def describe_groups(pids: list[int]) -> list[tuple[str, int]]:
    out = []
    for pid in pids:
        if state(pid) in (None, "Z", "X"):
            continue
        try:
            group = os.getpgid(pid)
        except OSError:
            continue
        out.append((process_name(pid), group))
    return out


def describe(pids: list[int], sid: int) -> list[str]:
    """Describe the live processes *pids* (``[sid]`` alone: the group, members unknown)."""
    names = [name for name, _ in describe_groups([p for p in pids if p != sid])]
    return names or [f"process group {sid}"]


def reap(pids: list[int]) -> None:
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
