"""What runs now: live tagged output (``--batch-live``, ``-s``) and the status of running commands.

Every attempt of a command is *watched* where it runs (:class:`Watch`): its
start, its output cut into whole lines, each tagged with where it comes from
(``[cmds.batch:5] ...``, as GNU parallel's ``--tag --line-buffer``), and its
end. Everything is shown by the process that reports (:class:`LiveBoard`, the
xdist controller or the only process):

* in-process, the watches call the board directly (from the threads that run
  commands, ``--batch-jobs``);
* in an xdist worker, they send the same events to the controller over an
  execnet channel of their own, which the controller opens on each worker's
  gateway in ``pytest_configure_node`` and hands over in ``workerinput`` (a
  channel travels inside it like any value): lines reach the terminal as the
  command prints them, not when its item is reported.

The board prints output lines whole, each with one write. On a terminal it also
keeps a status area under pytest's progress (done/total, ETA, each running
command with its worker and time); it is erased before each of pytest's own
writes and redrawn a moment later, so pytest's lines are never mixed with it,
and it is gone at the end. Without a terminal (CI logs),
``--batch-status-interval SECONDS`` prints a plain line for each command that
has been running that long, every interval: ``still running after 2m00s: make
test (cmds.batch:5, gw1)``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_batchrunner.batchfile import display_command
from pytest_batchrunner.plugin.engine import RECORDING_KEY

__all__ = [
    "LiveBoard", "TerminalFile", "Watch", "WorkerLive", "add_options", "configure", "eta_seconds", "format_elapsed",
    "wrap_terminal",
]

LIVE_HELP = (
    "Print every line of every command's output as it arrives, prefixed with its place "
    "('[cmds.batch:5] ...'), in-process, with --batch-jobs and under -n (as -s does). "
    "Capture and reports stay as they are."
)
INTERVAL_HELP = (
    "Without a terminal, print 'still running after ...: CMD (file:line, worker)' for each command running "
    "longer than SECONDS, every SECONDS. Default 60; 0 turns it off. On a terminal a status line shows "
    "the running commands instead."
)
DEFAULT_INTERVAL = 60.0
CHANNEL_KEY = "batchrunner_live"
"""The ``workerinput`` key of the channel a worker sends its events on."""
TICK = 0.5
"""Seconds between redraws of the status area and checks of the interval."""
STATUS_COMMANDS = 4
"""Running commands the status area lists; more are counted."""
ANNOUNCE_DELAY = 0.2
"""Seconds an xdist worker's command runs before the controller hears of it (for the status)."""
LINE_LIMIT = 64 * 1024
"""A line longer than this is printed in parts, so that memory stays bounded."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


MIN_INTERVAL = 0.1
"""The shortest ``--batch-status-interval`` (seconds) other than 0."""


def add_options(group: Any, parser: pytest.Parser) -> None:
    """Add ``--batch-live`` and ``--batch-status-interval`` to the plugin's option group."""
    from pytest_batchrunner.values import cli_float

    group.addoption("--batch-live", dest="batch_live", action="store_true", default=False, help=LIVE_HELP)
    group.addoption("--batch-status-interval", dest="batch_status_interval", type=cli_float, default=None,
                    metavar="SECONDS", help=INTERVAL_HELP)
    parser.addini("batch_status_interval", INTERVAL_HELP, default=None)


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left, from the pace so far; ``None`` before anything is done.

    The estimate when the history does not know the commands; when it does, the
    board asks its :class:`~.history.HistoryEta` instead.
    """
    if done <= 0 or total <= done:
        return None
    return elapsed / done * (total - done)


def format_elapsed(seconds: float) -> str:
    """``2m00s``, ``1h02m``, ``45s``; tenths below ten seconds when they are not whole (``0.5s``)."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 10 and abs(seconds - round(seconds)) > 1e-6:
        return f"{seconds:.1f}s"
    return f"{int(round(seconds))}s"


