"""The audit log (``--batch-log PATH``, the API's ``log_file``, ``batchrunner -l``) and the API's console lines.

Plain Python, no pytest import. One format, the original BatchRunner's: every
line is ``[YYYY-MM-DD HH:MM:SS] [LEVEL] message`` (local time, stamped with the
time of the event it tells, not the time it was written), with the original's
levels and messages, so that scripts that grep the original's log read this one:

* the header: a line of ``=``, ``BatchRunner vX - Starting N commands``,
  ``Mode: ...``, ``Retries: N``, ``Timeout: Ns per command`` (when there is one), ``=``;
* ``[i/N] Starting command...`` (sequential mode, after a blank line, as the original's);
* ``Executing: CMD (attempt i/n)`` when an attempt starts (``n`` is 1 plus the
  command's reruns); in parallel mode it is written when the command really
  starts, so what is running is always shown;
* ``[SUCCESS] [OK] Command completed (N.Nms)``, ``[ERROR] [X] Command failed
  (exit code N)`` and ``[ERROR] Error output: ...``, ``[ERROR] [X] Command timed
  out after Ns``; ``Retrying in Ns...`` before a rerun;
* ``Progress: i/N completed`` (parallel mode) when a command has finished;
* the ``EXECUTION SUMMARY`` block, and ``Failed commands:`` with each one's
  first 100 characters of stderr.

What the original did not have is told in the same shape: ``[WARNING] [!]
Killed processes left behind ...``, ``[ERROR] [!] Interrupted ...``, ``[ERROR]
[X] Command interrupted: CMD``, ``[WARNING] [!] Not run: CMD``, ``[INFO]
SUMMARY key=value ...`` (the JSON summary, unrounded), ``Results saved to: PATH``.

As in the original, some messages begin with a newline (``\\n[1/3] Starting
command...``, the summary's first ``=`` line, ``\\nFailed commands:``), and the
``Error output`` of a command keeps its line breaks; other control characters
are escaped (see :func:`~pytest_batchrunner.reports.files.one_line`), so
nothing in a command's output can drive a terminal reading the log.

The file is appended to, never truncated: it is the history of every run.
Only the process that reports writes it (the xdist controller), each line
with a single ``write``. Under xdist the controller learns of an attempt when
its report arrives: its ``Executing`` line is written then, stamped with the
time the attempt started.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import LineFile, one_line
from pytest_batchrunner.reports.results import Recorder, original_exit_code
from pytest_batchrunner.reports.summary import shown_rate

__all__ = ["AuditLog", "log_line"]

INFO, SUCCESS, WARNING, ERROR = "INFO", "SUCCESS", "WARNING", "ERROR"
RULE = "=" * 70
FAILED_STDERR_CHARS = 100
"""Characters of stderr shown per failed command in the summary, as the original."""


def _here() -> str:
    """The worker name the records of the attempts this process runs carry (see ``CommandItem.attempt_record``).

    ``main``, or an outer xdist worker's id when this run is nested in one's test
    (the Python API called from a test under ``-n``).
    """
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def log_line(level: str, message: str, when: float | None = None) -> str:
    """One line in the original's shape: ``[YYYY-MM-DD HH:MM:SS] [LEVEL] message`` (no newline at the end)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if when is None else when))
    return f"[{stamp}] [{level}] {message}"


def seconds_text(value: float) -> str:
    """Seconds as the original wrote its float settings: ``1.0``, ``0.5``, ``30.0``."""
    return str(float(value))


def _keep_lines(text: str) -> str:
    """*text* with its line breaks kept (as the original wrote it) and other control characters escaped."""
    return "\n".join(one_line(part) for part in text.replace("\r\n", "\n").split("\n"))


