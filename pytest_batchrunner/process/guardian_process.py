"""The guardian process (see :mod:`pytest_batchrunner.process.guardian`), run as a script.

Usage: ``python -I -S guardian_process.py GRACE TOKEN`` with the parent's pipe on
stdin. It imports nothing of the package (``-I -S`` keep its start cheap) and
does nothing when imported.

Messages on stdin: ``+PGID`` (a command's process group started), ``-PGID`` (it
is gone), ``bye`` (the parent is exiting normally). At end-of-file without
``bye``, the parent died: every registered group, every process of the
sessions those groups lead (a command's shell leads its session, and
``timeout(1)`` or ``set -m`` move children to other groups of it), and every
process whose environment carries ``BATCHRUNNER_GUARDIAN=TOKEN`` (those that
left the session with ``setsid``) get SIGTERM, then SIGKILL after GRACE seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def read_messages() -> tuple[set[int], bool]:
    """Read the parent's messages until end-of-file: (registered groups, clean exit)."""
    groups: set[int] = set()
    clean_exit = False
    pending = b""
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
            elif line == b"bye":
                clean_exit = True
    return groups, clean_exit


def marked(token: bytes, sessions: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Processes in one of *sessions* or carrying our token in their environment (Linux
    ``/proc``; elsewhere ``ps`` for the sessions, and no token sweep).

    This finds a command spawned but not yet registered, and its descendants
    wherever they moved (another process group, another session).
    """
    needle = b"\0BATCHRUNNER_GUARDIAN=" + token + b"\0"
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return by_ps(sessions)
    for entry in entries:
        if entry.isdigit():
            try:
                if sessions:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        stat = f.read()
                    if int(stat[stat.rindex(b")") + 2:].split()[3]) in sessions:
                        found.append(int(entry))
                        continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in b"\0" + f.read():
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def by_ps(sessions: set[int] | frozenset[int]) -> list[int]:
    """Processes of *sessions* as ``ps`` lists them (no ``/proc``)."""
    if not sessions:
        return []
    import subprocess

    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,sess="], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for row in listing.splitlines():
        parts = row.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[1]) in sessions:
            found.append(int(parts[0]))
    return found


def main() -> None:
    # Ignore what a terminal or a CI runner sends to a whole process tree: we
    # must outlive the parent long enough to act, and we exit by ourselves.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    grace, token = float(sys.argv[1]), sys.argv[2].encode()
    groups, clean_exit = read_messages()
    if clean_exit and not groups:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass
        for pid in marked(token, groups):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGTERM:
            time.sleep(grace)


if __name__ == "__main__":
    main()
