"""The ``batchrunner`` command, run as a real subprocess: every argument and exit status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from open_stdin import output_with_stdin_open

from pytest_batchrunner import __version__

# The console script of the interpreter running the tests (its venv), else the one on PATH.
SCRIPT = next((str(p) for p in [Path(sys.executable).with_name("batchrunner")] if p.exists()),
              shutil.which("batchrunner") or "batchrunner")
ENTRY_POINTS = {
    "python -m batchrunner": [sys.executable, "-m", "batchrunner"],
    "python -m pytest_batchrunner": [sys.executable, "-m", "pytest_batchrunner"],
    "batchrunner": [SCRIPT],
}


def batchrunner(*args: str, cwd: Path, entry: str = "python -m batchrunner", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY_POINTS[entry], *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_runs_and_reports(entry: str, tmp_path: Path, no_leftovers: str) -> None:
    if entry == "batchrunner" and not Path(SCRIPT).exists():
        pytest.skip("the console script is not on PATH")
    result = batchrunner("-c", "echo one", "false", "echo three", cwd=tmp_path, entry=entry)
    assert result.returncode == 1, result.stderr
    assert "] [SUCCESS] [OK] Command completed (" in result.stdout
    assert "] [ERROR] [X] Command failed (exit code 1)\n" in result.stdout
    assert "] [INFO] Success Rate: 66.7%\n" in result.stdout
    no_traceback(result)


def test_version(tmp_path: Path) -> None:
    result = batchrunner("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"batchrunner {__version__}"


def test_all_passed_exits_0(tmp_path: Path) -> None:
    result = batchrunner("-c", "echo a", "true", cwd=tmp_path)
    assert result.returncode == 0
    assert "Success Rate: 100.0%" in result.stdout


def test_commands_run_in_the_current_directory(tmp_path: Path) -> None:
    result = batchrunner("-q", "-o", "out.json", "-c", "pwd", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads((tmp_path / "out.json").read_text())["results"][0]["stdout"].strip() == str(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Commands file not found: x.txt"),
        (b"# nothing but comments\n\n", "No commands found in x.txt"),
        (b"echo \xff\n", "x.txt:1: not valid UTF-8"),
        (b"echo a # batch: retries=lots\n", "x.txt:1: bad value for batch setting 'retries'"),
        (b"echo a # batch: tags=skip\n", "x.txt:1: bad value for batch setting 'tags': 'skip' is pytest's marker"),
    ],
)
def test_bad_input_exits_1_with_a_one_line_message(tmp_path: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / "x.txt").write_bytes(content)
    result = batchrunner("-f", "x.txt", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    no_traceback(result)


def test_a_directory_as_file_exits_1(tmp_path: Path) -> None:
    result = batchrunner("-f", ".", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    no_traceback(result)


def test_a_report_that_cannot_be_written_exits_1_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = batchrunner("-q", "-c", "echo a", "-o", "file/x.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["[X] Error: -o/--output file/x.json: not written: Not a directory"]
    if os.path.isdir("/proc/self"):
        # Not the name of the temporary file the report was to be renamed from.
        result = batchrunner("-q", "-c", "echo a", "-o", "/proc/x.json", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.splitlines() == ["[X] Error: -o/--output /proc/x.json: not written: No such file or directory"]
    no_traceback(result)
    # A JUnit file that cannot be written is named after the run; the results JSON is still written.
    result = batchrunner("-q", "-c", "echo a", "--junitxml", "file/j.xml", "-o", "r.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"[X] Error: --junitxml {tmp_path / 'file/j.xml'}: not written: Not a directory"]
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["successful"] == 1


def test_a_log_that_cannot_be_opened_is_one_line_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = batchrunner("-c", "touch ran", "-l", "file/x.log", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["[X] Error: -l/--log file/x.log: cannot open: File exists"]
    assert not (tmp_path / "ran").exists()
    result = batchrunner("-q", "-c", "true", "--junitxml", "file/x.xml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"[X] Error: --junitxml {tmp_path}/file/x.xml: not written: Not a directory"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "cmds.txt", "-o", "cmds.txt"], "-o/--output cmds.txt is the same file as the commands file cmds.txt"),
        (["-f", "cmds.txt", "-o", "none/../cmds.txt"],
         "-o/--output none/../cmds.txt is the same file as the commands file cmds.txt"),
        (["-f", "cmds.txt", "-l", "cmds.txt"], "-l/--log cmds.txt is the same file as the commands file cmds.txt"),
        (["-f", "cmds.txt", "--junitxml", "./cmds.txt"],
         "--junitxml cmds.txt is the same file as the commands file cmds.txt"),
        (["-c", "touch ran", "-o", "x.json", "--junitxml", "x.json"],
         "--junitxml x.json is the same file as -o/--output x.json: give each report its own file"),
        (["-c", "touch ran", "-o", "x.log", "-l", "x.log"],
         "-l/--log x.log is the same file as -o/--output x.log: give each report its own file"),
        (["-c", "touch ran", "-o", "."], "-o/--output .: is a directory, not a file name"),
        (["-c", "touch ran", "-l", "."], "-l/--log .: is a directory, not a file name"),
        (["-c", "touch ran", "--junitxml", "."], "--junitxml .: is a directory, not a file name"),
        (["-c", "touch ran", "-o", " "], "-o/--output needs a file name"),
    ],
)
def test_report_paths_are_checked_before_any_command_runs(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "cmds.txt").write_text("touch ran\n")
    result = batchrunner(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("[X] Error: " + message), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmds.txt"]  # nothing ran, nothing written
    assert (tmp_path / "cmds.txt").read_text() == "touch ran\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-f", "x.txt", "-c", "echo a"],
        ["-c"],
        ["-c", "echo", "--retries", "-1"],
        ["-c", "echo", "--retries", "two"],
        ["-c", "echo", "--timeout", "soon"],
        ["-c", "echo", "--retry-delay", "-3"],
        ["-c", "echo", "--workers", "0"],
        ["-c", "echo", "--no-such-option"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = batchrunner(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: batchrunner" in result.stderr
    no_traceback(result)


def test_file_with_batch_settings(tmp_path: Path, no_leftovers: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "cmds.txt").write_text(
        "# setup\n"
        "echo first\n"
        "pwd  # batch: cwd=sub\n"
        "sleep 30  # batch: timeout=0.3\n"
        "echo a \\\n"
        "  b\n"
    )
    result = batchrunner("-f", "cmds.txt", "-o", "out.json", cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads((tmp_path / "out.json").read_text())
    assert [r["line"] for r in data["results"]] == [2, 3, 4, 5]
    assert data["results"][1]["stdout"].strip() == str(tmp_path / "sub")
    assert data["results"][2]["timed_out"] is True
    assert data["results"][3]["stdout"] == "a b\n"
    assert "Success Rate: 75.0%" in result.stdout


def test_parallel_workers_retries_delay_timeout_log_output_junit(tmp_path: Path, no_leftovers: str) -> None:
    result = batchrunner(
        "-c",
        "echo x >> m; test $(wc -l < m) -ge 2",
        "sleep 30",
        "echo ok",
        "--parallel",
        "--workers", "2",
        "--retries", "1",
        "--retry-delay", "0.2",
        "--timeout", "0.5",
        "-l", "logs/run.log",
        "-o", "out/results.json",
        "--junitxml", "junit.xml",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    summary, results = data["summary"], data["results"]
    assert summary["mode"] == "parallel" and summary["workers"] == 2 and summary["max_retries"] == 1
    assert [r["attempts"] for r in results] == [2, 2, 1]
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["timed_out"] and "timed out after 0.5 s" in results[1]["stderr"]
    assert "sleep 30" in (tmp_path / "logs" / "run.log").read_text()
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert len(root.findall(".//testcase")) == 3
    assert "Results saved to: out/results.json" in result.stdout


def test_the_issues_example_command_line(tmp_path: Path, no_leftovers: str) -> None:
    (tmp_path / "cmds.txt").write_text("echo build\necho x >> m; test $(wc -l < m) -ge 3\n# done\n")
    entry = "batchrunner" if Path(SCRIPT).exists() else "python -m batchrunner"
    result = batchrunner(
        "-f", "cmds.txt", "--parallel", "--retries", "2", "-l", "run.log", "-o", "results.json", cwd=tmp_path, entry=entry
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["attempts"] for r in data["results"]] == [1, 3]
    assert data["summary"]["flaky"] == 1 and data["summary"]["mode"] == "parallel"
    assert "] [INFO] Retrying in 1.0s...\n" in result.stdout and "Success Rate: 100.0%" in result.stdout
    assert (tmp_path / "run.log").read_text().count("] [INFO] Retrying in 1.0s...\n") == 2


def test_long_option_names(tmp_path: Path) -> None:
    (tmp_path / "cmds.txt").write_text("echo a\n")
    result = batchrunner("--file", "cmds.txt", "--log", "l.log", "--output", "o.json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == ""
    assert (tmp_path / "l.log").exists() and (tmp_path / "o.json").exists()
    result = batchrunner("--commands", "echo a", "false", "--quiet", cwd=tmp_path)
    assert result.returncode == 1


def test_retry_delay_is_waited(tmp_path: Path) -> None:
    start = time.monotonic()
    result = batchrunner("-q", "-c", "false", "--retries", "2", "--retry-delay", "0.4", cwd=tmp_path)
    assert result.returncode == 1
    assert time.monotonic() - start >= 0.8


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    for commands, status in ((["echo a"], 0), (["echo a", "false"], 1)):
        result = batchrunner("-q", "-c", *commands, "-o", "r.json", "-l", "r.log", cwd=tmp_path)
        assert result.returncode == status
        assert (result.stdout, result.stderr) == ("", "")


def test_the_callers_pytest_settings_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("raise SystemExit(9)\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    env = {**os.environ, "PYTEST_ADDOPTS": "--no-such-option"}
    result = subprocess.run(
        [sys.executable, "-m", "batchrunner", "-c", "echo a"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conftest.py", "pytest.ini"]


@pytest.mark.parametrize(
    ("sig", "mode"), [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGINT, ["--parallel"])]
)
def test_interrupt_kills_every_command_writes_the_reports_and_exits_130(
    tmp_path: Path, sig: signal.Signals, mode: list[str], no_leftovers: str, interrupt_once_started
) -> None:
    result = interrupt_once_started(
        [sys.executable, "-m", "batchrunner",
         "-c", "echo done", "sleep 0.2; touch started; sleep 60 & sleep 60; wait", "sleep 60",
         "-o", "results.json", "-l", "run.log", "--junitxml", "junit.xml", *mode],
        tmp_path,
        tmp_path / "started",
        sig,
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["interrupted"] is True
    statuses = [r["status"] for r in data["results"]]
    assert statuses[:2] == ["passed", "interrupted"]
    # In parallel the third command was started ahead of its turn, and killed as well.
    assert statuses[2] in (("not run", "interrupted") if mode else ("not run",))
    assert "] [ERROR] [!] Interrupted: the run was stopped" in (tmp_path / "run.log").read_text()
    assert result.stdout.endswith("\n[!] Interrupted by user\n")  # as the original's last line
    assert (tmp_path / "junit.xml").exists()


# Ten commands at once (the default workers): the last one to start writes `started`.
TEN_RUNNING = 'touch "s.$$"; [ "$(ls s.* | wc -l)" -ge 10 ] && touch started; sleep 300'
API_RUN = """
import sys
from batchrunner import BatchRunner
runner = BatchRunner([sys.argv[1]] * 12, mode="parallel", log_file="run.log", verbose=False)
try:
    runner.run()
