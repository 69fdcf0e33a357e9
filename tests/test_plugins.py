"""Batch commands beside pytest-retry, flaky, pytest-repeat and pytest-benchmark (the ``plugins`` extra, part of ``test``).

The suite runs with these plugins off (pyproject addopts, ``plugins_off`` in
conftest.py); each test here turns on the one it is about. A test whose plugin
is not installed is skipped.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from test_ecosystem import ecosystem  # noqa: F401  (the fixture)
from test_plugin import outcomes, write

MODULES = {"pytest-retry": "pytest_retry", "flaky": "flaky", "repeat": "pytest_repeat", "benchmark": "pytest_benchmark"}


def need(plugin: str) -> None:
    pytest.importorskip(MODULES[plugin])


# -- retry plugins that take over an item's protocol are refused ------------------------------


@pytest.mark.parametrize(
    "plugin, args",
    [
        ("pytest-retry", ()),
        ("pytest-retry", ("--retries", "2")),
        ("flaky", ()),
        ("flaky", ("--force-flaky", "--max-runs", "3")),
        ("flaky", ("--reruns", "1")),
    ],
)
def test_retry_plugins_are_refused_before_any_command(pytester: pytest.Pytester, ecosystem, plugin: str, args) -> None:  # noqa: F811
    need(plugin)
    write(pytester, "touch ran\n# batch: retries=2\nfalse\n")
    result = ecosystem("cmds.batch", *args, "--batch-json", "r.json", plugins=(plugin,))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-batchrunner cannot run batch commands with the {plugin} plugin*-p no:{plugin}"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "ran").exists()
    assert not (pytester.path / "r.json").exists()
    # Collecting only runs nothing: nothing to refuse (a subprocess: pytest-retry cannot run twice in one process).
    result = pytester.runpytest_subprocess("cmds.batch", "--collect-only", *args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("plugin", ["pytest-retry", "flaky"])
def test_retry_plugins_still_serve_python_tests(pytester: pytest.Pytester, ecosystem, plugin: str) -> None:  # noqa: F811
    need(plugin)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    assert outcomes(ecosystem("test_x.py", plugins=(plugin,))) == {"passed": 1}
    # Turned off, the batch file runs, retries= counted.
    write(pytester, "# batch: retries=2\nfalse\n")
    result = ecosystem("cmds.batch", "--batch-json", "r.json")
    assert outcomes(result) == {"failed": 1, "rerun": 2}
    summary = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert (summary["failed"], summary["success_rate"]) == (1, 0.0)


# -- a state no one foresaw is counted, never dropped -----------------------------------------

FOREIGN_STATE = """\
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        report.outcome = "retried"  # as pytest-retry leaves a retried test
    if report.when == "call" and "boom" in item.name:
        raise RuntimeError("a plugin broke")
    return report
