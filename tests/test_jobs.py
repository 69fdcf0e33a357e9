"""``--batch-jobs N``: commands in flight inside one process, with every guarantee intact.

Concurrency is shown without timing: each command of a barrier batch waits until
four commands have started, which only a run with four in flight can satisfy.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest

from test_plugin import FAST, interrupt_run, outcomes, write

BARRIER = (
    'touch "started.$BATCH_LINE"; n=0; '
    'until [ "$(ls started.* | wc -l)" -ge 4 ]; do sleep 0.05; n=$((n+1)); [ $n -lt 200 ] || exit 9; done'
)

# One xdist group: under -n 2 every line goes to the same worker, whose own
# session stops at the failure (another worker may run what xdist already gave it).
ONE_WORKER = "# batch: group=all\n"


def test_runs_four_at_once(pytester: pytest.Pytester, run) -> None:
    write(pytester, "\n".join([BARRIER] * 8) + "\n")
    result = run("--batch-jobs", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["Success Rate: 100.0%"])


def test_a_long_command_leaves_no_slot_idle(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # The first command ends once the 40 after it have all run (or gives up after 60 s): the other two
    # slots must go on through them while it runs and pytest waits to report it (no head-of-line wait).
    short = 'touch "short.$BATCH_LINE"; sleep 0.05'
    long = ('n=0; until [ "$(ls short.* 2>/dev/null | wc -l)" -ge 40 ] || [ $n -ge 600 ]; do sleep 0.1; n=$((n+1)); done; '
            'ls short.* | wc -l > seen')
    write(pytester, "\n".join([long] + [short] * 40) + "\n")
    result = pytester.runpytest_subprocess("--batch-jobs", "3", "-p", "no:randomly", "cmds.batch", timeout=120)
    result.assert_outcomes(passed=41)
    assert int((pytester.path / "seen").read_text()) == 40


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_one_at_a_time_cannot_pass_the_barrier(pytester: pytest.Pytester, jobs: str) -> None:
    # Four barrier lines, each giving up after about 0.2 s: only four commands
    # in flight at once could pass them.
    line = (
        'trap \'rm -f "running.$BATCH_LINE"\' EXIT; touch "running.$BATCH_LINE"; n=0; '
        'until [ "$(ls running.* | wc -l)" -ge 4 ]; do sleep 0.05; n=$((n+1)); [ $n -lt 4 ] || exit 9; done'
    )
    write(pytester, "\n".join([line] * 4) + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-jobs", jobs, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)


def test_reports_stay_in_item_order(pytester: pytest.Pytester) -> None:
    # In-process only: xdist reports in completion order across workers by design.
    write(pytester, "sleep 0.6; echo first\necho second\nsleep 0.3; echo third\necho fourth\n")
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-jobs", "4", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    order = [line.split("::", 1)[1].split(" PASSED")[0] for line in result.outlines if " PASSED" in line]
    assert order == ["sleep 0.6; echo first", "echo second", "sleep 0.3; echo third", "echo fourth"]


def test_timeouts_and_reruns_per_attempt(pytester: pytest.Pytester, run) -> None:
    # `sleep 30` outlives any wait: if an attempt left it, the leftover check finds it.
    write(pytester, "sleep 30\ntest \"$BATCH_ATTEMPT\" = 2\necho ok\n")
    start = time.monotonic()
    result = run("--batch-jobs", "3", "--timeout", "0.5", "--reruns", "1", *FAST)
    assert outcomes(result) == {"passed": 2, "failed": 1, "rerun": 2}
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*", "*Flaky: 1 | Reruns: 2*"])
    assert time.monotonic() - start < 15


def test_line_timeout_applies_to_a_command_started_ahead(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo a\nsleep 5  # batch: timeout=0.5\necho b\n")
    result = run("--batch-jobs", "3", *FAST)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.5 s*"])


def test_skipped_lines_are_never_started(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo a\ntouch must-not-exist  # batch: skip\necho b\n")
    result = run("--batch-jobs", "3")
    result.assert_outcomes(passed=2, skipped=1)
    assert not (pytester.path / "must-not-exist").exists()


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_a_conftest_setup_hook_runs_before_the_command(pytester: pytest.Pytester, run, jobs: str) -> None:
    # A setup hook that skips a line or prepares its input must run before the
    # command starts, as with --batch-jobs 0: such items are not started ahead.
    pytester.makeconftest(
        """
        import pytest

        def pytest_runtest_setup(item):
            if "DANGER" in item.nodeid:
                pytest.skip("not here")
            if "prepared" in item.nodeid:
                with open("prepared.txt", "w") as f:
                    f.write("made by setup")
        """
    )
    write(pytester, "echo a >> log\necho DANGER >> log\ncat prepared.txt\necho c >> log\n")
    result = run("--batch-jobs", jobs, "-p", "no:randomly")
    result.assert_outcomes(passed=3, skipped=1)
    assert sorted((pytester.path / "log").read_text().split()) == ["a", "c"]
    result.stdout.fnmatch_lines(["*Total Commands: 4 | Successful: 3 | Failed: 0 |*Skipped: 1*"])


def test_exitfirst_kills_commands_in_flight(pytester: pytest.Pytester, run) -> None:
    # One worker under -n (pytest-xdist lets an item already running on another
    # worker finish when -x stops the run).
    write(pytester, ONE_WORKER + "sleep 0.3; false\nsleep 311\nsleep 312\nsleep 313\ntouch never-started\n")
    start = time.monotonic()
    result = run("--batch-jobs", "4", "-x", "-p", "no:randomly", *FAST)
    assert outcomes(result) == {"failed": 1}, result.stdout.str()
    # The sleeps started ahead were killed: they ran, and are interrupted (and failed), not "not run".
    result.stdout.fnmatch_lines(["*Total Commands: 5 | Successful: 0 | Failed: 4 |*Not run: 1*"])
    result.stdout.fnmatch_lines(["*sleep 311  [[]interrupted after*", "*sleep 312  [[]interrupted after*"])
    assert not (pytester.path / "never-started").exists()
    # Killed at once: the kill grace, not the sleeps, bounds the run.
    assert time.monotonic() - start < 15
    # The leftover check (tests/conftest.py) checks the sleeps were killed.


# The first line fails once the second has ended (its shell reaped) and the third has started: both ran
# ahead of their turn, which -x never gives them. The fourth may start when the second passes, or not.
RAN_AHEAD = ONE_WORKER + (
    'until [ -s b.pid ] && [ ! -e "/proc/$(cat b.pid)" ] && [ -e started ]; do sleep 0.01; done; false\n'
    'echo $$ > b.tmp; mv b.tmp b.pid; echo ran b\n'
    'touch started; sleep 300\n'
    'touch ran.4\n'
)


def test_exitfirst_reports_the_commands_that_ran_ahead_as_they_ended(pytester: pytest.Pytester, run) -> None:
    write(pytester, RAN_AHEAD)
    result = run("--batch-jobs", "3", "-x", "-p", "no:randomly", "--batch-json", "out.json", "--junitxml", "junit.xml", *FAST)
    assert outcomes(result) == {"failed": 1}, result.stdout.str()
    results = json.loads((pytester.path / "out.json").read_text())["results"]
    # The fourth ran (it passed), was started and stopped while its shell ran (interrupted: before its `touch`,
    # or after it but before the shell had exited), or never started.
    fourth = [("passed", 1, 0), ("interrupted", 1, -1)] if (pytester.path / "ran.4").exists() else [
        ("interrupted", 1, -1), ("not run", 0, -1)]
    assert [(r["status"], r["attempts"], r["exit_code"]) for r in results[:3]] == [
        ("failed", 1, 1), ("passed", 1, 0), ("interrupted", 1, -1)
    ]
    assert (results[3]["status"], results[3]["attempts"], results[3]["exit_code"]) in fourth
    assert results[1]["stdout"] == "ran b\n" and results[2]["duration_ms"] > 0
    result.stdout.fnmatch_lines(["*cmds.batch:4  touch started; sleep 300  [[]interrupted after *"])
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    verdicts = [[child.tag for child in case if child.tag in ("failure", "skipped")] for case in cases]
    assert verdicts[:3] == [["failure"], [], ["failure"]]
    # The leftover check (tests/conftest.py) checks the `sleep 300` was killed.


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupt_kills_all_in_flight(pytester: pytest.Pytester, mode: str, no_leftovers: str, how: str) -> None:
    write(pytester, "touch started; sleep 321\nsleep 322\nsleep 323\nsleep 324\nsleep 325\n")
    extra = ["-n", "2"] if mode == "xdist" else []
    code, text = interrupt_run(pytester, ["--batch-jobs", "3", *extra], how)
    assert code == pytest.ExitCode.INTERRUPTED, text
    # no_leftovers checks that every command in flight was killed.


# A lock per pytest process: under -n two workers run side by side by design,
# each one command at a time.
LOCKED = (
    'mkdir "lock.$BATCH_WORKER" 2>/dev/null || exit 9; echo "$BATCH_WORKER" >> workers.log; '
    'sleep 0.05; rmdir "lock.$BATCH_WORKER"'
)


@pytest.mark.parametrize("jobs", ["0", "1"])
def test_default_runs_one_command_at_a_time(pytester: pytest.Pytester, run, mode: str, jobs: str) -> None:
    # --batch-jobs 1 (the default) starts the next command as soon as the previous one
    # passed, while pytest still reports it: commands never overlap.
    write(pytester, "\n".join([LOCKED] * 12) + "\n")
    result = run("--batch-jobs", jobs)
    result.assert_outcomes(passed=12)
    workers = set((pytester.path / "workers.log").read_text().split())
    assert workers == ({"gw0", "gw1"} if mode == "xdist" else {"main"}), workers


# Widens every window between a failure and the end of the run: each protocol
# starts late (a command started ahead has ended by then), and a failure's report
# is slow, before pytest counts it and after.
SLOW_HOOKS = """
import time
import pytest

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    time.sleep(0.3)
    return (yield)

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    if report.failed:
        time.sleep(0.4)

