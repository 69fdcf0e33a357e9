"""``--batch-html PATH``: the run in one self-contained HTML file.

Plain Python, no pytest import. The page holds the BatchRunner summary (the
terminal's lines), a Gantt chart of the timeline (:func:`~.trace.timeline`: one
lane per worker and slot, one bar per attempt coloured by how it ended, its
command, place and status in the bar's tooltip), and the failed commands with the tail of their output. Everything is inline (CSS and
SVG, no script): it opens from a CI artifact or a mail attachment, with no
network. The page is written as it is made, from the recorder's spool: memory
does not grow with the run, and above :data:`MAX_BARS` attempts the chart draws
the failed, rerun and slowest ones and says how many it left out.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.results import CommandResult, Recorder
from pytest_batchrunner.reports.summary import duration, name, summary_lines, where
from pytest_batchrunner.reports.trace import Timeline, iso_time

__all__ = ["MAX_BARS", "HtmlReport", "html_chunks"]

COLOURS = {
    "passed": "#2e9e44",
    "failed": "#d1242f",
    "timed out": "#e36209",
    "rerun": "#d4a72c",
    "xfailed": "#8c959f",
    "interrupted": "#8250df",
}
OUTPUT_LINES = 60
"""Lines of each stream shown for a failed command (the last ones)."""
OUTPUT_CHARS = 20_000
MAX_BARS = 5_000
"""Bars the chart draws at most (a page stays a few megabytes at 100,000 commands); the rest are counted."""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:28px 0 8px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 10px;overflow:auto;
font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;max-height:360px;margin:4px 0 10px}
.summary{font:13px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;background:#f6f8fa;
border:1px solid #d0d7de;border-radius:6px;padding:10px 12px}
.good{color:#1a7f37;font-weight:bold}.bad{color:#cf222e;font-weight:bold}
table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
td.num{text-align:right;white-space:nowrap}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
svg text{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;fill:#57606a}
svg rect.bar:hover{stroke:#1f2328;stroke-width:1.5}svg text.in{fill:#fff;pointer-events:none}
details{margin:0 0 6px}summary{cursor:pointer}
"""

LANE_HEIGHT = 22
LABEL_WIDTH = 110
CHART_WIDTH = 1040


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _printable(text: str) -> str:
    # Control characters but tab and newline shown as \xNN, as in the terminal.
    return "".join(ch if ch >= " " or ch in "\t\n" else f"\\x{ord(ch):02x}" for ch in text)


def _tick_step(total_s: float) -> float:
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
                 900, 1800, 3600, 7200):
        if total_s / step <= 10:
            return step
    return 3600 * max(1, round(total_s / 36000))


def _label(seconds: float, step: float) -> str:
    if step < 1:
        return f"{seconds:.{max(0, len(repr(step).split('.')[-1]))}f} s"
    if seconds >= 120 and step >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:g} s"


