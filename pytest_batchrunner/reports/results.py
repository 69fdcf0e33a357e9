"""Results of a batch run: :class:`CommandResult`, the summary, and the :class:`Recorder`.

Plain Python, no pytest import. The plugin feeds the recorder with what each
report carries (on the controller, under xdist); the terminal summary, the JSON
results, the logs and the JUnit rewrite all read the same recorder, so they
agree by construction.
"""

from __future__ import annotations

import datetime
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CommandResult", "Recorder", "original_exit_code", "summarize"]


@dataclass
class CommandResult:
    """The outcome of one command, over all its attempts.

    The first seven fields are the original BatchRunner's, in its order.
    """

    command: str
    success: bool
    exit_code: int
    """The last attempt's exit code, as the original's ``subprocess.run`` gave it: ``-N`` for a command
    killed by signal N, ``-1`` where there is none (a timeout, a command interrupted or never run, a crashed
    worker), with the reason in :attr:`stderr`."""
    stdout: str
    stderr: str
    duration_ms: float
    """The last attempt's time, as in the original (:attr:`attempts_duration_ms` adds every attempt)."""
    timestamp: str | None
    """ISO 8601 start time of the first attempt; ``None`` for a command that never started."""
    file: str | None = None
    line: int | None = None
    attempts: int = 1
    timed_out: bool = False
    signal: str | None = None
    status: str = ""
    """``"passed"``, ``"failed"``, ``"skipped"``, ``"xfailed"``, ``"xpassed"``, ``"not run"`` or ``"interrupted"``."""
    flaky: bool = False
    interrupted: bool = False
    message: str = ""
    """Why it failed or was skipped, in one line."""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    leftovers: list[str] = field(default_factory=list)
    nodeid: str | None = None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    """Every attempt: ``attempt``, ``exit_code``, ``signal``, ``timed_out``, ``duration_ms``, ``timestamp``..."""
    attempts_duration_ms: float | None = None
    """Time spent running the command, all attempts added (retry delays excluded); ``duration_ms`` if not given."""

    def __post_init__(self) -> None:
        if self.attempts_duration_ms is None:
            self.attempts_duration_ms = self.duration_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        return asdict(self)


@dataclass
class _Entry:
    nodeid: str
    command: str = ""
    file: str | None = None
    line: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None
    message: str = ""
    running: bool = False


class Recorder:
    """Collects attempt records and final outcomes, then builds results and the summary.

    Listeners (``on_start(nodeid)``, ``on_attempt(record, outcome)``) let the
    audit log and job log write as the run goes.
    """

    def __init__(self, mode: str = "sequential", max_retries: int = 0, workers: int = 1) -> None:
        self.mode = mode
        self.max_retries = max_retries
        self.workers = workers
        self.started = time.time()
        self.finished: float | None = None
        self.interrupted = False
        self.entries: dict[str, _Entry] = {}
        self.listeners: list[Any] = []

    def _entry(self, nodeid: str) -> _Entry:
        entry = self.entries.get(nodeid)
        if entry is None:
            entry = self.entries[nodeid] = _Entry(nodeid)
        return entry

    def expect(self, nodeid: str, command: str, file: str | None, line: int | None) -> None:
        """Announce a collected command, so that one that never ran is still reported."""
        entry = self._entry(nodeid)
        entry.command, entry.file, entry.line = command, file, line

    def start(self, nodeid: str) -> None:
        """An attempt of *nodeid* started."""
        entry = self._entry(nodeid)
        entry.running = True
        for listener in self.listeners:
            listener.on_start(entry.nodeid, entry.command or nodeid)

    def attempt(self, record: dict[str, Any], outcome: str) -> None:
        """A finished attempt; *outcome* is the report's (``"rerun"`` for one that will be retried)."""
        entry = self._entry(record["nodeid"])
        entry.command, entry.file, entry.line = record["command"], record["file"], record["line"]
        entry.records.append(record)
        for listener in self.listeners:
            listener.on_attempt(record, outcome)

    def outcome(self, nodeid: str, outcome: str, message: str = "") -> None:
        """The final outcome of *nodeid* (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``)."""
        entry = self._entry(nodeid)
        entry.running = False
        entry.outcome = outcome
        entry.message = message

    def results(self) -> list[CommandResult]:
        """One :class:`CommandResult` per command, in file and line order."""
        ordered = sorted(
            self.entries.values(), key=lambda e: (e.file or "", e.line or 0, e.nodeid)
        )
        return [_result(e, self.interrupted) for e in ordered]

    def summary(self, results: Iterable[CommandResult] | None = None) -> dict[str, Any]:
        """The BatchRunner summary dict (original keys first)."""
        results = list(self.results() if results is None else results)
        end = self.finished if self.finished is not None else time.time()
        return summarize(
            results,
            wall_seconds=end - self.started,
            mode=self.mode,
            max_retries=self.max_retries,
            workers=self.workers,
            interrupted=self.interrupted,
        )