finally:
    runner.save_results("results.json")
"""


@pytest.mark.parametrize("entry", ["cli", "api"])
def test_interrupted_parallel_run_reports_every_killed_command_as_the_log_does(
    tmp_path: Path, entry: str, no_leftovers: str, interrupt_once_started
) -> None:
    if entry == "cli":
        argv = [sys.executable, "-m", "batchrunner", "-c", *[TEN_RUNNING] * 12, "--parallel", "-q", "-o", "results.json",
                "-l", "run.log"]
    else:
        argv = [sys.executable, "-c", API_RUN, TEN_RUNNING]
    result = interrupt_once_started(argv, tmp_path, tmp_path / "started")
    # The API raises KeyboardInterrupt again, which ends Python by SIGINT.
    assert result.returncode == (130 if entry == "cli" else -signal.SIGINT), result.stderr
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    # The ten that ran were killed: each has its attempt, its run time and the original's exit code for it.
    # (At least ten: rarely, under load, an eleventh starts as the stop is handled; it is killed and reported the same.)
    killed = [r for r in results if r["status"] == "interrupted"]
    assert len(killed) >= 10 and all(r["attempts"] == 1 and r["duration_ms"] > 0 and r["exit_code"] == -1 for r in killed)
    assert [(r["status"], r["attempts"]) for r in results if r not in killed] == [("not run", 0)] * (12 - len(killed))
    log = (tmp_path / "run.log").read_text()
    assert log.count("Error output: Command interrupted: the run was stopped while it ran") == len(killed)
    assert log.count("[X] Command interrupted: ") == len(killed) and log.count("[!] Not run: ") == 12 - len(killed)
    assert "exit code -15" not in log and "(exit code -1)" in log


def test_ctrl_c_kills_retries_in_flight(tmp_path: Path, no_leftovers: str, interrupt_once_started) -> None:
    retry = 'if [ "$BATCH_ATTEMPT" = 2 ]; then touch started; exec sleep 60; fi; exit 1'
    result = interrupt_once_started(
        [*ENTRY_POINTS["python -m batchrunner"], "-c", retry, "sleep 30", "--parallel", "--retries", "1",
         "--retry-delay", "0.1", "-o", "results.json"],
        tmp_path, tmp_path / "started",
    )
    assert result.returncode == 130, result.stdout + result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["interrupted"] is True and data["results"][0]["attempts"] >= 1
    # no_leftovers: the retry's `sleep 60` and the other command are gone.


def test_a_command_reading_stdin_gets_end_of_file_while_ours_stays_open(tmp_path: Path) -> None:
    # From a terminal or a CI step, the command's own stdin is open and never
    # written to: `cat` must get end-of-file at once, not wait for input. Had
    # it waited, its timeout would end it as a failure: a pass is the proof,
    # not the wall-clock time, which a loaded machine stretches.
    returncode, out = output_with_stdin_open([*ENTRY_POINTS["python -m batchrunner"], "-c", "cat", "--timeout", "30"], cwd=tmp_path)
    assert returncode == 0, out
    assert "] [SUCCESS] [OK] Command completed (" in out and "timed out" not in out


def test_capture_bytes_keeps_more_output(tmp_path: Path, no_leftovers: str) -> None:
    printing = "head -c 3000000 /dev/zero | tr '\\0' x"
    done = batchrunner("-c", printing, "-q", "-o", "cut.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "cut.json").read_text())["results"][0]["stdout_bytes"] == 3_000_000
    assert len(json.loads((tmp_path / "cut.json").read_text())["results"][0]["stdout"]) < 1_100_000
    done = batchrunner("-c", printing, "-q", "-o", "whole.json", "--capture-bytes", "4000000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "whole.json").read_text())["results"][0]["stdout"] == "x" * 3_000_000
    bad = batchrunner("-c", "true", "--capture-bytes", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "argument --capture-bytes: 'lots' is not a whole number" in bad.stderr


def test_commands_from_a_pipe(tmp_path: Path, no_leftovers: str) -> None:
    # `-f /dev/stdin` and `-f <(...)`, as the original read any file; a pipe's
    # lines run from memory, so one with `# batch:` settings is refused, naming it.
    argv = [sys.executable, "-m", "batchrunner", "-f", "/dev/stdin", "-q", "-o", "r.json"]
    done = subprocess.run(argv, input="echo hi\necho there\n", cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["stdout"] for r in json.loads((tmp_path / "r.json").read_text())["results"]] == ["hi\n", "there\n"]
    argv[-1] = "s.json"
    done = subprocess.run(argv, input="echo a\necho b  # batch: timeout=3\n", cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and not (tmp_path / "s.json").exists()
    assert done.stderr.strip() == (
        "[X] Error: /dev/stdin:2: '# batch:' settings need a regular file (cwd= counts from its folder): "
        "write the commands to a file first"
    )


def test_a_reader_that_went_away_leaves_the_exit_status_the_runs(tmp_path: Path, no_leftovers: str) -> None:
    # ``batchrunner ... | head -0``: buffered output (no PYTHONUNBUFFERED) that can no longer be
    # written must not turn the exit status into Python's 120.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    statuses = []
    for command in ("true", "false"):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before anything is written
        try:
            proc = subprocess.run([sys.executable, "-m", "batchrunner", "-c", command], cwd=tmp_path, env=env,
                                  stdout=write, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(write)
        assert b"Traceback" not in proc.stderr
        statuses.append(proc.returncode)
    assert statuses == [0, 1]
