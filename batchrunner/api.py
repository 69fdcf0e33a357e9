"""The original BatchRunner's Python API, run by the pytest plugin in-process.

``BatchRunner(commands, ...).run()`` returns ``(results, summary)`` as the
original did, but the commands are run by the same engine as ``pytest
file.batch``: :func:`pytest.main` is called in this process with the plugin,
pytest-timeout and pytest-rerunfailures (see :mod:`~batchrunner.inprocess`),
and the results are read back from the plugin's
:class:`~pytest_batchrunner.reports.results.Recorder`. Retries, timeouts, process-group
killing, the audit log and JUnit XML are therefore the plugin's.

This module does not import pytest: :meth:`BatchRunner.run` starts the first
commands (:mod:`~pytest_batchrunner.process.prestart`) before it imports and configures
pytest, so that the 0.1 s that costs overlaps with the commands' own time.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_batchrunner.batchfile import (
    BatchFileError, CommandSpec, LineSettings, not_a_regular_file, parse_batch_file, parse_batch_text,
)
from pytest_batchrunner.process.prestart import Prestart
from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES
from pytest_batchrunner.process.signals import DeferredSignals

_ONE_RUN_AT_A_TIME = threading.RLock()
"""Held by a run: pytest's in-process runs share the process (plugins, ``os.environ``), so threads take turns."""

if TYPE_CHECKING:
    from batchrunner.inprocess import InnerRun
    from pytest_batchrunner.reports.results import CommandResult

# .results and .summary are imported where used: they are needed once the
# commands have run, and every millisecond of import delays the first command.

__all__ = ["BatchRunner", "load_commands_from_file"]

MODES = ("sequential", "parallel")
DEFAULT_WORKERS = 10
"""Commands run at once in parallel mode: the original's thread pool size."""