@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    time.sleep(0.2)
"""

@pytest.mark.parametrize(
    "jobs, lines, extra",
    [
        # --batch-jobs 1: `false` is started ahead while `true` is reported; the
        # old window started the next command when `false`'s own protocol began.
        ("1", ["true", "false"], []),
        # Several in flight: `false` ends first; a job ending after it must not refill.
        ("3", ["sleep 0.5", "false", "sleep 0.2"], []),
        # A sequential step runs its own command: a job ending after its failure
        # but before its report must not refill either.
        ("2", ["sleep 0.3; false  # batch: sequential group=all", "sleep 0.6", "sleep 0.6"], []),
        # Reruns in the job slots: each failed attempt holds, the slot's rerun
        # is the item's own, and nothing else starts after the last one.
        ("3", ["sleep 0.5", "false", "sleep 0.2"], ["--reruns", "1"]),
    ],
    ids=["jobs1", "jobs3", "own-attempt", "slot-reruns"],
)
def test_exitfirst_starts_nothing_after_a_failure(
    pytester: pytest.Pytester, run, mode: str, jobs: str, lines: list[str], extra: list[str]
) -> None:
    pytester.makeconftest(SLOW_HOOKS)
    never = ["touch must-not-run.1", "touch must-not-run.2", "touch must-not-run.3"]
    write(pytester, ONE_WORKER + "\n".join(lines + never) + "\n")
    result = run("-x", "--batch-jobs", jobs, "-p", "no:randomly", *extra, *FAST)
    assert result.parseoutcomes()["failed"] == 1, result.stdout.str()
    # pytest-xdist ends a run stopped by -x as interrupted.
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if mode == "inprocess" else pytest.ExitCode.INTERRUPTED)
    assert sorted(p.name for p in pytester.path.glob("must-not-run*")) == []


def test_maxfail_starts_nothing_after_the_last_allowed_failure(pytester: pytest.Pytester, run) -> None:
    pytester.makeconftest(SLOW_HOOKS)
    # The first failure does not stop the run (its successors still start); the
    # second does, while the sleeps started with it are in flight: when they end,
    # nothing may take their slots.
    write(pytester, ONE_WORKER + "false\ntouch ran.2\nsleep 0.3\nfalse\nsleep 0.6\nsleep 0.6\ntouch must-not-run\n")
    result = run("--maxfail", "2", "--batch-jobs", "3", "-p", "no:randomly", *FAST)
    assert result.parseoutcomes()["failed"] == 2, result.stdout.str()
    assert (pytester.path / "ran.2").exists()
    assert sorted(p.name for p in pytester.path.glob("must-not-run*")) == []


@pytest.mark.parametrize("args", [(), ("--batch-jobs", "3"), ("-n", "2"), ("-n", "2", "--batch-jobs", "3")])
def test_every_command_runs_exactly_once(pytester: pytest.Pytester, no_leftovers: str, args) -> None:
    lines = [f"echo {i} >> ran.log; sleep 0.0{i % 3}" for i in range(40)]
    write(pytester, "\n".join(lines) + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", *args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=40)
    assert sorted(int(x) for x in (pytester.path / "ran.log").read_text().split()) == list(range(40))


# -- reruns in the job slots ---------------------------------------------------------------------


def attempt_spans(results: list[dict]) -> dict[tuple[int, int], tuple[float, float]]:
    """(line, attempt) -> (start, end) in seconds, from the JSON's attempt log."""
    import datetime

    spans = {}
    for r in results:
        for a in r["attempt_log"]:
            start = datetime.datetime.fromisoformat(a["timestamp"]).timestamp()
            spans[(r["line"], a["attempt"])] = (start, start + a["duration_ms"] / 1000)
    return spans


