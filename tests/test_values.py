"""Absurd numbers (``inf``, ``nan``, ``1e300``, huge delays) from every source: a clear error naming
the source, or (for a timeout) a wait that works; never a traceback, a hang or a wrong pass."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batchrunner import BatchRunner
from pytest_batchrunner.batchfile import BatchFileError, parse_batch_text
from pytest_batchrunner.process.command import run_command
from pytest_batchrunner.values import MAX_SECONDS, non_negative_float, non_negative_int, timeout_seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "must be a finite number"),
        ("-inf", "must be 0 or more"),
        ("nan", "is not a number"),
        ("1e10", "is too large (at most 2147483 seconds, about 24.9 days)"),
        ("1e999", "must be a finite number"),
        ("-1", "must be 0 or more"),
        ("soon", "is not a number"),
    ],
)
def test_seconds_are_finite_and_bounded(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        non_negative_float(value)


def test_bounds_themselves_are_accepted() -> None:
    assert non_negative_float(str(MAX_SECONDS)) == MAX_SECONDS
    assert timeout_seconds("1e300") == 1e300  # a timeout may be as long as wanted
    with pytest.raises(ValueError, match="finite"):
        timeout_seconds("inf")
    assert non_negative_int("1000000") == 1_000_000
    with pytest.raises(ValueError, match="too large"):
        non_negative_int("99999999999")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("exit 1 # batch: retries=1 retry-delay=1e10", "retry-delay': '1e10' is too large"),
        ("exit 1 # batch: timeout=inf", "timeout': 'inf' must be a finite number"),
        ("exit 1 # batch: timeout=nan", "timeout': 'nan' is not a number"),
        ("exit 1 # batch: retries=99999999999", "retries': '99999999999' is too large"),
    ],
)
def test_batch_settings_are_bounded(line: str, message: str) -> None:
    with pytest.raises(BatchFileError, match=message):
        parse_batch_text(line, "x.batch")


def test_a_huge_timeout_is_waited_for_in_steps(no_leftovers: str) -> None:
    for timeout in (99999999.0, 1e300, float("inf")):
        assert run_command("exit 0", timeout=timeout).success


def test_process_layer_refuses_what_it_cannot_wait_for() -> None:
    with pytest.raises(ValueError, match="kill_grace"):
        run_command("true", kill_grace=float("inf"))
    with pytest.raises(ValueError, match="timeout"):
        run_command("true", timeout=float("nan"))


def test_retry_delay_in_a_batch_file_is_a_collection_error(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "cmds.batch").write_text("exit 1 # batch: retries=1 retry-delay=1e10\n")
    result = run("cmds.batch")
    # A collection error stops the run (xdist reports it as a failure).
    assert result.ret in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED)
    result.stdout.fnmatch_lines(["*cmds.batch:1: bad value for batch setting 'retry-delay': '1e10' is too large*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-kill-grace", "inf"], "*--batch-kill-grace: 'inf' must be a finite number of seconds*"),
        (["--batch-kill-grace", "1e300"], "*--batch-kill-grace: '1e300' is too large*"),
        (["--reruns", "1", "--reruns-delay", "1e10"], "*--reruns-delay: * is too large*"),
        (["-o", "batch_kill_grace=nan"], "*ini value batch_kill_grace: 'nan' is not a number*"),
        (["--batch-jobs", "99999999999"], "*--batch-jobs: '99999999999' is too large*"),
        (["--batch-capture-bytes", "1e3"], "*--batch-capture-bytes: '1e3' is not a whole number*"),
        (["--timeout", "inf"], "*--timeout: 'inf' must be a finite number of seconds*"),
        (["--timeout", "1e400"], "*--timeout: 'inf' must be a finite number of seconds*"),
    ],
)
def test_absurd_options_are_usage_errors(pytester: pytest.Pytester, run, args: list[str], message: str) -> None:
    (pytester.path / "cmds.batch").write_text("touch ran\n")
    result = run("cmds.batch", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "ran").exists()


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("env", "nan", "*environment variable PYTEST_TIMEOUT: 'nan' is not a number*"),
        ("env", "inf", "*environment variable PYTEST_TIMEOUT: 'inf' must be a finite number of seconds*"),
        ("env", "soon", "*environment variable PYTEST_TIMEOUT: 'soon' is not a number*"),
        ("ini", "nan", "*ini value timeout: 'nan' is not a number*"),
        ("ini", "1e400", "*ini value timeout: '1e400' must be a finite number of seconds*"),
    ],
)
def test_a_timeout_from_the_environment_or_ini_that_cannot_be_waited_for_is_a_usage_error(
    pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch, where: str, value: str, message: str
) -> None:
    (pytester.path / "cmds.batch").write_text("touch ran\n")
    if where == "env":
        monkeypatch.setenv("PYTEST_TIMEOUT", value)
    else:
        pytester.makeini(f"[pytest]\ntimeout = {value}\n")
    result = run("cmds.batch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "ran").exists()
    # Only the source pytest-timeout reads is checked: --timeout wins over the others.
    run("cmds.batch", "--timeout", "5").assert_outcomes(passed=1)


@pytest.mark.parametrize("timeout", ["99999999", "1e300"])
def test_huge_timeouts_run_commands(pytester: pytest.Pytester, run, timeout: str) -> None:
    (pytester.path / "cmds.batch").write_text("echo ok\nexit 3\n")
    result = run("cmds.batch", "--timeout", timeout)
    result.assert_outcomes(passed=1, failed=1)
    assert "OverflowError" not in result.stdout.str()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"retry_delay_sec": 1e10}, "retry_delay_sec: '10000000000.0' is too large"),
        ({"timeout_sec": float("nan")}, "timeout_sec: 'nan' is not a number"),
        ({"timeout_sec": float("inf")}, "timeout_sec: 'inf' must be a finite number of seconds"),
        ({"timeout_sec": 1e400}, "timeout_sec: 'inf' must be a finite number of seconds"),
        ({"max_retries": 10**9}, "max_retries must be a whole number, 0 to 1000000"),
    ],
)
def test_api_arguments_are_bounded(option: dict, message: str) -> None:
    # At construction, before anything runs.
    with pytest.raises(ValueError, match=message):
        BatchRunner(["true"], verbose=False, **option)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"timeout_sec": "5"}, "timeout_sec must be a number of seconds or None, not '5' (str)"),
        ({"retry_delay_sec": "soon"}, "retry_delay_sec must be a number of seconds, not 'soon' (str)"),
        ({"workers": True}, "workers must be a whole number, not True (bool)"),
        ({"max_retries": 2.0}, "max_retries must be a whole number, not 2.0 (float)"),
        ({"log_file": 3}, "log_file must be a file name (str or path) or None, not 3 (int)"),
    ],
)
def test_api_arguments_of_the_wrong_type_raise_type_error_at_construction(option: dict, message: str) -> None:
    with pytest.raises(TypeError) as raised:
        BatchRunner(["true"], verbose=False, **option)
    assert str(raised.value) == message
    # Also when set after construction: run() checks again, before any command starts.
    runner = BatchRunner(["true"], verbose=False)
    setattr(runner, *next(iter(option.items())))
    with pytest.raises(TypeError):
        runner.run()


def test_api_and_cli_accept_huge_timeouts(tmp_path, no_leftovers: str) -> None:
    for timeout in (1e300, 99999999):
        results, summary = BatchRunner(["true"], verbose=False, timeout_sec=timeout).run()
        assert summary["successful"] == 1
    done = subprocess.run([sys.executable, "-m", "batchrunner", "-q", "-c", "true", "--timeout", "1e300"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "batchrunner", "-c", "true", "--retry-delay", "1e10"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "--retry-delay: '1e10' is too large" in done.stderr
    assert "Traceback" not in done.stderr