class AuditLog:
    """Recorder listener and writer for :class:`~pytest_batchrunner.plugin.recording.BatchRecording`.

    Writes to *path* (appended to) and/or *stream* (the Python API's console,
    ``verbose=True``). *timeout* is the run's default per-attempt timeout in
    seconds (``None``: none), for the header.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        recorder: Recorder,
        *,
        timeout: float | None = None,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.file = LineFile(path) if path is not None else None
        self.stream = stream
        self.recorder = recorder
        self.timeout = timeout
        self.clock = clock
        self.saved: list[str] = []
        """Files written before this log's end (``--batch-json``), named by ``Results saved to:`` lines."""
        self.lock = threading.RLock()
        self._header_written = False
        # Attempts by (nodeid, worker, number), from their Executing line to their
        # end: the same item may run more than once (--keep-duplicates, --dist each).
        self._emitted: set[tuple[str, str, int]] = set()
        self._waiting: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._logstarts: dict[str, int] = {}
        self._started_commands = 0
        self._completed = 0
        self._ended: dict[tuple[str, str, int, float], str] = {}
        """Attempts written when they ended (parallel mode), with the outcome expected then."""

    # -- lines ----------------------------------------------------------------------------

    def log(self, level: str, message: str, when: float | None = None) -> None:
        """Write one line; *when* is the time of its event (default: now)."""
        line = log_line(level, message, self.clock() if when is None else when)
        with self.lock:
            if self.file is not None:
                self.file.write_line(line)
            if self.stream is not None:
                try:
                    self.stream.write(line + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # a closed or broken console must not stop the commands
                    pass

    @property
    def parallel(self) -> bool:
        return self.recorder.mode == "parallel"

    def _header(self, when: float | None = None) -> None:
        # Written before the first event rather than at configure time: only then
        # is every command known, also on an xdist controller, which learns them
        # from its workers' collection.
        if self._header_written:
            return
        self._header_written = True
        r = self.recorder
        self.log(INFO, RULE, when)
        self.log(INFO, f"BatchRunner v{__version__} - Starting {len(r)} commands", when)
        self.log(INFO, f"Mode: {r.mode}", when)
        self.log(INFO, f"Retries: {r.max_retries}", when)
        if self.timeout:
            self.log(INFO, f"Timeout: {seconds_text(self.timeout)}s per command", when)
        self.log(INFO, RULE, when)

    def _command(self, nodeid: str) -> str:
        entry = self.recorder.info(nodeid)
        return entry.command if entry is not None and entry.command else nodeid

    def _executing(self, nodeid: str, worker: str, number: int, max_attempts: int, when: float) -> None:
        self._emitted.add((nodeid, worker, number))
        self._waiting.pop((nodeid, worker, number), None)
        self._header(when)
        if number == 1:
            self._started_commands += 1
            if not self.parallel:
                self.log(INFO, f"\n[{self._started_commands}/{len(self.recorder)}] Starting command...", when)
        command = one_line(self._command(nodeid))
        self.log(INFO, f"Executing: {command} (attempt {number}/{max(max_attempts, number)})", when)

    # -- recorder listener ----------------------------------------------------------------

    def on_command_start(self, nodeid: str, number: int, max_attempts: int, started: float) -> None:
        """Attempt *number* of a command has just started (in this process; any thread).

        In parallel mode its line is written at once. In sequential mode it waits
        for the item's turn (a command started ahead of its turn would otherwise
        be announced before the one before it has been reported).
        """
        with self.lock:
            # Only the reporting process calls this, for the commands it runs itself.
            here = _here()
            key = (nodeid, here, number)
            if key in self._emitted:
                return
            if self.parallel or self._logstarts.get(nodeid, 0) >= number:
                self._executing(nodeid, here, number, max_attempts, started)
            else:
                self._waiting[key] = (started, max_attempts)

    def on_start(self, nodeid: str, command: str) -> None:
        """pytest starts an attempt of a command's item (its ``Executing`` line may be waiting for it)."""
        with self.lock:
            number = self._logstarts[nodeid] = self._logstarts.get(nodeid, 0) + 1
            here = _here()
            waiting = self._waiting.get((nodeid, here, number))
            if waiting is not None:
                self._executing(nodeid, here, number, waiting[1], waiting[0])

    def on_command_end(self, record: dict[str, Any], outcome: str) -> None:
        """A command started ahead of its turn ended (any thread): in parallel mode, its lines are written now.

        As the original's threads did: a command that ends early is not held
        back until the commands before it have been reported.
        """
        if not self.parallel:
            return
        with self.lock:
            key = _attempt_key(record)
            if key not in self._ended:
                self._ended[key] = outcome
                self._attempt(record, outcome)

    def on_attempt(self, record: dict[str, Any], outcome: str) -> None:
        """An attempt ended; *outcome* is ``"rerun"`` when it will be retried."""
        with self.lock:
            early = self._ended.pop(_attempt_key(record), None)
            if early is None:
                self._attempt(record, outcome)
            elif early != outcome:
                self._amend(record, early, outcome)

    def _amend(self, record: dict[str, Any], early: str, outcome: str) -> None:
        """pytest's report of an attempt written at its end says more than the end did (an xfail, a rerun)."""
        ended = record["started"] + record["duration_ms"] / 1000
        if outcome == "failed" and record["success"]:
            self.log(ERROR, "[X] Command succeeded, but was expected to fail (strict xfail)", ended)
        elif outcome == "skipped" and not record["success"]:
            self.log(INFO, "Command failed as expected (xfail)", ended)
        if outcome == "rerun" and early != "rerun":
            self._completed -= 1  # counted as completed at its end: it is not
            self.log(INFO, f"Retrying in {seconds_text(record.get('retry_delay') or 0.0)}s...", ended)
        elif early == "rerun" and outcome != "rerun":
            self._completed += 1
            self.log(INFO, f"Progress: {self._completed}/{len(self.recorder)} completed")

    def _attempt(self, record: dict[str, Any], outcome: str) -> None:
        nodeid, number = record["nodeid"], record["attempt"]
        worker = record.get("worker") or _here()
        started = record["started"]
        if (nodeid, worker, number) not in self._emitted:
            self._executing(nodeid, worker, number, record.get("max_attempts") or number, started)
        # Its Executing line is written: another attempt with the same key (a
        # later run of the item) gets its own.
        self._emitted.discard((nodeid, worker, number))
        ended = started + record["duration_ms"] / 1000
        if record.get("interrupted"):
            # Killed as the run stopped: a failure in the original's shapes, as the JSON has it
            # (exit code -1, the reason as its error output); the closing lines name it again.
            self.log(ERROR, f"[X] Command failed (exit code {original_exit_code(record)})", ended)
            self.log(ERROR, "Error output: Command interrupted: the run was stopped while it ran", ended)
            return
        if record["timed_out"]:
            timeout = record.get("timeout")
            after = f"{seconds_text(timeout)}s" if timeout else "its timeout"
            self.log(ERROR, f"[X] Command timed out after {after}", ended)
        elif record["success"]:
            self.log(SUCCESS, f"[OK] Command completed ({record['duration_ms']:.1f}ms)", ended)
            if outcome == "failed":
                self.log(ERROR, "[X] Command succeeded, but was expected to fail (strict xfail)", ended)
        else:
            # Exactly the original's words: a signal is a negative exit code, as subprocess gives it.
            self.log(ERROR, f"[X] Command failed (exit code {original_exit_code(record)})", ended)
            if record["stderr"].strip():
                self.log(ERROR, f"Error output: {_keep_lines(record['stderr'].strip())}", ended)
            if outcome == "skipped":
                self.log(INFO, "Command failed as expected (xfail)", ended)
        if record["leftovers"]:
            killed = one_line(", ".join(record["leftovers"]))
            self.log(WARNING, f"[!] Killed processes left behind by the command: {killed}", ended)
        if outcome == "rerun":
            delay = record.get("retry_delay") or 0.0
            self.log(INFO, f"Retrying in {seconds_text(delay)}s...", ended)
            return
        if self.parallel:
            self._completed += 1
            self.log(INFO, f"Progress: {self._completed}/{len(self.recorder)} completed")

    # -- writer ---------------------------------------------------------------------------

    def finish(self, recorder: Recorder) -> None:
        """Log the interruption, if any, and the summary; close the file."""
        with self.lock:
            self._finish(recorder)
        self.close()

    def _finish(self, recorder: Recorder) -> None:
        self._header()
        # Results are streamed from the recorder's spool, a pass per part of the
        # log, rather than held: a run may have 100,000 of them.
        s = recorder.summary()
        if recorder.interrupted:
            stopped = sum(1 for r in recorder.results(output=False) if r.status == "interrupted")
            self.log(ERROR, f"[!] Interrupted: the run was stopped; commands interrupted: {stopped}, "
                            f"not run: {s['not_run']}")
            for r in recorder.results(output=False):
                if r.status == "interrupted":
                    self.log(ERROR, f"[X] Command interrupted: {one_line(r.command)}")
        if s["not_run"]:
            for r in recorder.results(output=False):
                if r.status == "not run":
                    self.log(WARNING, f"[!] Not run: {one_line(r.command)}")
        self.log(INFO, "\n" + RULE)
        self.log(INFO, "EXECUTION SUMMARY")
        self.log(INFO, RULE)
        self.log(INFO, f"Total Commands: {s['total_commands']}")
        self.log(INFO, f"Successful: {s['successful']}")
        self.log(INFO, f"Failed: {s['failed']}")
        self.log(INFO, f"Success Rate: {shown_rate(s)}")
        self.log(INFO, f"Total Duration: {s['total_duration_ms']:.1f}ms")
        self.log(INFO, f"Avg Command Duration: {s['avg_command_duration_ms']:.1f}ms")
        self.log(INFO, f"Min Command Duration: {s['min_command_duration_ms']:.1f}ms")
        self.log(INFO, f"Max Command Duration: {s['max_command_duration_ms']:.1f}ms")
        self.log(INFO, RULE)
        pairs = " ".join(f"{key}={_value(value)}" for key, value in s.items())
        self.log(INFO, f"SUMMARY {pairs}")
        if s["failed"]:
            self.log(INFO, "\nFailed commands:")
            for r in recorder.failed():
                self.log(INFO, f"  - {one_line(r.command)}")
                if r.stderr:
                    self.log(INFO, f"    Error: {_keep_lines(r.stderr[:FAILED_STDERR_CHARS])}")
        for path in self.saved:
            self.log(INFO, f"\nResults saved to: {path}")

    def close(self) -> None:
        """Close the file (again is harmless); later lines are dropped."""
        if self.file is not None:
            self.file.close()


def _attempt_key(record: dict[str, Any]) -> tuple[str, str, int, float]:
    """``(nodeid, worker, attempt, started)`` of *record*: one attempt, also of an item run more than once."""
    return record["nodeid"], record.get("worker") or _here(), record["attempt"], record["started"]


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
