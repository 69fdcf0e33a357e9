"""The suite's own guards (tests/conftest.py), proven on purpose-built strays and signal dispositions.

Each case runs a small test file in a pytest subprocess that uses this suite's
conftest, and checks what the leftover check says about it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

STRAYS = '''
import os, subprocess, sys, time

from pytest_batchrunner.process import guardian

GUARDIAN = os.path.join(os.path.dirname(guardian.__file__), "guardian_process.py")


def test_escaped_session_without_token():
    # Leaves its session and drops the token: only the process tree finds it.
    subprocess.run("setsid sh -c 'env -u BATCHRUNNER_TEST_TOKEN sleep 361 &'", shell=True, check=True)


def test_lingering_guardian():
    # A "guardian" whose runner (the shell) has exited, still there.
    subprocess.run(
        [sys.executable, "-c", "import subprocess, sys; subprocess.Popen("
         "[sys.executable, '-c', 'import time; time.sleep(362)', sys.argv[1]], start_new_session=True)", GUARDIAN],
        check=True,
    )


def test_stray_dying_within_the_kill_sequence():
    subprocess.run("sleep 0.3 &", shell=True, check=True)


def test_stray_dying_on_its_own_later():
    # Not hidden by a blind wait: it outlives the guardian's kill sequence.
    subprocess.run("sleep 3 &", shell=True, check=True)


def test_own_guardian_is_fine():
    assert guardian.start() is not None


def test_clean():
    subprocess.run("true", shell=True, check=True)
'''


def test_leftover_check_finds_and_names_every_stray(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_strays=STRAYS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-rE")
    result.assert_outcomes(passed=6, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_escaped_session_without_token*",
            "*test_escaped_session_without_token: 1 process(es) still alive*now killed:",
            "*  pid * (ppid *, pgid *, session *; in this pytest's process tree): sleep 361",
            "*ERROR at teardown of test_lingering_guardian*",
            "*  guardian pid *guardian_process.py",
            "*ERROR at teardown of test_stray_dying_on_its_own_later*",
            "*  pid * (ppid *, pgid *, session *; in this pytest's process tree): sleep 3",
        ]
    )
    # What the check killed is gone (the outer check would fail this test otherwise).


def test_leftover_check_ignores_another_worker_of_the_suite(pytester: pytest.Pytester) -> None:
    # Under -n 2 each worker sees its own tree and token only: a stray of one
    # is named once, by its own test, not by the test the other worker runs.
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_two="""
        import subprocess, time

        def test_leaves_a_stray():
            subprocess.run("setsid sleep 363 &", shell=True, check=True)
            time.sleep(1)

        def test_runs_beside_it():
            time.sleep(1)
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR test_two.py::test_leaves_a_stray*"])


SIGNALS = """
import signal, subprocess, sys

def test_children_get_default_sigint_and_sigterm():
    status = subprocess.run([sys.executable, "-c", "print(open('/proc/self/status').read())"],
                            capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for name in ("SigIgn", "SigBlk"):
        mask = int(fields[name], 16)
        for sig in (signal.SIGINT, signal.SIGTERM):
            assert not mask & (1 << (sig - 1)), (name, sig)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["inprocess", "xdist"])
def test_processes_tests_start_handle_sigint_and_sigterm_by_default(pytester: pytest.Pytester, xdist) -> None:
    # The suite itself is launched with SIGINT and SIGTERM ignored (a script's
    # background `&` does that to SIGINT): its conftest restores the defaults.
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_signals=SIGNALS)
    argv = " ".join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *xdist])
    proc = subprocess.run(
        ["bash", "-c", f"trap '' INT TERM; exec {argv}"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_without_the_conftest_the_ignored_signal_would_reach_them(pytester: pytest.Pytester) -> None:
    # The case above is not vacuous: the same run without the restoring conftest fails.
    pytester.makepyfile(test_signals=SIGNALS)
    argv = " ".join([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"])
    proc = subprocess.run(
        ["bash", "-c", f"trap '' INT; exec {argv}"], cwd=pytester.path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"('SigIgn', <Signals.SIGINT: {int(signal.SIGINT)}>)" in proc.stdout
