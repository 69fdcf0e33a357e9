"""SIGHUP and SIGQUIT stop a run like SIGTERM; a second Ctrl+C while it stops does not cut the reports short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.usefixtures("no_leftovers")


def start(pytester: pytest.Pytester, mode: str, *args: str) -> subprocess.Popen[bytes]:
    extra = ["-n", "2"] if mode == "xdist" else []
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", "--batch-json=r.json", *args, *extra],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_started(pytester: pytest.Pytester, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not (pytester.path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    time.sleep(0.2)


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGQUIT", "SIGTERM"])
def test_hangup_and_quit_stop_the_run_like_sigterm(pytester: pytest.Pytester, mode: str, sig: str) -> None:
    (pytester.path / "cmds.batch").write_text("echo first\ntouch started; sleep 320\necho never\n")
    proc = start(pytester, mode, "--batch-kill-grace", "0.3")
    try:
        wait_started(pytester, proc)
        os.kill(proc.pid, getattr(signal, sig))
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "BatchRunner summary" in text and "Traceback" not in text
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["summary"]["interrupted"] is True or any(r["interrupted"] for r in report["results"])


def test_a_second_ctrl_c_while_stopping_still_writes_the_reports(pytester: pytest.Pytester, mode: str) -> None:
    # The second Ctrl+C lands while the first is being handled (acknowledged), or
    # while pytest and the interpreter close down (ignored): never a traceback.
    (pytester.path / "cmds.batch").write_text(
        "echo first\nperl -e '$SIG{TERM} = \"IGNORE\"; open(F, \">started\"); close(F); sleep 321'\n"
    )
    proc = start(pytester, mode, "--batch-kill-grace", "1.5")
    try:
        wait_started(pytester, proc)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["summary"]["total_commands"] == 2
