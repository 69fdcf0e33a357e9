"""The process layer, with real processes: RELIABILITY.md's cases at the lowest level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from open_stdin import output_with_stdin_open

from pytest_batchrunner.process.capture import OutputBuffer
from pytest_batchrunner.process.command import run_command

pytestmark = pytest.mark.usefixtures("no_leftovers")


def test_exit_status_and_output() -> None:
    a = run_command("echo out; echo err >&2; exit 3")
    assert (a.exit_code, a.signal, a.timed_out, a.success) == (3, None, False, False)
    assert (a.stdout, a.stderr) == ("out\n", "err\n")
    assert a.describe_status() == "exit code 3"


def test_expected_exit_code() -> None:
    assert run_command("exit 1", expected_exit=1).success
    assert not run_command("true", expected_exit=1).success


def test_timeout_kills_grandchildren_within_timeout_plus_grace() -> None:
    start = time.monotonic()
    a = run_command("sh -c 'sleep 201' & sleep 202 & wait", timeout=0.3, kill_grace=0.5)
    elapsed = time.monotonic() - start
    assert a.timed_out and not a.success
    assert a.describe_status() == "timed out after 0.3 s"
    assert elapsed < 0.3 + 0.5 + 0.5


def test_trapped_term_is_killed_by_escalation() -> None:
    start = time.monotonic()
    a = run_command("trap '' TERM INT; sleep 203", timeout=0.2, kill_grace=0.3)
    assert a.timed_out and not a.success
    assert 0.45 <= time.monotonic() - start < 1.5


def test_trap_exit_zero_on_term_is_still_a_timeout() -> None:
    a = run_command("trap 'exit 0' TERM; sleep 204 & wait", timeout=0.2, kill_grace=0.5)
    assert a.exit_code == 0 and a.timed_out and not a.success


def test_background_child_holding_the_pipe_does_not_hang() -> None:
    start = time.monotonic()
    a = run_command("sleep 205 & echo hi", kill_grace=0.5)
    assert time.monotonic() - start < 1.0
    assert a.success and a.stdout == "hi\n"
    assert len(a.leftovers) == 1 and "(pid " in a.leftovers[0]


def test_stdin_is_at_end_of_file_even_when_ours_is_an_open_pipe() -> None:
    # The runner's own stdin is a pipe held open (as under a CI runner or a
    # terminal; pytest gives its tests /dev/null, so the runner is a child here).
    # A command inheriting it would wait in `cat` until the timeout.
    code = (
        "import time\n"
        "from pytest_batchrunner.process.command import run_command\n"
        "start = time.monotonic()\n"
        "a = run_command('cat; read x || echo eof', timeout=5)\n"
        "print(repr(a.stdout), a.success, round(time.monotonic() - start, 3))\n"
    )
    _, out = output_with_stdin_open([sys.executable, "-c", code], timeout=30)
    stdout, success, seconds = out.rsplit(" ", 2)
    # Had `cat` inherited the open pipe, the 5 s timeout would have ended it: success is the proof.
    assert (stdout, success) == ("'eof\\n'", "True"), out


def test_signal_name_of_a_segfault() -> None:
    a = run_command("kill -SEGV $$")
    assert (a.exit_code, a.signal) == (None, "SIGSEGV")
    assert a.describe_status() == "killed by SIGSEGV"


def test_child_killed_by_signal_is_explained() -> None:
    a = run_command("sh -c 'kill -KILL $$'; exit $?")
    assert a.exit_code == 137
    assert a.describe_status() == "exit code 137 (128+SIGKILL)"


def test_hostile_bytes_decode_and_serialise() -> None:
    a = run_command(r"printf 'a\000b\033c\377d\n'; printf '\377' >&2")
    assert a.stdout == "a\x00b\x1bc\ufffdd\n"
    assert a.stderr == "\ufffd"
    # What the JSON report and the JUnit file need: text that encodes as UTF-8
    # (surrogateescape decoding would leave lone surrogates, which do not).
    json.dumps([a.stdout, a.stderr], ensure_ascii=False).encode("utf-8")


def test_large_output_keeps_tail_and_counts_dropped_bytes() -> None:
    a = run_command("seq 1 200000", capture_bytes=4096)
    assert a.stdout_bytes == len("".join(f"{i}\n" for i in range(1, 200001)))
    assert a.stdout.endswith("199999\n200000\n")
    assert a.stdout.startswith("1\n2\n")
    assert "bytes dropped by pytest-batchrunner" in a.stdout
    assert len(a.stdout) < 4096 + 200


def test_output_buffer_bounds_memory() -> None:
    buf = OutputBuffer(limit=1000, head=100)
    for _ in range(10_000):
        buf.add(b"x" * 1000)
    assert buf.total == 10_000_000
    assert len(buf.head) + len(buf.tail) < 100 + 2 * 1000 + 65536 + 1000
    assert buf.dropped == 10_000_000 - 1000


def test_live_echo_receives_output() -> None:
    chunks: list[tuple[int, bytes]] = []
    run_command("echo a; echo b >&2", echo=lambda stream, data: chunks.append((stream, data)))
    assert b"".join(d for s, d in chunks if s == 1) == b"a\n"
    assert b"".join(d for s, d in chunks if s == 2) == b"b\n"


def test_environment_and_cwd(tmp_path) -> None:
    a = run_command("pwd; echo $X", cwd=tmp_path, env={**os.environ, "X": "42"})
    assert a.stdout == f"{tmp_path}\n42\n"


def test_interruption_kills_the_group() -> None:
    def interrupt(stream: int, data: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_command("sleep 206 & echo go; sleep 207", echo=interrupt, kill_grace=0.5)
    # no_leftovers checks that both sleeps are gone.


# The shell survives SIGTERM and exits by itself, as a shell does whose child died of it: exit code 143.
EXITS_143_ON_TERM = "trap 'exit 143' TERM; touch started; sleep 210 & wait"


@pytest.mark.parametrize(
    ("command", "timeout"),
    [(EXITS_143_ON_TERM, None), (EXITS_143_ON_TERM, 60.0), ("trap '' TERM; touch started; sleep 12", 10.0)],
    ids=["exits-143", "exits-143-before-its-timeout", "ignores-it-until-its-timeout"],
)
def test_a_command_signalled_by_the_runs_stop_is_interrupted_whatever_happens_next(tmp_path: Path, command: str, timeout) -> None:
    # Decided by who signalled first, never by the exit status the shell chose (143 looks like a failure of its
    # own), nor by its timeout firing later while it ignores the stop (it is killed then, and still interrupted).
    import threading
    from concurrent.futures import Future

    from pytest_batchrunner.process.command import start_command, terminate_in_flight

    lock, live, future = threading.Lock(), set(), Future()

    def started(pgid: int) -> None:
        with lock:
            live.add(pgid)

    running = start_command(command, cwd=tmp_path, timeout=timeout, kill_grace=0.2, started=started)
    threading.Thread(target=lambda: future.set_result(running.wait())).start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.01)
    terminate_in_flight(lock, live, [future], 30.0)
    attempt = future.result(timeout=30)
    assert (attempt.interrupted, attempt.timed_out, attempt.exit_code, attempt.success) == (True, False, None, False)
    assert attempt.describe_status().startswith("interrupted after ")


# A runner in its own process group runs commands in a thread, its main thread sends SIGINT to that group as a
# terminal's Ctrl+C would; it stops at the first command that does not pass: one caught by a Ctrl+C as it was spawned.
CTRL_C_DURING_SPAWNS = """
import json, os, signal, threading, time
from pytest_batchrunner.process.command import run_command
signal.signal(signal.SIGINT, lambda *_: None)
attempts = [run_command("true")]  # the guardian starts before the first Ctrl+C
def spawn():
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and attempts[-1].success:
        attempts.append(run_command("true"))
