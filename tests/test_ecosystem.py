"""The promises hold with the ecosystem's plugins installed (the ``ecosystem`` extra, part of ``test``).

The suite runs with these plugins off (see ``plugins_off`` in conftest.py);
each test here turns on the ones it is about, through ``PYTEST_ADDOPTS`` of the
runs it starts. A plugin that is missing makes these tests fail, not skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import plugins_off
from test_plugin import outcomes, write

# Plugins a plugin needs beside it.
NEEDS = {"html": ("html", "html_fixtures", "metadata")}


@pytest.fixture
def ecosystem(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester, mode: str, no_leftovers: str):
    """``ecosystem(*args, plugins=(...))``: pytest with these ecosystem plugins on.

    In-process mode runs pytest inside this process (pytester's inline run:
    fast, and the commands are still real processes); xdist mode runs
    ``pytest -n 2`` in a subprocess.
    """

    def _run(*args: str, plugins: tuple[str, ...] = (), cache: bool = False) -> pytest.RunResult:
        on = {name for plugin in plugins for name in NEEDS.get(plugin, (plugin,))}
        monkeypatch.setenv("PYTEST_ADDOPTS", plugins_off(*on))
        extra = [] if cache else ["-p", "no:cacheprovider"]
        if mode == "xdist":
            return pytester.runpytest_subprocess(*args, *extra, "-n", "2", timeout=120)
        return pytester.runpytest_inprocess(*args, *extra)

    return _run


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# -- 6. batch files run only when asked for ----------------------------------------------------


def test_batch_files_found_in_directories_do_not_run(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    (pytester.path / "data").mkdir()
    write(pytester, "touch marker\necho 'DELETE FROM users'\n", "data/jobs.batch")
    write(pytester, "touch marker2\n", "top.batch")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    for args in ((), (".",), ("data",)) if mode == "inprocess" else ((),):
        result = ecosystem(*args)
        assert not (pytester.path / "marker").exists() and not (pytester.path / "marker2").exists()
        count = 1 if args == ("data",) else 2
        result.stdout.fnmatch_lines([f"pytest-batchrunner: {count} batch file* found but not run*batch_patterns*"])
        assert "BatchRunner summary" not in result.stdout.str()
    # Named, it runs.
    assert outcomes(ecosystem("data/jobs.batch")) == {"passed": 2}
    assert (pytester.path / "marker").exists()


def test_batch_patterns_opt_in_to_discovery(pytester: pytest.Pytester, ecosystem) -> None:
    pytester.makeini("[pytest]\nbatch_patterns = ci/*.batch *.cmds\n")
    for folder in ("ci", "other"):
        (pytester.path / folder).mkdir()
    write(pytester, "touch ci-ran\n", "ci/a.batch")
    write(pytester, "touch cmds-ran\n", "other/x.cmds")
    write(pytester, "touch other-ran\necho two\n", "other/b.batch")
    result = ecosystem()
    assert outcomes(result) == {"passed": 2}
    assert {p.name for p in pytester.path.glob("*-ran")} == {"ci-ran", "cmds-ran"}
    result.stdout.fnmatch_lines(["pytest-batchrunner: 1 batch file was found but not run*"])
    assert outcomes(ecosystem("other/b.batch::echo two")) == {"passed": 1}
    assert not (pytester.path / "other-ran").exists()
    assert outcomes(ecosystem("other/b.batch")) == {"passed": 2}
    assert (pytester.path / "other-ran").exists()


def test_a_named_file_nothing_collects_gets_a_notice(pytester: pytest.Pytester, run) -> None:
    """``pytest cmds.txt`` (the original's file name) says how to run it; a ``.txt`` of doctests is left alone."""
    write(pytester, "touch ran-1\n", "cmds.txt")
    write(pytester, ">>> 1 + 1\n2\n", "doc.txt")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run("cmds.txt", "doc.txt")
    assert outcomes(result) == {"passed": 2}
    result.stdout.fnmatch_lines([
        "pytest-batchrunner: cmds.txt was named but pytest collected no test from it; to run its lines as commands, "
        "rename it to *.batch, add it to batch_patterns in the ini file, or run batchrunner -f cmds.txt"
    ])
    assert "doc.txt was named" not in result.stdout.str()
    assert not (pytester.path / "ran-1").exists()


def test_lf_and_ff_without_arguments_rerun_failed_commands(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    (pytester.path / "ci").mkdir()
    write(pytester, "echo ok\ntest -f fixed\necho [x] && test -f fixed\n", "ci/cmds.batch")
    assert outcomes(ecosystem("ci/cmds.batch", cache=True)) == {"passed": 1, "failed": 2}
    result = ecosystem("--lf", cache=True)
    assert outcomes(result) == {"failed": 2}
    (pytester.path / "fixed").touch()
    result = ecosystem("--ff", cache=True)
    assert outcomes(result) == {"passed": 3}
    # Nothing failed any more: a plain run names no file, so nothing runs.
    assert "passed" not in outcomes(ecosystem("--lf", cache=True))


# -- 1. sequential order, whatever reorders items ---------------------------------------------

PIPELINE = """\
echo a
# batch: group=release sequential
echo 1 >> order-$BATCH_WORKER.txt
echo 2 >> order-$BATCH_WORKER.txt
echo 3 >> order-$BATCH_WORKER.txt
echo 4 >> order-$BATCH_WORKER.txt
# batch:
echo b
echo c
echo d
echo e
"""


def steps_run(pytester: pytest.Pytester) -> list[list[int]]:
    return [[int(x) for x in p.read_text().split()] for p in sorted(pytester.path.glob("order-*.txt"))]


@pytest.mark.parametrize("seed", ["1", "2"])
def test_randomly_cannot_reorder_a_group(pytester: pytest.Pytester, ecosystem, seed: str) -> None:
    write(pytester, PIPELINE)
    result = ecosystem("cmds.batch", f"--randomly-seed={seed}", plugins=("randomly",))
    assert outcomes(result) == {"passed": 9}
    result.stdout.fnmatch_lines([f"Using --randomly-seed={seed}"])
    assert steps_run(pytester) == [[1, 2, 3, 4]]


REORDERING_CONFTESTS = {
    "reverse": "def pytest_collection_modifyitems(items):\n    items.reverse()\n",
    "sort-trylast": (
        "import pytest\n\n@pytest.hookimpl(trylast=True)\n"
        "def pytest_collection_modifyitems(items):\n    items.sort(key=lambda i: i.name, reverse=True)\n"
    ),
    "wrapper": (
        "import pytest\n\n@pytest.hookimpl(wrapper=True, tryfirst=True)\n"
        "def pytest_collection_modifyitems(items):\n    yield\n    items.reverse()\n"
    ),
}


@pytest.mark.parametrize("how", ["random-order", *REORDERING_CONFTESTS])
def test_other_reorderings_cannot_reorder_a_group(pytester: pytest.Pytester, ecosystem, how: str) -> None:
    write(pytester, PIPELINE)
    if how == "random-order":
        result = ecosystem("cmds.batch", "--random-order", plugins=("random_order",))
    else:
        pytester.makeconftest(REORDERING_CONFTESTS[how])
        result = ecosystem("cmds.batch", "-v")
    assert outcomes(result) == {"passed": 9}
    assert steps_run(pytester) == [[1, 2, 3, 4]]


@pytest.mark.parametrize("dist", ["load", "loadfile", "loadgroup", "worksteal", "each"])
def test_no_dist_mode_runs_a_step_out_of_order(pytester: pytest.Pytester, no_leftovers: str, monkeypatch, dist: str) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", plugins_off("randomly"))
    write(pytester, PIPELINE)
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "--dist", dist, "-rs", "-p", "no:cacheprovider")
    counts = outcomes(result)
    assert counts.get("failed", 0) == 0, result.stdout.str()
    for run in steps_run(pytester):
        assert run == list(range(1, len(run) + 1)), run  # in file order, from step 1, on each worker
    if counts.get("skipped"):
        # Refused, never run out of order: "not run: step N (line L) did not run before it".
        result.stdout.fnmatch_lines(["*not run: step * (line *) did not run before it*"])
    if dist in ("loadfile", "loadgroup"):
        assert steps_run(pytester) == [[1, 2, 3, 4]]


# -- 2. selection is not "not run" --------------------------------------------------------------

REPORTS = ("--batch-json", "r.json", "--junitxml", "j.xml", "--batch-log", "r.log", "--batch-joblog", "r.tsv")


def assert_reports_count(pytester: pytest.Pytester, result: pytest.RunResult, commands: set[str]) -> None:
    """The summary, JSON, JUnit, audit log and job log all speak of exactly *commands*."""
    data = read_json(pytester.path / "r.json")
    assert {r["command"] for r in data["results"]} == commands
    assert data["summary"]["total_commands"] == len(commands) and data["summary"]["not_run"] == 0
    result.stdout.fnmatch_lines([f"Total Commands: {len(commands)} | *"])
    assert "Not run" not in result.stdout.str()
    cases = [c for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")]
    assert len(cases) == len(commands)
    assert all(c.find("skipped") is None or c.find("skipped").get("type") != "batchrunner.notrun" for c in cases)
    joblog = (pytester.path / "r.tsv").read_text().splitlines()[1:]
    assert {row.split("\t")[-1] for row in joblog} == commands
    log = (pytester.path / "r.log").read_text()
    assert f"total_commands={len(commands)}" in log


def test_deselected_commands_are_left_out_of_every_report(pytester: pytest.Pytester, ecosystem) -> None:
    write(pytester, "echo keep 1\necho drop 1\necho keep 2\necho drop 2\n")
    result = ecosystem("cmds.batch", "-k", "keep", *REPORTS)
    assert outcomes(result) == {"passed": 2}
    assert_reports_count(pytester, result, {"echo keep 1", "echo keep 2"})
    result = ecosystem("cmds.batch", "--deselect", "cmds.batch::echo drop 1", *REPORTS)
    assert_reports_count(pytester, result, {"echo keep 1", "echo keep 2", "echo drop 2"})


@pytest.mark.parametrize("shard", ["pytest-split", "pytest-shard"])
def test_a_shard_reports_its_own_commands(pytester: pytest.Pytester, ecosystem, shard: str, mode: str) -> None:
    commands = [f"echo {i}" for i in range(9)]
    write(pytester, "\n".join(commands) + "\n")
    seen: set[str] = set()
    shards = 3 if mode == "inprocess" else 1
    for index in range(shards):
        if shard == "pytest-split":
            args = ("--splits", "3", "--group", str(index + 1))
        else:
            args = ("--num-shards", "3", "--shard-id", str(index))
        result = ecosystem("cmds.batch", *args, *REPORTS, plugins=(shard,))
        mine = {r["command"] for r in read_json(pytester.path / "r.json")["results"]}
        assert result.parseoutcomes()["passed"] == len(mine) and mine and not mine & seen
        assert_reports_count(pytester, result, mine)
        seen |= mine
    assert seen == set(commands) or shards == 1


def test_a_group_cut_by_selection_runs_no_later_step_alone(pytester: pytest.Pytester, ecosystem) -> None:
    write(pytester, "echo other\n# batch: sequential\ntouch built\ntouch tested\ntouch released\n")
    result = ecosystem("cmds.batch", "-k", "tested or released", "-rs", *REPORTS)
    assert outcomes(result) == {"skipped": 2}
    assert not list(pytester.path.glob("tested")) and not list(pytester.path.glob("released"))
    result.stdout.fnmatch_lines(["*not run: step 1 (line 3) was not selected*"])
    results = read_json(pytester.path / "r.json")["results"]
    assert [(r["command"], r["status"], r["message"]) for r in results] == [
        ("touch tested", "skipped", "not run: step 1 (line 3) was not selected"),
        ("touch released", "skipped", "not run: step 1 (line 3) was not selected"),
    ]


def test_pytest_split_by_duration_never_runs_a_later_step_alone(pytester: pytest.Pytester, ecosystem) -> None:
    # least_duration puts step 1 (slow) alone in one group, steps 2 and 3 in the other.
    write(pytester, "# batch: sequential\ntouch step1\ntouch step2\ntouch step3\n")
    durations = {"cmds.batch::touch step1": 10.0, "cmds.batch::touch step2": 1.0, "cmds.batch::touch step3": 1.0}
    (pytester.path / ".test_durations").write_text(json.dumps(durations))
    result = ecosystem("cmds.batch", "--splits", "2", "--group", "2", "--splitting-algorithm", "least_duration",
                       "-rs", plugins=("pytest-split",))
    assert result.parseoutcomes()["skipped"] == 2
    assert not (pytester.path / "step2").exists() and not (pytester.path / "step3").exists()
    result.stdout.fnmatch_lines(["*not run: step 1 (line 2) was not selected*"])


# -- 3. durations are the command's own ---------------------------------------------------------


def test_durations_of_commands_started_ahead(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    write(pytester, "sleep 0.6\nsleep 0.6\nsleep 0.6\nsleep 0.6 # batch: retries=0\n")
    result = ecosystem("cmds.batch", "--batch-jobs", "4", "--durations", "0", "--durations-min", "0",
                       "--junitxml", "j.xml", "--store-durations", "--durations-path", "d.json",
                       plugins=("pytest-split",))
    assert outcomes(result) == {"passed": 4}
    calls = [line for line in result.outlines if line.split()[1:2] == ["call"]]
    assert len(calls) == 4 and all(float(line.split("s")[0]) >= 0.5 for line in calls), calls
    times = [float(c.get("time")) for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")]
    assert len(times) == 4 and min(times) >= 0.5, times
    stored = read_json(pytester.path / "d.json")
    assert len(stored) == 4 and min(stored.values()) >= 0.5, stored


def test_store_durations_reads_every_command_s_own_time(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    # Without --durations or -rA: the passed reports the statistics keep for
    # memory's sake (one for all) must not stand in for the others here.
    write(pytester, "sleep 0.5\necho a\necho b\necho c\n")
    result = ecosystem("cmds.batch", "--store-durations", "--durations-path", "d.json", plugins=("pytest-split",))
    assert outcomes(result) == {"passed": 4}
    stored = read_json(pytester.path / "d.json")
    assert sorted(stored) == ["cmds.batch::echo a", "cmds.batch::echo b", "cmds.batch::echo c", "cmds.batch::sleep 0.5"]
    assert 0.5 <= stored["cmds.batch::sleep 0.5"] < 5, stored
    assert max(stored[f"cmds.batch::echo {x}"] for x in "abc") < 0.4, stored


# -- 4. ids round-trip -----------------------------------------------------------------------------

TRICKY = [
    "echo [a] b",
    "echo b]c",
    "[ -d . ] && echo bracket",
    "echo a::b",
    "echo 'quoted \"double\"'",
    "echo héllo wörld ✓",
    "echo spaces   inside",
]


def test_lf_reruns_failures_of_files_whose_names_hold_colons_or_controls(
    pytester: pytest.Pytester, ecosystem, mode: str
) -> None:
    # pytest's --lf finds a failed id's file by cutting the id at its first "::"
    # and skipped every other file: these files' failures never ran again.
    pytester.makeini("[pytest]\nbatch_patterns = *.batch\n")
    names = ["a.batch", "c\x01x.batch"]
    if tuple(int(x) for x in pytest.__version__.split(".")[:2]) < (9, 2):
        # pytest 9.2 keeps ids as structured ids, and reads a cached one's path up
        # to its first "::": a file name holding "::" loses its failures there.
        names.append("f::x.batch")
    for name in names:
        (pytester.path / name).write_text("test -f fixed\ntrue\n")
    result = ecosystem(cache=True)
    assert outcomes(result) == {"failed": len(names), "passed": len(names)}
    result = ecosystem("--lf", "-rA", cache=True)
    assert outcomes(result)["failed"] == len(names) and "passed" not in outcomes(result), result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED c\\x01x.batch::test -f fixed*"])
    (pytester.path / "fixed").touch()
    result = ecosystem("--lf", cache=True)
    assert outcomes(result)["passed"] == len(names) and "failed" not in outcomes(result), result.stdout.str()


def test_ids_round_trip_through_the_cache_options(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    lines = [f"{cmd} && test -f ok{i}" for i, cmd in enumerate(TRICKY)]
    write(pytester, "\n".join(lines) + "\n")
    ids = [line for line in pytester.runpytest_subprocess("cmds.batch", "--collect-only", "-q").outlines
           if line.startswith("cmds.batch::")]
    assert len(ids) == len(TRICKY)
    result = ecosystem("cmds.batch", "-rf", cache=True)
    assert outcomes(result) == {"failed": len(TRICKY)}
    printed = sorted(line.split(" - ")[0].removeprefix("FAILED ") for line in result.outlines if line.startswith("FAILED "))
    assert printed == sorted(ids)  # no stray characters
    for i in range(0, len(TRICKY), 2):
        (pytester.path / f"ok{i}").touch()
    fixed = len(range(0, len(TRICKY), 2))
    # --lf with no arguments finds every failure, whatever its id holds.
    result = ecosystem("--lf", "-rf", cache=True)
    assert outcomes(result) == {"passed": fixed, "failed": len(TRICKY) - fixed}
    # Every id as an argument.
    assert outcomes(ecosystem(*ids)) == {"passed": fixed, "failed": len(TRICKY) - fixed}
    if mode == "xdist":
        return  # the rest reads the same ids the same way: in-process only, to keep the suite fast
    result = ecosystem("--lf", cache=True)
    assert outcomes(result) == {"failed": len(TRICKY) - fixed}
    result = ecosystem("--ff", "cmds.batch", cache=True)
    assert outcomes(result) == {"passed": fixed, "failed": len(TRICKY) - fixed}
    args = [a for nodeid in ids[1:] for a in ("--deselect", nodeid)]
    assert outcomes(ecosystem("cmds.batch", *args)) == {"passed": 1}


def test_stepwise_resumes_at_a_tricky_id(pytester: pytest.Pytester, ecosystem, mode: str) -> None:
    if mode == "xdist":
        pytest.skip("pytest's --sw does not combine with -n (pytest-xdist disables it)")
    write(pytester, "echo [a] && true\necho [b] && test -f fixed\necho ✓ c\n")
    assert outcomes(ecosystem("cmds.batch", "--sw", cache=True)) == {"passed": 1, "failed": 1}
    (pytester.path / "fixed").touch()
    result = ecosystem("cmds.batch", "--sw", cache=True)
    assert outcomes(result) == {"passed": 2}  # resumed at the failed one, not from the start
    result.stdout.fnmatch_lines(["*skipping 1 already passed items*"])


# -- 7. other reporters show the truth -------------------------------------------------------------


def test_html_json_report_and_allure_show_output(pytester: pytest.Pytester, ecosystem) -> None:
    write(pytester, "echo passed-out; echo passed-err >&2\necho failed-out; exit 3\n")
    result = ecosystem(
        "cmds.batch", "--html", "r.html", "--self-contained-html", "--json-report", "--json-report-file", "jr.json",
        "--alluredir", "allure", plugins=("html", "pytest_jsonreport", "allure_pytest"),
    )
    assert outcomes(result) == {"passed": 1, "failed": 1}
    html = (pytester.path / "r.html").read_text()
    assert "passed-out" in html and "passed-err" in html and "failed-out" in html
    tests = {t["nodeid"]: t for t in read_json(pytester.path / "jr.json")["tests"]}
    passed = tests["cmds.batch::echo passed-out; echo passed-err >&2"]["call"]
    assert "passed-out" in passed["stdout"] and "passed-err" in passed["stderr"]
    assert "failed-out" in tests["cmds.batch::echo failed-out; exit 3"]["call"]["stdout"]
    results = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    status = {r["name"]: r["status"] for r in results}
    assert status == {"echo passed-out; echo passed-err >&2": "passed", "echo failed-out; exit 3": "failed"}
    attachments = "".join(p.read_text() for p in (pytester.path / "allure").glob("*-attachment.txt"))
    assert "passed-out" in attachments and "failed-out" in attachments


def test_passed_output_with_rP(pytester: pytest.Pytester, ecosystem) -> None:
    write(pytester, "printf 'shown\\033[31m\\n'\n")
    result = ecosystem("cmds.batch", "-rP")
    # The escape byte is escaped ("[[]" is fnmatch for "[").
    result.stdout.fnmatch_lines(["*Captured stdout call*", "shown\\x1b[[]31m"])
    assert "\x1b[31m" not in result.stdout.str()


def test_sugar_keeps_the_summary_and_names_a_failure_once(pytester: pytest.Pytester, ecosystem) -> None:
    write(pytester, "echo fine\necho bad; exit 3\n")
    result = ecosystem("cmds.batch", "--force-sugar", plugins=("sugar",))
    text = result.stdout.str()
    assert "BatchRunner summary" in text and "Results (" in text
    (named,) = [line for line in result.outlines if "echo bad; exit 3" in line and line.strip().startswith("- ")]
    assert named.count("cmds.batch:2") == 1 and named.count("echo bad; exit 3") == 1, named


def test_rich_keeps_the_summary(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_leftovers: str) -> None:
    # pytest-rich replaces pytest's terminal reporter only on a terminal: run under a pseudo-terminal.
    # In-process only: pytest-rich 0.3 does not support xdist (it counts one test of two there).
    monkeypatch.setenv("PYTEST_ADDOPTS", plugins_off("rich"))
    write(pytester, "echo fine\necho bad; exit 3\n")
    command = f"{sys.executable} -m pytest cmds.batch --rich -p no:cacheprovider"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=pytester.path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "120"})
    assert "Summary" in proc.stdout  # pytest-rich's own
    assert "BatchRunner summary" in proc.stdout and "Total Commands: 2 | Successful: 1 | Failed: 1" in proc.stdout
