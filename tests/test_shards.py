"""``--batch-shard K/N`` and ``batchrunner merge``: N shards run one after another here, then merged.

The merged report must be the report of one run on one machine: every command
once, in file order, the same outcomes and counts, sequential groups intact.
"""

from __future__ import annotations

import functools
import os
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.plugin.history import history_path
from test_history import seed


@pytest.fixture(autouse=True)
def _discover_batch_files(_ecosystem_plugins_off: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """These projects opt in to discovering their batch files, as an ini's ``batch_patterns = *.batch`` does."""
    monkeypatch.setenv("PYTEST_ADDOPTS", os.environ.get("PYTEST_ADDOPTS", "") + " -o batch_patterns=*.batch")


BATCH = (
    "echo one\n"
    "false\n"
    'echo "$BATCH_LINE" >> steps  # batch: sequential group=deploy\n'
    "echo independent\n"
    'echo "$BATCH_LINE" >> steps  # batch: sequential group=deploy\n'
    "sleep 0.1\n"
    'echo "$BATCH_LINE" >> steps  # batch: sequential group=deploy\n'
    "echo skipped  # batch: skip\n"
    "echo two\n"
    "echo three\n"
)
COMPARED = ("command", "success", "exit_code", "stdout", "file", "line", "attempts", "status", "nodeid")


def write(pytester: pytest.Pytester, text: str = BATCH, name: str = "cmds.batch") -> Path:
    path = pytester.path / name
    path.write_text(text)
    return path


def merge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrunner", "merge", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_subprocess("--collect-only", "-q", *args)
    return [line for line in result.outlines if "::" in line]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_shards_cover_every_command_once_groups_whole(pytester: pytest.Pytester) -> None:
    write(pytester)
    everything = collected(pytester, "-p", "no:cacheprovider")
    shards = [collected(pytester, "--batch-shard", f"{k}/3", "-p", "no:cacheprovider") for k in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(everything)
    steps = [n for n in everything if "steps" in n]
    assert sum(all(s in shard for s in steps) for shard in shards) == 1  # the group is in one shard, whole
    # Balanced by count: 8 units (the group is 3 commands) over 3 shards.
    assert sorted(len(s) for s in shards) == [3, 3, 4]
    # Deterministic: the same again.
    assert collected(pytester, "--batch-shard", "2/3", "-p", "no:cacheprovider") == shards[1]


def test_shards_balanced_by_history(pytester: pytest.Pytester) -> None:
    write(pytester, "".join(f"echo {i}\n" for i in range(6)))
    seed(pytester, {"cmds.batch::echo 0": 10.0, **{f"cmds.batch::echo {i}": 1.0 for i in range(1, 6)}})
    shards = [collected(pytester, "--batch-shard", f"{k}/2") for k in (1, 2)]
    assert shards == [["cmds.batch::echo 0"], [f"cmds.batch::echo {i}" for i in range(1, 6)]]


def test_shard_auto_reads_gitlab_variables(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    write(pytester, "".join(f"echo {i}\n" for i in range(4)))
    monkeypatch.setenv("CI_NODE_TOTAL", "2")
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    auto = collected(pytester, "--batch-shard", "auto", "-p", "no:cacheprovider")
    assert auto == collected(pytester, "--batch-shard", "2/2", "-p", "no:cacheprovider") and len(auto) == 2
    monkeypatch.setenv("CI_NODE_INDEX", "3")
    result = pytester.runpytest_subprocess("--batch-shard", "auto", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--batch-shard auto: CI_NODE_INDEX/CI_NODE_TOTAL: '3/2': K must be between 1 and N*"])
    monkeypatch.delenv("CI_NODE_INDEX")
    monkeypatch.delenv("CI_NODE_TOTAL")
    assert len(collected(pytester, "--batch-shard", "auto", "-p", "no:cacheprovider")) == 4


@pytest.mark.parametrize("value", ["3", "0/2", "3/2", "a/b", "1/0"])
def test_bad_shard_option(pytester: pytest.Pytester, value: str) -> None:
    write(pytester, "true\n")
    result = pytester.runpytest_subprocess("--batch-shard", value, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--batch-shard: '{value}'*"])


def test_a_shard_with_nothing_to_run_passes(pytester: pytest.Pytester, mode: str) -> None:
    write(pytester, "true\n")
    extra = ["-n", "2"] if mode == "xdist" else []
    results = [pytester.runpytest_subprocess("--batch-shard", f"{k}/2", "-p", "no:cacheprovider", *extra)
               for k in (1, 2)]
    assert [r.ret for r in results] == [0, 0]
    assert sorted(r.parseoutcomes().get("passed", 0) for r in results) == [0, 1]


@pytest.mark.parametrize("total", ["1000000000", "99999999999999999999"])
def test_a_huge_shard_count_costs_no_more_than_the_commands(pytester: pytest.Pytester, total: str) -> None:
    # Only as many shards as commands can get one: the first two shards take
    # the two lines, every other is empty (was an INTERNALERROR, or a list of N loads).
    write(pytester, "true\ntrue\n")
    outcomes = [
        pytester.runpytest_subprocess("--batch-shard", f"{k}/{total}", "-p", "no:cacheprovider", timeout=60)
        for k in ("1", "2", "3")
    ]
    assert [r.ret for r in outcomes] == [0, 0, 0]
    assert [r.parseoutcomes().get("passed", 0) for r in outcomes] == [1, 1, 0]


def run_shards(pytester: pytest.Pytester, mode: str, total: int) -> list[Path]:
    extra = ["-n", "2"] if mode == "xdist" else []
    paths = []
    for k in range(1, total + 1):
        path = pytester.path / f"shard{k}.json"
        result = pytester.runpytest_subprocess("--batch-shard", f"{k}/{total}", "--batch-json", str(path), *extra)
        assert result.ret in (0, 1), result.stdout.str()
        paths.append(path)
    return paths


def test_merged_shards_report_as_one_run(pytester: pytest.Pytester, mode: str, no_leftovers: str) -> None:
    write(pytester)
    extra = ["-n", "2"] if mode == "xdist" else []
    whole = pytester.runpytest_subprocess("--batch-json", "whole.json", "-p", "no:cacheprovider", *extra)
    whole.assert_outcomes(passed=8, failed=1, skipped=1)
    (pytester.path / "steps").unlink()
    paths = run_shards(pytester, mode, 3)
    # Each shard's report counts its own commands only.
    for path in paths:
        document = load(path)
        assert document["summary"]["total_commands"] == len(document["results"]) < 10
        assert len(document["shard"]["commands"]) == 10
    assert (pytester.path / "steps").read_text().split() == ["3", "5", "7"]  # in order, once
    done = merge(*map(str, paths), "-o", "all.json", "--junitxml", "all.xml", cwd=pytester.path)
    assert done.returncode == 1, done.stderr  # "false" failed, as in the whole run
    assert "Total Commands: 10 | Successful: 8 | Failed: 1 | Flaky: 0 | Reruns: 0 | Skipped: 1" in done.stdout
    merged, one = load(pytester.path / "all.json"), load(pytester.path / "whole.json")
    assert [{k: r[k] for k in COMPARED} for r in merged["results"]] == [
        {k: r[k] for k in COMPARED} for r in one["results"]
    ]
    for key in ("total_commands", "successful", "failed", "success_rate", "skipped", "not_run", "reruns"):
        assert merged["summary"][key] == one["summary"][key], key
    assert_valid_junit(pytester.path / "all.xml", tests=10, failures=1, skipped=1)


def assert_valid_junit(path: Path, *, tests: int, failures: int, skipped: int) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "-1")) == tests
    assert int(suite.get("failures", "-1")) == failures
    assert int(suite.get("skipped", "-1")) == skipped
    assert float(suite.get("time", "0")) > 0
    schema = _schema()
    if schema is not None:
        schema.validate(str(path))


@functools.cache
def _schema():  # type: ignore[no-untyped-def]
    try:
        import xmlschema
    except ImportError:
        return None
    return xmlschema.XMLSchema(str(Path(__file__).parent / "schemas" / "junit-10.xsd"))


def test_merge_missing_shard_is_not_run(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "".join(f"echo {i}\n" for i in range(6)))
    paths = run_shards(pytester, "inprocess", 3)
    done = merge(str(paths[0]), str(paths[2]), "-o", "all.json", cwd=pytester.path)
    assert done.returncode == 1
    assert "[!] missing shards: 2/3 (their commands are reported as not run)" in done.stderr
    results = load(pytester.path / "all.json")["results"]
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5, 6]
    assert sorted(r["status"] for r in results) == ["not run"] * 2 + ["passed"] * 4
    # As in a shard's own JSON: a command that never ran has the original's exit code for none, -1.
    assert [r["exit_code"] for r in results if r["status"] == "not run"] == [-1, -1]
    assert "Not run: 2" in done.stdout


def test_merge_refuses_conflicts_and_bad_files(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "echo a\necho b\n")
    first, second = run_shards(pytester, "inprocess", 2)
    (pytester.path / "whole.json").write_text(json.dumps(
        {**load(first), "results": load(first)["results"] + load(second)["results"], "shard": None}
    ))
    (pytester.path / "bad.json").write_text("{not json")
    (pytester.path / "other.json").write_text('{"a": 1}')
    cases = {
        (str(first), "whole.json"): "[X] Error: cmds.batch::echo *: in two shards, *shard1.json and whole.json",
        (str(first), str(first)): "[X] Error: *shard1.json: shard 1/2 is also *shard1.json",
        (str(first), "bad.json"): "[X] Error: bad.json: not a JSON file: *",
        (str(first), "other.json"): "[X] Error: other.json: not the JSON results of a run (--batch-json)*",
        (str(first), "missing.json"): "[X] Error: missing.json: cannot read: No such file or directory",
    }
    for args, message in cases.items():
        done = merge(*args, "-o", "out.json", cwd=pytester.path)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        from fnmatch import fnmatch

        assert fnmatch(done.stderr.strip(), message.replace("[X]", "[[]X]")), (args, done.stderr)
        assert not (pytester.path / "out.json").exists()
    done = merge(str(first), str(second), "-o", "out.json", cwd=pytester.path)
    assert done.returncode == 0, done.stderr
    assert "Success Rate: 100.0%" in done.stdout


def test_merge_keeps_the_runs_of_an_item_run_twice(pytester: pytest.Pytester, no_leftovers: str) -> None:
    # Two results with one nodeid are two runs (--keep-duplicates), not a command in two shards.
    write(pytester, "echo a\n")
    ran = pytester.runpytest_subprocess("cmds.batch", "cmds.batch", "--keep-duplicates", "-p", "no:cacheprovider",
                                        "--batch-json", "one.json")
    ran.assert_outcomes(passed=2)
    done = merge("one.json", "-o", "all.json", cwd=pytester.path)
    assert done.returncode == 0, done.stderr
    results = load(pytester.path / "all.json")["results"]
    assert [(r["nodeid"], r["run"], r["status"]) for r in results] == [
        ("cmds.batch::echo a", 1, "passed"), ("cmds.batch::echo a", 2, "passed")]
    assert "Total Commands: 2" in done.stdout


def test_merge_never_writes_over_a_shard_or_its_other_report(tmp_path: Path) -> None:
    shard = '{"summary": {}, "results": []}'
    for name in ("s1.json", "s2.json"):
        (tmp_path / name).write_text(shard)
    cases = {
        ("-o", "s1.json"): "-o/--output s1.json is the same file as the shard s1.json: it would be overwritten",
        ("-o", "s2.json", "--junitxml", "s1.json"): "--junitxml s1.json is the same file as the shard s1.json",
        ("-o", "all.json", "--junitxml", "all.json"):
            "--junitxml all.json is the same file as -o/--output all.json: give each report its own file",
        ("-o", "."): "-o/--output .: is a directory, not a file name",
    }
    for args, message in cases.items():
        done = merge("s1.json", "s2.json", *args, cwd=tmp_path)
        assert done.returncode == 1
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("[X] Error: " + message), done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.json", "s2.json"]
        assert (tmp_path / "s1.json").read_text() == (tmp_path / "s2.json").read_text() == shard


ATTEMPT = {"attempt": 1, "success": True, "exit_code": 0, "timed_out": False, "duration_ms": 1.0, "status": "exit code 0"}


def valid_shard() -> dict[str, Any]:
    """A shard's JSON results as a run writes them, reduced to what merge reads."""
    attempt = dict(ATTEMPT)
    result = {"command": "echo a", "success": True, "exit_code": 0, "stdout": "a\n", "stderr": "",
              "duration_ms": 1.0, "timestamp": None, "file": "c.batch", "line": 1, "status": "passed",
              "nodeid": "c.batch::echo a", "attempt_log": [attempt]}
    command = {"nodeid": "c.batch::echo a", "command": "echo a", "file": "c.batch", "line": 1}
    return {"summary": {"workers": 1}, "results": [result], "shard": {"index": 1, "total": 1, "commands": [command]}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"results": [{**valid_shard()["results"][0], "line": "x"}]},
         "s.json: result 1: 'line' must be a whole number or null, not \"x\""),
        ({"results": [{**valid_shard()["results"][0], "duration_ms": True}]},
         "s.json: result 1: 'duration_ms' must be a number, not true"),
        ({"results": [{**valid_shard()["results"][0], "attempt_log": [{}]}]},
         "s.json: result 1: attempt 1 has no 'success', 'timed_out', 'duration_ms'"),
        ({"results": [{**valid_shard()["results"][0], "attempt_log": ["x"]}]},
         "s.json: result 1: attempt 1 is not an object"),
        ({"results": ["x"]}, "s.json: result 1 is not an object"),
        ({"summary": {"workers": "x"}}, "s.json: summary: 'workers' must be a whole number or null, not \"x\""),
        ({"shard": {"index": 5, "total": 2}},
         "s.json: 'shard' is 5/2: the index must be 1 to the total, the total 1 to 1000000"),
        ({"shard": {"index": 1, "total": 10**30}}, "s.json: 'shard' is 1/10000000000000000000000000000"),
        ({"shard": {"index": 0, "total": 0}}, "s.json: 'shard' is 0/0: the index must be 1 to the total"),
        ({"shard": {"index": True, "total": 2}}, "s.json: 'shard' has no index and total"),
        ({"shard": "x"}, "s.json: 'shard' must be an object with index and total, not \"x\""),
        ({"shard": {"index": 1, "total": 1, "commands": [{"nodeid": "n", "command": "c", "line": "x"}]}},
         "s.json: 'shard' command 1: 'line' must be a whole number or null, not \"x\""),
        ({"summary": {"started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:00:01+00:00"}},
         "s.json: summary: 'started' must be an ISO 8601 time with its UTC offset, not \"2026-01-01T00:00:00\""),
        ({"results": [{**valid_shard()["results"][0], "leftovers": [1]}]},
         "s.json: result 1: 'leftovers' must be a list of strings, not [1]"),
        ({"results": [{**valid_shard()["results"][0], "attempt_log": [{**ATTEMPT, "leftovers": [{"pid": 1}]}]}]},
         "s.json: result 1: attempt 1: 'leftovers' must be a list of strings, not [{\"pid\": 1}]"),
        ({"results": [{**valid_shard()["results"][0], "status": "weird"}]},
         "s.json: result 1: 'status' must be one of passed, failed, skipped, xfailed, xpassed, not run, interrupted, not \"weird\""),
        ({"results": [{**valid_shard()["results"][0], "duration_ms": float("inf")}]},
         "s.json: result 1: 'duration_ms' must be a number, not Infinity"),
        ({"results": [{**valid_shard()["results"][0], "attempt_log": [{**ATTEMPT, "duration_ms": float("nan")}]}]},
         "s.json: result 1: attempt 1: 'duration_ms' must be a number, not NaN"),
        ({"results": [{**valid_shard()["results"][0], "duration_ms": 10**400}]},
         "s.json: result 1: 'duration_ms' must be a number, not 1000000"),
        ({"summary": {"total_duration_ms": float("-inf")}},
         "s.json: summary: 'total_duration_ms' must be a number or null, not -Infinity"),
        pytest.param('{"summary": {}, "results": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     "s.json: not the JSON results of a run (--batch-json): nested too deeply", id="deep"),
    ],
)
def test_merge_names_the_file_and_what_is_wrong_with_a_malformed_shard(
    tmp_path: Path, change: dict[str, Any] | str, message: str
) -> None:
    (tmp_path / "s.json").write_text(change if isinstance(change, str) else json.dumps({**valid_shard(), **change}))
    done = merge("s.json", "-o", "all.json", "--junitxml", "all.xml", "--cache-dir", "cache", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("[X] Error: " + message), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # nothing written
    # The same shard as a run writes it merges.
    (tmp_path / "s.json").write_text(json.dumps(valid_shard()))
    done = merge("s.json", "-o", "all.json", "--junitxml", "all.xml", "--cache-dir", "cache", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_merge_records_history_for_the_next_split(pytester: pytest.Pytester, no_leftovers: str) -> None:
    write(pytester, "sleep 0.5\necho a\necho b\necho c\n")
    paths = run_shards(pytester, "inprocess", 2)
    # Shards write no history: each shard must split the batch from the same one.
    assert not (pytester.path / history_path(".pytest_cache")).exists()
    done = merge(*map(str, paths), "-o", "all.json", "--cache-dir", ".pytest_cache", cwd=pytester.path)
    assert done.returncode == 0, done.stderr
    # Now the split follows durations: the slow command alone in a shard.
    shards = [collected(pytester, "--batch-shard", f"{k}/2") for k in (1, 2)]
    assert ["cmds.batch::sleep 0.5"] in shards


def test_batchrunner_file_still_runs(tmp_path: Path) -> None:
    (tmp_path / "merge").write_text("echo from-a-file-named-merge\n")
    done = subprocess.run([sys.executable, "-m", "batchrunner", "-f", "merge"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Success Rate: 100.0%" in done.stdout
