"""The guardian process (see :mod:`pytest_batchrunner.process.guardian`), run as a script.

Usage: ``python -I -S guardian_process.py GRACE TOKEN`` with the parent's pipe on
stdin. It imports nothing of the package (``-I -S`` keep its start cheap) and
does nothing when imported.

Messages on stdin: ``+PGID`` (a command's process group started), ``-PGID`` (it
is gone), ``bye`` (the parent is exiting normally). At end-of-file without
``bye``, the parent died: every registered group and every process whose
environment carries ``BATCHRUNNER_GUARDIAN=TOKEN`` get SIGTERM, then SIGKILL
after GRACE seconds.
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


def marked(token: bytes) -> list[int]:
    """Processes carrying our token in their environment (Linux ``/proc``; elsewhere none).

    This finds a command spawned but not yet registered, and its descendants
    wherever they moved (another process group, another session).
    """
    needle = b"\0BATCHRUNNER_GUARDIAN=" + token + b"\0"
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in b"\0" + f.read():
                        found.append(int(entry))
            except OSError:
                pass
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
        for pid in marked(token):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGTERM:
            time.sleep(grace)


if __name__ == "__main__":
    main()
