"""The original BatchRunner's Python API, run by the pytest plugin in-process.

``BatchRunner(commands, ...).run()`` returns ``(results, summary)`` as the
original did, but the commands are run by the same engine as ``pytest
file.batch``: :func:`pytest.main` is called in this process with the plugin,
pytest-timeout and pytest-rerunfailures, and the results are read back from the
plugin's :class:`~pytest_batchrunner.results.Recorder`. Retries, timeouts,
process-group killing, the audit log and JUnit XML are therefore the plugin's.

The inner pytest run is isolated from the caller (see :func:`_pytest_arguments`):
it reads no ``conftest.py``, ini file, ``pyproject.toml`` or ``PYTEST_ADDOPTS``,
loads only the plugins it needs (pytest 8.4 and later), writes no
``.pytest_cache``, prints nothing of its own, and leaves the process as it found
it, so it can be called from inside a running pytest test. Commands run in the
caller's current directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import glob
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .engine import RECORDING_KEY
from ._version import __version__
from .batchfile import CommandSpec, item_names, parse_batch_file
from .items import BatchFile, CommandItem
from .results import CommandResult, summarize
from .summary import summary_lines

__all__ = ["BatchRunner", "load_commands_from_file"]

MODES = ("sequential", "parallel")
DEFAULT_WORKERS = 10
"""Commands run at once in parallel mode: the original's thread pool size."""

# What a list of commands is called in results and messages (``file`` of each
# result; ``line`` is the command's position in the list, from 1).
LIST_NAME = "<commands>"

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
# Loaded by entry-point name when autoload is off.
ENGINE_PLUGINS = ("timeout", "rerunfailures")
# pytest 8.4 added --disable-plugin-autoload and entry-point names for -p.
EXPLICIT_PLUGINS = pytest.version_tuple >= (8, 4)


def load_commands_from_file(file_path: str | os.PathLike[str]) -> list[str]:
    """The commands of a batch file, read by the ``.batch`` rules.

    Blank lines and ``#`` comments are skipped, a line ending in a backslash
    continues on the next one. Raises :class:`FileNotFoundError` (``Commands
    file not found: PATH``) for a missing file and :class:`ValueError` for a
    file that holds no command (``No commands found in PATH``) or cannot be read
    as a batch file (:class:`~pytest_batchrunner.batchfile.BatchFileError`).
    """
    return [spec.command for spec in _read_batch_file(file_path)]


