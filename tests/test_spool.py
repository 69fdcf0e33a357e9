"""Results spooled to disk, reports streamed from the spool, and pytest's own copies kept small.

The recorder keeps every attempt record (with its output) in a temporary SQLite
file, never in memory; the JSON, JUnit and terminal summary read it back one
command at a time; reports that pytest keeps to the end of the session no
longer carry a command's output. Real runs with real commands, in-process and
under ``-n 2``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.reports import html as html_report
from pytest_batchrunner.reports.html import HtmlReport
from pytest_batchrunner.reports.json import encode_json, json_chunks, json_document
from pytest_batchrunner.reports.markdown import MarkdownReport
from pytest_batchrunner.reports.results import CommandResult, Recorder, summarize
from pytest_batchrunner.reports.trace import TraceReport


def record(nodeid: str, line: int, *, success: bool = True, output: str = "", attempt: int = 1,
           duration_ms: float = 1.0) -> dict[str, Any]:
    """An attempt record as :meth:`CommandItem.attempt_record` makes it."""
    return {
        "nodeid": nodeid, "command": nodeid.split("::", 1)[1], "file": nodeid.split("::", 1)[0], "line": line,
        "attempt": attempt, "success": success, "exit_code": 0 if success else 1, "signal": None,
        "timed_out": False, "timeout": None, "status": f"exit code {0 if success else 1}",
        "stdout": output, "stderr": output[::-1], "stdout_bytes": len(output), "stderr_bytes": len(output),
        "started": 1.7e9, "timestamp": "2024-01-01T00:00:00.000+00:00", "duration_ms": duration_ms,
        "leftovers": [], "expected_exit": 0, "worker": "main", "pid": 1,
    }


def deleted_spool_files() -> list[str]:
    """Files this process holds open that were unlinked (the spool lives as one of them)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith("(deleted)"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_the_spool_is_a_temporary_file_removed_when_the_recorder_closes() -> None:
    before = deleted_spool_files()
    recorder = Recorder()
    # SQLite keeps the first pages in its (bounded) cache and creates the file
    # when they overflow: 10 MB of output does.
    for line in range(1, 6):
        recorder.attempt(record(f"a.batch::x{line}", line, output="o" * 1_000_000), "passed")
        recorder.outcome(f"a.batch::x{line}", "passed")
    # On disk, already unlinked: nothing to clean up even if the process dies.
    assert len(deleted_spool_files()) > len(before)
    assert [r.stdout for r in recorder.results()] == ["o" * 1_000_000] * 5
    recorder.close()
    recorder.close()  # again is harmless
    assert deleted_spool_files() == before
    assert recorder.summary()["total_commands"] == 5  # the summary is kept


def test_results_stream_in_file_order_with_every_attempt_and_its_output() -> None:
    recorder = Recorder(max_retries=1)
    # Collected out of order, one never runs, one is retried, output of every kind.
    for name, line in (("b.batch::two", 2), ("a.batch::one", 1), ("b.batch::one", 1), ("a.batch::skip", 3)):
        recorder.expect(name, name.split("::")[1], name.split("::")[0], line)
    odd = "bad \udcff byte, ctl \x00\x1b, wide \U0001f600\n"
    recorder.start("b.batch::two")
    recorder.attempt(record("b.batch::two", 2, success=False, output="first " + odd), "rerun")
    recorder.start("b.batch::two")
    recorder.attempt(record("b.batch::two", 2, output="second " + odd, attempt=2, duration_ms=5.0), "passed")
    recorder.outcome("b.batch::two", "passed")
    recorder.attempt(record("a.batch::one", 1, success=False, output="boom"), "failed")
    recorder.outcome("a.batch::one", "failed", "exit code 1")
    recorder.outcome("a.batch::skip", "skipped", "not today")

    pairs = list(recorder.results_with_records())
    results = [r for r, _ in pairs]
    assert [r.nodeid for r in results] == ["a.batch::one", "a.batch::skip", "b.batch::one", "b.batch::two"]
    assert [r.status for r in results] == ["failed", "skipped", "not run", "passed"]
    two, records = pairs[3]
    assert two.stdout == "second " + odd and two.stderr == ("second " + odd)[::-1]
    assert [r["stdout"] for r in records] == ["first " + odd, "second " + odd]
    assert two.attempts == 2 and two.flaky and (two.duration_ms, two.attempts_duration_ms) == (5.0, 6.0)
    assert [r.nodeid for r in recorder.results(output=False)] == [r.nodeid for r in results]
    assert all(r.stdout == "" for r in recorder.results(output=False))
    # The summary counted from the spool agrees with one computed from the results.
    expected = summarize(results, wall_seconds=1.0, mode="sequential", max_retries=1)
    got = recorder.summary()
    for key in ("total_commands", "successful", "failed", "success_rate", "flaky", "reruns", "skipped",
                "not_run", "avg_command_duration_ms", "max_command_duration_ms"):
        assert got[key] == expected[key], key
    assert (got["total_commands"], got["failed"], got["not_run"], got["reruns"]) == (4, 1, 1, 1)
    # Job log numbers: positions in results order, a late command gets the next one.
    assert [recorder.seq(n) for n in ("b.batch::two", "a.batch::one")] == [4, 1]
    assert recorder.seq("c.batch::late") == 5
    # The late one has no file yet: two batch files.
    assert len(recorder) == 5 and "c.batch::late" in recorder and "c.batch::other" not in recorder
    assert recorder.files() == 2 and recorder.info("a.batch::one").attempts == 1
    assert [r.nodeid for r in recorder.failed()] == ["a.batch::one"]
    recorder.close()


def test_the_recorder_holds_no_output_in_memory() -> None:
    output = "x" * 20_000
    recorder = Recorder()
    tracemalloc.start()
    try:
        for line in range(1, 2001):  # 2,000 commands, 80 MB of output in all
            nodeid = f"big.batch::command {line}"
            recorder.expect(nodeid, nodeid, "big.batch", line)
            recorder.start(nodeid)
            recorder.attempt(record(nodeid, line, output=output), "passed")
            recorder.outcome(nodeid, "passed")
        held, _peak = tracemalloc.get_traced_memory()
        # Reading it all back holds one command at a time.
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        count = sum(len(r.stdout) for r in recorder.results())
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        recorder.close()
    assert count == 2000 * len(output)
    assert held < 2_000_000, held  # 40 MB of stdout was recorded
    assert read_peak - base < 1_000_000, read_peak - base


def spooled(count: int, output: str, *, fail_every: int, workers: tuple[str, ...] = ("gw0", "gw1")) -> Recorder:
    """A recorder holding *count* commands, one attempt each, spread over *workers* one after the other."""
    recorder = Recorder(workers=len(workers))
    recorder.started = 1.7e9
    for line in range(1, count + 1):
        nodeid = f"big.batch::command {line}"
        ok = line % fail_every != 0
        attempt = record(nodeid, line, success=ok, output=output, duration_ms=1.0 + line % 7)
        attempt["worker"] = workers[line % len(workers)]
        attempt["started"] = 1.7e9 + line * 0.01
        recorder.expect(nodeid, nodeid, "big.batch", line)
        recorder.start(nodeid)
        recorder.attempt(attempt, "passed" if ok else "failed")
        recorder.outcome(nodeid, "passed" if ok else "failed", "" if ok else "boom")
    recorder.finished = 1.7e9 + count * 0.01 + 1
    return recorder


def test_html_trace_and_markdown_are_written_holding_no_output(tmp_path: Path) -> None:
    output = "line of output\n" * 1_000  # 15 KB per stream
    recorder = spooled(3_000, output, fail_every=100)  # 90 MB of output, 30 failed commands
    reports = [HtmlReport(tmp_path / "run.html"), TraceReport(tmp_path / "trace.json"),
               MarkdownReport(tmp_path / "summary.md")]
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for report in reports:
            report.finish(recorder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        recorder.close()
    # A handful of commands' output at a time (the slowest few, the one being read), never
    # the run's, nor the files': 90 MB of output went through, 1.5 MB of files came out
    # (about 0.4 MB is held; building the reports in memory held 98 MB).
    assert peak - base < 1_500_000, peak - base
    events = [e for e in json.loads((tmp_path / "trace.json").read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(events) == 3_000 and sum(e["cat"] == "failed" for e in events) == 30
    page = (tmp_path / "run.html").read_text()
    assert page.count('class="bar"') == 3_000 and page.endswith("</body></html>\n")
    assert "Failed commands (30)" in page and page.count("<details open>") == 30
    markdown = (tmp_path / "summary.md").read_text()
    assert "#### Failed commands (30)" in markdown and "| `big.batch:3000` |" in markdown


def test_the_html_chart_draws_the_failed_and_slowest_bars_above_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_report, "MAX_BARS", 40)
    recorder = spooled(300, "", fail_every=25)  # 12 failed
    try:
        HtmlReport(tmp_path / "run.html").finish(recorder)
        TraceReport(tmp_path / "trace.json").finish(recorder)
    finally:
        recorder.close()
    page = (tmp_path / "run.html").read_text()
    bars = re.findall(r'<rect class="bar"[^>]*data-outcome="([^"]+)" data-where="big.batch:(\d+)"', page)
    assert len(bars) == 40
    failed = {int(line) for outcome, line in bars if outcome == "failed"}
    assert failed == set(range(25, 301, 25))
    # The rest are the slowest that passed: 7 ms, the longest (line % 7 == 6).
    assert all(int(line) % 7 == 6 for outcome, line in bars if outcome == "passed")
    assert "300 attempts: the chart draws 40 of them" in page
    # The trace keeps every attempt, and lanes are still every worker's.
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == 300
    assert re.findall(r'<text x="4" y="\d+">([^<]+)</text>', page) == ["gw0", "gw1"]
    # Under the bound, every bar and no note.
    monkeypatch.setattr(html_report, "MAX_BARS", 300)
    recorder = spooled(300, "", fail_every=25)
    try:
        HtmlReport(tmp_path / "all.html").finish(recorder)
    finally:
        recorder.close()
    page = (tmp_path / "all.html").read_text()
    assert page.count('class="bar"') == 300 and "the chart draws" not in page


def test_json_is_written_as_it_streams_with_the_same_bytes() -> None:
    results = [
        CommandResult("echo 'a\nb' \u00fc\x00", True, 0, "x\ny\udc80", "", 1.5, None,
                      attempt_log=[{"attempt": 1, "leftovers": ["p"]}], leftovers=["p"]),
        CommandResult("c", False, None, "", "", 0, None, status="not run"),
    ]
    summary = {"total_commands": 2, "mode": "sequential"}
    for chosen in (results, results[:1], []):
        streamed = b"".join(json_chunks(summary, iter(chosen)))
        assert streamed == encode_json(json_document(summary, chosen))
        assert len(json.loads(streamed)["results"]) == len(chosen)


CHECK_COPIES = r'''
import pytest

@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    reports = [r for key in stats for r in stats[key] if hasattr(r, "when")]
    print("CARRY batch", sum(1 for r in reports if hasattr(r, "batch")))
    print("UNREAD", len(stats.get("", [])))
    print("PASSED", len(stats.get("passed", [])), "DISTINCT", len({id(r) for r in stats.get("passed", [])}))

def pytest_sessionfinish(session):
    held = [item for item in session.items if getattr(item, "last_attempt", None) is not None]
    print("ITEMS HOLDING AN ATTEMPT", len(held))
'''


@pytest.mark.parametrize("report_chars", ["", "-rA"])
def test_pytests_copies_of_passed_reports_carry_no_output(
    pytester: pytest.Pytester, run, mode: str, report_chars: str
) -> None:
    pytester.makeconftest(CHECK_COPIES)
    lines = [f"yes line-{n} | head -c 20000" for n in range(12)] + ["echo oops; exit 3"]
    (pytester.path / "cmds.batch").write_text("\n".join(lines) + "\n")
    args = ["cmds.batch", "-s", "--batch-json", "out.json", "--junitxml", "junit.xml", "-o", "junit_logging=all"]
    result = run(*args, *([report_chars] if report_chars else []))
    assert result.ret == 1
    out = result.stdout.str()
    assert "CARRY batch 0" in out
    if mode == "inprocess":
        assert "ITEMS HOLDING AN ATTEMPT 0" in out
        assert "UNREAD 0" in out
        # Counted once each; kept whole only when -rA asks for passed reports.
        assert ("PASSED 12 DISTINCT 12" if report_chars else "PASSED 12 DISTINCT 1") in out
    result.stdout.fnmatch_lines(["*Total Commands: 13 | Successful: 12 | Failed: 1*", "*12 passed*"])
    # Every report still has every command's output, read back from the spool.
    data = json.loads((pytester.path / "out.json").read_bytes().decode("utf-8"))
    assert [len(r["stdout"]) for r in data["results"]] == [20000] * 12 + [5]
    assert data["results"][12]["stdout"] == "oops\n"
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert (suite.get("tests"), suite.get("failures"), len(cases)) == ("13", "1", 13)
    assert [c.get("name") for c in cases][:2] == ["yes line-0 | head -c 20000", "yes line-1 | head -c 20000"]
    assert all(c.find("system-out") is not None for c in cases)


def test_junit_keeps_python_tests_in_place_around_the_commands(pytester: pytest.Pytester, run) -> None:
    # pytest's own testcases for commands are let go of as they finish; ours
    # still go where the first of them was, between the Python tests.
    pytester.makepyfile(test_a="def test_before(): pass\n")
    pytester.makepyfile(test_z="def test_after(): pass\n")
    (pytester.path / "test_m.batch").write_text("echo one\necho two\nexit 4\n")
    result = run("--junitxml", "junit.xml", "-p", "no:randomly")
    assert result.ret == 1
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    names = [c.get("name") for c in suite.findall("testcase")]
    assert sorted(names) == sorted(["test_before", "echo one", "echo two", "exit 4", "test_after"])
    assert names.index("echo one") < names.index("echo two") < names.index("exit 4")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "1", "0")


def test_a_spool_per_run_of_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchrunner import BatchRunner

    monkeypatch.chdir(tmp_path)
    before = deleted_spool_files() if os.path.isdir("/proc/self/fd") else []
    for _ in range(2):
        results, summary = BatchRunner(["echo a", "echo b"], verbose=False).run()
        assert [r.stdout for r in results] == ["a\n", "b\n"] and summary["successful"] == 2
    if os.path.isdir("/proc/self/fd"):
        assert deleted_spool_files() == before


@pytest.mark.parametrize("value", [
    {"a": "é\u2028\x00\"\\ ünï\ud800", "b": [1, 2.5, -0.0, 1e300, -1e-300],
     "c": {"x": [{"y": []}, {}], "t": (True, False, None)}, "n": 10**30},
    [], {}, "text", 1.5, None,
])
def test_the_fast_indented_writer_writes_what_json_writes(value) -> None:
    """The results are written with a faster encoder of our own: the same text as ``json.dumps(indent=2)``."""
    from pytest_batchrunner.reports.json import _indented

    expected = "\n    ".join(json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False).split("\n"))
    assert _indented(value, "    ") == expected


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_no_writer_writes_nan_or_infinity(number: float) -> None:
    """NaN and Infinity are no JSON: refused, as ``json.dumps(allow_nan=False)`` refuses them."""
    from pytest_batchrunner.reports.json import _indented

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json.dumps({"d": [number]}, allow_nan=False)
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _indented({"d": [number]}, "")


def test_what_the_fast_writer_does_not_know_falls_back_to_json() -> None:
    from pytest_batchrunner.reports.json import _indented

    with pytest.raises(TypeError):
        _indented({1: "int key"}, "")
    with pytest.raises(TypeError):
        _indented({"set": {1}}, "")


def test_runs_of_one_item_are_commands_of_their_own() -> None:
    # What the controller tells the recorder when the same item runs more than once: the runs of
    # two workers interleave, a teardown fails after its call's outcome, a worker dies before a
    # rerun that another worker runs, and the run is stopped with one attempt just started.
    recorder = Recorder()
    a, b, c = "a.batch::x", "a.batch::y", "a.batch::z"
    for nodeid, line in ((a, 1), (a, 1), (b, 2), (c, 3), (c, 3)):
        recorder.expect(nodeid, nodeid.split("::")[1], "a.batch", line)
    assert len(recorder) == 5
    for worker in ("gw0", "gw1"):
        recorder.start(a)
        recorder.begin(a, worker)
    recorder.attempt({**record(a, 1, success=False), "worker": "gw0"}, "rerun", "gw0")
    recorder.attempt({**record(a, 1), "worker": "gw1"}, "passed", "gw1")
    recorder.outcome(a, "passed", worker="gw1")
    recorder.outcome(a, "failed", "teardown failed", worker="gw1")  # the same run
    recorder.start(a)
    recorder.begin(a, "gw0")  # gw0's rerun
    recorder.attempt({**record(a, 1, attempt=2), "worker": "gw0"}, "passed", "gw0")
    recorder.outcome(a, "passed", worker="gw0")
    recorder.start(b)
    recorder.begin(b, "gw0")
    recorder.attempt({**record(b, 2, success=False), "worker": "gw0"}, "rerun", "gw0")
    recorder.lost(b, "gw0")  # gw0 died: gw2 runs the rerun
    recorder.start(b)
    recorder.begin(b, "gw2")
    recorder.attempt({**record(b, 2), "worker": "gw2"}, "passed", "gw2")
    recorder.outcome(b, "passed", worker="gw2")
    recorder.start(c)  # stopped before any report of it
    recorder.interrupted = True
    runs = [(r.nodeid, r.run, r.status, r.attempts, r.flaky) for r in recorder.results()]
    assert runs == [(a, 1, "passed", 2, True), (a, 2, "failed", 1, False), (b, 1, "passed", 2, True),
                    (c, 1, "interrupted", 0, False), (c, 2, "not run", 0, False)]
    summary = recorder.summary()
    assert (summary["total_commands"], summary["successful"], summary["failed"], summary["flaky"],
            summary["reruns"], summary["not_run"]) == (5, 2, 2, 2, 2, 1)
    recorder.close()


@pytest.mark.parametrize("worker", ["main", "gw3"])
def test_audit_log_of_an_item_run_twice_in_this_process(monkeypatch: pytest.MonkeyPatch, worker: str) -> None:
    # In-process (worker "main"), or nested in a test of an xdist worker (the Python API under -n):
    # each run of the item gets its Executing line once, whether the command's start or its report comes first.
    import io

    from pytest_batchrunner.reports.auditlog import AuditLog

    if worker == "main":
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    recorder = Recorder()
    stream = io.StringIO()
    recorder.listeners.append(AuditLog(None, recorder, stream=stream))
    nodeid = "a.batch::x"
    recorder.expect(nodeid, "x", "a.batch", 1)
    recorder.expect(nodeid, "x", "a.batch", 1)
    for success in (False, True):
        recorder.start(nodeid)
        recorder.listeners[0].on_command_start(nodeid, 1, 1, 1.7e9)
        recorder.begin(nodeid, worker)
        recorder.attempt({**record(nodeid, 1, success=success), "worker": worker}, "passed" if success else "failed",
                         worker)
        recorder.outcome(nodeid, "passed" if success else "failed", worker=worker)
    told = [line for line in stream.getvalue().splitlines() if "Starting command" in line or "Executing" in line]
    assert [line.rpartition("] ")[2] if "Executing" in line else line for line in told] == [
        "[1/2] Starting command...", "Executing: x (attempt 1/1)",
        "[2/2] Starting command...", "Executing: x (attempt 1/1)",
    ]
    assert [(r.run, r.status) for r in recorder.results()] == [(1, "failed"), (2, "passed")]
    recorder.close()


# -- a full $TMPDIR ------------------------------------------------------------------------------

KEPT = 300_000  # bytes each command prints (all kept): twelve of them overflow a 1 MiB $TMPDIR
# The last one also fills what is left of $TMPDIR, for the reports written after it.
FULL_TMPDIR_BATCH = "".join(f"head -c {KEPT} /dev/zero | tr '\\0' {c}\n" for c in "abcdefghijk") \
    + f"head -c {KEPT} /dev/zero | tr '\\0' z; head -c 2000000 /dev/zero > \"$TMPDIR/filler\" 2>/dev/null; exit 3\n"
REPORTS = ("--batch-json", "out.json", "--junitxml", "out.xml", "--batch-html", "out.html", "--batch-trace", "out.trace",
           "--batch-markdown", "out.md", "--batch-log", "out.log", "--batch-joblog", "out.joblog")


def test_a_full_tmpdir_loses_no_report(pytester: pytest.Pytester, run, mount, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool overflows a small real tmpfs as $TMPDIR: the run goes on in memory, every report complete."""
    tmp = pytester.path / "small-tmp"
    tmp.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    pytester.makefile(".batch", cmds=FULL_TMPDIR_BATCH)
    result = run(*REPORTS, "-rf", "-o", "junit_logging=all")
    result.assert_outcomes(passed=11, failed=1)
    assert os.statvfs(tmp).f_bavail == 0  # still full
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    # One warning says the spool moved to memory (the scenario happened).
    assert len(re.findall(r"PytestWarning: the results spool could not be written in the temporary folder", out)) == 1, out
    result.stdout.fnmatch_lines(["Total Commands: 12 | Successful: 11 | Failed: 1 *"])
    results = json.loads((pytester.path / "out.json").read_text())["results"]
    assert [(r["line"], r["status"], r["stdout"]) for r in results] == [
        (line, "passed" if c != "z" else "failed", c * KEPT) for line, c in enumerate("abcdefghijkz", 1)
    ]
    cases = ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
    failed = [case for case in cases if case.find("failure") is not None]
    assert len(list(ET.parse(pytester.path / "out.xml").getroot().iter("testcase"))) == 12
    assert len(failed) == 1 and "z" * 1000 in ET.tostring(failed[0], encoding="unicode")
    page = (pytester.path / "out.html").read_text()
    assert page.endswith("</html>\n") and "Failed commands (1)" in page and "z" * 1000 in page
    assert len(json.loads((pytester.path / "out.trace").read_text())["traceEvents"]) >= 12
    assert "cmds.batch:12" in (pytester.path / "out.md").read_text()
    assert len((pytester.path / "out.joblog").read_text().splitlines()) == 13  # a header and a line per command
    log = (pytester.path / "out.log").read_text()
    assert "Total Commands: 12" in log and "Failed: 1" in log and "tr '\\0' z" in log.split("Failed commands:")[1]


def test_a_spool_that_cannot_be_made_starts_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # mkstemp fails: no such folder
    recorder = Recorder()
    recorder.attempt(record("a.batch::x", 1, output="out"), "passed")
    recorder.outcome("a.batch::x", "passed")
    assert [r.stdout for r in recorder.results()] == ["out"]
    assert "the results spool could not be written" in (recorder.spool_problem or "")
    recorder.close()


MANY_ATTEMPTS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_spool import record
from pytest_batchrunner.reports.html import HtmlReport
from pytest_batchrunner.reports.results import Recorder
from pytest_batchrunner.reports.trace import TraceReport

recorder = Recorder()
for line in range(1, 25_001):
    recorder.attempt(record(f"a.batch::x{line}", line, output="o" * 50), "passed")
    recorder.outcome(f"a.batch::x{line}", "passed")
recorder.seq("a.batch::x1")
HtmlReport("out.html").finish(recorder)
TraceReport("out.trace").finish(recorder)
print(json.dumps([recorder.spool_problem, recorder.summary()["successful"], recorder.files()]))
"""


def test_the_timeline_of_a_large_run_with_a_full_tmpdir(tmp_path: Path, mount, monkeypatch: pytest.MonkeyPatch) -> None:
    """25,000 attempts overflow a 1 MiB $TMPDIR: the spool, and the HTML and trace reports' timeline, go on in memory."""
    tmp = tmp_path / "small-tmp"
    tmp.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))  # SQLite reads it once per process: a new process
    result = subprocess.run([sys.executable, "-c", MANY_ATTEMPTS, str(Path(__file__).parent)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    problem, successful, files = json.loads(result.stdout)
    assert "the results spool could not be written" in problem and successful == 25_000 and files == 1
    assert (tmp_path / "out.html").read_text().endswith("</html>\n")
    assert len([e for e in json.loads((tmp_path / "out.trace").read_text())["traceEvents"] if e["ph"] == "X"]) == 25_000
