"""The run after the fact: ``--batch-trace`` (Chrome Trace Event JSON), ``--batch-html``, ``--batch-markdown``
and GitHub's ``GITHUB_STEP_SUMMARY``.

Real batch files and real processes, in-process and under ``-n 2``; each file is
parsed and checked against the JSON results of the same run: one event (one
bar) per attempt, every command present, lanes that never overlap, no
reference to anything outside the HTML file.
"""

from __future__ import annotations

import html
import json
import re
import signal
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

BATCH = (
    "sleep 0.3   # batch: timeout=5\n"
    "sleep 0.25\n"
    "echo hello; echo oops >&2; exit 3\n"
    "test -e flag || { touch flag; sleep 0.1; exit 1; }   # batch: retries=2\n"
    "sleep 5   # batch: timeout=0.4\n"
    "sleep 0.2; echo 'a|b `c`'\n"
)
REPORTS = ("--batch-json", "out/results.json", "--batch-trace", "out/trace.json", "--batch-html", "out/run.html",
           "--batch-markdown", "out/summary.md", "--batch-kill-grace", "0.2")


class Page(HTMLParser):
    """What the checks need from the HTML: tags with their attributes, tooltips, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.titles: list[str] = []
        self.text: list[str] = []
        self._in_title = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "title":
            self._in_title += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title -= 1

    def handle_data(self, data: str) -> None:
        (self.titles if self._in_title else self.text).append(data)


def parse_html(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def check_trace(trace: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check the trace against the JSON results; return its complete events."""
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    attempts = {(r["line"], a["attempt"]): (r, a) for r in results for a in r["attempt_log"]}
    assert sorted((e["args"]["line"], e["args"]["attempt"]) for e in events) == sorted(attempts)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    processes = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    by_lane: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        r, a = attempts[(e["args"]["line"], e["args"]["attempt"])]
        assert e["name"] == r["command"].split("   # batch:")[0]
        assert e["args"]["file"] == "cmds.batch" and e["args"]["status"] == a["status"]
        assert e["dur"] == round(a["duration_ms"] * 1000)
        assert isinstance(e["ts"], int) and e["ts"] >= 0
        assert processes[e["pid"]] == a["worker"] == e["args"]["worker"]
        assert names[(e["pid"], e["tid"])] == f"{a['worker']} slot {e['tid']}"
        by_lane[(e["pid"], e["tid"])].append(e)
    for lane in by_lane.values():
        lane.sort(key=lambda e: e["ts"])
        for before, after in zip(lane, lane[1:]):
            assert before["ts"] + before["dur"] <= after["ts"], (before, after)
    return events


