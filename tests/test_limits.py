"""Exhausted limits, for real: ``ulimit -n`` (open files) and the kernel's per-argument limit
(commands over 128 KiB). A clean wait or a clear message, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

from pytest_batchrunner.process.command import run_command

pytestmark = pytest.mark.usefixtures("no_leftovers")


def under_ulimit(limit: str, argv: list[str], cwd) -> subprocess.CompletedProcess[str]:
    """*argv* run under ``ulimit`` *limit* (e.g. ``-n 96``: soft and hard)."""
    script = f"ulimit {limit} && exec \"$@\""
    return subprocess.run(["bash", "-c", script, "bash", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_many_jobs_under_a_low_open_files_limit(pytester: pytest.Pytester, mode: str) -> None:
    (pytester.path / "cmds.batch").write_text("sleep 0.2\n" * 60)
    extra = ["-n", "2"] if mode == "xdist" else []
    done = under_ulimit("-n 96", [sys.executable, "-m", "pytest", "cmds.batch", "-q", "-p", "no:cacheprovider",
                                  "--batch-jobs", "100", *extra], pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 passed" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr and "Too many open files" not in done.stdout


def test_cli_parallel_workers_under_a_low_open_files_limit(tmp_path) -> None:
    (tmp_path / "cmds.txt").write_text("sleep 0.2\n" * 60)
    done = under_ulimit("-n 96", [sys.executable, "-m", "batchrunner", "-f", "cmds.txt", "--parallel",
                                  "--workers", "100", "-q", "-o", "r.json"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["successful"] == 60


# Under ``ulimit -n 64`` the descriptor budget (64 kept free) lets one command run at
# a time per process, however many are asked for at once: the others wait for a
# slot. Each lasts 0.5 s; 1.2 s leaves a wide margin on a loaded machine and is
# still below what the third command would show if its wait counted (1.5 s).
SLOT_WAIT_LIMIT = 1.2


def test_waiting_for_a_descriptor_slot_is_not_run_time(pytester: pytest.Pytester, mode: str) -> None:
    count = 5 if mode == "inprocess" else 8
    (pytester.path / "cmds.batch").write_text(
        "".join(f"sleep 0.5; echo out{i} # batch: timeout=1.6\n" for i in range(count))
    )
    extra = ["-n", "2"] if mode == "xdist" else []
    done = under_ulimit("-n 64", [sys.executable, "-m", "pytest", "cmds.batch", "-q", "-p", "no:cacheprovider",
                                  "--batch-jobs", str(count), "--batch-json=r.json", "--junitxml=j.xml",
                                  "--batch-trace=t.json", *extra], pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{count} passed" in done.stdout
    report = json.loads((pytester.path / "r.json").read_text())
    for i, result in enumerate(report["results"]):
        # Never a false timeout, the output kept, and the duration the command's own.
        assert result["success"] and result["stdout"] == f"out{i}\n", result
        assert 0.45 <= result["duration_ms"] / 1000 < SLOT_WAIT_LIMIT, result
    assert report["summary"]["max_command_duration_ms"] / 1000 < SLOT_WAIT_LIMIT
    times = [float(case.get("time")) for case in ET.parse(pytester.path / "j.xml").iter("testcase")]
    assert len(times) == count and max(times) < SLOT_WAIT_LIMIT, times
    # Each attempt starts on the timeline when its process started: one at a time
    # per process, so a process's bars follow one another and never overlap.
    lanes: dict[object, list[tuple[int, int]]] = defaultdict(list)
    for event in json.loads((pytester.path / "t.json").read_text())["traceEvents"]:
        if event["ph"] == "X":
            lanes[event["pid"]].append((event["ts"], event["dur"]))
    assert sum(map(len, lanes.values())) == count
    for bars in lanes.values():
        bars.sort()
        for (start, length), (next_start, _) in zip(bars, bars[1:]):
            assert next_start >= start + length - 2000, bars


def test_ctrl_c_while_waiting_for_a_descriptor_slot_stops_the_run(pytester: pytest.Pytester) -> None:
    # Under ulimit -n 64 one command runs at a time. The sequential step runs in
    # pytest's main thread; the plain line after it is started ahead in a job
    # slot first (the conftest's slow logstart gives the slot that head start) and
    # holds the only slot for good: the step waits for it, and a Ctrl+C must still
    # stop the run then (it was held until a slot came free: never, here).
    (pytester.path / "conftest.py").write_text("import time\n\ndef pytest_runtest_logstart():\n    time.sleep(0.5)\n")
    (pytester.path / "cmds.batch").write_text("touch never; sleep 1 # batch: sequential\ntouch started; sleep 987061\n")
    done = under_ulimit("-n 64", [sys.executable, "-c", INTERRUPT_ONCE_STARTED, sys.executable, "-m", "pytest",
                                  "cmds.batch", "-p", "no:cacheprovider", "--batch-jobs", "2",
                                  "--batch-kill-grace", "0.3", "--batch-json=r.json"], pytester.path)
    assert "interrupted in time" in done.stdout, done.stdout + done.stderr
    assert not (pytester.path / "never").exists()
    statuses = [r["status"] for r in json.loads((pytester.path / "r.json").read_text())["results"]]
    assert statuses[0] == "interrupted", statuses


# Runs argv in its own process group, sends it SIGINT once ``started`` exists plus
# 0.5 s, and says whether it ended within 10 s (else kills it: the test never hangs).
INTERRUPT_ONCE_STARTED = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    proc = subprocess.Popen(sys.argv[1:], start_new_session=True)
    deadline = time.monotonic() + 30
    while not os.path.exists("started") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=10)
        print("interrupted in time")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its guardian then kills the commands' sessions
        proc.wait()
""")


