"""The original BatchRunner's Python API: ``from batchrunner import BatchRunner``.

Every test here calls the API from inside a running pytest test, as test-suite
orchestration does; the commands are real.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest

import batchrunner
import pytest_batchrunner
from batchrunner import BatchRunner, CommandResult, load_commands_from_file
from original_lines import parse_log
from pytest_batchrunner.batchfile import BatchFileError

PY = sys.executable
ORIGINAL_SUMMARY_KEYS = [
    "total_commands",
    "successful",
    "failed",
    "success_rate",
    "total_duration_ms",
    "avg_command_duration_ms",
    "min_command_duration_ms",
    "max_command_duration_ms",
    "mode",
    "max_retries",
]
NEW_SUMMARY_KEYS = ["workers", "timed_out", "flaky", "reruns", "skipped", "not_run", "interrupted"]


def fails_until(attempt: int, marker: Path) -> str:
    """A command that fails until its *attempt*-th run (counted in *marker*), then succeeds."""
    return f"echo x >> {marker}; test $(wc -l < {marker}) -ge {attempt}"


# -- imports and CommandResult ----------------------------------------------------------------


def test_names_are_importable_from_both_packages() -> None:
    assert batchrunner.BatchRunner is pytest_batchrunner.BatchRunner is BatchRunner
    assert batchrunner.CommandResult is pytest_batchrunner.CommandResult is CommandResult
    assert batchrunner.load_commands_from_file is pytest_batchrunner.load_commands_from_file
    assert batchrunner.__version__ == pytest_batchrunner.__version__


def test_command_result_keeps_the_original_constructor_and_to_dict() -> None:
    result = CommandResult(
        command="echo test",
        success=True,
        exit_code=0,
        stdout="test\n",
        stderr="",
        duration_ms=150.5,
        timestamp="2026-02-13T00:00:00",
    )
    data = result.to_dict()
    assert list(data)[:7] == ["command", "success", "exit_code", "stdout", "stderr", "duration_ms", "timestamp"]
    assert data["command"] == "echo test" and data["duration_ms"] == 150.5
    assert data["attempts"] == 1 and data["timed_out"] is False


def test_constructor_keeps_the_arguments_as_attributes() -> None:
    runner = BatchRunner(["echo a"], verbose=False)
    assert runner.commands == ["echo a"]
    assert (runner.mode, runner.max_retries, runner.retry_delay_sec) == ("sequential", 0, 1.0)
    assert runner.timeout_sec is None and runner.log_file is None and runner.verbose is False
    assert runner.workers == 10


# -- running ------------------------------------------------------------------------------------


def test_sequential_run_returns_results_in_order_and_the_summary(no_leftovers: str) -> None:
    runner = BatchRunner(["echo one", "echo two >&2; exit 3", "echo three"], verbose=False)
    results, summary = runner.run()

    assert [r.command for r in results] == ["echo one", "echo two >&2; exit 3", "echo three"]
    assert [r.success for r in results] == [True, False, True]
    assert [r.exit_code for r in results] == [0, 3, 0]
    assert results[0].stdout == "one\n" and results[1].stderr == "two\n"
    assert all(r.duration_ms > 0 and r.timestamp for r in results)
    assert list(summary)[: len(ORIGINAL_SUMMARY_KEYS)] == ORIGINAL_SUMMARY_KEYS
    assert set(NEW_SUMMARY_KEYS) <= set(summary)
    assert summary["total_commands"] == 3 and summary["successful"] == 2 and summary["failed"] == 1
    assert summary["success_rate"] == 200 / 3  # not rounded, as the original's
    assert summary["mode"] == "sequential" and summary["max_retries"] == 0
    assert summary["min_command_duration_ms"] <= summary["avg_command_duration_ms"] <= summary["max_command_duration_ms"]
    assert runner.results == results and runner.summary == summary


def test_parallel_results_follow_the_input_order(no_leftovers: str) -> None:
    commands = ["sleep 0.4; echo slow", "echo fast", "sleep 0.2; echo middle"]
    results, summary = BatchRunner(commands, mode="parallel", verbose=False).run()
    assert [r.stdout for r in results] == ["slow\n", "fast\n", "middle\n"]
    assert summary["mode"] == "parallel" and summary["workers"] == 3


def test_parallel_mode_runs_ten_sleeps_at_once(no_leftovers: str) -> None:
    runner = BatchRunner(["sleep 0.5"] * 10, mode="parallel", verbose=False)
    start = time.monotonic()
    results, summary = runner.run()
    elapsed = time.monotonic() - start
    assert summary["successful"] == 10
    assert elapsed < 1.0, f"ten 'sleep 0.5' in parallel took {elapsed:.2f} s"


def test_an_unknown_mode_raises_value_error_at_run_not_before() -> None:
    runner = BatchRunner(["echo test"], mode="invalid", verbose=False)
    with pytest.raises(ValueError, match="invalid"):
        runner.run()


@pytest.mark.parametrize(
    "option",
    [{"max_retries": -1}, {"retry_delay_sec": -1}, {"timeout_sec": -5}, {"workers": 0}],
)
def test_bad_arguments_raise_value_error(option: dict) -> None:
    with pytest.raises(ValueError):
        BatchRunner(["echo a"], verbose=False, **option).run()


def test_an_empty_command_list_gives_empty_results_and_a_summary_of_zeros(capfd: pytest.CaptureFixture[str]) -> None:
    results, summary = BatchRunner([], verbose=False).run()
    assert results == []
    assert summary["total_commands"] == 0 and summary["successful"] == 0 and summary["failed"] == 0
    assert summary["success_rate"] == 0.0 and summary["avg_command_duration_ms"] == 0.0
    assert capfd.readouterr() == ("", "")


def test_commands_run_exactly_as_given(no_leftovers: str) -> None:
    commands = [
        "printf 'a\\n'\nprintf 'b\\n'",  # two lines, no backslash: a batch file line could not hold it
        "# only a comment",
        "  echo padded  ",
        "echo '# batch: timeout=0.1'; sleep 0.3 # batch: timeout=0.1",
        "",
    ]
    results, summary = BatchRunner(commands, verbose=False).run()
    assert [r.command for r in results] == commands
    assert results[0].stdout == "a\nb\n"
    assert results[2].stdout == "padded\n"
    # In a list, "# batch:" is only a shell comment: the command is not timed out.
    assert results[3].success and not results[3].timed_out
    assert summary["successful"] == 5


def test_commands_run_in_the_callers_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "here.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    results, _ = BatchRunner(["pwd", "cat here.txt"], verbose=False).run()
    assert results[0].stdout.strip() == str(tmp_path)
    assert results[1].stdout == "x"


# -- retries and timeouts -----------------------------------------------------------------------


def test_max_retries_two_means_up_to_three_attempts_retry_delay_apart(tmp_path: Path, no_leftovers: str) -> None:
    flaky, broken = tmp_path / "flaky", tmp_path / "broken"
    runner = BatchRunner(
        [fails_until(3, flaky), fails_until(10, broken), "echo fine"],
        max_retries=2,
        retry_delay_sec=0.2,
        verbose=False,
    )
    start = time.monotonic()
    results, summary = runner.run()
    elapsed = time.monotonic() - start

    assert [r.success for r in results] == [True, False, True]
    assert [r.attempts for r in results] == [3, 3, 1]
    assert results[0].flaky and len(results[0].attempt_log) == 3
    assert broken.read_text().count("x") == 3
    assert summary["reruns"] == 4 and summary["flaky"] == 1 and summary["max_retries"] == 2
    assert elapsed >= 4 * 0.2


def test_a_timed_out_command_fails_and_its_stderr_says_so(no_leftovers: str) -> None:
    start = time.monotonic()
    results, summary = BatchRunner(["echo before >&2; sleep 30"], timeout_sec=0.5, verbose=False).run()
    elapsed = time.monotonic() - start

    (result,) = results
    assert not result.success and result.timed_out
    assert result.stderr.startswith("before\n")
    assert "timed out after 0.5 s" in result.stderr
    assert summary["timed_out"] == 1 and summary["failed"] == 1
    assert elapsed < 5


def test_every_attempt_gets_the_timeout(no_leftovers: str) -> None:
    results, _ = BatchRunner(["sleep 30"], timeout_sec=0.3, max_retries=1, retry_delay_sec=0, verbose=False).run()
    (result,) = results
    assert result.attempts == 2
    assert [a["timed_out"] for a in result.attempt_log] == [True, True]
    assert result.stderr.count("timed out") == 1


def test_pytest_timeout_in_the_environment_does_not_apply(monkeypatch: pytest.MonkeyPatch, no_leftovers: str) -> None:
    monkeypatch.setenv("PYTEST_TIMEOUT", "0.1")
    # The first is started before pytest is ready (with the API's own timeout,
    # whatever the plugin would resolve); the second, with a setting, only by its
    # item, with the timeout pytest-timeout resolves: there the environment must not count.
    results, _ = BatchRunner(["sleep 0.3", "sleep 0.3  # batch: retries=0"], verbose=False).run()
    assert [(r.success, r.exit_code) for r in results] == [(True, 0), (True, 0)]


# -- output ---------------------------------------------------------------------------------


def test_verbose_prints_progress_and_the_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    BatchRunner(["echo one", "exit 4", fails_until(2, tmp_path / "m")], max_retries=1, retry_delay_sec=0).run()
    out = capsys.readouterr().out
    # The original's lines: "[YYYY-MM-DD HH:MM:SS] [LEVEL] message", its messages and levels.
    messages = re.findall(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[([A-Z]+)\] (.*)$", out, re.M)
    assert ("INFO", "BatchRunner v" + pytest_batchrunner.__version__ + " - Starting 3 commands") in messages
    assert ("INFO", "Executing: echo one (attempt 1/2)") in messages
    assert [m for m in messages if m[1].startswith("[OK]")][0][0] == "SUCCESS"
    assert ("ERROR", "[X] Command failed (exit code 4)") in messages
    assert messages.count(("INFO", "Retrying in 0.0s...")) == 2  # exit 4, and the flaky one
    assert "\n[3/3] Starting command...\n" in out  # after a blank line, as the original's
    assert ("INFO", "Success Rate: 66.7%") in messages and ("INFO", "EXECUTION SUMMARY") in messages


def test_quiet_prints_nothing_at_all(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftovers: str
) -> None:
    monkeypatch.chdir(tmp_path)  # where a core dump would go
    commands = [
        "echo out; echo err >&2",
        "exit 1",
        "sleep 30",  # timed out
        "sleep 30 & echo leftover",  # a leftover process: the plugin warns
        "kill -SEGV $$",
    ]
    results, summary = BatchRunner(commands, timeout_sec=0.5, max_retries=1, retry_delay_sec=0, verbose=False).run()
    BatchRunner([], verbose=False).run()
    BatchRunner(["echo x"], verbose=False).save_results(tmp_path / "r.json")
    assert results[3].leftovers
    assert results[4].signal == "SIGSEGV"
    assert capfd.readouterr() == ("", "")


# -- files ----------------------------------------------------------------------------------


def test_log_file_and_save_results(tmp_path: Path, no_leftovers: str) -> None:
    log, output = tmp_path / "logs" / "run.log", tmp_path / "results.json"
    runner = BatchRunner(["echo test", "false"], log_file=log, verbose=False)
    results, summary = runner.run()
    runner.save_results(output)

    text = log.read_text()
    assert "echo test" in text and "false" in text
    data = json.loads(output.read_text())
    assert data["summary"]["total_commands"] == 2 and data["summary"]["success_rate"] == 50.0
    assert [r["command"] for r in data["results"]] == ["echo test", "false"]
    assert data["results"][0]["stdout"] == "test\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "results.json"]  # no temporary file left


def test_a_log_file_that_cannot_be_opened_raises_value_error_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    runner = BatchRunner(["touch ran"], log_file="file/run.log", verbose=False)
    with pytest.raises(ValueError) as raised:
        runner.run()
    assert str(raised.value) == "log_file file/run.log: cannot open: File exists"
    assert not (tmp_path / "ran").exists()
    assert capfd.readouterr() == ("", "")  # verbose=False: not even pytest's usage error


def test_what_the_inner_pytest_run_refuses_is_raised_naming_the_argument_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import batchrunner.api

    # Without the API's own check, the plugin's refuses the log (a usage error pytest would print).
    monkeypatch.setattr(batchrunner.api, "check_log_opens", lambda name, path: None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError) as raised:
        BatchRunner(["echo a"], log_file="file/run.log", verbose=False).run()
    assert str(raised.value) == f"log_file {tmp_path}/file/run.log: cannot open: File exists"
    assert capfd.readouterr() == ("", "")


def test_a_junit_file_that_cannot_be_written_is_named_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    runner = BatchRunner(["echo a"], junitxml="file/x.xml", verbose=False)
    with pytest.raises(RuntimeError) as raised:
        runner.run()
    assert str(raised.value) == f"junitxml {tmp_path}/file/x.xml: not written: Not a directory"
    assert runner.summary["successful"] == 1  # the results are kept
    assert capfd.readouterr() == ("", "")


def test_a_string_of_commands_is_refused_not_run_character_by_character() -> None:
    # The original ran "echo string" as 11 one-character commands.
    with pytest.raises(TypeError) as raised:
        BatchRunner("echo string", verbose=False)
    assert str(raised.value) == (
        "commands must be a list of strings, not a str: give ['echo string'] to run it as one command"
    )
    with pytest.raises(TypeError, match="commands must be a list of strings, not a bytes$"):
        BatchRunner(b"echo bytes", verbose=False)


def test_a_nul_in_a_command_is_refused_naming_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = "command 2 holds a NUL character, which no command can: 'echo a\\x00b'"
    with pytest.raises(ValueError) as raised:
        BatchRunner(["touch ran", "echo a\x00b"], verbose=False)
    assert str(raised.value) == message
    runner = BatchRunner(["touch ran"], verbose=False)
    runner.commands.append("echo a\x00b")
    with pytest.raises(ValueError) as raised:
        runner.run()
    assert str(raised.value) == message
    assert not (tmp_path / "ran").exists()


def test_reports_never_replace_the_batch_file_or_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cmds.txt").write_text("touch ran\n")
    cases = [
        (BatchRunner.from_file("cmds.txt", log_file="cmds.txt", verbose=False),
         f"log_file cmds.txt is the same file as the batch file {tmp_path / 'cmds.txt'}: it would be overwritten"),
        (BatchRunner(["touch ran"], log_file="r.xml", junitxml="r.xml", verbose=False),
         "junitxml r.xml is the same file as log_file r.xml: give each report its own file"),
        (BatchRunner(["touch ran"], log_file=".", verbose=False), "log_file .: is a directory, not a file name"),
        (BatchRunner(["touch ran"], junitxml=".", verbose=False), "junitxml .: is a directory, not a file name"),
    ]
    for runner, message in cases:
        with pytest.raises(ValueError) as raised:
            runner.run()
        assert str(raised.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmds.txt"]  # nothing ran, nothing written
    assert capfd.readouterr() == ("", "")  # and nothing printed: verbose=False
    runner = BatchRunner.from_file("cmds.txt", log_file="run.log", verbose=False)
    runner.run()
    for output, message in [("run.log", "output_file run.log is the same file as log_file run.log"),
                            ("cmds.txt", "output_file cmds.txt is the same file as the batch file")]:
        with pytest.raises(ValueError, match=message):
            runner.save_results(output)
    assert (tmp_path / "cmds.txt").read_text() == "touch ran\n"


def test_junitxml(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    BatchRunner(["echo a", "false"], junitxml=junit, verbose=False).run()
    text = junit.read_text()
    assert text.count("<testcase") == 2 and "<failure" in text


def test_load_commands_from_file_follows_the_batch_rules(tmp_path: Path) -> None:
    path = tmp_path / "commands.txt"
    path.write_bytes(
        b"\xef\xbb\xbfecho test1\r\n"
        b"echo test2\n"
        b"# comment line\n"
        b"\n"
        b"   \n"
        b"echo a \\\n"
        b"  b\n"
        b"echo test3  # batch: timeout=5\n"
    )
    assert load_commands_from_file(path) == [
        "echo test1",
        "echo test2",
        "echo a \\\n  b",
        "echo test3  # batch: timeout=5",
    ]
    assert load_commands_from_file(str(path))[0] == "echo test1"


def test_load_commands_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Commands file not found: .*nonexistent.txt"):
        load_commands_from_file(tmp_path / "nonexistent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n# batch: timeout=3\n")
    with pytest.raises(ValueError, match="No commands found in .*empty.txt"):
        load_commands_from_file(empty)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"echo \xff\n")
    with pytest.raises(BatchFileError, match="not valid UTF-8"):
        load_commands_from_file(bad)


def test_from_file_takes_any_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["commands.txt", "my jobs [1]*?.txt", "it's.cmds", "test_x.py", "conftest.py"]
    for name in names:
        Path(name).write_text("echo one\necho two\n")
    for name in names:
        results, summary = BatchRunner.from_file(name, verbose=False).run()
        assert [r.stdout for r in results] == ["one\n", "two\n"], name
        assert results[0].file == name


def test_from_file_applies_the_batch_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftovers: str) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "jobs.txt"
    path.write_text("pwd  # batch: cwd=sub\nsleep 30  # batch: timeout=0.3\nexit 3  # batch: expect=3\n")
    monkeypatch.chdir("/")
    results, summary = BatchRunner.from_file(path, verbose=False).run()
    assert results[0].stdout.strip() == str(tmp_path / "sub")
    assert results[1].timed_out and not results[1].success
    assert results[2].success
    assert [r.line for r in results] == [1, 2, 3]


# -- one engine, isolated from the caller -----------------------------------------------------


def test_the_callers_pytest_settings_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conftest.py").write_text("open('conftest-was-imported', 'w').close()\nraise SystemExit(9)\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option -x\n")
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--no-such-option'\n")
    (tmp_path / "tox.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-such-option -x")
    monkeypatch.setenv("PYTEST_PLUGINS", "no_such_plugin_module")
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))

    results, summary = BatchRunner(['echo "$PYTEST_ADDOPTS"', "false", "echo c"], verbose=False).run()

    assert summary["total_commands"] == 3 and summary["failed"] == 1
    # The commands still see the caller's environment.
    assert results[0].stdout == "--no-such-option -x\n"
    assert os.environ["PYTEST_ADDOPTS"] == "--no-such-option -x"
    assert sorted(os.listdir(tmp_path)) == before  # no conftest import, no .pytest_cache


def _process_state() -> dict:
    return {
        "environ": dict(os.environ),
        "sigint": signal.getsignal(signal.SIGINT),
        "sigterm": signal.getsignal(signal.SIGTERM),
        "unraisablehook": sys.unraisablehook,
        "excepthook": threading.excepthook,
        "warnings": list(warnings.filters),
        "faulthandler": faulthandler.is_enabled(),
        "root_handlers": list(logging.getLogger().handlers),
        "root_level": logging.getLogger().level,
        "path": list(sys.path),
        "stdout": sys.stdout,
        "stderr": sys.stderr,
        "threads": threading.active_count(),
        "switchinterval": sys.getswitchinterval(),
        "gc_frozen": __import__("gc").get_freeze_count(),
    }


def test_run_leaves_no_state_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = _process_state()
    first, _ = BatchRunner(["echo a", "false"], verbose=False).run()
    second, summary = BatchRunner(["echo b"], mode="parallel", verbose=False).run()
    assert _process_state() == before
    assert [r.stdout for r in second] == ["b\n"] and summary["total_commands"] == 1
    assert os.listdir(tmp_path) == []  # the temporary batch directory is gone


def test_run_twice_with_the_same_runner(no_leftovers: str) -> None:
    runner = BatchRunner(["echo a"], verbose=False)
    first, _ = runner.run()
    second, summary = runner.run()
    assert len(second) == 1 and summary["total_commands"] == 1
    assert first[0].timestamp != second[0].timestamp


def test_the_outer_test_keeps_its_pytest_current_test() -> None:
    before = os.environ["PYTEST_CURRENT_TEST"]
    BatchRunner(["echo a"], verbose=False).run()
    assert os.environ["PYTEST_CURRENT_TEST"] == before


def test_ctrl_c_kills_the_commands_and_raises_keyboard_interrupt(tmp_path: Path, no_leftovers: str) -> None:
    # The command's shell is our child: it sends us the Ctrl+C, once we wait for it
    # (sent at once, it can land while subprocess.Popen is still returning, and
    # the process layer never learns the command's process group).
    runner = BatchRunner(
        ["echo first", "sleep 60 & sleep 0.3; kill -INT $PPID; wait", "echo never"],
        log_file=tmp_path / "run.log",
        verbose=False,
    )
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert [r.status for r in runner.results] == ["passed", "interrupted", "not run"]
    assert runner.summary["interrupted"] is True
    runner.save_results(tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["interrupted"] is True
    assert "] [ERROR] [!] Interrupted: the run was stopped" in (tmp_path / "run.log").read_text()


# -- the integration plan's examples, as written ------------------------------------------------


def test_forge_quality_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "module.py").write_text("VALUE = 1\n")
    monkeypatch.chdir(tmp_path)
    commands = [
        f"{PY} -m compileall -q src",
        f"{PY} -c 'import ast, sys; ast.parse(open(\"src/module.py\").read())'",
        f"{PY} -m pytest --version",
        f"{PY} -m json.tool --help",
    ]

    runner = BatchRunner(commands, mode="sequential", verbose=True)
    results, summary = runner.run()

    if summary["success_rate"] < 100:
        print(f"[!] Quality gates failed: {summary['failed']} checks")
        sys.exit(1)
    assert "Success Rate: 100.0%" in capsys.readouterr().out

    failing = BatchRunner([*commands, f"{PY} -c 'raise SystemExit(1)'"], mode="sequential", verbose=True)
    results, summary = failing.run()
    with pytest.raises(SystemExit) as exit_info:
        if summary["success_rate"] < 100:
            print(f"[!] Quality gates failed: {summary['failed']} checks")
            sys.exit(1)
    assert exit_info.value.code == 1
    assert "[!] Quality gates failed: 1 checks" in capsys.readouterr().out


def test_atlas_parallel_tests_with_retries_and_a_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_leftovers: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("test_module1.py").write_text("assert 1 + 1 == 2\n")
    # Fails on its first run only: the retry makes it pass.
    Path("test_module2.py").write_text(
        "import pathlib\np = pathlib.Path('ran-once')\nfirst = not p.exists()\np.touch()\nassert not first\n"
    )
    Path("test_integration.py").write_text("import time\ntime.sleep(0.2)\n")

    # In tool build workflow
    test_commands = [
        "python test_module1.py",
        "python test_module2.py",
        "python test_integration.py",
    ]

    runner = BatchRunner(
        test_commands,
        mode="parallel",
        max_retries=1,
        log_file=Path(f"test-{datetime.now():%Y%m%d}.log"),
    )

    results, summary = runner.run()

    if summary["failed"] == 0:
        print("[OK] All tests passing - ready for deployment")
    else:
        print(f"[X] {summary['failed']} tests failed - fix before deploying")

    out = capsys.readouterr().out
    assert "[OK] All tests passing - ready for deployment" in out
    assert [r.attempts for r in results] == [1, 2, 1]
    (log,) = tmp_path.glob("test-*.log")
    assert "python test_module2.py" in log.read_text()


def test_production_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    production_commands = [f"{PY} -c 'print(\"migrate\")'", "echo deploy", "test -d ."]

    # Production configuration
    runner = BatchRunner(
        commands=production_commands,
        mode="sequential",           # Use sequential for critical steps
        max_retries=2,               # Retry twice for transient failures
        retry_delay_sec=2.0,         # 2-second delay between retries
        timeout_sec=300,             # 5-minute timeout per command
        log_file=Path(f"batch-{datetime.now():%Y%m%d-%H%M%S}.log"),
        verbose=False                # Quiet mode for production
    )
    results, summary = runner.run()

    assert summary["failed"] == 0 and summary["max_retries"] == 2
    assert results[0].stdout == "migrate\n"
    assert capfd.readouterr() == ("", "")
    (log,) = tmp_path.glob("batch-*.log")
    assert "echo deploy" in log.read_text()


def test_recommended_error_handling_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    commands = ["echo ok", "exit 2"]
    try:
        runner = BatchRunner(commands)
        results, summary = runner.run()

        if summary["failed"] > 0:
            # Handle partial failure
            print(f"Warning: {summary['failed']} commands failed")
    except KeyboardInterrupt:
        print("Batch interrupted by user")
        sys.exit(130)
    except Exception as e:
        print(f"Batch runner error: {e}")
        sys.exit(1)
    out = capsys.readouterr().out
    assert "Warning: 1 commands failed" in out
    assert f"{summary['failed']}/{summary['total_commands']} commands failed" == "1/2 commands failed"
    assert f"Success rate: {summary['success_rate']:.1f}%" == "Success rate: 50.0%"


def test_exit_codes_follow_the_original_conventions(no_leftovers: str) -> None:
    # The original ran subprocess.run: -1 and "Command timed out after N seconds" for a
    # timeout, the negative signal number for a command killed by a signal.
    results, _ = BatchRunner(["sleep 30", "kill -SEGV $$", "exit 3"], timeout_sec=0.3, verbose=False).run()
    timed_out, segfault, failed = results
    assert timed_out.exit_code == -1 and "Command timed out after 0.3 seconds" in timed_out.stderr
    assert timed_out.timed_out and not timed_out.success
    assert segfault.exit_code == -11 and segfault.signal == "SIGSEGV"
    assert failed.exit_code == 3


# -- the exact truth, as the original tells it ---------------------------------------------------


def test_forge_gate_fails_on_1999_passing_and_1_failing(tmp_path: Path, no_leftovers: str) -> None:
    # The integration plan's gate: `if summary["success_rate"] < 100: sys.exit(1)`. Rounded, 99.95 was 100.0.
    runner = BatchRunner(["true"] * 1999 + ["false"], mode="parallel", verbose=False, log_file=tmp_path / "run.log")
    results, summary = runner.run()
    assert summary["success_rate"] == 99.95 and summary["success_rate"] < 100
    runner.save_results(tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["success_rate"] == 99.95
    log = parse_log((tmp_path / "run.log").read_text())
    assert [e.message for e in log if e.message.startswith("Success Rate")] == ["Success Rate: 99.95%"]
    (pairs,) = [e.message for e in log if e.message.startswith("SUMMARY ")]
    assert " success_rate=99.95 " in pairs
    assert [r.command for r in results[-2:]] == ["true", "false"]  # input order


@pytest.mark.parametrize(
    ("rate", "successful", "unsuccessful", "shown"),
    [(99.95, 1999, 1, "99.95"), (100 / 3000, 1, 2999, "0.03"), (100.0, 3, 0, "100.0"), (0.0, 0, 3, "0.0"),
     (200 / 3, 2, 1, "66.7"), (100 * 9_999_999 / 10_000_000, 9_999_999, 1, "99.99999"), (50.0, 1, 1, "50.0")],
)
def test_a_shown_rate_never_hides_a_failure_or_a_pass(rate: float, successful: int, unsuccessful: int, shown: str) -> None:
    from pytest_batchrunner.reports.summary import format_rate

    assert format_rate(rate, successful, unsuccessful) == shown


def test_the_originals_types(tmp_path: Path, no_leftovers: str) -> None:
    flaky = f"test -f {tmp_path}/m || {{ touch {tmp_path}/m; sleep 0.4; exit 1; }}"
    runner = BatchRunner(
        [flaky, "sleep 5", "kill -SEGV $$"], mode="parallel", max_retries=1, retry_delay_sec=0, timeout_sec=0.5,
        verbose=False,
    )
    results, _ = runner.run()
    first, slow, segv = results
    # duration_ms is the last attempt's, as the original's; the new field adds them up.
    assert first.success and first.attempts == 2 and first.duration_ms < 300
    assert first.attempts_duration_ms >= 400 + first.duration_ms - 1
    assert sum(a["duration_ms"] for a in first.attempt_log) == pytest.approx(first.attempts_duration_ms, abs=0.01)
    # Always an int: -1 for a timeout, with the reason in stderr; a signal is its negative number.
    assert (slow.exit_code, slow.timed_out) == (-1, True) and slow.stderr.endswith("Command timed out after 0.5 seconds\n")
    assert (segv.exit_code, segv.signal) == (-11, "SIGSEGV")
    assert all(type(r.exit_code) is int for r in results)


def test_never_run_and_interrupted_commands_have_an_int_exit_code_and_a_reason(no_leftovers: str) -> None:
    runner = BatchRunner(["echo first", "sleep 60 & sleep 0.3; kill -INT $PPID; wait", "echo never"], verbose=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    _, interrupted, never = runner.results
    assert (interrupted.status, interrupted.exit_code) == ("interrupted", -1)
    assert "interrupted" in interrupted.stderr
    assert (never.status, never.exit_code, never.stderr) == ("not run", -1, "Command not run: the run was stopped before it started\n")


def test_a_log_written_here_parses_with_the_originals_line_shapes(tmp_path: Path, no_leftovers: str) -> None:
    log = tmp_path / "run.log"
    commands = ["echo ok", "echo oops >&2; exit 3", "sleep 5"]
    for mode in ("sequential", "parallel"):
        BatchRunner(commands, mode=mode, max_retries=1, retry_delay_sec=0.1, timeout_sec=0.3, log_file=log,
                    verbose=False).run()
    entries = parse_log(log.read_text())  # every line one of the original's shapes
    messages = [e.message for e in entries]
    assert messages.count("EXECUTION SUMMARY") == 2
    assert messages.count("Executing: echo oops >&2; exit 3 (attempt 2/2)") == 2
    assert messages.count("[X] Command timed out after 0.3s") == 4 and messages.count("Retrying in 0.1s...") == 4
    assert messages.count("Error output: oops") == 4 and messages.count("Timeout: 0.3s per command") == 2
    assert [m for m in messages if m.startswith("\n[")] == [f"\n[{i}/3] Starting command..." for i in (1, 2, 3)]
    assert [m for m in messages if m.startswith("Progress")] == [f"Progress: {i}/3 completed" for i in (1, 2, 3)]
    levels = {e.message.split(" (")[0]: e.level for e in entries}
    assert levels["[OK] Command completed"] == "SUCCESS" and levels["[X] Command failed"] == "ERROR"


def test_parallel_mode_prints_a_line_when_a_command_starts(tmp_path: Path, no_leftovers: str) -> None:
    # Read as the user sees it: each line when it arrives on the console.
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchrunner", "-c", "sleep 3", "echo quick", "--parallel"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )
    arrived: dict[str, float] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        arrived.setdefault(line.split("] ", 2)[-1].strip(), time.monotonic())
    assert proc.wait(timeout=30) == 0
    started, done = arrived["Executing: sleep 3 (attempt 1/1)"], arrived["Progress: 2/2 completed"]
    # Shown while it ran, not when it ended (a command started before pytest was ready, as
    # this one, is shown once it is: about 0.1 s later, more on a loaded machine).
    assert done - started >= 1.0, arrived


def test_retries_overlap_in_parallel_mode(no_leftovers: str) -> None:
    runner = BatchRunner(["sleep 0.4; exit 1"] * 3, mode="parallel", max_retries=1, retry_delay_sec=0.5, verbose=False)
    results, summary = runner.run()
    assert summary["reruns"] == 3 and [r.attempts for r in results] == [2, 2, 2]
    spans = []
    for r in results:
        first, second = (
            (datetime.fromisoformat(a["timestamp"]).timestamp(), a["duration_ms"] / 1000) for a in r.attempt_log
        )
        assert second[0] - (first[0] + first[1]) >= 0.5 - 0.01  # its own delay, after its own attempt
        spans.append((second[0], second[0] + second[1]))
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans  # the retries ran at once


SLOW_PROTOCOL = '''
import time

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    # Between the job runner taking over the commands started before pytest
    # (its wrapper, outside this one) and the API releasing a Ctrl+C it held
    # since run() began: long enough for the first command's rerun to start
    # in its slot, and for the Ctrl+C to arrive while still held.
    time.sleep(1.0)
    return (yield)
'''

HELD_CTRL_C_RUN = '''
import sys

import batchrunner.inprocess as inprocess
from batchrunner import BatchRunner

inprocess.ENGINE_PLUGINS = (*inprocess.ENGINE_PLUGINS, "slow_protocol")
retry = 'if [ "$BATCH_ATTEMPT" = 2 ]; then touch started; exec sleep 60; fi; exit 1'
runner = BatchRunner([retry, "sleep 30"], mode="parallel", max_retries=1, retry_delay_sec=0.1, verbose=False)
try:
    runner.run()
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
'''


def test_a_held_ctrl_c_is_not_held_through_a_rerun_in_its_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                no_leftovers: str, interrupt_once_started) -> None:
    """A Ctrl+C held since run() began, caught once a failed command's rerun runs in its slot, ends the run.

    It used to be held through that command's protocol, which waited for the
    rerun (a minute here): the run hung. A slow hook (a real one, in the inner
    pytest) opens the window that a loaded machine opened by chance.
    """
    (tmp_path / "slow_protocol.py").write_text(SLOW_PROTOCOL)
    (tmp_path / "run.py").write_text(HELD_CTRL_C_RUN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    result = interrupt_once_started([sys.executable, "run.py"], tmp_path, tmp_path / "started")
    assert result.returncode == 130, result.stdout + result.stderr
    assert time.monotonic() - start < 20


CALL_STARTED = '''
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # The test's Ctrl+C comes once the item's call phase waits for its command.
    open("started", "w").close()
    return (yield)
'''

ENVIRONMENT_RUN = '''
import json
import os
import sys

import batchrunner.inprocess as inprocess
from batchrunner import BatchRunner

inprocess.ENGINE_PLUGINS = (*inprocess.ENGINE_PLUGINS, "call_started")
before = dict(os.environ)
try:
    BatchRunner(["sleep 60", "true"], mode=sys.argv[1], verbose=False).run()
except KeyboardInterrupt:
    print(json.dumps({k: [before.get(k), v] for k, v in os.environ.items() if before.get(k) != v}
                     | {k: [v, None] for k, v in before.items() if k not in os.environ}))
    sys.exit(130)
'''


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_an_interrupted_run_leaves_the_callers_environment_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftovers: str, interrupt_once_started, mode: str
) -> None:
    (tmp_path / "call_started.py").write_text(CALL_STARTED)
    (tmp_path / "run.py").write_text(ENVIRONMENT_RUN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # the caller is no pytest test
    result = interrupt_once_started([sys.executable, "run.py", mode], tmp_path, tmp_path / "started")
    assert result.returncode == 130, result.stdout + result.stderr
    assert json.loads(result.stdout) == {}


THREADS = """
import os
from concurrent.futures import ThreadPoolExecutor
from batchrunner import BatchRunner
os.environ["PYTEST_ADDOPTS"] = "-q"
before = dict(os.environ)
def one(i):
    results, summary = BatchRunner([f"echo {i}", "sleep 0.1"], verbose=False).run()
    return [r.stdout.strip() for r in results], summary["successful"]
