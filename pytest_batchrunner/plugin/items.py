"""The pytest collector (:class:`BatchFile`) and item (:class:`CommandItem`)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest

from pytest_batchrunner.batchfile import (
    BatchFileError,
    CommandSpec,
    group_key,
    item_names,
    parse_batch_text,
    printable,
)
from pytest_batchrunner.process.environment import command_environment
from pytest_batchrunner.plugin.batchtexts import text_of
from pytest_batchrunner.plugin.engine import (
    ATTEMPT_STARTED_KEY, ENGINE_KEY, ENVIRONMENT_KEY, HOST_KEY, JOBS_KEY, LIVE_KEY, RECORDING_KEY, WORKDIR_KEY,
    EngineSettings,
)
from pytest_batchrunner.plugin.tags import tag_rules
from pytest_batchrunner.process.command import Attempt, RunningCommand, start_command
from pytest_batchrunner.process.spawn import SpawnError


__all__ = ["BatchFile", "CommandFailed", "CommandItem", "BatchFileWarning", "LeftoverProcessWarning"]

# Lines of stdout / stderr shown in a failure (--batch-output-lines).
FAILURE_TAIL_LINES = 15


class BatchFileWarning(pytest.PytestWarning):
    """A batch file was collected but holds nothing to run."""


class LeftoverProcessWarning(pytest.PytestWarning):
    """A command left processes behind after its shell exited; they were killed."""


class CommandFailed(AssertionError):
    """A command did not succeed. ``str()`` starts with its status, e.g. ``"exit code 2: make test"``,
    so ``--only-rerun "exit code 75"`` or ``--only-rerun "timed out"`` select what to retry.

    An ``AssertionError``: the check that the command exited as expected
    failed, so reporters that tell failures from errors (allure's "failed" vs
    "broken") report a failed command as failed.
    """

    def __init__(self, attempt: Attempt, spec: CommandSpec) -> None:
        super().__init__(f"{attempt.describe_status()}: {printable(spec.display)}")
        self.attempt = attempt
        self.spec = spec

    def describe(self, output_lines: int = FAILURE_TAIL_LINES, tails: tuple[str, ...] = ("stderr", "stdout")) -> str:
        """The short, human failure message shown by pytest, with the last *output_lines* of the streams in *tails*."""
        a, spec = self.attempt, self.spec
        status = a.describe_status()
        if a.expected_exit != 0 and not a.timed_out and a.signal is None:
            status += f", expected {a.expected_exit}"
        lines = [
            f"{status} · {printable(spec.path)}:{spec.line} · {a.duration:.2f} s",
            f"  command: {printable(spec.display)}",
        ]
        if a.leftovers:
            lines.append("  killed leftover processes: " + printable(", ".join(a.leftovers)))
        for label, text, size in (("stderr", a.stderr, a.stderr_bytes), ("stdout", a.stdout, a.stdout_bytes)):
            if label not in tails:
                continue
            tail = text.rstrip("\n").splitlines()[-output_lines:] if output_lines else []
            if not tail:
                continue
            lines.append(f"  --- {label}, last {len(tail)} lines of {size} bytes ---")
            lines.extend("  " + _printable(line) for line in tail)
        return "\n".join(lines)


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f]")
# Output of a passed command in its report section (shown with -rP): its last
# lines, within these bounds; a failed command's section holds its last
# --batch-output-lines lines. --batch-json and the JUnit XML keep more.
SECTION_LINES = 200
SECTION_CHARS = 20_000


def report_section(label: str, text: str, size: int, max_lines: int = SECTION_LINES) -> str:
    """A stream's text as pytest shows it: the last *max_lines* lines, bounded, control characters escaped."""
    lines = text.splitlines(keepends=True)
    kept = lines[-max_lines:]
    clipped = "".join(kept)
    if len(clipped) > SECTION_CHARS:
        clipped = clipped[-SECTION_CHARS:]
    if len(clipped) < len(text):
        shown = clipped.count("\n") + (not clipped.endswith("\n"))
        clipped = f"--- {label}, last {shown} lines of {size} bytes ---\n" + clipped
    return _escape_controls(clipped)


