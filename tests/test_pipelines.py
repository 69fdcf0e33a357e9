"""Per-line ``# batch:`` settings and sequential groups, in-process and under xdist."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_plugin import FAST, outcomes, write


@pytest.fixture
def xdist_workers() -> str:
    """The pipelines issue asks for every setting under ``-n 4``."""
    return "4"


def test_retries_and_retry_delay(pytester: pytest.Pytester, run) -> None:
    write(
        pytester,
        'test "$BATCH_ATTEMPT" = 3  # batch: retries=2 retry-delay=0.1\n'
        "false  # batch: retries=0\n",
    )
    result = run("--reruns", "3")
    assert outcomes(result) == {"passed": 1, "failed": 1, "rerun": 2}


def test_retry_on_exit_codes(pytester: pytest.Pytester, run) -> None:
    write(
        pytester,
        'test "$BATCH_ATTEMPT" = 2 || exit 75  # batch: retries=1 retry-on=75,124\n'
        'test "$BATCH_ATTEMPT" = 2 || exit 3  # batch: retries=1 retry-on=75,124\n',
    )
    result = run()
    assert outcomes(result) == {"passed": 1, "failed": 1, "rerun": 1}


def test_timeout_setting_beats_command_line(pytester: pytest.Pytester, run) -> None:
    write(pytester, "sleep 0.8  # batch: timeout=5\nsleep 5  # batch: timeout=0.3\n")
    result = run("--timeout", "0.5", *FAST)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.3 s*"])


def test_expect_exit_code(pytester: pytest.Pytester, run) -> None:
    write(pytester, "grep -q secret /dev/null  # batch: expect=1\ntrue  # batch: expect=1\n")
    result = run("-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*exit code 0, expected 1*"])


def test_cwd_and_env(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "marker").write_text("x")
    write(
        pytester,
        'test -f marker && test "$A" = 1 && test "$B" = "two words"  # batch: cwd=sub env=A=1 env=B="two words"\n'
        "true  # batch: cwd=missing\n",
    )
    result = run("-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*cwd=missing: no such directory*"])


def test_skip_xfail_and_tags(pytester: pytest.Pytester, run) -> None:
    write(
        pytester,
        "touch skipped1  # batch: skip\n"
        'touch skipped2  # batch: skip="waiting for ops"\n'
        "false  # batch: xfail\n"
        "echo smoke  # batch: tags=smoke,fast\n"
        "echo slow  # batch: tags=slow\n",
    )
    result = run("-rsx", "-m", "not slow")
    # (xdist does not report deselected counts, so they are not compared)
    assert outcomes(result) == {"passed": 1, "skipped": 2, "xfailed": 1}
    result.stdout.fnmatch_lines(["*waiting for ops*"])
    assert not (pytester.path / "skipped1").exists()
    result = run("-m", "smoke", "--strict-markers", "-rA")
    assert outcomes(result) == {"passed": 1}
    result.stdout.fnmatch_lines(["PASSED cmds.batch::echo smoke"])


DEPLOY = """\
# batch: group=deploy sequential
echo backup >> deploy.log; sleep 0.3
echo migrate >> deploy.log; exit 1
echo restart >> deploy.log
# batch: group=docs sequential
echo build >> docs.log
echo publish >> docs.log
# batch: retries=1
sleep 0.2; echo check-a
sleep 0.2; echo check-b
test -f flaky || { touch flaky; exit 1; }
"""


@pytest.mark.parametrize("workers", [None, "2", "4"])
def test_sequential_groups_keep_order_and_fail_fast(pytester: pytest.Pytester, no_leftovers: str, workers) -> None:
    write(pytester, DEPLOY, "deploy.batch")
    extra = ["-n", workers] if workers else []
    result = pytester.runpytest_subprocess("deploy.batch", "-rs", "-p", "no:cacheprovider", *extra)
    assert outcomes(result) == {"passed": 6, "failed": 1, "skipped": 1, "rerun": 1}
    result.stdout.fnmatch_lines(["*not run: step 2 (line 3) failed*"])
    assert (pytester.path / "deploy.log").read_text().split() == ["backup", "migrate"]
    assert (pytester.path / "docs.log").read_text().split() == ["build", "publish"]
    result.stdout.fnmatch_lines(["Total Commands: 8 | Successful: 6 | Failed: 1 | Flaky: 1 | Reruns: 1 | Skipped: 1"])


def test_sequential_steps_wait_for_each_other(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Each step checks the one before it has finished: only in-order, one-at-a-time passes.
    steps = "\n".join(
        f'test "$(cat step 2>/dev/null || echo 0)" = {i}; sleep 0.1; echo {i + 1} > step  # batch: group=g sequential'
        for i in range(6)
    )
    write(pytester, steps + "\n" + "\n".join(["sleep 0.1"] * 6) + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "4", "--batch-jobs", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)


def test_explicit_dist_load_warns(pytester: pytest.Pytester) -> None:
    write(pytester, "true  # batch: sequential\ntrue  # batch: sequential\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "--dist", "load", "-W", "always", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*sequential groups*--dist load does not keep*"])
    # Never out of order: a step that did not run after the one before it on its worker is not run.
    counts = outcomes(result)
    assert counts.get("passed", 0) + counts.get("skipped", 0) == 2 and counts.get("passed", 0) >= 1, counts


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["deploy.batch", "parallel.batch"])
def test_examples_run_under_n4(pytester: pytest.Pytester, no_leftovers: str, name: str) -> None:
    # The examples' commands run in the repository (cwd=..), whatever the invocation directory.
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess(str(EXAMPLES / name), "-n", "4", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["Success Rate: 100.0%"])