def _read_batch_file(file_path: str | os.PathLike[str]) -> list[CommandSpec]:
    try:
        specs = parse_batch_file(file_path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Commands file not found: {os.fspath(file_path)}") from None
    if not specs:
        raise ValueError(f"No commands found in {os.fspath(file_path)}")
    return specs


class BatchRunner:
    """Run shell commands and summarise them, with the original BatchRunner's API.

    *commands* are run by ``/bin/sh -c`` exactly as given (a string may hold
    several lines), in the current directory. *mode* is ``"sequential"`` or
    ``"parallel"`` (up to *workers* commands at once, in threads of this
    process). A failed or timed-out command is tried again up to *max_retries*
    times, *retry_delay_sec* apart; *timeout_sec* bounds every attempt (``None``
    or ``0``: no bound) and a timed-out command's process group is killed.
    *log_file* is the audit log, appended to as the run goes; *junitxml* a JUnit
    XML report. *verbose* prints a line per finished command and the summary;
    ``verbose=False`` prints nothing at all.

    Arguments are checked by :meth:`run`, as in the original. A process runs
    one batch at a time: :meth:`run` calls :func:`pytest.main`, which is not
    made to run in several threads at once.
    """

    def __init__(
        self,
        commands: Iterable[str],
        mode: str = "sequential",
        max_retries: int = 0,
        retry_delay_sec: float = 1.0,
        timeout_sec: float | None = None,
        log_file: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        *,
        workers: int = DEFAULT_WORKERS,
        junitxml: str | os.PathLike[str] | None = None,
    ) -> None:
        self.commands = list(commands)
        self.mode = mode
        self.max_retries = max_retries
        self.retry_delay_sec = retry_delay_sec
        self.timeout_sec = timeout_sec
        self.log_file = log_file
        self.verbose = verbose
        self.workers = workers
        self.junitxml = junitxml
        self.results: list[CommandResult] = []
        """The results of the last :meth:`run`, in the order of :attr:`commands`."""
        self.summary: dict[str, Any] = {}
        """The summary of the last :meth:`run`."""
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.batch_file: Path | None = None
        """Set by :meth:`from_file`: the batch file that :meth:`run` hands to the plugin."""

    @classmethod
    def from_file(cls, file_path: str | os.PathLike[str], **options: Any) -> BatchRunner:
        """A runner for the commands of a batch file, with everything the ``.batch`` format allows.

        Unlike ``BatchRunner(load_commands_from_file(path))``, the file itself is
        run, so its ``# batch:`` settings (per-line timeouts, retries, ``cwd=``
        relative to the file, ``expect=``, ``skip``...) apply. Raises as
        :func:`load_commands_from_file` does.
        """
        specs = _read_batch_file(file_path)
        runner = cls([spec.command for spec in specs], **options)
        runner.batch_file = Path(file_path).resolve()
        return runner

    def run(self) -> tuple[list[CommandResult], dict[str, Any]]:
        """Run the commands; return their results, in the order of the commands, and the summary.

        Raises :class:`ValueError` for an unknown mode or a bad argument. If the
        run is interrupted (Ctrl+C, SIGTERM), the running commands are killed,
        the reports are written, :attr:`results` and :attr:`summary` describe what
        ran, and :class:`KeyboardInterrupt` is raised again.
        """
        self._check()
        self.results, self.summary = [], {}
        self.start_time = time.time()
        if self.verbose:
            print(self._header(), flush=True)
        recorded: list[CommandResult] = []
        engine = _Engine(self)
        try:
            if self.commands:
                engine.run()
            else:
                self.summary = self._empty_summary()
        finally:
            # Also when interrupted: the results say which commands ran and which did not.
            if engine.outcome is not None:
                recorded, self.summary = engine.outcome
                self.results = [_as_original(r) for r in recorded]
            self.end_time = time.time()
            if self.verbose and self.summary:
                _print_summary(self.summary, recorded)
        return self.results, self.summary

    def save_results(self, output_file: str | os.PathLike[str]) -> None:
        """Write the results of the last :meth:`run` as JSON: ``{"summary": {...}, "results": [...]}``.

        The file is replaced atomically, so it is never seen half-written.
        """
        from .jsonreport import write_json_report

        write_json_report(output_file, self.summary or self._empty_summary(), self.results)
        if self.verbose:
            print(f"Results saved to: {os.fspath(output_file)}", flush=True)

    # -- helpers ----------------------------------------------------------------------------

    def _check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Invalid mode: {self.mode!r} (use 'sequential' or 'parallel')")
        for i, command in enumerate(self.commands, 1):
            if not isinstance(command, str):
                raise TypeError(f"command {i} is not a string: {command!r}")
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ValueError(f"max_retries must be a whole number, 0 or more, not {self.max_retries!r}")
        if not self.retry_delay_sec >= 0:
            raise ValueError(f"retry_delay_sec must be 0 or more, not {self.retry_delay_sec!r}")
        if self.timeout_sec is not None and not self.timeout_sec >= 0:
            raise ValueError(f"timeout_sec must be None or a number of seconds, not {self.timeout_sec!r}")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"workers must be a whole number, 1 or more, not {self.workers!r}")

    def _jobs(self) -> int:
        """Commands run at once."""
        return min(self.workers, len(self.commands)) if self.mode == "parallel" and self.commands else 1

    def _header(self) -> str:
        parts = [self.mode if self.mode == "sequential" else f"parallel, {self._jobs()} at once"]
        if self.max_retries:
            parts.append(f"retries {self.max_retries}, {self.retry_delay_sec:g} s apart")
        if self.timeout_sec:
            parts.append(f"timeout {self.timeout_sec:g} s")
        count = len(self.commands)
        return f"BatchRunner {__version__}: {count} command{'' if count == 1 else 's'} ({'; '.join(parts)})"

    def _empty_summary(self) -> dict[str, Any]:
        return summarize([], wall_seconds=0.0, mode=self.mode, max_retries=self.max_retries, workers=self._jobs())


