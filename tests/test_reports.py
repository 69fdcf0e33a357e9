"""The report files: JUnit XML (through pytest's ``--junitxml``), JSON results, audit log, job log.

Real batch files and real processes, in-process and under ``-n 2`` (the ``run``
fixture of tests/conftest.py, which also fails a test that leaves a process
behind). Every JUnit file is read with a strict XML parser (expat), validated
against the xunit2 schema pytest's own tests use, and read by a consumer
library (junitparser); the JSON is decoded as strict UTF-8; and the four
reports are checked against each other and against the terminal summary.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from original_lines import LogEntry, parse_log
from test_signals import stopped_run

junitparser_xunit2 = pytest.importorskip("junitparser.xunit2")
xmlschema = pytest.importorskip("xmlschema")

SCHEMA = Path(__file__).parent / "schemas" / "junit-10.xsd"
FAST = ("--timeout", "1", "--batch-kill-grace", "0.2")
REPORTS = (
    "--junitxml", "out/junit.xml",
    "--batch-json", "out/results.json",
    "--batch-log", "out/audit.log",
    "--batch-joblog", "out/jobs.tsv",
    "-o", "junit_logging=all",
)
JOBLOG_HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
# Keys the JSON summary adds to the one the terminal and the audit log show.
RUN_KEYS = ("batchrunner_version", "started", "finished")


def write(pytester: pytest.Pytester, text: str, name: str = "cmds.batch") -> Path:
    path = pytester.path / name
    path.write_bytes(text.encode())
    return path


@functools.cache
def junit_schema() -> Any:
    return xmlschema.XMLSchema(str(SCHEMA))


@dataclass
class Reports:
    """The four report files of a run, parsed."""

    junit: ET.Element
    junit_path: Path
    json: dict[str, Any]
    log: list[LogEntry]
    joblog: list[list[str]]

    def testcases(self, classname: str = "cmds.batch") -> list[ET.Element]:
        """The batch testcases in file order (an item run twice has two)."""
        return [c for c in self.junit.iter("testcase") if c.get("classname") == classname]

    def cases(self, classname: str = "cmds.batch") -> dict[str, ET.Element]:
        """The batch testcases by name (failing if a name occurs twice)."""
        found = self.testcases(classname)
        names = [c.get("name") for c in found]
        assert len(names) == len(set(names)), f"a command has more than one testcase: {names}"
        return {c.get("name"): c for c in found}

    def result(self, command: str) -> dict[str, Any]:
        (match,) = [r for r in self.json["results"] if r["command"] == command]
        return match

    def events(self, start: str, level: str | None = None) -> list[str]:
        """The log's messages that start with *start* (at *level*)."""
        return [e.message for e in self.log if e.message.startswith(start) and level in (None, e.level)]


def read_reports(directory: Path, *, xsd: bool = True) -> Reports:
    """Read and check the files a run wrote to ``directory/out``."""
    out = directory / "out"
    junit_path = out / "junit.xml"
    data = junit_path.read_bytes()
    root = ET.fromstring(data)  # expat: any ill-formed byte is an error
    if xsd:
        junit_schema().validate(str(junit_path))
    text = (out / "results.json").read_bytes().decode("utf-8")  # strict: invalid UTF-8 is an error
    document = json.loads(text)
    log = parse_log((out / "audit.log").read_text("utf-8"))
    rows = (out / "jobs.tsv").read_text("utf-8").splitlines()
    assert rows[0] == JOBLOG_HEADER
    joblog = [row.split("\t") for row in rows[1:]]
    assert all(len(row) == 9 for row in joblog), joblog
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"
    return Reports(root, junit_path, document, log, joblog)


SUMMARY_LINE = re.compile(
    r"Total Commands: (?P<total_commands>\d+) \| Successful: (?P<successful>\d+) \| "
    r"Failed: (?P<failed>\d+)(?: \(of them timed out: (?P<timed_out>\d+)\))? \| "
    r"Flaky: (?P<flaky>\d+) \| Reruns: (?P<reruns>\d+)"
)


def terminal_summary(text: str) -> dict[str, Any]:
    """The numbers of the BatchRunner summary in the terminal report."""
    match = SUMMARY_LINE.search(text)
    assert match, text
    numbers = {k: int(v or 0) for k, v in match.groupdict().items()}
    rate = re.search(r"Success Rate: ([\d.]+)%", text)
    assert rate, text
    numbers["success_rate"] = float(rate.group(1))
    return numbers


def log_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def assert_reports_agree(terminal: dict[str, Any], reports: Reports) -> None:
    """The terminal summary, the JSON, the JUnit file, the audit log and the job log tell the same story."""
    summary, results = reports.json["summary"], reports.json["results"]
    from pytest_batchrunner.reports.summary import format_rate

    for key, value in terminal.items():
        if key == "success_rate":  # the JSON's is exact, the terminal shows it rounded, truthfully
            assert format_rate(summary[key], summary["successful"], summary["failed"]) == f"{value}", summary[key]
            continue
        assert summary[key] == value, (key, summary[key], value)
    assert len(results) == summary["total_commands"]

    cases = reports.testcases()
    assert len(cases) == summary["total_commands"]
    failed = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(failed) == summary["failed"]
    assert len(skipped) == summary["skipped"] + summary["not_run"]
    assert len(cases) - len(failed) - len(skipped) == summary["successful"]
    assert len([c for c in cases if c.find("flakyFailure") is not None]) == summary["flaky"]
    assert not [c for c in cases if c.find("error") is not None]
    if not summary["interrupted"]:
        earlier = sum(len(c.findall("flakyFailure")) + len(c.findall("rerunFailure")) for c in cases)
        assert earlier == summary["reruns"]

    (last,) = reports.events("SUMMARY ")[-1:]
    pairs = dict(pair.split("=", 1) for pair in last.split(" ")[1:])
    assert pairs == {k: log_value(v) for k, v in summary.items() if k not in RUN_KEYS}
    attempts = sum(r["attempts"] for r in results)
    ended = reports.events("[OK] Command completed") + reports.events("[X] Command failed (")
    assert len(ended + reports.events("[X] Command timed out")) == attempts
    assert len(reports.events("Executing: ")) >= attempts  # a command interrupted mid-attempt has no end
    if not summary["interrupted"]:
        assert len(reports.events("Executing: ")) == attempts
        assert len(reports.events("Retrying in ")) == summary["reruns"]

    assert len(reports.joblog) == attempts
    by_seq: dict[str, list[list[str]]] = {}
    for row in reports.joblog:
        by_seq.setdefault(row[0], []).append(row)
    assert all(len({row[8] for row in rows}) == 1 for rows in by_seq.values())  # a Seq is one command's
    places = [(r["file"], r["line"]) for r in results]
    if len(set(places)) < len(places):
        # A line run twice (--keep-duplicates): a run first heard of once numbering began takes the next
        # free Seq as it starts, so Seqs follow starts there, not results order.
        assert sorted((rows[0][8], len(rows)) for rows in by_seq.values()) == sorted(
            (r["command"].replace("\n", "\\n"), r["attempts"]) for r in results if r["attempts"])
        return
    for seq, result in enumerate(results, 1):
        rows = by_seq.get(str(seq), [])
        assert len(rows) == result["attempts"], (seq, result["command"])
        if rows:
            last_row = max(rows, key=lambda row: float(row[2]))
            assert last_row[8] == result["command"].replace("\n", "\\n")
            if result["exit_code"] is not None and not result["timed_out"]:
                assert last_row[6] == str(result["exit_code"])


