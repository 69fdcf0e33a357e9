"""Shared fixtures: run modes (in-process and under ``-n 2``), and the leftover-process check every test gets.

The leftover check (:func:`leftover_check`, autouse) fails a test that leaves a
process alive. It finds the test's processes three ways, so that none hides:

* the process tree of this pytest process, which is made a child subreaper
  (Linux ``PR_SET_CHILD_SUBREAPER``): orphans of everything a test starts,
  whatever session or process group they moved to, are re-parented to it
  rather than to PID 1, so they stay in its tree;
* the sessions of those processes (every command runs in a session of its own):
  a process of such a session is the command's, wherever it went;
* a token unique to each test in ``BATCHRUNNER_TEST_TOKEN``, which every
  command inherits.

The check looks at once when the test ends. Whatever it finds gets the time of
the only kill sequence that may still be under way then (a guardian's, for a
runner that died: its grace plus half a second), not a blind wait: what is
still there then fails the test, named, and is killed.
A guardian counts like any other process: only this pytest process's own
guardian (its parent is alive: it is us) may outlive a test. Processes of the
other xdist workers of the suite are neither in our tree nor carry our token.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import entry_points

import pytest

from pytest_batchrunner.process import guardian

pytest_plugins = ["pytester"]

GUARDIAN_MARK = b"pytest_batchrunner/process/guardian_process.py"
TOKEN_VAR = "BATCHRUNNER_TEST_TOKEN"
# A run kills its commands before it returns (SIGTERM, the kill grace, SIGKILL,
# all inside the run): the one kill sequence that may still be under way when a
# test ends is a guardian's, for a runner that died (SIGTERM, its grace,
# SIGKILL), plus room for a loaded machine to let SIGKILLed processes exit.
KILL_SEQUENCE_SECONDS = guardian.GRACE_SECONDS + 0.5
HAVE_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
PR_SET_CHILD_SUBREAPER = 36

# Plugins of the ``ecosystem`` extra (see tests/test_ecosystem.py): installed with
# the test extra, but off in this suite's own run (pyproject addopts) and in the
# runs its tests start (PYTEST_ADDOPTS below), unless a test turns one on.
ECOSYSTEM_PLUGINS = (
    "randomly", "random_order", "sugar", "rich", "html", "html_fixtures", "metadata",
    "pytest_jsonreport", "allure_pytest", "pytest-split", "pytest-shard",
)
# The runs tests start load the foundation and nothing else the Python they run
# on happens to carry: a CI image with pytest-benchmark installed made every run
# write a `.benchmarks` folder, which the checks for stray files rightly caught.
FOUNDATION_PLUGINS = frozenset({"batchrunner", "xdist", "xdist.looponfail", "timeout", "rerunfailures"})
OTHER_PLUGINS = tuple(sorted(
    {ep.name for ep in entry_points(group="pytest11")} - FOUNDATION_PLUGINS - set(ECOSYSTEM_PLUGINS)
))


def plugins_off(*on: str) -> str:
    """``-p no:`` options for every plugin outside the foundation, except the ones named in *on*."""
    return " ".join(f"-p no:{name}" for name in (*ECOSYSTEM_PLUGINS, *OTHER_PLUGINS) if name not in on)


ECOSYSTEM_OFF = plugins_off()


@pytest.fixture(autouse=True)
def _ecosystem_plugins_off(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest runs (pytester, subprocesses, commands running pytest) start without the ecosystem plugins."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
    monkeypatch.setenv("PYTEST_ADDOPTS", (ECOSYSTEM_OFF + " " + os.environ.get("PYTEST_ADDOPTS", "")).strip())


def pytest_configure(config: pytest.Config) -> None:
    _default_signals()
    _become_subreaper()


_STOPS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))


@pytest.fixture(autouse=True)
def _signals_left_inheritable_as_they_were():
    """A test that leaves a stop signal ignored or blocked in this process fails by name: the runs every later
    test starts here would inherit it (an ignored or blocked signal stays so across ``exec``) and never stop."""
    def state() -> tuple[list[str], set[int]]:
        ignored = [signal.Signals(s).name for s in _STOPS if signal.getsignal(s) == signal.SIG_IGN]
        return ignored, set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & set(_STOPS)
    before = state()
    yield
    after = state()
    assert after == before, f"the test left stop signals ignored or blocked: {after} (before: {before})"


@pytest.fixture(autouse=True)
def _gc_left_as_it_was():
    """Unfreeze what a test's in-process run froze, so that no later test in this worker sees it.

    A batch-only session freezes the garbage collector's heap as it ends (see
    the plugin's ``pytest_unconfigure``); run in-process (pytester's inline
    runs), that is this worker's heap, and a later test that compares the
    freeze count (the API leaves none behind) would see the earlier test's.
    """
    frozen = gc.get_freeze_count()
    yield
    if frozen == 0 and gc.get_freeze_count():
        gc.unfreeze()


def _default_signals() -> None:
    """Give the processes tests start default handling of the stop signals, whatever this run inherited.

    An ignored signal stays ignored across ``exec`` (a script's background
    ``&`` starts the suite with SIGINT ignored), and so does a blocked one:
    the runs the tests interrupt would never see it.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in _STOPS[1:]:
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_STOPS))


