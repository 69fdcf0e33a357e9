"""An xdist worker that dies with commands it started ahead of their items (``--batch-jobs``).

xdist runs those items again on another worker: the reports show every attempt,
the one lost with the worker too (see ``LiveBoard.lost_with`` in ``pytest_batchrunner/plugin/live.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest


@pytest.mark.parametrize(
    ("ahead_ends", "reruns"), [(False, "0"), (True, "0"), (False, "1")], ids=["running", "ended", "in-a-rerun-slot"]
)
def test_a_command_started_ahead_on_a_killed_worker_shows_both_attempts(
    pytester: pytest.Pytester, ahead_ends: bool, reruns: str, no_leftovers: str
) -> None:
    # Each worker runs one item and starts the next one's command ahead (--batch-jobs 2). The odd lines wait
    # for "go"; with ahead_ends the even ones end at once (a command ahead that ended, not reported yet).
    # With --reruns, the job slots run the first attempts as they would run the reruns.
    wait = "until [ -e go ]; do sleep 0.02; done"
    lines = [f'true {n}; echo "$BATCH_LINE $PPID" >> started; ' + (wait if n % 2 or not ahead_ends else "true")
             for n in range(1, 9)]
    (pytester.path / "cmds.batch").write_text("".join(line + "\n" for line in lines))
    argv = [sys.executable, "-m", "pytest", "cmds.batch", "-n", "2", "--batch-jobs", "2", "--reruns", reruns,
            "-p", "no:cacheprovider", "--batch-json", "r.json", "--batch-joblog", "jobs.log", "--batch-log",
            "audit.log", "--batch-markdown", "steps.md", "--batch-html", "r.html", "--batch-trace", "trace.json",
            "--junitxml", "junit.xml"]
    proc = subprocess.Popen(argv, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = pytester.path / "started"
    try:
        deadline = time.monotonic() + 120
        while not started.exists() or len(started.read_text().splitlines()) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        # From outside, the worker of a waiting command: the command it started ahead is lost with it.
        worker = next(int(pid) for line, pid in (row.split() for row in started.read_text().splitlines()) if int(line) % 2)
        os.kill(worker, signal.SIGKILL)
        (pytester.path / "go").touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "INTERNALERROR" not in out and "Traceback" not in out and (pytester.path / "r.json").exists(), out
    runs = Counter(int(line.split()[0]) for line in started.read_text().splitlines())
    results = {r["line"]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    # Every start of a command is one of its attempts in the reports.
    assert {line: r["attempts"] for line, r in results.items() if r["attempts"]} == dict(runs), out
    # The two commands the worker had (its item's, and one started ahead) are one attempt each, lost with it: one
    # is xdist's crashed item (run again only as --reruns allows), the other runs again elsewhere.
    lost = [(r, n) for r in results.values() for n, a in enumerate(r["attempt_log"])
            if "(started ahead of its turn)" in a["status"] or "worker crashed" in a["status"]]
    assert len(lost) == 2 and all(n == 0 for _, n in lost), lost
    assert any("(started ahead of its turn)" in r["attempt_log"][0]["status"] for r, _ in lost), lost
    outcomes = sorted((r["attempts"], r["success"]) for r, _ in lost)
    assert outcomes == ([(1, False), (2, True)] if reruns == "0" else [(2, True), (2, True)]), lost