# -- the whole story: passing, failing, flaky, timed out, hostile output ------------------

MIXED = (
    "echo hello\n"
    "printf 'oops\\000\\033[1m\\377]]>&<\\n' >&2; exit 3\n"
    "test -f flag || { touch flag; echo first try; exit 1; }\n"
    "sleep 30\n"
    "printf 'nul:\\000 esc:\\033[31m ff:\\377 cdata:]]> amp:&\\n'\n"
    "echo '[x]' ':: y' \U0001F600\n"
)
PYTHON_TESTS = "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 0\n"


def test_reports_of_a_mixed_run_validate_and_agree(pytester: pytest.Pytester, run) -> None:
    write(pytester, MIXED)
    pytester.makepyfile(test_py=PYTHON_TESTS)
    result = run(*REPORTS, "--reruns", "1", *FAST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 6, "successful": 4, "failed": 2, "timed_out": 1,
                        "flaky": 1, "reruns": 3, "success_rate": 66.7}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)

    cases = reports.cases()
    hello = cases["echo hello"]
    assert [child.tag for child in hello] == ["system-out"]
    assert hello.find("system-out").text == "hello\n"

    # Testcases are named by the item's id, where "[" and "]" show as "(" and ")".
    failing = cases["printf 'oops\\000\\033(1m\\377))>&<\\n' >&2; exit 3"]
    failure = failing.find("failure")
    assert (failure.get("type"), failure.get("message")) == ("exit code", "exit code 3")
    assert "attempt 2 of 2" in failure.text
    (rerun,) = failing.findall("rerunFailure")
    assert (rerun.get("type"), rerun.get("message")) == ("exit code", "exit code 3 (attempt 1)")
    assert "attempt 1 of 2" in rerun.find("stackTrace").text
    hostile_err = "oops#x00#x1B[1m\ufffd]]>&<\n"
    assert rerun.find("system-err").text == hostile_err
    assert failing.find("system-err").text == hostile_err
    assert failing.find("flakyFailure") is None

    flaky = cases["test -f flag || { touch flag; echo first try; exit 1; }"]
    assert flaky.find("failure") is None and flaky.find("rerunFailure") is None
    (first,) = flaky.findall("flakyFailure")
    assert first.get("message") == "exit code 1 (attempt 1)"
    assert first.find("system-out").text == "first try\n"

    slow = cases["sleep 30"]
    timeout = slow.find("failure")
    assert (timeout.get("type"), timeout.get("message")) == ("timeout", "timed out after 1 s")
    assert [r.get("message") for r in slow.findall("rerunFailure")] == ["timed out after 1 s (attempt 1)"]

    hostile = cases["printf 'nul:\\000 esc:\\033(31m ff:\\377 cdata:))> amp:&\\n'"]
    assert hostile.find("system-out").text == "nul:#x00 esc:#x1B[31m ff:\ufffd cdata:]]> amp:&\n"
    assert b"\x00" not in reports.junit_path.read_bytes()

    # pytest names this one differently (it escapes the emoji): still a single testcase.
    assert "echo '(x)' ': : y' \U0001F600" in cases

    # Python tests: as pytest wrote them (with --reruns, test_bad twice), counted as pytest counts.
    python = [c for c in reports.junit.iter("testcase") if c.get("classname") == "test_py"]
    assert [c.get("name") for c in python].count("test_ok") == 1
    assert [c.find("failure") is not None for c in python if c.get("name") == "test_bad"][-1]
    (suite,) = reports.junit.iter("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("8", "3", "0", "0")

    # A consumer library reads the same.
    xml = junitparser_xunit2.JUnitXml.fromfile(str(reports.junit_path))
    (parsed,) = list(xml)
    assert (parsed.tests, parsed.failures, parsed.errors, parsed.skipped) == (8, 3, 0, 0)
    by_name = {case.name: case for case in parsed if case.classname == "cmds.batch"}
    assert by_name["sleep 30"].is_rerun and not by_name["sleep 30"].is_flaky
    assert by_name["test -f flag || { touch flag; echo first try; exit 1; }"].is_flaky
    assert by_name["echo hello"].is_passed and by_name["echo hello"].system_out == "hello\n"
    assert [type(r).__name__ for r in by_name["sleep 30"].result] == ["Failure"]
    assert by_name["sleep 30"].rerun_failures()[0].message == "timed out after 1 s (attempt 1)"

    # The JSON holds the full story of each command.
    flaky_result = reports.result("test -f flag || { touch flag; echo first try; exit 1; }")
    assert (flaky_result["success"], flaky_result["attempts"], flaky_result["flaky"]) == (True, 2, True)
    timed_out = reports.result("sleep 30")
    assert (timed_out["success"], timed_out["timed_out"], timed_out["exit_code"]) == (False, True, -1)
    assert timed_out["stderr"].endswith("Command timed out after 1 seconds\n")  # the original's words


def test_python_tests_keep_pytests_junit_output(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pytester.makepyfile(test_py=PYTHON_TESTS + "\n\nimport pytest\n\n\n@pytest.mark.skip\ndef test_skip():\n    pass\n")
    common = ("--reruns", "1", "--junitprefix", "ci", "-p", "no:cacheprovider", *FAST)
    alone = pytester.runpytest_subprocess("test_py.py", "--junitxml", "alone.xml", *common)
    assert alone.ret == pytest.ExitCode.TESTS_FAILED
    write(pytester, "echo hi\ntest -f flag || { touch flag; exit 1; }\nfalse\n"
                    "true # batch: skip='not today'\nfalse # batch: xfail=known\n")
    both = pytester.runpytest_subprocess("test_py.py", "cmds.batch", "--junitxml", "both.xml", *common)
    assert both.ret == pytest.ExitCode.TESTS_FAILED
    junit_schema().validate(str(pytester.path / "both.xml"))
    (before,) = ET.parse(pytester.path / "alone.xml").getroot().iter("testsuite")
    (after,) = ET.parse(pytester.path / "both.xml").getroot().iter("testsuite")

    def python_cases(suite: ET.Element) -> list[str]:
        cases = [c for c in suite.iter("testcase") if c.get("classname") == "ci.test_py"]
        for case in cases:
            case.attrib.pop("time")
        return [ET.tostring(c, encoding="unicode") for c in cases]

    assert python_cases(after) == python_cases(before)
    batch = {c.get("name"): c for c in after.iter("testcase") if c.get("classname") == "ci.cmds.batch"}
    assert sorted(batch) == ["echo hi", "false", "false (2)", "test -f flag || { touch flag; exit 1; }", "true"]
    assert batch["true"].find("skipped").attrib == {"type": "pytest.skip", "message": "not today"}
    assert batch["false (2)"].find("skipped").attrib == {"type": "pytest.xfail", "message": "known"}
    # Batch: 5 tests, 1 failure, 2 skipped; the Python tests keep pytest's own counts.
    for name, batch_count in (("tests", 5), ("failures", 1), ("errors", 0), ("skipped", 2)):
        assert int(after.get(name)) == int(before.get(name)) + batch_count, name


def test_junit_ini_settings_are_honoured(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "echo hi\n\necho oops; false\n")
    result = pytester.runpytest_subprocess(
        "cmds.batch", "--junitxml", "j.xml", "-o", "junit_family=xunit1", "-o", "junit_log_passing_tests=false", "-o", "junit_logging=all",
        "-o", "junit_suite_name=batches", "-p", "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    root = ET.parse(pytester.path / "j.xml").getroot()
    (suite,) = root.iter("testsuite")
    assert suite.get("name") == "batches"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    # xunit1, as pytest's own: the file and the 0-based line.
    assert (cases["echo hi"].get("file"), cases["echo hi"].get("line")) == ("cmds.batch", "0")
    assert cases["echo oops; false"].get("line") == "2"
    # Passing output is left out; failing output is kept.
    assert cases["echo hi"].find("system-out") is None
    assert cases["echo oops; false"].find("system-out").text == "oops\n"


def test_canary_pytest_junitxml_takes_its_path_from_the_option_at_configure(pytester: pytest.Pytester) -> None:
    """Canary (docs/internals.md): pytest's junitxml reads ``config.option.xmlpath`` (``--junitxml``'s dest) in its
    ``pytest_configure``, after the plugin's, and keeps it in ``LogXML.logfile``: JUnitReport points the option at
    its spool, and sets ``logfile`` back to the report path for pytest's "generated xml file" line."""
    write(pytester, "true\n")
    config = pytester.parseconfigure("cmds.batch", "--junitxml", "j.xml")
    logfiles = [p.logfile for p in config.pluginmanager.get_plugins() if isinstance(getattr(p, "logfile", None), str)]
    assert len(logfiles) == 1 and os.path.basename(logfiles[0]).startswith(".batchrunner-junit-"), (
        "pytest's junitxml no longer takes its path from config.option.xmlpath at its pytest_configure "
        f"(or no longer keeps it in LogXML.logfile): {logfiles}"
    )
    assert config.option.xmlpath == logfiles[0]

    def spools() -> set[str]:
        return {p.name for p in pytester.path.iterdir() if p.name.startswith(".batchrunner-junit-")}

    before = spools()  # the configured config's, until the test ends
    result = pytester.runpytest_subprocess("cmds.batch", "--junitxml", "j.xml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*generated xml file: {pytester.path / 'j.xml'}*"])
    assert spools() == before


def test_canary_pytest_junitxml_keeps_its_testcases_in_a_list_the_plugin_trims(pytester: pytest.Pytester) -> None:
    """Canary (docs/internals.md): pytest's junitxml keeps every testcase it built in ``LogXML.node_reporters_ordered``
    to the session's end; JUnitReport lets go of the commands' (all but the first) as they end, which keeps memory flat."""
    pytester.makeconftest("""
import json
def pytest_sessionfinish(session):
    lists = [p.node_reporters_ordered for p in session.config.pluginmanager.get_plugins()
             if isinstance(getattr(p, "node_reporters_ordered", None), list)]
    with open("kept.json", "w") as f:
        json.dump([len(x) for x in lists], f)
""")
    write(pytester, "true\n" * 50)
    result = pytester.runpytest_subprocess("cmds.batch", "--junitxml", "j.xml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    kept = json.loads((pytester.path / "kept.json").read_text())
    assert kept == [1], f"pytest's junitxml no longer keeps its testcases in LogXML.node_reporters_ordered: {kept}"
    assert len(ET.parse(pytester.path / "j.xml").getroot().findall(".//testcase")) == 50


def test_canary_pytest_junitxml_names_testcases_as_the_rewrite_finds_them(pytester: pytest.Pytester) -> None:
    """Canary (docs/internals.md): the rewrite finds pytest's testcases for commands by pytest's classname rule
    (``_pytest.junitxml.mangle_test_address``, copied in ``reports/junit.py``): one testcase per command is left."""
    from _pytest.junitxml import mangle_test_address

    from pytest_batchrunner.reports.junit import _mangle

    for nodeid in ("sub/dir/cmds.batch::echo [x]", "a.py.batch::f::g", "t/test_x.py::test_p[a::b/c.py]"):
        assert _mangle(nodeid) == list(mangle_test_address(nodeid)), f"mangle_test_address changed for {nodeid!r}"
    (pytester.path / "sub" / "dir").mkdir(parents=True)
    (pytester.path / "sub" / "dir" / "cmds.batch").write_text("echo [x]\ntrue\n")
    result = pytester.runpytest_subprocess("sub/dir/cmds.batch", "--junitxml", "j.xml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    cases = [(c.get("classname"), c.get("name")) for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")]
    assert cases == [("sub.dir.cmds.batch", "echo (x)"), ("sub.dir.cmds.batch", "true")], (
        f"pytest's junitxml names testcases otherwise (mangle_test_address): its own were left in: {cases}"
    )


def test_junit_when_the_command_succeeds_but_its_test_fails(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pytester.makeconftest(
        "import pytest\n\n\n@pytest.hookimpl(wrapper=True)\ndef pytest_runtest_teardown(item):\n"
        "    yield\n    if 'teardown' in item.name:\n        raise RuntimeError('teardown broke')\n"
    )
    write(pytester, "echo teardown\ntrue # batch: xfail=known\necho fine\n")
    result = pytester.runpytest_subprocess("cmds.batch", *REPORTS, "-o", "xfail_strict=true", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal_summary(result.stdout.str()), reports)
    cases = reports.cases()
    teardown, strict = cases["echo teardown"].find("failure"), cases["true"].find("failure")
    assert teardown.get("type") == strict.get("type") == "error"
    assert teardown.get("message") == "the command succeeded (exit code 0) but its test failed: teardown failed"
    assert strict.get("message").startswith("the command succeeded (exit code 0) but its test failed")
    (suite,) = reports.junit.iter("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")


# -- JSON results ---------------------------------------------------------------------------

ORIGINAL_SUMMARY_KEYS = [
    "total_commands", "successful", "failed", "success_rate", "total_duration_ms",
    "avg_command_duration_ms", "min_command_duration_ms", "max_command_duration_ms", "mode", "max_retries",
]
ORIGINAL_RESULT_KEYS = ["command", "success", "exit_code", "stdout", "stderr", "duration_ms", "timestamp"]


def test_json_results(pytester: pytest.Pytester, run, mode: str) -> None:
    write(pytester, "echo hello\nprintf 'bad:\\377\\376 ctl:\\001\\033\\n'; exit 4\nkill -SEGV $$\n"
                    "exit 2 # batch: expect=2\ntrue # batch: skip\n")
    # Reports from an earlier run are replaced, not appended to.
    (pytester.path / "out").mkdir()
    (pytester.path / "out" / "results.json").write_text("stale")
    result = run("--batch-json", "out/results.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = (pytester.path / "out" / "results.json").read_bytes()
    document = json.loads(data.decode("utf-8"))
    assert list(document) == ["summary", "results"]
    summary = document["summary"]
    assert list(summary)[: len(ORIGINAL_SUMMARY_KEYS)] == ORIGINAL_SUMMARY_KEYS
    assert summary["mode"] == ("parallel" if mode == "xdist" else "sequential")
    assert (summary["total_commands"], summary["successful"], summary["failed"], summary["skipped"]) == (5, 2, 2, 1)
    assert summary["success_rate"] == 50.0 and summary["interrupted"] is False
    assert summary["min_command_duration_ms"] <= summary["avg_command_duration_ms"] <= summary["max_command_duration_ms"]
    assert terminal_summary(result.stdout.str())["success_rate"] == summary["success_rate"] == 50.0

    results = document["results"]
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5]
    for r in results:
        assert list(r)[: len(ORIGINAL_RESULT_KEYS)] == ORIGINAL_RESULT_KEYS
        assert r["file"] == "cmds.batch"
        if r["attempts"]:
            stamp = datetime.datetime.fromisoformat(r["timestamp"])
            assert stamp.tzinfo is not None and abs(time.time() - stamp.timestamp()) < 300
    hello, bad, segv, expected, skipped = results
    assert (hello["success"], hello["exit_code"], hello["stdout"], hello["stderr"]) == (True, 0, "hello\n", "")
    assert bad["exit_code"] == 4 and bad["stdout"] == "bad:\ufffd\ufffd ctl:\x01\x1b\n"
    # As the original's subprocess.run gave it: a negative signal number.
    assert (segv["success"], segv["signal"], segv["exit_code"], segv["status"]) == (False, "SIGSEGV", -11, "failed")
    assert (expected["success"], expected["exit_code"]) == (True, 2)
    assert (skipped["status"], skipped["attempts"], skipped["timestamp"]) == ("skipped", 0, None)  # never started: no time


# -- audit log ----------------------------------------------------------------------------------


def test_audit_log(pytester: pytest.Pytester, run, mode: str) -> None:
    write(pytester, "echo hi\nsleep 100 & echo bg\nsleep 30\n"
                    "test -f flag || { touch flag; echo once >&2; exit 1; }\necho 'two \\\n  lines'\n")
    result = run("--batch-log", "out/audit.log", "--reruns", "1", *FAST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    again = run("--batch-log", "out/audit.log", "-k", "hi")  # a second, short run
    assert again.ret == pytest.ExitCode.OK
    entries = parse_log((pytester.path / "out" / "audit.log").read_text("utf-8"))
    # Appended: two runs, two headers, two summaries, the second run after the first.
    messages = [e.message for e in entries]
    starts = [i for i, m in enumerate(messages) if m.startswith("BatchRunner v")]
    assert len(starts) == 2 and messages.count("EXECUTION SUMMARY") == 2
    second = starts[1] - 1  # its first "=" line
    run_entries, later = entries[:second], messages[second:]
    from pytest_batchrunner import __version__

    mode_name = "parallel" if mode == "xdist" else "sequential"
    assert messages[:6] == ["=" * 70, f"BatchRunner v{__version__} - Starting 5 commands", f"Mode: {mode_name}",
                            "Retries: 1", "Timeout: 1.0s per command", "=" * 70]
    assert later[:5] == ["=" * 70, f"BatchRunner v{__version__} - Starting 1 commands", f"Mode: {mode_name}",
                         "Retries: 0", "=" * 70]
    assert "Executing: echo hi (attempt 1/1)" in later and later[-1].startswith("SUMMARY ")

    def of(start: str, level: str | None = None) -> list[LogEntry]:
        return [e for e in run_entries if e.message.startswith(start) and level in (None, e.level)]

    assert len(of("Executing: ", "INFO")) == 7  # 5 commands, 2 reruns
    assert len(of("[OK] Command completed (", "SUCCESS")) == 4
    assert [e.message for e in of("[X] Command failed", "ERROR")] == ["[X] Command failed (exit code 1)"]
    assert [e.message for e in of("Error output", "ERROR")] == ["Error output: once"]
    assert [e.message for e in of("[X] Command timed out", "ERROR")] == ["[X] Command timed out after 1.0s"] * 2
    assert [e.message for e in of("Retrying in", "INFO")] == ["Retrying in 0.0s..."] * 2
    assert "Executing: echo 'two \\\\n  lines' (attempt 1/2)" in [e.message for e in of("Executing")]
    (leftovers,) = of("[!] Killed processes left behind", "WARNING")
    assert "sleep 100" in leftovers.message
    if mode == "inprocess":
        assert [e.message for e in of("\n[")] == [f"\n[{i}/5] Starting command..." for i in range(1, 6)]
    else:
        assert len(of("Progress: ")) == 5 and of("Progress: ")[-1].message == "Progress: 5/5 completed"
    # Every attempt's Executing comes before its end, and each line is stamped with its event's time.
    # (Under -n, another worker's command may be reported before `echo hi`: look at its own lines.)
    run_messages = [e.message for e in run_entries]
    at = run_messages.index("Executing: echo hi (attempt 1/2)")
    assert run_messages[at + 1].startswith("[OK] Command completed (")
    stamps = [datetime.datetime.strptime(e.time, "%Y-%m-%d %H:%M:%S") for e in of("Executing: sleep 30")]
    assert (stamps[1] - stamps[0]).total_seconds() >= 1  # the second attempt started after the first timed out
    summary_block = [e.message for e in run_entries[-20:]]
    assert "Success Rate: 80.0%" in summary_block and "Failed: 1" in summary_block and "Total Commands: 5" in summary_block
    (pairs,) = [m for m in summary_block if m.startswith("SUMMARY ")]
    assert "total_commands=5 successful=4 failed=1 success_rate=80.0" in pairs and "interrupted=false" in pairs
    assert all(e.level == "INFO" for e in run_entries[-20:] if not e.message.startswith("["))


# -- job log ------------------------------------------------------------------------------------


def test_joblog(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo hi\ntest -f flag || { touch flag; exit 1; }\nsleep 30\nkill -SEGV $$\n"
                    "printf 'a\\tb\\n'; echo 'tab\there'\necho 'line\u2028para\u2029end'\n")
    before = time.time()
    result = run("--batch-joblog", "out/jobs.tsv", "--reruns", "1", *FAST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = (pytester.path / "out" / "jobs.tsv").read_text("utf-8").splitlines()
    assert lines[0] == JOBLOG_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 9 for row in rows), rows
    by_seq: dict[int, list[list[str]]] = {}
    for row in sorted(rows, key=lambda row: float(row[2])):
        by_seq.setdefault(int(row[0]), []).append(row)
        assert row[1] == ":" and row[4] == "0"
        assert before - 1 < float(row[2]) < time.time() and float(row[3]) >= 0
    # A row for every attempt: the failed attempts of retried commands are visible.
    assert {seq: len(rows) for seq, rows in by_seq.items()} == {1: 1, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1}
    assert [(r[6], r[7], r[8]) for r in by_seq[1]] == [("0", "0", "echo hi")]
    assert [(r[6], r[7]) for r in by_seq[2]] == [("1", "0"), ("0", "0")]
    assert [(r[6], r[7]) for r in by_seq[3]] == [("-1", str(int(signal.SIGTERM)))] * 2  # timed out
    assert [(r[6], r[7]) for r in by_seq[4]] == [("-1", str(int(signal.SIGSEGV)))] * 2
    assert by_seq[5][0][8] == "printf 'a\\tb\\n'; echo 'tab\\there'"
    assert by_seq[1][0][5] == "3" and by_seq[5][0][5] == str(len("a\tb\ntab\there\n"))
    assert by_seq[6][0][8] == "echo 'line\\u2028para\\u2029end'"  # line separators would split the row


# -- interrupted runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_reports_after_interruption(pytester: pytest.Pytester, mode: str, no_leftovers: str, how: str) -> None:
    # Passing, flaky, failing and timed-out commands, then one that is running when the run is stopped
    # (its own timeout, so that --timeout 1 cannot end it first), then commands that never start.
    write(pytester, "echo one\ntest -f flag || { touch flag; exit 1; }\necho bad >&2; exit 3\nsleep 30\n"
                    "touch started; sleep 300 # batch: timeout=120\nsleep 301\necho after\n")
    extra = ["-n", "2"] if mode == "xdist" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", *extra, *REPORTS, "--reruns", "1", *FAST],
        cwd=pytester.path,
        env=os.environ.copy(),  # holds the token that finds leftover processes
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pytester.path / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the run never reached the slow command"
            time.sleep(0.05)
        time.sleep(0.3)
        # Ctrl+C, or a CI runner stopping the job; to pytest only (the xdist controller under -n).
        proc.send_signal(getattr(signal, how))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text

    reports = read_reports(pytester.path)
    summary = reports.json["summary"]
    assert summary["interrupted"] is True
    slow = reports.result("touch started; sleep 300")
    assert (slow["status"], slow["interrupted"], slow["success"]) == ("interrupted", True, False)
    statuses = {r["status"] for r in reports.json["results"]}
    assert statuses <= {"passed", "failed", "interrupted", "not run"}, statuses
    assert summary["failed"] == sum(r["status"] in ("failed", "interrupted") for r in reports.json["results"])
    if mode == "inprocess":  # in file order: all that came before had finished
        assert [r["status"] for r in reports.json["results"]] == [
            "passed", "passed", "failed", "failed", "interrupted", "not run", "not run"]
        assert (summary["flaky"], summary["timed_out"], summary["reruns"]) == (1, 1, 3)

    cases = reports.cases()
    assert cases["touch started; sleep 300"].find("failure").get("type") == "interrupted"
    for r in reports.json["results"]:
        if r["status"] == "not run":
            assert cases[r["command"]].find("skipped").get("type") == "batchrunner.notrun"

    assert_reports_agree(terminal_summary(text), reports)
    assert reports.events("[!] Interrupted: the run was stopped", "ERROR")
    assert "[X] Command interrupted: touch started; sleep 300" in reports.events("[X]", "ERROR")
    assert reports.events("SUMMARY ")[-1].endswith("interrupted=true")


# -- an item run more than once: a command per run -------------------------------------------------
#
# pytest runs an item collected twice twice (--keep-duplicates), and under
# xdist's --dist each every worker runs every item: each run is a command of its
# own, with its own attempts, in the summary and in every report.

FAILS_THE_FIRST_TIME = "if [ -e seen ]; then exit 0; else touch seen; exit 1; fi"
# Its item's name: "[" and "]" show as "(" and ")" in ids and testcase names.
FAILS_THE_FIRST_TIME_NAME = "if ( -e seen ); then exit 0; else touch seen; exit 1; fi"


def _runs(reports: Reports) -> list[tuple[str, int, str, int, list[str]]]:
    """``(command, run, status, attempts, workers of the attempts)`` of each JSON result, in order."""
    return [(r["command"], r["run"], r["status"], r["attempts"], [a["worker"] for a in r["attempt_log"]])
            for r in reports.json["results"]]


def _suite(reports: Reports) -> dict[str, str]:
    (suite,) = reports.junit.iter("testsuite")
    return {k: suite.get(k, "") for k in ("tests", "failures", "errors", "skipped")}


def test_an_item_collected_twice_is_two_commands(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # The second run passes where the first failed: a failure and a pass, not a flaky command.
    pytester.makeini("[pytest]\n")
    write(pytester, FAILS_THE_FIRST_TIME + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "-p", "no:cacheprovider",
                                           *REPORTS)
    result.assert_outcomes(failed=1, passed=1)
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 2, "successful": 1, "failed": 1, "timed_out": 0,
                        "flaky": 0, "reruns": 0, "success_rate": 50.0}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)
    assert _runs(reports) == [(FAILS_THE_FIRST_TIME, 1, "failed", 1, ["main"]),
                              (FAILS_THE_FIRST_TIME, 2, "passed", 1, ["main"])]
    assert {r["nodeid"] for r in reports.json["results"]} == {f"cmds.batch::{FAILS_THE_FIRST_TIME_NAME}"}
    first, second = reports.testcases()
    assert first.get("name") == second.get("name") == FAILS_THE_FIRST_TIME_NAME
    assert first.find("failure").get("message") == "exit code 1" and first.find("flakyFailure") is None
    assert list(second) == []  # a pass: no failure of any kind
    assert _suite(reports) == {"tests": "2", "failures": "1", "errors": "0", "skipped": "0"}
    assert [row[0] for row in reports.joblog] == ["1", "2"]
    assert reports.events("Executing: ") == [f"Executing: {FAILS_THE_FIRST_TIME} (attempt 1/1)"] * 2


def test_every_worker_runs_each_item_as_its_own_command(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pytester.makeini("[pytest]\n")
    write(pytester, "echo o1\necho o2\necho o3\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "--dist", "each", "-p", "no:cacheprovider",
                                           *REPORTS)
    result.assert_outcomes(passed=6)
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 6, "successful": 6, "failed": 0, "timed_out": 0,
                        "flaky": 0, "reruns": 0, "success_rate": 100.0}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)
    runs = _runs(reports)
    assert [(command, run, status, attempts) for command, run, status, attempts, _ in runs] == [
        (f"echo o{i}", run, "passed", 1) for i in (1, 2, 3) for run in (1, 2)]
    for i in range(0, 6, 2):  # the two runs of a command: one per worker
        assert sorted(runs[i][4] + runs[i + 1][4]) == ["gw0", "gw1"]
    assert [[child.tag for child in c] for c in reports.testcases()] == [["system-out"]] * 6  # no flakyFailure
    assert _suite(reports) == {"tests": "6", "failures": "0", "errors": "0", "skipped": "0"}
    assert sorted(int(row[0]) for row in reports.joblog) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("dist", ["load", "loadgroup"])
def test_duplicates_under_xdist_count_what_the_scheduler_ran(pytester: pytest.Pytester, no_leftovers: str,
                                                            dist: str) -> None:
    # --dist load runs an id collected twice twice; the load-scope schedulers run it once.
    pytester.makeini("[pytest]\n")
    write(pytester, "echo a\necho b\n")
    result = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "-n", "2",
                                           "--dist", dist, "-p", "no:cacheprovider", *REPORTS)
    ran = result.parseoutcomes()["passed"]
    assert ran == (4 if dist == "load" else 2)
    terminal = terminal_summary(result.stdout.str())
    assert (terminal["total_commands"], terminal["successful"]) == (ran, ran)
    reports = read_reports(pytester.path)
    assert reports.json["summary"]["not_run"] == 0
    assert_reports_agree(terminal, reports)


def test_a_run_again_keeps_its_own_reruns(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Fails on its first attempt overall, passes afterwards: the first run is flaky (two attempts),
    # the second passes at once.
    pytester.makeini("[pytest]\n")
    write(pytester, FAILS_THE_FIRST_TIME + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "--reruns", "1",
                                           "-p", "no:cacheprovider", *REPORTS)
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 2, "successful": 2, "failed": 0, "timed_out": 0,
                        "flaky": 1, "reruns": 1, "success_rate": 100.0}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)
    assert _runs(reports) == [(FAILS_THE_FIRST_TIME, 1, "passed", 2, ["main", "main"]),
                              (FAILS_THE_FIRST_TIME, 2, "passed", 1, ["main"])]
    assert [r["flaky"] for r in reports.json["results"]] == [True, False]
    first, second = reports.testcases()
    assert [f.get("message") for f in first.findall("flakyFailure")] == ["exit code 1 (attempt 1)"]
    assert list(second) == []
    assert _suite(reports) == {"tests": "2", "failures": "0", "errors": "0", "skipped": "0"}
    assert [row[0] for row in reports.joblog] == ["1", "1", "2"]
    assert reports.events("Retrying in ") == ["Retrying in 0.0s..."]


