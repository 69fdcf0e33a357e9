"""What runs now: live tagged output (``--batch-live``, ``-s``), ``--batch-status-interval`` lines, and the
status area on a terminal.

Real batch files and real processes, in-process and under ``-n 2``, read from
pytest's real output; the terminal case runs pytest in a pseudo-terminal and
renders what it wrote with a terminal emulator (pyte).
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import ECOSYSTEM_OFF
from pytest_batchrunner.plugin.live import eta_seconds, format_elapsed

SLOW_PRINT = "echo first; sleep 1.3; echo second\n"


def write(pytester: pytest.Pytester, text: str) -> None:
    (pytester.path / "cmds.batch").write_text(text)


def test_format_and_eta() -> None:
    assert format_elapsed(120) == "2m00s"
    assert format_elapsed(0.5) == "0.5s" and format_elapsed(45) == "45s" and format_elapsed(3725) == "1h02m"
    assert eta_seconds(0, 10, 5.0) is None and eta_seconds(10, 10, 5.0) is None
    assert eta_seconds(2, 10, 4.0) == 16.0


def test_live_output_is_tagged_whole_lines_as_they_come(pytester: pytest.Pytester, run) -> None:
    write(pytester, SLOW_PRINT + "printf 'no newline\\033[31m'; printf ' x\\r\\n' >&2\n")
    result = run("--batch-live", "--batch-status-interval", "0.5", "--batch-jobs", "2")
    assert result.ret == 0
    lines = result.outlines
    first = lines.index("[cmds.batch:1] first")
    still = next(i for i, line in enumerate(lines) if line.startswith("still running after 0.5s: echo first"))
    second = lines.index("[cmds.batch:1] second")
    # "first" reached the terminal while the command was still running.
    assert first < still < second, lines
    assert "[cmds.batch:2] no newline\\x1b[31m" in lines
    assert "[cmds.batch:2]  x" in lines
    assert "\x1b[31m" not in result.stdout.str()
    # pytest's progress line is interrupted, not shifted: "[100%]" ends where pytest puts it,
    # one column short of its separator lines.
    (progress,) = [line for line in lines if line.endswith("[100%]")]
    width = len(next(line for line in lines if "test session starts" in line))
    assert len(progress) == width - 1, lines


def test_s_streams_tagged_output_and_reports_keep_it(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo out-line; echo err-line >&2; exit 1\necho fine\n")
    result = run("-s", "--batch-json", "results.json")
    assert "[cmds.batch:1] out-line" in result.outlines
    assert "[cmds.batch:1] err-line" in result.outlines
    assert "[cmds.batch:2] fine" in result.outlines
    import json

    results = json.loads((pytester.path / "results.json").read_text())["results"]
    assert results[0]["stdout"] == "out-line\n" and results[0]["stderr"] == "err-line\n"


def test_no_output_without_live_and_retries_are_tagged(pytester: pytest.Pytester, run) -> None:
    write(pytester, "echo quiet-line\necho again; exit 1   # batch: retries=1\n")
    result = run("--batch-status-interval", "0")
    assert "quiet-line" not in result.stdout.str().split("BatchRunner summary")[0]
    result = run("--batch-live")
    assert "[cmds.batch:2] again" in result.outlines and "[cmds.batch:2 #2] again" in result.outlines


def test_status_interval_lines(pytester: pytest.Pytester, run, mode: str) -> None:
    write(pytester, "sleep 1.3\ntrue\n")
    result = run("--batch-status-interval", "0.5")
    worker = "gw[01]" if mode == "xdist" else "main"
    result.stdout.fnmatch_lines([
        f"still running after 0.5s: sleep 1.3 (cmds.batch:1, {worker})",
        f"still running after 1s: sleep 1.3 (cmds.batch:1, {worker})",
    ])
    assert "still running" not in result.stdout.str().replace("still running after 0.5s", "").replace(
        "still running after 1s", "")
    quiet = run("--batch-status-interval", "0")
    assert "still running" not in quiet.stdout.str()
    bad = run("--batch-status-interval", "soon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--batch-status-interval: 'soon' is not a number*"])
    flood = run("--batch-status-interval", "0.0001")
    assert flood.ret == pytest.ExitCode.USAGE_ERROR
    flood.stderr.fnmatch_lines(["*--batch-status-interval: '0.0001' is too short: at least 0.1 s, or 0 for no lines"])


def run_in_terminal(args: list[str], cwd, columns: int = 100, rows: int = 40, interrupt_when=None,
                    narrow_when=None, narrowed: list[int] | None = None) -> bytes:
    """Run *args* with a pseudo-terminal as stdin, stdout and stderr; everything it wrote.

    With *interrupt_when* (a path), its process group gets SIGINT, as from Ctrl+C, once that file exists.
    With *narrow_when* (a path, a width), the terminal gets that width once the file exists (no ``COLUMNS``
    then); *narrowed* gets the length of the output written before.
    """
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": str(rows), "TERM": "xterm"}
    if narrow_when is not None:
        del env["COLUMNS"], env["LINES"]  # they would win over the terminal's size
    env.pop("CI", None)
    env["PYTEST_ADDOPTS"] = ECOSYSTEM_OFF  # nothing of the caller's, and no plugin of the ecosystem extra
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if interrupt_when is not None and interrupt_when.exists() and b"running" in out:
                os.killpg(proc.pid, signal.SIGINT)
                interrupt_when = None
            if narrow_when is not None and narrow_when[0].exists() and b"running" in out:
                # Stopped while it is resized, so that every byte is known to come before or after.
                os.killpg(proc.pid, signal.SIGSTOP)
                while select.select([master], [], [], 0.2)[0]:
                    out += os.read(master, 65536)
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, narrow_when[1], 0, 0))
                narrowed.append(len(out))
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGWINCH)
                narrow_when = None
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return out


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["inprocess", "xdist"])
def test_status_area_on_a_terminal_never_garbles_pytests_lines(pytester: pytest.Pytester, no_leftovers: str,
                                                                workers: list[str]) -> None:
    pyte = pytest.importorskip("pyte")
    write(pytester, "sleep 1.6\nsleep 1.2; echo x\ntrue\nsleep 0.8\n")
    out = run_in_terminal(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", "--batch-jobs", "2", *workers],
        pytester.path,
    )
    text = out.decode("utf-8", "replace")
    # The status was shown while commands ran...
    assert "running" in text and "sleep 1.6  (cmds.batch:1)" in text, text
    screen = pyte.Screen(100, 40)
    stream = pyte.Stream(screen)
    stream.feed(text.replace("\n", "\r\n").replace("\r\r\n", "\r\n"))
    shown = [line.rstrip() for line in screen.display if line.strip()]
    # ...and is gone at the end, leaving pytest's lines as pytest wrote them.
    assert not any("batchrunner:" in line or "(cmds.batch:" in line for line in shown), shown
    if workers:
        progress = [line for line in shown if line.startswith("....")]
    else:
        progress = [line for line in shown if line.startswith("cmds.batch ")]
    assert len(progress) == 1 and progress[0].endswith("[100%]"), shown
    assert re.fullmatch(r"(cmds\.batch )?\.{4} +\[100%\]", progress[0]), shown
    assert any(line.startswith("Total Commands: 4 | Successful: 4") for line in shown), shown


def test_status_area_is_gone_after_an_interruption(pytester: pytest.Pytester, no_leftovers: str) -> None:
    pyte = pytest.importorskip("pyte")
    write(pytester, "true\ntouch started; sleep 30\n")
    out = run_in_terminal(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", "--batch-html", "run.html"],
        pytester.path, interrupt_when=pytester.path / "started",
    )
    screen = pyte.Screen(100, 40)
    pyte.Stream(screen).feed(out.decode("utf-8", "replace").replace("\n", "\r\n").replace("\r\r\n", "\r\n"))
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert any("KeyboardInterrupt" in line or "Interrupted" in line for line in shown), shown
    assert not any("batchrunner:" in line or "(cmds.batch:2)" in line for line in shown), shown
    assert "Interrupted" in (pytester.path / "run.html").read_text()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["inprocess", "xdist"])
def test_status_area_follows_a_terminal_narrowed_mid_run(pytester: pytest.Pytester, no_leftovers: str,
                                                         workers: list[str]) -> None:
    pyte = pytest.importorskip("pyte")
    write(pytester, "touch narrow; sleep 2.5; : " + "a" * 80 + "\ntrue\n")
    narrowed: list[int] = []
    out = run_in_terminal(
        [sys.executable, "-m", "pytest", "cmds.batch", "-p", "no:cacheprovider", *workers],
        pytester.path, narrow_when=(pytester.path / "narrow", 50), narrowed=narrowed,
    )
    assert narrowed, out
    text = [part.decode("utf-8", "replace").replace("\n", "\r\n").replace("\r\r\n", "\r\n")
            for part in (out[: narrowed[0]], out[narrowed[0]:])]
    screen = pyte.Screen(100, 40)
    stream = pyte.Stream(screen)
    stream.feed(text[0])
    screen.resize(40, 50)  # as a terminal does: what is on it stays, cut at the new width
    stream.feed(text[1])
    assert "running" in text[1], text[1]  # drawn after the terminal was narrowed
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert [line for line in shown if "batchrunner:" in line or "(cmds.batch:" in line] == [], "\n".join(shown)
    progress = [line for line in shown if line.startswith("cmds.batch ") or line.startswith("..")]
    assert len(progress) == 1 and re.fullmatch(r"(cmds\.batch )?\.\. +\[100%\]", progress[0]), shown


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["inprocess", "xdist"])
def test_canary_pytest_terminal_reporter_writes_to_sys_stdout_of_its_configure(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    """Canary (docs/internals.md): the terminal reporter writes to sys.stdout as it was during pytest_configure."""
    write(pytester, "true\n")
    pytester.makeconftest(
        "from pytest_batchrunner.plugin.live import AREA_KEY\n"
        "def pytest_terminal_summary(terminalreporter, config):\n"
        "    area = config.stash[AREA_KEY]\n"
        "    terminalreporter.ensure_newline()\n"
        "    terminalreporter.write('abc')\n"
        "    terminalreporter.write_line(f' AREA COLUMN: {area.column}')\n"
    )
    result = pytester.runpytest_subprocess("cmds.batch", *args)
    result.assert_outcomes(passed=1)
    assert "abc AREA COLUMN: 3" in result.stdout.str(), (
        "pytest's terminal reporter no longer writes to the sys.stdout of pytest_configure (TerminalFile's "
        "StatusArea): the live status would be drawn through pytest's own lines\n" + result.stdout.str()
    )