def _escape_controls(text: str) -> str:
    """*text* with C0 control characters but tab and newline escaped (``\\x1b``)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _printable(line: str) -> str:
    # Escape C0 controls but tab, so a stray ESC or NUL cannot drive the terminal.
    return "".join(ch if ch >= " " or ch == "\t" else f"\\x{ord(ch):02x}" for ch in line)


class BatchFile(pytest.File):
    """A batch file: one :class:`CommandItem` per command."""

    def collect(self):  # type: ignore[no-untyped-def]
        try:
            # A tag that names a marker pytest or a plugin acts on is refused on the line that sets it.
            check_tag = tag_rules(self.config).problem
            specs = parse_batch_text(text_of(self.config, self.path), self.display_path(), check_tag=check_tag)
        except BatchFileError as exc:
            # CollectError is shown as its message alone, without a traceback.
            raise self.CollectError(f"batch file error: {exc}") from None
        return self.items_of(specs)

    def items_of(self, specs: list[CommandSpec]):  # type: ignore[no-untyped-def]
        """One :class:`CommandItem` per spec (parsed from this file, or given by the Python API)."""
        if not specs:
            self.warn(BatchFileWarning(f"{self.path.name}: no commands found, nothing to run"))
            return
        rules = tag_rules(self.config)
        steps: dict[str, int] = {}
        self.group_lines: dict[str, list[int]] = {}
        """The lines of each sequential group's steps in this file (step N at index N - 1)."""
        for spec, name in zip(specs, item_names(specs), strict=True):
            rules.register(spec.settings.tags)
            item = CommandItem.from_parent(self, name=name, spec=spec)
            if spec.settings.sequential:
                key = group_key(spec)
                steps[key] = item.step = steps.get(key, 0) + 1  # type: ignore[index]
                self.group_lines.setdefault(key, []).append(spec.line)  # type: ignore[arg-type]
            yield item

    def display_path(self) -> str:
        """The file as messages name it: relative to the rootdir when inside it."""
        try:
            return self.path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return str(self.path)


_UNCAPTURED = ("pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown")
_HOOKS_KEY = pytest.StashKey[Any]()


