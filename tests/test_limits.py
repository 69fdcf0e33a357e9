"""Exhausted limits, for real: ``ulimit -n`` (open files) and the kernel's per-argument limit
(commands over 128 KiB). A clean wait or a clear message, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pytest_batchrunner.process.command import run_command

pytestmark = pytest.mark.usefixtures("no_leftovers")


def under_ulimit(limit: str, argv: list[str], cwd) -> subprocess.CompletedProcess[str]:
    """*argv* run under ``ulimit`` *limit* (e.g. ``-n 96``: soft and hard)."""
    script = f"ulimit {limit} && exec \"$@\""
    return subprocess.run(["bash", "-c", script, "bash", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_many_jobs_under_a_low_open_files_limit(pytester: pytest.Pytester, mode: str) -> None:
    (pytester.path / "cmds.batch").write_text("sleep 0.2\n" * 60)
    extra = ["-n", "2"] if mode == "xdist" else []
    done = under_ulimit("-n 96", [sys.executable, "-m", "pytest", "cmds.batch", "-q", "-p", "no:cacheprovider",
                                  "--batch-jobs", "100", *extra], pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 passed" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr and "Too many open files" not in done.stdout


def test_cli_parallel_workers_under_a_low_open_files_limit(tmp_path) -> None:
    (tmp_path / "cmds.txt").write_text("sleep 0.2\n" * 60)
    done = under_ulimit("-n 96", [sys.executable, "-m", "batchrunner", "-f", "cmds.txt", "--parallel",
                                  "--workers", "100", "-q", "-o", "r.json"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["successful"] == 60


def test_soft_open_files_limit_is_raised_toward_the_hard_one(tmp_path) -> None:
    (tmp_path / "cmds.txt").write_text("ulimit -Sn\n")
    done = under_ulimit("-S -n 64", [sys.executable, "-m", "batchrunner", "-f", "cmds.txt", "-q", "-o", "r.json"],
                        tmp_path)
    assert done.returncode == 0, done.stderr
    soft = json.loads((tmp_path / "r.json").read_text())["results"][0]["stdout"].strip()
    assert soft == "unlimited" or int(soft) > 64


def test_no_descriptor_left_and_nothing_running_is_a_clear_failure(tmp_path) -> None:
    # Every descriptor taken by the program itself: nothing to wait for, so the
    # command fails with the OS's words, no traceback.
    script = textwrap.dedent("""
        import os
        from pytest_batchrunner.process.command import SpawnError, run_command
        run_command("true")  # the guardian and the limits are set up
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            run_command("true")
        except SpawnError as exc:
            print("clean:", exc)
    """)
    done = under_ulimit("-n 128", [sys.executable, "-c", script], tmp_path)
    assert "clean: [Errno 24] cannot start the command: Too many open files (nothing else is running)" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_command_longer_than_the_kernel_takes_runs_as_written() -> None:
    payload = "x" * 300_000
    a = run_command(f"printf %s '{payload}' | wc -c; printf 'caf\\303\\251 %s\\n' \"$((6*7))\"")
    assert a.success, a.stderr
    assert a.stdout.split() == ["300000", "café", "42"]


def test_a_long_command_in_a_batch_file(pytester: pytest.Pytester, run) -> None:
    long = "echo " + "y" * 200_000 + " | wc -c"
    (pytester.path / "cmds.batch").write_text(long + "\nexit 0\n")
    result = run("cmds.batch", "--batch-json=r.json")
    result.assert_outcomes(passed=2)
    assert json.loads((pytester.path / "r.json").read_text())["results"][0]["stdout"].strip() == "200001"
    assert "Traceback" not in result.stdout.str()
