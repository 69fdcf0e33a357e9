"""Where the time of a pytest-batchrunner run goes: a profile, and floors to compare with.

    python benchmarks/profile_pytest.py [--workload W1|W4|W5] [--lines N] [--top 25] [--jobs N] [--rev REV]
    python benchmarks/profile_pytest.py --floor [--workload W1|W4] [--lines N] [--repeat 5] [--rev REV]

Default mode: runs ``python -m cProfile -m pytest w.batch`` (W1: N lines of
``true``; W4: the same with ``--collect-only``; W5: with ``-n 2``, where only
the xdist controller is profiled) with the options and environment
of ``benchmarks/run.py``, in a temporary directory holding an empty
``pytest.ini``, and prints a breakdown by phase (the cumulative time of the
functions that own each phase, in seconds, percent and microseconds per item;
phases nest, so percentages do not add up), then the top functions by
cumulative and by own time. cProfile's timer is wall-clock, so time spent
waiting for the shell counts; its overhead inflates pure-Python costs (often
1.5-2x), so read shares here and absolute times from ``--floor`` or ``run.py``.

``--floor``: no profiler. Times the same workload run by a ladder of stripped
down runners, so that each step's difference is the cost of one layer:

1. pytest startup (a 1-line file, ``--collect-only``);
2. bare pytest items from a 10-line conftest collector (``runtest`` does nothing),
   our plugin disabled: pytest's own per-item cost;
3. the same items running ``subprocess.run(line, shell=True)``: plus a plain spawn;
4. the same items running our ``process.run_command(line)``: plus our process layer;
5. this plugin: plus our item (environment, settings) and reporting hooks;

and ``xargs -P1`` for the command's own cost. For W4 the items are only collected.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import PY, PYTEST, clean_env, imported_from, measure, snapshot

# (label, path suffix of the file, function name), in display order; indentation shows nesting.
PHASES = [
    ("pytest session (wrap_session)", "_pytest/main.py", "wrap_session"),
    ("  collection (perform_collect)", "_pytest/main.py", "perform_collect"),
    ("    BatchFile.collect", "pytest_batchrunner/plugin/items.py", "collect"),
    ("      parse_batch_text", "pytest_batchrunner/batchfile.py", "parse_batch_text"),
    ("        LineSettings.over (per-line defaults merge)", "pytest_batchrunner/batchfile.py", "over"),
    ("      CommandItem.from_parent (pytest Node + our __init__)", "_pytest/nodes.py", "from_parent"),
    ("        CommandItem._apply_settings (markers)", "pytest_batchrunner/plugin/items.py", "_apply_settings"),
    ("    fixtures: reorder_items (pytest core)", "_pytest/fixtures.py", "reorder_items"),
    ("    batchrunner recording: collection_modifyitems", "pytest_batchrunner/plugin/recording.py",
     "pytest_collection_modifyitems"),
    ("    collect-only listing (terminal)", "_pytest/terminal.py", "pytest_collection_finish"),
    ("  run loop (pytest_runtestloop)", "_pytest/main.py", "pytest_runtestloop"),
    ("    per-item protocol (runtestprotocol)", "_pytest/runner.py", "runtestprotocol"),
    ("      call_and_report (setup/call/teardown + report)", "_pytest/runner.py", "call_and_report"),
    ("        CommandItem.runtest", "pytest_batchrunner/plugin/items.py", "runtest"),
    ("          CommandItem.environment (env copy)", "pytest_batchrunner/plugin/items.py", "environment"),
    ("          run_command", "pytest_batchrunner/process/command.py", "run_command"),
    ("            subprocess.Popen._execute_child (spawn)", "subprocess.py", "_execute_child"),
    ("            Pipes.__init__ (pipes, selector, pidfd)", "pytest_batchrunner/process/capture.py", "__init__"),
    ("            wait_exit (the shell runs, output read)", "pytest_batchrunner/process/capture.py", "wait_exit"),
    ("            group_alive (leftover check)", "pytest_batchrunner/process/tree.py", "group_alive"),
    ("            drain", "pytest_batchrunner/process/capture.py", "drain"),
    ("            guardian.register", "pytest_batchrunner/process/guardian.py", "register"),
    ("            guardian.unregister", "pytest_batchrunner/process/guardian.py", "unregister"),
    ("        capture plugin: per-phase suspend/resume", "_pytest/capture.py", "item_capture"),
    ("        logging plugin: per-phase log capture", "_pytest/logging.py", "_runtest_for"),
    ("        pytest_runtest_makereport (report objects)", "_pytest/runner.py", "pytest_runtest_makereport"),
    ("        setup (SetupState)", "_pytest/runner.py", "pytest_runtest_setup"),
    ("        teardown (SetupState)", "_pytest/runner.py", "pytest_runtest_teardown"),
    ("      terminal: logstart", "_pytest/terminal.py", "pytest_runtest_logstart"),
    ("      terminal: logreport", "_pytest/terminal.py", "pytest_runtest_logreport"),
    ("      batchrunner recording: logstart", "pytest_batchrunner/plugin/recording.py", "pytest_runtest_logstart"),
    ("      batchrunner recording: logreport", "pytest_batchrunner/plugin/recording.py", "pytest_runtest_logreport"),
    ("      pytest-timeout protocol hook", "pytest_timeout.py", "pytest_runtest_protocol"),
    ("      pytest-rerunfailures protocol hook", "pytest_rerunfailures.py", "pytest_runtest_protocol"),
    ("  xdist controller: report received (all plugins)", "xdist/dsession.py", "worker_testreport"),
    ("  main thread idle (lock waits: xdist events, job threads)", "~", "<method 'acquire' of '_thread.lock' objects>"),
    ("  execnet: unserialize reports", "execnet/gateway_base.py", "loads_internal"),
    ("  batchrunner terminal summary", "pytest_batchrunner/plugin/recording.py", "pytest_terminal_summary"),
    ("  explicit gc.collect() calls", "~", "<built-in method gc.collect>"),
]

FLOOR_CONFTEST = '''
import subprocess
import pytest

MODE = {mode!r}
if MODE == "run_command":
    from pytest_batchrunner.process.command import run_command


class LineItem(pytest.Item):
    def __init__(self, *, command, **kwargs):
        super().__init__(**kwargs)
        self.command = command

    def runtest(self):
        if MODE == "subprocess":
            assert subprocess.run(self.command, shell=True, capture_output=True).returncode == 0
        elif MODE == "run_command":
            assert run_command(self.command).success


class LinesFile(pytest.File):
    def collect(self):
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            yield LineItem.from_parent(self, name=f"{{line}} ({{number}})", command=line)


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".lines":
        return LinesFile.from_parent(parent, path=file_path)
'''


def make_env(rev: str | None, root: Path) -> dict[str, str]:
    """The environment of run.py; with *rev*, importing pytest_batchrunner as committed at *rev*."""
    env = clean_env()
    if rev:
        commit = snapshot(rev, root / "code")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "code"), env.get("PYTHONPATH")]))
        print(f"pytest_batchrunner at git {commit}, from {imported_from(env)}")
    return env


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    """Cumulative seconds and primitive calls of the functions *name* defined in files ending in *suffix*."""
    seconds, calls = 0.0, 0
    for (filename, _line, func), (cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.replace("\\", "/").endswith(suffix):
            seconds += ct
            calls += cc
    return seconds, calls


def profile(args: argparse.Namespace, lines: int) -> int:
    with tempfile.TemporaryDirectory(prefix="batchrunner-profile-") as tmp:
        wdir = Path(tmp)
        (wdir / "pytest.ini").write_text("[pytest]\n")
        (wdir / "w.batch").write_text("true\n" * lines)
        prof = Path(args.keep).resolve() if args.keep else wdir / "out.prof"
        extra = {"W1": [], "W4": ["--collect-only"], "W5": ["-n", "2"]}[args.workload]
        if args.jobs is not None:
            extra += ["--batch-jobs", str(args.jobs)]
        argv = [PY, "-m", "cProfile", "-o", str(prof), *PYTEST[1:], "w.batch", *extra]
        env = make_env(args.rev, wdir)
        # Once unprofiled, so that bytecode caches are warm.
        subprocess.run([*PYTEST, "w.batch", "--collect-only"], cwd=wdir, env=env, capture_output=True, check=False)
        done = subprocess.run(argv, cwd=wdir, env=env, capture_output=True, text=True, check=False)
        print(f"$ python {' '.join(argv[1:])}   # {lines} lines")
        print("pytest said:", (done.stdout.strip().splitlines() or ["(nothing)"])[-1])
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
            return 1
        stats = pstats.Stats(str(prof))

    total, _ = cumulative(stats, "_pytest/config/__init__.py", "main")
    session, _ = cumulative(stats, "_pytest/main.py", "wrap_session")
    print(f"\npytest main() under the profiler: {total:.2f} s; {lines} items; {total / lines * 1e6:.0f} us per item\n")
    print(f"{'phase':<62} {'seconds':>8} {'%':>6} {'us/item':>8} {'calls':>8}")
    for label, suffix, name in PHASES:
        seconds, calls = cumulative(stats, suffix, name)
        if calls:
            print(f"{label:<62} {seconds:8.3f} {100 * seconds / total:6.1f} {seconds / lines * 1e6:8.0f} {calls:8d}")
    outside = total - session
    print(f"{'outside the session (plugin loading, config)':<62} {outside:8.3f} {100 * outside / total:6.1f}")

    for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(args.top)
        body = buf.getvalue()
        start = body.find("   ncalls")
        print(f"\n=== top {args.top} by {title} ===")
        print(body[start:].rstrip() if start >= 0 else body.rstrip())
    return 0


def floor(args: argparse.Namespace, lines: int) -> int:
    collect = ["--collect-only"] if args.workload == "W4" else []
    with tempfile.TemporaryDirectory(prefix="batchrunner-floor-") as tmp:
        root = Path(tmp)
        env = make_env(args.rev, root)
        ladder: list[tuple[str, Path, list[str]]] = []

        def workdir(name: str, files: dict[str, str]) -> Path:
            d = root / name
            d.mkdir()
            (d / "pytest.ini").write_text("[pytest]\n")
            for fname, text in files.items():
                (d / fname).write_text(text)
            return d

        body = "true\n" * lines
        d = workdir("startup", {"one.batch": "true\n"})
        ladder.append(("1. pytest startup (1 line, --collect-only)", d, [*PYTEST, "one.batch", "--collect-only"]))
        for step, mode, what in (("2", "none", "bare pytest items, runtest does nothing"),
                                 ("3", "subprocess", "bare items + subprocess.run(shell=True)"),
                                 ("4", "run_command", "bare items + our process.run_command")):
            if collect and mode != "none":
                continue
            d = workdir(mode, {"w.lines": body, "conftest.py": FLOOR_CONFTEST.format(mode=mode)})
            ladder.append((f"{step}. {what}", d, [*PYTEST, "-p", "no:batchrunner", "w.lines", *collect]))
        d = workdir("plugin", {"w.batch": body})
        ladder.append(("5. pytest-batchrunner", d, [*PYTEST, "w.batch", *collect]))
        if not collect:
            ladder.append(("   xargs -P1 (the commands alone)", d,
                           ["xargs", "-a", "w.batch", "-d", "\n", "-n", "1", "-P", "1", "/bin/sh", "-c"]))

        for _, d, argv in ladder:  # warm-up: bytecode caches
            measure(argv, d, env, keep_stdout=False)
        walls: dict[str, list[float]] = {label: [] for label, _, _ in ladder}
        rss: dict[str, list[float]] = {label: [] for label, _, _ in ladder}
        for _ in range(args.repeat):
            for label, d, argv in ladder:
                m = measure(argv, d, env, keep_stdout=False)
                if m.status != 0:
                    print(f"{label}: exit status {m.status}\n{m.stderr}")
                    return 1
                walls[label].append(m.wall)
                rss[label].append(m.rss_mb)

    print(f"{args.workload}: {lines} lines of true{' (--collect-only)' if collect else ''}; "
          f"median of {args.repeat} interleaved runs, no profiler\n")
    print(f"{'runner':<50} {'wall s':>7} {'step s':>7} {'us/item':>8} {'peak MB':>8}")
    previous = None
    for label, _, _ in ladder:
        med = statistics.median(walls[label])
        step = "" if previous is None or label.startswith(" ") else f"{med - previous:+7.3f}"
        per_item = "" if previous is None or label.startswith(" ") else f"{(med - previous) / lines * 1e6:8.0f}"
        print(f"{label:<50} {med:7.3f} {step:>7} {per_item:>8} {statistics.median(rss[label]):8.1f}")
        if not label.startswith(" "):
            previous = med
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["W1", "W4", "W5"], default="W1",
                        help="W1: run N lines of true; W4: --collect-only of N lines; W5: N lines under -n 2, "
                             "profiling the controller only (default W1)")
    parser.add_argument("--lines", type=int, default=None, help="default 1000 for W1, 100000 for W4, 5000 for W5")
    parser.add_argument("--top", type=int, default=25, help="functions listed per table")
    parser.add_argument("--jobs", type=int, default=None, help="pass --batch-jobs N to the profiled run")
    parser.add_argument("--keep", default=None, metavar="FILE", help="also save the raw profile here")
    parser.add_argument("--floor", action="store_true", help="time the ladder of stripped-down runners instead")
    parser.add_argument("--rev", default=None, metavar="REV",
                        help="use pytest_batchrunner/ as committed at REV (e.g. HEAD), not the working tree")
    parser.add_argument("--repeat", type=int, default=5, help="runs per runner with --floor (median)")
    args = parser.parse_args(argv)
    lines = args.lines or {"W1": 1000, "W4": 100_000, "W5": 5000}[args.workload]
    if args.floor and args.workload == "W5":
        parser.error("--floor: W1 or W4")
    return floor(args, lines) if args.floor else profile(args, lines)


if __name__ == "__main__":
    sys.exit(main())