def summarize(
    results: list[CommandResult],
    *,
    wall_seconds: float,
    mode: str,
    max_retries: int,
    workers: int = 1,
    interrupted: bool = False,
) -> dict[str, Any]:
    """Compute the summary of *results*.

    ``success_rate`` is the percentage of successful commands among those that
    ran to an outcome (skipped and never-run commands are not counted), not
    rounded, as the original's (1,999 of 2,000 is ``99.95``, never ``100.0``);
    ``0.0`` when nothing ran. Command durations are the last attempt's, as the
    original's.
    """
    ran = [r for r in results if r.status in ("passed", "failed", "xpassed", "interrupted")]
    successful = sum(1 for r in results if r.success)
    failed = sum(1 for r in results if r.status in ("failed", "interrupted"))
    durations = [r.duration_ms for r in results if r.attempt_log]
    return {
        "total_commands": len(results),
        "successful": successful,
        "failed": failed,
        "success_rate": 100.0 * successful / len(ran) if ran else 0.0,
        "total_duration_ms": round(wall_seconds * 1000, 3),
        "avg_command_duration_ms": round(sum(durations) / len(durations), 3) if durations else 0.0,
        "min_command_duration_ms": round(min(durations), 3) if durations else 0.0,
        "max_command_duration_ms": round(max(durations), 3) if durations else 0.0,
        "mode": mode,
        "max_retries": max_retries,
        "workers": workers,
        "timed_out": sum(1 for r in results if r.timed_out and not r.success),
        "flaky": sum(1 for r in results if r.flaky),
        "reruns": sum(max(0, r.attempts - 1) for r in results),
        "skipped": sum(1 for r in results if r.status in ("skipped", "xfailed")),
        "not_run": sum(1 for r in results if r.status == "not run"),
        "interrupted": interrupted,
    }


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _result(entry: _Entry, interrupted: bool) -> CommandResult:
    records = entry.records
    last = records[-1] if records else None
    outcome = entry.outcome
    if outcome is None:
        outcome = "interrupted" if (entry.running or records) and interrupted else "not run"
    success = outcome in ("passed", "xpassed")
    attempt_log = [
        {k: r.get(k) for k in ("attempt", "success", "exit_code", "signal", "timed_out", "timeout", "status",
                               "duration_ms", "timestamp", "started", "worker", "leftovers")}
        for r in records
    ]
    message = entry.message
    if not message and last is not None and not success:
        message = last["status"]
    stderr = last["stderr"] if last else ""
    exit_code = original_exit_code(last)
    if exit_code == -1 and not success:
        # The original's convention for a timeout: -1, and the reason in stderr.
        reason = _reason(last, outcome, message)
        if reason:
            stderr = (stderr if not stderr or stderr.endswith("\n") else stderr + "\n") + reason + "\n"
    return CommandResult(
        command=entry.command or (last["command"] if last else entry.nodeid),
        success=success,
        exit_code=exit_code,
        stdout=last["stdout"] if last else "",
        stderr=stderr,
        duration_ms=last["duration_ms"] if last else 0.0,
        timestamp=records[0]["timestamp"] if records else None,
        file=entry.file,
        line=entry.line,
        attempts=len(records),
        timed_out=bool(last and last["timed_out"]),
        signal=last["signal"] if last else None,
        status=outcome,
        flaky=success and len(records) > 1,
        interrupted=outcome == "interrupted",
        message=message,
        stdout_bytes=last["stdout_bytes"] if last else 0,
        stderr_bytes=last["stderr_bytes"] if last else 0,
        leftovers=[p for r in records for p in r["leftovers"]],
        nodeid=entry.nodeid,
        attempt_log=attempt_log,
        attempts_duration_ms=round(sum(r["duration_ms"] for r in records), 3),
    )


def original_exit_code(record: dict[str, Any] | None) -> int:
    """The exit code the original's ``subprocess.run`` would have given for *record*'s attempt."""
    if record is None or record["timed_out"]:
        return -1
    if record["exit_code"] is not None:
        return int(record["exit_code"])
    if record["signal"]:
        try:
            return -int(signal.Signals[record["signal"]])
        except KeyError:
            pass
    return -1


def _reason(record: dict[str, Any] | None, outcome: str, message: str) -> str:
    """Why a failed command has no exit code, in the original's words where it had some."""
    if record is not None and record["timed_out"]:
        seconds = record.get("timeout")
        return f"Command timed out after {seconds:g} seconds" if seconds else record["status"]
    if outcome == "not run":
        return "Command not run: the run was stopped before it started" if not message else f"Command not run: {message}"
    if outcome == "interrupted":
        return "Command interrupted: the run was stopped while it ran"
    return record["status"] if record is not None else message


Listener = Callable[..., None]
