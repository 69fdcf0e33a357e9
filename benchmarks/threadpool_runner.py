"""A plain thread-pool command runner, the baseline the plugin replaces.

It does what the original BatchRunner's parallel mode did: a
``ThreadPoolExecutor`` running ``subprocess.run(line, shell=True,
capture_output=True)`` for each line, keeping every result (and so all output)
in memory. No process groups, no bounded capture, no reports: the least a
Python runner can do per command.

    python benchmarks/threadpool_runner.py FILE [--workers N]

Blank lines and ``#`` comments are skipped. Prints one summary line; exits 1
if any command failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def read_commands(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip() and not line.lstrip().startswith("#")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--workers", type=int, default=10, help="threads (original BatchRunner: 10)")
    args = parser.parse_args(argv)
    commands = read_commands(args.file)
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(lambda c: subprocess.run(c, shell=True, capture_output=True, check=False), commands))
    failed = sum(1 for r in results if r.returncode != 0)
    out_bytes = sum(len(r.stdout) + len(r.stderr) for r in results)
    print(f"{len(results)} commands, {failed} failed, {out_bytes} bytes of output kept")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
