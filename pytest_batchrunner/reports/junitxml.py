"""The pytest plugin that lets pytest's junitxml write a spool, then writes the report from it (see :mod:`.junit`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.junit import PytestCounts, junit_chunks, logged_streams
from pytest_batchrunner.reports.results import Recorder

__all__ = ["JUnitReport"]

_SEARCH = 256


class JUnitReport:
    """pytest plugin, registered on the controller when ``--junitxml`` is given.

    pytest's junitxml writes into a spool file of ours (``--junitxml`` pointed at
    it, before pytest's junitxml reads the option); the report path itself is
    written once, at the end, from the spool and the results.
    """

    def __init__(
        self, config: pytest.Config, recording: Any, guard: Callable[[str, str, Callable[[], None]], None]
    ) -> None:
        xmlpath = config.getoption("xmlpath")
        # The same path as pytest's junitxml computes, at the same moment (configure).
        self.path = os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(xmlpath))))
        self.prefix = config.getoption("junitprefix", None)
        family = config.getini("junit_family")
        self.family = "xunit1" if family == "legacy" else family
        self.log_passing = bool(config.getini("junit_log_passing_tests"))
        self.streams = logged_streams(config.getini("junit_logging"))
        self.suite_name = config.getini("junit_suite_name")
        self.recording = recording
        self.guard = guard
        self.counted = PytestCounts()
        self.ordered: list[Any] | None = None
        """pytest's junitxml's list of the testcases it built (see :meth:`_drop_testcase`)."""
        self.placeholder: Any = None
        self.open: dict[tuple[str, Any], Any] = {}
        self.config = config
        self.xmlpath = xmlpath
        fd, self.spool = _spool_file(self.path)
        os.close(fd)
        # Read by pytest's junitxml in its pytest_configure, which runs after ours.
        config.option.xmlpath = self.spool

    def _is_command(self, nodeid: str) -> bool:
        return "::" in nodeid and self.recording.is_batch_nodeid(nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport):  # type: ignore[no-untyped-def]
        if not self._is_command(report.nodeid):
            return (yield)
        self.counted.add(report)
        ordered = self.ordered
        before = len(ordered) if ordered is not None else 0
        try:
            return (yield)
        finally:
            if ordered is not None:
                self._drop_testcase(ordered, report, before)

    # pytest's junitxml keeps every testcase it built (an element tree per item)
    # until the session ends; the rewrite replaces the commands' testcases
    # anyway. Only the first is kept, to mark where ours go; the others are let
    # go of as soon as pytest has finished them, so that its copies do not grow
    # with the number of commands (about 1.4 kB a command). pytest has no public
    # way to this list (docs/internals.md): without it, nothing is dropped.

    def _drop_testcase(self, ordered: list[Any], report: pytest.TestReport, before: int) -> None:
        if len(ordered) == before + 1:
            # This report opened the item's testcase: remember it until teardown.
            if self.placeholder is None:
                self.placeholder = ordered[-1]
            elif report.when != "teardown":
                self.open[(report.nodeid, getattr(report, "node", None))] = ordered[-1]
                return
        if report.when != "teardown":
            return
        reporter = self.open.pop((report.nodeid, getattr(report, "node", None)), None)
        if reporter is None:
            return
        # It was appended a few items ago at most (the items in flight).
        for index in range(len(ordered) - 1, max(-1, len(ordered) - 1 - _SEARCH), -1):
            if ordered[index] is reporter:
                del ordered[index]
                break

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # pytest's junitxml has its path by now: the option says the user's
        # again (for xdist's workers, started later, and any other reader).
        session.config.option.xmlpath = self.xmlpath
        for plugin in session.config.pluginmanager.get_plugins():
            if getattr(plugin, "logfile", None) == self.spool:
                ordered = getattr(plugin, "node_reporters_ordered", None)
                self.ordered = ordered if isinstance(ordered, list) else None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # trylast: pytest's junitxml has written the spool in its own pytest_sessionfinish.
        self.guard("--junitxml", self.path, lambda: self.write(self.recording.recorder))
        # pytest's "generated xml file" line must name the user's path, not the spool.
        for plugin in session.config.pluginmanager.get_plugins():
            if getattr(plugin, "logfile", None) == self.spool:
                plugin.logfile = self.path

    def pytest_unconfigure(self) -> None:
        if self.spool is not None:
            try:
                os.unlink(self.spool)
            except OSError:
                pass
            self.spool = None

    def write(self, recorder: Recorder) -> None:
        """Rewrite the file with the batch testcases of *recorder*, streamed from its spool."""
        data = _read(self.spool)
        if not data and os.path.isfile(self.path):
            # pytest's junitxml read the option before us and wrote the report path itself.
            data = _read(self.path)
        if not len(recorder):
            write_atomically(self.path, data or b"")
            return
        chunks = junit_chunks(
            data,
            recorder.results_with_records,
            counted=self.counted,
            prefix=self.prefix,
            family=self.family,
            log_passing=self.log_passing,
            streams=self.streams,
            suite_name=self.suite_name,
        )
        write_atomically(self.path, chunks)


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _spool_file(report: str) -> tuple[int, str]:
    """A temporary file for pytest's junitxml: beside a regular *report* (its disk must take the report anyway,
    and pytest cannot be kept from failing on a full ``$TMPDIR``), else in ``$TMPDIR``."""
    folder = os.path.dirname(os.path.abspath(report))
    if os.path.isdir(folder) and (not os.path.lexists(report) or os.path.isfile(report)):
        try:
            return tempfile.mkstemp(prefix=".batchrunner-junit-", suffix=".xml", dir=folder)
        except OSError:
            pass
    return tempfile.mkstemp(prefix="batchrunner-junit-", suffix=".xml")
