"""How report files are written so that they can always be read.

Plain Python, no pytest import.

* Files written once, at the end of a run (JSON results, JUnit XML), are
  replaced atomically by :func:`write_atomically`: readers see the old content
  or the new, never half of it, even after Ctrl+C or a crash.
* Logs written as the run goes (audit log, job log) are :class:`LineFile` objects:
  opened in append mode, one ``write`` per line, so two processes appending to
  the same file never interleave mid-line, and :func:`one_line` keeps a
  command's newlines and control characters from breaking the one-line format.

It also holds :func:`attempt_status`, the words every report uses for how an
attempt ended.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["LineFile", "attempt_status", "one_line", "write_atomically"]


def write_atomically(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> None:
    """Write *data* to *path* through a temporary file in the same directory and a rename.

    *data* is bytes, or chunks of bytes written as they come (a report streamed
    from the results spool).

    The directory is created if needed. The data is flushed to disk before the
    rename, so a crash (or the machine losing power) leaves either the previous
    file or the complete new one. The temporary file is created with mode 0666
    filtered by the umask, like any new file, so the report gets the same
    permissions as if it had been written in place.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as stream:
            for chunk in (data,) if isinstance(data, bytes) else data:
                stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a stray temporary file behind.
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def one_line(text: str) -> str:
    r"""*text* on one line: newline, tab and carriage return become ``\n``, ``\t``, ``\r``,
    other control characters ``\xNN`` (so a stray ESC cannot drive a terminal reading the log)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class LineFile:
    """A log file written line by line, each line with a single ``write(2)`` on an ``O_APPEND`` descriptor.

    The file is opened (and created, with its directory) at once, so a path that
    cannot be written fails before the run starts. Once a write fails (disk
    full...), the error is kept in :attr:`error` and later lines are dropped:
    a broken log must not stop the commands.
    """

    def __init__(self, path: str | os.PathLike[str], *, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd: int | None = os.open(self.path, flags, 0o666)
        self._lock = threading.Lock()
        self.error: OSError | None = None

    def write_line(self, line: str) -> None:
        """Append *line* (a newline is added); *line* must not hold a newline itself."""
        data = (line + "\n").encode("utf-8", "replace")
        with self._lock:
            if self._fd is None:
                return
            try:
                # A regular file takes the whole line at once; the loop only
                # matters if it ever does not (a signal, a full disk).
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                self.error = exc
                self._close()

    def close(self) -> None:
        """Close the file; later lines are dropped."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def attempt_status(record: dict[str, Any]) -> str:
    """How an attempt ended, from its record: ``"exit code 3"``, ``"killed by SIGSEGV"``,
    ``"timed out after 30 s"``, or ``"exit code 0, expected 2"`` when the line set ``expect=2``."""
    status = record["status"]
    if record["expected_exit"] and not record["timed_out"] and record["signal"] is None:
        status += f", expected {record['expected_exit']}"
    return status
