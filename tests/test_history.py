"""History in pytest's cache: what is recorded, longest-first order and relative timeouts, in-process and under -n 2.

Most tests write the history file themselves (pytest's cache format), so that
the order and the bounds they check do not depend on this machine's timing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_batchrunner.plugin.history import FORGET_AFTER, KEEP_RUNS, History, history_path


@pytest.fixture(autouse=True)
def _discover_batch_files(_ecosystem_plugins_off: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """These projects opt in to discovering their batch files, as an ini's ``batch_patterns = *.batch`` does."""
    monkeypatch.setenv("PYTEST_ADDOPTS", os.environ.get("PYTEST_ADDOPTS", "") + " -o batch_patterns=*.batch")


FAST = ("--batch-kill-grace", "0.2")
HISTORY_FILE = history_path(".pytest_cache")


def write(pytester: pytest.Pytester, text: str, name: str = "cmds.batch") -> Path:
    path = pytester.path / name
    path.write_text(text)
    return path


def seed(pytester: pytest.Pytester, durations: dict[str, float], outcome: str = "passed") -> None:
    """Write a history in which each node id took its duration, three runs in a row."""
    history = History()
    for _ in range(3):
        history.record((nodeid, seconds, outcome) for nodeid, seconds in durations.items())
    path = pytester.path / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history.data()))


@pytest.fixture
def run_cached(pytester: pytest.Pytester, mode: str, no_leftovers: str):
    """``run_cached(*args)``: pytest in a subprocess with its cache on, ``-n 2`` in the xdist mode."""

    def _run(*args: str) -> pytest.RunResult:
        extra = ["-n", "2"] if mode == "xdist" else []
        return pytester.runpytest_subprocess(*args, *extra, timeout=120)

    return _run


def started(pytester: pytest.Pytester) -> list[int]:
    return [int(line) for line in (pytester.path / "started").read_text().split()]


STAMP = 'echo "$BATCH_LINE" >> started; '
WORKER_STAMP = 'echo "$BATCH_WORKER $BATCH_LINE" >> started; '


# -- the record ---------------------------------------------------------------------------


def test_each_run_records_durations_and_outcomes(pytester: pytest.Pytester, run_cached) -> None:
    write(pytester, "sleep 0.3\nfalse\necho skipped  # batch: skip\n")
    for _ in range(2):
        run_cached()
    data = json.loads((pytester.path / HISTORY_FILE).read_text())
    commands = data["commands"]
    assert data["run"] == 2
    assert set(commands) == {"cmds.batch::sleep 0.3", "cmds.batch::false"}  # skipped: nothing to learn
    runs = commands["cmds.batch::sleep 0.3"]["runs"]
    assert [o for _, o in runs] == ["passed", "passed"]
    assert all(0.25 < s < 5 for s, _ in runs)
    assert [o for _, o in commands["cmds.batch::false"]["runs"]] == ["failed", "failed"]


def test_bounded_runs_and_forgotten_commands() -> None:
    history = History()
    for i in range(KEEP_RUNS + 5):
        history.record([("a.batch::x", float(i), "passed")])
    assert history.durations("a.batch::x") == [float(i) for i in range(5, KEEP_RUNS + 5)]
    history.record([("a.batch::gone", 1.0, "passed")])
    for _ in range(FORGET_AFTER):
        history.record([("a.batch::x", 1.0, "passed")])
    assert "a.batch::gone" not in history.commands and "a.batch::x" in history.commands
    # A damaged cache value only guides nothing; it is never an error.
    assert not History({"run": "x", "commands": {"a": {"seen": 1, "runs": [["bad", 1]]}}})


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        '{"run": 1, "commands": {"cmds.batch::true": {"seen": 1, "runs": [[-1, 2]]}}}',
        "[" * 100_000 + "]" * 100_000,  # deeper than Python's recursion limit
        '{"run": 1, "commands": {"cmds.batch::true": {"seen": 1, "runs": [[1' + "0" * 400 + ', "passed"]]}}}',
        b"\xff\xfe\x00garbage\x1b[2J",
    ],
    ids=["not-json", "bad-entry", "nested", "huge-number", "binary"],
)
def test_a_damaged_history_is_ignored_and_replaced(pytester: pytest.Pytester, no_leftovers: str, damage: str | bytes) -> None:
    write(pytester, "true  # batch: timeout=300%\n")
    path = pytester.path / HISTORY_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    result = pytester.runpytest_subprocess("--batch-jobs", "2", "--batch-timeout", "300%")
    result.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert json.loads(path.read_text())["commands"]["cmds.batch::true"]["runs"][0][1] == "passed"