# What a list of commands is called in results and messages (``file`` of each
# result; ``line`` is the command's position in the list, from 1).
LIST_NAME = "<commands>"

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
        if not_a_regular_file(file_path) in _STREAMS:
            # A pipe (`-f /dev/stdin`, `-f <(...)`): read once, as the original read any file.
            with open(file_path, "rb") as stream:
                specs = parse_batch_text(stream.read(), os.fspath(file_path))
        else:
            specs = parse_batch_file(file_path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Commands file not found: {os.fspath(file_path)}") from None
    if not specs:
        raise ValueError(f"No commands found in {os.fspath(file_path)}")
    return specs


# What a commands file may be besides a regular file: a pipe, read once, its lines run from memory.
# (Not a device: /dev/zero would be read forever.)
_STREAMS = ("a FIFO",)


def check_log_opens(name: str, path: str | os.PathLike[str]) -> None:
    """Open the log *path* (an argument or option called *name*) as the run will, before any command starts.

    :class:`ValueError` naming it, with the OS's words, if it cannot be opened
    (pytest's own check comes after the first commands have started).
    """
    from pytest_batchrunner.reports.files import LineFile

    try:
        LineFile(path).close()
    except OSError as exc:
        raise ValueError(f"{name} {os.fspath(path)}: cannot open: {exc.strerror or exc}") from None


class BatchRunner:
    """Run shell commands and summarise them, with the original BatchRunner's API.

    *commands* are run by ``/bin/sh -c`` exactly as given (a string may hold
    several lines), in the current directory. *mode* is ``"sequential"`` or
    ``"parallel"`` (up to *workers* commands at once, in threads of this
    process). A failed or timed-out command is tried again up to *max_retries*
    times, *retry_delay_sec* apart; *timeout_sec* bounds every attempt (``None``
    or ``0``: no bound) and a timed-out command's process group is killed.
    *log_file* is the audit log, appended to as the run goes, in the original's
    line shapes (see :mod:`~pytest_batchrunner.reports.auditlog`); *junitxml* a JUnit
    XML report. *verbose* prints the same lines as the log, as the original
    did (``Executing: CMD (attempt 1/3)`` when a command starts, its outcome,
    ``Progress: i/N completed`` in parallel mode, the ``EXECUTION SUMMARY``);
    ``verbose=False`` prints nothing at all.

    The arguments' types and values are checked here (:class:`TypeError`,
    :class:`ValueError`, naming the argument), the mode by :meth:`run`, as in
    the original (an unknown mode is a :class:`ValueError`). A process runs
    one batch at a time: :meth:`run` calls :func:`pytest.main`, which is not
    made to run in several threads at once (it registers plugins and sets
    environment variables for the whole process), so runs started from several
    threads take turns, each whole.
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
        capture_bytes: int = DEFAULT_CAPTURE_BYTES,
    ) -> None:
        if isinstance(commands, (str, bytes)):
            # The original iterated it: one command per character.
            hint = f": give [{commands!r}] to run it as one command" if isinstance(commands, str) else ""
            raise TypeError(f"commands must be a list of strings, not a {type(commands).__name__}{hint}")
        self.commands = list(commands)
        self.mode = mode
        self.max_retries = max_retries
        self.retry_delay_sec = retry_delay_sec
        self.timeout_sec = timeout_sec
        self.log_file = log_file
        self.verbose = verbose
        self.workers = workers
        self.junitxml = junitxml
        self.capture_bytes = capture_bytes
        self.results: list[CommandResult] = []
        """The results of the last :meth:`run`, in the order of :attr:`commands`."""
        self.summary: dict[str, Any] = {}
        """The summary of the last :meth:`run`."""
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.batch_file: Path | None = None
        """Set by :meth:`from_file`: the batch file that :meth:`run` hands to the plugin."""
        self._inner: InnerRun | None = None
        self._names_in_messages: dict[str, str] | None = None
        """How errors of the inner pytest run name its options (default: by these arguments' names)."""
        self._check_arguments()

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
        if not_a_regular_file(file_path) in _STREAMS:
            # Read already, and gone: its lines run from memory, which holds no settings.
            with_settings = [spec.line for spec in specs if spec.settings != LineSettings()]
            if with_settings:
                raise ValueError(
                    f"{os.fspath(file_path)}:{with_settings[0]}: '# batch:' settings need a regular file "
                    "(cwd= counts from its folder): write the commands to a file first"
                )
            return runner
        runner.batch_file = Path(file_path).resolve()
        return runner

    def run(self) -> tuple[list[CommandResult], dict[str, Any]]:
        """Run the commands; return their results, in the order of the commands, and the summary.

        Raises :class:`ValueError` for an unknown mode, a bad argument or a
        report path that is a directory, another report's file or the batch
        file, :class:`TypeError` for an argument of the wrong type; all before
        any command starts. If the run is interrupted (Ctrl+C, SIGTERM), the
        running commands are killed, the reports are written, :attr:`results`
        and :attr:`summary` describe what ran, and :class:`KeyboardInterrupt`
        is raised again.
        """
        self._check()
        with _ONE_RUN_AT_A_TIME:
            return self._run()

    def _run(self) -> tuple[list[CommandResult], dict[str, Any]]:
        self.results, self.summary = [], {}
        self.start_time = time.time()
        recorded: list[CommandResult] = []
        self._inner = None
        try:
            if self.commands:
                self._run_engine()
            else:
                self.summary = self._empty_summary()
        finally:
            # Also when interrupted: the results say which commands ran and which did not.
            if self._inner is not None and self._inner.outcome is not None:
                recorded, self.summary = self._inner.outcome
                self.results = list(recorded)
            if self.summary.get("success_rate", 0.0) is None:
                # The original's summary holds a number: 0.0 when no command ran (the reports say n/a).
                self.summary = {**self.summary, "success_rate": 0.0}
            self._inner = None  # nothing of the inner run outlives run()
            self.end_time = time.time()
        return self.results, self.summary

    def _run_engine(self) -> None:
        """Run the commands with the plugin; ``self._inner`` is the :class:`~batchrunner.inprocess.InnerRun`, also when this raises."""
        with tempfile.TemporaryDirectory(prefix="batchrunner-") as tmp:
            if self.batch_file is not None:
                target, rootdir = self.batch_file, self.batch_file.parent
                specs: list[CommandSpec] | None
                try:
                    # Named as pytest names it, relative to the rootdir: its directory.
                    specs = parse_batch_text(target.read_bytes(), target.name)
                except (OSError, BatchFileError):
                    specs = None  # pytest parses it and reports the error, as for `pytest FILE`
            else:
                # The file only gives pytest something to collect: the commands
                # themselves are collected from memory (see InnerRun.pytest_collect_file).
                target = Path(tmp, "commands.batch")
                target.write_text("# the commands of a BatchRunner, collected from memory\n", encoding="utf-8")
                rootdir = Path(tmp)
                specs = [_list_spec(i, command) for i, command in enumerate(self.commands, 1)]
            prestart = Prestart(
                specs or [], str(target), jobs=self._jobs(), timeout=self.timeout_sec, capture_bytes=self.capture_bytes
            )
            # A Ctrl+C before pytest has collected the commands waits until it
            # can be handled as in any run: commands killed, reports written.
            interrupts = DeferredSignals().hold()
            try:
                prestart.start()
                # Imported here, while the first commands run: pytest's import is most of the start-up time.
                from batchrunner.inprocess import InnerRun

                inner = InnerRun(self, target, specs, prestart, sys.stdout if self.verbose else None, interrupts)
                self._inner = inner
                inner.main(rootdir)
            finally:
                interrupts.restore()
                prestart.close()
                interrupts.replay()  # if pytest never got that far

    def save_results(self, output_file: str | os.PathLike[str]) -> None:
        """Write the results of the last :meth:`run` as JSON: ``{"summary": {...}, "results": [...]}``.

        The file is replaced atomically, so it is never seen half-written.
        """
        from pytest_batchrunner.reports.json import write_json_report

        # Never over the log, the JUnit file or the batch file the results came from.
        self._check_report_paths((("output_file", output_file),))
        write_json_report(output_file, self.summary or self._empty_summary(), self.results)
        # As the original: a line on the console and in the log.
        from pytest_batchrunner.reports.auditlog import log_line
        from pytest_batchrunner.reports.files import LineFile

        line = log_line("INFO", f"\nResults saved to: {os.fspath(output_file)}")
        if self.verbose:
            print(line, flush=True)
        if self.log_file is not None:
            log = LineFile(self.log_file)
            try:
                log.write_line(line)
            finally:
                log.close()

    # -- helpers ----------------------------------------------------------------------------

    def _check(self) -> None:
        """Everything :meth:`run` needs, checked before any command starts (the attributes may have changed)."""
        if self.mode not in MODES:
            raise ValueError(f"Invalid mode: {self.mode!r} (use 'sequential' or 'parallel')")
        self._check_arguments()
        # run() starts commands before pytest checks its own options.
        self._check_report_paths()

    def _check_arguments(self) -> None:
        """:class:`TypeError` for an argument of the wrong type, :class:`ValueError` for a bad value; both name it.

        Called by the constructor and by :meth:`run`; the mode only by :meth:`run`,
        as in the original. A wrong type would otherwise fail every command, or
        the run, far from its cause (``timeout_sec="5"``).
        """
        if isinstance(self.commands, (str, bytes)):
            raise TypeError(f"commands must be a list of strings, not a {type(self.commands).__name__}")
        for i, command in enumerate(self.commands, 1):
            if not isinstance(command, str):
                raise TypeError(f"command {i} is not a string: {command!r}")
            if "\0" in command:
                # No program can be given one (C strings end there): refused here, not by subprocess.
                raise ValueError(f"command {i} holds a NUL character, which no command can: {command!r}")
        from pytest_batchrunner.values import MAX_BYTES, MAX_COUNT, non_negative_float, timeout_seconds

        # Bounded where they enter: nothing that cannot be waited for reaches a sleep or a poll.
        for name, value, least, most in (
            ("max_retries", self.max_retries, 0, MAX_COUNT), ("workers", self.workers, 1, MAX_COUNT),
            ("capture_bytes", self.capture_bytes, 0, MAX_BYTES),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be a whole number, not {value!r} ({type(value).__name__})")
            if not least <= value <= most:
                raise ValueError(f"{name} must be a whole number, {least} to {most}, not {value!r}")
        seconds: list[tuple[str, Any, Callable[[Any], float]]] = [("retry_delay_sec", self.retry_delay_sec, non_negative_float)]
        if self.timeout_sec is not None:
            seconds.append(("timeout_sec", self.timeout_sec, timeout_seconds))  # inf is refused: None is no timeout
        for name, value, check in seconds:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                allowed = " or None" if name == "timeout_sec" else ""
                raise TypeError(f"{name} must be a number of seconds{allowed}, not {value!r} ({type(value).__name__})")
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        for name, path in (("log_file", self.log_file), ("junitxml", self.junitxml)):
            if path is not None and not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"{name} must be a file name (str or path) or None, not {path!r} ({type(path).__name__})")

    def _check_report_paths(self, extra: tuple[tuple[str, Any], ...] = ()) -> None:
        """Refuse, naming the arguments, a report path that is a directory, another report's file or the batch file.

        :class:`~pytest_batchrunner.reports.files.ReportPathError`, a :class:`ValueError`.
        """
        from pytest_batchrunner.reports.files import ReportPathError, check_report_paths

        named = [("log_file", self.log_file), ("junitxml", self.junitxml), *extra]
        reports = []
        for name, value in named:
            if value is None:
                continue
            if not os.fspath(value).strip():
                raise ReportPathError(f"{name} needs a file name")
            reports.append((name, Path(os.path.expanduser(os.fspath(value)))))
        inputs = [("the batch file", self.batch_file)] if self.batch_file is not None else []
        check_report_paths(reports, inputs)
        log = dict(reports).get("log_file")
        if log is not None and not extra:  # save_results: the run has opened it already
            check_log_opens("log_file", log)

    def _jobs(self) -> int:
        """Commands run at once."""
        return min(self.workers, len(self.commands)) if self.mode == "parallel" and self.commands else 1

    def _empty_summary(self) -> dict[str, Any]:
        from pytest_batchrunner.reports.results import summarize

        return summarize([], wall_seconds=0.0, mode=self.mode, max_retries=self.max_retries, workers=self._jobs())


def _list_spec(position: int, command: str) -> CommandSpec:
    display = " ".join(command.split()) or repr(command)
    return CommandSpec(path=LIST_NAME, line=position, command=command, display=display)