def _printable(text: str) -> str:
    # Control characters but tab shown as \xNN: a command's ESC or BEL never drives the terminal.
    return "".join(ch if ch >= " " or ch == "\t" else f"\\x{ord(ch):02x}" for ch in text)


# -- where commands run ---------------------------------------------------------------------


class Watch:
    """One attempt of one command, watched: its start, its output as tagged lines, its end.

    Output lines go to *live*'s ``send`` as ``("lines", [text...])``; the start and
    end go to its :meth:`WorkerLive.started` and :meth:`WorkerLive.ended`; *key* is ``(nodeid, attempt, worker)``
    (under ``--dist each`` two workers run the same item at once).
    """

    def __init__(self, live: WorkerLive, nodeid: str, command: str, where: str, attempt: int, worker: str,
                 output: bool, ahead: bool = False) -> None:
        self.live = live
        self.send = live.send
        self.key = (nodeid, attempt, worker)
        self.info = {"command": display_command(command), "where": where, "attempt": attempt, "worker": worker}
        if ahead:
            self.info["ahead"] = True
        self.tag = f"[{where}]" if attempt == 1 else f"[{where} #{attempt}]"
        self.output = output
        self.partial = {1: b"", 2: b""}
        self.lock = threading.Lock()

    def start(self, started: float | None = None) -> None:
        """The attempt's process has started, at *started* (epoch seconds; now if not given)."""
        self.live.started(self.key, {**self.info, "started": time.time() if started is None else started})

    def end(self) -> None:
        if self.output:
            for stream in (1, 2):
                self.echo(stream, b"")
        self.live.ended(self.key, time.time())

    def echo(self, stream: int, data: bytes) -> None:
        """The process layer's ``echo``: whole lines out, the rest kept until its newline (or the end)."""
        if not self.output:
            return
        with self.lock:
            buffer = self.partial[stream] + data
            if data:
                *lines, rest = buffer.split(b"\n")
                while len(rest) > LINE_LIMIT:
                    lines.append(rest[:LINE_LIMIT])
                    rest = rest[LINE_LIMIT:]
            else:  # the stream ended: its last line has no newline
                lines, rest = ([buffer] if buffer else []), b""
            self.partial[stream] = rest
        if lines:
            tag = self.tag
            self.send(("lines", [
                f"{tag} {_printable(line.decode('utf-8', 'replace').removesuffix(chr(13)))}" for line in lines
            ]))


class WorkerLive:
    """What a process that runs commands uses to watch them (stashed as ``LIVE_KEY``).

    *send* takes the events: the board's :meth:`LiveBoard.receive` in-process,
    or a channel's ``send`` in an xdist worker. There, with *delay*, a command is
    announced only once it has run that long (a thread of its own looks every
    half *delay*): thousands of short commands cost no message at all, and the
    status, which is about long ones, is the same. Sending is best effort: a
    controller that has gone away never fails a command.
    """

    def __init__(self, send: Any, output: bool, worker: str, delay: float = 0.0) -> None:
        self._send = send
        self.output = output
        self.worker = worker
        self.delay = delay
        self.lock = threading.Lock()
        self.pending: dict[Any, dict[str, Any]] = {}
        self.thread: threading.Thread | None = None

    def send(self, event: Any) -> None:
        try:
            self._send(event)
        except Exception:  # noqa: BLE001 - the channel is closed: the controller stopped listening
            pass

    def watch(self, nodeid: str, command: str, where: str, attempt: int, ahead: bool = False) -> Watch:
        return Watch(self, nodeid, command, where, attempt, self.worker, self.output, ahead)

    def started(self, key: Any, info: dict[str, Any]) -> None:
        # One started ahead of its item is announced at once: if this worker dies before the item's turn,
        # the controller knows that it ran (see LiveBoard.lost_with).
        if not self.delay or info.get("ahead"):
            self.send(("start", key, info))
            return
        with self.lock:
            self.pending[key] = info
            if self.thread is None:
                self.thread = threading.Thread(target=self._announce, name="batchrunner-live", daemon=True)
                self.thread.start()

    def ended(self, key: Any, when: float) -> None:
        if self.delay:
            with self.lock:
                if self.pending.pop(key, None) is not None:
                    return  # never announced
        self.send(("end", key, when))

    def _announce(self) -> None:
        while True:
            time.sleep(self.delay / 2)
            now = time.time()
            with self.lock:
                due = [(key, info) for key, info in self.pending.items() if now - info["started"] >= self.delay]
                for key, _ in due:
                    del self.pending[key]
                # Sent under the lock, so that an end is never sent before its start.
                for key, info in due:
                    self.send(("start", key, info))


