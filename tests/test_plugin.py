"""The plugin end to end: real batch files, real processes, in-process and under ``-n 2``.

The ``run`` fixture (tests/conftest.py) runs pytest in a subprocess, adds ``-n 2``
in the xdist mode, and fails the test if any process started by the run is
still alive afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from open_stdin import output_with_stdin_open

FAST = ("--batch-kill-grace", "0.3")


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """The summary line's counts, reruns included (``assert_outcomes`` has no ``rerun``)."""
    counts = result.parseoutcomes()
    return {k: v for k, v in counts.items() if k in ("passed", "failed", "rerun", "skipped", "xfailed", "xpassed", "error", "errors")}


def write(pytester: pytest.Pytester, text: str | bytes, name: str = "cmds.batch") -> Path:
    path = pytester.path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_pass_and_fail(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo hello\nsh -c 'echo boom >&2; exit 3'\ntrue\n")
    result = run("-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*exit code 3 · cmds.batch:2 · *",
            "*command: sh -c 'echo boom >&2; exit 3'",
            "*Captured stderr call*",
            "boom",
            "*BatchRunner summary*",
            "Total Commands: 3 | Successful: 2 | Failed: 1 | Flaky: 0 | Reruns: 0",
            "Success Rate: 66.7%",
            "*PASSED cmds.batch::echo hello",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_flaky_command_passes_on_rerun(pytester: pytest.Pytester, run) -> None:
    write(pytester, "test -f flag || { touch flag; exit 1; }\necho ok\n")
    result = run("--reruns", "1")
    assert outcomes(result) == {"passed": 2, "rerun": 1}
    result.stdout.fnmatch_lines(["Total Commands: 2 | Successful: 2 | Failed: 0 | Flaky: 1 | Reruns: 1"])
    assert result.ret == 0


def test_timeout_with_grandchildren(pytester: pytest.Pytester, run) -> None:
    write(pytester, "sh -c 'sleep 301' & sleep 302 & wait\necho fine\n")
    start = time.monotonic()
    result = run("--timeout", "0.5", *FAST)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*", "*Failed: 1 (of them timed out: 1)*"])
    assert time.monotonic() - start < 20


def test_timeout_applies_to_every_rerun(pytester: pytest.Pytester, run) -> None:
    # pytest-rerunfailures#99: with the default timer the rerun runs unbounded and passes.
    write(pytester, "sleep 30\n")
    start = time.monotonic()
    result = run("--timeout", "0.5", "--reruns", "2", *FAST)
    assert outcomes(result) == {"failed": 1, "rerun": 2}
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*", "*Reruns: 2*", "Success Rate: 0.0%"])
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("jobs", ["0", "3"])
def test_every_attempt_kills_the_whole_group(pytester: pytest.Pytester, run, jobs: str) -> None:
    # Children that outlive any wait (hundreds of seconds), on every attempt:
    # a timeout with a grandchild and a background child, and a failure that
    # leaves a background child; the leftover check finds any of them alive.
    write(
        pytester,
        'sh -c "sleep 33$BATCH_ATTEMPT" & sleep 34$BATCH_ATTEMPT & wait\n'
        'test "$BATCH_ATTEMPT" = 3 || { sleep 35$BATCH_ATTEMPT & exit 1; }\n',
    )
    result = run("--batch-jobs", jobs, "--timeout", "0.5", "--reruns", "2", "-W", "always", *FAST)
    assert outcomes(result) == {"failed": 1, "passed": 1, "rerun": 4}, result.stdout.str()
    text = result.stdout.str()
    assert "Failed: 1 (of them timed out: 1)" in text
    # Both failed attempts' background children were found and named (as they
    # were when found: often still the forked shell about to exec sleep).
    assert text.count("killed processes left behind by 'test \"$BATCH_ATTEMPT\" = 3") == 2, text


def test_timeout_plugin_loaded_by_module_name(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_leftovers: str) -> None:
    # `-p pytest_timeout` registers pytest-timeout under its module name, not its
    # entry-point name "timeout" (the Python API loads it that way too).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    write(pytester, "sh -c 'sleep 306' & sleep 307 & wait\n")
    start = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "pytest_timeout", "-p", "pytest_rerunfailures", "-p", "pytest_batchrunner.plugin",
        "cmds.batch", "--timeout", "0.5", "--reruns", "1", *FAST, timeout=60,
    )
    assert outcomes(result) == {"failed": 1, "rerun": 1}
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*", "*Failed: 1 (of them timed out: 1)*"])
    assert time.monotonic() - start < 20


def test_timeout_marker_from_line_setting_and_ini(pytester: pytest.Pytester, run) -> None:
    pytester.makeini("[pytest]\ntimeout = 0.5\n")
    write(pytester, "sleep 5\nsleep 0.8  # batch: timeout=3\n")
    result = run(*FAST)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*"])


def test_trapped_term_is_killed_and_trap_exit_zero_is_a_timeout(pytester: pytest.Pytester, run) -> None:
    write(pytester, "trap '' TERM INT; sleep 303\ntrap 'exit 0' TERM; sleep 304 & wait\n")
    result = run("--timeout", "0.5", *FAST, "-rf")
    result.assert_outcomes(failed=2)
    assert result.stdout.str().count("timed out after 0.5 s") >= 2


def test_background_child_holding_pipe_passes_at_once(pytester: pytest.Pytester, run) -> None:
    write(pytester, "sleep 305 & echo started\n")
    start = time.monotonic()
    result = run("-W", "always", "--timeout", "30", *FAST)
    result.assert_outcomes(passed=1)
    # The stray is named as it is when found: often still the forked shell about to exec sleep.
    result.stdout.fnmatch_lines(["*LeftoverProcessWarning*killed processes left behind by 'sleep 305 & echo started': *(pid *"])
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("capture", ["-s", "--capture=fd"])
def test_stdin_reader_gets_eof(pytester: pytest.Pytester, mode: str, capture: str) -> None:
    # pytest's own stdin is a pipe nobody writes to or closes, as under a CI
    # runner or a terminal: a command inheriting it would wait for input.
    # (pytest's fd capture, and xdist's workers, give /dev/null to the tests
    # themselves; with -s in-process only our own stdin handling stands between.)
    write(pytester, "cat\nread line; test -z \"$line\"\n")
    extra = ["-n", "2"] if mode == "xdist" else []
    argv = [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", "--timeout", "5", capture, *extra]
    returncode, out = output_with_stdin_open(argv, cwd=pytester.path)
    assert returncode == 0, out
    assert "2 passed" in out, out


def test_hostile_output_bytes(pytester: pytest.Pytester, run) -> None:
    write(pytester, "printf 'a\\000b\\033[31mc\\377d\\n' >&2; exit 1\n")
    result = run("-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a\\x00b\\x1b[31mc\ufffdd*"])


def test_segfault_reports_signal_name(pytester: pytest.Pytester, run) -> None:
    write(pytester, "kill -SEGV $$\n")
    result = run("-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*killed by SIGSEGV*"])
    assert "  cmds.batch:1  kill -SEGV $$  [killed by SIGSEGV]" in result.stdout.lines


