"""The summary in Markdown: ``--batch-markdown PATH``, and GitHub Actions' job summary.

Plain Python, no pytest import. When ``GITHUB_STEP_SUMMARY`` is set (GitHub
Actions sets it to a file for each step), the summary is appended to that file
and GitHub renders it on the run's page; ``--batch-markdown PATH`` writes the
same text to any file (replaced atomically). It holds the success rate and
counts, the failed commands (``file:line``, status, last line of stderr) and the
slowest commands, from the same records as the terminal summary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.results import CommandResult, Recorder
from pytest_batchrunner.reports.summary import Slowest, duration, last_stderr_line, name, shown_rate, where

__all__ = ["MarkdownReport", "MarkdownText", "markdown_summary"]

FAILED_ROWS = 50
"""Failed commands listed; the rest are counted."""


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text[: limit - 1] + "…" if len(text) > limit else text


def _cell(text: str, limit: int = 200) -> str:
    """*text* as plain text in a table cell: one line, clipped, with what inline Markdown acts on backslash-escaped
    (no emphasis, link, image, HTML, math or cell break can come of a command's output)."""
    return re.sub(r"[\\`*_\[\]<>!|~&$]", r"\\\g<0>", _clip(text, limit))


def _code(text: str, limit: int = 120) -> str:
    """*text* as inline code in a table cell: a fence longer than its longest run of backticks, ``|`` as ``\\|``."""
    text = _clip(text, limit)
    if not text:
        return ""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return fence + pad + text.replace("|", "\\|") + pad + fence


def markdown_summary(summary: dict[str, Any], results: Iterable[CommandResult], *,
                     title: str = "BatchRunner summary") -> str:
    """The summary as GitHub-flavoured Markdown.

    *results* is read once (a list, or the recorder's stream): only the first
    :data:`FAILED_ROWS` failed commands' rows and the slowest few are held.
    """
    s = summary
    good = s["failed"] == 0 and not s["interrupted"]
    mark = "✅" if good else "❌"
    counts = [
        f"Total commands: {s['total_commands']}",
        f"Successful: {s['successful']}",
        f"Failed: {s['failed']}" + (f" (of them timed out: {s['timed_out']})" if s["timed_out"] else ""),
        f"Flaky: {s['flaky']}",
        f"Reruns: {s['reruns']}",
    ]
    if s["skipped"]:
        counts.append(f"Skipped: {s['skipped']}")
    if s["not_run"]:
        counts.append(f"Not run: {s['not_run']}")
    out = [
        f"### {mark} {title}",
        "",
        f"**Success rate: {shown_rate(s)}** · " + " · ".join(counts),
        "",
        f"Total time {s['total_duration_ms'] / 1000:.2f} s · command time avg "
        f"{s['avg_command_duration_ms'] / 1000:.2f} s, max {s['max_command_duration_ms'] / 1000:.2f} s",
        "",
    ]
    if s["interrupted"]:
        out += ["> **Interrupted**: commands that did not finish are reported as interrupted or not run.", ""]
    slow = Slowest()
    bad = 0
    rows: list[str] = []
    for r in results:
        slow.add(r)
        if r.status not in ("failed", "interrupted"):
            continue
        bad += 1
        if bad <= FAILED_ROWS:
            last = last_stderr_line(r)
            rows.append(f"| {_code(where(r))} | {_code(name(r))} | {_cell(r.message or r.status)} | {_cell(last)} |")
    if bad:
        out += [f"#### Failed commands ({bad})", "", "| Where | Command | Status | Last stderr line |",
                "|---|---|---|---|", *rows]
        if bad > FAILED_ROWS:
            out.append(f"| | and {bad - FAILED_ROWS} more | | |")
        out.append("")
    if slow.result():
        out += ["#### Slowest commands", "", "| Time | Where | Command |", "|--:|---|---|"]
        for r in slow.result():
            out.append(f"| {_cell(duration(r))} | {_code(where(r))} | {_code(name(r))} |")
        out.append("")
    return "\n".join(out) + "\n"


class MarkdownText:
    """The Markdown summary of a run, made once for every file it goes to."""

    def __init__(self) -> None:
        self.text: bytes | None = None

    def of(self, recorder: Recorder) -> bytes:
        if self.text is None:
            # One streaming pass over the spool; the text itself is bounded (FAILED_ROWS rows, the slowest few).
            summary = recorder.summary()
            self.text = markdown_summary(summary, recorder.results()).encode("utf-8", "replace")
        return self.text


class MarkdownReport:
    """Writer of the Markdown summary to *path*: replaced (``--batch-markdown``) or appended to (*append*, for
    ``GITHUB_STEP_SUMMARY``, which other steps' summaries share). Writers sharing *text* render it once."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False, text: MarkdownText | None = None) -> None:
        self.path = path
        self.append = append
        self.text = text if text is not None else MarkdownText()

    def finish(self, recorder: Recorder) -> None:
        text = self.text.of(recorder)
        if not self.append:
            write_atomically(self.path, text)
            return
        # One write on an O_APPEND descriptor: summaries of steps running side by side never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            view = memoryview(b"\n" + text)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