def test_trace_html_and_markdown_agree_with_the_results(
    pytester: pytest.Pytester, run, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "cmds.batch").write_text(BATCH)
    step_summary = pytester.path / "step-summary.md"
    step_summary.write_text("## Earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = run("--batch-jobs", "2", *REPORTS)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = pytester.path / "out"
    results = json.loads((out / "results.json").read_text())["results"]
    assert sum(len(r["attempt_log"]) for r in results) == 7

    events = check_trace(json.loads((out / "trace.json").read_text()), results)
    outcomes = {(e["args"]["line"], e["args"]["attempt"]): e["cat"] for e in events}
    assert outcomes == {(1, 1): "passed", (2, 1): "passed", (3, 1): "failed", (4, 1): "rerun", (4, 2): "passed",
                        (5, 1): "timed out", (6, 1): "passed"}
    if mode == "inprocess":
        # --batch-jobs 2 in one process: the first two commands ran side by side (a rerun,
        # run in its item's own protocol, may make a third lane).
        assert {1, 2} <= {e["tid"] for e in events}

    page = parse_html(out / "run.html")
    assert not [
        (tag, attrs) for tag, attrs in page.tags
        if tag in ("script", "link", "img", "iframe", "object", "embed")
        or any(k in ("src", "href") or (v and "url(" in v) for k, v in attrs.items() if k != "xmlns")
    ]
    assert "url(" not in (out / "run.html").read_text() and "@import" not in (out / "run.html").read_text()
    bars = [attrs for tag, attrs in page.tags if tag == "rect" and attrs.get("class") == "bar"]
    assert sorted((a["data-where"], a["data-attempt"], a["data-outcome"]) for a in bars) == sorted(
        (f"cmds.batch:{line}", str(attempt), outcome) for (line, attempt), outcome in outcomes.items()
    )
    tips = "\n".join(page.titles)
    for r in results:
        assert r["command"].split("   # batch:")[0] in tips
    text = "".join(page.text)
    assert "Total Commands: 6 | Successful: 4 | Failed: 2 (of them timed out: 1) | Flaky: 1 | Reruns: 1" in text
    # The page's summary is the terminal's, line for line.
    box = re.search(r'<div class="summary">(.*?)</div>', (out / "run.html").read_text(), re.S).group(1)
    lines = [html.unescape(re.sub(r"<[^>]+>", "", part)) for part in box.split("<br>")]
    terminal = result.outlines[result.outlines.index(next(x for x in result.outlines if "BatchRunner summary" in x)) + 1:]
    assert lines == terminal[: len(lines)] and not terminal[len(lines)].startswith(" ")
    assert "oops" in text and "hello" in text  # the failed command's output
    assert "Failed commands (2)" in text

    markdown = (out / "summary.md").read_text()
    assert "| `cmds.batch:3` | `echo hello; echo oops >&2; exit 3` | exit code 3 | oops |" in markdown
    row = next(x for x in markdown.splitlines() if x.startswith("| `cmds.batch:5`"))  # its status once, no stderr line
    assert row.startswith("| `cmds.batch:5` | `sleep 5` | timed out after 0.4 s |") and "Command timed out" not in row
    assert "**Success rate: 66.7%**" in markdown
    assert "`cmds.batch:6` | ``sleep 0.2; echo 'a\\|b `c`'`` |" in markdown
    appended = step_summary.read_text()
    assert appended.startswith("## Earlier step\n") and appended.endswith(markdown)


def test_reports_are_written_when_interrupted(pytester: pytest.Pytester, mode: str, no_leftovers: str,
                                              interrupt_once_started) -> None:
    # The second command runs ahead of its turn while the first is reported:
    # it signals only once an item's protocol has ended (a conftest marks it),
    # so that in-process the first command is reported before the run is
    # stopped, whatever the machine's load.
    pytester.makeconftest(
        "def pytest_runtest_logfinish(nodeid, location):\n"
        "    open('reported', 'a').close()\n"
    )
    (pytester.path / "cmds.batch").write_text(
        "echo first\nwhile [ ! -e reported ]; do sleep 0.01; done; touch started; sleep 30\necho never\n"
    )
    extra = ["-n", "2"] if mode == "xdist" else []
    argv = [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", *REPORTS, *extra]
    done = interrupt_once_started(argv, pytester.path, pytester.path / "started", signal.SIGTERM)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout
    out = pytester.path / "out"
    trace = json.loads((out / "trace.json").read_text())
    bars = {e["name"]: e["args"]["outcome"] for e in trace["traceEvents"] if e["ph"] == "X"}
    slow = "while [ ! -e reported ]; do sleep 0.01; done; touch started; sleep 30"
    text = "".join(parse_html(out / "run.html").text)
    assert "Interrupted" in text
    if mode == "inprocess":
        # The interrupted command has its bar too, up to its kill.
        assert bars == {"echo first": "passed", slow: "interrupted"}
        assert "touch started; sleep 30" in text  # among the failed commands, as interrupted
    else:  # the other worker may have run either command, or not reported it yet
        assert set(bars) <= {"echo first", "echo never", slow}
        assert bars.get(slow, "interrupted") == "interrupted"
    assert "**Interrupted**" in (out / "summary.md").read_text()


def test_step_summary_that_cannot_be_written_is_named(pytester: pytest.Pytester, no_leftovers: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "cmds.batch").write_text("true\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "missing-dir" / "x" / "..") )
    result = pytester.runpytest_subprocess("cmds.batch", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*$GITHUB_STEP_SUMMARY *: not written: *"])


HOSTILE = (
    "printf 'out\\n'; printf '%s\\n' 'first' '*x* __init__ ![i](http://example.com/i.png) <b>b</b> ~~s~~ $m$ a|b `c`' >&2; exit 3\n"
    "echo only stdout; exit 4\n"
    "echo \"a|b\" `echo x` ``; exit 5\n"
)


def test_markdown_summary_renders_hostile_output_as_text(pytester: pytest.Pytester, run) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    (pytester.path / "cmds.batch").write_text(HOSTILE)
    result = run("--batch-markdown", "summary.md")
    result.assert_outcomes(failed=3)
    text = (pytester.path / "summary.md").read_text()
    page = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)
    failed = page.split("Failed commands")[1].split("</table>")[0]
    assert not re.search(r"<(img|em|strong|a|b|s|del)\b", page.split("Failed commands")[1]), page
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", failed, re.S)][1:]
    assert [len(cells) for cells in rows] == [4, 4, 4], failed
    commands = [html.unescape(re.sub(r"</?code>", "", cells[1])).replace("\\|", "|") for cells in rows]
    assert commands == [line if len(line) <= 120 else line[:119] + "…" for line in HOSTILE.splitlines()]
    assert all(cells[1].startswith("<code>") for cells in rows)
    last = [html.unescape(cells[3]) for cells in rows]
    assert last == ["*x* __init__ ![i](http://example.com/i.png) <b>b</b> ~~s~~ $m$ a|b `c`", "", ""]
