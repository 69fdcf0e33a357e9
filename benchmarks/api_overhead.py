"""What one ``BatchRunner.run()`` costs in a running program, beside the original's.

    python benchmarks/api_overhead.py [--original PATH] [--rounds N]

Build and test orchestration scripts call ``run()`` from a program that has
already imported everything, often several times. This times ``run()`` in one
warm process (after an untimed first call), ``verbose=False``, for one
``echo``, ten ``echo`` and 100 ``true``, sequential and parallel; the overhead
is the time beyond what the commands themselves take, which is what the issue's
"under 0.1 s for one ``echo``" is about. With ``--original PATH`` (the original
BatchRunner's ``batchrunner.py``, github.com/DonkRonk17/BatchRunner) the same
calls run on the original too, interleaved round by round, and the table gives
the ratio. Medians of the rounds.

A benchmark, not a test: the exit status is 1 only if a run did not succeed.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

CASES = [
    ("1 x echo, sequential", ["echo hello"], "sequential"),
    ("10 x echo, sequential", ["echo hello"] * 10, "sequential"),
    ("10 x echo, parallel", ["echo hello"] * 10, "parallel"),
    ("100 x true, sequential", ["true"] * 100, "sequential"),
    ("100 x true, parallel", ["true"] * 100, "parallel"),
]


def load_original(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("original_batchrunner", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--original: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(make: Callable[[list[str], str], Any], commands: list[str], mode: str) -> float:
    runner = make(commands, mode)
    start = time.perf_counter()
    _, summary = runner.run()
    elapsed = time.perf_counter() - start
    if summary["failed"]:
        raise SystemExit(f"a command failed: {summary}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", metavar="PATH", help="the original BatchRunner's batchrunner.py")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per case (default 20)")
    args = parser.parse_args(argv)

    from pytest_batchrunner import BatchRunner

    runners: dict[str, Callable[[list[str], str], Any]] = {
        "pytest-batchrunner": lambda commands, mode: BatchRunner(commands, mode=mode, verbose=False),
    }
    if args.original:
        original = load_original(args.original)
        runners["original"] = lambda commands, mode: original.BatchRunner(commands, mode=mode, verbose=False)

    times: dict[tuple[str, str], list[float]] = {}
    for make in runners.values():  # warm up: imports, the guardian, first-call caches
        timed(make, ["true"], "sequential")
    for _ in range(args.rounds):
        for label, commands, mode in CASES:
            for name, make in runners.items():
                times.setdefault((label, name), []).append(timed(make, commands, mode))

    command = shlex.join(["python", "benchmarks/api_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"Command: `{command}` ({args.rounds} rounds, medians)\n")
    head = ["Case", *(f"{name} (ms)" for name in runners)] + (["Ratio"] if "original" in runners else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for label, _, _ in CASES:
        medians = {name: statistics.median(times[(label, name)]) for name in runners}
        row = [label, *(f"{m * 1000:.1f}" for m in medians.values())]
        if "original" in runners:
            row.append(f"{medians['pytest-batchrunner'] / medians['original']:.2f}x")
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
