"""How report files are written so that they can always be read.

Plain Python, no pytest import.

* Files written once, at the end of a run (JSON results, JUnit XML), are
  replaced atomically by :func:`write_atomically`: readers see the old content
  or the new, never half of it, even after Ctrl+C or a crash. A symlink is
  followed (its target is replaced, the link stays); a device, a FIFO or
  ``/dev/stdout`` is written straight into, never replaced or read back.
* :func:`check_report_paths` refuses, before anything runs, a report path that
  is a directory, or the same file as another report or as an input file.
* Logs written as the run goes (audit log, job log) are :class:`LineFile` objects:
  opened in append mode, one ``write`` per line, so two processes appending to
  the same file never interleave mid-line, and :func:`one_line` keeps a
  command's newlines and control characters from breaking the one-line format.

It also holds :func:`attempt_status`, the words every report uses for how an
attempt ended.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["LineFile", "ReportPathError", "attempt_status", "check_report_paths", "one_line", "open_for_writing", "write_atomically"]


def write_atomically(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> None:
    """Write *data* to *path* through a temporary file in the same directory and a rename.

    *data* is bytes, or chunks of bytes written as they come (a report streamed
    from the results spool).

    A symlink is followed: the file it points to is replaced, the link stays. A
    path that is not a regular file (a device such as ``/dev/stdout`` or
    ``/dev/full``, a FIFO) is written straight into, since a rename would
    replace the node itself. The directory is created if needed. The data is
    flushed to disk before the rename, so a crash (or the machine losing power)
    leaves either the previous file or the complete new one, and a failure
    (full disk, permission) leaves no partial file. The temporary file is
    created with mode 0666 filtered by the umask, like any new file, so the
    report gets the same permissions as if it had been written in place.
    """
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # Opened by its own name: /dev/stdout's link into /proc only opens, never resolves.
        _write_straight(Path(path), data)
        return
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        # The temporary file's name means nothing to the reader: name the report.
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            for chunk in (data,) if isinstance(data, bytes) else data:
                stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            # Keep the permissions of the file being replaced.
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a stray temporary file behind.
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def open_for_writing(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_WRONLY, 0o666)``, but a FIFO without a reader is an error, not a hang."""
    fd = os.open(path, flags | os.O_WRONLY | os.O_NONBLOCK, 0o666)
    try:
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_straight(target: Path, data: bytes | Iterable[bytes]) -> None:
    try:
        fd = open_for_writing(target, 0)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(exc.errno, "a FIFO with no reader", str(target)) from None
        raise
    try:
        for chunk in (data,) if isinstance(data, bytes) else data:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class ReportPathError(ValueError):
    """A report path that cannot be used; the message names the option(s) and the path(s)."""


def _identity(path: Path) -> tuple[object, ...]:
    """What makes two paths the same file: device and inode if it exists, else the resolved path."""
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        # "missing/../x" does not exist as written, but is written where realpath says
        # (see write_atomically): the file there, if any, is the one it would replace.
        try:
            st = os.stat(real)
        except OSError:
            return ("path", real)
    return ("inode", st.st_dev, st.st_ino)


def check_report_paths(reports: list[tuple[str, Path]], inputs: Iterable[tuple[str, Path]] = ()) -> None:
    """Refuse report paths that cannot work: :class:`ReportPathError` naming the option and the path.

    *reports* are ``(option, path)``; *inputs* ``(what, path)`` for files the run
    reads. A directory is refused; so are two reports that are the same file
    (through a symlink, a hard link, ``..``) and a report that is an input file.
    Character devices (``/dev/null``, a terminal) may be shared.
    """
    seen: dict[tuple[object, ...], str] = {}
    for option, path in reports:
        if os.path.isdir(path):
            raise ReportPathError(f"{option} {path}: is a directory, not a file name")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if stat.S_ISCHR(mode):
            continue
        key = _identity(path)
        if key in seen:
            raise ReportPathError(f"{option} {path} is the same file as {seen[key]}: give each report its own file")
        seen[key] = f"{option} {path}"
    for what, path in inputs:
        key = _identity(path)
        if key in seen and key[0] == "inode":
            raise ReportPathError(f"{seen[key]} is the same file as {what} {path}: it would be overwritten")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def one_line(text: str) -> str:
    r"""*text* on one line: newline, tab and carriage return become ``\n``, ``\t``, ``\r``, the line and paragraph
    separators ``\u2028``, ``\u2029``, other control characters ``\xNN`` (so a stray ESC cannot drive a terminal reading the log)."""
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
        flags = os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd: int | None = open_for_writing(self.path, flags)
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
    if record["expected_exit"] and not record["timed_out"] and record["signal"] is None and not record.get("interrupted"):
        status += f", expected {record['expected_exit']}"
    return status
