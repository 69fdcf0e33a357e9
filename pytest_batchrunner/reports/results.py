"""Results of a batch run: :class:`CommandResult`, the summary, and the :class:`Recorder`.

Plain Python, no pytest import. The plugin feeds the recorder with what each
report carries (on the controller, under xdist); the terminal summary, the JSON
results, the logs and the JUnit rewrite all read the same recorder, so they
agree by construction.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CommandResult", "Recorder", "summarize"]


@dataclass
class CommandResult:
    """The outcome of one command, over all its attempts.

    The first seven fields are the original BatchRunner's, in its order.
    """

    command: str
    success: bool
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    """Time spent running the command, all attempts added (retry delays excluded)."""
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
    ran to an outcome (skipped and never-run commands are not counted), rounded
    to one decimal; ``0.0`` when nothing ran.
    """
    ran = [r for r in results if r.status in ("passed", "failed", "xpassed", "interrupted")]
    successful = sum(1 for r in results if r.success)
    failed = sum(1 for r in results if r.status in ("failed", "interrupted"))
    durations = [r.duration_ms for r in results if r.attempt_log]
    return {
        "total_commands": len(results),
        "successful": successful,
        "failed": failed,
        "success_rate": round(100.0 * successful / len(ran), 1) if ran else 0.0,
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
    return CommandResult(
        command=entry.command or (last["command"] if last else entry.nodeid),
        success=success,
        exit_code=last["exit_code"] if last else None,
        stdout=last["stdout"] if last else "",
        stderr=last["stderr"] if last else "",
        duration_ms=round(sum(r["duration_ms"] for r in records), 3),
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
    )


Listener = Callable[..., None]
