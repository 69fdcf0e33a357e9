"""One in-process pytest run of the plugin, for :meth:`BatchRunner.run <batchrunner.api.BatchRunner.run>`.

Imported by :mod:`~batchrunner.api` only when a run starts, so that the
API, and the ``batchrunner`` command, can start the first commands (see
:mod:`~pytest_batchrunner.process.prestart`) while pytest is still being imported.

The run is isolated from the caller (see :func:`_pytest_arguments`): it reads
no ``conftest.py``, ini file, ``pyproject.toml`` or ``PYTEST_ADDOPTS``, loads
only the plugins it needs, writes no ``.pytest_cache``, prints nothing but the
original's lines (``verbose=True``), and leaves the process as it found it, so it can be called from inside a
running pytest test. Commands run in the caller's current directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import glob
import importlib
import os
import re
import shlex
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from pytest_batchrunner.batchfile import CommandSpec
from pytest_batchrunner.plugin.engine import ENVIRONMENT_KEY, JOBS_KEY, PRESTART_KEY, RECORDING_KEY
from pytest_batchrunner.plugin.items import BatchFile
from pytest_batchrunner.process.prestart import Prestart
from pytest_batchrunner.process.command import Attempt
from pytest_batchrunner.process.signals import DeferredSignals
from pytest_batchrunner.reports.results import CommandResult


__all__ = ["InnerRun"]


class RunSettings(Protocol):
    """What a run needs of its :class:`~batchrunner.api.BatchRunner` (a protocol, so that this module does not import it)."""

    batch_file: Path | None
    mode: str
    max_retries: int
    retry_delay_sec: float
    timeout_sec: float | None
    log_file: Any
    junitxml: Any
    capture_bytes: int
    start_time: Any

    def _jobs(self) -> int: ...

# Environment variables through which the caller's settings would reach the
# inner run. They are hidden only while pytest reads its arguments, so the
# commands still see them.
CALLER_SETTINGS = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")

# Plugins the engine does without: each would touch the caller's process
# (faulthandler, logging handlers, the unraisable/thread exception hooks and
# their garbage collections, file descriptors), print (terminal), write files
# (cacheprovider, which stepwise needs), collect Python files (python), or, for
# xdist, make pytest-rerunfailures start a socket server thread that outlives
# the run.
BLOCKED_PLUGINS = (
    "terminal",
    "capture",
    "cacheprovider",
    "stepwise",
    "faulthandler",
    "logging",
    "unraisableexception",
    "threadexception",
    "python",
    "xdist",
    "xdist.looponfail",
)
# Plugin autoloading is off in the inner run (PYTEST_DISABLE_PLUGIN_AUTOLOAD
# while it reads its arguments): the engine's plugins are handed to
# pytest.main as modules. Naming them (``-p timeout``) would make pytest scan
# every installed distribution's entry points, about 20 ms per run.
ENGINE_PLUGINS = ("pytest_timeout", "pytest_rerunfailures", "pytest_batchrunner.plugin")


class _Refused(Exception):
    """pytest refused the inner run's arguments (see :attr:`InnerRun.usage_error`); raised through :func:`pytest.main`."""


API_ARGUMENTS = {
    "--batch-log": "log_file",
    "--junitxml": "junitxml",
    "--timeout": "timeout_sec",
    "--reruns-delay": "retry_delay_sec",
    "--reruns": "max_retries",
    "--batch-jobs": "workers",
}
"""The inner run's options, by the API arguments they come from: its error messages name the arguments
(the ``batchrunner`` command gives its own options' names: see ``BatchRunner._names_in_messages``)."""
_OPTIONS = re.compile("|".join(rf"(?<![\w-]){re.escape(option)}(?![\w-])" for option in API_ARGUMENTS))


