"""The terminal's BatchRunner summary and failure blocks: names, times, and how much output they show.

Real batch files and real processes, in-process and under ``-n 2``.
"""

from __future__ import annotations

import pytest

from pytest_batchrunner.batchfile import display_command
from pytest_batchrunner.reports.results import CommandResult
from pytest_batchrunner.reports.summary import Slowest, duration


def write(pytester: pytest.Pytester, text: str, name: str = "cmds.batch") -> None:
    (pytester.path / name).write_text(text)


def summary_of(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "BatchRunner summary" in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


def test_display_command_matches_item_names() -> None:
    assert display_command("make test   # batch: timeout=5") == "make test"
    assert display_command("echo '# batch: x'") == "echo '# batch: x'"
    assert display_command("python -m build \\\n    --wheel   # batch: retries=1") == "python -m build --wheel"


def test_slowest_lists_only_measurable_times() -> None:
    def result(line: int, ms: float, attempts: int = 1) -> CommandResult:
        return CommandResult(f"cmd{line}", True, 0, "", "", ms, "t", file="c.batch", line=line,
                             attempts=attempts, attempt_log=[{}] * attempts)

    def slowest(results: list[CommandResult]) -> list[CommandResult]:
        slow = Slowest()
        for r in results:
            slow.add(r)
        return slow.result()

    results = [result(1, 4.9), result(2, 300.0), result(3, 5.0, attempts=2), result(4, 0.0)]
    assert [r.line for r in slowest(results)] == [2, 3]
    assert duration(results[2]) == "0.01 s (2 attempts added up)"
    assert duration(results[1]) == "0.30 s"
    assert slowest([result(1, 500.0)]) == []  # one command: nothing to rank


def test_summary_names_times_and_attempts(pytester: pytest.Pytester, run, mode: str) -> None:
    write(
        pytester,
        "true   # batch: timeout=5\n"
        "sleep 0.3   # batch: timeout=5\n"
        "test -e flag || { touch flag; sleep 0.2; exit 1; }   # batch: retries=2\n"
        "echo nope >&2; exit 4   # batch: tags=x\n",
    )
    result = run()
    summary = summary_of(result)
    text = "\n".join(summary)
    assert "# batch:" not in text, text
    slowest = summary[summary.index("Slowest commands:") + 1:summary.index("Failed commands:")]
    assert slowest[0].endswith("cmds.batch:2  sleep 0.3"), slowest
    (flaky,) = [line for line in slowest if "touch flag" in line]
    assert flaky.endswith("(2 attempts added up)"), flaky
    assert "  cmds.batch:4  echo nope >&2; exit 4  [exit code 4]  nope" in summary


def test_vv_prints_a_failure_once_and_output_lines_limit(pytester: pytest.Pytester, run) -> None:
    write(pytester, "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exit 2\n")
    result = run("-vv", "--batch-output-lines", "2")
    out = result.stdout.str()
    assert out.count("  command: for i in") == 1, out
    assert "err4" in out and "err5" in out and "err3" not in out
    assert "out4" in out and "out5" in out and "out3" not in out
    assert "--- stderr, last 2 lines of 25 bytes ---" in out
    result.stdout.fnmatch_lines(["FAILED cmds.batch::for i in * - exit code 2 · cmds.batch:1 · *"])


def test_output_lines_zero_and_bad_value(pytester: pytest.Pytester, run) -> None:
    write(pytester, "printf 'secret-%s' output; exit 1\n")
    result = run("--batch-output-lines", "0")
    out = result.stdout.str()
    assert "exit code 1 · cmds.batch:1" in out
    assert "secret-output" not in out.split("BatchRunner summary")[0]
    result = run("--batch-output-lines", "-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--batch-output-lines: '-1' must be 0 or more*"])


def test_only_rerun_still_reads_the_status(pytester: pytest.Pytester, run) -> None:
    write(pytester, "exit 3\nexit 4\n")
    result = run("--reruns", "1", "--only-rerun", "exit code 3")
    assert result.parseoutcomes() == {"failed": 2, "rerun": 1}


def test_no_rate_when_no_command_ran(pytester: pytest.Pytester, run) -> None:
    """Every command skipped: the summary and every report say that none ran, not a rate of 0 or 100."""
    import json

    write(pytester, "# batch: skip\ntouch ran-1\ntouch ran-2\n")
    result = run("--batch-json", "r.json", "--batch-markdown", "r.md", "--batch-log", "r.log")
    assert result.ret == pytest.ExitCode.OK
    assert "Success Rate: n/a (no command ran)" in summary_of(result)
    assert json.loads((pytester.path / "r.json").read_text())["summary"]["success_rate"] is None
    assert "**Success rate: n/a (no command ran)**" in (pytester.path / "r.md").read_text()
    log = (pytester.path / "r.log").read_text()
    assert "Success Rate: n/a (no command ran)" in log and " success_rate=n/a " in log
    assert not list(pytester.path.glob("ran-*"))


def test_a_failure_line_says_why_once(pytester: pytest.Pytester, run) -> None:
    """A timed-out command's line: its status, then the last line it printed, not the status again in the original's words."""
    write(pytester, "sleep 30   # batch: timeout=0.5\necho oops >&2; sleep 30   # batch: timeout=0.5\n")
    result = run("--batch-markdown", "r.md")
    summary = summary_of(result)
    assert "  cmds.batch:1  sleep 30  [timed out after 0.5 s]" in summary, summary
    assert "  cmds.batch:2  echo oops >&2; sleep 30  [timed out after 0.5 s]  oops" in summary, summary
    markdown = (pytester.path / "r.md").read_text()
    assert "| `cmds.batch:1` | `sleep 30` | timed out after 0.5 s |  |" in markdown, markdown
    assert "Command timed out" not in "\n".join(summary) + markdown