with ThreadPoolExecutor(4) as pool:
    print(list(pool.map(one, range(8))))
print(dict(os.environ) == before)
"""


def test_runs_from_several_threads_take_turns_each_whole(tmp_path: Path, no_leftovers: str) -> None:
    # pytest.main registers plugins and sets environment variables for the whole
    # process: two at once raised "Plugin already registered" or lost options.
    done = subprocess.run([sys.executable, "-c", THREADS], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [str([([str(i), ""], 2) for i in range(8)]), "True"]


def test_results_have_the_original_s_newlines_and_local_timestamps(no_leftovers: str) -> None:
    # The original ran commands with text=True (universal newlines) and stamped
    # them with datetime.now().isoformat(), which callers subtract from now().
    results, _ = BatchRunner(["printf 'a\\r\\nb\\rc'", "printf 'x\\r\\n' >&2"], verbose=False).run()
    assert (results[0].stdout, results[1].stderr) == ("a\nb\nc", "x\n")
    stamp = datetime.fromisoformat(results[0].timestamp)
    assert stamp.tzinfo is None and abs((datetime.now() - stamp).total_seconds()) < 60


def test_every_command_gets_the_caller_s_environment_without_pytest_s_additions(
    monkeypatch: pytest.MonkeyPatch, no_leftovers: str
) -> None:
    # Started before pytest was ready or after: the same environment, without the
    # PYTEST_VERSION pytest sets while it runs (programs read it to detect pytest).
    monkeypatch.delenv("PYTEST_VERSION", raising=False)
    monkeypatch.setenv("CALLER_VAR", "mine")
    commands = ["sleep 0.2", "sleep 0.2", 'echo "${PYTEST_VERSION-unset} $CALLER_VAR"']
    results, _ = BatchRunner(commands, verbose=False).run()
    assert results[2].stdout == "unset mine\n"


def test_parallel_mode_logs_each_command_when_it_ends(tmp_path: Path, no_leftovers: str) -> None:
    # As the original's threads did: a command that ends early is logged (and
    # counted in "Progress") at once, not after the slow one before it.
    log = tmp_path / "run.log"
    BatchRunner(["sleep 1.5", "echo a", "exit 3"], mode="parallel", log_file=str(log), verbose=False).run()
    messages = [e.message for e in parse_log(log.read_text())]
    slow = next(i for i, m in enumerate(messages) if re.fullmatch(r"\[OK\] Command completed \(1[5-9]\d\d\.\dms\)", m))
    assert messages.index("Progress: 1/3 completed") < messages.index("Progress: 2/3 completed") < slow
    assert messages.index("[X] Command failed (exit code 3)") < slow
    assert messages[slow + 1] == "Progress: 3/3 completed"
    assert messages.count("Progress: 3/3 completed") == 1


def test_capture_bytes_keeps_what_the_caller_asks_for(no_leftovers: str) -> None:
    # The original kept all the output; the default keeps the head and the last
    # MiB. A command printing a 3 MB JSON document needs more: capture_bytes.
    printing = "python3 -c \"import json; print(json.dumps(['x' * 100] * 30000))\""
    cut, _ = BatchRunner([printing], verbose=False).run()
    assert len(cut[0].stdout) < 1_100_000 and "bytes dropped by pytest-batchrunner" in cut[0].stdout
    # Started before pytest is ready (the first line) or after it (the second): the same limit.
    whole, _ = BatchRunner([printing, "sleep 0.1; " + printing], verbose=False, capture_bytes=4_000_000).run()
    assert [len(json.loads(r.stdout)) for r in whole] == [30000, 30000]
    with pytest.raises(ValueError, match="capture_bytes must be a whole number"):
        BatchRunner(["true"], capture_bytes=-1)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_an_interrupted_command_keeps_its_run_time_and_output(mode: str, tmp_path: Path, no_leftovers: str) -> None:
    # In a process of its own: the command's Ctrl+C goes to its parent, the runner
    # (in this process, the suite's own handlers would see it too).
    script = textwrap.dedent(f"""
        import json
        from batchrunner import BatchRunner
        runner = BatchRunner(["echo first", "echo partial; sleep 60 & sleep 0.5; kill -INT $PPID; wait", "echo never"],
                             mode={mode!r}, verbose=False)
        try:
            runner.run()
        except KeyboardInterrupt:
            print(json.dumps([runner.results[1].to_dict(), runner.summary]))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    interrupted, summary = json.loads(done.stdout.splitlines()[-1])
    assert interrupted["status"] == "interrupted" and interrupted["stdout"] == "partial\n", interrupted
    assert 0.4 <= interrupted["duration_ms"] / 1000 < 15
    [attempt] = interrupted["attempt_log"]
    assert attempt["interrupted"] is True and attempt["duration_ms"] == interrupted["duration_ms"]
    assert summary["max_command_duration_ms"] == interrupted["duration_ms"]