def test_runs_of_one_item_started_ahead_at_once(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # --batch-jobs starts the second run while the first is in flight, in this one process: the
    # first run's first attempt fails after the second run's has passed. Each attempt gets its lines,
    # once, in every report.
    pytester.makeini("[pytest]\n")
    command = "if [ -e seen ]; then exit 0; fi; touch seen; sleep 0.6; exit 1"
    write(pytester, command + "\nsleep 0.1\n")
    result = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "--reruns", "1",
                                           "--batch-jobs", "2", "-p", "no:cacheprovider", *REPORTS)
    assert result.parseoutcomes() == {"passed": 4, "rerun": 1}
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 4, "successful": 4, "failed": 0, "timed_out": 0,
                        "flaky": 1, "reruns": 1, "success_rate": 100.0}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)  # an Executing line and a job log row per attempt
    assert [(c, run, status, attempts) for c, run, status, attempts, _ in _runs(reports)] == [
        (command, 1, "passed", 2), (command, 2, "passed", 1), ("sleep 0.1", 1, "passed", 1),
        ("sleep 0.1", 2, "passed", 1)]
    assert len(reports.events("[X] Command failed (exit code 1)")) == 1


def test_runs_in_flight_at_once_on_two_workers_keep_their_reruns(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Both workers run the command at once; gw0's first attempt fails and is rerun while gw1's passes.
    pytester.makeini("[pytest]\n")
    command = 'sleep 0.3; test "$BATCH_WORKER" != gw0 || test -e seen || { touch seen; exit 1; }'
    write(pytester, command + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "--dist", "each", "--reruns", "1",
                                           "-p", "no:cacheprovider", *REPORTS)
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    terminal = terminal_summary(result.stdout.str())
    assert terminal == {"total_commands": 2, "successful": 2, "failed": 0, "timed_out": 0,
                        "flaky": 1, "reruns": 1, "success_rate": 100.0}
    reports = read_reports(pytester.path)
    assert_reports_agree(terminal, reports)
    runs = sorted((workers, status, attempts) for _, _, status, attempts, workers in _runs(reports))
    assert runs == [(["gw0", "gw0"], "passed", 2), (["gw1"], "passed", 1)]
    started = sorted((r["attempt_log"][0]["started"], r["attempt_log"][-1]["started"] + r["attempt_log"][-1][
        "duration_ms"] / 1000) for r in reports.json["results"])
    assert started[1][0] < started[0][1], "the two runs did not overlap"
    flaky = [c for c in reports.testcases() if c.find("flakyFailure") is not None]
    assert len(flaky) == 1 and len(flaky[0].findall("flakyFailure")) == 1


def test_a_run_stopped_before_the_second_run_of_its_item(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # -x after the first run's failure: the second run is "not run", a command of its own.
    pytester.makeini("[pytest]\n")
    write(pytester, "exit 1\n")
    result = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "-x",
                                           "-p", "no:cacheprovider", *REPORTS)
    result.assert_outcomes(failed=1)
    reports = read_reports(pytester.path)
    summary = reports.json["summary"]
    assert (summary["total_commands"], summary["failed"], summary["not_run"]) == (2, 1, 1)
    assert [(run, status) for _, run, status, _, _ in _runs(reports)] == [(1, "failed"), (2, "not run")]
    first, second = reports.testcases()
    assert first.find("failure") is not None
    assert second.find("skipped").get("type") == "batchrunner.notrun"
    assert_reports_agree(terminal_summary(result.stdout.str()), reports)


@pytest.mark.parametrize("how", ["keep-duplicates", "dist-each"])
def test_runs_of_one_item_after_interruption(pytester: pytest.Pytester, no_leftovers: str, how: str) -> None:
    # Ctrl+C while the item runs: in-process its second run never starts; under
    # --dist each both workers are running it. Each run is counted once.
    write(pytester, "touch started; sleep 300\n")
    extra = ["cmds.batch", "--keep-duplicates"] if how == "keep-duplicates" else ["-n", "2", "--dist", "each"]

    def ctrl_c(pid: int) -> None:
        time.sleep(0.3)  # under --dist each, until both workers run it
        os.kill(pid, signal.SIGINT)

    returncode, text = stopped_run(pytester, "inprocess", ctrl_c, *extra, *REPORTS, *FAST[2:])
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    reports = read_reports(pytester.path)
    statuses = [status for _, _, status, _, _ in _runs(reports)]
    if how == "keep-duplicates":
        assert statuses == ["interrupted", "not run"]
    else:
        assert statuses == ["interrupted", "interrupted"]
    summary = reports.json["summary"]
    assert (summary["total_commands"], summary["failed"]) == (2, statuses.count("interrupted"))
    assert_reports_agree(terminal_summary(text), reports)


# -- option handling and write failures ---------------------------------------------------------


def test_unusable_report_paths(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "echo hi\n")
    (pytester.path / "afile").write_text("")
    (pytester.path / "adir").mkdir()
    # A log that cannot be opened stops the run before it starts.
    result = pytester.runpytest_subprocess("--batch-log", "afile/audit.log")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--batch-log" in result.stderr.str() and "cannot open" in result.stderr.str()
    result = pytester.runpytest_subprocess("--batch-json", "adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'adir' is a directory" in result.stderr.str()
    # A report that cannot be written at the end: the others are written, the run says so and fails.
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-json", "afile/results.json", "--batch-joblog", "jobs.tsv")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*BatchRunner report errors*", "--batch-json */afile/results.json: not written: *"])
    assert (pytester.path / "jobs.tsv").read_text().splitlines()[1].endswith("\techo hi")


