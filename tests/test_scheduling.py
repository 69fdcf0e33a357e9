"""The plugin's xdist scheduler: a command that kills its worker, under every --dist mode the plugin schedules.

RELIABILITY.md case 17: the run ends; the command runs at most once more (as
``--reruns`` allows); every report counts it once, with its file and line.
``$PPID`` is the xdist worker only under ``-n``, so these run under ``-n 2``
only. A run that hangs fails its test (pytester's timeout), not the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from pytest_batchrunner.plugin.history import History, history_path

pytestmark = pytest.mark.timeout(240, method="signal")

CRASH = "echo crash >> crash.log; kill -9 $PPID"
LINES = ["sleep 0.3", "sleep 0.2", "sleep 0.1"]
DISTS = ["load", "loadgroup", "loadfile", "worksteal"]


def write_batch(pytester: pytest.Pytester, group: str = "") -> list[str]:
    """``c.batch``: the crashing line and ``sleep 0.2`` (in a group if *group* is its settings), then two more."""
    head = f"# batch: {group}\n" if group else ""
    tail = "# batch:\n" if group else ""
    text = f"{head}{CRASH}\nsleep 0.2\n{tail}sleep 0.3\nsleep 0.1\n"
    (pytester.path / "c.batch").write_text(text)
    return text.splitlines()


def seed_history(pytester: pytest.Pytester) -> None:
    """A history that knows every command (one of 0.1 s or more: the plugin's scheduler orders by it)."""
    history = History()
    durations = {f"c.batch::{CRASH}": 0.01, "c.batch::sleep 0.3": 0.3, "c.batch::sleep 0.2": 0.2, "c.batch::sleep 0.1": 0.1}
    history.record((nodeid, seconds, "passed") for nodeid, seconds in durations.items())
    path = pytester.path / history_path(".pytest_cache")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history.data()))


def run_crashing(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "c.batch", "-n", "2", "-p", "no:randomly", "--batch-json", "r.json", "--junitxml", "j.xml", *args, timeout=90
    )


def crash_runs(pytester: pytest.Pytester, name: str = "crash.log") -> int:
    path = pytester.path / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def check_counted_once(pytester: pytest.Pytester, lines: list[str], attempts: int = 1) -> dict:
    """Every report holds each command once, with its file and line; returns the crashed command's JSON result."""
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted(r["line"] for r in results) == [i + 1 for i, text in enumerate(lines) if not text.startswith("#")]
    assert {r["file"] for r in results} == {"c.batch"}
    (crashed,) = [r for r in results if r["command"] == CRASH]
    assert crashed["line"] == lines.index(CRASH) + 1 and crashed["attempts"] == attempts
    cases = ET.parse(pytester.path / "j.xml").getroot().iter("testcase")
    assert sorted(c.get("name") for c in cases).count(CRASH) == 1
    return crashed


@pytest.mark.parametrize("history", [False, True], ids=["no-history", "history"])
@pytest.mark.parametrize("group", ["", "group=g"], ids=["plain", "group"])
@pytest.mark.parametrize("dist", [*DISTS, "loadscope"])
def test_command_killing_its_worker_runs_once(pytester: pytest.Pytester, no_leftovers: str, dist: str, group: str,
                                              history: bool) -> None:
    lines = write_batch(pytester, group)
    if history:
        seed_history(pytester)
    result = run_crashing(pytester, "--dist", dist)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*kill -9 $PPID*", "Total Commands: 4 *"])
    assert crash_runs(pytester) == 1
    crashed = check_counted_once(pytester, lines)
    assert crashed["status"] == "failed"


