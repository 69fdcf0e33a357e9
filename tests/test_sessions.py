"""Processes that leave the command's process group but stay in its session (``timeout(1)``,
``set -m``, ``setpgid``): killed on timeout, after the shell exits, on interruption, and by the
guardian; named as leftovers; reaped (no zombie left with the runner)."""

from __future__ import annotations

import os
import sys
import time

import pytest
from test_process import runner_with_started_command

from batchrunner import BatchRunner
from pytest_batchrunner.process.command import run_command

pytestmark = pytest.mark.usefixtures("no_leftovers")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the checks read /proc")


def zombie_children() -> list[int]:
    """Our own children that ended and were never reaped."""
    me = os.getpid()
    zombies = []
    for tid in os.listdir(f"/proc/{me}/task"):
        with open(f"/proc/{me}/task/{tid}/children") as f:
            for pid in f.read().split():
                try:
                    with open(f"/proc/{pid}/stat", "rb") as stat:
                        data = stat.read()
                except OSError:
                    continue
                if data[data.rindex(b")") + 2:][:1] == b"Z":
                    zombies.append(int(pid))
    return zombies


@linux_only
def test_timeout_kills_a_child_that_left_the_group() -> None:
    start = time.monotonic()
    a = run_command("timeout 60 sleep 230; echo done", timeout=0.5, kill_grace=0.5)
    assert a.timed_out and not a.success
    assert time.monotonic() - start < 0.5 + 0.5 + 1.0
    assert any(name.startswith("timeout 60 sleep 230") for name in a.leftovers), a.leftovers
    assert not zombie_children()


@linux_only
@pytest.mark.parametrize(
    "command",
    ["timeout 60 sleep 231 & exit 0", "bash -c 'set -m; sleep 232 & exit 0'", "(timeout 60 sleep 233 &); exit 0"],
    ids=["timeout-background", "set-m", "orphaned-grandchild"],
)
def test_session_members_left_after_the_shell_are_killed_and_named(command: str) -> None:
    a = run_command(command, kill_grace=0.5)
    assert a.exit_code == 0 and a.success
    # Named as what they were when the shell had exited. A process caught in its execve has no command
    # line yet (the kernel shows only its name): "timeout (pid N)" before it could start the sleep.
    assert any("sleep 23" in name or name.startswith(("timeout (pid ", "sleep (pid ")) for name in a.leftovers), a.leftovers
    assert not zombie_children()


@linux_only
def test_orphans_that_ended_by_themselves_are_reaped_not_named() -> None:
    a = run_command("(true &); (sleep 0.01 &); sleep 0.1", kill_grace=0.5)
    assert a.success and a.leftovers == []
    assert not zombie_children()


def test_interruption_kills_the_whole_session() -> None:
    def interrupt(stream: int, data: bytes) -> None:
        if b"go" in data:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_command("timeout 60 sleep 234 & bash -c 'set -m; sleep 235 & echo go; sleep 236'", echo=interrupt, kill_grace=0.5)
    # no_leftovers checks that the three sleeps are gone.


@linux_only
def test_guardian_kills_the_session_of_a_dead_runner(tmp_path) -> None:
    # Without its guardian token (so the token sweep cannot find it), a command's
    # child in another group of the session is still found, by its session.
    command = "touch started; env -u BATCHRUNNER_GUARDIAN timeout 60 sleep 237"
    runner = runner_with_started_command(tmp_path, command)
    time.sleep(0.1)
    runner.kill()
    runner.wait()
    # no_leftovers checks the sleep is gone.


def test_api_retries_leave_nothing(tmp_path) -> None:
    runner = BatchRunner(["timeout 60 sleep 238 & exit 1"], max_retries=2, retry_delay_sec=0, verbose=False)
    results, summary = runner.run()
    assert not results[0].success and results[0].attempts == 3
    # no_leftovers checks the three sleeps are gone.


@pytest.fixture
def batch(pytester: pytest.Pytester):
    def write(text: str) -> None:
        (pytester.path / "cmds.batch").write_text(text)

    return write


def test_plugin_timeout_of_a_command_using_timeout(pytester: pytest.Pytester, run, batch) -> None:
    batch("timeout 60 sleep 239; echo done\n")
    start = time.monotonic()
    result = run("cmds.batch", "--timeout", "1", "--batch-kill-grace", "0.3")
    assert time.monotonic() - start < 30
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 1 s*", "*timeout 60 sleep 239*"])


def test_plugin_names_leftovers_of_a_command_that_exited(pytester: pytest.Pytester, run, batch) -> None:
    batch("timeout 60 sleep 240 & exit 0\nbash -c 'set -m; sleep 241 & exit 0'\n")
    result = run("cmds.batch", "--batch-kill-grace", "0.3", "-W", "always")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*LeftoverProcessWarning*timeout 60 sleep 240*"])