class _Engine:
    """One :meth:`BatchRunner.run`: the arguments and plugin object for :func:`pytest.main`.

    Registered as a plugin of the inner run, it restores the environment once
    pytest has read its arguments, collects a command list from memory, prints
    progress, and keeps the recorder's results at the end of the session.
    """

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self.hidden: dict[str, str] = {}
        self.target: Path | None = None
        self.list_file: Path | None = None
        self.specs: list[CommandSpec] = []
        self.progress = _Progress(len(runner.commands)) if runner.verbose else None
        self.usage_error: pytest.UsageError | None = None
        self.outcome: tuple[list[CommandResult], dict[str, Any]] | None = None
        """The results and the summary, once the session has finished."""

    def run(self) -> None:
        """Run the commands; :attr:`outcome` holds the results, also when this raises."""
        batch_file = self.runner.batch_file
        if batch_file is not None:
            self._main(batch_file, rootdir=batch_file.parent)
            return
        with tempfile.TemporaryDirectory(prefix="batchrunner-") as tmp:
            # The file only gives pytest something to collect: the commands
            # themselves are collected from memory (see pytest_collect_file).
            self.list_file = Path(tmp, "commands.batch")
            self.list_file.write_text("# the commands of a BatchRunner, collected from memory\n", encoding="utf-8")
            self.specs = [_list_spec(i, command) for i, command in enumerate(self.runner.commands, 1)]
            self._main(self.list_file, rootdir=Path(tmp))

    def _main(self, target: Path, rootdir: Path) -> None:
        self.target = target
        args = _pytest_arguments(self.runner, rootdir)
        current_test = os.environ.get("PYTEST_CURRENT_TEST")
        self.hidden = {name: os.environ.pop(name) for name in CALLER_SETTINGS if name in os.environ}
        frozen = gc.get_freeze_count()
        try:
            status = pytest.main(args, plugins=[self])
        finally:
            self._restore_environment()
            # A large run freezes its collected objects out of the garbage
            # collector's reach (see plugin.pytest_collection); give them back.
            if frozen == 0 and gc.get_freeze_count():
                gc.unfreeze()
            # The inner run sets and removes it; an outer pytest test expects its own value.
            if current_test is not None:
                os.environ["PYTEST_CURRENT_TEST"] = current_test
        if status == pytest.ExitCode.INTERRUPTED:
            raise KeyboardInterrupt("the batch run was interrupted")
        if self.usage_error is not None:
            # pytest has printed it in full; an argparse message holds "usage:" and "error:" lines.
            lines = str(self.usage_error).strip().splitlines() or ["bad argument"]
            raise ValueError(next((line.split(" error: ", 1)[1] for line in lines if " error: " in line), lines[0]))
        if self.outcome is None or status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            raise RuntimeError(f"pytest could not run the commands (exit status {int(status)})")

    def _restore_environment(self) -> None:
        os.environ.update(self.hidden)
        self.hidden = {}

    # -- hooks of the inner run -------------------------------------------------------------

    @contextlib.contextmanager
    def _keeping_usage_error(self) -> Iterator[None]:
        try:
            yield
        except pytest.UsageError as exc:
            self.usage_error = exc
            raise

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

    @pytest.hookimpl(tryfirst=True)
    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        # pytest is given the file's directory (it refuses some file names as
        # arguments, e.g. with "[]" or "::"); only the file itself is collected.
        return True if collection_path != self.target else None

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):  # type: ignore[no-untyped-def]
        collected = yield
        if file_path == self.list_file:
            return [_CommandList.from_parent(parent, path=file_path, specs=self.specs)]
        return collected

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        recorder = session.config.stash[RECORDING_KEY].recorder
        # The mode asked for, as the original reports it (the plugin infers it from the job count).
        recorder.mode = self.runner.mode
        if self.progress is not None:
            recorder.listeners.append(self.progress)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        recording = session.config.stash.get(RECORDING_KEY, None)
        if recording is None:
            return
        results = recording.recorder.results()
        summary = recording.recorder.summary(results)
        self.outcome = results, summary


