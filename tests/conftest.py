"""Shared fixtures: run modes (in-process and under ``-n 2``) and the leftover-process check.

Every test gets a unique token in ``BATCHRUNNER_TEST_TOKEN``; commands inherit
it, so any process still carrying it after a run is one the run left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytest_plugins = ["pytester"]

GUARDIAN_MARK = b"pytest_batchrunner/process/guardian_process.py"


def processes_with_token(token: str) -> list[str]:
    """Processes (other than this one and guardians) whose environment holds *token*."""
    if not sys.platform.startswith("linux"):
        pytest.skip("process scan needs /proc")
    found = []
    needle = f"BATCHRUNNER_TEST_TOKEN={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().split(b") ", 1)[1][:1] in (b"Z", b"X"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if GUARDIAN_MARK in cmdline:
            continue
        text = cmdline.replace(b"\0", b" ").decode(errors="replace")
        found.append(f"{entry}: {text}")
    return found


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = uuid.uuid4().hex
    monkeypatch.setenv("BATCHRUNNER_TEST_TOKEN", value)
    return value


@pytest.fixture
def no_leftovers(token: str):
    """Fail the test if a process started during it is still alive shortly after it."""
    yield token
    deadline = time.monotonic() + 3.0
    left = processes_with_token(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_with_token(token)
    for line in left:
        pid = int(line.split(":", 1)[0])
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, "processes left behind:\n" + "\n".join(left)


@pytest.fixture(params=["inprocess", "xdist"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run each scenario in-process and under ``-n 2``."""
    return request.param


@pytest.fixture
def xdist_workers() -> str:
    """How many xdist workers the xdist mode uses (a test module may override it)."""
    return "2"


@pytest.fixture
def run(pytester: pytest.Pytester, mode: str, no_leftovers: str, xdist_workers: str):
    """``run(*args)``: pytest in a subprocess, with ``-n 2`` in the xdist mode; checks leftovers."""

    def _run(*args: str, timeout: float = 120) -> pytest.RunResult:
        extra = ["-n", xdist_workers] if mode == "xdist" else []
        return pytester.runpytest_subprocess(*args, *extra, "-p", "no:cacheprovider", timeout=timeout)

    return _run


@pytest.fixture
def interrupt_once_started():
    """``interrupt_once_started(argv, cwd, started, sig=SIGINT)``: see :func:`_interrupt_once_started`."""
    return _interrupt_once_started


def _interrupt_once_started(argv: list[str], cwd, started, sig: int = signal.SIGINT) -> subprocess.CompletedProcess[str]:
    """Run *argv* in its own process group, send *sig* to the group once the file *started* exists, and wait.

    The group gets it as a terminal's Ctrl+C would reach it; the commands run in
    their own sessions, so only the runner gets it.
    """
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.002)
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