def gantt(placed: Timeline, wall_us: int) -> Iterator[str]:
    """The timeline as inline SVG, piece by piece: a lane per worker and slot, a bar per attempt with its tooltip.

    The axis counts from the start of the run but begins at the first command:
    the time pytest (and xdist's workers) took to start is said in a note. Above
    :data:`MAX_BARS` attempts, only the most telling are drawn (see
    :meth:`Timeline.limit`), and a note says so.
    """
    order = placed.lanes
    if not order:
        yield "<p>No command ran.</p>"
        return
    row = {lane: i for i, lane in enumerate(order)}
    first_us = placed.first_us
    end_us = max(wall_us, placed.end_us)
    step = _tick_step(max(end_us - first_us, 1) / 1e6)
    origin_us = int(first_us // (step * 1e6) * step * 1e6)  # a tick at or before the first command
    span_us = max(end_us - origin_us, 1)
    scale = (CHART_WIDTH - LABEL_WIDTH - 10) / span_us
    height = 24 + LANE_HEIGHT * len(order)
    yield (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {CHART_WIDTH} {height}" '
        f'role="img" aria-label="Timeline of the run">'
    )
    t = origin_us / 1e6
    while (t * 1e6 - origin_us) <= span_us + 1:
        x = LABEL_WIDTH + (t * 1e6 - origin_us) * scale
        yield f'<line x1="{x:.1f}" y1="16" x2="{x:.1f}" y2="{height}" stroke="#eaeef2"/>'
        yield f'<text x="{x:.1f}" y="11" text-anchor="middle">{_e(_label(t, step))}</text>'
        t = round(t + step, 6)
    for (worker, slot), i in row.items():
        y = 20 + i * LANE_HEIGHT
        if i % 2:
            yield f'<rect x="0" y="{y}" width="{CHART_WIDTH}" height="{LANE_HEIGHT}" fill="#f6f8fa"/>'
        label = worker if slot == 1 else f"{worker} #{slot}"
        yield f'<text x="4" y="{y + 15}">{_e(label)}</text>'
    shown = placed.limit(MAX_BARS)
    for b in placed.bars(shown_only=True):
        y = 20 + row[(b.worker, b.slot)] * LANE_HEIGHT + 3
        x = LABEL_WIDTH + (b.start_us - origin_us) * scale
        w = max(1.0, b.duration_us * scale)
        tip = (f"{b.command}\n{b.where}  attempt {b.attempt}  {b.outcome}: {b.status}\n"
               f"{b.duration_us / 1e6:.2f} s, from {b.start_us / 1e6:.2f} s  ({b.worker}, slot {b.slot})")
        parts = [
            f'<g><rect class="bar" x="{x:.2f}" y="{y}" width="{w:.2f}" height="{LANE_HEIGHT - 6}" rx="2" '
            f'fill="{COLOURS.get(b.outcome, "#57606a")}" data-outcome="{_e(b.outcome)}" '
            f'data-where="{_e(b.where)}" data-attempt="{b.attempt}"><title>{_e(tip)}</title></rect>'
        ]
        fits = int((w - 6) // 6.7)  # characters of 11px monospace that fit in the bar
        if fits >= 4:
            text = b.command if len(b.command) <= fits else b.command[: fits - 1] + "…"
            parts.append(f'<text class="in" x="{x + 3:.2f}" y="{y + 12}">{_e(text)}</text>')
        parts.append("</g>")
        yield "".join(parts)
    yield "</svg>"
    if shown < placed.count:
        yield (f'<p class="limited"><small>{placed.count} attempts: the chart draws {shown} of them, those that '
               "did not pass at once (failed, timed out, rerun, interrupted) first, then the slowest. "
               "<code>--batch-trace</code> holds every attempt.</small></p>")
    if origin_us > 0:
        yield (f"<p><small>The first command started {first_us / 1e6:.2f} s after the run started "
               "(pytest and its workers starting up).</small></p>")


def _tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()[-OUTPUT_LINES:]
    out = "\n".join(lines)
    return out[-OUTPUT_CHARS:]


def _failure(r: CommandResult) -> str:
    parts = [
        f"<details open><summary><code>{_e(where(r))}</code> <b>{_e(name(r))}</b> "
        f'<span class="bad">[{_e(r.message or r.status)}]</span> {_e(duration(r))}</summary>'
    ]
    for label, text, size in (("stderr", r.stderr, r.stderr_bytes), ("stdout", r.stdout, r.stdout_bytes)):
        tail = _tail(text)
        if tail:
            parts.append(f"<div>{label}, last lines of {size} bytes:</div><pre>{_e(_printable(tail))}</pre>")
    if not (r.stderr or r.stdout):
        parts.append("<div>(no output)</div>")
    parts.append("</details>")
    return "".join(parts)


def html_chunks(summary: dict[str, Any], results: Iterable[CommandResult], placed: Timeline, *,
                title: str = "BatchRunner", started_iso: str | None = None) -> Iterator[bytes]:
    """The page's bytes, written as they are made.

    *results* is read once, for the summary's lines; the failed commands' sections
    are made in the same pass and set aside in a temporary file until the chart
    (drawn from *placed*) is written: memory does not grow with the run.
    """
    with _SetAside() as failures:
        count = 0

        def watched() -> Iterator[CommandResult]:
            nonlocal count
            for r in results:
                if r.status in ("failed", "interrupted"):
                    count += 1
                    failures.write(("\n" + _failure(r)).encode("utf-8", "replace"))
                yield r

        lines = []
        for text, markup in summary_lines(summary, watched()):
            cls = "good" if markup.get("green") else "bad" if markup.get("red") else ""
            lines.append(f'<span class="{cls}">{_e(text)}</span>' if cls else _e(text))
        legend = "".join(
            f'<span><i style="background:{colour}"></i>{_e(outcome)}</span>'
            for outcome, colour in COLOURS.items()
            if outcome in placed.outcomes or outcome in ("passed", "failed")
        )
        when = f" · started {_e(started_iso)}" if started_iso else ""
        head = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            f'<div class="summary">{"<br>".join(lines)}</div>',
            f"<h2>Timeline</h2><div class=\"legend\">{legend}</div>",
            "",
        ]
        yield "\n".join(head).encode("utf-8", "replace")
        del lines, head
        for piece in gantt(placed, round(float(summary.get("total_duration_ms") or 0) * 1000)):
            yield piece.encode("utf-8", "replace")
        yield (b"\n<p><small>One lane per worker (and per slot when a worker ran several commands at once); "
               b"hover over a bar for its command.</small></p>")
        if count:
            yield f"\n<h2>Failed commands ({count})</h2>".encode()
            failures.seek(0)
            while chunk := failures.read(1 << 16):
                yield chunk
        yield f"\n<p><small>pytest-batchrunner {_e(__version__)}{when}</small></p></body></html>\n".encode()


class _SetAside:
    """Bytes set aside in a temporary file, moved to memory if ``$TMPDIR`` cannot take them (it is full)."""

    def __init__(self) -> None:
        try:
            self.file: Any = tempfile.TemporaryFile(buffering=0)  # unbuffered: what was written is known
        except OSError:
            self.file = io.BytesIO()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.file.write(view):]
            except OSError:
                if isinstance(self.file, io.BytesIO):
                    raise
                self.file.seek(0)
                kept = self.file.read()
                self.file.close()
                self.file = io.BytesIO(kept)
                self.file.seek(0, io.SEEK_END)

    def seek(self, offset: int) -> None:
        self.file.seek(offset)

    def read(self, size: int) -> bytes:
        return self.file.read(size)

    def __enter__(self) -> _SetAside:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


class HtmlReport:
    """Writer of ``--batch-html PATH``: writes the page once, at the end of the run (also when interrupted).

    Two streaming passes over the recorder: the attempts without output into a
    :class:`~.trace.Timeline`, then the results with output for the summary and
    the failed commands, written as the page goes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def finish(self, recorder: Recorder) -> None:
        summary = recorder.summary()
        with Timeline(recorder.results(output=False), recorder.started, in_memory=recorder.spool_problem is not None) as placed:
            page = html_chunks(summary, recorder.results(), placed, started_iso=iso_time(recorder.started))
            write_atomically(self.path, page)