def test_logs_are_closed_when_nothing_runs(pytester: pytest.Pytester) -> None:
    # The Python API runs pytest in-process again and again: no file may stay open.
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--batch-log", "audit.log", "--batch-joblog", "jobs.tsv", "--batch-json", "r.json")
    result.assert_outcomes(passed=1)
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert not {str(pytester.path / "audit.log"), str(pytester.path / "jobs.tsv")} & open_files
    assert (pytester.path / "jobs.tsv").read_text() == JOBLOG_HEADER + "\n"
    assert not (pytester.path / "r.json").exists()  # no batch commands: nothing to report


# -- the writer on its own: size limit and character safety -------------------------------------


def synthetic_record(nodeid: str, line: int, success: bool, output: str, attempt: int = 1) -> dict[str, Any]:
    """An attempt record as :meth:`CommandItem.attempt_record` makes it."""
    return {
        "nodeid": nodeid, "command": nodeid.split("::", 1)[1], "file": "big.batch", "line": line,
        "attempt": attempt, "success": success, "exit_code": 0 if success else 1, "signal": None,
        "timed_out": False, "timeout": None, "status": f"exit code {0 if success else 1}",
        "stdout": output, "stderr": output, "stdout_bytes": len(output), "stderr_bytes": len(output),
        "started": 1.7e9, "timestamp": "2024-01-01T00:00:00.000+00:00", "duration_ms": 1.0,
        "leftovers": [], "expected_exit": 0, "worker": "gw0", "pid": 1,
    }