@pytest.mark.parametrize("dist", ["load", "loadgroup", "loadfile"])
def test_a_crash_is_rerun_only_as_reruns_allow(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    lines = write_batch(pytester, "group=g")
    seed_history(pytester)
    result = run_crashing(pytester, "--dist", dist, "--reruns", "2")
    # Each attempt crashes its worker: the first two are reruns, the third is final.
    assert result.parseoutcomes() == {"failed": 1, "passed": 3, "rerun": 2}
    assert crash_runs(pytester) == 3
    check_counted_once(pytester, lines, attempts=3)


@pytest.mark.parametrize("dist", [[], ["--dist", "loadgroup"], ["--dist", "loadfile"]], ids=["default", "loadgroup", "loadfile"])
def test_a_crashed_sequential_step_ends_its_group(pytester: pytest.Pytester, no_leftovers: str, dist: list[str]) -> None:
    lines = write_batch(pytester, "group=g sequential")
    seed_history(pytester)
    result = run_crashing(pytester, *dist, "--reruns", "1", "-rs")
    # Its earlier steps died with the worker: a sequential step is not rerun, and the next one does not run.
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*not run: step 1 (line 2) did not run before it*"])
    assert crash_runs(pytester) == 1
    check_counted_once(pytester, lines)


@pytest.mark.parametrize("restarts", ["0", "1"])
@pytest.mark.parametrize("dist", DISTS)
def test_worker_restarts_disabled_or_exhausted(pytester: pytest.Pytester, no_leftovers: str, dist: str, restarts: str) -> None:
    # Two lines that kill their worker: with no restart the first ends the run, with one the second does.
    lines = write_batch(pytester, "group=g")
    lines[4:4] = [CRASH.replace("crash.log", "crash2.log")]
    (pytester.path / "c.batch").write_text("\n".join(lines) + "\n")
    seed_history(pytester)
    result = run_crashing(pytester, "--dist", dist, "--max-worker-restart", restarts)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*worker*crashed*"])
    assert crash_runs(pytester) <= 1 and crash_runs(pytester, "crash2.log") <= 1
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted(r["line"] for r in results) == [2, 3, 5, 6, 7]
    assert all(r["file"] == "c.batch" for r in results)


@pytest.mark.parametrize("dist", DISTS)
def test_exitfirst_after_a_crash(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    lines = write_batch(pytester, "group=g")
    lines.append("false")
    (pytester.path / "c.batch").write_text("\n".join(lines) + "\n")
    seed_history(pytester)
    result = run_crashing(pytester, "--dist", dist, "-x")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # xdist's stop
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    assert crash_runs(pytester) == 1
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted(r["line"] for r in results) == [2, 3, 5, 6, 7]
    assert [r["line"] for r in results if r["command"] == CRASH] == [2]


@pytest.mark.parametrize("dist", DISTS)
def test_ctrl_c_after_a_crash(pytester: pytest.Pytester, no_leftovers: str, interrupt_once_started, dist: str) -> None:
    (pytester.path / "c.batch").write_text(f"# batch: group=g\n{CRASH}\nsleep 0.2\n# batch:\ntouch started; sleep 60\n")
    seed_history(pytester)
    # One worker: the long command runs on the worker that replaced the crashed one, after the crash was handled.
    argv = [sys.executable, "-m", "pytest", "c.batch", "-n", "1", "--dist", dist, "-p", "no:randomly",
            "--batch-json", "r.json"]
    done = interrupt_once_started(argv, pytester.path, pytester.path / "started", signal.SIGINT)
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout + done.stderr
    assert crash_runs(pytester) == 1
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted(r["line"] for r in results) == [2, 3, 5]
    assert [r["line"] for r in results if r["command"] == CRASH] == [2]


@pytest.mark.parametrize("mode", [["--batch-jobs", "2"], ["-n", "1"]], ids=["inprocess", "xdist"])
def test_history_never_moves_a_command_before_a_python_test(pytester: pytest.Pytester, no_leftovers: str,
                                                            mode: list[str]) -> None:
    # The command after the test needs what the test makes; the history says it is the longest.
    pytester.makepyfile(test_prep="import time, pathlib\n\ndef test_prep():\n"
                                  "    time.sleep(0.5)\n    pathlib.Path('ready.flag').touch()\n")
    (pytester.path / "c.batch").write_text("test -f ready.flag && sleep 0.3\ntrue\n")
    history = History()
    history.record([("c.batch::test -f ready.flag && sleep 0.3", 0.3, "passed"), ("c.batch::true", 0.01, "passed")])
    path = pytester.path / history_path(".pytest_cache")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history.data()))
    result = pytester.runpytest_subprocess("test_prep.py", "c.batch", "-p", "no:randomly", *mode, timeout=90)
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("dist", DISTS)
def test_a_crash_after_the_other_worker_finished_early(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    # One unit of work (a group): the second worker gets nothing and ends at once; the replacement runs the rest.
    (pytester.path / "c.batch").write_text(f"# batch: group=g\n{CRASH}\nsleep 0.2\necho last\n")
    seed_history(pytester)
    result = run_crashing(pytester, "--dist", dist)
    result.assert_outcomes(passed=2, failed=1)
    assert crash_runs(pytester) == 1
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert [(r["line"], r["status"], r["attempts"]) for r in results] == [(2, "failed", 1), (3, "passed", 1), (4, "passed", 1)]


def test_loadgroup_keeps_python_tests_xdist_groups(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Beside batch files, the plugin's scheduler keeps pytest-xdist's own groups of Python tests together.
    pytester.makepyfile(test_grouped="import os, pytest\n\n"
                        + "".join(f"@pytest.mark.xdist_group('x')\ndef test_{i}():\n"
                                  f"    open('workers', 'a').write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n\n"
                                  for i in range(4)))
    (pytester.path / "c.batch").write_text("true\ntrue  # 2\ntrue  # 3\n")
    result = pytester.runpytest_subprocess("test_grouped.py", "c.batch", "-n", "2", "--dist", "loadgroup",
                                           "-p", "no:randomly", "-p", "no:cacheprovider", timeout=90)
    result.assert_outcomes(passed=7)
    assert len(set((pytester.path / "workers").read_text().split())) == 1


@pytest.mark.parametrize(("dist", "settings", "scheduler"), [
    ("load", "group=g", "BatchScheduling"), ("loadgroup", "group=g sequential", "BatchScheduling"),
    ("loadfile", "group=g sequential", "BatchScheduling"), ("loadscope", "group=g sequential", "BatchScheduling"),
    ("worksteal", "group=g", "WorkStealingScheduling"),
])
def test_which_dist_modes_the_plugin_schedules(pytester: pytest.Pytester, no_leftovers: str, dist: str, settings: str,
                                               scheduler: str) -> None:
    # With groups and history the plugin schedules load, loadgroup, loadfile and loadscope; worksteal stays pytest-xdist's own.
    (pytester.path / "c.batch").write_text(f"# batch: {settings}\nsleep 0.2\ntrue\n# batch:\nsleep 0.3\n")
    seed_history(pytester)
    result = pytester.runpytest_subprocess("c.batch", "-n", "2", "--dist", dist, "-v", "-p", "no:randomly", timeout=90)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"scheduling tests via {scheduler}"])


