"""The run's timeline: every attempt as a bar in a lane, and ``--batch-trace PATH`` (Chrome Trace Event JSON).

Plain Python, no pytest import. :func:`timeline` turns results into
:class:`Bar` objects, one per attempt, each in a lane of its worker (``main``
without xdist, ``gw0``, ``gw1``... under it). A worker runs several commands
at once with ``--batch-jobs``; its bars then go into numbered slots, each attempt
into the first slot that is free when it starts, so that the bars of one lane
never overlap. The HTML report draws the same bars.

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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.results import CommandResult, Recorder
from pytest_batchrunner.reports.summary import name

__all__ = ["Bar", "TraceReport", "outcome_of", "timeline", "trace_document"]

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


def timeline(results: Iterable[CommandResult], origin: float) -> list[Bar]:
    """One :class:`Bar` per attempt of *results*, placed in lanes; *origin* is the run's start (epoch seconds).

    An attempt that started before *origin* (the Python API starts its first
    commands before pytest is ready) starts the timeline instead.
    """
    raw: list[tuple[float, float, CommandResult, int]] = []
    for r in results:
        for i, entry in enumerate(r.attempt_log):
            started = entry.get("started")
            if started is None:
                continue
            raw.append((float(started), float(entry.get("duration_ms") or 0.0), r, i))
    if raw:
        origin = min(origin, min(s for s, _, _, _ in raw))
    raw.sort(key=lambda a: (a[0], a[2].file or "", a[2].line or 0, a[3]))
    free: dict[str, list[int]] = {}  # per worker: the end of each slot's last bar
    bars: list[Bar] = []
    for started, ms, r, i in raw:
        entry = r.attempt_log[i]
        worker = str(entry.get("worker") or "main")
        start_us = max(0, round((started - origin) * 1_000_000))
        duration_us = max(0, round(ms * 1000))
        ends = free.setdefault(worker, [])
        slot = next((n for n, end in enumerate(ends) if end <= start_us), len(ends))
        if slot == len(ends):
            ends.append(0)
        ends[slot] = start_us + duration_us
        bars.append(
            Bar(
                command=name(r),
                file=r.file,
                line=r.line,
                attempt=int(entry.get("attempt") or i + 1),
                status=str(entry.get("status") or ""),
                outcome=outcome_of(r, i),
                exit_code=entry.get("exit_code"),
                worker=worker,
                slot=slot + 1,
                start_us=start_us,
                duration_us=duration_us,
            )
        )
    bars.sort(key=lambda b: (_worker_key(b.worker), b.slot, b.start_us))
    return bars


def lanes(bars: list[Bar]) -> list[tuple[str, int]]:
    """The ``(worker, slot)`` lanes of *bars*, in display order."""
    return sorted({(b.worker, b.slot) for b in bars}, key=lambda lane: (_worker_key(lane[0]), lane[1]))


def trace_document(bars: list[Bar], *, started_iso: str | None = None) -> dict[str, Any]:
    """The Chrome Trace Event document of *bars*."""
    events: list[dict[str, Any]] = []
    pids: dict[str, int] = {}
    for worker, slot in lanes(bars):
        if worker not in pids:
            pid = pids[worker] = len(pids) + 1
            events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": worker}})
            events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        pid = pids[worker]
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": slot, "args": {"name": f"{worker} slot {slot}"}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": slot, "args": {"sort_index": slot}})
    for b in bars:
        events.append({
            "name": b.command,
            "cat": b.outcome,
            "ph": "X",
            "ts": b.start_us,
            "dur": b.duration_us,
            "pid": pids[b.worker],
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
        })
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"generator": f"pytest-batchrunner {__version__}", "started": started_iso},
    }


class TraceReport:
    """Writer of ``--batch-trace PATH``: writes the file once, at the end of the run (also when interrupted)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def finish(self, recorder: Recorder) -> None:
        bars = timeline(recorder.results(), recorder.started)
        document = trace_document(bars, started_iso=iso_time(recorder.started))
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        write_atomically(self.path, data.encode("utf-8", "replace") + b"\n")
