"""The run's timeline: every attempt as a bar in a lane, and ``--batch-trace PATH`` (Chrome Trace Event JSON).

Plain Python, no pytest import. :func:`timeline` turns results into
:class:`Bar` objects, one per attempt, each in a lane of its worker (``main``
without xdist, ``gw0``, ``gw1``... under it). A worker runs several commands
at once with ``--batch-jobs``; its bars then go into numbered slots, each attempt
into the first slot that is free when it starts, so that the bars of one lane
never overlap. The HTML report draws the same bars. The bars are placed in a
temporary SQLite table (:class:`Timeline`) and both files are written from it one
bar at a time: memory does not grow with the run.

The trace file is ``{"traceEvents": [...]}`` as Perfetto and ``chrome://tracing``
read it: one complete event (``"ph": "X"``) per attempt, ``ts`` and ``dur`` in
microseconds from the start of the run, ``pid`` the worker and ``tid`` the slot
(named by ``process_name`` / ``thread_name`` metadata events), ``args`` holding
``file``, ``line``, ``attempt``, ``status``, ``outcome`` and ``exit_code``.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.results import CommandResult, Recorder
from pytest_batchrunner.reports.summary import name

__all__ = ["Bar", "Timeline", "TraceReport", "outcome_of", "timeline", "trace_chunks", "trace_document"]

OUTCOMES = ("passed", "failed", "timed out", "rerun", "xfailed", "interrupted")
"""How an attempt ended, as the timeline colours it."""


@dataclass
class Bar:
    """One attempt on the timeline."""

    command: str
    """The command as item names show it."""
    file: str | None
    line: int | None
    attempt: int
    status: str
    """How the attempt ended, in the reports' words (``exit code 2``, ``timed out after 5 s``)."""
    outcome: str
    """One of :data:`OUTCOMES`."""
    exit_code: int | None
    worker: str
    slot: int
    """1 for the first slot of the worker."""
    start_us: int
    """Microseconds from the start of the run."""
    duration_us: int

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else ""


def outcome_of(result: CommandResult, index: int) -> str:
    """How attempt *index* (0-based) of *result* ended: one of :data:`OUTCOMES`."""
    entry = result.attempt_log[index]
    if index < len(result.attempt_log) - 1:
        return "rerun"
    if result.status == "xfailed":
        return "xfailed"
    if entry.get("timed_out") and not entry.get("success"):
        return "timed out"
    if result.status == "interrupted":
        return "interrupted"
    return "passed" if entry.get("success") or result.success else "failed"


def iso_time(timestamp: float) -> str:
    """*timestamp* (epoch seconds) in ISO 8601, local time with its offset."""
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def _worker_key(worker: str) -> tuple[int, int, str]:
    # main first, then gw0, gw1, ... gw10 in number order.
    if worker.startswith("gw") and worker[2:].isdigit():
        return (1, int(worker[2:]), worker)
    return (0 if worker == "main" else 2, 0, worker)