def test_reruns_overlap_in_the_job_slots(pytester: pytest.Pytester, run, mode: str) -> None:
    import json

    write(pytester, "sleep 0.4; exit 1\n" * 3)
    result = run("--batch-jobs", "3", "--reruns", "1", "--reruns-delay", "0.5", "--batch-json", "out.json")
    assert result.parseoutcomes() == {"failed": 3, "rerun": 3}
    spans = attempt_spans(json.loads((pytester.path / "out.json").read_text())["results"])
    assert len(spans) == 6
    for line in (1, 2, 3):
        # Each rerun waits its delay after its own first attempt...
        assert spans[(line, 2)][0] - spans[(line, 1)][1] >= 0.5 - 0.01
    # ...and the three reruns run at once (one after another, they could not all overlap).
    reruns = [spans[(line, 2)] for line in (1, 2, 3)]
    assert max(start for start, _ in reruns) < min(end for _, end in reruns), reruns


def test_only_rerun_and_retry_on_still_decide_in_the_slots(pytester: pytest.Pytester, no_leftovers: str) -> None:
    import json

    write(pytester, "exit 75 # batch: retries=1 retry-on=75\nexit 3 # batch: retries=1 retry-on=75\n"
                    "echo x >> ran.$BATCH_LINE; exit 4\necho x >> ran.$BATCH_LINE; exit 5\n")
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-jobs", "4", "--reruns", "2", "--only-rerun", "exit code (75|4)",
                                           "--batch-json", "out.json", "-p", "no:cacheprovider")
    assert result.parseoutcomes() == {"failed": 4, "rerun": 3}
    attempts = [r["attempts"] for r in json.loads((pytester.path / "out.json").read_text())["results"]]
    assert attempts == [2, 1, 3, 1]
    # Nothing was started that rerunfailures did not ask for.
    assert (pytester.path / "ran.3").read_text() == "x\n" * 3 and (pytester.path / "ran.4").read_text() == "x\n"


