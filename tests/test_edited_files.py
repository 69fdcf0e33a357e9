"""A batch file edited or deleted while the run goes on: nothing runs that was not collected.

Under ``-n``, a worker that replaces a crashed one collects again, and xdist
gives it items by their place in its own collection: it must collect what the
run collected, not the file as it is now (see ``pytest_batchrunner/plugin/batchtexts.py``).
"""

from __future__ import annotations

import json

import pytest

ORIGINAL = [f"touch ran-{n}" for n in range(1, 7)]
EDITED = "".join(f"touch EVIL-{n}\n" for n in range(1, 7))
# Each of the two first workers dies on the first line it runs, after it edited (or deleted) the file:
# the workers that replace them collect again, and run the lines left.
CRASH = 'case "$BATCH_WORKER" in gw0|gw1) {change}; kill -9 $PPID; sleep 60;; esac; '


def write_batch(pytester: pytest.Pytester, change: str) -> None:
    (pytester.path / "edited.txt").write_text(EDITED)
    (pytester.path / "cmds.batch").write_text("".join(CRASH.format(change=change) + line + "\n" for line in ORIGINAL))


def ran(pytester: pytest.Pytester) -> list[str]:
    return sorted(p.name for p in pytester.path.iterdir() if p.name.startswith(("ran-", "EVIL-")))


def test_replacement_worker_runs_the_collected_lines_of_an_edited_file(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write_batch(pytester, "cp edited.txt cmds.batch")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider", "--batch-json", "r.json")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*replacing crashed worker*"])
    assert len(ran(pytester)) == 4 and all(name.startswith("ran-") for name in ran(pytester)), ran(pytester)
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted(r["command"].rsplit("; ", 1)[1] for r in results) == ORIGINAL
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_replacement_worker_stops_the_run_when_the_file_was_deleted(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write_batch(pytester, "rm cmds.batch")
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    result.stdout.fnmatch_lines(["*batch file deleted during the run: cmds.batch;*the run stops*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert ran(pytester) == []


EDIT_BEFORE_WORKERS = """
from pathlib import Path

def pytest_xdist_setupnodes(config, specs):
    # After pytest-batchrunner read the files, before any worker collects.
    {action}
"""


@pytest.mark.parametrize("action", ["edit", "delete"])
def test_workers_collect_the_file_as_the_run_read_it(pytester: pytest.Pytester, action: str, no_leftovers: str) -> None:
    (pytester.path / "cmds.batch").write_text("".join(line + "\n" for line in ORIGINAL[:3]))
    change = 'Path("cmds.batch").write_text("touch EVIL-1\\n")' if action == "edit" else 'Path("cmds.batch").unlink()'
    pytester.makeconftest(EDIT_BEFORE_WORKERS.format(action=change))
    result = pytester.runpytest_subprocess("cmds.batch", "-n", "2", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    if action == "edit":
        result.assert_outcomes(passed=3)
        assert ran(pytester) == ["ran-1", "ran-2", "ran-3"]
    else:
        result.stdout.fnmatch_lines(["*batch file deleted during the run: cmds.batch;*"])
        assert result.ret == pytest.ExitCode.INTERRUPTED
        assert ran(pytester) == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_line_editing_its_file_changes_nothing_of_the_run(pytester: pytest.Pytester, run, jobs: str) -> None:
    (pytester.path / "edited.txt").write_text(EDITED)
    (pytester.path / "cmds.batch").write_text("cp edited.txt cmds.batch\n" + "".join(line + "\n" for line in ORIGINAL))
    result = run("--batch-jobs", jobs)
    result.assert_outcomes(passed=7)
    assert ran(pytester) == sorted(f"ran-{n}" for n in range(1, 7))


def test_a_missing_batch_file_is_named(pytester: pytest.Pytester, run) -> None:
    result = run("gone.batch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*file or directory not found: gone.batch*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_replacement_worker_stops_the_run_when_a_batch_file_appeared(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pytester.makeini("[pytest]\nbatch_patterns = *.batch\n")
    write_batch(pytester, "cp edited.txt new.batch")
    result = pytester.runpytest_subprocess(".", "-n", "2", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    result.stdout.fnmatch_lines(["*a new xdist worker (one replacing a crashed worker) collected other tests*the run stops*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert ran(pytester) == []
