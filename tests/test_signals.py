"""SIGHUP and SIGQUIT stop a run like SIGTERM; a second Ctrl+C while it stops does not cut the reports short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import leftovers

pytestmark = pytest.mark.usefixtures("no_leftovers")


def stopped_run(pytester: pytest.Pytester, mode: str, stop, *args: str) -> tuple[int, str]:
    """Run ``cmds.batch``, call *stop(pid)* once its command touched ``started``; (exit status, output)."""
    extra = ["-n", "2"] if mode == "xdist" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", "--batch-json=r.json", *args, *extra],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pytester.path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the command never started"
            time.sleep(0.02)
        time.sleep(0.2)
        stop(proc.pid)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGQUIT", "SIGTERM"])
def test_hangup_and_quit_stop_the_run_like_sigterm(pytester: pytest.Pytester, mode: str, sig: str) -> None:
    (pytester.path / "cmds.batch").write_text("echo first\ntouch started; sleep 320\necho never\n")
    returncode, text = stopped_run(pytester, mode, lambda pid: os.kill(pid, getattr(signal, sig)), "--batch-kill-grace", "0.3")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    assert "BatchRunner summary" in text and "Traceback" not in text
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["summary"]["interrupted"] is True or any(r["interrupted"] for r in report["results"])


def test_a_second_ctrl_c_while_stopping_still_writes_the_reports(pytester: pytest.Pytester, mode: str) -> None:
    # The second Ctrl+C lands while the first is being handled (acknowledged), or
    # while pytest and the interpreter close down (ignored): never a traceback.
    (pytester.path / "cmds.batch").write_text(
        "echo first\nperl -e '$SIG{TERM} = \"IGNORE\"; open(F, \">started\"); close(F); sleep 321'\n"
    )
    def twice(pid: int) -> None:
        os.killpg(pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(pid, signal.SIGINT)

    returncode, text = stopped_run(pytester, mode, twice, "--batch-kill-grace", "1.5")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["summary"]["total_commands"] == 2


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_controller_alone_stops_the_workers_commands_at_once(
    pytester: pytest.Pytester, no_leftovers: str, sig: str
) -> None:
    # `kill PID` (a CI runner, a supervisor) reaches the xdist controller only:
    # pytest-xdist would stop its workers only after its own wait (5 s here).
    (pytester.path / "cmds.batch").write_text("touch started; sleep 331\nsleep 332\n")
    start = []

    def stop(pid: int) -> None:
        start.append(time.monotonic())
        os.kill(pid, getattr(signal, sig))

    returncode, text = stopped_run(pytester, "xdist", stop, "--batch-kill-grace", "0.3")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    assert time.monotonic() - start[0] < 3.5, text
    assert "Traceback" not in text and "already stopping" not in text
    # no_leftovers: both sleeps were killed.


def test_a_killed_controller_takes_its_local_workers_commands_along(
    pytester: pytest.Pytester, no_leftovers: str
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("a worker learns of its controller's death from the kernel on Linux only")
    (pytester.path / "cmds.batch").write_text("touch started; sleep 333\nsleep 334\n")
    killed = []

    def kill(pid: int) -> None:
        killed.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    returncode, _ = stopped_run(pytester, "xdist", kill)
    assert returncode == -signal.SIGKILL
    # Within a few seconds (execnet's own fallback took 15 s).
    deadline = killed[0] + 5
    while time.monotonic() < deadline:
        left = [p.cmdline for p, _ in leftovers(no_leftovers).values() if "sleep 33" in p.cmdline]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"the workers' commands outlived their killed controller: {left}"


def _interrupted_result(pytester: pytest.Pytester) -> dict:
    report = json.loads((pytester.path / "r.json").read_text())
    assert [r["status"] for r in report["results"]][:2] == ["passed", "interrupted"], report["results"]
    return report


@pytest.mark.parametrize("jobs", ["0", "1", "2"])
def test_an_interrupted_command_is_recorded_with_its_run_time(pytester: pytest.Pytester, mode: str, jobs: str) -> None:
    # --batch-jobs 0 waits for the command in pytest's main thread; 1 (the default)
    # and 2 start it ahead, in a job slot. In an xdist worker 0 and 1 are the same.
    if mode == "xdist" and jobs == "0":
        pytest.skip("the same as --batch-jobs 1 in an xdist worker")
    (pytester.path / "cmds.batch").write_text("true\necho partial; touch started; sleep 987041\nsleep 987042\n")
    # The Ctrl+C reaches the whole process group (xdist's workers too), 0.2 s after `started`.
    returncode, text = stopped_run(pytester, mode, lambda pid: os.killpg(pid, signal.SIGINT), "--batch-jobs", jobs,
                                   "--batch-kill-grace", "0.3", "--junitxml=j.xml", "--batch-trace=t.json",
                                   "--batch-html=h.html")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    report = _interrupted_result(pytester)
    interrupted = report["results"][1]
    # Its real run time, from its start to its kill; its output until then.
    assert 0.15 <= interrupted["duration_ms"] / 1000 < 15, interrupted
    assert interrupted["stdout"] == "partial\n" and interrupted["exit_code"] == -1, interrupted
    [attempt] = interrupted["attempt_log"]
    assert attempt["interrupted"] is True and attempt["status"].startswith("interrupted after "), attempt
    assert attempt["duration_ms"] == interrupted["duration_ms"] and attempt["started"] > 0
    # (Under -n the third command runs on the other worker, and is interrupted too.)
    assert report["summary"]["max_command_duration_ms"] >= interrupted["duration_ms"]
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "j.xml").iter("testcase")}
    case = cases["echo partial; touch started; sleep 987041"]
    assert float(case.get("time")) >= 0.15
    assert case.find("failure").get("type") == "interrupted"
    bars = [e for e in json.loads((pytester.path / "t.json").read_text())["traceEvents"] if e["ph"] == "X"]
    [bar] = [e for e in bars if e["args"]["line"] == 2]
    assert bar["args"]["outcome"] == "interrupted" and bar["dur"] >= 150_000, bar
    assert "Command Time: avg" in text and "max 0.00 s" not in text
    assert "interrupted after" in (pytester.path / "h.html").read_text()  # its bar's title


def test_sigterm_to_pytest_alone_still_records_the_workers_interrupted_attempt(pytester: pytest.Pytester) -> None:
    # SIGTERM to pytest alone (a CI runner's first signal): the controller passes
    # the stop on to its local workers and waits a moment for their attempts.
    (pytester.path / "cmds.batch").write_text("true\necho partial; touch started; sleep 987043\n")
    returncode, text = stopped_run(pytester, "xdist", lambda pid: os.kill(pid, signal.SIGTERM),
                                   "--batch-kill-grace", "0.3", "--batch-status-interval", "0")
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    interrupted = _interrupted_result(pytester)["results"][1]
    assert 0.15 <= interrupted["duration_ms"] / 1000 < 15, interrupted
    assert interrupted["stdout"] == "partial\n", interrupted
    [attempt] = interrupted["attempt_log"]
    assert attempt["interrupted"] is True and attempt["worker"].startswith("gw"), attempt


def test_a_command_killed_by_a_realtime_signal_reports_it(pytester: pytest.Pytester, run) -> None:
    number = signal.SIGRTMIN + 3
    (pytester.path / "rt.batch").write_text(f"kill -{number} $$\n")
    result = run("rt.batch", "--batch-json=r.json", "--batch-joblog=j.tsv", "--batch-log=a.log")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rt.batch:1  kill -* $$  [[]killed by SIGRTMIN+3[]]*"])
    r = json.loads((pytester.path / "r.json").read_text())["results"][0]
    assert (r["exit_code"], r["signal"], r["attempt_log"][0]["signal"]) == (-number, "SIGRTMIN+3", "SIGRTMIN+3")
    assert (pytester.path / "j.tsv").read_text().splitlines()[1].split("\t")[7] == str(number)
    assert f"[X] Command failed (exit code -{number})" in (pytester.path / "a.log").read_text()


HOLD_SCRIPT = """
import os, signal
from pytest_batchrunner.process.signals import DeferredSignals

def theirs(signum, frame):
    print("theirs ran")

signal.signal(signal.SIGTERM, lambda s, f: print("term ran"))
original_int = signal.getsignal(signal.SIGINT)
with DeferredSignals() as held:
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, theirs)  # replaced while held: theirs must stay
    print("held", [signal.Signals(s).name for s in held.caught])
held.restore()
print("restored", signal.getsignal(signal.SIGINT) is original_int, signal.getsignal(signal.SIGTERM) is theirs)
try:
    held.replay()
except KeyboardInterrupt:
    print("replayed KeyboardInterrupt")
"""


def test_held_signals_wait_for_the_replay_and_the_handlers_come_back() -> None:
    # Real signals to a real process (the main thread of its own: DeferredSignals holds only there).
    out = subprocess.run([sys.executable, "-c", HOLD_SCRIPT], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["held ['SIGINT', 'SIGTERM']", "restored True True", "replayed KeyboardInterrupt"]