def test_crlf_bom_and_continuation(pytester: pytest.Pytester, run) -> None:
    write(pytester, b"\xef\xbb\xbfecho one\r\n# comment\r\necho \\\r\n  two; sleep 0.05\r\n")
    result = run("-rA")
    result.assert_outcomes(passed=2)
    assert {"PASSED cmds.batch::echo one", "PASSED cmds.batch::echo two; sleep 0.05"} <= set(result.outlines)
    assert "cmds.batch:3  echo two; sleep 0.05" in result.stdout.str()


def test_non_utf8_file_is_a_clean_collection_error(pytester: pytest.Pytester, run) -> None:
    write(pytester, b"echo ok\necho caf\xe9\n")
    result = run()
    # In-process a collection error interrupts the session; xdist reports it as an error.
    assert result.ret in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED)
    result.stdout.fnmatch_lines(["*batch file error: cmds.batch:2: not valid UTF-8 (byte e9 at column 9)*"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_bad_setting_is_a_clean_collection_error(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo ok\nmake # batch: timout=3\n")
    result = run()
    result.stdout.fnmatch_lines(["*cmds.batch:2: unknown batch setting 'timout'*"])
    assert "Traceback" not in result.stdout.str()


def test_empty_file_collects_nothing_and_says_so(pytester: pytest.Pytester, run) -> None:
    write(pytester, "# only a comment\n\n")
    result = run("-W", "always")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*BatchFileWarning: cmds.batch: no commands found*"])


# $PPID is an xdist worker only under -n: these two run there alone.


def test_command_killing_its_worker(pytester: pytest.Pytester) -> None:
    write(pytester, "echo one\nkill -9 $PPID; sleep 306\necho three\necho four\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*kill -9 $PPID*"])
    # The leftover check (tests/conftest.py) checks that `sleep 306` died with its worker.


def test_worker_crash_is_rerun(pytester: pytest.Pytester) -> None:
    write(pytester, "test -f flag || { touch flag; kill -9 $PPID; }\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "--reruns", "1", "-p", "no:cacheprovider",
                                           "--batch-json", "results.json")
    assert outcomes(result) == {"passed": 1, "rerun": 1}
    # The rerun ran on the worker that replaced the dead one: still an attempt of the same command.
    (only,) = json.loads((pytester.path / "results.json").read_text())["results"]
    assert (only["status"], only["attempts"], only["flaky"]) == ("passed", 2, True)


def test_capture_off_streams_output_live(pytester: pytest.Pytester, run, mode: str) -> None:
    # Both streams, tagged, on the terminal pytest writes to (under -n, sent by the workers to the controller).
    write(pytester, "echo streamed-out; echo streamed-err >&2\n")
    result = run("-s")
    result.stdout.fnmatch_lines(["[[]cmds.batch:1[]] streamed-out", "[[]cmds.batch:1[]] streamed-err"])


def test_environment_variables_and_cwd(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "sub").mkdir()
    write(
        pytester,
        'test "$BATCH_LINE" = 1 && test "$BATCH_ATTEMPT" = 1 && test "$(basename $BATCH_FILE)" = cmds.batch\n'
        'test "$(pwd)" = "$START"\n'
        'test "$(basename $(pwd))" = sub && test "$GREETING" = "hi there"  # batch: cwd=sub env=GREETING="hi there"\n'
        'test -n "$BATCH_WORKER"\n',
    )
    os.environ["START"] = str(pytester.path)
    try:
        run().assert_outcomes(passed=4)
    finally:
        del os.environ["START"]


def test_ini_patterns_collect_other_files(pytester: pytest.Pytester, run) -> None:
    pytester.makeini("[pytest]\nbatch_patterns = *.cmds commands.txt\n")
    write(pytester, "echo a\n", "x.cmds")
    write(pytester, "echo b\n", "commands.txt")
    write(pytester, "echo c\n", "other.txt")
    run().assert_outcomes(passed=2)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    write(pytester, "echo hi\n")
    assert pytester.runpytest_subprocess("cmds.batch").ret == pytest.ExitCode.OK
    result = pytester.runpytest_subprocess("cmds.batch", "-p", "no:batchrunner")
    # Without the plugin nothing collects a batch file: pytest finds no item in it.
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "not found" in result.stderr.str()


# -- ids -------------------------------------------------------------------------------

TRICKY = [
    "echo 'quoted \"double\"'",
    "echo a::b",
    "[ -d . ] && echo bracket",
    "echo [x::y]",
    "echo héllo wörld ✓",
    "echo same",
    "echo same",
]


def _ids(pytester: pytest.Pytester) -> list[str]:
    result = pytester.runpytest_subprocess("cmds.batch", "--collect-only", "-q", "-p", "no:cacheprovider")
    return [line for line in result.outlines if line.startswith("cmds.batch::")]


def test_ids_round_trip_as_arguments(pytester: pytest.Pytester) -> None:
    write(pytester, "\n".join(TRICKY) + "\n")
    ids = _ids(pytester)
    assert len(ids) == len(TRICKY) == len(set(ids))
    for nodeid in ids:
        result = pytester.runpytest_subprocess(nodeid, "-rA", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"PASSED {nodeid}"])


def test_ids_round_trip_through_deselect(pytester: pytest.Pytester) -> None:
    # --deselect matches by prefix (pytest's rule, as for Python tests), so the
    # kept id is one that no other id is a prefix of.
    write(pytester, "\n".join(TRICKY) + "\n")
    ids = _ids(pytester)
    keep = "cmds.batch::echo same (2)"
    args = [a for nodeid in ids if nodeid != keep for a in ("--deselect", nodeid)]
    result = pytester.runpytest_subprocess("cmds.batch", *args, "-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=0, deselected=len(TRICKY))  # "echo same" is a prefix of the kept id
    args = [a for nodeid in ids[:-2] for a in ("--deselect", nodeid)]
    result = pytester.runpytest_subprocess("cmds.batch", *args, "-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=len(TRICKY) - 2)
    result.stdout.fnmatch_lines(["PASSED cmds.batch::echo same", f"PASSED {keep}"])


def test_ids_identical_on_every_worker(pytester: pytest.Pytester) -> None:
    write(pytester, "\n".join(TRICKY * 3) + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(TRICKY) * 3)
    assert "Different tests were collected" not in result.stdout.str()


def test_last_failed_after_inserting_lines(pytester: pytest.Pytester) -> None:
    write(pytester, "echo a\nfalse\necho c\n")
    pytester.runpytest_subprocess("cmds.batch").assert_outcomes(passed=2, failed=1)
    write(pytester, "echo new1\necho new2\necho a\nfalse\necho c\n")
    result = pytester.runpytest_subprocess("--lf", "-rA")
    assert outcomes(result) == {"failed": 1}
    result.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*", "exit code 1 · cmds.batch:4 · *"])
    result.stdout.fnmatch_lines(["FAILED cmds.batch::false*"])


def test_canary_pytest_lf_file_skipping_plugin_name(pytester: pytest.Pytester) -> None:
    """Canary (docs/internals.md): under --lf pytest skips files through a plugin registered as "lfplugin-collskip"."""
    from pytest_batchrunner.plugin import LF_SKIP_PLUGIN

    pytester.makepyfile(test_a="def test_fails():\n    assert False\n")
    pytester.makeconftest(
        "def pytest_collection_finish(session):\n"
        f"    print('SKIPPING PLUGIN:', session.config.pluginmanager.get_plugin({LF_SKIP_PLUGIN!r}) is not None)\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(failed=1)
    result = pytester.runpytest_subprocess("--lf", "-s")
    assert "SKIPPING PLUGIN: True" in result.stdout.str(), (
        f"pytest no longer registers its --lf file skipping as {LF_SKIP_PLUGIN!r}: the plugin's "
        "pytest_make_collect_report cannot collect a failed batch file whose id pytest cannot cut back to its path"
    )


def test_keyword_selection_and_reportinfo(pytester: pytest.Pytester) -> None:
    write(pytester, "echo build\necho test\nfalse build\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-k", "build", "-v", "-rf", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*_ $ false build _*", "exit code 1 · cmds.batch:3 · *"])


# -- interruption -------------------------------------------------------------------------


def interrupt_run(pytester: pytest.Pytester, args: list[str], how: str) -> tuple[int, str]:
    """Start pytest, wait until a command has touched ``started``, interrupt it; return (exit code, output).

    SIGINT goes to the whole process group, as a terminal's Ctrl+C does; SIGTERM to
    pytest alone, as a CI runner sends it first.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", *FAST, *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (pytester.path / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the run never reached the slow command"
        time.sleep(0.05)
    time.sleep(0.3)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupt_mid_run(pytester: pytest.Pytester, mode: str, no_leftovers: str, how: str) -> None:
    write(pytester, "echo first\ntouch started; sleep 307\ntouch started2; sleep 308\necho never\n")
    code, text = interrupt_run(pytester, ["-n", "2"] if mode == "xdist" else [], how)
    assert code == pytest.ExitCode.INTERRUPTED, text
    assert "BatchRunner summary" in text
    assert "Interrupted" in text
    # no_leftovers checks the sleeps were killed.


# -- output volume and hostile text ---------------------------------------------------------


def test_huge_output_keeps_memory_flat_and_the_tail(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # 400 MB on stdout, then a last line and a failure. Peak RSS of pytest and its
    # children (the largest of them) is read from the wrapper's RUSAGE_CHILDREN.
    write(pytester, "head -c 400000000 /dev/zero | tr '\\0' x; echo; echo last-line; exit 1\n")
    wrapper = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run([sys.executable, '-m', 'pytest', 'cmds.batch', '-p', 'no:cacheprovider',"
        " '--batch-json', 'out.json']).returncode\n"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], cwd=pytester.path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    peak_mb = int(proc.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
    assert peak_mb < 120, f"peak RSS {peak_mb:.0f} MB"
    assert "last-line" in proc.stdout
    assert "of 400000011 bytes" in proc.stdout
    import json

    (result,) = json.loads((pytester.path / "out.json").read_text())["results"]
    assert result["stdout"].endswith("x\nlast-line\n") and "bytes dropped by pytest-batchrunner" in result["stdout"]
    assert len(result["stdout"]) < 2 * 1024 * 1024


def test_command_text_runs_as_written_and_environment_stays_out_of_reports(
    pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_SECRET", "hunter2-do-not-log")
    write(pytester, "printf '%s|{}|%%d|$BATCH_SECRET|\\n' x > out.txt\ntest -n \"$BATCH_SECRET\"\n")
    result = run("--batch-json", "r.json", "--batch-log", "r.log", "--batch-joblog", "r.tsv", "--junitxml", "r.xml")
    result.assert_outcomes(passed=2)
    # The shell did the expansion, nothing else did: {} and %d were handed over untouched.
    assert (pytester.path / "out.txt").read_text() == "x|{}|%d|$BATCH_SECRET|\n"
    for name in ("r.json", "r.log", "r.tsv", "r.xml"):
        assert "hunter2-do-not-log" not in (pytester.path / name).read_text(errors="replace"), name


def test_environment_changes_by_python_tests_reach_later_commands(pytester: pytest.Pytester) -> None:
    # Commands get a snapshot of pytest's environment (threads must not read os.environ
    # while pytest changes it), refreshed after every Python test.
    pytester.makepyfile(test_a_env="import os\ndef test_set():\n    os.environ['FROM_PYTHON'] = 'yes'\n")
    write(pytester, 'test "$FROM_PYTHON" = yes && test -z "$PYTEST_CURRENT_TEST"\n', "z.batch")
    result = pytester.runpytest_subprocess("test_a_env.py", "z.batch", "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_only_rerun_selects_by_status(pytester: pytest.Pytester, run) -> None:
    # A failure's message starts with its status, so --only-rerun can pick what to retry.
    write(
        pytester,
        'test "$BATCH_ATTEMPT" = 2 || exit 75\n'
        'test "$BATCH_ATTEMPT" = 2 || exit 3\n'
        'test "$BATCH_ATTEMPT" = 2 || sleep 5\n',
    )
    result = run("--reruns", "1", "--only-rerun", "exit code 75", "--only-rerun", "timed out", "--timeout", "0.5", *FAST)
    assert outcomes(result) == {"passed": 2, "failed": 1, "rerun": 2}
    result.stdout.fnmatch_lines(["*exit code 3 · cmds.batch:2*"])


MIXED = "echo ok\nfalse\ntest -f flag || { touch flag; exit 1; }\nsleep 5\nkill -SEGV $$\necho ok\n"


@pytest.mark.parametrize("dist", ["load", "loadfile", "loadgroup", "worksteal"])
def test_every_dist_mode_gives_the_in_process_outcomes(pytester: pytest.Pytester, no_leftovers: str, dist: str) -> None:
    common = ("cmds.batch", "--reruns", "1", "--timeout", "0.5", *FAST, "-p", "no:cacheprovider")
    write(pytester, MIXED)
    expected = outcomes(pytester.runpytest_subprocess(*common))
    (pytester.path / "flag").unlink()
    result = pytester.runpytest_subprocess(*common, "-n", "2", "--dist", dist)
    assert outcomes(result) == expected == {"passed": 3, "failed": 3, "rerun": 4}
    result.stdout.fnmatch_lines(["Total Commands: 6 | Successful: 3 | Failed: 3 (of them timed out: 1) | Flaky: 1 | Reruns: 4"])


def test_python_tests_keep_their_capture_beside_commands_that_skip_it(pytester: pytest.Pytester, run, mode: str) -> None:
    """Batch items leave pytest's output capture out of their phases; Python tests in the same run keep it."""
    write(pytester, "echo from-the-command\necho to-stderr >&2\n")
    pytester.makepyfile(test_py="""
        import sys

        def test_prints():
            print("from-python-stdout")
            print("from-python-stderr", file=sys.stderr)
    """)
    pytester.makeconftest("""
        import os

        def pytest_runtest_call(item):
            # Written straight to this process's descriptor 1 while the item runs:
            # captured into a Python test's report; a batch item's phase captures nothing.
            os.write(1, f"conftest-fd-write {item.name}\\n".encode())
    """)
    result = run("-rP")
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str()
    # The Python test's own output and the fd write during it are in its report, not loose on the terminal.
    result.stdout.fnmatch_lines(["*_ test_prints _*", "*Captured stdout call*", "conftest-fd-write test_prints",
                                 "from-python-stdout", "*Captured stderr call*", "from-python-stderr"])
    # The command's output is its report's section, as before.
    result.stdout.fnmatch_lines(["*$ echo from-the-command _*", "*Captured stdout call*", "from-the-command"])
    result.stdout.fnmatch_lines(["*$ echo to-stderr >&2 _*", "*Captured stderr call*", "to-stderr"])
    assert text.count("\nfrom-the-command\n") == 1
    if mode == "inprocess":  # (an xdist worker's descriptor 1 is not the terminal)
        # What a hook writes during a batch item is not captured (documented): it reaches the terminal as written.
        assert -1 < text.find("conftest-fd-write echo from-the-command") < text.index("= PASSES =")
    assert "Captured stdout setup" not in text and "Captured stdout teardown" not in text


def test_a_worker_sends_records_as_values_in_the_records_key_order() -> None:
    """xdist workers send an attempt record's values alone (RECORD_KEYS order): the keys must be the record's."""
    import ast
    import inspect
    import textwrap

    from pytest_batchrunner.plugin.items import RECORD_KEYS, CommandItem

    source = textwrap.dedent(inspect.getsource(CommandItem.record_of))
    returned = [node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Return)]
    record = next(value for value in returned if isinstance(value, ast.Dict))
    assert tuple(key.value for key in record.keys) == RECORD_KEYS  # type: ignore[union-attr]


def test_records_cross_from_workers_whole(pytester: pytest.Pytester, no_leftovers: str) -> None:
    """Under -n 2 the controller's reports carry the whole record (the values were sent without their keys)."""
    from pytest_batchrunner.plugin.items import RECORD_KEYS

    write(pytester, "echo out\nexit 3\n")
    pytester.makeconftest(f"""
        import json

        def pytest_configure(config):
            global CONTROLLER
            CONTROLLER = not hasattr(config, "workerinput")

        def pytest_runtest_logreport(report):
            record = getattr(report, "batch", None)
            if CONTROLLER and record is not None:
                with open("records.jsonl", "a") as f:
                    f.write(json.dumps([type(record).__name__, sorted(record) == sorted({list(RECORD_KEYS)!r}),
                                        record["command"], record["exit_code"], record["worker"]]) + "\\n")
    """)
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == 1
    rows = sorted(json.loads(line) for line in (pytester.path / "records.jsonl").read_text().splitlines())
    assert [row[:4] for row in rows] == [["dict", True, "echo out", 0], ["dict", True, "exit 3", 3]]
    assert all(row[4].startswith("gw") for row in rows)


FREEZE_PROBE = """
import gc
import pytest

@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):  # the process that reports: in-process, or the xdist controller
        with open("frozen.txt", "w") as f:
            f.write(str(gc.get_freeze_count()))
"""


@pytest.mark.parametrize("with_python_test", [False, True], ids=["batch-alone", "with-a-python-test"])
def test_a_batch_alone_is_frozen_before_pytests_last_collections(pytester: pytest.Pytester, run,
                                                                   with_python_test: bool) -> None:
    """pytest's five gc.collect() calls at the end walk nothing after a batch alone, on the xdist controller too.

    With a Python test in the run they stay: they are how pytest reports objects whose __del__ failed.
    """
    write(pytester, "true\ntrue\n")
    pytester.makeconftest(FREEZE_PROBE)
    if with_python_test:
        pytester.makepyfile(test_py="def test_it():\n    pass\n")
    result = run()
    assert result.ret == 0, result.stdout.str()
    frozen = int((pytester.path / "frozen.txt").read_text())
    assert (frozen == 0) == with_python_test, frozen


def test_a_batch_file_outside_the_rootdir_is_reported_as_one(
    pytester: pytest.Pytester, mode: str, no_leftovers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest names a file outside the rootdir relative to the argument that found
    # it: "" for the file itself, so its items were "::echo ok", not a batch
    # file's, and every report called them "not run".
    (pytester.path / "proj").mkdir()
    (pytester.path / "proj" / "pytest.ini").write_text("")
    (pytester.path / "ext").mkdir()
    (pytester.path / "ext" / "b.batch").write_text("echo ok\nexit 3\n")
    monkeypatch.chdir(pytester.path / "proj")
    extra = ["-n", "2"] if mode == "xdist" else []
    result = pytester.runpytest_subprocess(
        "../ext/b.batch", "--rootdir=.", "-rA", "-p", "no:cacheprovider", "--batch-json", "r.json",
        "--junitxml", "j.xml", *extra,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Total Commands: 2 | Successful: 1 | Failed: 1 | Flaky: 0 | Reruns: 0*",
        "PASSED ../ext/b.batch::echo ok",
    ])
    results = json.loads((pytester.path / "proj" / "r.json").read_text())["results"]
    assert [(r["command"], r["status"]) for r in results] == [("echo ok", "passed"), ("exit 3", "failed")]
    junit = (pytester.path / "proj" / "j.xml").read_text()
    assert junit.count("<testcase ") == 2 and 'type="batchrunner.notrun"' not in junit
    # The id works as pytest's arguments do.
    result = pytester.runpytest_subprocess(
        "../ext/b.batch", "--rootdir=.", "--deselect", "../ext/b.batch::exit 3", "-p", "no:cacheprovider", *extra
    )
    # (xdist's controller does not count what its workers deselected.)
    result.assert_outcomes(passed=1, deselected=0 if extra else 1)


def test_tb_line_locates_a_failure_at_its_batch_line(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo a\necho x; exit 1\n")
    result = run("--tb=line")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["cmds.batch:2: exit code 1 · cmds.batch:2 ·*"])
    assert "items.py" not in result.stdout.str()


def test_canary_pytest_value_repr_fields_the_failure_report_sets() -> None:
    """Canary (docs/internals.md): ExceptionInfo.getrepr(style="value") has the fields a command's failure report sets."""
    from pytest_batchrunner.plugin.items import _failure_repr

    try:
        raise ValueError("raised\nhere")
    except ValueError:
        excinfo = pytest.ExceptionInfo.from_current()
    rep = _failure_repr(excinfo, "exit code 1\nthe rest", "cmds.batch", 3)
    fields = "reprtraceback.reprentries[0].lines, reprcrash.message, reprcrash.path, reprcrash.lineno"
    assert not isinstance(rep, str), f"pytest's getrepr(style='value') no longer has {fields}: failures are plain text"
    assert rep.reprtraceback.reprentries[0].lines == ["exit code 1", "the rest"], fields
    assert (rep.reprcrash.message, rep.reprcrash.path, rep.reprcrash.lineno) == ("exit code 1", "cmds.batch", 3), fields


def test_canary_pytest_capture_manager_the_command_items_leave_out(pytester: pytest.Pytester) -> None:
    """Canary (docs/internals.md): pytest's "capturemanager" plugin wraps the runtest phases a command item runs without it."""
    from pytest_batchrunner.plugin.items import _UNCAPTURED

    write(pytester, "true\n")
    pytester.makeconftest(
        "def pytest_sessionstart(session):\n"
        "    capture = session.config.pluginmanager.get_plugin('capturemanager')\n"
        f"    print('CAPTURE PHASES:', capture is not None and all(hasattr(capture, n) for n in {_UNCAPTURED!r}))\n"
        "def pytest_runtest_call(item):\n"
        "    print('RELAY OF ITS OWN:', item.ihook is not item.session.gethookproxy(item.path))\n"
    )
    result = pytester.runpytest_subprocess("cmds.batch", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "CAPTURE PHASES: True" in out and "RELAY OF ITS OWN: True" in out, (
        "pytest's plugin 'capturemanager' no longer implements " + ", ".join(_UNCAPTURED) + ": command items "
        "(CommandItem.ihook) would be captured, a quarter of a run of `true`'s time\n" + out
    )


def test_retries_without_rerunfailures_is_a_usage_error(pytester: pytest.Pytester, run) -> None:
    """``retries=`` cannot be kept without pytest-rerunfailures: refused before any command runs, naming the line."""
    write(pytester, "touch ran-1\nexit 1   # batch: retries=2\n")
    result = run("-p", "no:rerunfailures")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: cmds.batch:2: retries=2 needs pytest-rerunfailures, which is not active (-p no:rerunfailures, "
        "or not installed): enable it, or remove retries= from the line"
    ])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "ran-1").exists()


def test_a_python_test_whose_id_holds_a_batch_file_name_is_not_a_command(pytester: pytest.Pytester, run) -> None:
    # Its id, test_x.py::test_p[a.batch::echo x], ends like a command's: it is still a Python test.
    pytester.makepyfile(test_x='import pytest\n\n@pytest.mark.parametrize("x", ["a.batch::echo x"])\ndef test_p(x):\n    pass\n')
    result = run("test_x.py", "--batch-json=r.json")
    result.assert_outcomes(passed=1)
    assert "BatchRunner summary" not in result.stdout.str()
    assert not (pytester.path / "r.json").exists() or json.loads((pytester.path / "r.json").read_text())["results"] == []
