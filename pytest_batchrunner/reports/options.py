"""Report files written on the controller: options and registration.

Each report owns a module; this one only adds their options and registers the
writers that the options ask for. A writer may implement ``on_start(nodeid,
command)`` and ``on_attempt(record, outcome)`` (called as the run goes, via
:class:`~pytest_batchrunner.reports.results.Recorder` listeners) and ``finish(recorder)``
(called once at session finish, also when the run is interrupted).

* ``--junitxml`` (pytest's own): :mod:`~pytest_batchrunner.reports.junit` rewrites the batch testcases;
* ``--batch-json PATH``: :mod:`~pytest_batchrunner.reports.json`;
* ``--batch-log PATH``: :mod:`~pytest_batchrunner.reports.auditlog`;
* ``--batch-joblog PATH``: :mod:`~pytest_batchrunner.reports.joblog`;
* ``--batch-trace PATH``: :mod:`~pytest_batchrunner.reports.trace` (Chrome Trace Event JSON);
* ``--batch-html PATH``: :mod:`~pytest_batchrunner.reports.html`;
* ``--batch-markdown PATH``, and ``$GITHUB_STEP_SUMMARY`` when set: :mod:`~pytest_batchrunner.reports.markdown`.

Relative paths are taken from the directory pytest was started in. Before
anything runs, a report path that is a directory, the same file as another
report, or one of the batch files the run reads is a usage error naming both;
so is a log that cannot be opened. A report that
cannot be written at the end does not stop the others: the problem is shown
at the end of the terminal report and the run's exit status becomes 3
(internal error), as when pytest's own JUnit file cannot be written, so that
CI never mistakes a missing report for a good run.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.reports.files import ReportPathError, check_report_paths

JSON_HELP = (
    "Write the results as JSON to PATH, in the original BatchRunner's shape "
    '({"summary": ..., "results": [...]}); replaced atomically at the end of the run, '
    "also when it is interrupted."
)
LOG_HELP = (
    "Append an audit log to PATH: one '[YYYY-MM-DD HH:MM:SS] [LEVEL] message' line per event "
    "(run header, start and end of every attempt, retries, timeouts, killed leftovers, summary)."
)
JOBLOG_HELP = (
    "Write a job log to PATH in GNU parallel's --joblog format (tab-separated Seq, Host, Starttime, "
    "JobRuntime, Send, Receive, Exitval, Signal, Command), with a row for every attempt."
)

TRACE_HELP = (
    "Write the run's timeline to PATH as Chrome Trace Event JSON (open it in Perfetto or chrome://tracing): "
    "one event per attempt, a lane per worker and slot."
)
HTML_HELP = (
    "Write the run to PATH as one self-contained HTML file: the summary, a timeline chart (a lane per "
    "worker and slot, bars coloured by outcome) and the failed commands with their output."
)
MARKDOWN_HELP = (
    "Write the summary to PATH as Markdown (also appended to $GITHUB_STEP_SUMMARY when that is set)."
)
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
"""The file GitHub Actions renders on a run's page; the Markdown summary is appended to it when it is set."""


def _report_path(option: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{option} needs a file name")
        if os.path.isdir(os.path.expanduser(value)):
            raise argparse.ArgumentTypeError(f"{option} must be a file name, '{value}' is a directory")
        return value

    return convert


def add_options(group, parser: pytest.Parser) -> None:  # type: ignore[no-untyped-def]
    """Add the report options to the ``batchrunner`` option group."""
    group.addoption("--batch-json", dest="batch_json", metavar="PATH", default=None,
                    type=_report_path("--batch-json"), help=JSON_HELP)
    group.addoption("--batch-log", dest="batch_log", metavar="PATH", default=None,
                    type=_report_path("--batch-log"), help=LOG_HELP)
    group.addoption("--batch-joblog", dest="batch_joblog", metavar="PATH", default=None,
                    type=_report_path("--batch-joblog"), help=JOBLOG_HELP)
    group.addoption("--batch-trace", dest="batch_trace", metavar="PATH", default=None,
                    type=_report_path("--batch-trace"), help=TRACE_HELP)
    group.addoption("--batch-html", dest="batch_html", metavar="PATH", default=None,
                    type=_report_path("--batch-html"), help=HTML_HELP)
    group.addoption("--batch-markdown", dest="batch_markdown", metavar="PATH", default=None,
                    type=_report_path("--batch-markdown"), help=MARKDOWN_HELP)


def junit_path(config: pytest.Config) -> str | None:
    """``--junitxml`` as pytest's junitxml resolves it, or ``None``."""
    xmlpath = getattr(config.option, "xmlpath", None)  # None with -p no:junitxml
    if not xmlpath:
        return None
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(xmlpath))))