def test_nothing_starts_after_x_stops_the_run(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "exit 1\ntouch ran.$BATCH_ATTEMPT; sleep 0.5; exit 1\necho never > never\n")
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-jobs", "2", "--reruns", "1", "--reruns-delay", "0.3", "-x",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"failed": 1, "rerun": 1}
    time.sleep(0.5)
    # The second command's rerun was waiting for its delay when -x stopped the run: it never started.
    assert (pytester.path / "ran.1").exists() and not (pytester.path / "ran.2").exists()
    assert not (pytester.path / "never").exists()


def test_every_rerun_in_a_slot_has_its_own_timeout(pytester: pytest.Pytester, no_leftovers: str) -> None:
    import json

    write(pytester, "sleep 5\n" * 3)
    result = pytester.runpytest_subprocess("cmds.batch", "--batch-jobs", "3", "--reruns", "1", "--timeout", "0.3",
                                           "--batch-kill-grace", "0.1", "--batch-json", "out.json", "-p", "no:cacheprovider")
    assert result.parseoutcomes() == {"failed": 3, "rerun": 3}
    results = json.loads((pytester.path / "out.json").read_text())["results"]
    assert all(a["timed_out"] and 250 < a["duration_ms"] < 2000 for r in results for a in r["attempt_log"])
    spans = attempt_spans(results)
    reruns = [spans[(line, 2)] for line in (1, 2, 3)]
    assert max(start for start, _ in reruns) < min(end for _, end in reruns), reruns


