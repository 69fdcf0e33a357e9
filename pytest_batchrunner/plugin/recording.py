"""The controller side of a run: turns pytest reports into a :class:`~pytest_batchrunner.reports.results.Recorder`.

Registered in the process that prints the terminal report (the xdist
controller, or the only process without xdist). Every attempt's data reaches
it on ``report.batch``, which pytest-xdist serialises with the report; each
rerun arrives as its own report, so reruns are counted wherever they ran.
Reports are told to the recorder with the worker that sent them: an item run
more than once (``--keep-duplicates``, ``--dist each``) is a command per run.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.batchfile import BatchFileError, group_key, item_names, parse_batch_text, split_nodeid
from pytest_batchrunner.plugin.batchtexts import text_of
from pytest_batchrunner.plugin.engine import ATTEMPT_ENDED_KEY, ATTEMPT_STARTED_KEY, ONLY_COMMANDS_KEY, REMOTE_KEY
from pytest_batchrunner.plugin.remote import worker_specs
from pytest_batchrunner.reports.results import Recorder
from pytest_batchrunner.reports.summary import write_terminal_summary


class BatchRecording:
    """pytest hooks that feed the recorder and print the BatchRunner summary."""

    def __init__(self, config: pytest.Config, discovery: Any) -> None:
        self.config = config
        self.discovery = discovery
        # One per xdist gateway (``-n 4``, ``--tx 2*ssh=...``), or this process alone.
        workers = len(worker_specs(config)) or 1
        jobs = getattr(config.option, "batch_jobs", None) or 1
        parallel = workers > 1 or jobs > 1
        self.recorder = Recorder(
            mode="parallel" if parallel else "sequential",
            max_retries=int(getattr(config.option, "reruns", 0) or 0),
            workers=workers * jobs,
        )
        self._is_batch: dict[str, bool] = {}
        self.remote = config.stash.get(REMOTE_KEY, None)
        self.only_commands: bool | None = None
        """Under xdist: whether every worker collected batch commands alone (None before the first)."""
        # Under --dist each every worker runs every item it collected: each is a run of its own.
        self.each = getattr(config.option, "dist", "no") == "each"
        self._collections = 0
        self._collected: set[str] = set()
        self._replacing = 0
        self.workers_died = 0
        """Under --dist each: dead workers that had collected, whose replacements take over their runs."""
        self.lost_ahead: set[tuple[str, str]] = set()
        """``(nodeid, worker)`` of the attempts a dead worker had started ahead (see :meth:`pytest_testnodedown`)."""
        self.writers: list[Any] = []
        config.stash[ATTEMPT_STARTED_KEY] = self.attempt_started
        config.stash[ATTEMPT_ENDED_KEY] = self.attempt_ended

    def attempt_started(self, nodeid: str, number: int, max_attempts: int, started: float) -> None:
        """An attempt's command has started in this process (any thread): tell the listeners that care."""
        nodeid = self.key(nodeid)
        for listener in self.recorder.listeners:
            on_command_start = getattr(listener, "on_command_start", None)
            if on_command_start is not None:
                on_command_start(nodeid, number, max_attempts, started)

    def attempt_ended(self, item: Any, number: int, attempt: Any, rerun: bool) -> None:
        """A command started ahead of its item's turn ended, in a job slot (any thread): tell the listeners that care.

        They get the attempt's record, and the outcome the slot expects (``"rerun"``, ``"passed"`` or ``"failed"``); pytest's report
        of it follows in the item's turn (:meth:`pytest_runtest_logreport`).
        """
        listeners = [lsn.on_command_end for lsn in self.recorder.listeners if hasattr(lsn, "on_command_end")]
        if not listeners:
            return
        record = item.record_of(number, attempt)
        record["nodeid"] = self.key(record["nodeid"])
        if attempt.interrupted:  # killed as the run stopped
            record["interrupted"] = True
        outcome = "rerun" if rerun else "passed" if attempt.success else "failed"
        for on_command_end in listeners:
            on_command_end(record, outcome)

    def unreported_attempt(self, record: dict[str, Any], outcome: str) -> None:
        """An attempt pytest reports nothing of (the run stopped), with its *outcome*: ``interrupted`` (killed as
        the run stopped), or, for one that ran ahead of its item's turn, ``rerun``, ``passed`` or ``failed``; main thread."""
        nodeid = self.key(record["nodeid"])
        if record["nodeid"] != nodeid:
            record = {**record, "nodeid": nodeid}
        # Its run is the one its worker began (the record names the worker as _worker() does).
        worker = record.get("worker") or "main"
        self.recorder.attempt(record, outcome, worker)
        if outcome in ("passed", "failed"):
            self.recorder.outcome(nodeid, outcome, "" if record["success"] else record["status"], worker)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """A worker died: the commands it had started ahead of their items are attempts of theirs.

        xdist runs those items again elsewhere, as further attempts of the same runs, but the first of them,
        which it reports as crashed: its crash report is the outcome of that attempt, not one more."""
        self.workers_died += error is not None
        if error is not None and self.each and node.gateway.id in self._collected:
            self._replacing += 1
        board = self.config.pluginmanager.get_plugin("batchrunner-live")
        if error is None or board is None:
            return
        from pytest_batchrunner.plugin.remote import host_name

        worker = node.gateway.id
        for record in board.lost_with(worker):
            nodeid = self.key(record["nodeid"])
            entry = self.recorder.info(nodeid)
            if entry is None:
                continue
            record.update(nodeid=nodeid, command=entry.command, file=entry.file, line=entry.line,
                          host=host_name(node.gateway.spec))
            self.recorder.attempt(record, "rerun", worker)
            self.recorder.lost(nodeid, worker)
            self.lost_ahead.add((nodeid, worker))

    def key(self, nodeid: str) -> str:
        """*nodeid* without the ``@group`` suffix xdist's ``--dist loadgroup`` adds on workers."""
        at = nodeid.rfind("@")
        if at > nodeid.rfind("]") and at > nodeid.find("::") >= 0 and nodeid not in self.recorder:
            base = nodeid[:at]
            if base in self.recorder:
                return base
        return nodeid

    def is_batch_nodeid(self, nodeid: str) -> bool:
        """Whether *nodeid* names a command of a batch file (decided by its file's name or path)."""
        path = split_nodeid(nodeid)[0]
        known = self._is_batch.get(path)
        if known is None and self.remote is not None and self.remote.knows(nodeid):
            known = self._is_batch[path] = True
        if known is None:
            known = self._is_batch[path] = self.discovery.is_command_id(nodeid)
        return known

    # -- what is going to run -------------------------------------------------------------
    #
    # The commands the reports speak of are the session's *final* items: what
    # is deselected or filtered out, by any means (-k, -m, --deselect, --lf,
    # pytest-split, pytest-shard, any plugin that edits ``items``), is left out
    # of the summary and every report, never counted as "not run". In-process
    # that is ``session.items`` once collection has finished (after every
    # ``pytest_collection_modifyitems``); under xdist, the ids a worker reports
    # it collected (the same hooks ran there).

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        self.expect_selected(item for item in session.items if isinstance(item, CommandItem))

    def expect_selected(self, items) -> None:  # type: ignore[no-untyped-def]
        """Announce the command items selected to run: the only ones the reports count."""
        for item in items:
            self.recorder.expect(item.nodeid, item.spec.reported, item.spec.path, item.spec.line)

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist may be absent or disabled (-p no:xdist)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:  # type: ignore[no-untyped-def]
        # The controller collects nothing: whether the run is batch commands alone
        # (see the plugin's pytest_unconfigure) is what every worker collected.
        self.only_commands = self.only_commands is not False and bool(ids) and all(map(self.is_batch_nodeid, ids))
        if any(map(self.is_batch_nodeid, ids)):
            from pytest_batchrunner.plugin.engine import refuse_retry_plugins

            refuse_retry_plugins(self.config)
        self.config.stash[ONLY_COMMANDS_KEY] = self.only_commands
        if self.each and self._replacing:
            # xdist hands a replacement the runs its dead worker had left: they are expected already.
            self._replacing -= 1
            return
        self._collected.add(node.gateway.id)
        # The controller collects nothing under xdist; it re-reads the batch files
        # (cheap) to know every command that is meant to run, for interrupted runs:
        # one worker's collection (the others are the same, and share its items),
        # or under --dist each every worker's (each runs all of them).
        self._collections += 1
        if self._collections > 1 and not self.each:
            return
        if not self.each:
            # An id collected twice (--keep-duplicates) runs twice under --dist load
            # and worksteal, once under the load-scope schedulers (theirs, and ours
            # for groups and history order, see .pipelines): expected once, a second
            # run is added when it starts.
            ids = list(dict.fromkeys(ids))
        if self.remote is not None:
            # A remote worker's ids name its copies: what it sent is the truth (see .remote).
            for nodeid in ids:
                found = self.remote.collected.get(nodeid)
                if found is not None:
                    self.recorder.expect(nodeid, found.command, found.path, found.line)
            return
        by_file: dict[str, list[str]] = defaultdict(list)
        for nodeid in ids:
            if self.is_batch_nodeid(nodeid):
                by_file[split_nodeid(nodeid)[0]].append(nodeid)
        for rel, nodeids in by_file.items():
            path = Path(self.config.rootpath, rel)
            try:
                specs = parse_batch_text(text_of(self.config, path), rel)
            except (OSError, BatchFileError):
                continue
            # A count, not a set: under --dist each an item collected twice runs twice.
            wanted = Counter(nodeids)
            for spec, name in zip(specs, item_names(specs), strict=True):
                nodeid = f"{rel}::{name}"
                # Under an explicit --dist loadgroup, pytest < 9.2 lets xdist add "@group" on the workers.
                for _ in range(wanted[nodeid] + wanted[f"{nodeid}@{group_key(spec)}"]):
                    self.recorder.expect(nodeid, spec.reported, spec.path, spec.line)

    # -- what ran -------------------------------------------------------------------------

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:  # type: ignore[no-untyped-def]
        if self.is_batch_nodeid(nodeid):
            self.recorder.start(self.key(nodeid))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_batch_nodeid(report.nodeid):
            return
        nodeid = self.key(report.nodeid)
        # A run is the nodeid on one worker: the same item may run more than once
        # (--keep-duplicates, --dist each), each run a command of its own.
        worker = _worker(report)
        if report.when == "setup":  # the first report of every attempt
            self.recorder.begin(nodeid, worker)
        record = getattr(report, "batch", None)
        if record is not None and record["nodeid"] != nodeid:
            record = {**record, "nodeid": nodeid}
        crashed = report.when not in ("setup", "call", "teardown")
        if record is None and crashed and report.outcome in ("failed", "rerun") and (nodeid, worker) not in self.lost_ahead:
            # pytest-xdist's report for an item whose worker died under it.
            record = _crash_record(report, nodeid, self.recorder, worker)
        if record is not None:
            self.recorder.attempt(record, report.outcome, worker)
        if report.outcome == "rerun":
            if crashed:
                # Its rerun runs on another worker.
                self.recorder.lost(nodeid, worker)
            return
        if report.when not in ("setup", "teardown"):  # "call", or xdist's crash report
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            else:
                outcome = report.outcome
            self.recorder.outcome(nodeid, *_known(outcome, _message(report, record)), worker)
        elif report.when == "setup" and not report.passed:
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.recorder.outcome(nodeid, *_known(outcome, _message(report, record)), worker)
        elif report.when == "teardown" and report.failed:
            self.recorder.outcome(nodeid, "failed", "teardown failed", worker)

    # -- the end --------------------------------------------------------------------------

    internal_error = False
    exited = False

    def pytest_internalerror(self) -> None:
        self.internal_error = True

    def pytest_keyboard_interrupt(self) -> None:
        self.exited = True  # Ctrl+C, or pytest.exit() (whatever its return code)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.recorder.finished = time.time()
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # refused before any command ran: no report claims a run
        if self.internal_error and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            # pytest-xdist goes on after a worker's INTERNALERROR: the run still says it had one.
            session.exitstatus = exitstatus = pytest.ExitCode.INTERNAL_ERROR
        # An INTERNALERROR (of any plugin) stops the run as Ctrl+C would: what was running is not a pass.
        stopped = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        self.recorder.interrupted = stopped or bool(session.shouldstop)
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self._workers_interrupted_attempts()
        if not len(self.recorder):
            return
        if not (self.recorder.interrupted or session.shouldfail or self.exited or self.workers_died):
            # Nothing stopped the run (-x, --maxfail, a dead worker not replaced once --max-worker-restart
            # is used up), yet a command has no outcome: its report was lost on the way.
            self.recorder.fail_unfinished("lost: no report of it reached the reports")
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            # pytest prints no terminal summary after an INTERNALERROR: ours still says what ran.
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                self.pytest_terminal_summary(terminal)
        if exitstatus == pytest.ExitCode.OK and self.recorder.summary()["failed"]:
            # A failure pytest did not count (another plugin's outcome, a lost report): the exit status says it too.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        for writer in self.writers:
            writer.finish(self.recorder)
        if self.recorder.spool_problem:
            warnings.warn(pytest.PytestWarning(self.recorder.spool_problem), stacklevel=1)

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        self.summary_printed = True
        # Printed only when batch items ran (not for a run that selected none of them).
        if not self.recorder.active:
            return
        write_terminal_summary(terminalreporter, self.recorder.summary(), self.recorder.results())
        count = getattr(self.config.option, "count", None)
        if self.config.pluginmanager.has_plugin("repeat") and isinstance(count, int) and count > 1:
            terminalreporter.write_line(
                f"pytest-batchrunner: --count {count} (pytest-repeat) repeats Python tests only: each batch command ran once"
            )

    summary_printed = False

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        try:
            # A plugin that replaces pytest's terminal reporter (pytest-rich's
            # --rich) also drops the pytest_terminal_summary hook: print it here.
            if not self.summary_printed and config.pluginmanager.getplugin("terminalreporter") is None \
                    and config.pluginmanager.hasplugin("rich-terminal-reporter"):
                self.pytest_terminal_summary(PlainTerminal())
        finally:
            self.recorder.close()

    def _workers_interrupted_attempts(self) -> None:
        """Under xdist: record the attempts the workers were running when the run was interrupted.

        pytest-xdist's controller stops reading the workers' reports as soon as
        it is interrupted. A worker interrupted too (a Ctrl+C reaches the whole
        process group) kills its command and sends its attempt over the live
        channel; the board waits a moment for them (see
        :meth:`~pytest_batchrunner.plugin.live.LiveBoard.interrupted_attempts`). An attempt
        not heard from then (a remote worker the stop did not reach) is recorded
        from what the board knows: its start, its run time to the interruption, no output.
        """
        board = self.config.pluginmanager.get_plugin("batchrunner-live")
        if board is None or not worker_specs(self.config):
            return
        for record in board.interrupted_attempts():
            nodeid = self.key(record["nodeid"])
            entry = self.recorder.info(nodeid, record.get("worker"))
            if entry is None or entry.attempts >= record["attempt"]:
                continue  # reported already (or not a command of this run)
            if not record.get("command"):
                record.update(command=entry.command, file=entry.file, line=entry.line)
            self.unreported_attempt(record, record.pop("outcome", "interrupted"))