class Timeline:
    """Every attempt of a run as a :class:`Bar` in its lane, kept in a private temporary SQLite database.

    Built in one pass over *results* (read without output), so a run of any
    size is placed on the timeline holding only each slot's end time in memory;
    the bars are read back lane by lane (:meth:`bars`). *origin* is the run's
    start (epoch seconds); an attempt that started before it (the Python API
    starts its first commands before pytest is ready) starts the timeline
    instead. Use it as a context manager, or :meth:`close` it.
    """

    def __init__(self, results: Iterable[CommandResult], origin: float, *, in_memory: bool = False) -> None:
        # "" is a temporary database on disk: SQLite's page cache, not the run, bounds the memory used.
        # *in_memory* when the disk is known to be full (the results spool had to move to memory).
        self._db = sqlite3.connect(":memory:" if in_memory else "")
        if in_memory:
            self._db.execute("PRAGMA temp_store = MEMORY")  # its sorts too
        try:
            self._build(results, origin)
        except BaseException:
            self._db.close()
            raise

    def _build(self, results: Iterable[CommandResult], origin: float) -> None:
        db = self._db
        db.execute("CREATE TABLE raw (started REAL, file TEXT, line INTEGER, idx INTEGER, command TEXT, "
                   "attempt INTEGER, status TEXT, outcome TEXT, exit_code, worker TEXT, duration_us INTEGER)")
        db.execute("CREATE TABLE bar (seq INTEGER PRIMARY KEY, command TEXT, file TEXT, line INTEGER, "
                   "attempt INTEGER, status TEXT, outcome TEXT, exit_code, worker TEXT, slot INTEGER, "
                   "start_us INTEGER, duration_us INTEGER, shown INTEGER NOT NULL DEFAULT 1)")

        def attempts() -> Iterator[tuple[Any, ...]]:
            for r in results:
                for i, entry in enumerate(r.attempt_log):
                    started = entry.get("started")
                    if started is None:
                        continue
                    yield (float(started), r.file, r.line, i, name(r), int(entry.get("attempt") or i + 1),
                           str(entry.get("status") or ""), outcome_of(r, i), entry.get("exit_code"),
                           str(entry.get("worker") or "main"),
                           max(0, round(float(entry.get("duration_ms") or 0.0) * 1000)))

        db.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", attempts())
        first = db.execute("SELECT min(started) FROM raw").fetchone()[0]
        if first is not None:
            origin = min(origin, first)
        free: dict[str, list[int]] = {}  # per worker: the end of each slot's last bar
        rows = db.execute("SELECT started, file, line, command, attempt, status, outcome, exit_code, worker, "
                          "duration_us FROM raw ORDER BY started, coalesce(file, ''), coalesce(line, 0), idx")
        for started, file, line, command, attempt, status, outcome, exit_code, worker, duration_us in rows:
            start_us = max(0, round((started - origin) * 1_000_000))
            ends = free.setdefault(worker, [])
            slot = next((n for n, end in enumerate(ends) if end <= start_us), len(ends))
            if slot == len(ends):
                ends.append(0)
            ends[slot] = start_us + duration_us
            db.execute(
                "INSERT INTO bar (command, file, line, attempt, status, outcome, exit_code, worker, slot, start_us, "
                "duration_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (command, file, line, attempt, status, outcome, exit_code, worker, slot + 1, start_us, duration_us),
            )
        db.execute("DROP TABLE raw")
        db.execute("CREATE INDEX bar_lane ON bar (worker, slot, start_us, seq)")
        self.count: int = db.execute("SELECT count(*) FROM bar").fetchone()[0]
        """Attempts on the timeline."""
        self.shown: int = self.count
        """Attempts :meth:`bars` gives with ``shown_only`` (all, unless :meth:`limit` chose some)."""
        self.lanes: list[tuple[str, int]] = sorted(
            db.execute("SELECT DISTINCT worker, slot FROM bar"), key=lambda lane: (_worker_key(lane[0]), lane[1])
        )
        """The ``(worker, slot)`` lanes, in display order."""
        first_us, end_us = db.execute("SELECT min(start_us), max(start_us + duration_us) FROM bar").fetchone()
        self.first_us: int = first_us or 0
        """When the first attempt started (microseconds from the start of the run)."""
        self.end_us: int = end_us or 0
        """When the last attempt ended."""
        self.outcomes: set[str] = {outcome for (outcome,) in db.execute("SELECT DISTINCT outcome FROM bar")}
        """The outcomes of the attempts."""

    def limit(self, count: int) -> int:
        """Keep at most *count* bars for :meth:`bars` with ``shown_only``: first those that did not simply pass
        (failed, timed out, rerun, interrupted), then the slowest. Returns how many are shown."""
        if self.count > count:
            self._db.execute("UPDATE bar SET shown = 0")
            self._db.execute(
                "UPDATE bar SET shown = 1 WHERE seq IN (SELECT seq FROM bar "
                "ORDER BY outcome IN ('passed', 'xfailed'), duration_us DESC, seq LIMIT ?)",
                (count,),
            )
            self.shown = count
        return self.shown

    def bars(self, *, shown_only: bool = False) -> Iterator[Bar]:
        """The bars lane by lane (in display order), each lane's in time order; one at a time."""
        shown = " AND shown" if shown_only else ""
        for worker, slot in self.lanes:
            rows = self._db.execute(
                "SELECT command, file, line, attempt, status, outcome, exit_code, worker, slot, start_us, "
                f"duration_us FROM bar WHERE worker = ? AND slot = ?{shown} ORDER BY start_us, seq",
                (worker, slot),
            )
            for row in rows:
                yield Bar(*row)

    def close(self) -> None:
        """Drop the temporary database."""
        self._db.close()

    def __enter__(self) -> Timeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timeline(results: Iterable[CommandResult], origin: float) -> list[Bar]:
    """One :class:`Bar` per attempt of *results*, placed in lanes, as a list (see :class:`Timeline`)."""
    with Timeline(results, origin) as placed:
        return list(placed.bars())