# Each protocol starts late: a command started ahead has ended (failed) before
# its own item's protocol begins, the moment the next command used to start.
LATE_PROTOCOL = """
import time
import pytest

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    time.sleep(0.3)
    return (yield)
"""


def test_one_at_a_time_a_rerun_comes_before_the_next_command(pytester: pytest.Pytester) -> None:
    """--batch-jobs 1 with reruns: the failed command's rerun runs before the next command starts."""
    pytester.makeconftest(LATE_PROTOCOL)
    log = "order.log"

    def logged(tag: str, body: str) -> str:
        return f'echo "start {tag} $BATCH_ATTEMPT" >> {log}; {body}; s=$?; echo "end {tag} $BATCH_ATTEMPT" >> {log}; exit $s'

    failing_once = 'test "$BATCH_ATTEMPT" -ge 2'
    write(pytester, "\n".join([logged("a", "true"), logged("b", failing_once), logged("c", "sleep 0.2"),
                               logged("d", "true")]) + "\n")
    result = pytester.runpytest("cmds.batch", "--reruns", "1", "-p", "no:randomly", *FAST)
    assert result.parseoutcomes() == {"passed": 4, "rerun": 1}, result.stdout.str()
    assert (pytester.path / log).read_text().splitlines() == [
        "start a 1", "end a 1", "start b 1", "end b 1", "start b 2", "end b 2",
        "start c 1", "end c 1", "start d 1", "end d 1",
    ]


# -- canaries: what the plugin reads of pytest-rerunfailures and pytest-timeout -------------------

REPORT_TIMEOUTS = """
import json

import pytest

from pytest_batchrunner.plugin.timeouts import resolve_timeout

seen = {}


def pytest_collection_finish(session):
    for item in session.items:
        seen[item.spec.line] = [None, resolve_timeout(item)]  # pytest-timeout arms no timer without a timeout


@pytest.hookimpl(wrapper=True)
def pytest_timeout_set_timer(item, settings):
    seen[item.spec.line][0] = settings.timeout or None
    return (yield)


def pytest_sessionfinish(session):
    with open("timeouts.json", "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.parametrize(
    "ini, env, args",
    [("", None, []), ("timeout = 7", None, []), ("timeout = 7", "8", []), ("timeout = 7", "8", ["--timeout", "9"]),
     ("", "8", []), ("", None, ["--timeout", "9"])],
    ids=["none", "ini", "env-over-ini", "option-over-env", "env", "option"],
)
def test_canary_resolve_timeout_matches_pytest_timeout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_leftovers: str, ini: str, env: str | None, args: list[str]
) -> None:
    """Canary: --batch-jobs starts a command before pytest-timeout resolves its item's timeout, so
    resolve_timeout (plugin/timeouts.py) and default_timeout (plugin/engine.py) apply pytest-timeout's
    documented precedence (marker > --timeout > PYTEST_TIMEOUT > ini) themselves.

    pytest-timeout's public hook, pytest_timeout_set_timer, receives the value it resolved: if this fails
    after an upgrade of pytest-timeout, its precedence changed; follow it there.
    """
    pytester.makeconftest(REPORT_TIMEOUTS)
    pytester.makeini(f"[pytest]\n{ini}\n")
    if env is None:
        monkeypatch.delenv("PYTEST_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_TIMEOUT", env)
    write(pytester, "true\ntrue # batch: timeout=5\n")
    result = pytester.runpytest_subprocess("cmds.batch", *args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    seen = json.loads((pytester.path / "timeouts.json").read_text())
    assert len(seen) == 2, seen
    for line, (by_pytest_timeout, ours) in seen.items():
        assert ours == by_pytest_timeout, (
            f"pytest-timeout changed its precedence: resolve_timeout gives line {line} {ours}, pytest-timeout {by_pytest_timeout}")
    assert seen["2"][0] == 5.0  # the line's own timeout=, as a marker, beats all


RERUN_STATE_SEEN = """
import json