class InnerRun:
    """One :meth:`BatchRunner.run`: the arguments and plugin object for :func:`pytest.main`.

    Registered as a plugin of the inner run, it restores the environment once
    pytest has read its arguments, collects a command list from memory, prints
    the original's lines (verbose), and keeps the recorder's results at the end of the session.
    """

    def __init__(
        self,
        runner: RunSettings,
        target: Path,
        specs: list[CommandSpec] | None,
        prestart: Prestart | None,
        console: IO[str] | None,
        interrupts: DeferredSignals | None = None,
    ) -> None:
        self.runner = runner
        self.target = target
        """The batch file, or the command list's stand-in file."""
        self.specs = specs
        """The commands collected from *target* (None: pytest parses the file, and reports what is wrong with it)."""
        self.prestart = prestart
        self.console = console
        """Where the original's lines go as the run goes (``verbose=True``: stdout), or None."""
        self.interrupts = interrupts
        self.interrupt_at_start: DeferredSignals | None = None
        """Ctrl+C held since before pytest started; let through when the first item runs (see pytest_runtest_protocol)."""
        self.hidden: dict[str, str] = {}
        self.set_for_parsing: dict[str, str] = {}
        self.usage_error: pytest.UsageError | None = None
        self.outcome: tuple[list[CommandResult], dict[str, Any]] | None = None
        """The results and the summary, once the session has finished."""
        self.report_files: Any = None
        """The run's :class:`~pytest_batchrunner.reports.options.ReportFiles`, if any: its problems are raised."""

    def main(self, rootdir: Path) -> None:
        """Run pytest on :attr:`target` in *rootdir*; :attr:`outcome` holds the results, also when this raises."""
        args = _pytest_arguments(self.runner, rootdir)
        current_test = os.environ.get("PYTEST_CURRENT_TEST")
        self.hidden = {name: os.environ.pop(name) for name in CALLER_SETTINGS if name in os.environ}
        self.set_for_parsing = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        os.environ.update(self.set_for_parsing)
        frozen = gc.get_freeze_count()
        try:
            plugins = [self, *(importlib.import_module(name) for name in ENGINE_PLUGINS)]
            status = pytest.main(args, plugins=plugins)
        except _Refused:
            status = pytest.ExitCode.USAGE_ERROR  # self.usage_error says why
        finally:
            self._restore_environment()
            # A large run freezes its collected objects out of the garbage
            # collector's reach (see plugin.pytest_collection); give them back.
            if frozen == 0 and gc.get_freeze_count():
                gc.unfreeze()
            # The inner run sets it, and an interrupted one leaves it: the caller's value (or none) comes back.
            if current_test is None:
                os.environ.pop("PYTEST_CURRENT_TEST", None)
            else:
                os.environ["PYTEST_CURRENT_TEST"] = current_test
        if status == pytest.ExitCode.INTERRUPTED:
            raise KeyboardInterrupt("the batch run was interrupted")
        if self.usage_error is not None:
            # An argparse message holds "usage:" and "error:" lines; the caller
            # knows the plugin's options by the API's arguments.
            lines = str(self.usage_error).strip().splitlines() or ["bad argument"]
            line = next((line.split(" error: ", 1)[1] for line in lines if " error: " in line), lines[0])
            raise ValueError(self._named(line))
        problems = getattr(self.report_files, "problems", None)
        if problems:
            # A report not written (pytest's terminal, which would name it, is off).
            raise RuntimeError("; ".join(self._named(problem) for problem in problems))
        if self.outcome is None or status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            raise RuntimeError(f"pytest could not run the commands (exit status {int(status)})")

    def _named(self, message: str) -> str:
        """*message* of the inner run, naming the caller's arguments (or options) rather than the plugin's options."""
        names = getattr(self.runner, "_names_in_messages", None) or API_ARGUMENTS
        return _OPTIONS.sub(lambda m: names.get(m.group(), m.group()), message)

    def _restore_environment(self) -> None:
        for name in self.set_for_parsing:
            os.environ.pop(name, None)
        self.set_for_parsing = {}
        os.environ.update(self.hidden)
        self.hidden = {}

    # -- hooks of the inner run -------------------------------------------------------------

    @contextlib.contextmanager
    def _keeping_usage_error(self) -> Iterator[None]:
        try:
            yield
        except pytest.UsageError as exc:
            # Not a UsageError any more: pytest.main would print it to stderr,
            # usage block and all, and the API prints nothing of pytest's.
            self.usage_error = exc
            raise _Refused from None

    @pytest.hookimpl(wrapper=True)
    def pytest_cmdline_parse(self):  # type: ignore[no-untyped-def]
        with self._keeping_usage_error():  # a bad option value
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_cmdline_main(self):  # type: ignore[no-untyped-def]
        with self._keeping_usage_error():  # e.g. a log file that cannot be opened, at configure
            return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        # Arguments are parsed: from now on the commands must see the caller's environment.
        self._restore_environment()
        if self.prestart is not None:
            config.stash[PRESTART_KEY] = self.prestart

    @pytest.hookimpl(tryfirst=True)
    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        # pytest is given the file's directory (it refuses some file names as
        # arguments, e.g. with "[]" or "::"); only the file itself is collected.
        return True if collection_path != self.target else None

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):  # type: ignore[no-untyped-def]
        collected = yield
        if file_path == self.target and self.specs is not None:
            return [_GivenSpecs.from_parent(parent, path=file_path, specs=self.specs)]
        return collected

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        # tryfirst: pytest-rerunfailures' implementation returns a result, and
        # the hook's first result ends it; without tryfirst a run with retries
        # never got here and held Ctrl+C until the end. Still after the job
        # runner's (tryfirst too, registered later), which has adopted the commands started before
        # pytest. A Ctrl+C held until now is let through at the first command
        # that has not finished: those that have are reported first, so that
        # none is reported as not run; one still running is interrupted once
        # its item has started, so that it is reported as interrupted.
        # The hold also lasts through the protocol of an item whose command
        # has already passed (nothing of it can run any more): a Ctrl+C that
        # arrives while it is reported, as the next command runs ahead, is let
        # through at that next command, which it interrupts, rather than
        # marking the passed command interrupted and the running one not run.
        interrupts = self.interrupts
        if interrupts is None:
            return
        jobs = item.config.stash.get(JOBS_KEY, None)
        ahead = jobs.ahead(item) if jobs is not None else None
        # Not through the protocol of a command that failed and may be rerun:
        # its rerun may already run in its job slot (or will, in the protocol),
        # and a Ctrl+C held through it would wait for that rerun to end.
        if ahead is not None and ahead.done() and (_passed(ahead) or (interrupts.caught and not _may_rerun(item))):
            return
        self.interrupts = None
        interrupts.restore()
        if ahead is not None:
            self.interrupt_at_start = interrupts
        else:
            interrupts.replay()

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self) -> None:
        interrupts, self.interrupt_at_start = self.interrupt_at_start, None
        if interrupts is not None:
            interrupts.replay()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.prestart is not None:
            # Every command gets the caller's environment, as the ones started
            # before pytest did: not pytest's additions (PYTEST_VERSION, which
            # programs read to tell whether they run under pytest).
            session.config.stash[ENVIRONMENT_KEY] = self.prestart.base_env
        recorder = session.config.stash[RECORDING_KEY].recorder
        # The mode asked for, as the original reports it (the plugin infers it from the job count).
        recorder.mode = self.runner.mode
        # The run's wall time counts from run(), as the original's did: commands may have started before pytest.
        if self.runner.start_time is not None:
            recorder.started = min(recorder.started, self.runner.start_time)
        if self.console is not None:
            from pytest_batchrunner.reports.auditlog import AuditLog

            # The audit log's lines, printed: the original printed what it logged.
            printer = AuditLog(None, recorder, timeout=self.runner.timeout_sec or None, stream=self.console)
            recorder.listeners.append(printer)
            session.config.stash[RECORDING_KEY].writers.append(printer)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.report_files = session.config.pluginmanager.get_plugin("batchrunner-reportfiles")
        recording = session.config.stash.get(RECORDING_KEY, None)
        if recording is None:
            return
        # The API hands back a list: the caller asked for every result.
        results = [_as_the_original(r) for r in recording.recorder.results()]
        summary = recording.recorder.summary()
        self.outcome = results, summary


