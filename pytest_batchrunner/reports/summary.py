"""The BatchRunner summary at the end of pytest's terminal report.

Its helpers (:func:`name`, :func:`duration`, :class:`Slowest`) are shared by the
Markdown and HTML reports, so that every summary names and times commands alike.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from pytest_batchrunner.batchfile import display_command, printable
from pytest_batchrunner.reports.files import one_line
from pytest_batchrunner.reports.results import CommandResult

SLOWEST = 5


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def measurable(ms: float) -> bool:
    """Whether a duration shows as more than ``0.00 s``."""
    return round(ms / 1000, 2) > 0


def duration(r: CommandResult) -> str:
    """The command's time, saying when it adds up several attempts (``3.02 s (3 attempts added up)``)."""
    return _seconds(r.attempts_duration_ms or 0.0) + _over(r)


def name(r: CommandResult) -> str:
    """The command as item names show it: on one line, without its ``# batch:`` comment, control bytes escaped."""
    return one_line(display_command(r.command))


def where(r: CommandResult) -> str:
    """``file:line`` of the command (control characters escaped), or ``""``."""
    return printable(f"{r.file}:{r.line}") if r.file else ""


def last_line(text: str) -> str:
    """The last non-blank line of *text*, control characters escaped (``\\x1b``), at most 200 characters."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return printable(line.strip())[:200]
    return ""


NO_RATE = "n/a (no command ran)"


def shown_rate(summary: dict[str, Any]) -> str:
    """The summary's success rate for display (``66.7%``), or ``n/a (no command ran)`` when it has none."""
    rate = summary["success_rate"]
    return NO_RATE if rate is None else format_rate(rate, summary["successful"], summary["failed"]) + "%"


def last_stderr_line(r: CommandResult) -> str:
    """The last line the failed command *r* wrote to stderr, without the reason added after it (a timeout's)."""
    stderr = r.stderr
    if r.exit_code == -1 and not r.success:
        # The original's convention: no exit code, and the reason as stderr's last line (see .results).
        stderr = stderr.rstrip("\n").rpartition("\n")[0]
    return last_line(stderr)


def last_words(r: CommandResult) -> str:
    """The last line the failed command *r* printed (stderr first), without the reason added after it (a timeout's)."""
    return last_stderr_line(r) or last_line(r.stdout)


def format_rate(rate: float, successful: int, unsuccessful: int) -> str:
    """*rate* (a percentage) for display: one decimal, or as many more as it takes to tell the truth.

    A rate is never shown as ``100.0`` while a command failed, nor as ``0.0``
    while one passed: 1,999 of 2,000 is ``99.95``, 1 of 3,000 is ``0.03``.
    """
    for decimals in range(1, 16):
        text = f"{rate:.{decimals}f}"
        value = float(text)
        if not ((unsuccessful and value >= 100.0) or (successful and value <= 0.0)):
            return text
    return repr(rate)


def summary_lines(summary: dict[str, Any], results: Iterable[CommandResult]) -> list[tuple[str, dict[str, bool]]]:
    """The summary as ``(text, markup)`` lines; shared by the plugin and the ``batchrunner`` command.

    *results* is read once, in one pass (a list, or the recorder's stream).
    """
    s = summary
    failed = f"Failed: {s['failed']}"
    if s["timed_out"]:
        failed += f" (of them timed out: {s['timed_out']})"
    counts = [f"Total Commands: {s['total_commands']}", f"Successful: {s['successful']}", failed,
              f"Flaky: {s['flaky']}", f"Reruns: {s['reruns']}"]
    if s["skipped"]:
        counts.append(f"Skipped: {s['skipped']}")
    if s["not_run"]:
        counts.append(f"Not run: {s['not_run']}")
    good = s["failed"] == 0 and not s["interrupted"]
    none = good and s["success_rate"] is None
    lines: list[tuple[str, dict[str, bool]]] = [
        (" | ".join(counts), {}),
        (f"Success Rate: {shown_rate(s)}", {"green": good and not none, "yellow": none, "red": not good, "bold": True}),
        (
            f"Total Time: {_seconds(s['total_duration_ms'])} | Command Time: avg "
            f"{_seconds(s['avg_command_duration_ms'])}, min {_seconds(s['min_command_duration_ms'])}, "
            f"max {_seconds(s['max_command_duration_ms'])}",
            {},
        ),
    ]
    if s["interrupted"]:
        lines.append(("Interrupted: commands that did not finish are reported as interrupted or not run", {"red": True}))
    # One pass over the results, which may be a stream from the recorder's
    # spool: only the slowest few and the failures' lines are held.
    slow = Slowest()
    bad: list[tuple[str, dict[str, bool]]] = []
    for r in results:
        slow.add(r)
        if r.status in ("failed", "interrupted"):
            detail = r.message or r.status
            last = last_words(r)
            text = f"  {where(r)}  {name(r)}  [{printable(detail)}]"
            if last:
                text += f"  {last}"
            bad.append((text, {"red": True}))
    if slow.result():
        lines.append(("Slowest commands:", {}))
        for r in slow.result():
            lines.append((f"  {_seconds(r.attempts_duration_ms or 0.0):>9}  {where(r)}  {name(r)} {_over(r)}".rstrip(), {}))
    if bad:
        lines.append(("Failed commands:", {"red": True}))
        lines.extend(bad)
    return lines


class Slowest:
    """The *count* slowest commands, fed one result at a time (a heap: memory does not grow with the run)."""

    def __init__(self, count: int = SLOWEST) -> None:
        self.count = count
        self.ran = 0
        self._heap: list[tuple[float, int, CommandResult]] = []

    def add(self, r: CommandResult) -> None:
        """Consider *r*."""
        if not r.attempt_log:
            return
        self.ran += 1
        # Ties keep file order, as a stable sort would.
        entry = (r.attempts_duration_ms or 0.0, -self.ran, r)
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, entry)
        elif entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def result(self) -> list[CommandResult]:
        """The slowest that took measurable time, slowest first (none when only one command ran)."""
        if self.ran < 2:
            return []
        ordered = sorted(self._heap, key=lambda e: e[:2], reverse=True)
        return [r for _duration, _order, r in ordered if measurable(r.attempts_duration_ms or 0.0)]


def _over(r: CommandResult) -> str:
    return f" ({r.attempts} attempts added up)" if r.attempts > 1 else ""


def write_terminal_summary(terminalreporter, summary: dict[str, Any], results: Iterable[CommandResult]) -> None:  # type: ignore[no-untyped-def]
    terminalreporter.write_sep("=", "BatchRunner summary", bold=True)
    for text, markup in summary_lines(summary, results):
        terminalreporter.write_line(text, **markup)
