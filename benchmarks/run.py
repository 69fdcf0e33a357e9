"""Benchmark pytest-batchrunner against xargs, GNU parallel and a plain thread pool.

    python benchmarks/run.py [--rounds N] [--quick] [--only W1,W3] [--rev HEAD]
                             [--original PATH] [--markdown docs/benchmarks.md] [--json OUT]

Every workload file is generated in a temporary directory holding an empty
``pytest.ini`` (so no project configuration applies). Each variant runs as a
subprocess; within a round every variant of a workload runs once, in an order
rotated from round to round, so that machine noise falls on all of them alike.
For each run we take the wall time (``perf_counter`` around spawn and
``wait4``), the CPU time (user + system of the whole tree, from ``wait4``) and
the peak RSS (GNU time's ``%M``: the largest single process of the tree, not a
sum). The tables report medians, and ratios of medians from the same run.

pytest runs with ``-p no:cacheprovider -q``, with every installed pytest plugin
that is not ours or a dependency of ours blocked, and without ``PYTEST_*``,
``PYTHONDONTWRITEBYTECODE`` and ``PYTHONUNBUFFERED`` in its environment.
``--rev REV`` measures ``pytest_batchrunner/`` as committed at REV (extracted
with ``git archive`` and put first on ``PYTHONPATH``) rather than the working
tree the editable install points at.

Benchmarks are not tests: nothing here runs in CI and no threshold fails a
build. The exit status is 1 only if a variant did not do its work (a failed
command, a wrong item count), never because a target was missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THREADPOOL = HERE / "threadpool_runner.py"
PY = sys.executable
SLEEP = 0.25  # seconds, W2
QUIET_WAIT = 20.0  # seconds to wait for a quiet machine before repeating a noisy run
RUN_TIMEOUT = 1200.0  # seconds; a variant taking longer is killed and reported as an error (W11 takes minutes)
MARK_START = "<!-- benchmark-results:start -->"
MARK_END = "<!-- benchmark-results:end -->"

# The plugin and the plugins it depends on; any other installed pytest plugin
# (pytest-benchmark, hypothesis...) is blocked with -p no:NAME, so that the
# numbers do not depend on what else a machine happens to have installed.
OWN_DISTRIBUTIONS = {"pytest-batchrunner", "pytest-xdist", "pytest-timeout", "pytest-rerunfailures"}


def foreign_plugins() -> list[str]:
    """Entry-point names of the installed pytest plugins that are not ours or our dependencies."""
    from importlib.metadata import entry_points

    names = set()
    for ep in entry_points(group="pytest11"):
        dist = ep.dist.name if ep.dist is not None else ""
        if dist.lower().replace("_", "-") not in OWN_DISTRIBUTIONS:
            names.add(ep.name)
    return sorted(names)


BLOCKED = foreign_plugins()
# pytest as every pytest variant runs it: the cache plugin writes files.
PYTEST = [PY, "-m", "pytest", "-p", "no:cacheprovider", *(a for n in BLOCKED for a in ("-p", f"no:{n}")), "-q"]


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Variant:
    """One way of running a workload."""

    label: str
    argv: Callable[[dict[str, int]], list[str]]
    """The command line, given the workload's sizes; runs in the workload's directory."""
    expect: Callable[[dict[str, int]], str] | None = None
    """A regex its stdout must match to count as having done the work (stdout is discarded if None)."""
    ref: str | None = None
    """The variant (or ``"ideal"``) its wall time is compared with in the ratio column."""
    verify: Callable[[Path, dict[str, int]], str | None] | None = None
    """After a run: why the files it wrote are wrong (read from its directory), or None."""


@dataclass(frozen=True)
class Target:
    """A target of the issue: ``variant``'s median ``metric`` at most ``limit`` (times ``ref``'s, if any)."""

    variant: str
    metric: str  # "wall" (seconds) or "rss" (MB)
    limit: float
    ref: str | None = None
    """A variant label, "ideal", or None for an absolute limit. For "wall", a ratio
    of the two; for "rss", MB above the reference's peak."""


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    sizes: dict[str, int]
    quick_sizes: dict[str, int]
    files: Callable[[dict[str, int]], dict[str, str]]
    variants: list[Variant]
    targets: list[Target]
    rounds: int
    """Default number of rounds (expensive workloads get fewer)."""
    ideal: Callable[[dict[str, int]], float] | None = None
    prime: Callable[[dict[str, int]], list[list[str]]] | None = None
    """Command lines run once, untimed, in the workload's directory before the first round (W13: the first run)."""


