"""The audit log (``--batch-log PATH``): one timestamped line per event, as the run goes.

Plain Python, no pytest import. Every line is ``[YYYY-MM-DD HH:MM:SS] [LEVEL] message``
(local time; ``LEVEL`` is ``INFO``, ``WARNING`` or ``ERROR``), and the message
starts with the event's name:

* ``BatchRunner`` - the header (worded as the original BatchRunner's), before the first command starts: version,
  number of commands and batch files, mode, workers, retries, timeout;
* ``START`` / ``END`` - every attempt of every command, with its place
  (``file:line``), attempt number, command, and at the end its status (exit
  code, signal or timeout), duration, start time, worker and verdict (``START``
  is when pytest starts the item's attempt; with ``--batch-jobs`` the command
  may have been started ahead, at the time ``END`` gives);
* ``RETRY``, ``TIMEOUT``, ``LEFTOVERS`` - an attempt that will be retried, that
  timed out (its process group was killed), or that left processes behind
  (they were killed, and are named);
* ``INTERRUPTED`` - the run was stopped: one line for the run, one per command
  that was running;
* ``SUMMARY`` - the summary as ``key=value`` pairs, the same keys and values as
  the JSON results' ``summary``.

The file is appended to, never truncated: it is the history of every run.
Only the process that reports writes it (the xdist controller), each line
with a single ``write``, so lines never interleave mid-line. Commands and
output are kept on one line by :func:`~pytest_batchrunner.reports.files.one_line`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import LineFile, attempt_status, one_line
from pytest_batchrunner.reports.results import Recorder

__all__ = ["AuditLog"]

INFO, WARNING, ERROR = "INFO", "WARNING", "ERROR"


class AuditLog:
    """Recorder listener and writer for :class:`~pytest_batchrunner.plugin.recording.BatchRecording`.

    *timeout* is the run's default per-attempt timeout in seconds (``None``:
    none); a line's own ``timeout=`` setting still applies to that line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        recorder: Recorder,
        *,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.file = LineFile(path)
        self.recorder = recorder
        self.timeout = timeout
        self.clock = clock
        self._header_written = False
        self._attempts: dict[str, int] = {}

    # -- lines ----------------------------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        """Append one ``[time] [LEVEL] message`` line."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock()))
        self.file.write_line(f"[{stamp}] [{level}] {one_line(message)}")

    def _header(self) -> None:
        # Written before the first event rather than at configure time: only then
        # is every command known, also on an xdist controller, which learns them
        # from its workers' collection.
        if self._header_written:
            return
        self._header_written = True
        r = self.recorder
        files = {e.file for e in r.entries.values() if e.file}
        timeout = f"{self.timeout:g} s per attempt" if self.timeout else "none"
        self.log(
            INFO,
            f"BatchRunner v{__version__} - Starting {len(r.entries)} commands from {len(files)} batch "
            f"file{'s' if len(files) != 1 else ''}, mode {r.mode}, workers {r.workers}, "
            f"max retries {r.max_retries}, timeout {timeout} (a line's timeout= setting overrides it)",
        )

    def _where(self, nodeid: str) -> str:
        entry = self.recorder.entries.get(nodeid)
        if entry is None or entry.file is None:
            return nodeid
        return f"{entry.file}:{entry.line}"

    # -- recorder listener ----------------------------------------------------------------

    def on_start(self, nodeid: str, command: str) -> None:
        """An attempt of a command is starting."""
        self._header()
        # Counted here, across workers: a rerun after a worker crash runs on
        # another worker, whose own count starts again at 1.
        number = self._attempts[nodeid] = self._attempts.get(nodeid, 0) + 1
        self.log(INFO, f"START {self._where(nodeid)} attempt {number}: {command}")

    def on_attempt(self, record: dict[str, Any], outcome: str) -> None:
        """An attempt ended; *outcome* is ``"rerun"`` when it will be retried."""
        self._header()
        nodeid = record["nodeid"]
        where = self._where(nodeid)
        number = self._attempts.get(nodeid) or record["attempt"]
        if record["success"] and outcome == "failed":
            level, verdict = ERROR, "succeeded, but its test failed (strict xfail)"
        elif record["success"]:
            level, verdict = INFO, "passed"
        elif outcome == "rerun":
            level, verdict = WARNING, "failed, will be retried"
        elif outcome == "skipped":
            level, verdict = INFO, "failed as expected (xfail)"
        else:
            level, verdict = ERROR, "failed"
        status = attempt_status(record)
        started = time.strftime("%H:%M:%S", time.localtime(record["started"]))
        started += f".{int(record['started'] % 1 * 1000):03d}"
        self.log(
            level,
            f"END {where} attempt {number}: {status} in {record['duration_ms'] / 1000:.3f} s "
            f"(started {started}, worker {record['worker']}), {verdict}: {record['command']}",
        )
        if record["timed_out"]:
            self.log(WARNING, f"TIMEOUT {where} attempt {number}: {status}, its process group was killed")
        if record["leftovers"]:
            killed = ", ".join(record["leftovers"])
            self.log(WARNING, f"LEFTOVERS {where} attempt {number}: killed processes left behind: {killed}")
        if outcome == "rerun":
            self.log(WARNING, f"RETRY {where}: attempt {number} failed ({status}), running attempt {number + 1}")

    # -- writer ---------------------------------------------------------------------------

    def finish(self, recorder: Recorder) -> None:
        """Log the interruption, if any, and the summary; close the file."""
        self._header()
        results = recorder.results()
        summary = recorder.summary(results)
        if recorder.interrupted:
            stopped = [r for r in results if r.status == "interrupted"]
            self.log(
                ERROR,
                f"INTERRUPTED the run was stopped: commands interrupted: {len(stopped)}, "
                f"not run: {summary['not_run']}",
            )
            for r in stopped:
                self.log(ERROR, f"INTERRUPTED {self._where(r.nodeid or '')}: {r.command}")
        pairs = " ".join(f"{key}={_value(value)}" for key, value in summary.items())
        good = summary["failed"] == 0 and not summary["interrupted"]
        self.log(INFO if good else ERROR, f"SUMMARY {pairs}")
        self.close()

    def close(self) -> None:
        """Close the file (again is harmless); later lines are dropped."""
        self.file.close()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