def input_files(config: pytest.Config, patterns: list[str], reports: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The files among *reports* that this run would read as batch files (named, or under a named folder)."""
    base = config.invocation_params.dir
    args = [base / arg.split("::", 1)[0] for arg in (config.args or [str(base)])]
    found = []
    for _, path in reports:
        # As written: "missing/../x.batch" is x.batch (see files.write_atomically).
        real = os.path.realpath(path)
        # A pattern with a "/" matches a path (see plugin.discovery): any path ending so.
        if not any(fnmatch.fnmatch(real if "/" in p else os.path.basename(real), f"*/{p}" if "/" in p else p)
                   for p in patterns) or not os.path.isfile(real):
            continue
        for arg in args:
            root = os.path.realpath(arg)
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                found.append(("the batch file", path))
                break
    return found


def check_paths(config: pytest.Config, patterns: list[str]) -> None:
    """Refuse unusable report paths before anything runs (a usage error naming them)."""
    base = config.invocation_params.dir
    reports: list[tuple[str, Path]] = []
    junit = junit_path(config)
    if junit is not None:
        reports.append(("--junitxml", Path(junit)))
    for option, dest in (
        ("--batch-json", "batch_json"),
        ("--batch-log", "batch_log"),
        ("--batch-joblog", "batch_joblog"),
        ("--batch-trace", "batch_trace"),
        ("--batch-html", "batch_html"),
        ("--batch-markdown", "batch_markdown"),
    ):
        value = config.getoption(dest, None)
        if value:
            reports.append((option, base / os.path.expanduser(value)))
    step_summary = os.environ.get(STEP_SUMMARY, "").strip()
    if step_summary:
        # Appended to, never replaced; still not into a batch file or another report.
        reports.append((f"${STEP_SUMMARY}", base / step_summary))
    try:
        check_report_paths(reports, input_files(config, patterns, reports))
    except ReportPathError as exc:
        raise pytest.UsageError(str(exc)) from None


def configure(config: pytest.Config, recording, timeout: float | None) -> None:  # type: ignore[no-untyped-def]
    """Register the writers the options ask for (controller only); *timeout* is the run's default, for the log's header."""
    check_paths(config, recording.discovery.patterns)
    files = ReportFiles()
    base = config.invocation_params.dir

    def resolve(value: str) -> Path:
        return base / os.path.expanduser(value)

    recorder = recording.recorder
    if config.getoption("batch_json"):
        from pytest_batchrunner.reports.json import JsonReport

        path = resolve(config.getoption("batch_json"))
        files.add("--batch-json", path, JsonReport(path))
    if config.getoption("batch_trace"):
        from pytest_batchrunner.reports.trace import TraceReport

        path = resolve(config.getoption("batch_trace"))
        files.add("--batch-trace", path, TraceReport(path))
    if config.getoption("batch_html"):
        from pytest_batchrunner.reports.html import HtmlReport

        path = resolve(config.getoption("batch_html"))
        files.add("--batch-html", path, HtmlReport(path))
    step_summary = os.environ.get(STEP_SUMMARY, "").strip()
    if config.getoption("batch_markdown") or step_summary:
        from pytest_batchrunner.reports.markdown import MarkdownReport, MarkdownText

        text = MarkdownText()
        if config.getoption("batch_markdown"):
            path = resolve(config.getoption("batch_markdown"))
            files.add("--batch-markdown", path, MarkdownReport(path, text=text))
        if step_summary:
            files.add(f"${STEP_SUMMARY}", Path(step_summary), MarkdownReport(step_summary, append=True, text=text))
    for option, dest in (("--batch-log", "batch_log"), ("--batch-joblog", "batch_joblog")):
        if not config.getoption(dest):
            continue
        path = resolve(config.getoption(dest))
        try:
            if dest == "batch_log":
                from pytest_batchrunner.reports.auditlog import AuditLog

                writer: Any = AuditLog(path, recorder, timeout=timeout)
                if config.getoption("batch_json"):  # written first, at the end (see ReportFiles.finish)
                    writer.saved.append(str(resolve(config.getoption("batch_json"))))
            else:
                from pytest_batchrunner.reports.joblog import JobLog

                writer = JobLog(path, recorder)
        except OSError as exc:
            raise pytest.UsageError(f"{option} {path}: cannot open: {exc.strerror or exc}") from None
        recorder.listeners.append(writer)
        files.add(option, path, writer)
    if files.writers:
        recording.writers.append(files)
    junit = bool(getattr(config.option, "xmlpath", None))  # None with -p no:junitxml
    if junit:
        from pytest_batchrunner.reports.junitxml import JUnitReport

        config.pluginmanager.register(JUnitReport(config, recording, files.guard), "batchrunner-junit")
    if files.writers or junit:
        config.pluginmanager.register(files, "batchrunner-reportfiles")



class ReportFiles:
    """The run's report writers: finishes each one, and makes a failure to write any of them loud.

    Registered as a writer of :class:`~pytest_batchrunner.plugin.recording.BatchRecording` and as a pytest plugin.
    """

    def __init__(self) -> None:
        self.writers: list[tuple[str, Path, Any]] = []
        self.problems: list[str] = []

    def add(self, option: str, path: Path, writer: Any) -> None:
        """Finish *writer*, which writes *path* for *option*, at the end of the run."""
        self.writers.append((option, path, writer))

    def guard(self, option: str, path: str | os.PathLike[str], action: Callable[[], None]) -> None:
        """Run *action*; if it fails, record the problem instead of stopping the other reports."""
        try:
            action()
        except OSError as exc:
            # The OS's words (permission denied, no space left on device), no traceback.
            self.problems.append(f"{option} {path}: not written: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - any failure must leave the other reports written
            self.problems.append(f"{option} {path}: not written: {type(exc).__name__}: {exc}")

    def finish(self, recorder: Any) -> None:
        """Finish every writer (also after an interruption)."""
        for option, path, writer in self.writers:
            self.guard(option, path, functools.partial(writer.finish, recorder))
            # The logs keep going when a line cannot be written; say so now.
            error = getattr(getattr(writer, "file", None), "error", None)
            if error is not None:
                self.problems.append(f"{option} {path}: incomplete, a write failed: {error}")

    def pytest_unconfigure(self) -> None:
        # Also when finish() never ran (nothing collected, a usage error): the
        # Python API runs pytest in-process, again and again.
        for _, _, writer in self.writers:
            close = getattr(writer, "close", None)
            if close is not None:
                close()

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        result = yield
        # After every implementation: the JUnit rewrite runs trylast.
        if self.problems and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return result

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        if not self.problems:
            return
        terminalreporter.write_sep("=", "BatchRunner report errors", red=True, bold=True)
        for problem in self.problems:
            terminalreporter.write_line(problem, red=True)