def _pytest(*extra: str, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    return lambda s: [*PYTEST, file, *extra]


def _xargs(jobs: int, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    # Each line is one argument of ``/bin/sh -c``, as the plugin runs it; -d '\n'
    # keeps xargs from interpreting quotes and backslashes in the line.
    return lambda s: ["xargs", "-a", file, "-d", "\n", "-n", "1", "-P", str(jobs), "/bin/sh", "-c"]


def _parallel(jobs: int, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    # PARALLEL_SHELL=/bin/sh is set in the environment: started from Python,
    # GNU parallel would otherwise pick bash.
    return lambda s: ["parallel", "--will-cite", "-j", str(jobs), "-a", file]


def _threads(workers: int, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    return lambda s: [PY, str(THREADPOOL), file, "--workers", str(workers)]


def _passed(key: str) -> Callable[[dict[str, int]], str]:
    return lambda s: rf"\b{s[key]} passed\b"


def _ran(key: str) -> Callable[[dict[str, int]], str]:
    return lambda s: rf"^{s[key]} commands, 0 failed"


def _lines(command: str, count: int) -> str:
    return (command + "\n") * count


W1 = Workload(
    key="W1",
    title="1,000 lines of `true`: overhead per command",
    sizes={"lines": 1000},
    quick_sizes={"lines": 100},
    files=lambda s: {"w.batch": _lines("true", s["lines"])},
    variants=[
        Variant("xargs -P1", _xargs(1)),
        Variant("xargs -P2", _xargs(2)),
        Variant("GNU parallel -j1", _parallel(1), ref="xargs -P1"),
        Variant("GNU parallel -j2", _parallel(2), ref="xargs -P2"),
        Variant("thread pool, 1 thread", _threads(1), _ran("lines"), ref="xargs -P1"),
        Variant("thread pool, 10 threads", _threads(10), _ran("lines"), ref="xargs -P2"),
        Variant("pytest in-process", _pytest(), _passed("lines"), ref="xargs -P1"),
        Variant("pytest --batch-jobs 2", _pytest("--batch-jobs", "2"), _passed("lines"), ref="xargs -P2"),
        Variant("pytest -n 2", _pytest("-n", "2"), _passed("lines"), ref="xargs -P2"),
    ],
    targets=[
        Target("pytest in-process", "wall", 1.5, "xargs -P1"),
        Target("pytest --batch-jobs 2", "wall", 1.5, "xargs -P2"),
        Target("pytest --batch-jobs 2", "wall", 0.33, "GNU parallel -j2"),
    ],
    rounds=5,
)

W2 = Workload(
    key="W2",
    title="40 lines of `sleep 0.25`, 4 at a time: parallel efficiency (ideal 2.5 s)",
    sizes={"lines": 40},
    quick_sizes={"lines": 8},
    files=lambda s: {"w.batch": _lines(f"sleep {SLEEP}", s["lines"])},
    variants=[
        Variant("xargs -P4", _xargs(4), ref="ideal"),
        Variant("GNU parallel -j4", _parallel(4), ref="ideal"),
        Variant("thread pool, 4 threads", _threads(4), _ran("lines"), ref="ideal"),
        Variant("pytest --batch-jobs 4", _pytest("--batch-jobs", "4"), _passed("lines"), ref="ideal"),
        Variant("pytest -n 4", _pytest("-n", "4"), _passed("lines"), ref="ideal"),
    ],
    targets=[
        Target("pytest --batch-jobs 4", "wall", 1.10, "ideal"),
        Target("pytest -n 4", "wall", 1.25, "ideal"),
    ],
    rounds=3,
    ideal=lambda s: s["lines"] / 4 * SLEEP,
)

W3 = Workload(
    key="W3",
    title="one command printing 200 MB: peak memory",
    sizes={"bytes": 200_000_000},
    quick_sizes={"bytes": 20_000_000},
    files=lambda s: {"w.batch": f"head -c {s['bytes']} /dev/zero | tr '\\0' x\n"},
    variants=[
        Variant("xargs -P1 (output discarded)", _xargs(1)),
        Variant("thread pool, 10 threads", _threads(10), lambda s: r"^1 commands, 0 failed", ref="xargs -P1 (output discarded)"),
        Variant("pytest in-process", _pytest(), lambda s: r"\b1 passed\b", ref="xargs -P1 (output discarded)"),
        Variant("pytest -n 2", _pytest("-n", "2"), lambda s: r"\b1 passed\b", ref="xargs -P1 (output discarded)"),
    ],
    targets=[Target("pytest in-process", "rss", 80.0)],
    rounds=5,
)

W4 = Workload(
    key="W4",
    title="a 100,000-line file, `--collect-only`: collection time and memory",
    sizes={"lines": 100_000},
    quick_sizes={"lines": 5_000},
    files=lambda s: {"w.batch": _lines("true", s["lines"]), "one.batch": "true\n"},
    variants=[
        Variant("pytest --collect-only, 1 line (startup)", _pytest("--collect-only", file="one.batch"),
                lambda s: r"\b1 tests? collected\b"),
        Variant("pytest --collect-only", _pytest("--collect-only"), lambda s: rf"\b{s['lines']} tests collected\b"),
    ],
    targets=[
        Target("pytest --collect-only", "wall", 3.0),
        Target("pytest --collect-only", "rss", 400.0),
    ],
    rounds=3,
)

W5 = Workload(
    key="W5",
    title="5,000 lines of `true` under `-n 2`",
    sizes={"lines": 5000},
    quick_sizes={"lines": 500},
    files=lambda s: {"w.batch": _lines("true", s["lines"])},
    variants=[
        Variant("xargs -P2", _xargs(2)),
        Variant("pytest -n 2", _pytest("-n", "2"), _passed("lines"), ref="xargs -P2"),
    ],
    targets=[Target("pytest -n 2", "wall", 2.0, "xargs -P2")],
    rounds=3,
)

# W11-W12: memory over many commands, with the reports written. Each command's
# record (and its kept output) is spooled to a temporary file as it is reported,
# and the reports are streamed from it at the end: peak memory should grow with
# collection alone. The reports are checked after each run.
REPORT_ARGS = ("--junitxml", "out/junit.xml", "--batch-json", "out/results.json")


def _reports_complete(commands: str, output_bytes: int = 0) -> Callable[[Path, dict[str, int]], str | None]:
    """A check that both reports hold one result per command (with its output)."""

    def verify(cwd: Path, sizes: dict[str, int]) -> str | None:
        import xml.etree.ElementTree as ET

        expected = sizes[commands]
        cases = 0
        try:
            for _event, element in ET.iterparse(cwd / "out" / "junit.xml"):
                if element.tag == "testcase":
                    cases += 1
                    element.clear()
            with open(cwd / "out" / "results.json", "rb") as f:
                data = json.load(f)
        except (OSError, ET.ParseError, ValueError) as exc:
            return f"reports unreadable: {exc}"
        results = data["results"]
        if cases != expected or len(results) != expected or data["summary"]["successful"] != expected:
            return f"reports incomplete: {cases} testcases, {len(results)} results, expected {expected}"
        if output_bytes and any(len(r["stdout"]) != output_bytes for r in results):
            return "JSON results lack some command's output"
        (cwd / "out" / "results.json").unlink()
        return None

    return verify


def _with_reports(*extra: str, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    return _pytest(*REPORT_ARGS, *extra, file=file)


# The foundation's floor under -n 2: the same number of Python tests, run by
# pytest and pytest-xdist without this plugin (-p no:batchrunner), with the same
# --junitxml. "empty" tests do nothing; "sh -c" tests run the command the way a
# hand-written test would. What pytest and xdist cost per item is paid by every
# variant that runs one item per command, whatever the item does.
def _python_tests(count: int, body: str) -> str:
    return (
        "import subprocess\n\nimport pytest\n\n\n"
        f"@pytest.mark.parametrize('i', range({count}))\n"
        f"def test_command(i):\n    {body}\n"
    )


RUN_TRUE = ("subprocess.run(['/bin/sh', '-c', 'true'], check=True, stdin=subprocess.DEVNULL, "
            "capture_output=True, start_new_session=True)")


def _floor(file: str) -> Callable[[dict[str, int]], list[str]]:
    return _pytest("-n", "2", "-p", "no:batchrunner", "--junitxml", "out/junit.xml", file=file)


W11 = Workload(
    key="W11",
    title="100,000 lines of `true` with `--junitxml` and `--batch-json`: memory and time at scale "
          "(and 10,000 lines, to see how peak memory grows)",
    sizes={"lines": 100_000, "small": 10_000},
    quick_sizes={"lines": 2_000, "small": 200},
    files=lambda s: {"w.batch": _lines("true", s["lines"]), "small.batch": _lines("true", s["small"]),
                     "test_empty.py": _python_tests(s["lines"], "pass"),
                     "test_sh.py": _python_tests(s["lines"], RUN_TRUE)},
    variants=[
        Variant("xargs -P1", _xargs(1)),
        Variant("xargs -P2", _xargs(2)),
        Variant("floor: pytest -n 2, empty Python tests, no plugin", _floor("test_empty.py"), _passed("lines"),
                ref="xargs -P2"),
        Variant("floor: pytest -n 2, Python tests running sh -c true, no plugin", _floor("test_sh.py"),
                _passed("lines"), ref="xargs -P2"),
        Variant("pytest --collect-only", _pytest("--collect-only"), lambda s: rf"\b{s['lines']} tests collected\b"),
        Variant("pytest in-process", _with_reports(), _passed("lines"), ref="xargs -P1",
                verify=_reports_complete("lines")),
        Variant("pytest -n 2", _with_reports("-n", "2"), _passed("lines"), ref="xargs -P2",
                verify=_reports_complete("lines")),
        Variant("pytest --collect-only, small", _pytest("--collect-only", file="small.batch"),
                lambda s: rf"\b{s['small']} tests collected\b"),
        Variant("pytest in-process, small", _with_reports(file="small.batch"), _passed("small"),
                verify=_reports_complete("small")),
        Variant("pytest -n 2, small", _with_reports("-n", "2", file="small.batch"), _passed("small"),
                verify=_reports_complete("small")),
    ],
    targets=[
        Target("pytest in-process", "rss", 400.0),
        Target("pytest -n 2", "rss", 400.0),
        Target("pytest in-process", "wall", 1.5, "xargs -P1"),
        Target("pytest -n 2", "wall", 2.0, "xargs -P2"),
    ],
    rounds=1,
)

W12_SMALL, W12_LARGE = 50 * 1024, 1024 * 1024  # bytes each command prints (under --batch-capture-bytes)


def _printing(size: int) -> str:
    return f"head -c {size} /dev/zero | tr '\\0' x"


W12 = Workload(
    key="W12",
    title="2,000 commands printing 50 KB each, 300 printing 1 MB, with both reports: peak memory above "
          "the same number of `true`",
    sizes={"small": 2000, "large": 300},
    quick_sizes={"small": 200, "large": 30},
    files=lambda s: {
        "small.batch": _lines(_printing(W12_SMALL), s["small"]),
        "small-true.batch": _lines("true", s["small"]),
        "large.batch": _lines(_printing(W12_LARGE), s["large"]),
        "large-true.batch": _lines("true", s["large"]),
    },
    variants=[
        Variant("pytest, true x small", _with_reports(file="small-true.batch"), _passed("small"),
                verify=_reports_complete("small")),
        Variant("pytest, 50 KB x small", _with_reports(file="small.batch"), _passed("small"),
                verify=_reports_complete("small", W12_SMALL)),
        Variant("pytest, true x large", _with_reports(file="large-true.batch"), _passed("large"),
                verify=_reports_complete("large")),
        Variant("pytest, 1 MB x large", _with_reports(file="large.batch"), _passed("large"),
                verify=_reports_complete("large", W12_LARGE)),
        Variant("pytest -n 2, true x small", _with_reports("-n", "2", file="small-true.batch"), _passed("small"),
                verify=_reports_complete("small")),
        Variant("pytest -n 2, 50 KB x small", _with_reports("-n", "2", file="small.batch"), _passed("small"),
                verify=_reports_complete("small", W12_SMALL)),
    ],
    targets=[
        Target("pytest, 50 KB x small", "rss", 60.0, "pytest, true x small"),
        Target("pytest, 1 MB x large", "rss", 60.0, "pytest, true x large"),
        Target("pytest -n 2, 50 KB x small", "rss", 60.0, "pytest -n 2, true x small"),
    ],
    rounds=2,
)

# W6-W10: the `batchrunner` command against the original BatchRunner's, given
# with --original PATH (its batchrunner.py, from github.com/DonkRonk17/BatchRunner;
# not part of this repository). Both run with their defaults (verbose).
ORIGINAL: dict[str, str] = {}


def _original(*extra: str, file: str = "w.txt") -> Callable[[dict[str, int]], list[str]]:
    return lambda s: [PY, ORIGINAL["script"], "-f", file, *extra]


def _batchrunner(*extra: str, file: str = "w.txt") -> Callable[[dict[str, int]], list[str]]:
    return lambda s: [PY, "-m", "pytest_batchrunner", "-f", file, *extra]


def _all_passed(s: dict[str, int]) -> str:
    return r"Success Rate: 100\.0%"


def _versus_original(key: str, title: str, line: str, count: int, quick: int, parallel: bool, rounds: int) -> Workload:
    variants = [Variant("original", _original(), _all_passed), Variant("batchrunner", _batchrunner(), _all_passed, ref="original")]
    targets = [Target("batchrunner", "wall", 1.0, "original")]
    if parallel:
        variants += [
            Variant("original --parallel", _original("--parallel"), _all_passed),
            Variant("batchrunner --parallel", _batchrunner("--parallel"), _all_passed, ref="original --parallel"),
        ]
        targets.append(Target("batchrunner --parallel", "wall", 1.0, "original --parallel"))
    return Workload(
        key=key, title=title, sizes={"lines": count}, quick_sizes={"lines": quick},
        files=lambda s: {"w.txt": _lines(line, s["lines"])}, variants=variants, targets=targets, rounds=rounds,
    )


W6 = _versus_original("W6", "`batchrunner` vs the original: 10 lines of `echo hello` (start-up)",
                      "echo hello", 10, 10, parallel=True, rounds=10)
W7 = Workload(
    key="W7",
    title="`batchrunner` vs the original: 10 lines of `sleep 0.5`, `--parallel` (the API issue's example)",
    sizes={"lines": 10},
    quick_sizes={"lines": 10},
    files=lambda s: {"w.txt": _lines("sleep 0.5", s["lines"])},
    variants=[
        Variant("original --parallel", _original("--parallel"), _all_passed),
        Variant("batchrunner --parallel", _batchrunner("--parallel"), _all_passed, ref="original --parallel"),
    ],
    targets=[Target("batchrunner --parallel", "wall", 1.0, "original --parallel"), Target("batchrunner --parallel", "wall", 1.0)],
    rounds=5,
)
W8 = _versus_original("W8", "`batchrunner` vs the original: 1,000 lines of `true` (per-command overhead)",
                      "true", 1000, 100, parallel=True, rounds=3)
W9 = _versus_original("W9", "`batchrunner` vs the original: 50 lines of `python -S -c pass` (CPU-bound commands)",
                      f"{PY} -S -c pass", 50, 10, parallel=True, rounds=5)
W10 = _versus_original("W10", "`batchrunner` vs the original: 20 lines of `sleep 0.1` (waiting commands)",
                       "sleep 0.1", 20, 5, parallel=False, rounds=3)

# W13: a second run learns from the first (pytest's cache): longest first.
W13_SHORT, W13_LONG = 0.2, 2.0  # seconds


def _w13_lines(s: dict[str, int]) -> str:
    return _lines(f"sleep {W13_SHORT}", s["short"]) + _lines(f"sleep {W13_LONG:g}", s["long"])


def _longest_first_ideal(s: dict[str, int], slots: int = 4) -> float:
    """The wall time of the longest-first schedule of W13's commands over *slots*, with no overhead."""
    loads = [0.0] * slots
    for duration in sorted([W13_SHORT] * s["short"] + [W13_LONG] * s["long"], reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def _pytest_cached(cache: str, *extra: str, file: str = "w.batch") -> Callable[[dict[str, int]], list[str]]:
    # pytest's cache on (its own directory per variant): the history is what W13 measures.
    argv = [a for a in PYTEST if a != "no:cacheprovider"]
    argv.remove("-p")
    return lambda s: [*argv, file, "-o", f"cache_dir=.cache-{cache}", *extra]


W13_VARIANTS = {
    "jobs": ("--batch-jobs", "4"),
    "n4": ("-n", "4"),
}
W13 = Workload(
    key="W13",
    title="24 x `sleep 0.2` then 2 x `sleep 2`, 4 at a time, second run: longest first (ideal 2.2 s)",
    sizes={"short": 24, "long": 2},
    quick_sizes={"short": 8, "long": 1},
    files=lambda s: {"w.batch": _w13_lines(s)},
    variants=[
        Variant("xargs -P4 (file order)", _xargs(4), ref="ideal"),
        Variant("pytest --batch-jobs 4 --batch-order file", _pytest("--batch-jobs", "4", "--batch-order", "file"),
                lambda s: rf"\b{s['short'] + s['long']} passed\b", ref="ideal"),
        Variant("pytest --batch-jobs 4, second run", _pytest_cached("jobs", *W13_VARIANTS["jobs"]),
                lambda s: rf"\b{s['short'] + s['long']} passed\b", ref="ideal"),
        Variant("pytest -n 4 --batch-order file", _pytest("-n", "4", "--batch-order", "file"),
                lambda s: rf"\b{s['short'] + s['long']} passed\b", ref="ideal"),
        Variant("pytest -n 4, second run", _pytest_cached("n4", *W13_VARIANTS["n4"]),
                lambda s: rf"\b{s['short'] + s['long']} passed\b", ref="ideal"),
    ],
    targets=[
        Target("pytest --batch-jobs 4, second run", "wall", 1.10, "ideal"),
        Target("pytest -n 4, second run", "wall", 1.10, "ideal"),
    ],
    rounds=3,
    ideal=_longest_first_ideal,
    # The first run, which fills each variant's history.
    prime=lambda s: [_pytest_cached(cache, *extra)(s) for cache, extra in W13_VARIANTS.items()],
)


# W14: parallel retries. Every command fails, so both exit with status 1: the
# wrapper turns exactly that status into 0 (anything else still counts as an error).
def _failing(argv: Callable[[dict[str, int]], list[str]]) -> Callable[[dict[str, int]], list[str]]:
    return lambda s: ["sh", "-c", '"$@"; [ $? -eq 1 ]', "sh", *argv(s)]


def _all_failed(s: dict[str, int]) -> str:
    return rf"Failed: {s['lines']}\n(.*\n)*.*Success Rate: 0\.0%"


_RETRY = ("--parallel", "--retries", "1", "--retry-delay", "1.0")
_TIMEOUT = (*_RETRY, "--timeout", "0.5")
W14 = Workload(
    key="W14",
    title="`batchrunner` vs the original: parallel retries, 5 failing commands, 1 retry 1 s later (and with a 0.5 s timeout)",
    sizes={"lines": 5},
    quick_sizes={"lines": 5},
    files=lambda s: {"w.txt": _lines("exit 1", s["lines"]), "t.txt": _lines("sleep 5", s["lines"])},
    variants=[
        Variant("original, retry", _failing(_original(*_RETRY)), _all_failed),
        Variant("batchrunner, retry", _failing(_batchrunner(*_RETRY)), _all_failed, ref="original, retry"),
        Variant("original, timeout + retry", _failing(_original(*_TIMEOUT, file="t.txt")), _all_failed),
        Variant("batchrunner, timeout + retry", _failing(_batchrunner(*_TIMEOUT, file="t.txt")), _all_failed,
                ref="original, timeout + retry"),
    ],
    targets=[
        Target("batchrunner, retry", "wall", 1.2, "original, retry"),
        Target("batchrunner, timeout + retry", "wall", 1.2, "original, timeout + retry"),
    ],
    rounds=5,
)

# W13 five times over: the same schedule, with pytest's and xdist's start-up (fixed) a fifth of the share.
W13L = replace(
    W13,
    key="W13L",
    title="W13 five times over: 120 x `sleep 0.2` then 10 x `sleep 2`, 4 at a time, second run (ideal 11.0 s)",
    sizes={"short": 120, "long": 10},
    quick_sizes={"short": 40, "long": 5},
)

# W15: a long command first must not hold the other slots back while it is reported (head-of-line wait).
W15_LONG, W15_SHORT = 10, 0.1  # seconds


def _w15_ideal(s: dict[str, int], slots: int = 3) -> float:
    """File order over *slots*, no overhead: the long command in one slot, the short ones shared by all."""
    loads = [0.0] * slots
    for duration in [W15_LONG] + [W15_SHORT] * s["short"]:
        loads[loads.index(min(loads))] += duration
    return max(loads)


W15 = Workload(
    key="W15",
    title="`sleep 10` then 300 x `sleep 0.1`, 3 at a time: no slot waits behind the long command",
    sizes={"short": 300},
    quick_sizes={"short": 60},
    files=lambda s: {"w.batch": f"sleep {W15_LONG}\n" + _lines(f"sleep {W15_SHORT}", s["short"])},
    variants=[
        Variant("xargs -P3", _xargs(3), ref="ideal"),
        Variant("GNU parallel -j3", _parallel(3), ref="xargs -P3"),
        Variant("pytest --batch-jobs 3", _pytest("--batch-jobs", "3", "--batch-order", "file"),
                lambda s: rf"\b{s['short'] + 1} passed\b", ref="xargs -P3"),
        Variant("pytest -n 3", _pytest("-n", "3", "--batch-order", "file"),
                lambda s: rf"\b{s['short'] + 1} passed\b", ref="xargs -P3"),
    ],
    targets=[Target("pytest --batch-jobs 3", "wall", 1.05, "xargs -P3")],
    rounds=3,
    ideal=_w15_ideal,
)

WORKLOADS = [W1, W2, W3, W4, W5, W6, W7, W8, W9, W10, W11, W12, W13, W13L, W14, W15]
VERSUS_ORIGINAL = {"W6", "W7", "W8", "W9", "W10", "W14"}


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    workload: str
    variant: str
    round: int
    wall: float
    cpu: float
    rss_mb: float
    others: float | None = None
    repeats: int = 0
    """How many earlier runs of this round were discarded as noisy."""
    error: str | None = None


# Set on some CI and sandbox machines, rare on a user's: without bytecode caching
# pytest recompiles and re-rewrites its plugins on every start (~1 s here), and
# unbuffered output turns every progress character into a write(2).
UNUSUAL_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")


def clean_env() -> dict[str, str]:
    """Our environment without settings that would change how pytest or Python run."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COV_CORE_")) and k not in UNUSUAL_ENV}
    env["PARALLEL_SHELL"] = "/bin/sh"
    return env


def _gnu_time() -> str | None:
    """The path of GNU time, if installed (``apt-get install time``)."""
    path = "/usr/bin/time"
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in version.stdout + version.stderr else None


GNU_TIME = _gnu_time()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds() -> float | None:
    """CPU seconds used by everything on the machine since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def others_load(seconds: float = 0.5) -> float | None:
    """Cores used by other processes over the next *seconds* (we sleep meanwhile)."""
    before = busy_seconds()
    time.sleep(seconds)
    after = busy_seconds()
    return None if before is None or after is None else max(0.0, (after - before) / seconds)


def wait_for_quiet(max_cores: float, max_wait: float) -> None:
    """Wait until other processes use at most *max_cores*, for at most *max_wait* seconds."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        load = others_load()
        if load is None or load <= max_cores:
            return


def is_noisy(others: float | None, wall: float, max_cores: float) -> bool:
    """Whether other processes used more than *max_cores* during a run.

    Less than 2 clock ticks of their CPU is ignored: below ``/proc/stat``'s resolution.
    """
    return others is not None and others > max_cores and others * wall > 2 / _CLK_TCK


@dataclass
class Measurement:
    wall: float
    cpu: float
    """User + system seconds of the measured process tree."""
    rss_mb: float
    others: float | None
    """Cores used on average by everything else on the machine during the run (noise), if known."""
    status: int
    stdout: str
    stderr: str


def measure(argv: list[str], cwd: Path, env: dict[str, str], keep_stdout: bool) -> Measurement:
    """Run *argv* and measure it; stdout is kept only if *keep_stdout*, stderr's tail always.

    Peak RSS comes from GNU time's ``%M`` when it is installed. Taken from our
    own ``wait4``, it could not go below this harness's RSS: Linux carries the
    parent's high-water mark through fork and exec into the child's maxrss.
    GNU time is small, so its floor is about 1 MB.
    """
    out_path, err_path, rss_path = cwd / ".stdout", cwd / ".stderr", cwd / ".maxrss"
    if GNU_TIME:
        rss_path.unlink(missing_ok=True)
        argv = [GNU_TIME, "-o", str(rss_path), "-f", "%M", *argv]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy_before = busy_seconds()
        t0 = time.perf_counter()
        # Its own session, so that a hung run is killed with all its processes.
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out if keep_stdout else subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        timer = threading.Timer(RUN_TIMEOUT, _killpg, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _killpg(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        busy_after = busy_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen from waiting again
    cpu = usage.ru_utime + usage.ru_stime
    maxrss_kib = usage.ru_maxrss
    if GNU_TIME:
        try:
            # The last line: GNU time may write "Command exited with non-zero status N" before it.
            maxrss_kib = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    rss_mb = maxrss_kib * 1024 / 1e6  # Linux reports KiB; MB here are 10^6 bytes, as in the targets
    stdout = out_path.read_text(errors="replace") if keep_stdout else ""
    stderr = err_path.read_text(errors="replace")[-2000:]
    others = None
    if busy_before is not None and busy_after is not None:
        # /proc/stat counts in clock ticks (10 ms): clamp the rounding below zero.
        others = max(0.0, (busy_after - busy_before - cpu) / wall)
    return Measurement(wall, cpu, rss_mb, others, proc.returncode, stdout, stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def check(variant: Variant, sizes: dict[str, int], status: int, stdout: str, stderr: str) -> str | None:
    """Why this run does not count (it did not do its work), or None."""
    if status != 0:
        return f"exit status {status}: {(stderr or stdout)[-500:].strip()}"
    if variant.expect is not None:
        pattern = variant.expect(sizes)
        if not re.search(pattern, stdout, re.MULTILINE):
            return f"stdout does not match {pattern!r}: {stdout[-500:].strip()}"
    return None


def prepare(root: Path, workload: Workload, sizes: dict[str, int]) -> Path:
    wdir = root / workload.key
    wdir.mkdir()
    (wdir / "pytest.ini").write_text("[pytest]\n")
    for name, text in workload.files(sizes).items():
        (wdir / name).write_text(text)
    return wdir


def warm_up(root: Path, env: dict[str, str]) -> None:
    """Run each tool once, untimed, so that the first timed run does not pay for cold caches."""
    wdir = root / "warmup"
    wdir.mkdir()
    (wdir / "pytest.ini").write_text("[pytest]\n")
    (wdir / "w.batch").write_text("true\ntrue\n")
    for argv in ([*PYTEST, "w.batch"], [*PYTEST, "w.batch", "-n", "2"], _xargs(1)({}),
                 _parallel(1)({}), _threads(2)({})):
        measure(argv, wdir, env, keep_stdout=False)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    workload: Workload
    variant: Variant
    runs: list[Run] = field(default_factory=list)

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.error is None]

    def median(self, metric: str) -> float | None:
        values = [getattr(r, metric) for r in self.ok_runs()]
        return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "error" if value is None else f"{value:.{digits}f}"


def reference_value(rows: dict[tuple[str, str], Row], workload: Workload, sizes: dict[str, int],
                    ref: str, metric: str) -> float | None:
    if ref == "ideal":
        return workload.ideal(sizes) if workload.ideal else None
    row = rows.get((workload.key, ref))
    return row.median(metric) if row else None


def _ref_name(ref: str, workload: Workload, sizes: dict[str, int]) -> str:
    if ref == "ideal" and workload.ideal:
        return f"ideal {workload.ideal(sizes):g} s"
    return ref


def results_table(rows: dict[tuple[str, str], Row], workloads: list[Workload], sizes_of: dict[str, dict[str, int]]) -> list[str]:
    head = ["Workload", "Variant", "Wall s (median)", "Wall s (min-max)", "CPU s", "Peak RSS MB", "Ratio (wall)",
            "Others' load"]
    body = []
    for w in workloads:
        sizes = sizes_of[w.key]
        for v in w.variants:
            row = rows[(w.key, v.label)]
            walls = [r.wall for r in row.ok_runs()]
            spread = f"{min(walls):.2f}-{max(walls):.2f}" if walls else "error"
            ratio = ""
            if v.ref:
                base, mine = reference_value(rows, w, sizes, v.ref, "wall"), row.median("wall")
                if base and mine is not None:
                    ratio = f"{mine / base:.2f}x {_ref_name(v.ref, w, sizes)}"
            others = [r.others for r in row.ok_runs() if r.others is not None]
            load = f"{statistics.median(others):.2f}" if others else "?"
            body.append([w.key, v.label, _fmt(row.median("wall")), spread, _fmt(row.median("cpu")),
                         _fmt(row.median("rss_mb"), 1), ratio, load])
    return markdown_table(head, body)


def evaluate_targets(rows: dict[tuple[str, str], Row], workloads: list[Workload],
                     sizes_of: dict[str, dict[str, int]]) -> list[tuple[str, str, str, str, str]]:
    """(workload, what, measured, target, verdict) for every target of the selected workloads."""
    out = []
    for w in workloads:
        sizes = sizes_of[w.key]
        for t in w.targets:
            mine = rows[(w.key, t.variant)].median("rss_mb" if t.metric == "rss" else "wall")
            unit = "MB" if t.metric == "rss" else "s"
            what = f"{t.variant}: {'peak RSS' if t.metric == 'rss' else 'wall time'}"
            if t.ref is None:
                measured = _fmt(mine, 1 if unit == "MB" else 2) + f" {unit}"
                target = f"<= {t.limit:g} {unit}"
                value = mine
            elif t.metric == "rss":
                base = rows[(w.key, t.ref)].median("rss_mb")
                value = mine - base if (mine is not None and base is not None) else None
                measured = "error" if value is None else f"{mine:.1f} MB, {value:+.1f} MB"
                target = f"<= {t.ref} + {t.limit:g} MB"
            else:
                base = reference_value(rows, w, sizes, t.ref, "wall")
                value = mine / base if (mine is not None and base) else None
                measured = "error" if value is None else f"{value:.2f}x"
                target = f"<= {t.limit:g}x {_ref_name(t.ref, w, sizes)}"
            verdict = "error" if value is None else ("PASS" if value <= t.limit else "MISS")
            out.append((w.key, what, measured, target, verdict))
    return out


def markdown_table(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(n) for c, n in zip(cells, widths)) + " |"

    return [line(head), "|" + "|".join("-" * (n + 2) for n in widths) + "|", *(line(r) for r in body)]


# --------------------------------------------------------------------------- machine


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def snapshot(rev: str, dest: Path) -> str:
    """Extract ``pytest_batchrunner/`` at *rev* into *dest*; return the short commit.

    The measured runs then import it from ``PYTHONPATH``, ahead of the editable
    install: numbers of a committed revision, whatever is being edited meanwhile.
    """
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        raise SystemExit(f"--rev {rev}: not a commit of {REPO}: {commit.stderr.strip()}")
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "pytest_batchrunner"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit.stdout.strip()


def imported_from(env: dict[str, str]) -> str:
    """Where the measured runs import pytest_batchrunner from."""
    done = subprocess.run([PY, "-c", "import pytest_batchrunner; print(pytest_batchrunner.__file__)"],
                          env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(), check=False)
    return str(Path(done.stdout.strip()).parent) if done.returncode == 0 else f"import failed: {done.stderr[-300:]}"


def code_description(rev_commit: str | None) -> str:
    if rev_commit:
        return f"git {rev_commit}, committed code only (--rev)"
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "pytest_batchrunner"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"working tree at git {commit}" + (", with uncommitted changes in pytest_batchrunner/" if dirty else "")


def machine_info() -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return [
        ("Date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("CPU", f"{cpu}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable)"),
        ("Memory", mem),
        ("OS", f"{platform.system()} {platform.release()}; /bin/sh is {os.path.realpath('/bin/sh')}"),
        ("Python", platform.python_version()),
        ("pytest", _dist_version("pytest")),
        ("pytest-xdist", _dist_version("pytest-xdist")),
        ("pytest-timeout / rerunfailures", f"{_dist_version('pytest-timeout')} / {_dist_version('pytest-rerunfailures')}"),
        ("GNU parallel", _first_line(["parallel", "--version"])),
        ("xargs", _first_line(["xargs", "--version"])),
        ("pytest plugins blocked (unrelated, installed here)", ", ".join(BLOCKED) or "none"),
        ("Environment removed", ", ".join(["PYTEST_*", *(k for k in UNUSUAL_ENV if k in os.environ)])),
        ("Peak RSS measured by", "GNU time %M (largest single process of the tree)" if GNU_TIME else
         "wait4 ru_maxrss (no GNU time: values cannot go below the harness's own RSS)"),
    ]


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Workloads:\n" + "\n".join(f"  {w.key}: {w.title}" for w in WORKLOADS))
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds for every workload (default: 5 for W1 and W3, 3 for the others; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 round, smaller workloads: a smoke check, not a measurement")
    parser.add_argument("--only", default=None, metavar="W1,W3", help="run only these workloads")
    parser.add_argument("--markdown", default=None, metavar="FILE",
                        help=f"write the results as markdown; if FILE holds {MARK_START} ... {MARK_END}, "
                             "only that part is replaced")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every run's numbers as JSON")
    parser.add_argument("--rev", default=None, metavar="REV",
                        help="measure pytest_batchrunner/ as committed at REV (e.g. HEAD) instead of the working tree")
    parser.add_argument("--max-noise", type=float, default=0.3, metavar="CORES",
                        help="a run during which other processes used more than CORES cores on average is "
                             "run again (default 0.3)")
    parser.add_argument("--noise-retries", type=int, default=2, metavar="N",
                        help="at most N repeats of a noisy run, each after waiting up to "
                             f"{QUIET_WAIT:g} s for the machine to calm down (default 2; 0: keep every run)")
    parser.add_argument("--noise-budget", type=float, default=120.0, metavar="SECONDS",
                        help="stop repeating noisy runs once waiting and repeating have cost this much in total "
                             "(default 120), so that a busy machine does not make the run endless")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs")
    parser.add_argument("--original", default=None, metavar="PATH",
                        help="the original BatchRunner's batchrunner.py (github.com/DonkRonk17/BatchRunner): "
                             f"runs {', '.join(sorted(VERSUS_ORIGINAL))}, which are skipped without it")
    args = parser.parse_args(argv)
    if args.original is not None:
        if not Path(args.original).is_file():
            parser.error(f"--original: no such file {args.original}")
        ORIGINAL["script"] = str(Path(args.original).resolve())
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.noise_retries < 0:
        parser.error("--noise-retries must be 0 or more")
    if args.only:
        known = {w.key for w in WORKLOADS}
        wanted = [k.strip().upper() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in wanted if k not in known]
        if unknown:
            parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        args.only = wanted
        if args.original is None and set(wanted) & VERSUS_ORIGINAL:
            parser.error(f"--only {','.join(sorted(set(wanted) & VERSUS_ORIGINAL))}: needs --original PATH")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: the running variant was stopped, nothing written", file=sys.stderr)
        return 130


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    workloads = [w for w in WORKLOADS if (not args.only or w.key in args.only)
                 and (args.original is not None or w.key not in VERSUS_ORIGINAL)]
    sizes_of = {w.key: dict(w.quick_sizes if args.quick else w.sizes) for w in workloads}
    rounds_of = {w.key: args.rounds or (1 if args.quick else w.rounds) for w in workloads}
    rows = {(w.key, v.label): Row(w, v) for w in workloads for v in w.variants}
    env = clean_env()
    info = machine_info()
    load_before = _loadavg()
    started = time.perf_counter()
    # Stopped with SIGTERM, end like Ctrl+C: the running variant's process group is killed.
    signal.signal(signal.SIGTERM, _interrupt)

    with tempfile.TemporaryDirectory(prefix="batchrunner-bench-") as tmp:
        root = Path(tmp)
        rev_commit = None
        if args.rev:
            code = root / "code"
            rev_commit = snapshot(args.rev, code)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
        source = imported_from(env)
        at = next(i for i, (k, _) in enumerate(info) if k == "pytest-xdist") + 1
        info.insert(at, ("pytest-batchrunner", f"{_dist_version('pytest-batchrunner')}: {code_description(rev_commit)}"))
        if args.rev and not source.startswith(str(root)):
            raise SystemExit(f"--rev: the runs would import pytest_batchrunner from {source}, not from the snapshot")
        dirs = {w.key: prepare(root, w, sizes_of[w.key]) for w in workloads}
        for w in workloads:
            for argv in w.prime(sizes_of[w.key]) if w.prime else []:
                primed = measure(argv, dirs[w.key], env, keep_stdout=False)
                if primed.status != 0:
                    raise SystemExit(f"{w.key}: the first run failed: {primed.stderr}")
        if not args.no_warmup:
            print("warming up ...", file=sys.stderr, flush=True)
            warm_up(root, env)
        budget = args.noise_budget
        for rnd in range(max(rounds_of.values())):
            for w in workloads:
                if rnd >= rounds_of[w.key]:
                    continue
                # Rotate the order each round: no variant always runs first, or right after another workload.
                shift = rnd % len(w.variants)
                for v in w.variants[shift:] + w.variants[:shift]:
                    sizes = sizes_of[w.key]
                    for repeat in range(args.noise_retries + 1):
                        if repeat:
                            t = time.perf_counter()
                            wait_for_quiet(args.max_noise, min(QUIET_WAIT, budget))
                            budget -= time.perf_counter() - t
                        m = measure(v.argv(sizes), dirs[w.key], env, v.expect is not None)
                        if repeat:
                            budget -= m.wall
                        error = check(v, sizes, m.status, m.stdout, m.stderr)
                        if error is None and v.verify is not None:
                            error = v.verify(dirs[w.key], sizes)
                        again = (is_noisy(m.others, m.wall, args.max_noise) and not error
                                 and repeat < args.noise_retries and budget > 0)
                        others = "?" if m.others is None else f"{m.others:.2f}"
                        print(f"round {rnd + 1}/{rounds_of[w.key]}  {w.key}  {v.label:<40} {m.wall:7.2f} s  "
                              f"{m.cpu:6.2f} CPU s  {m.rss_mb:7.1f} MB  others {others} cores"
                              + (f"  ERROR {error}" if error else "") + ("  (noisy: again)" if again else ""),
                              file=sys.stderr, flush=True)
                        if not again:
                            break
                    rows[(w.key, v.label)].runs.append(
                        Run(w.key, v.label, rnd + 1, m.wall, m.cpu, m.rss_mb, m.others, repeat, error))

    elapsed = time.perf_counter() - started
    info.append(("Load average before / after", f"{load_before} / {_loadavg()}"))
    info.append(("Harness run time", f"{elapsed:.0f} s"))
    report = render(args, command, info, rows, workloads, sizes_of, rounds_of)
    print("\n".join(report))
    if args.markdown:
        write_markdown(Path(args.markdown), report)
        print(f"\nwrote {args.markdown}", file=sys.stderr)
    if args.json:
        data = {"command": command, "machine": dict(info), "sizes": sizes_of,
                "runs": [r.__dict__ for row in rows.values() for r in row.runs]}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    errors = [r for row in rows.values() for r in row.runs if r.error]
    return 1 if errors else 0


def render(args: argparse.Namespace, command: str, info: list[tuple[str, str]], rows: dict[tuple[str, str], Row],
           workloads: list[Workload], sizes_of: dict[str, dict[str, int]], rounds_of: dict[str, int]) -> list[str]:
    out = [f"Command: `{command}`", ""]
    out += markdown_table(["Machine", ""], [list(kv) for kv in info])
    out += ["", "Workloads (rounds): " + "; ".join(
        f"{w.key} ({rounds_of[w.key]}): " + ", ".join(f"{k}={v:,}" for k, v in sizes_of[w.key].items())
        for w in workloads), ""]
    out += results_table(rows, workloads, sizes_of)
    targets = evaluate_targets(rows, workloads, sizes_of)
    if targets:
        out += ["", *markdown_table(["Workload", "Target of", "Measured", "Target", "Result"], [list(t) for t in targets])]
    notes = []
    if args.quick:
        notes.append("`--quick`: one round of smaller workloads. A smoke check: the verdicts do not apply to these sizes.")
    w2 = rows.get(("W2", "pytest --batch-jobs 4"))
    if w2 and w2.median("wall") is not None:
        sequential = sizes_of["W2"]["lines"] * SLEEP
        if w2.median("wall") > 0.8 * sequential:
            notes.append(f"`--batch-jobs 4` took {w2.median('wall'):.2f} s on W2, about the {sequential:g} s of running "
                         "the lines one after another: in this build `--batch-jobs` runs commands sequentially.")
    runs = [r for row in rows.values() for r in row.runs]
    repeated = sum(r.repeats for r in runs)
    noisy = [r for r in runs if is_noisy(r.others, r.wall, args.max_noise) and not r.error]
    notes.append(f"Others' load: cores used on average by other processes during a variant's runs (median). "
                 f"{repeated} runs were repeated because others used more than {args.max_noise:g} cores during "
                 f"them; {len(noisy)} of the {len(runs)} runs kept were still above that.")
    errors = [r for r in runs if r.error]
    for r in errors:
        notes.append(f"ERROR {r.workload} {r.variant} round {r.round}: {r.error}")
    if notes:
        out += ["", *(f"- {n}" for n in notes)]
    return out


def write_markdown(path: Path, report: list[str]) -> None:
    block = "\n".join([MARK_START, *report, MARK_END])
    if path.exists():
        text = path.read_text()
        if MARK_START in text and MARK_END in text:
            before, rest = text.split(MARK_START, 1)
            after = rest.split(MARK_END, 1)[1]
            path.write_text(before + block + after)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