def _pytest_arguments(runner: BatchRunner, rootdir: Path) -> list[str]:
    """The arguments of the inner :func:`pytest.main` that runs *runner*'s batch file, in *rootdir*.

    ``-c /dev/null`` and ``--rootdir`` stop pytest from looking for the caller's
    ini file or ``pyproject.toml``; ``--noconftest`` from importing its
    ``conftest.py``. Commands still run in the current directory, pytest's
    invocation directory, which is never changed.
    """
    args = ["-c", os.devnull, "--rootdir", str(rootdir), "--noconftest", "--assert=plain", "-W", "ignore"]
    for name in BLOCKED_PLUGINS:
        args += ["-p", f"no:{name}"]
    if EXPLICIT_PLUGINS:
        args.append("--disable-plugin-autoload")
        for name in (*ENGINE_PLUGINS, "pytest_batchrunner.plugin"):
            args += ["-p", name]
    if runner.batch_file is not None:
        # The batch file may have any name: collect it as one.
        args += ["-o", "batch_patterns=" + _quote_pattern(runner.batch_file.name)]
    if runner.mode == "parallel":
        args += ["--batch-jobs", str(runner._jobs())]
    if runner.max_retries:
        args += ["--reruns", str(runner.max_retries), "--reruns-delay", repr(float(runner.retry_delay_sec))]
    # Always given, so that a PYTEST_TIMEOUT in the environment does not apply; 0 is no timeout.
    args += ["--timeout", repr(float(runner.timeout_sec or 0))]
    if runner.log_file is not None:
        args += ["--batch-log", os.fspath(runner.log_file)]
    if runner.junitxml is not None:
        args += ["--junitxml", os.fspath(runner.junitxml)]
    args.append(str(rootdir))
    return args


def _quote_pattern(name: str) -> str:
    """*name* as a ``batch_patterns`` ini value (shell-split, then glob-matched) that matches exactly this name."""
    return shlex.quote(glob.escape(name))


class _CommandList(BatchFile):
    """The commands of a :class:`BatchRunner`, collected from memory instead of parsed.

    A list may hold what no batch file line can: a command on several lines, one
    starting with ``#``, leading or trailing blanks. Each is run as given.
    """

    def __init__(self, *, specs: list[CommandSpec], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = specs

    def collect(self):  # type: ignore[no-untyped-def]
        for spec, name in zip(self.specs, item_names(self.specs), strict=True):
            yield CommandItem.from_parent(self, name=name, spec=spec)


def _list_spec(position: int, command: str) -> CommandSpec:
    display = " ".join(command.split()) or repr(command)
    return CommandSpec(path=LIST_NAME, line=position, command=command, display=display)


def _as_original(result: CommandResult) -> CommandResult:
    """*result* with the original BatchRunner's conventions where they differ from the plugin's.

    The original ran ``subprocess.run``: a timed-out command had ``exit_code=-1``
    and ``"Command timed out after N seconds"`` in its stderr, and a command
    killed by a signal had the negative signal number. The plugin's own fields
    (``timed_out``, ``signal``, ``attempt_log``) keep the details.
    """
    if result.success or not result.attempt_log:
        return result
    if result.timed_out:
        last = result.attempt_log[-1]
        seconds = last.get("timeout")
        note = f"Command timed out after {seconds:g} seconds" if seconds else last["status"]
        stderr = result.stderr if not result.stderr or result.stderr.endswith("\n") else result.stderr + "\n"
        return dataclasses.replace(result, exit_code=-1, stderr=stderr + note + "\n")
    if result.signal is not None and result.exit_code is None:
        try:
            return dataclasses.replace(result, exit_code=-int(signal.Signals[result.signal]))
        except KeyError:
            return dataclasses.replace(result, exit_code=-1)
    return result


class _Progress:
    """Recorder listener: one line per finished command, and per attempt that will be retried."""

    LABELS = {"passed": "OK", "failed": "FAIL", "rerun": "RETRY", "skipped": "XFAIL"}

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def on_start(self, nodeid: str, command: str) -> None:
        pass

    def on_attempt(self, record: dict[str, Any], outcome: str) -> None:
        if outcome != "rerun":
            self.done += 1
        number = self.done if outcome != "rerun" else self.done + 1
        label = self.LABELS.get(outcome, outcome.upper())
        lines = record["command"].strip().splitlines() or [""]
        text = lines[0] + (" ..." if len(lines) > 1 else "")
        detail = "" if record["success"] else f"  ({record['status']})"
        print(f"[{number}/{self.total}] {label:<5} {record['duration_ms'] / 1000:6.2f}s  {text}{detail}", flush=True)


def _print_summary(summary: dict[str, Any], results: list[CommandResult]) -> None:
    print("=" * 70 + "\nBatchRunner summary")
    for text, _markup in summary_lines(summary, results):
        print(text)
    sys.stdout.flush()