@pytest.mark.parametrize("dist", DISTS)
def test_an_outside_kill_of_a_worker(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    # The worker is killed from outside while its command runs: the same as a command killing it.
    (pytester.path / "c.batch").write_text("# batch: group=g\necho $PPID > worker.pid; sleep 60\nsleep 0.2\n"
                                           "# batch:\nsleep 0.3\nsleep 0.1\n")
    seed_history(pytester)
    argv = [sys.executable, "-m", "pytest", "c.batch", "-n", "2", "--dist", dist, "-p", "no:randomly",
            "--batch-json", "r.json"]
    proc = subprocess.Popen(argv, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pid_file = pytester.path / "worker.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert [(r["line"], r["status"], r["attempts"]) for r in results] == [
        (2, "failed", 1), (3, "passed", 1), (5, "passed", 1), (6, "passed", 1)]


def test_workers_that_collected_different_commands_are_named(pytester: pytest.Pytester) -> None:
    # The scheduler counts the workers from xdist's public setupnodes hook and compares what each collected.
    (pytester.path / "g.batch").write_text("# batch: group=g\necho a\necho b\n")
    pytester.makeconftest("""
import os
def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
        del items[-1]
""")
    result = pytester.runpytest_subprocess("g.batch", "-n", "2", "-p", "no:randomly", timeout=60)
    assert result.ret != pytest.ExitCode.OK
    # Compared with whichever worker collected first.
    result.stdout.fnmatch_lines(["*Different tests were collected between gw? and gw?. The difference is:*", "*[-+]g.batch::echo b*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_a_crash_under_dist_each_counts_each_run_once(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Every worker runs every line; a replacement worker takes over the runs its crashed worker had left.
    write_batch(pytester)
    result = run_crashing(pytester, "--dist", "each")
    result.assert_outcomes(passed=6, failed=2)
    assert crash_runs(pytester) == 2
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert Counter((r["line"], r["status"]) for r in results) == {
        (1, "failed"): 2, (2, "passed"): 2, (3, "passed"): 2, (4, "passed"): 2}


@pytest.mark.parametrize("dist", ["load", "each"])
def test_commands_left_when_worker_restarts_run_out_are_not_run(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    # The one worker dies on the first line and is not replaced: the rest never ran, and no report says they failed.
    (pytester.path / "c.batch").write_text(f"{CRASH}\ntouch ran\nsleep 0.1\n")
    result = pytester.runpytest_subprocess("c.batch", "-n", "1", "--dist", dist, "--max-worker-restart", "0",
                                           "-p", "no:randomly", "--batch-json", "r.json", timeout=90)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert not (pytester.path / "ran").exists()
    summary = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert (summary["failed"], summary["not_run"]) == (1, 2)
    result.stdout.fnmatch_lines(["Total Commands: 3 | Successful: 0 | Failed: 1 | *Not run: 2"])