def _become_subreaper() -> None:
    """Adopt the orphans of everything this process starts, so that the leftover check finds them in its tree."""
    if not HAVE_PROC:
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass
class Proc:
    """One process as ``/proc`` shows it."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    cmdline: str
    token: str | None

    @property
    def guardian(self) -> bool:
        return GUARDIAN_MARK.decode() in self.cmdline

    def describe(self, how: str) -> str:
        kind = "guardian " if self.guardian else ""
        return (
            f"  {kind}pid {self.pid} (ppid {self.ppid}, pgid {self.pgid}, session {self.sid}; {how}): "
            f"{self.cmdline[:200]}"
        )


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def scan_processes(read_token: bool = True) -> dict[int, Proc]:
    """Every process of the machine, from ``/proc`` (zombies included, marked by their state)."""
    found = {}
    needle = f"{TOKEN_VAR}=".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = _read(f"/proc/{entry}/stat")
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = stat[stat.rindex(b")") + 2 :].split()
            name = stat[stat.index(b"(") + 1 : stat.rindex(b")")]
            cmdline = _read(f"/proc/{entry}/cmdline").replace(b"\0", b" ").strip() or b"[" + name + b"]"
            token = None
            if read_token:
                try:
                    environ = _read(f"/proc/{entry}/environ")
                except OSError:
                    environ = b""  # a zombie has none (ESRCH): it is still listed, to be reaped
                at = environ.find(needle)
                if at >= 0:
                    token = environ[at + len(needle) :].split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found[int(entry)] = Proc(
            pid=int(entry),
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            state=fields[0].decode(),
            cmdline=cmdline.decode(errors="replace"),
            token=token,
        )
    return found


def leftovers(token: str | None) -> dict[int, tuple[Proc, str]]:
    """Live processes this test left: ``{pid: (process, how it was found)}``.

    Reaps the zombies re-parented to us (we are their subreaper) on the way.
    """
    me = os.getpid()
    own_guardian = _own_guardian()
    procs = scan_processes()
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: dict[int, tuple[Proc, str]] = {}
    stack = list(children.get(me, ()))
    while stack:
        pid = stack.pop()
        proc = procs[pid]
        stack.extend(children.get(pid, ()))
        if proc.state in ("Z", "X"):
            if proc.ppid == me and proc.sid != os.getsid(0):
                _reap(pid)  # an orphan that died as our adopted child
            continue
        if pid == own_guardian:
            continue  # this process's own guardian: its runner (us) is alive
        found[pid] = (proc, "in this pytest's process tree")
    own_session = os.getsid(0)
    sessions = {proc.sid for proc, _ in found.values()} - {own_session}
    for proc in procs.values():
        if proc.pid == me or proc.pid in found or proc.state in ("Z", "X"):
            continue
        if proc.pid == own_guardian:
            continue
        if proc.sid in sessions:
            found[proc.pid] = (proc, f"in session {proc.sid} of a process this test started")
        elif token is not None and proc.token == token:
            found[proc.pid] = (proc, f"carries this test's {TOKEN_VAR}")
    return found


def _own_guardian() -> int | None:
    """The pid of this process's own guardian, if it started one (another one, re-parented to us, is a stray)."""
    return guardian.GUARDIAN.own_pid()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@pytest.fixture(autouse=True)
