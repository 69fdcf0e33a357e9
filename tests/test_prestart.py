"""Commands that start before pytest is ready (the Python API and the command line).

``BatchRunner.run()`` starts the leading commands while it imports and
configures pytest; the plugin's job runner then adopts them. Whatever the
timing, every command must run exactly once, in order in sequential mode, with
the environment its item would give it, and a Ctrl+C in that window must be
handled like any other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchrunner import BatchRunner
from pytest_batchrunner.batchfile import parse_batch_text
from pytest_batchrunner.process.prestart import Prestart

ORDER_LOG = "order.log"


def logged(tag: str, body: str = "true") -> str:
    """A command that logs its start and end (with its attempt) around *body*."""
    return (
        f'echo "start {tag} $BATCH_ATTEMPT" >> {ORDER_LOG}; {body}; status=$?; '
        f'echo "end {tag} $BATCH_ATTEMPT" >> {ORDER_LOG}; exit $status'
    )


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
@pytest.mark.parametrize("source", ["list", "file"])
def test_every_command_runs_exactly_once(in_tmp: Path, mode: str, source: str, no_leftovers: str) -> None:
    commands = [logged(str(i)) for i in range(1, 31)]
    if source == "file":
        (in_tmp / "cmds.txt").write_text("\n".join(commands) + "\n")
        runner = BatchRunner.from_file(in_tmp / "cmds.txt", mode=mode, verbose=False)
    else:
        runner = BatchRunner(commands, mode=mode, verbose=False)
    results, summary = runner.run()
    assert summary["successful"] == 30 and all(r.attempts == 1 for r in results)
    lines = (in_tmp / ORDER_LOG).read_text().splitlines()
    assert sorted(lines) == sorted(f"{what} {i} 1" for i in range(1, 31) for what in ("start", "end"))
    if mode == "sequential":
        assert lines == [f"{what} {i} 1" for i in range(1, 31) for what in ("start", "end")]


def test_sequential_commands_never_overlap_and_a_retry_comes_before_the_next_command(in_tmp: Path, no_leftovers: str) -> None:
    marker = in_tmp / "tries"
    failing_once = f"echo x >> {marker}; test $(wc -l < {marker}) -ge 2"
    commands = [logged("a", "sleep 0.05"), logged("b", failing_once), logged("c", "sleep 0.05"), logged("d")]
    results, summary = BatchRunner(commands, max_retries=1, retry_delay_sec=0, verbose=False).run()
    assert [r.attempts for r in results] == [1, 2, 1, 1] and summary["successful"] == 4
    assert (in_tmp / ORDER_LOG).read_text().splitlines() == [
        "start a 1", "end a 1",
        "start b 1", "end b 1",
        "start b 2", "end b 2",
        "start c 1", "end c 1",
        "start d 1", "end d 1",
    ]


def test_a_command_started_early_gets_its_items_environment(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_THE_CALLER", "yes")
    show = "env | grep -E '^(BATCH_|FROM_THE_CALLER|PYTEST_CURRENT_TEST)' | sort"
    (in_tmp / "sub").mkdir()
    # Line 1 may start before pytest is ready; line 2 has settings, so it and
    # everything after it wait for pytest's items.
    (in_tmp / "cmds.txt").write_text(f"{show}\n{show}  # batch: cwd=sub\n{show}\n")
    results, _ = BatchRunner.from_file(in_tmp / "cmds.txt", verbose=False).run()
    path = str(in_tmp / "cmds.txt")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # this test may itself run in an xdist worker
    for line, result in enumerate(results, 1):
        assert result.stdout.splitlines() == [
            "BATCH_ATTEMPT=1", f"BATCH_FILE={path}", f"BATCH_LINE={line}", f"BATCH_WORKER={worker}", "FROM_THE_CALLER=yes",
        ]


def test_a_failure_stops_the_early_start_in_sequential_mode(in_tmp: Path, no_leftovers: str) -> None:
    commands = [logged("a"), logged("b", "false"), logged("c")]
    results, summary = BatchRunner(commands, verbose=False).run()
    assert [r.success for r in results] == [True, False, True]
    assert (in_tmp / ORDER_LOG).read_text().splitlines() == [
        "start a 1", "end a 1", "start b 1", "end b 1", "start c 1", "end c 1",
    ]


@pytest.mark.parametrize("mode", [[], ["--parallel"]])
def test_ctrl_c_while_pytest_is_still_starting(tmp_path: Path, mode: list[str], no_leftovers: str, interrupt_once_started) -> None:
    # The first command starts some 25 ms after the process, pytest is ready
    # some 100 ms later: the signal lands while pytest is being imported.
    result = interrupt_once_started(
        [sys.executable, "-m", "batchrunner", "-c", "touch started; sleep 60", "sleep 61",
         "-o", "results.json", "-l", "run.log", *mode],
        tmp_path,
        tmp_path / "started",
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["interrupted"] is True
    statuses = [r["status"] for r in data["results"]]
    assert statuses[0] == "interrupted"
    # In parallel the second command was running too, and killed as well.
    assert statuses[1] in (("not run", "interrupted") if mode else ("not run",))
    assert "] [ERROR] [!] Interrupted: the run was stopped" in (tmp_path / "run.log").read_text()


def test_the_command_line_and_the_api_start_commands_without_importing_pytest() -> None:
    # The layers that run before pytest is imported must not import it themselves,
    # or the start-up they exist to hide would come back.
    code = (
        "import sys, batchrunner.cli, batchrunner.api, pytest_batchrunner.process.prestart\n"
        "from batchrunner import BatchRunner\n"
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith('_pytest')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- the Prestart itself (no pytest in it): the look-ahead's rules -------------------------------


def _prestart(text: str, jobs: int, timeout: float | None = None) -> Prestart:
    return Prestart(parse_batch_text(text.encode(), "f.batch"), "f.batch", jobs=jobs, timeout=timeout, kill_grace=0.3)


def _settle(prestart: Prestart) -> dict[int, Any]:
    """Wait until nothing runs, then hand off: the attempts started, by line."""
    deadline = time.monotonic() + 30
    while prestart.running and time.monotonic() < deadline:
        time.sleep(0.01)
    started = prestart.handoff()
    return {key[1]: future.result(timeout=30) for key, future in started.items()}


def test_prestart_stops_at_a_failure_and_at_a_line_with_settings(in_tmp: Path, no_leftovers: str) -> None:
    failing = _prestart("echo a\nfalse\necho c\n", jobs=1)
    with_settings = _prestart("echo a\necho b  # batch: timeout=5\necho c\n", jobs=3)
    try:
        failing.start()
        with_settings.start()
        attempts = _settle(failing)
        assert sorted(attempts) == [1, 2] and attempts[1].stdout == "a\n" and attempts[2].exit_code == 1
        assert sorted(_settle(with_settings)) == [1]
    finally:
        failing.close()
        with_settings.close()


def test_prestart_runs_at_most_jobs_at_once_and_nothing_after_handoff(in_tmp: Path, no_leftovers: str) -> None:
    prestart = _prestart(logged("1", "sleep 0.2") + "\n" + logged("2", "sleep 0.2") + "\n" + logged("3") + "\n", jobs=2)
    try:
        prestart.start()
        assert len(prestart.handoff()) == 2  # the third waits for a free slot, and handoff came first
        time.sleep(0.5)
        assert "start 3 1" not in (in_tmp / ORDER_LOG).read_text()
    finally:
        prestart.close()


def test_prestart_close_kills_what_is_running(in_tmp: Path, no_leftovers: str) -> None:
    prestart = _prestart("sleep 60 & sleep 61; wait\n", jobs=1)
    prestart.start()
    deadline = time.monotonic() + 30
    while not prestart.live and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    prestart.close()
    assert time.monotonic() - start < 5
    (attempt,) = [f.result() for f in prestart.started.values()]
    # Killed by close(): interrupted, not a command that died of SIGTERM by itself.
    assert attempt.interrupted and attempt.signal is None and not attempt.success