def lanes(bars: Iterable[Bar]) -> list[tuple[str, int]]:
    """The ``(worker, slot)`` lanes of *bars*, in display order."""
    return sorted({(b.worker, b.slot) for b in bars}, key=lambda lane: (_worker_key(lane[0]), lane[1]))


def _metadata(lanes: list[tuple[str, int]], pids: dict[str, int]) -> Iterator[dict[str, Any]]:
    # The process and thread names of the lanes; each worker's pid goes into *pids*.
    for worker, slot in lanes:
        if worker not in pids:
            pid = pids[worker] = len(pids) + 1
            yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": worker}}
            yield {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        pid = pids[worker]
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": slot, "args": {"name": f"{worker} slot {slot}"}}
        yield {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": slot, "args": {"sort_index": slot}}


def _event(b: Bar, pid: int) -> dict[str, Any]:
    return {
        "name": b.command,
        "cat": b.outcome,
        "ph": "X",
        "ts": b.start_us,
        "dur": b.duration_us,
        "pid": pid,
        "tid": b.slot,
        "args": {
            "file": b.file,
            "line": b.line,
            "attempt": b.attempt,
            "status": b.status,
            "outcome": b.outcome,
            "exit_code": b.exit_code,
            "worker": b.worker,
        },
    }


def _other(started_iso: str | None) -> dict[str, Any]:
    return {"generator": f"pytest-batchrunner {__version__}", "started": started_iso}


def trace_document(bars: list[Bar], *, started_iso: str | None = None) -> dict[str, Any]:
    """The Chrome Trace Event document of *bars*, in memory (:func:`trace_chunks` streams it)."""
    events: list[dict[str, Any]] = []
    pids: dict[str, int] = {}
    events.extend(_metadata(lanes(bars), pids))
    events.extend(_event(b, pids[b.worker]) for b in bars)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": _other(started_iso)}


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def trace_chunks(placed: Timeline, *, started_iso: str | None = None) -> Iterator[bytes]:
    """The bytes of :func:`trace_document` as compact JSON, one event at a time."""
    yield b'{"traceEvents":['
    pids: dict[str, int] = {}
    separator = b""
    for event in _metadata(placed.lanes, pids):
        yield separator + _compact(event)
        separator = b","
    for b in placed.bars():
        yield separator + _compact(_event(b, pids[b.worker]))
        separator = b","
    yield b'],"displayTimeUnit":"ms","otherData":' + _compact(_other(started_iso)) + b"}\n"


class TraceReport:
    """Writer of ``--batch-trace PATH``: writes the file once, at the end of the run (also when interrupted)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def finish(self, recorder: Recorder) -> None:
        # Two streaming passes: the attempts (without output) into the timeline's table, then the file.
        with Timeline(recorder.results(output=False), recorder.started, in_memory=recorder.spool_problem is not None) as placed:
            write_atomically(self.path, trace_chunks(placed, started_iso=iso_time(recorder.started)))