import pytest

from pytest_batchrunner.plugin.items import _RERUN_STATE

seen = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    # Inside the plugin's ReportCopies wrapper (tryfirst): rerunfailures' protocol is over, the pop not yet done.
    result = yield
    seen[item.spec.line] = [name for name in _RERUN_STATE if name in item.__dict__]
    return result


def pytest_sessionfinish(session):
    left = {item.spec.line: [name for name in _RERUN_STATE if name in item.__dict__] for item in session.items}
    with open("state.json", "w") as f:
        json.dump({"seen": seen, "left": left}, f)
"""


def test_canary_rerunfailures_item_state_is_what_the_plugin_frees(pytester: pytest.Pytester, no_leftovers: str) -> None:
    """Canary: ReportCopies (plugin/items.py) pops pytest-rerunfailures' private per-run attributes,
    _RERUN_STATE, from each batch item once its protocol is over (about 1 kB an item, kept to the session's end).

    If this fails after an upgrade of pytest-rerunfailures, it renamed or dropped some of them:
    the pop silently frees nothing any more; update _RERUN_STATE (or drop it if none is left).
    """
    from pytest_batchrunner.plugin.items import _RERUN_STATE

    pytester.makeconftest(RERUN_STATE_SEEN)
    write(pytester, "exit 1\ntrue\n")
    result = pytester.runpytest_subprocess("cmds.batch", "--reruns", "1", "-p", "no:cacheprovider")
    assert outcomes(result) == {"passed": 1, "failed": 1, "rerun": 1}
    state = json.loads((pytester.path / "state.json").read_text())
    for line in ("1", "2"):
        assert state["seen"][line] == list(_RERUN_STATE), (
            f"pytest-rerunfailures no longer sets {sorted(set(_RERUN_STATE) - set(state['seen'][line]))} on an item: "
            "update _RERUN_STATE in plugin/items.py"
        )
        assert state["left"][line] == [], state["left"]


def test_canary_rerunfailures_helpers_the_job_slots_call() -> None:
    """Canary (docs/internals.md): pytest-rerunfailures' module helpers that RerunPolicy and the job slots' reruns
    (plugin/items.py, plugin/jobs.py) call to read its decision ahead; kept until the Python API has an engine of its own."""
    import inspect

    import pytest_rerunfailures as rr

    for name, params in [("_get_global_reruns", ["config"]), ("_should_hard_fail_on_error", ["item", "report"]),
                         ("_is_rerun_path_excluded", ["item"]), ("get_reruns_count", ["item"]),
                         ("get_reruns_delay", ["item"]), ("get_reruns_delay_backoff_factor", ["item"])]:
        helper = getattr(rr, name, None)
        assert callable(helper), f"pytest-rerunfailures no longer has {name}: see docs/internals.md"
        assert list(inspect.signature(helper).parameters)[: len(params)] == params, (
            f"pytest-rerunfailures' {name} takes {list(inspect.signature(helper).parameters)} now, not {params}")


def test_canary_xdist_worker_queue_reaches_ahead(pytester: pytest.Pytester, no_leftovers: str) -> None:
    """Canary (docs/internals.md): under -n, --batch-jobs looks into the items the worker has been given
    (pytest-xdist's ``WorkerInteractor.torun``); with only the next item, one worker runs two commands at once."""
    # 40 lines: xdist hands a worker a share of them (a quarter here), of which it runs one and sees the next.
    write(pytester, "\n".join([BARRIER] * 40) + "\n")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "1", "--batch-jobs", "4", "-p", "no:randomly",
                                           "-p", "no:cacheprovider", timeout=120)
    assert outcomes(result) == {"passed": 40}, (
        "pytest-xdist's WorkerInteractor.torun is no longer reachable: see _xdist_queue in plugin/jobs.py",
        result.stdout.str())