def leftover_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Fail the test if a process it started is alive after it (see the module's docstring).

    Autouse: set up before, and torn down after, every fixture the test uses.
    """
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, value)
    # The runs a test starts are top-level runs, whether or not the suite runs under -n.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    yield value
    if not HAVE_PROC:
        return
    at_once = leftovers(value)
    if not at_once:
        return
    deadline = time.monotonic() + KILL_SEQUENCE_SECONDS
    left = at_once
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = leftovers(value)
    if not left:
        return
    for proc, _ in left.values():
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    lines = [proc.describe(how) for proc, how in left.values()]
    pytest.fail(
        f"{request.node.nodeid}: {len(lines)} process(es) still alive {KILL_SEQUENCE_SECONDS:.1f} s after the "
        "test ended (a command's process, or a guardian whose runner had exited), now killed:\n" + "\n".join(lines),
        pytrace=False,
    )


@pytest.fixture
def token(leftover_check: str) -> str:
    """This test's ``BATCHRUNNER_TEST_TOKEN`` (every process the test starts inherits it)."""
    return leftover_check


@pytest.fixture
def no_leftovers(leftover_check: str) -> str:
    """Kept for tests that name it: the check itself runs for every test (:func:`leftover_check`)."""
    return leftover_check


@pytest.fixture
def mount():
    """``mount(*args)``: run ``mount *args`` (its last argument the mount point), unmounted when the test ends.

    Skips the test, with mount's reason, where mounts are not permitted (not root, a restricted container).
    """
    points: list[str] = []

    def _mount(*args: str) -> None:
        try:
            result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            pytest.skip("no mount command here")
        if result.returncode:
            pytest.skip(f"mounts are not permitted here (mount {' '.join(args)}: {result.stderr.strip()})")
        if args[-1] not in points:  # a remount is no new mount
            points.append(args[-1])

    yield _mount
    for point in reversed(points):
        subprocess.run(["umount", point], check=True, timeout=30)


@pytest.fixture(params=["inprocess", "xdist"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run each scenario in-process and under ``-n 2``."""
    return request.param


@pytest.fixture
def xdist_workers() -> str:
    """How many xdist workers the xdist mode uses (a test module may override it)."""
    return "2"


@pytest.fixture
def run(pytester: pytest.Pytester, mode: str, no_leftovers: str, xdist_workers: str):
    """``run(*args)``: pytest in a subprocess, with ``-n 2`` in the xdist mode; checks leftovers.

    Batch files run only when named: unless *args* name a file, the test
    directory's ``*.batch`` and ``test_*.py`` files are named, as a user would.
    """

    def _run(*args: str, timeout: float = 120) -> pytest.RunResult:
        extra = ["-n", xdist_workers] if mode == "xdist" else []
        return pytester.runpytest_subprocess(
            *args, *extra, "-p", "no:cacheprovider", *named_batch_files(pytester, args), timeout=timeout
        )

    return _run


def named_batch_files(pytester: pytest.Pytester, args: tuple[str, ...] = ()) -> list[str]:
    """The test directory's ``*.batch`` and ``test_*.py`` files, to name on the command line (none if *args* name files)."""
    if any(a.endswith((".batch", ".py")) or ".batch::" in a for a in args):
        return []
    return sorted(p.name for pattern in ("*.batch", "test_*.py") for p in pytester.path.glob(pattern))


@pytest.fixture
def interrupt_once_started():
    """``interrupt_once_started(argv, cwd, started, sig=SIGINT)``: see :func:`_interrupt_once_started`."""
    return _interrupt_once_started


def _interrupt_once_started(argv: list[str], cwd, started, sig: int = signal.SIGINT) -> subprocess.CompletedProcess[str]:
    """Run *argv* in its own process group, send *sig* to the group once the file *started* exists, and wait.

    The group gets it as a terminal's Ctrl+C would reach it; the commands run in
    their own sessions, so only the runner gets it.
    """
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.002)
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