"""


def test_an_outcome_of_another_plugin_counts_as_failed(pytester: pytest.Pytester, ecosystem) -> None:  # noqa: F811
    pytester.makeconftest(FOREIGN_STATE)
    write(pytester, "echo ok\nfalse\n")
    result = ecosystem("cmds.batch", "--batch-json", "r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["Total Commands: 2 | Successful: 1 | Failed: 1 |*", "Success Rate: 50.0%", "*cmds.batch:2  false  ?retried: exit code 1?"])
    data = json.loads((pytester.path / "r.json").read_text())
    assert (data["summary"]["failed"], data["summary"]["success_rate"]) == (1, 50.0)
    assert [r["status"] for r in data["results"]] == ["passed", "failed"]


def test_an_internalerror_of_another_plugin_is_not_a_pass(pytester: pytest.Pytester, ecosystem) -> None:  # noqa: F811
    pytester.makeconftest(FOREIGN_STATE)
    write(pytester, "echo ok\necho boom\necho after\n")
    result = ecosystem("cmds.batch", "--batch-json", "r.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*BatchRunner summary*", "Total Commands: 3 |*", "Interrupted: *"])
    summary = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert summary["interrupted"] is True
    assert summary["success_rate"] < 100.0 and summary["failed"] >= 1
    assert f"Failed: {summary['failed']} |" in result.stdout.str()


# -- warnings as errors (-W error, filterwarnings = error) --------------------------------------


@pytest.mark.parametrize("how", ["-W", "ini"])
def test_a_leftover_under_warnings_as_errors_is_a_compact_failure(pytester: pytest.Pytester, run, how: str) -> None:
    if how == "ini":
        pytester.makeini("[pytest]\nfilterwarnings = error\n")
    args = ("-W", "error") if how == "-W" else ()
    write(pytester, "sleep 30 &\necho ok\n")
    result = run(*args, "--batch-json", "r.json", "--junitxml", "j.xml")
    assert outcomes(result) == {"failed": 1, "passed": 1}
    out = result.stdout.str()
    assert "Traceback" not in out and "LeftoverProcessWarning" not in out and len(out.splitlines()) < 60, out
    result.stdout.fnmatch_lines(["*cmds.batch:1  sleep 30 &  ?left processes behind: *sleep 30* (pid *)?"])
    failed = json.loads((pytester.path / "r.json").read_text())["results"][0]
    assert (failed["status"], failed["success"]) == ("failed", False)
    assert failed["attempt_log"][-1]["status"].startswith("left processes behind: ") and "(pid " in failed["attempt_log"][-1]["status"]
    assert 'type="leftovers" message="left processes behind: ' in (pytester.path / "j.xml").read_text()


def test_a_dist_that_breaks_groups_under_warnings_as_errors_is_a_usage_error(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "# batch: group=g sequential\ntouch ran\necho 2\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-W", "error", "-n", "2", "--dist", "load", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-batchrunner: the batch files hold sequential groups, whose order --dist load does not keep*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "ran").exists()


# -- --batch-jobs stays parallel beside plugins that do not set commands up ---------------------

# Each command waits (at most 10 s) until all four have started: one at a time, the first one fails.
BARRIER = "".join(
    f"touch s{i}; n=0; while [ $(ls s? | wc -l) -lt 4 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; [ $(ls s? | wc -l) -eq 4 ]\n"
    for i in range(4)
)


def test_batch_jobs_stay_parallel_beside_pytest_benchmark(pytester: pytest.Pytester, ecosystem, mode: str) -> None:  # noqa: F811
    need("benchmark")
    if mode == "xdist":
        pytest.skip("the four commands must share one worker")
    write(pytester, BARRIER)
    result = ecosystem("cmds.batch", "--batch-jobs", "4", plugins=("benchmark",))
    assert outcomes(result) == {"passed": 4}
    assert "one at a time" not in result.stdout.str()


def test_batch_jobs_stay_parallel_beside_hypothesis(pytester: pytest.Pytester, ecosystem, mode: str) -> None:  # noqa: F811
    # Hypothesis's pytest_runtest_call acts only on Python test functions (items with an ``obj``).
    pytest.importorskip("hypothesis")
    if mode == "xdist":
        pytest.skip("the four commands must share one worker")
    write(pytester, BARRIER)
    result = ecosystem("cmds.batch", "--batch-jobs", "4", plugins=("hypothesispytest",))
    assert outcomes(result) == {"passed": 4}
    assert "one at a time" not in result.stdout.str()


def test_batch_jobs_name_what_makes_them_run_one_at_a_time(pytester: pytest.Pytester, ecosystem) -> None:  # noqa: F811
    pytester.makeconftest("def pytest_runtest_setup(item):\n    pass\n")
    write(pytester, "true\ntrue\n")
    result = ecosystem("cmds.batch", "--batch-jobs", "4")
    assert outcomes(result) == {"passed": 2}
    result.stdout.fnmatch_lines(["pytest-batchrunner: --batch-jobs 4 ran commands one at a time beside conftest.py: it implements pytest_runtest_setup*"])
    # Without --batch-jobs there is nothing to say.
    assert "one at a time" not in ecosystem("cmds.batch").stdout.str()


# -- pytest-repeat ------------------------------------------------------------------------------


def test_repeat_count_says_that_commands_run_once(pytester: pytest.Pytester, ecosystem) -> None:  # noqa: F811
    need("repeat")
    write(pytester, "echo x >> ran\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = ecosystem("cmds.batch", "test_x.py", "--count", "2", plugins=("repeat",))
    assert outcomes(result) == {"passed": 3}
    assert (pytester.path / "ran").read_text() == "x\n"
    result.stdout.fnmatch_lines(["pytest-batchrunner: --count 2 (pytest-repeat) repeats Python tests only: each batch command ran once"])
    assert "repeats Python tests only" not in ecosystem("cmds.batch", plugins=("repeat",)).stdout.str()


# -- JUnit's junit_logging and the JSON's max_retries -----------------------------------------

@pytest.mark.parametrize(
    "logging, passing, tags",
    [
        ("no", "true", {"pass": [], "fail": []}),
        ("system-out", "true", {"pass": ["system-out"], "fail": ["system-out"]}),
        ("system-err", "true", {"pass": ["system-err"], "fail": ["system-err"]}),
        ("all", "true", {"pass": ["system-out", "system-err"], "fail": ["system-out", "system-err"]}),
        ("out-err", "false", {"pass": [], "fail": ["system-out", "system-err"]}),
    ],
)
def test_junit_follows_junit_logging_for_commands_as_for_python_tests(
    pytester: pytest.Pytester, run, logging: str, passing: str, tags: dict
) -> None:
    write(pytester, "echo out; echo err >&2\necho out; echo err >&2; false\n")
    pytester.makepyfile(test_x="import sys\n\ndef test_pass():\n    print('out'); print('err', file=sys.stderr)\n")
    run("--junitxml", "j.xml", "-o", f"junit_logging={logging}", "-o", f"junit_log_passing_tests={passing}")
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")}
    streams = ("system-out", "system-err")
    assert [c.tag for c in cases["echo out; echo err >&2"] if c.tag in streams] == tags["pass"]
    assert [c.tag for c in cases["echo out; echo err >&2; false"] if c.tag in streams] == tags["fail"]
    # The same streams as pytest writes for the passing Python test.
    assert [c.tag for c in cases["test_pass"] if c.tag in streams] == tags["pass"]


def test_json_max_retries_is_the_highest_of_the_commands(pytester: pytest.Pytester, run) -> None:
    write(pytester, "true\n# batch: retries=2\ntrue\n# batch: retries=1\nfalse\n")
    run("--batch-json", "r.json")
    assert json.loads((pytester.path / "r.json").read_text())["summary"]["max_retries"] == 2


# -- pytest-timeout's thread method (what the README says of it) --------------------------------


def test_a_python_tests_thread_timeout_loses_the_reports_in_process_only(pytester: pytest.Pytester, run, mode: str) -> None:
    write(pytester, "echo ok\n")
    pytester.makepyfile(test_slow="import time\n\ndef test_slow():\n    time.sleep(60)\n")
    result = run("--timeout", "2", "--timeout-method", "thread", "--batch-json", "r.json")
    assert result.ret != pytest.ExitCode.OK
    # In-process, pytest-timeout ends the process with os._exit; under -n only a worker dies.
    assert (pytester.path / "r.json").exists() == (mode == "xdist")