def _record_from_start(key: Any, info: dict[str, Any], ended: float) -> dict[str, Any]:
    """An attempt record for an interrupted attempt known only by its start event (see :meth:`LiveBoard.interrupted_attempts`)."""
    import datetime

    seconds = max(0.0, ended - info["started"])
    return {
        "nodeid": key[0], "command": "", "file": None, "line": None, "attempt": key[1], "success": False,
        "exit_code": None, "signal": None, "timed_out": False, "timeout": None,
        "status": f"interrupted after {seconds:.2f} s", "stdout": "", "stderr": "", "stdout_bytes": 0,
        "stderr_bytes": 0, "started": info["started"],
        "timestamp": datetime.datetime.fromtimestamp(info["started"]).astimezone().isoformat(timespec="milliseconds"),
        "duration_ms": round(seconds * 1000, 3), "leftovers": [], "expected_exit": 0, "worker": info["worker"],
        "host": ":", "pid": None, "interrupted": True,
    }


# -- where the run is reported ----------------------------------------------------------------


class Terminal:
    """Where the board writes: the terminal pytest writes to, reached even while an item's output is captured.

    pytest redirects file descriptor 1 while an item runs (``--capture=fd``),
    and commands run then; the board writes on a duplicate of the descriptor
    taken before, each text in one ``write(2)``, after flushing what pytest has
    buffered so that the order on screen is the order of the writes.
    """

    def __init__(self, file: Any, lock: threading.RLock) -> None:
        self.file = file
        self.lock = lock
        try:
            self.fd: int | None = os.dup(self.file.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (an in-process test run)
            self.fd = None

    def raw(self, text: str) -> None:
        with self.lock:
            if self.fd is None:
                self.file.write(text)
                self.file.flush()
                return
            try:
                self.file.flush()
                view = memoryview(text.encode("utf-8", "replace"))
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError:  # the terminal is gone: the run goes on
                pass

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class StatusArea:
    """The terminal reporter's file (see :class:`TerminalFile`), with a few status lines kept under the cursor.

    Every write of pytest's first erases the status lines (``ESC[J``: from the
    cursor to the end of the screen, which is only them), so text is never
    mixed with them; :meth:`draw` puts them back below the current line and
    returns the cursor to its column. The column is counted from what went
    through this file and the board's own lines, so it is always the real one.
    """

    def __init__(self, file: Any) -> None:
        self.file = file
        self.lock = threading.RLock()
        self.terminal: Terminal | None = None
        """Where the board's text goes, once the board uses this area (:meth:`start`)."""
        self.column = 0
        self.width: Callable[[], int] = lambda: 80
        """The terminal's width now (read at each draw: the terminal may be resized mid-run)."""
        self.drawn = 0
        self.pad = 0
        """The column of pytest's line when the board's lines interrupted it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def start(self, terminal: Terminal, width: Callable[[], int]) -> None:
        """The board draws here from now on."""
        with self.lock:
            self.terminal, self.width = terminal, width

    def write(self, text: str) -> int:
        with self.lock:
            self._erase()
            if self.pad and text and text[0] not in "\r\n":
                # pytest goes on with a line the board's lines interrupted: back to its
                # column first, so that its dots and "[100%]" land where pytest counts them.
                self.file.write(" " * self.pad)
                self.column = self.pad
            self.pad = 0
            result = self.file.write(text)
            self._advance(text)
            return result

    def flush(self) -> None:
        with self.lock:
            self.file.flush()

    def lines(self, text: str) -> None:
        """The board's own text (whole lines), below pytest's."""
        with self.lock:
            self._erase()
            if self.column:
                self.pad = self.column
            self.terminal.raw(text)  # type: ignore[union-attr]
            self._advance(text)

    def _advance(self, text: str) -> None:
        cut = max(text.rfind("\n"), text.rfind("\r"))
        visible = len(_ANSI.sub("", text[cut + 1:]))
        self.column = visible if cut >= 0 else self.column + visible

    def _erase(self) -> None:
        if self.drawn:
            self.terminal.raw("\x1b[J")  # type: ignore[union-attr]
            self.drawn = 0

    def draw(self, lines: list[str]) -> None:
        with self.lock:
            width = self.width()
            if self.column >= width - 1:
                return  # pytest's line is full: drawing would wrap it
            lines = [line[: width - 1] for line in lines][:8]
            back = "\r" + (f"\x1b[{self.column}C" if self.column else "")
            text = "".join("\n\x1b[2K" + line for line in lines) + f"\x1b[{len(lines)}A" + back
            self.terminal.raw(("\x1b[J" if self.drawn else "") + text)  # type: ignore[union-attr]
            self.drawn = len(lines)

    def clear(self) -> None:
        with self.lock:
            self._erase()


AREA_KEY = pytest.StashKey[StatusArea]()


class TerminalFile:
    """Makes a :class:`StatusArea` the file of pytest's terminal reporter, as the reporter is made.

    pytest makes its terminal reporter in pytest_configure with ``sys.stdout``
    for its file (so do plugins that replace it): it is the area then, so every
    write of pytest's erases the status first and the area knows pytest's column
    (pytest has no hook on its terminal writes).
    """

    def __init__(self) -> None:
        self.file: Any = None
        self.area: StatusArea | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.file = sys.stdout
        config.stash[AREA_KEY] = self.area = StatusArea(self.file)
        sys.stdout = self.area  # type: ignore[assignment]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        self.restore()

    def pytest_unconfigure(self) -> None:
        self.restore()

    def restore(self) -> None:
        """``sys.stdout`` back as it was, once every pytest_configure has run."""
        if self.area is not None and sys.stdout is self.area:
            sys.stdout = self.file
        self.area = None


def wrap_terminal(config: pytest.Config) -> None:
    """In the process that reports, before pytest_configure: the terminal reporter is to write through a :class:`StatusArea`."""
    if config.pluginmanager.hasplugin("terminal"):
        config.pluginmanager.register(TerminalFile(), "batchrunner-terminal-file")


class LiveBoard:
    """The controller's view of running commands: prints output lines, status line or interval lines."""

    def __init__(self, config: pytest.Config, output: bool, interval: float, status_line: bool) -> None:
        self.config = config
        self.output = output
        self.interval = interval
        self.status_line = status_line
        self.lock = threading.RLock()
        self.running: dict[Any, dict[str, Any]] = {}
        self.reported: dict[Any, int] = {}
        """How many 'still running' lines each running attempt got."""
        self.done = 0
        self.total = 0
        self.started = time.time()
        self.terminal: Terminal | None = None
        self.area: StatusArea | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.channels: list[Any] = []
        self.recording: Any = None
        self.history_eta: Any = None
        """A :class:`~.history.HistoryEta` when the history knows the commands: the ETA then comes from it."""
        self.records: dict[Any, dict[str, Any]] = {}
        """Attempts the workers killed as the run was interrupted (``"attempt"`` events), by ``(nodeid, attempt, worker)``."""
        self.ends: dict[Any, tuple[float, str]] = {}
        """When each announced attempt ended, and on which worker, until its report arrives (for an interrupted run)."""
        self.settled: list[dict[str, Any]] | None = None
        self.ahead: dict[Any, dict[str, Any]] = {}
        """Commands a worker started ahead of their items, until the item's turn comes (see :meth:`lost_with`)."""

    # -- events, from any thread --------------------------------------------------------------

    def receive(self, event: Any) -> None:
        """One event of a :class:`Watch` (here, or from a worker's channel)."""
        kind = event[0]
        if kind == "lines":
            self.print_lines(event[1])
        elif kind == "start":
            info = dict(event[2])
            with self.lock:
                # The first slot of its worker free now (--batch-jobs runs several at once).
                used = {other["slot"] for other in self.running.values() if other["worker"] == info["worker"]}
                info["slot"] = next(n for n in range(1, len(used) + 2) if n not in used)
                self.running[tuple(event[1])] = info
                if info.get("ahead") and self.keep_ends:
                    self.ahead[tuple(event[1])] = info
        elif kind == "end":
            with self.lock:
                key = tuple(event[1])
                info = self.running.pop(key, None)
                self.reported.pop(key, None)
                if key in self.ahead:
                    self.ahead[key]["ended"] = event[2] if len(event) > 2 else time.time()
                if info is not None and self.keep_ends:
                    self.ends[key] = (event[2] if len(event) > 2 else time.time(), info["worker"])
        elif kind == "attempt":
            record = event[1]
            with self.lock:
                # With the worker: under --dist each every worker runs the same items.
                self.records[(record["nodeid"], record["attempt"], record["worker"])] = record

    def print_lines(self, lines: list[str]) -> None:
        terminal = self.terminal
        if terminal is None:
            return
        with terminal.lock:
            area = self.area
            column = area.column if area is not None else 0
            text = ("\n" if column else "") + "\n".join(lines) + "\n"
            if area is not None:
                area.lines(text)
            else:
                terminal.raw(text)

    # -- pytest hooks (controller) ------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Before the worker starts: its channel goes to it inside workerinput.
        channel = node.gateway.newchannel()
        channel.setcallback(self.receive)
        node.workerinput[CHANNEL_KEY] = channel
        self.channels.append(channel)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        area = self.config.stash.get(AREA_KEY, None)
        if area is None:
            return
        writer = self.config.get_terminal_writer()
        self.terminal = Terminal(area.file, area.lock)
        if self.status_line or self.output or self.interval > 0:
            area.start(self.terminal, lambda: writer.fullwidth)
            self.area = area
        if self.status_line or self.interval > 0:
            self.thread = threading.Thread(target=self._tick, name="batchrunner-status", daemon=True)
            self.thread.start()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        self.total = sum(1 for item in items if isinstance(item, CommandItem))
        self._history_eta([item.nodeid for item in items if isinstance(item, CommandItem)])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.recording is None:
            return
        if not self.total:
            self.total = sum(1 for nodeid in ids if self.recording.is_batch_nodeid(nodeid))
            self._history_eta([nodeid for nodeid in ids if self.recording.is_batch_nodeid(nodeid)])
        elif getattr(self.recording, "each", False):
            # Under --dist each every worker runs every command: each run counts.
            self.total += sum(1 for nodeid in ids if self.recording.is_batch_nodeid(nodeid))

    def _history_eta(self, nodeids: list[str]) -> None:
        from pytest_batchrunner.plugin.history import HistoryEta, history

        past = history(self.config)
        estimates = past.estimates(nodeids) if past else None
        if estimates is not None:
            slots = getattr(getattr(self.recording, "recorder", None), "workers", 1)
            self.history_eta = HistoryEta(estimates, slots)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.keep_ends:
            self._not_ahead(nodeid)

    def _not_ahead(self, nodeid: str) -> None:
        if self.ahead:
            with self.lock:
                for key in [key for key in self.ahead if key[0] == nodeid]:
                    del self.ahead[key]

    def lost_with(self, worker: str) -> list[dict[str, Any]]:
        """The attempts a dead worker had started ahead of items not begun (as far as this process heard), as records.

        Each is one attempt of its item, killed with the worker (or, if it had
        ended, with its result lost); the worker's other running commands are forgotten.
        """
        now = time.time()
        with self.lock:
            for key in [key for key, info in self.running.items() if info["worker"] == worker]:
                del self.running[key]
                self.reported.pop(key, None)
            lost = [(key, self.ahead.pop(key)) for key in [k for k, i in self.ahead.items() if i["worker"] == worker]]
        records = []
        for key, info in lost:
            ended = info.get("ended")
            record = _record_from_start(key, info, now if ended is None else ended)
            del record["interrupted"]
            record["status"] = (
                f"killed with its worker after {record['duration_ms'] / 1000:.2f} s (started ahead of its turn)"
                if ended is None else "ended, but its worker died before reporting it (started ahead of its turn)"
            )
            records.append(record)
        return records

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.keep_ends and report.when != "setup":  # the call, the teardown, or xdist's crash report
            self._not_ahead(report.nodeid)
        if self.ends and report.when == "call":
            with self.lock:
                for key in [key for key in self.ends if key[0] == report.nodeid]:
                    del self.ends[key]
        if report.outcome == "rerun" or (report.when != "call" and not (report.when == "setup" and not report.passed)):
            return
        if self.recording is None or self.recording.is_batch_nodeid(report.nodeid):
            with self.lock:
                self.done += 1
                if self.history_eta is not None:
                    self.history_eta.finished(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.INTERRUPTED and self.keep_ends:
            self.interrupted_attempts()  # before the channels close
        self.close()

    keep_ends = False
    """Whether the commands run in xdist workers: their attempts are then known here by their events only."""

    def interrupted_attempts(self) -> list[dict[str, Any]]:
        """Under xdist, once the run is interrupted: the attempt records of the commands the workers were running.

        A worker that was interrupted too kills its command and sends its record
        (see :meth:`~pytest_batchrunner.plugin.items.CommandItem.record_interrupted`):
        wait for those of the attempts running now, at most the kill grace and a
        half second (at least 0.3 s, for attempts that ended just before). One
        that never came (a remote worker the stop did not reach) is made from its start
        event: run time up to its end event, else to the interruption; no output.
        Computed once; later calls give the same list.
        """
        if self.settled is not None:
            return self.settled
        from pytest_batchrunner.plugin.engine import ENGINE_KEY

        grace = self.config.stash[ENGINE_KEY].kill_grace
        begun, stopped = time.monotonic(), time.time()
        with self.lock:
            expected = dict(self.running)
            # Ended, never reported: a command that ran ahead of its item's turn (--batch-jobs), sent as its worker stops.
            ended = {key: worker for key, (_, worker) in self.ends.items() if key not in expected}
        while True:
            with self.lock:
                missing = [key for key, info in expected.items() if (*key, info["worker"]) not in self.records]
                missing += [key for key, worker in ended.items() if (*key, worker) not in self.records]
            now = time.monotonic()
            if (not missing and now >= begun + 0.3) or now >= begun + grace + 0.5:
                break
            time.sleep(0.02)
        with self.lock:
            records = list(self.records.values())
            for key in missing:
                info = expected.get(key)
                if info is None or (*key, info["worker"]) in self.records:
                    continue  # one that ended is not made up: its worker did not say how
                # Its worker kills it later, as the controller shuts the workers down: its run time
                # is counted to the interruption, what the reports can know of.
                records.append(_record_from_start(key, info, self.ends.get(key, (stopped,))[0]))
        self.settled = records
        return records

    def pytest_unconfigure(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the status and erase it (idempotent); the area writes on as pytest's file."""
        self.stop.set()
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.join(timeout=2)
        area, self.area = self.area, None
        if area is not None:
            area.clear()
        terminal, self.terminal = self.terminal, None
        if terminal is not None:
            terminal.close()
        for channel in self.channels:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - the worker may be gone already
                pass
        self.channels.clear()

    # -- the status -----------------------------------------------------------------------------

    def _tick(self) -> None:
        tick = min(TICK, self.interval / 5) if self.interval > 0 else TICK
        while not self.stop.wait(tick):
            try:
                if self.area is not None and self.status_line:
                    lines = self.status_lines(time.time())
                    if lines:
                        self.area.draw(lines)
                    else:
                        self.area.clear()
                if self.interval > 0:
                    self.report_long_running(time.time())
            except Exception:  # noqa: BLE001 - the status must never break the run
                pass

    def status_lines(self, now: float) -> list[str]:
        """The status area's lines: progress and ETA, then the running commands, longest first."""
        with self.lock:
            running = sorted(self.running.values(), key=lambda info: info["started"])
            done, total = self.done, self.total
            if self.history_eta is not None and total > done:
                eta: float | None = self.history_eta.seconds(
                    {key[0]: now - info["started"] for key, info in self.running.items()}
                )
            else:
                eta = eta_seconds(done, total, now - self.started)
        if not running:
            return []
        head = f"batchrunner: {done}/{total} done, {len(running)} running" if total else \
            f"batchrunner: {done} done, {len(running)} running"
        if eta is not None:
            head += f", ETA {format_elapsed(eta)}"
        lines = [head]
        for info in running[:STATUS_COMMANDS]:
            elapsed = format_elapsed(max(0.0, now - info["started"]))
            place = info["worker"] + (f" #{info['slot']}" if info["slot"] > 1 else "")
            lines.append(f"  {place:>8} {elapsed:>7}  {_printable(info['command'])}  ({info['where']})")
        if len(running) > STATUS_COMMANDS:
            lines.append(f"  ... and {len(running) - STATUS_COMMANDS} more")
        return lines

    def report_long_running(self, now: float) -> None:
        """Print a line for each command running past its next multiple of the interval."""
        due = []
        with self.lock:
            for key, info in self.running.items():
                count = int((now - info["started"]) // self.interval)
                if count > self.reported.get(key, 0):
                    self.reported[key] = count
                    due.append((count * self.interval, info))
        if due:
            self.print_lines([
                f"still running after {format_elapsed(after)}: {_printable(info['command'])} "
                f"({info['where']}, {info['worker']})"
                for after, info in due
            ])


def configure(config: pytest.Config, is_controller: bool) -> WorkerLive | None:
    """Set up live output and status for this process; the :class:`WorkerLive` for its items, if any."""
    output = bool(config.getoption("batch_live")) or config.getoption("capture", "fd") == "no"
    if not is_controller:
        channel = getattr(config, "workerinput", {}).get(CHANNEL_KEY)
        if channel is None:
            return None
        worker = config.workerinput.get("workerid", "?")  # type: ignore[attr-defined]
        return WorkerLive(channel.send, output, worker, delay=ANNOUNCE_DELAY)
    if not config.pluginmanager.hasplugin("terminal"):
        return None  # nothing to show it on (-p no:terminal, the Python API's quiet inner run)
    interval = config.getoption("batch_status_interval")
    source = "--batch-status-interval"
    if interval is None:
        ini = config.getini("batch_status_interval")
        source = "ini value batch_status_interval"
        try:
            from pytest_batchrunner.values import non_negative_float

            interval = non_negative_float(str(ini).strip()) if ini not in (None, "") else DEFAULT_INTERVAL
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None
    if 0 < interval < MIN_INTERVAL:
        # A line per long command every interval: 0.0001 s printed thousands of lines a second.
        raise pytest.UsageError(f"{source}: '{interval:g}' is too short: at least {MIN_INTERVAL:g} s, or 0 for no lines")
    tty = sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"
    # With -s, tests may print to the terminal behind the writer's back: no status area then.
    status_line = tty and config.getoption("capture", "fd") != "no" and not config.option.collectonly
    interval = 0.0 if tty else interval
    from pytest_batchrunner.plugin.remote import worker_specs

    # Under xdist the board also hears of what the workers run, for an interrupted run (see
    # LiveBoard.interrupted_attempts): xdist's controller stops reading reports when interrupted.
    distributed = bool(worker_specs(config))
    if not (output or status_line or interval > 0 or distributed):
        return None  # nothing to show: no watching at all
    board = LiveBoard(config, output, interval, status_line)
    board.keep_ends = distributed
    board.recording = config.stash.get(RECORDING_KEY, None)
    config.pluginmanager.register(board, "batchrunner-live")
    return WorkerLive(board.receive, output, "main")