thread = threading.Thread(target=spawn)
thread.start()
while thread.is_alive():
    os.killpg(0, signal.SIGINT)
    time.sleep(0.0002)
print(json.dumps([[a.success, a.interrupted, a.describe_status()] for a in attempts]))
"""


def test_a_command_caught_by_a_ctrl_c_as_it_is_spawned_is_interrupted_not_failed() -> None:
    # Between the fork and setsid() the shell is still in the runner's process group, and a Ctrl+C kills it:
    # the run's stop, not the command's failure ("killed by SIGINT").
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_DURING_SPAWNS], capture_output=True, text=True, timeout=60, start_new_session=True
    )
    assert result.returncode == 0, result.stderr
    attempts = json.loads(result.stdout)
    assert [status for success, interrupted, status in attempts if not success and not interrupted] == []
    assert attempts[-1][1], f"no spawn was caught by a Ctrl+C in {len(attempts)} commands"
    assert attempts[-1][2].startswith("interrupted after ")


@pytest.mark.parametrize(
    "command",
    ["touch started; sleep 208", "touch started; kill -9 $PPID; sleep 209"],
    ids=["runner-killed", "command-kills-runner"],
)
def test_guardian_kills_commands_of_a_dead_runner(tmp_path, command: str) -> None:
    # A runner process dies by SIGKILL (no finally, no atexit) while its command
    # runs; in the second case before it could even register the command.
    runner = runner_with_started_command(tmp_path, command)
    runner.kill()
    runner.wait()
    # no_leftovers checks the sleep is gone (the guardian's grace is 0.2 s).


def runner_with_started_command(tmp_path: Path, command: str) -> subprocess.Popen[bytes]:
    """A runner process (``run_command(command)``), returned once *command* has touched ``started``."""
    runner = subprocess.Popen(
        [sys.executable, "-c", f"from pytest_batchrunner.process.command import run_command; run_command({command!r})"],
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return runner