def _as_the_original(result: CommandResult) -> CommandResult:
    """*result* with the original's text: universal newlines in the output, a naive local timestamp.

    The original ran commands with ``text=True``, which turns ``\r\n`` and
    ``\r`` into ``\n``, and stamped them with ``datetime.now().isoformat()``,
    which code compares with other naive local times. (The plugin's own JSON
    keeps the bytes' line ends and an offset, which merged shards from other
    machines need.)
    """
    stdout, stderr, stamp = result.stdout, result.stderr, result.timestamp
    if "\r" in stdout:
        stdout = stdout.replace("\r\n", "\n").replace("\r", "\n")
    if "\r" in stderr:
        stderr = stderr.replace("\r\n", "\n").replace("\r", "\n")
    if stamp:
        try:
            stamp = datetime.datetime.fromisoformat(stamp).astimezone().replace(tzinfo=None).isoformat()
        except ValueError:
            pass
    return dataclasses.replace(result, stdout=stdout, stderr=stderr, timestamp=stamp)


def _may_rerun(item: pytest.Item) -> bool:
    """Whether pytest-rerunfailures may run *item*'s command again after a failure."""
    policy = getattr(item, "rerun_policy", None)
    return policy is None or policy().reruns > 0


def _passed(attempt: Future[Attempt]) -> bool:
    """Whether *attempt*, which has ended, passed (then its item reruns nothing)."""
    return not attempt.cancelled() and attempt.exception() is None and attempt.result().success