def synthetic_junit(count: int, output: str, failing_output: str) -> bytes:
    from pytest_batchrunner.reports.junit import rewrite_junit
    from pytest_batchrunner.reports.results import Recorder

    recorder = Recorder()
    for line in range(1, count + 1):
        nodeid = f"big.batch::command number {line}"
        recorder.expect(nodeid, nodeid.split("::")[1], "big.batch", line)
        success = line % 100 != 0  # 1 % fail, after a failed first attempt
        if not success:
            recorder.attempt(synthetic_record(nodeid, line, False, failing_output), "rerun")
        text = output if success else failing_output
        recorder.attempt(synthetic_record(nodeid, line, success, text, 2 - success), "passed" if success else "failed")
        recorder.outcome(nodeid, "passed" if success else "failed", "" if success else "exit code 1")
    return rewrite_junit(None, recorder.results_with_records)


GITLAB_LIMIT = 30_000_000


def test_junit_for_100000_commands_stays_under_gitlabs_limit() -> None:
    data = synthetic_junit(100_000, "ok\n", "error: it broke\n")
    assert len(data) < GITLAB_LIMIT / 2
    root = ET.fromstring(data)
    (suite,) = root.iter("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("100000", "1000")
    assert len(root.findall(".//rerunFailure")) == 1000


def test_junit_output_is_clipped_to_stay_under_gitlabs_limit() -> None:
    # 10,000 commands writing 3 kB of escape-heavy output each, 1 % failing with 300 kB.
    data = synthetic_junit(10_000, "x<&\x00\x1b" * 600, "y\x00]]>" * 75_000)
    assert len(data) < GITLAB_LIMIT
    root = ET.fromstring(data)
    failure_outputs = [c.find("system-out").text for c in root.iter("testcase") if c.find("failure") is not None]
    assert len(failure_outputs) == 100
    # The failures keep their head and tail, and say how much was left out.
    for text in failure_outputs:
        assert text.startswith("y#x00]]>") and text.endswith("y#x00]]>")
        assert "characters left out of the JUnit report" in text
        assert 1000 < len(text) < 4 * 50_000


def test_clip_keeps_head_and_tail() -> None:
    from pytest_batchrunner.reports.junit import PASS_OUTPUT_CHARS, clip

    text = "".join(f"{n}\n" for n in range(1, 40_001))
    clipped = clip(text, PASS_OUTPUT_CHARS)
    head, _, rest = clipped.partition("\n[... ")
    omitted, tail = int(rest.split(" ", 1)[0]), rest.split("...]\n", 1)[1]
    assert text.startswith(head) and head.startswith("1\n2\n")
    assert text.endswith(tail) and tail.endswith("39999\n40000\n") and len(tail) > len(head)
    assert len(head) + omitted + len(tail) == len(text)
    assert len(clipped) < PASS_OUTPUT_CHARS + 100
    assert clip("short", PASS_OUTPUT_CHARS) == "short"


def test_xml_text_makes_every_character_writable_and_parseable() -> None:
    from pytest_batchrunner.reports.junit import xml_text

    everything = "".join(map(chr, range(0x110000)))  # lone surrogates included
    element = ET.Element("system-out")
    element.text = xml_text(everything)
    data = ET.tostring(element, encoding="utf-8")
    parsed = ET.fromstring(data).text
    assert parsed.startswith("#x00#x01") and "#x1B" in parsed and "#xD800" in parsed and "#xFFFE" in parsed
    assert "\t\n" in parsed and "\U0010ffff" in parsed and "]]>" in xml_text("]]>")


def test_batch_comments_are_left_out_of_every_report(pytester: pytest.Pytester, run, mode: str) -> None:
    write(pytester, "echo hi # batch: timeout=30\nexit 3 # batch: retries=1 retry-delay=0\n"
                    "sleep 0 && \\\n  echo two # batch: tags=x\n")
    files = ("--batch-markdown", "out/summary.md", "--batch-html", "out/page.html", "--batch-trace", "out/trace.json")
    result = run(*REPORTS, *files, "-v", "-rA")
    result.assert_outcomes(passed=2, failed=1)
    assert "exit 3\n" in (pytester.path / "out/audit.log").read_text()  # the commands are there...
    results = json.loads((pytester.path / "out/results.json").read_text())["results"]
    assert [r["command"] for r in results] == ["echo hi", "exit 3", "sleep 0 && \\\n  echo two"]
    texts = {p.name: p.read_text() for p in (pytester.path / "out").iterdir()}
    texts["terminal"] = result.stdout.str() + result.stderr.str()
    if mode == "inprocess":  # the API and the CLI, on the same engine
        cli = subprocess.run(
            [sys.executable, "-m", "batchrunner", "-f", "cmds.batch", "-o", "c.json", "-l", "c.log", "--junitxml", "c.xml"],
            cwd=pytester.path, capture_output=True, text=True, timeout=60,
        )
        assert cli.returncode == 1, cli.stderr
        texts.update({name: (pytester.path / name).read_text() for name in ("c.json", "c.log", "c.xml")}, cli=cli.stdout + cli.stderr)
    assert len(texts) == (12 if mode == "inprocess" else 8)
    assert [name for name, text in texts.items() if "batch:" in text.replace("cmds.batch:", "")] == []
