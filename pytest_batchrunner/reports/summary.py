"""The BatchRunner summary at the end of pytest's terminal report."""

from __future__ import annotations

from typing import Any

from pytest_batchrunner.batchfile import one_line
from pytest_batchrunner.reports.results import CommandResult

SLOWEST = 5


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def _where(r: CommandResult) -> str:
    return f"{r.file}:{r.line}" if r.file else ""


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return "".join(ch if ch >= " " else "?" for ch in line.strip())[:200]
    return ""


def summary_lines(summary: dict[str, Any], results: list[CommandResult]) -> list[tuple[str, dict[str, bool]]]:
    """The summary as ``(text, markup)`` lines; shared by the plugin and the ``batchrunner`` command."""
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
    lines: list[tuple[str, dict[str, bool]]] = [
        (" | ".join(counts), {}),
        (f"Success Rate: {s['success_rate']:.1f}%", {"green": good, "red": not good, "bold": True}),
        (
            f"Total Time: {_seconds(s['total_duration_ms'])} | Command Time: avg "
            f"{_seconds(s['avg_command_duration_ms'])}, min {_seconds(s['min_command_duration_ms'])}, "
            f"max {_seconds(s['max_command_duration_ms'])}",
            {},
        ),
    ]
    if s["interrupted"]:
        lines.append(("Interrupted: commands that did not finish are reported as interrupted or not run", {"red": True}))
    ran = sorted((r for r in results if r.attempt_log), key=lambda r: r.duration_ms, reverse=True)
    if len(ran) > 1:
        lines.append(("Slowest commands:", {}))
        for r in ran[:SLOWEST]:
            lines.append((f"  {_seconds(r.duration_ms):>9}  {_where(r)}  {one_line(r.command)}", {}))
    bad = [r for r in results if r.status in ("failed", "interrupted")]
    if bad:
        lines.append(("Failed commands:", {"red": True}))
        for r in bad:
            detail = r.message or r.status
            last = _last_line(r.stderr) or _last_line(r.stdout)
            text = f"  {_where(r)}  {one_line(r.command)}  [{detail}]"
            if last:
                text += f"  {last}"
            lines.append((text, {"red": True}))
    return lines


def write_terminal_summary(terminalreporter, summary: dict[str, Any], results: list[CommandResult]) -> None:  # type: ignore[no-untyped-def]
    terminalreporter.write_sep("=", "BatchRunner summary", bold=True)
    for text, markup in summary_lines(summary, results):
        terminalreporter.write_line(text, **markup)