class _CommandHooks:
    """A hook relay whose runtest phases leave out one plugin (pytest's capture manager); the rest is the relay's."""

    def __init__(self, relay: Any, pluginmanager: pytest.PytestPluginManager, left_out: object) -> None:
        self._relay = relay
        for name in _UNCAPTURED:
            setattr(self, name, pluginmanager.subset_hook_caller(name, remove_plugins=[left_out]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)


def _command_hooks(session: pytest.Session, path: Path) -> Any:
    relay = session.gethookproxy(path)
    config = session.config
    if relay is not config.hook:
        return relay  # some conftest.py does not apply here: keep pytest's own relay
    hooks = config.stash.get(_HOOKS_KEY, None)
    if hooks is None:
        capture = config.pluginmanager.get_plugin("capturemanager")
        hooks = config.stash[_HOOKS_KEY] = (
            relay if capture is None else _CommandHooks(relay, config.pluginmanager, capture)
        )
    return hooks


RECORD_KEYS = (
    "nodeid", "command", "file", "line", "attempt", "success", "exit_code", "signal", "timed_out", "timeout",
    "status", "stdout", "stderr", "stdout_bytes", "stderr_bytes", "started", "timestamp", "duration_ms",
    "leftovers", "expected_exit", "worker", "host", "pid", "max_attempts", "retry_delay",
)
"""The keys of :meth:`CommandItem.record_of`, in its order (a worker sends the values alone, see the plugin)."""


class CommandItem(pytest.Item):
    """One command of a batch file, run by :func:`~pytest_batchrunner.process.command.run_command`."""

    def __init__(self, *, spec: CommandSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        # Seconds; set from pytest-timeout's settings by the timeout integration
        # (which sees the line's ``timeout=`` as a ``timeout`` marker).
        self.timeout: float | None = spec.settings.timeout
        self.relative_timeout: tuple[float, str] | None = None
        """``(seconds, how)`` from a ``timeout=300%`` and the history (see :mod:`.timeouts`); beats :attr:`timeout`."""
        self.attempt_number = 0
        self.step = 0
        """Position in its sequential group (1 for the first step), else 0."""
        self.last_attempt: Attempt | None = None
        self._rerun_policy: RerunPolicy | None = None
        self._apply_settings()

    @property
    def ihook(self) -> Any:
        """pytest's hook relay for this item, without pytest's output capture around setup, call and teardown.

        A command's output never reaches this process's stdout or stderr (it goes
        to the command's own pipes and becomes the report's sections, see
        :meth:`runtest`), so pytest's file-descriptor capture around each phase
        (three redirections, three reads of its temporary files) would only cost
        time: about a fifth of the per-command time of a run of ``true``. Where
        some ``conftest.py`` does not apply to the batch file, the full relay is
        kept (the subset below would include it).
        """
        hooks = self.__dict__.get("_hooks")
        if hooks is None:
            hooks = self.__dict__["_hooks"] = _command_hooks(self.session, self.path)
        return hooks

    def _apply_settings(self) -> None:
        s = self.spec.settings
        if s.timeout is not None:
            self.add_marker(pytest.mark.timeout(s.timeout))
        if s.retries is not None:
            kwargs: dict[str, Any] = {"reruns": s.retries}
            if s.retry_delay is not None:
                kwargs["reruns_delay"] = s.retry_delay
            if s.retry_on:
                codes = "|".join(str(c) for c in s.retry_on)
                # pytest-rerunfailures >= 15 matches "CommandFailed: <str(exc)>",
                # older releases the failure's text, which starts with the status.
                kwargs["only_rerun"] = [rf"^(CommandFailed: )?exit code ({codes})\b"]
            self.add_marker(pytest.mark.flaky(**kwargs))
        if s.skip is not None:
            self.add_marker(pytest.mark.skip(reason=s.skip or "skipped in the batch file"))
        if s.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=s.xfail, raises=CommandFailed))
        for tag in s.tags:
            self.add_marker(tag)
        group = group_key(self.spec)
        if group is not None:
            self.add_marker(pytest.mark.xdist_group(group))

    def rerun_policy(self) -> RerunPolicy:
        """pytest-rerunfailures' settings for this item, read once through its own functions.

        Read before the run may hand the delay over to the job slots (see
        :mod:`~pytest_batchrunner.plugin.jobs`), so the logs keep saying the real delay.
        """
        if self._rerun_policy is None:
            self._rerun_policy = RerunPolicy.of(self)
        return self._rerun_policy

    @property
    def engine(self) -> EngineSettings:
        return self.config.stash[ENGINE_KEY]

    def environment(self, attempt: int) -> dict[str, str]:
        """The command's environment: pytest's, plus BATCH_* variables and the line's ``env=``.

        pytest's environment is a snapshot taken in the main thread (see
        :mod:`~pytest_batchrunner.plugin.environment`): commands may start in other
        threads while pytest changes ``os.environ``.
        """
        base = self.config.stash[ENVIRONMENT_KEY]
        return command_environment(base, str(self.path), self.spec.line, attempt, self.spec.settings.env)

    def working_directory(self) -> Path:
        """Where the command runs: the line's ``cwd=`` (relative to the batch file), else pytest's start directory.

        On a remote xdist worker, the start directory's copy (see :mod:`~pytest_batchrunner.plugin.remote`).
        """
        if self.spec.settings.cwd is not None:
            return (self.path.parent / self.spec.settings.cwd).resolve()
        return self.config.stash.get(WORKDIR_KEY, None) or self.config.invocation_params.dir

    def run_attempt(
        self, number: int, timeout: float | None, started: Callable[[int], None] | None = None
    ) -> Attempt:
        """Run the command once, as attempt *number*; thread-safe (``--batch-jobs`` calls it ahead)."""
        return self.start_attempt(number, timeout, started).wait()

    def start_attempt(
        self, number: int, timeout: float | None, started: Callable[[int], None] | None = None, ahead: bool = False
    ) -> RunningCommand:
        """Start the command as attempt *number*; its :meth:`~RunningCommand.wait` gives the attempt.

        *ahead*: started before its item's turn (``--batch-jobs``)."""
        engine = self.engine
        cwd = self.working_directory()
        if not cwd.is_dir():
            raise CommandSetupError(
                f"{self.spec.path}:{self.spec.line}: cwd={self.spec.settings.cwd}: no such directory {cwd}"
            )
        live = self.config.stash.get(LIVE_KEY, None)
        watch = None
        if live is not None:  # shown where the run is reported: output lines, what is running
            watch = live.watch(self.nodeid, self.spec.reported, f"{self.spec.path}:{self.spec.line}", number, ahead)
        # In an xdist worker, one started ahead is announced before its process starts: a worker that dies
        # once the command runs cannot leave it unknown to the controller (see LiveBoard.lost_with).
        announced = watch if watch is not None and ahead and hasattr(self.config, "workerinput") else None
        if announced is not None:
            announced.start()
        try:
            running = start_command(
                self.spec.command,
                timeout=timeout,
                cwd=cwd,
                env=self.environment(number),
                capture_bytes=engine.capture_bytes,
                kill_grace=engine.kill_grace,
                expected_exit=self.spec.settings.expect or 0,
                echo=watch.echo if watch is not None and watch.output else engine.echo,
                started=started,
                ended=watch.end if watch is not None else None,
            )
        except BaseException:
            if announced is not None:
                announced.end()
            raise
        if watch is not None and announced is None:
            # The time its process started (after any wait for descriptors), as in its record.
            watch.start(running.wall_start)
        announce = self.config.stash.get(ATTEMPT_STARTED_KEY, None)
        if announce is not None:
            announce(self.nodeid, number, self.rerun_policy().reruns + 1, running.wall_start)
        return running

    def runtest(self) -> None:
        self.attempt_number += 1
        self.last_attempt = None
        ahead = None
        jobs = self.config.stash.get(JOBS_KEY, None)
        if jobs is not None:
            # The first attempt may have been started ahead, a rerun in its job slot (see plugin.jobs).
            ahead = jobs.take(self, self.attempt_number)
        relative = self.relative_timeout
        timeout = relative[0] if relative is not None else self.timeout
        running = None
        try:
            if ahead is not None:
                attempt = ahead.result()
            else:
                running = self.start_attempt(self.attempt_number, timeout)
                attempt = running.wait()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # The run stops (Ctrl+C, SIGTERM...) while the command runs: pytest
                # makes no report of it, so its attempt is recorded here. One
                # started ahead is still running in a job slot: the job runner
                # kills and records it as the protocol unwinds (see plugin.jobs).
                self.__dict__["interrupted_ahead"] = ahead
                if running is not None and running.interrupted_attempt is not None:
                    self.record_interrupted(running.interrupted_attempt)
            raise
        if relative is not None and attempt.timed_out:
            attempt.timeout_note = relative[1]
        self.last_attempt = attempt
        # pytest's channel for captured output: -rP / -rA, pytest-html,
        # pytest-json-report and allure show it, for passed commands too; the
        # terminal shows a failure's sections below it (--batch-output-lines of them).
        max_lines = SECTION_LINES if attempt.success else self.engine.output_lines
        if attempt.stdout and max_lines:
            self.add_report_section("call", "stdout", report_section("stdout", attempt.stdout, attempt.stdout_bytes, max_lines))
        if attempt.stderr and max_lines:
            self.add_report_section("call", "stderr", report_section("stderr", attempt.stderr, attempt.stderr_bytes, max_lines))
        if attempt.leftovers:
            try:
                self.warn(
                    LeftoverProcessWarning(
                        f"{printable(self.spec.path)}:{self.spec.line}: killed processes left behind by "
                        f"'{printable(self.spec.display)}': {printable(', '.join(attempt.leftovers))}"
                    )
                )
            except LeftoverProcessWarning:
                attempt.leftovers_fail = True  # -W error: a compact failure of its own, in every report
        if not attempt.success:
            raise CommandFailed(attempt, self.spec)

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, CommandFailed):
            # pytest shows the captured streams below the failure ("Captured
            # stdout call", see runtest); the message holds the last lines of the others only.
            shown = {"all": ("stdout", "stderr"), "stdout": ("stdout",), "stderr": ("stderr",)}
            showcapture = getattr(self.config.option, "showcapture", "no")
            hidden = tuple(s for s in ("stderr", "stdout") if s not in shown.get(showcapture, ()))
            return _failure_repr(
                excinfo, excinfo.value.describe(self.engine.output_lines, hidden), self.location[0], self.spec.line
            )
        if isinstance(excinfo.value, (CommandSetupError, SpawnError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):  # type: ignore[no-untyped-def]
        # pytest's convention: the location is (file, line), the domain names
        # the test alone (the failure's heading, "$ make test"); reporters that
        # print both (pytest-sugar: "cmds.batch:3 $ make test") name it once.
        # The "$ " also keeps pytest's -v line, which rewrites a domain that
        # ends the node id (for Python, "Class.test" -> "Class::test"), as it is.
        return self.path, self.spec.line - 1, printable(f"$ {self.spec.display}")

    def report_command_time(self, report: pytest.TestReport) -> None:
        """Make the call report's duration the command's own run time.

        pytest times ``runtest``; a command started ahead of its turn
        (``--batch-jobs``, or by the Python API) has often finished by then, so
        that time is near 0. ``--durations``, JUnit's ``time``, pytest-split's
        ``--store-durations`` and other reporters read ``report.duration``.
        """
        a = self.last_attempt
        if a is None:
            return
        report.duration = a.duration
        if hasattr(report, "start") and hasattr(report, "stop"):
            report.start, report.stop = a.started, a.started + a.duration

    def record_interrupted(self, attempt: Attempt) -> None:
        """Record *attempt*, killed as the run stopped, where the run is reported.

        pytest makes no report of an item interrupted by Ctrl+C or SIGTERM; its
        attempt still goes to the reports, with its run time up to the kill: to
        the recorder in this process, or, from an xdist worker, to the
        controller over the live channel (see :mod:`~pytest_batchrunner.plugin.live`).
        """
        attempt.interrupted = True
        attempt.exit_code = attempt.signal = None
        self.last_attempt = None
        self._record(self.record_of(self.attempt_number, attempt), "interrupted")

    def record_ahead(self, attempts: list[Attempt]) -> None:
        """Record *attempts*, run ahead of this item's turn, which never came (``-x``, Ctrl+C): as they ended.

        The last one is ``passed``, ``failed`` or (killed as the run stopped) ``interrupted``; those before it were rerun.
        """
        for number, attempt in enumerate(attempts, 1):
            if number < len(attempts):
                outcome = "rerun"
            else:
                outcome = "interrupted" if attempt.interrupted else "passed" if attempt.success else "failed"
            self._record(self.record_of(number, attempt), outcome)

    def _record(self, record: dict[str, Any], outcome: str) -> None:
        # Where the run is reported: the recorder in this process, or the controller over the live channel.
        if outcome == "interrupted":
            record["interrupted"] = True
        recording = self.config.stash.get(RECORDING_KEY, None)
        if recording is not None:
            recording.unreported_attempt(record, outcome)
            return
        live = self.config.stash.get(LIVE_KEY, None)
        if live is not None:
            live.send(("attempt", {**record, "outcome": outcome}))

    def attempt_record(self) -> dict[str, Any] | None:
        """The last attempt as plain data: travels on the report, through xdist, to the reports.

        The item lets go of the attempt (and its output) here: the item lives
        until the session ends, the record only until it is spooled.
        """
        a = self.last_attempt
        if a is None:
            return None
        self.last_attempt = None
        return self.record_of(self.attempt_number, a)

    def record_of(self, number: int, a: Attempt) -> dict[str, Any]:
        """Attempt *number*'s record, as :meth:`attempt_record` gives it (also for one that ended in a job slot,
        before its item's turn: see :meth:`~pytest_batchrunner.plugin.recording.BatchRecording.attempt_ended`)."""
        policy = self.rerun_policy()
        return {
            "nodeid": self.nodeid,
            "command": self.spec.reported,
            "file": self.spec.path,
            "line": self.spec.line,
            "attempt": number,
            "success": a.success,
            "exit_code": a.exit_code,
            "signal": a.signal,
            "timed_out": a.timed_out,
            "timeout": a.timeout,
            "status": a.describe_status(),
            "stdout": a.stdout,
            "stderr": a.stderr,
            "stdout_bytes": a.stdout_bytes,
            "stderr_bytes": a.stderr_bytes,
            "started": a.started,
            "timestamp": datetime.datetime.fromtimestamp(a.started).astimezone().isoformat(timespec="milliseconds"),
            "duration_ms": round(a.duration * 1000, 3),
            "leftovers": a.leftovers,
            "expected_exit": a.expected_exit,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "host": self.config.stash.get(HOST_KEY, ":"),
            "pid": os.getpid(),
            "max_attempts": policy.reruns + 1,
            "retry_delay": policy.delay(number),
        }


def _failure_repr(excinfo: pytest.ExceptionInfo[BaseException], text: str, path: str, line: int):  # type: ignore[no-untyped-def]
    """*text* as the failure's report, with its first line as the one-line message, located at *path*:*line*.

    A plain string would be its own one-line message too, so that ``-vv`` (and
    CI, where pytest never shortens it) printed the whole block again in the
    short test summary. pytest's ``value`` style shows only lines we give, and
    its crash line is what the short summary (and ``--only-rerun``) reads: the
    first line, which starts with the status. It travels through xdist like
    any traceback.
    """
    rep = excinfo.getrepr(style="value", chain=False)
    entries = getattr(getattr(rep, "reprtraceback", None), "reprentries", None)
    crash = getattr(rep, "reprcrash", None)
    if not entries or crash is None:  # a pytest that builds it differently: the plain text
        return text
    entries[0].lines = text.split("\n")
    crash.message = text.split("\n", 1)[0]
    # The batch file's line, not where the plugin raised (what --tb=line prints).
    crash.path, crash.lineno = path, line
    return rep


@dataclasses.dataclass(frozen=True)
class RerunPolicy:
    """What pytest-rerunfailures will do with an item, as its own functions say (all zeros without it)."""

    reruns: int = 0
    base_delay: float = 0.0
    backoff: float = 1.0

    def delay(self, attempt: int) -> float:
        """Seconds rerunfailures waits after a failed *attempt* (1 for the first), backoff included."""
        return float(self.base_delay * self.backoff ** (attempt - 1)) if self.reruns else 0.0

    @classmethod
    def of(cls, item: pytest.Item) -> RerunPolicy:
        if not hasattr(item.config.option, "reruns"):  # rerunfailures is not active
            return cls()
        import pytest_rerunfailures as rr

        excluded = getattr(rr, "_is_rerun_path_excluded", None)
        if excluded is not None and excluded(item):
            return cls()
        reruns = rr.get_reruns_count(item)
        if not reruns:
            return cls()
        factor = getattr(rr, "get_reruns_delay_backoff_factor", None)
        return cls(int(reruns), float(rr.get_reruns_delay(item)), float(factor(item)) if factor else 1.0)


# pytest-rerunfailures' state for the run of one item, reset at each setup.
_RERUN_STATE = (
    "_test_failed_statuses", "_terminal_errors", "_test_xfailed",
    "_rerun_condition_excinfos", "_rerun_condition_results", "_finalizers_suspended",
)


class ReportCopies:
    """Keeps pytest's own copies of batch items' reports small, in every process.

    pytest keeps every report to the end of the session (the terminal
    reporter's statistics, on xdist workers too): a few hundred bytes each,
    which add up over 100,000 commands. Once every ``pytest_runtest_logreport``
    implementation has seen a batch item's report (xdist's worker has sent it,
    the controller's recorder has spooled it):

    * ``report.batch`` (the attempt record, with the command's kept output) is
      dropped: the recorder has it, nothing reads it later;
    * a passed setup or teardown report is dropped from the terminal reporter's
      statistics, where it sits under the empty category that nothing reads (the
      counts, ``-r`` summaries and the exit status use the other categories);
    * a passed call report is only counted at the end ("100000 passed"),
      unless something asked for passed reports (``-rp``, ``-rP``, ``-rA``,
      ``--durations``): then it is kept whole; else the statistics keep, in its
      place, the first passed batch report again: the count is the same, and
      the list holds one report however many commands passed.

    With pytest-split's ``--store-durations``, which reads every report's
    duration from the statistics, they keep every report.

    Failed, skipped and rerun reports are kept whole (their longrepr is a short,
    bounded tail of the output).
    """

    def __init__(self, config: pytest.Config, is_batch: Callable[[str], bool]) -> None:
        self.config = config
        self.is_batch = is_batch
        chars = str(getattr(config.option, "reportchars", "") or "")
        durations = getattr(config.option, "durations", None)
        self.keep_passes = any(c in chars for c in "pPA") or durations is not None
        # pytest-split's --store-durations sums every report's duration in the
        # statistics, setup and teardown included, per node id.
        self.keep_all = bool(getattr(config.option, "store_durations", False))
        self.first_pass: pytest.TestReport | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport):  # type: ignore[no-untyped-def]
        try:
            return (yield)
        finally:
            if report.__dict__.pop("batch", None) is not None or self.is_batch(report.nodeid):
                if report.passed:
                    self._forget(report)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item):  # type: ignore[no-untyped-def]
        try:
            return (yield)
        finally:
            if isinstance(item, CommandItem):
                # pytest-rerunfailures keeps its per-run bookkeeping on the item
                # (a few dicts, about 1 kB); the item outlives its run, that
                # state does not: every attempt, reruns included, is over here.
                for name in _RERUN_STATE:
                    item.__dict__.pop(name, None)
                # The attributes added during the run unshared the item's dict
                # (832 bytes, which a dict never gives back); a compact copy of
                # what is left takes about half.
                item.__dict__ = dict(item.__dict__)

    def _forget(self, report: pytest.TestReport) -> None:
        if self.keep_all:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        stats = getattr(terminal, "stats", None)
        if not isinstance(stats, dict):
            return
        if report.when != "call":
            unread = stats.get("")
            if unread and unread[-1] is report:
                unread.pop()
        elif not self.keep_passes:
            passed = stats.get("passed")
            if passed and passed[-1] is report:
                if self.first_pass is None:
                    self.first_pass = report
                else:
                    passed[-1] = self.first_pass


class CommandSetupError(Exception):
    """The command could not be started as the batch file asks (e.g. a missing ``cwd``)."""