class PlainTerminal:
    """The two methods of pytest's terminal reporter the summary uses, writing plain text to stdout."""

    def write_sep(self, sep: str, title: str, **markup: bool) -> None:
        width = shutil.get_terminal_size().columns
        print(f" {title} ".center(width, sep), flush=True)

    def write_line(self, line: str, **markup: bool) -> None:
        print(line, flush=True)


def _known(outcome: str, message: str) -> tuple[str, str]:
    """*outcome* and *message*, or for another plugin's state ("retried"...) ``failed`` with that state in the message."""
    if outcome in ("passed", "failed", "skipped", "xfailed", "xpassed"):
        return outcome, message
    return "failed", f"{outcome}: {message}" if message else outcome


def _message(report: pytest.TestReport, record: dict[str, Any] | None) -> str:
    if report.skipped:
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reason = str(longrepr[2])
            return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
        return getattr(report, "wasxfail", "") or "skipped"
    if record is not None:
        return record["status"] if not record["success"] else ""
    if report.failed:
        text = str(report.longrepr or "").strip().splitlines()
        return text[-1][:300] if text else "failed"
    return ""


def _worker(report: pytest.TestReport) -> str:
    """The xdist worker that sent *report*, as its records name it (see ``CommandItem.attempt_record``)."""
    worker = getattr(report, "worker_id", None)  # set by pytest-xdist on a worker's reports
    if worker is None:
        gateway = getattr(getattr(report, "node", None), "gateway", None)  # xdist's crash report
        # Else this process ran it: "main", or the outer worker of a run nested in a test under -n.
        worker = getattr(gateway, "id", None) or os.environ.get("PYTEST_XDIST_WORKER", "main")
    return worker