def _pytest_arguments(runner: RunSettings, rootdir: Path) -> list[str]:
    """The arguments of the inner :func:`pytest.main` that runs *runner*'s batch file, in *rootdir*.

    ``-c /dev/null`` and ``--rootdir`` stop pytest from looking for the caller's
    ini file or ``pyproject.toml``; ``--noconftest`` from importing its
    ``conftest.py``. Commands still run in the current directory, pytest's
    invocation directory, which is never changed.
    """
    args = ["-c", os.devnull, "--rootdir", str(rootdir), "--noconftest", "--assert=plain", "-W", "ignore"]
    for name in BLOCKED_PLUGINS:
        args += ["-p", f"no:{name}"]
    if runner.batch_file is not None:
        # The batch file may have any name: collect it as one.
        args += ["-o", "batch_patterns=" + _quote_pattern(runner.batch_file.name)]
    if runner.mode == "parallel":
        args += ["--batch-jobs", str(runner._jobs())]
    if runner.max_retries:
        args += ["--reruns", str(runner.max_retries), "--reruns-delay", repr(float(runner.retry_delay_sec))]
    args += ["--batch-capture-bytes", str(runner.capture_bytes)]
    # Always given, so that a PYTEST_TIMEOUT in the environment does not apply; 0 is no timeout.
    args += ["--timeout", repr(float(runner.timeout_sec or 0))]
    if runner.log_file is not None:
        args += ["--batch-log", os.fspath(runner.log_file)]
    if runner.junitxml is not None:
        # Each command's output in its testcase, as the API has always written it (pytest's default is none).
        args += ["--junitxml", os.fspath(runner.junitxml), "-o", "junit_logging=out-err"]
    args.append(str(rootdir))
    return args


def _quote_pattern(name: str) -> str:
    """*name* as a ``batch_patterns`` ini value (shell-split, then glob-matched) that matches exactly this name."""
    return shlex.quote(glob.escape(name))


class _GivenSpecs(BatchFile):
    """A command list, or a batch file whose commands were read before pytest started.

    (See :mod:`~pytest_batchrunner.process.prestart`.)

    Collected from the specs the API has, not parsed again: the commands that
    started early are exactly the ones collected, even if the file changes
    meanwhile. A list may hold what no batch file line can (a command on
    several lines, one starting with ``#``, leading or trailing blanks); each
    is run as given.
    """

    def __init__(self, *, specs: list[CommandSpec], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = specs

    def collect(self):  # type: ignore[no-untyped-def]
        return self.items_of(self.specs)