def test_a_fifo_in_place_of_the_history_does_not_block(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "true\n")
    path = pytester.path / HISTORY_FILE
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    pytester.runpytest_subprocess("--batch-jobs", "2", timeout=60).assert_outcomes(passed=1)
    assert json.loads(path.read_text())["commands"]["cmds.batch::true"]["runs"][0][1] == "passed"


# -- a cache that cannot be used: the run goes on, with one warning and no history ---------------


def project(folder: Path) -> Path:
    """A project with a batch file and a Python test, in *folder*."""
    folder.mkdir()
    (folder / "cmds.batch").write_text("echo ran\n")
    (folder / "test_py.py").write_text("def test_python():\n    pass\n")
    return folder


def run_in(folder: Path, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest, its cache on, in *folder* (``-n 2`` in the xdist mode)."""
    extra = ["-n", "2"] if mode == "xdist" else ["--batch-jobs", "2"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "cmds.batch", "test_py.py",
         "--batch-json", str(folder.parent / "out.json"), *extra, *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )


def assert_ran_with_one_warning(result: subprocess.CompletedProcess[str], warning: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    assert re.search(r"\b2 passed, \d+ warnings?\b", out), out
    ours = [line for line in out.splitlines() if re.search("PytestCacheWarning: .*batch history", line)]
    assert len(ours) == 1 and warning in ours[0], out


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache-yet", "cache-with-history"])
def test_a_read_only_project_runs_without_history(tmp_path: Path, mode: str, mount, no_leftovers: str, cached: bool) -> None:
    folder = project(tmp_path / "project")
    if cached:
        path = folder / HISTORY_FILE
        path.parent.mkdir(parents=True)
        before = json.dumps(History().data())
        path.write_text(before)
    mount("--bind", str(folder), str(folder))
    mount("-o", "remount,ro,bind", str(folder))
    with pytest.raises(OSError):
        (folder / "probe").write_text("")
    result = run_in(folder, mode)
    # With a cache to read, its history is used; only writing it fails.
    assert_ran_with_one_warning(result, "could not write the batch history" if cached else "batch history off")
    assert [r["status"] for r in json.loads((tmp_path / "out.json").read_text())["results"]] == ["passed"]
    if cached:
        assert (folder / HISTORY_FILE).read_text() == before


@pytest.mark.parametrize("in_the_way", [".pytest_cache", ".pytest_cache/d/batchrunner"])
def test_a_file_in_place_of_the_cache_folder(tmp_path: Path, mode: str, no_leftovers: str, in_the_way: str) -> None:
    folder = project(tmp_path / "project")
    (folder / in_the_way).parent.mkdir(parents=True, exist_ok=True)
    (folder / in_the_way).write_text("not a folder")
    assert_ran_with_one_warning(run_in(folder, mode), "batch history off")
    assert (folder / in_the_way).read_text() == "not a folder"
    # Python tests alone, with the plugin on: no error either.
    result = subprocess.run([sys.executable, "-m", "pytest", "test_py.py", "--batch-jobs", "2"], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "INTERNALERROR" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_no_cacheprovider_reads_and_writes_nothing(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, STAMP + "true\n" + STAMP + "true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--batch-jobs", "2")
    result.assert_outcomes(passed=2)
    assert not (pytester.path / ".pytest_cache").exists()


def test_the_command_line_keeps_no_history(tmp_path: Path, no_leftovers: str) -> None:
    (tmp_path / "cmds.txt").write_text("true\n")
    for args in (["-f", "cmds.txt"], ["-f", "cmds.txt", "--parallel"]):
        result = subprocess.run([sys.executable, "-m", "batchrunner", "-q", *args], cwd=tmp_path, capture_output=True)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmds.txt"]


# -- longest first --------------------------------------------------------------------------

SKEWED = "".join(STAMP + f"sleep 0.2  # short {i}\n" for i in range(1, 6)) + STAMP + "sleep 0.3  # long\n"
SKEWED_HISTORY = {
    **{f"cmds.batch::{STAMP}sleep 0.2  # short {i}": 0.05 for i in range(1, 6)},
    f"cmds.batch::{STAMP}sleep 0.3  # long": 3.0,
}


def test_longest_first_with_history(pytester: pytest.Pytester, run_cached, mode: str) -> None:
    seed(pytester, {k.replace(STAMP, WORKER_STAMP): v for k, v in SKEWED_HISTORY.items()})
    write(pytester, SKEWED.replace(STAMP, WORKER_STAMP))
    # Two slots: two jobs, or two workers (each running one command at a time).
    result = run_cached(*(["--batch-jobs", "2"] if mode == "inprocess" else []), "--batch-json", "out.json")
    result.assert_outcomes(passed=6)
    starts = [line.split() for line in (pytester.path / "started").read_text().splitlines()]
    if mode == "inprocess":
        # Two slots: the long command is in the first pair.
        assert "6" in [line for _, line in starts[:2]]
    else:
        # The first command its worker got (in file order it would be the last of its worker).
        worker = next(w for w, line in starts if line == "6")
        assert [line for w, line in starts if w == worker][0] == "6"
    # Reports stay in file order.
    document = json.loads((pytester.path / "out.json").read_text())
    assert [r["line"] for r in document["results"]] == [1, 2, 3, 4, 5, 6]


def test_without_history_or_with_batch_order_file_file_order(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, SKEWED)
    # Two slots: the last line starts with the one before it, in either order.
    pytester.runpytest_subprocess("--batch-jobs", "2", "-p", "no:cacheprovider").assert_outcomes(passed=6)
    assert 6 in started(pytester)[-2:]
    (pytester.path / "started").unlink()
    seed(pytester, SKEWED_HISTORY)
    pytester.runpytest_subprocess("--batch-jobs", "2", "--batch-order", "file").assert_outcomes(passed=6)
    assert 6 in started(pytester)[-2:]


def test_failed_first_keeps_its_order(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "sleep 0.01; false\nsleep 0.3\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1, failed=1)  # history and lastfailed
    result = pytester.runpytest_subprocess("--ff", "--batch-jobs", "2", "-v")
    lines = [line for line in result.outlines if " PASSED" in line or " FAILED" in line]
    assert "false" in lines[0]
    result = pytester.runpytest_subprocess("--batch-jobs", "2", "-v")
    lines = [line for line in result.outlines if " PASSED" in line or " FAILED" in line]
    assert "sleep 0.3" in lines[0]


def test_sequential_group_kept_whole_and_in_order(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(
        pytester,
        STAMP + "true  # a\n"
        + STAMP + "true  # batch: sequential group=g\n"
        + STAMP + "true  # b\n"
        + STAMP + "true  # batch: sequential group=g\n"
        + STAMP + "true  # c\n",
    )
    # Each step is short, but together they are the longest unit.
    names = [f"{STAMP}true  # a", f"{STAMP}true", f"{STAMP}true  # b", f"{STAMP}true (2)", f"{STAMP}true  # c"]
    seed(pytester, dict(zip((f"cmds.batch::{n}" for n in names), (0.5, 0.4, 0.6, 0.4, 0.7), strict=True)))
    result = pytester.runpytest_subprocess("--batch-jobs", "2", "-v")
    result.assert_outcomes(passed=5)
    order = [line.split("::", 1)[1].split(" PASSED")[0] for line in result.outlines if " PASSED" in line]
    assert order == [names[i] for i in (1, 3, 4, 2, 0)]
    assert started(pytester).index(2) < started(pytester).index(4)


def test_python_tests_stay_barriers(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "sleep 0.01  # 1\nsleep 0.01  # 2\n", name="a.batch")
    write(pytester, "sleep 0.01  # 3\nsleep 0.01  # 4\n", name="c.batch")
    pytester.makepyfile(test_b="def test_between():\n    pass\n")
    seed(pytester, {"a.batch::sleep 0.01  # 1": 0.01, "a.batch::sleep 0.01  # 2": 5.0,
                    "c.batch::sleep 0.01  # 3": 0.01, "c.batch::sleep 0.01  # 4": 5.0})
    result = pytester.runpytest_subprocess("a.batch", "test_b.py", "c.batch", "--batch-jobs", "2", "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    order = [line.split(" PASSED")[0].strip() for line in result.outlines if " PASSED" in line]
    assert order == ["a.batch::sleep 0.01  # 2", "a.batch::sleep 0.01  # 1", "test_b.py::test_between",
                     "c.batch::sleep 0.01  # 4", "c.batch::sleep 0.01  # 3"]


# -- relative timeouts ------------------------------------------------------------------------


def test_relative_timeout_from_history(pytester: pytest.Pytester, run_cached) -> None:
    write(
        pytester,
        "sleep 5  # batch: timeout=300%\n"
        "sleep 4  # batch: timeout=200%\n"
        "sleep 0.1  # batch: timeout=300%\n"
        "sleep 3  # new, without history: --timeout applies\n",
    )
    seed(pytester, {"cmds.batch::sleep 5": 0.5, "cmds.batch::sleep 4": 0.01, "cmds.batch::sleep 0.1": 0.1})
    result = run_cached("--batch-jobs", "4", "--timeout", "0.5", "--batch-timeout", "300%", "-rf", *FAST)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random([
        "*timed out after 1.5 s (300% of its usual 0.50 s)*",
        "*timed out after 1 s (the floor of relative timeouts; 200% of its usual 0.01 s is 0.02 s)*",
        "*cmds.batch:4  sleep 3  # new, without history: --timeout applies  [[]timed out after 0.5 s[]]*",
    ])


def test_batch_timeout_option_and_failed_runs_do_not_count(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "sleep 5\nsleep 3  # batch: timeout=0.3\n")
    seed(pytester, {"cmds.batch::sleep 5": 0.4})
    seed_failed = json.loads((pytester.path / HISTORY_FILE).read_text())
    seed_failed["commands"]["cmds.batch::sleep 5"]["runs"].append([30.0, "timed out"])
    (pytester.path / HISTORY_FILE).write_text(json.dumps(seed_failed))
    result = pytester.runpytest_subprocess("--batch-timeout", "300%", "--batch-jobs", "2", "-rf", *FAST)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random([
        "*timed out after 1.2 s (300% of its usual 0.40 s)*",
        "*cmds.batch:2  sleep 3  [[]timed out after 0.3 s[]]*",  # the line's own timeout wins
    ])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("true  # batch: timeout=0%", "cmds.batch:1: bad value for batch setting 'timeout': '0%' is not a percentage above 0*"),
        ("true  # batch: timeout=x%", "cmds.batch:1: bad value for batch setting 'timeout': 'x%' is not a percentage*"),
    ],
)
def test_bad_relative_timeouts(pytester: pytest.Pytester, line: str, message: str) -> None:
    write(pytester, line + "\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*" + message])
    assert "Traceback" not in result.stdout.str()


def test_bad_batch_timeout_option(pytester: pytest.Pytester) -> None:
    write(pytester, "true\n")
    result = pytester.runpytest_subprocess("--batch-timeout", "300", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--batch-timeout: '300' is not a percentage above 0 (e.g. 300%)"])


def test_relative_timeout_settings_parse_and_inherit() -> None:
    from pytest_batchrunner.batchfile import parse_batch_text

    specs = parse_batch_text(
        "# batch: timeout=250%\n"
        "a\n"
        "b  # batch: timeout=30\n"
        "c  # batch: retries=1\n"
        "d  # batch: timeout=50.5%\n",
        "x.batch",
    )
    assert [(s.settings.timeout, s.settings.timeout_share) for s in specs] == [
        (None, 2.5), (30.0, None), (None, 2.5), (None, 0.505),
    ]


def test_xdist_schedules_by_duration_groups_whole_and_in_order(pytester: pytest.Pytester, no_leftovers: str) -> None:
    lines = ["true  # a", "true  # b", "true  # c", "true  # d", "true  # batch: sequential group=g", "true  # e",
             "true  # batch: sequential group=g"]
    write(pytester, "".join(WORKER_STAMP + line + "\n" for line in lines))
    names = [f"cmds.batch::{WORKER_STAMP}{n}" for n in ("true  # a", "true  # b", "true  # c", "true  # d", "true",
                                                        "true  # e", "true (2)")]
    # xdist alone would send the group first (its --loadscope-reorder: most tests first).
    seed(pytester, dict(zip(names, (0.2, 0.2, 0.2, 0.2, 0.01, 1.0, 0.01), strict=True)))
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=7)
    starts = [line.split() for line in (pytester.path / "started").read_text().splitlines()]
    worker = next(w for w, line in starts if line == "6")
    assert [line for w, line in starts if w == worker][0] == "6"
    group = [(w, line) for w, line in starts if line in ("5", "7")]
    assert [line for _, line in group] == ["5", "7"] and group[0][0] == group[1][0]


def test_ini_values(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "sleep 5\n")
    seed(pytester, {"cmds.batch::sleep 5": 0.4})
    pytester.makeini("[pytest]\nbatch_timeout = 300%\nbatch_order = file\n")
    result = pytester.runpytest_subprocess("-rf", *FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 1.2 s (300% of its usual 0.40 s)*"])
    pytester.makeini("[pytest]\nbatch_order = longest\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini value batch_order: 'longest' is not 'duration' or 'file'*"])


def test_live_status_eta_from_history(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pytest.importorskip("pyte")
    from test_live import run_in_terminal

    write(pytester, "sleep 1  # one\nsleep 1  # two\n")
    # The history says each takes 30 s: before anything is done, the ETA is a minute (the pace gives none).
    seed(pytester, {"cmds.batch::sleep 1  # one": 30.0, "cmds.batch::sleep 1  # two": 30.0})
    out = run_in_terminal([sys.executable, "-m", "pytest", "cmds.batch"], pytester.path).decode("utf-8", "replace")
    etas = [int(m) * 60 + int(s) for m, s in re.findall(r"0/2 done, 1 running, ETA (\d+)m(\d\d)s", out)]
    etas += [int(s) for s in re.findall(r"0/2 done, 1 running, ETA (\d+)s", out)]
    assert etas and all(55 <= eta <= 60 for eta in etas), out


def test_history_eta_arithmetic() -> None:
    from pytest_batchrunner.plugin.history import HistoryEta

    eta = HistoryEta({"a": 10.0, "b": 2.0, "c": 2.0, "d": 2.0}, slots=2)
    assert eta.seconds({}) == 8.0
    assert eta.seconds({"a": 4.0}) == 6.0  # 6 s left of a, 6 s of the others: over two slots, but a alone needs 6
    eta.finished("b")
    eta.finished("c")
    assert eta.seconds({"a": 9.0, "d": 5.0}) == 1.0  # d overran its estimate: it counts for nothing more


# -- runs at once in one folder ---------------------------------------------------------------------


def test_runs_at_once_in_one_folder_lose_no_history(pytester: pytest.Pytester, mode: str, no_leftovers: str) -> None:
    # A large history makes each run's read-modify-write of it take a while: without
    # the lock, the two runs, ending together, would each write back what they read.
    past = History()
    past.record((f"old.batch::true  # {i}", 0.01, "passed") for i in range(30_000))
    path = pytester.path / HISTORY_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(past.data()))
    # Each run's command waits for the other's to start: the two sessions end together.
    write(pytester, "touch a.started; until test -e b.started; do sleep 0.01; done\n", name="a.batch")
    write(pytester, "touch b.started; until test -e a.started; do sleep 0.01; done\n", name="b.batch")
    extra = ["-n", "2"] if mode == "xdist" else []
    runs = [
        subprocess.Popen([sys.executable, "-m", "pytest", "-q", name, *extra], cwd=pytester.path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in ("a.batch", "b.batch")
    ]
    for proc in runs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
    data = json.loads(path.read_text())
    assert data["run"] == 3
    assert {"a.batch::touch a.started; until test -e b.started; do sleep 0.01; done",
            "b.batch::touch b.started; until test -e a.started; do sleep 0.01; done"} <= set(data["commands"])
    assert len(data["commands"]) == 30_002
