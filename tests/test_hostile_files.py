"""Files that are not files, names that are not plain, text that would drive a terminal, crafted
input that would make collection quadratic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from batchrunner import BatchRunner
from pytest_batchrunner.batchfile import BatchFileError, item_names, parse_batch_file, parse_batch_text, printable


def test_a_fifo_and_a_device_in_a_folder_are_skipped(pytester: pytest.Pytester, run, mode: str) -> None:
    os.mkfifo(pytester.path / "fifo.batch")
    os.symlink("/dev/zero", pytester.path / "zero.batch")
    (pytester.path / "dir.batch").mkdir()
    (pytester.path / "dir.batch" / "inner.batch").write_text("echo inner\n")
    (pytester.path / "real.batch").write_text("echo real\n")
    # Found in a folder: run because batch_patterns opts in to discovery.
    result = run(".", "-o", "batch_patterns=*.batch", timeout=60)
    # One warning per file from each process that collects (both xdist workers do).
    result.assert_outcomes(passed=2, warnings=2 if mode == "inprocess" else 4)
    result.stdout.fnmatch_lines_random([
        "*fifo.batch: not a regular file (a FIFO); batch files must be regular files, skipped*",
        "*zero.batch: not a regular file (a character device); batch files must be regular files, skipped*",
    ])
    assert "MemoryError" not in result.stdout.str()


@pytest.mark.parametrize(("name", "kind"), [("fifo.batch", "a FIFO"), ("zero.batch", "a character device")])
def test_a_fifo_or_a_device_named_on_the_command_line_is_a_usage_error(
    pytester: pytest.Pytester, run, name: str, kind: str
) -> None:
    os.mkfifo(pytester.path / "fifo.batch")
    os.symlink("/dev/zero", pytester.path / "zero.batch")
    result = run(name, timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{name}: not a regular file ({kind}); batch files must be regular files*"])


@pytest.mark.parametrize("arg", ["loop.batch", "a.batch", "a.batch::echo x"])
def test_a_symlink_loop_named_on_the_command_line_is_a_usage_error(pytester: pytest.Pytester, run, arg: str) -> None:
    os.symlink("loop.batch", pytester.path / "loop.batch")
    os.symlink("b.batch", pytester.path / "a.batch")
    os.symlink("a.batch", pytester.path / "b.batch")
    result = run(arg, timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {arg}: not a regular file (a symbolic link loop); batch files must be regular files"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_the_parser_refuses_what_is_not_a_regular_file(tmp_path) -> None:
    os.mkfifo(tmp_path / "fifo.batch")
    start = time.monotonic()
    with pytest.raises(BatchFileError, match="not a regular file \\(a FIFO\\)"):
        parse_batch_file(tmp_path / "fifo.batch")
    with pytest.raises(ValueError, match="not a regular file \\(a character device\\)"):
        BatchRunner.from_file("/dev/zero", verbose=False)
    assert time.monotonic() - start < 5


ESC_FILE = "e\x1b[31m.batch"
ESC_LINE = "echo \x1b]0;HACKED\x07 \x9bx; exit 2\n"


def test_control_characters_never_reach_the_terminal(pytester: pytest.Pytester, run) -> None:
    (pytester.path / ESC_FILE).write_text(ESC_LINE)
    # Collected from the folder (batch_patterns opts in): pytest 9.2 would read "[31m" of a named path as parameters.
    result = run(".", "-o", "batch_patterns=*.batch", "-v", "-rA")
    result.assert_outcomes(failed=1)
    text = "\n".join(result.outlines + result.errlines)
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in text
    # the -v line (in an id, "[" and "]" of a command show as "(" and ")")
    assert "e\\x1b[31m.batch::echo \\x1b)0;HACKED\\x07 \\x9bx; exit 2" in text
    # (plain text: "[31m" would be a character class to fnmatch)
    assert "command: echo \\x1b]0;HACKED\\x07 \\x9bx; exit 2" in text
    assert "e\\x1b[31m.batch:1  echo \\x1b]0;HACKED\\x07 \\x9bx; exit 2  [exit code 2]" in text


def test_a_file_name_with_double_colons_is_reported_right(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "a::b.batch").write_text("echo hi\nexit 3\n")
    # Collected from the folder (batch_patterns opts in): pytest splits a named path at "::".
    result = run(".", "-o", "batch_patterns=*.batch", "--junitxml=j.xml", "--batch-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert [(r["command"], r["status"], r["file"]) for r in results] == [
        ("echo hi", "passed", "a::b.batch"),
        ("exit 3", "failed", "a::b.batch"),
    ]
    cases = list(ET.parse(pytester.path / "j.xml").iter("testcase"))
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("a::b.batch", "echo hi"), ("a::b.batch", "exit 3")]
    assert cases[1].find("failure") is not None and cases[0].find("skipped") is None


COLON_LINES = [': "${X:=1}"', "echo a::b", ":", ": x", "echo a:::b"]


def test_commands_with_colons_are_reported_as_run(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "c.batch").write_text("\n".join(COLON_LINES) + "\n")
    result = run("c.batch", "--junitxml=j.xml", "--batch-json=r.json", "--batch-joblog=j.tsv", "--batch-log=a.log")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["Total Commands: 5 | Successful: 5 | Failed: 0 | Flaky: 0 | Reruns: 0"])
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert sorted((r["line"], r["command"], r["status"], r["file"]) for r in results) == [
        (n, line, "passed", "c.batch") for n, line in enumerate(COLON_LINES, 1)
    ]
    cases = list(ET.parse(pytester.path / "j.xml").iter("testcase"))
    assert [(c.get("classname"), c.get("name"), [e.tag for e in c if e.tag != "system-out"]) for c in cases] == [
        ("c.batch", name, []) for name in item_names(parse_batch_text((pytester.path / "c.batch").read_text(), "c.batch"))
    ]
    rows = [row.split("\t") for row in (pytester.path / "j.tsv").read_text().splitlines()[1:]]
    assert sorted((int(row[0]), row[6], row[-1]) for row in rows) == [(n, "0", line) for n, line in enumerate(COLON_LINES, 1)]
    assert "Not run" not in (pytester.path / "a.log").read_text()


def test_item_names_never_start_with_a_colon_nor_hold_two() -> None:
    names = item_names(parse_batch_text("\n".join(COLON_LINES) + "\n", "c.batch"))
    assert names == [' : "${X:=1}"', "echo a: :b", " :", " : x", "echo a: : :b"]


def test_a_file_name_that_is_not_utf8_is_reported_escaped(pytester: pytest.Pytester, mode: str, no_leftovers: str) -> None:
    # Its bytes reach pytest's ids as surrogate escapes, which no report (nor
    # the results spool, nor pytest's junitxml) can encode: an INTERNALERROR.
    name = os.fsdecode(b"n\xffame.batch")
    (pytester.path / name).write_text("echo 1\nexit 3\n")
    reports = ["--batch-json=r.json", "--junitxml=j.xml", "--batch-log=a.log", "--batch-joblog=j.tsv"]
    if mode == "xdist":
        # pytest-xdist sends arguments to its workers as UTF-8: a usage error first.
        result = pytester.runpytest_subprocess(name, "-n", "2", "-p", "no:cacheprovider", *reports)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: n\\xffame.batch: a file name that is not UTF-8 cannot be sent*"])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
        return
    result = pytester.runpytest_subprocess(name, "-rA", "-p", "no:cacheprovider", *reports)
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*Total Commands: 2 | Successful: 1 | Failed: 1*", "PASSED n\\xffame.batch::echo 1"])
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    assert [(r["command"], r["status"], r["file"]) for r in results] == [
        ("echo 1", "passed", "n\\xffame.batch"), ("exit 3", "failed", "n\\xffame.batch"),
    ]
    cases = list(ET.parse(pytester.path / "j.xml").iter("testcase"))
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("n\\xffame.batch", "echo 1"), ("n\\xffame.batch", "exit 3"),
    ]
    assert len((pytester.path / "j.tsv").read_text().splitlines()) == 3
    assert "exit 3" in (pytester.path / "a.log").read_text()


def test_printable_escapes_controls_but_tabs() -> None:
    assert printable("a\tb\x1b[0m\x07\x7f\x9b\n") == "a\tb\\x1b[0m\\x07\\x7f\\x9b\\x0a"
    assert printable(os.fsdecode(b"n\xff.batch") + "\ud800") == "n\\xff.batch\\ud800"
    assert item_names(parse_batch_text("echo \x1b[2J\n", "x.batch")) == ["echo \\x1b(2J"]


@pytest.mark.parametrize(
    "crafted",
    [
        lambda n: "".join(f"true ({k})\n" for k in range(2, n)) + "true\n" * n,
        lambda n: "\n" * (2 * n) + "echo \\\n",
        lambda n: "echo \\\n" + "#x \\\n" * n + "y\n",
    ],
    ids=["names-already-numbered", "blanks-then-a-trailing-backslash", "comments-in-continuations"],
)
def test_collection_stays_linear_on_crafted_input(crafted) -> None:
    def cost(n: int) -> float:
        text = crafted(n)
        start = time.perf_counter()
        try:
            item_names(parse_batch_text(text, "x.batch"))
        except BatchFileError:
            pass
        return time.perf_counter() - start

    small, large = min(cost(5_000) for _ in range(3)), min(cost(40_000) for _ in range(3))
    # Eight times the input: linear is about 8x, quadratic 64x; generous for a busy machine.
    assert large < max(small * 24, 0.3), (small, large)


def test_a_leftover_process_name_never_reaches_text_raw(pytester: pytest.Pytester, run, mode: str) -> None:
    # The command leaves a process whose name holds ESC and BEL (bash's exec -a sets its argv[0]).
    (pytester.path / "c.batch").write_text(
        "bash -c 'exec -a \"$(printf \"evil\\033]0;HACKED\\007\")\" sleep 30' & "
        "until grep -q \"$(printf 'evil\\033')\" /proc/$!/cmdline; do sleep 0.01; done\n"  # ends once it has its name
    )
    result = run("c.batch", "--batch-log=a.log", "--junitxml=j.xml", "--batch-kill-grace=0.2", "-rA")
    result.assert_outcomes(passed=1, warnings=1)
    texts = {"terminal": "\n".join(result.outlines + result.errlines), "log": (pytester.path / "a.log").read_text()}
    if mode == "inprocess":  # the API's verbose output, on the same engine
        api = subprocess.run(
            [sys.executable, "-c", "from batchrunner import BatchRunner; BatchRunner.from_file('c.batch', verbose=True).run()"],
            cwd=pytester.path, capture_output=True, text=True, timeout=60,
        )
        texts["api"] = api.stdout + api.stderr
    for name, text in texts.items():
        assert "evil\\x1b]0;HACKED\\x07 30 (pid " in text, name
        assert "\x1b" not in text and "\x07" not in text, name