def _crash_record(report: pytest.TestReport, nodeid: str, recorder: Recorder, worker: str) -> dict[str, Any]:
    import datetime
    import time

    entry = recorder.info(nodeid, worker)
    text = str(report.longrepr or "worker crashed").strip()
    now = time.time()
    return {
        "nodeid": nodeid,
        "command": entry.command if entry else report.nodeid,
        "file": entry.file if entry else None,
        "line": entry.line if entry else None,
        "attempt": (entry.attempts if entry else 0) + 1,
        "success": False,
        "exit_code": None,
        "signal": None,
        "timed_out": False,
        "timeout": None,
        "status": "worker crashed (the worker process died while running the command)",
        "stdout": "",
        "stderr": text,
        "stdout_bytes": 0,
        "stderr_bytes": len(text.encode()),
        "started": now,
        "timestamp": datetime.datetime.fromtimestamp(now).astimezone().isoformat(timespec="milliseconds"),
        "duration_ms": round(float(getattr(report, "duration", 0.0)) * 1000, 3),
        "leftovers": [],
        "expected_exit": 0,
        "worker": worker if worker != "main" else "?",
        "host": _host(report),
        "pid": None,
    }


def _host(report: pytest.TestReport) -> str:
    """The host of the xdist worker that sent *report* (see :mod:`~pytest_batchrunner.plugin.remote`)."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    if gateway is None:
        return ":"
    from pytest_batchrunner.plugin.remote import host_name

    return host_name(gateway.spec)