def test_api_waiting_for_a_descriptor_slot_is_not_run_time(tmp_path) -> None:
    # The Python API starts its first commands before pytest is ready (process/prestart.py),
    # all at once in parallel mode: they wait for a slot in the same way.
    script = textwrap.dedent("""
        import json
        from batchrunner import BatchRunner
        results, summary = BatchRunner(["sleep 0.5; echo done"] * 5, mode="parallel", workers=5, timeout_sec=1.6,
                                       verbose=False).run()
        print(json.dumps([[r.success, r.timed_out, r.stdout, r.duration_ms] for r in results]))
    """)
    done = under_ulimit("-n 64", [sys.executable, "-c", script], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    for success, timed_out, stdout, duration_ms in results:
        assert success and not timed_out and stdout == "done\n", results
        assert 0.45 <= duration_ms / 1000 < SLOT_WAIT_LIMIT, results


def test_soft_open_files_limit_is_raised_toward_the_hard_one(tmp_path) -> None:
    (tmp_path / "cmds.txt").write_text("ulimit -Sn\n")
    done = under_ulimit("-S -n 64", [sys.executable, "-m", "batchrunner", "-f", "cmds.txt", "-q", "-o", "r.json"],
                        tmp_path)
    assert done.returncode == 0, done.stderr
    soft = json.loads((tmp_path / "r.json").read_text())["results"][0]["stdout"].strip()
    assert soft == "unlimited" or int(soft) > 64


def test_no_descriptor_left_and_nothing_running_is_a_clear_failure(tmp_path) -> None:
    # Every descriptor taken by the program itself: nothing to wait for, so the
    # command fails with the OS's words, no traceback.
    script = textwrap.dedent("""
        import os
        from pytest_batchrunner.process.command import run_command
        from pytest_batchrunner.process.spawn import SpawnError
        run_command("true")  # the guardian and the limits are set up
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            run_command("true")
        except SpawnError as exc:
            print("clean:", exc)
    """)
    done = under_ulimit("-n 128", [sys.executable, "-c", script], tmp_path)
    assert "clean: [Errno 24] cannot start the command: Too many open files (nothing else is running)" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_command_longer_than_the_kernel_takes_runs_as_written() -> None:
    payload = "x" * 300_000
    a = run_command(f"printf %s '{payload}' | wc -c; printf 'caf\\303\\251 %s\\n' \"$((6*7))\"")
    assert a.success, a.stderr
    assert a.stdout.split() == ["300000", "café", "42"]


def test_a_long_commands_script_file_is_removed_when_it_ends(tmp_path) -> None:
    scripts = tmp_path / "tmp"
    scripts.mkdir()
    script = textwrap.dedent("""
        from pytest_batchrunner.process.command import run_command, start_command
        print(run_command("echo " + "y" * 200_000 + " | wc -c").stdout.strip())
        start_command("sleep 30; echo " + "z" * 200_000).abandon()
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(scripts)},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "200001", done.stdout + done.stderr
    assert list(scripts.iterdir()) == []


def test_a_long_command_in_a_batch_file(pytester: pytest.Pytester, run) -> None:
    long = "echo " + "y" * 200_000 + " | wc -c"
    (pytester.path / "cmds.batch").write_text(long + "\nexit 0\n")
    result = run("cmds.batch", "--batch-json=r.json")
    result.assert_outcomes(passed=2)
    assert json.loads((pytester.path / "r.json").read_text())["results"][0]["stdout"].strip() == "200001"
    assert "Traceback" not in result.stdout.str()


def test_many_named_batch_files_are_each_offered_once(pytester: pytest.Pytester, run, mode: str) -> None:
    """``pytest b/*.batch``: each file of the folder is offered to the plugins once, not once per named file (N x N)."""
    files = 40
    (pytester.path / "b").mkdir()
    for i in range(files):
        (pytester.path / "b" / f"f{i}.batch").write_text(f"touch ran-{i}\n")
    pytester.makeconftest(textwrap.dedent("""
        import os
        offered = []

        def pytest_collect_file(file_path):
            if file_path.suffix == ".batch":
                offered.append(file_path)

        def pytest_sessionfinish(session):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(f"offered-{worker}", "w") as f:
                f.write(str(len(offered)))
    """))
    result = run(*sorted(f"b/{p.name}" for p in (pytester.path / "b").glob("*.batch")))
    assert result.parseoutcomes() == {"passed": files}
    # Each process that collects (the xdist controller does not) was offered each file once.
    counts = {p.name: int(p.read_text()) for p in pytester.path.glob("offered-*")}
    assert sorted(counts.values()) == ([0, files, files] if mode == "xdist" else [files]), counts
    assert len(list(pytester.path.glob("ran-*"))) == files


def test_each_batch_file_is_read_once_per_process(pytester: pytest.Pytester, run, mode: str) -> None:
    """Before collection the xdist controller reads each batch file once (for groups, ``retries=`` and the workers' copies)."""
    files = 3
    for i in range(files):
        (pytester.path / f"f{i}.batch").write_text(f"# batch: group=g{i}\ntouch ran-{i}-a\ntouch ran-{i}-b\n")
    pytester.makeconftest(textwrap.dedent("""
        import os
        import sys
        opened = []

        def _count(event, args):
            if event == "open" and str(args[0]).endswith(".batch"):
                opened.append(os.path.basename(str(args[0])))

        sys.addaudithook(_count)

        def pytest_sessionfinish(session):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(f"opened-{worker}", "w") as f:
                f.write(" ".join(sorted(opened)))
    """))
    result = run()
    assert result.parseoutcomes() == {"passed": 2 * files}
    opened = {p.name: p.read_text().split() for p in pytester.path.glob("opened-*")}
    # The controller (in-process: the collection) reads each file once; xdist workers collect the controller's bytes.
    each_once = [f"f{i}.batch" for i in range(files)]
    assert opened == ({"opened-main": each_once, "opened-gw0": [], "opened-gw1": []} if mode == "xdist" else {"opened-main": each_once})
