"""The pytest plugin (the ``pytest11`` entry point ``pytest_batchrunner.plugin``): options, ini values and hooks.

This module is wiring; every module of this folder speaks pytest's hooks and
owns one part: :mod:`.discovery` (which files are batch files, and which of
them a run was asked to execute), :mod:`.items` (the collector and the item), :mod:`.jobs`
(commands started ahead), :mod:`.timeouts` (pytest-timeout),
:mod:`.pipelines` (sequential groups and xdist scheduling), :mod:`.recording`
(reports turned into results on the controller), :mod:`.live` (output lines and
the status of running commands, shown as the run goes), :mod:`.environment` (the
environment commands start from), :mod:`.engine` (settings and stash keys),
:mod:`.history` (earlier runs' durations in pytest's cache), :mod:`.ordering`
(longest first), :mod:`.shards` (``--batch-shard K/N``) and :mod:`.tags` (the
names ``tags=`` may take, registered as markers).

May import the parser (:mod:`pytest_batchrunner.batchfile`), the process layer
and the reports; must not import :mod:`batchrunner` (the original's face sits
on top of this folder, not under it).
"""

from __future__ import annotations

import gc
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.reports import options as reports
from pytest_batchrunner.plugin.engine import (
    ENGINE_KEY,
    JOBS_KEY,
    LIVE_KEY,
    ONLY_COMMANDS_KEY,
    MIN_RELATIVE_TIMEOUT,
    RECORDING_KEY,
    EngineSettings,
    default_timeout,
    has_timeout_plugin,
    runs_commands,
)
from pytest_batchrunner.plugin.discovery import BatchDiscovery
from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES
from pytest_batchrunner.process.command import DEFAULT_KILL_GRACE
from pytest_batchrunner.values import (
    MAX_SECONDS,
    byte_count,
    cli_bytes,
    cli_float,
    cli_int,
    cli_share,
    non_negative_float,
    non_negative_int,
    share,
    timeout_seconds,
)

PATTERNS_HELP = (
    "Glob patterns of batch files to collect when found in a directory (opt-in discovery; "
    "e.g. 'ci/*.batch *.cmds'): a pattern with a '/' matches the path relative to the rootdir, "
    "one without the file name. Without it, only batch files named on the command line run."
)
CAPTURE_HELP = (
    "Bytes of each command's stdout and stderr to keep (the tail, plus a small head); "
    f"the rest is counted and dropped. Default {DEFAULT_CAPTURE_BYTES}."
)
GRACE_HELP = (
    "Seconds between SIGTERM and SIGKILL when a command's process group is stopped "
    f"(timeout, leftover processes, interruption). Default {DEFAULT_KILL_GRACE:g}."
)


JOBS_HELP = (
    "Run up to N commands at once inside each pytest process (no extra interpreters); "
    "reports stay in item order. Combines with -n. Default 1: one at a time, the next "
    "starting as soon as the previous one passed. 0: each command inside its own item's protocol."
)

OUTPUT_LINES_HELP = (
    "Lines of a failed command's stdout and of its stderr shown in the terminal (the last ones). "
    "Default 15; 0 shows none. Reports keep the whole captured output."
)

BATCH_TIMEOUT_HELP = (
    "Relative timeout for each attempt of every command without a timeout= of its own, as a share of "
    "its usual duration in pytest's cache (median of its successful runs), e.g. 300%; never below "
    f"{MIN_RELATIVE_TIMEOUT:g} s. Without that history, --timeout applies (or none)."
)

_SIGTERM_KEY = pytest.StashKey[Any]()
DISCOVERY_KEY = pytest.StashKey[BatchDiscovery]()
LF_SKIP_PLUGIN = "lfplugin-collskip"
"""The name pytest registers its ``--lf`` file skipping under (see :func:`pytest_make_collect_report`)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("batchrunner", "batch files of shell commands (pytest-batchrunner)")
    group.addoption("--batch-capture-bytes", dest="batch_capture_bytes", type=cli_bytes, default=None,
                    metavar="BYTES", help=CAPTURE_HELP)
    group.addoption("--batch-kill-grace", dest="batch_kill_grace", type=cli_float, default=None,
                    metavar="SECONDS", help=GRACE_HELP)
    group.addoption("--batch-jobs", dest="batch_jobs", type=cli_int, default=None, metavar="N",
                    help=JOBS_HELP)
    group.addoption("--batch-output-lines", dest="batch_output_lines", type=cli_int, default=None, metavar="N",
                    help=OUTPUT_LINES_HELP)
    from pytest_batchrunner.plugin.ordering import ORDER_HELP
    from pytest_batchrunner.plugin.shards import SHARD_HELP, parse_shard

    group.addoption("--batch-order", dest="batch_order", choices=("duration", "file"), default=None,
                    help=ORDER_HELP)
    group.addoption("--batch-shard", dest="batch_shard", type=parse_shard, default=None, metavar="K/N",
                    help=SHARD_HELP)
    group.addoption("--batch-timeout", dest="batch_timeout", type=cli_share, default=None, metavar="PERCENT",
                    help=BATCH_TIMEOUT_HELP.replace("%", "%%"))  # argparse %-formats option help
    parser.addini("batch_order", ORDER_HELP, default=None)
    parser.addini("batch_timeout", BATCH_TIMEOUT_HELP, default=None)
    parser.addini("batch_patterns", PATTERNS_HELP, type="args", default=[])
    parser.addini("batch_jobs", JOBS_HELP, default=None)
    parser.addini("batch_capture_bytes", CAPTURE_HELP, default=None)
    parser.addini("batch_kill_grace", GRACE_HELP, default=None)
    parser.addini("batch_output_lines", OUTPUT_LINES_HELP, default=None)
    reports.add_options(group, parser)
    from pytest_batchrunner.plugin import live

    live.add_options(group, parser)


def _setting(config: pytest.Config, name: str, convert, default):  # type: ignore[no-untyped-def]
    """Command line > ini > default, validated with an error that says where the value came from."""
    value = config.getoption(name)
    if value is not None:
        return value
    ini = config.getini(name)
    if ini in (None, ""):
        return default
    try:
        return convert(str(ini).strip())
    except ValueError as exc:
        raise pytest.UsageError(f"ini value {name}: {exc}") from None


def _order(value: str) -> str:
    if value not in ("duration", "file"):
        raise ValueError(f"'{value}' is not 'duration' or 'file'")
    return value


def discovery(config: pytest.Config) -> BatchDiscovery:
    """Which files are batch files, and which of them this run executes (created once, at configure)."""
    found = config.stash.get(DISCOVERY_KEY, None)
    if found is None:
        found = config.stash[DISCOVERY_KEY] = BatchDiscovery(config)
        config.pluginmanager.register(found, "batchrunner-discovery")
    return found


def is_controller(config: pytest.Config) -> bool:
    """True in the process that reports: the xdist controller, or a run without xdist."""
    return not hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before any conftest.py is loaded and any plugin's pytest_configure: the
    # markers registered now are the ini file's own, which tags may name.
    from pytest_batchrunner.plugin.tags import remember_ini_markers

    remember_ini_markers(early_config)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_batchrunner.plugin.items import FAILURE_TAIL_LINES

    _check_other_plugins_values(config)
    _check_named_batch_files(config)
    _check_retries_before_workers(config)
    config.stash[ENGINE_KEY] = EngineSettings(
        capture_bytes=_setting(config, "batch_capture_bytes", byte_count, DEFAULT_CAPTURE_BYTES),
        kill_grace=_setting(config, "batch_kill_grace", non_negative_float, DEFAULT_KILL_GRACE),
        output_lines=_setting(config, "batch_output_lines", non_negative_int, FAILURE_TAIL_LINES),
    )
    from pytest_batchrunner.plugin.environment import EnvironmentSnapshot

    config.pluginmanager.register(EnvironmentSnapshot(config), "batchrunner-environment")
    from pytest_batchrunner.plugin.items import ReportCopies

    config.pluginmanager.register(ReportCopies(config, discovery(config).is_command_id), "batchrunner-report-copies")
    jobs = _setting(config, "batch_jobs", non_negative_int, 1)
    # Resolved once (command line > ini); read back with config.getoption where they apply.
    config.option.batch_order = _setting(config, "batch_order", _order, "duration")
    config.option.batch_timeout = _setting(config, "batch_timeout", share, None)
    # In an xdist worker the default does not look ahead: xdist blames a worker's
    # crash on the item it is running, which must be the command that crashed it.
    if runs_commands(config) and (jobs > 1 or (jobs == 1 and is_controller(config))):
        from pytest_batchrunner.plugin.jobs import JobRunner

        config.stash[JOBS_KEY] = runner = JobRunner(config, jobs)
        config.pluginmanager.register(runner, "batchrunner-jobs")
    from pytest_batchrunner.plugin.timeouts import RelativeTimeouts

    config.pluginmanager.register(RelativeTimeouts(), "batchrunner-relative-timeouts")
    if has_timeout_plugin(config):
        from pytest_batchrunner.plugin.timeouts import TimeoutIntegration

        config.pluginmanager.register(TimeoutIntegration(), "batchrunner-timeout")
    # Registered before the recording: their trylast collection hooks run before its own.
    shard = _configure_planning(config, jobs)
    from pytest_batchrunner.plugin import remote

    remote.configure(config, is_controller(config))
    from pytest_batchrunner.plugin import batchtexts

    from pytest_batchrunner.plugin.pipelines import read_batch_files

    batchtexts.configure(config, discovery(config), lambda: read_batch_files(config, discovery(config)))
    if is_controller(config) and runs_commands(config):
        from pytest_batchrunner.plugin.recording import BatchRecording

        recording = BatchRecording(config, discovery(config))
        config.stash[RECORDING_KEY] = recording
        config.pluginmanager.register(recording, "batchrunner-recording")
        if shard is not None:
            recording.recorder.shard = shard  # type: ignore[attr-defined]  # read by the JSON results
        reports.configure(config, recording, default_timeout(config))
        from pytest_batchrunner.plugin.history import HistoryWriter

        # It writes only if pytest's cache is on (-p no:cacheprovider: never).
        config.pluginmanager.register(HistoryWriter(config, recording.recorder), "batchrunner-history")
    if runs_commands(config):
        from pytest_batchrunner.plugin import live

        watcher = live.configure(config, is_controller(config))
        if watcher is not None:
            config.stash[LIVE_KEY] = watcher
    from pytest_batchrunner.plugin.pipelines import SequentialGroups, configure_distribution

    config.pluginmanager.register(SequentialGroups(), "batchrunner-sequential")
    configure_distribution(config, discovery(config), discovery(config).is_command_id)
    _install_sigterm(config)


def _configure_planning(config: pytest.Config, jobs: int):  # type: ignore[no-untyped-def]
    """Shards (``--batch-shard``) and, in-process with ``--batch-jobs N > 1``, longest-first order."""
    shard = None
    value = config.getoption("batch_shard", None)
    if value is not None:
        from pytest_batchrunner.plugin.shards import ShardSelection, shard_from_environment

        index, total = shard_from_environment() if value == "auto" else value
        shard = ShardSelection(config, index, total)
        config.pluginmanager.register(shard, "batchrunner-shard")
    dist = getattr(config.option, "dist", "no")
    if jobs > 1 and is_controller(config) and dist == "no" and config.getoption("batch_order", None) != "file":
        from pytest_batchrunner.plugin.ordering import Ordering

        config.pluginmanager.register(Ordering(config), "batchrunner-ordering")
    return shard


def _check_other_plugins_values(config: pytest.Config) -> None:
    """Bound the values of pytest-rerunfailures and pytest-timeout that reach our commands.

    Their own parsers accept any float: ``--reruns-delay 1e10`` would end in an
    ``OverflowError`` from ``time.sleep`` (an INTERNALERROR) and NaN in a wait
    that never ends. A timeout may be as long as wanted (it is waited for in steps).
    """
    delay = getattr(config.option, "reruns_delay", None)
    if delay is not None:
        try:
            non_negative_float(delay, MAX_SECONDS)
        except ValueError as exc:
            raise pytest.UsageError(f"--reruns-delay: {exc}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Before pytest-timeout's own pytest_configure reads the value: a word
    # there ("soon") is an INTERNALERROR of its own.
    if has_timeout_plugin(config):
        _check_timeout(config)
    if is_controller(config) and runs_commands(config):
        from pytest_batchrunner.plugin import live

        live.wrap_terminal(config)  # before pytest_configure makes the terminal reporter


def _check_timeout(config: pytest.Config) -> None:
    """Refuse a pytest-timeout value that cannot be waited for (NaN, infinite), naming where it came from.

    Only the source pytest-timeout reads (``--timeout`` > ``PYTEST_TIMEOUT`` >
    the ``timeout`` ini value) is checked: the others do not apply. Its own
    parsing only calls ``float()``, so ``nan`` and ``inf`` (or ``1e400``)
    would mean "no timeout" without a word, and a word ("soon") in the
    environment or the ini file would be an INTERNALERROR.
    """
    value = getattr(config.option, "timeout", None)
    source = "--timeout"
    if value is None:
        value = os.environ.get("PYTEST_TIMEOUT")
        source = "environment variable PYTEST_TIMEOUT"
    if value is None:
        value = config.getini("timeout") or None
        source = "ini value timeout"
    if value is None:
        return
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):  # 0 or less is pytest-timeout's "no timeout", and fine
        try:
            timeout_seconds(value)  # for the words every other value gets
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None


# Above this many items, collection's objects are frozen out of the garbage
# collector's reach (they live until the session ends anyway).
_FREEZE_ITEMS = 10_000
_FROZEN_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session):  # type: ignore[no-untyped-def]
    """Collect without the cyclic garbage collector, and freeze what a large collection built.

    Collecting 100,000 commands builds millions of objects that all live until
    the end: the collector's automatic passes during collection, and pytest's
    own ``gc.collect()`` calls at the end of the session, walk them again and
    again for nothing (about half the time of collecting 100,000 lines). Small
    sessions only get the pause. The objects stay frozen until the process
    exits (pytest's last ``gc.collect()`` runs after every unconfigure hook);
    the Python API, which runs pytest inside a longer-lived program, unfreezes
    them after its run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield)
    finally:
        if enabled:
            gc.enable()
        items = getattr(session, "items", ())
        from pytest_batchrunner.plugin.items import CommandItem

        session.config.stash[ONLY_COMMANDS_KEY] = bool(items) and all(isinstance(i, CommandItem) for i in items)
        if len(items) >= _FREEZE_ITEMS and not session.config.stash.get(_FROZEN_KEY, False):
            gc.collect()
            gc.freeze()
            session.config.stash[_FROZEN_KEY] = True


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A line's ``retries=`` without pytest-rerunfailures (``-p no:rerunfailures``) is a usage error: nothing would rerun it."""
    if hasattr(config.option, "reruns"):
        return
    from pytest_batchrunner.plugin.items import CommandItem

    for item in items:
        if isinstance(item, CommandItem) and item.spec.settings.retries:
            raise _retries_error(item.spec)


def _retries_error(spec) -> pytest.UsageError:  # type: ignore[no-untyped-def]
    from pytest_batchrunner.batchfile import printable

    return pytest.UsageError(
        f"{printable(spec.path)}:{spec.line}: retries={spec.settings.retries} needs pytest-rerunfailures, which is "
        "not active (-p no:rerunfailures, or not installed): enable it, or remove retries= from the line"
    )


def _check_retries_before_workers(config: pytest.Config) -> None:
    """Under xdist without pytest-rerunfailures, refuse ``retries=`` on the controller, before any worker starts.

    (A usage error raised in a worker's collection would be an INTERNALERROR of xdist.)
    """
    if hasattr(config.option, "reruns") or not is_controller(config) or getattr(config.option, "dist", "no") == "no":
        return
    from pytest_batchrunner.batchfile import BatchFileError, parse_batch_text
    from pytest_batchrunner.plugin.pipelines import read_batch_files

    for path, data in read_batch_files(config, discovery(config)).items():
        try:
            specs = parse_batch_text(data, os.path.relpath(path, config.invocation_params.dir)) if b"retries" in data else []
        except BatchFileError:
            continue  # collection reports the problem
        for spec in specs:
            if spec.settings.retries:
                raise _retries_error(spec)


def pytest_collection_finish(session: pytest.Session) -> None:
    from pytest_batchrunner.plugin.items import CommandItem

    config = session.config
    if is_controller(config) and not config.option.collectonly and any(isinstance(i, CommandItem) for i in session.items):
        from pytest_batchrunner.plugin.engine import refuse_retry_plugins

        refuse_retry_plugins(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_batchrunner.process.spawn import stop_adopting

    stop_adopting()
    if config.stash.get(ONLY_COMMANDS_KEY, False):
        # What is alive now (pytest keeps every report until the end) is frozen:
        # pytest's five gc.collect() calls after this hook then walk nothing,
        # instead of a second each at 100,000 commands, or 20-30 ms for a small
        # batch. Only for a session of batch commands alone: those calls are how
        # pytest reports a Python test's objects whose __del__ failed.
        gc.freeze()


_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
_ECHO_SECONDS = 3.0


class Interrupts:
    """SIGTERM, SIGHUP and SIGQUIT act as Ctrl+C; a second one while the run stops is not an abort.

    CI runners and ``timeout(1)`` stop a job with SIGTERM, a closed terminal or
    ssh session sends SIGHUP, and Ctrl+\\ sends SIGQUIT: by default Python would
    die at once, leaving reports unwritten (commands are then killed by the
    guardian). Each becomes a ``KeyboardInterrupt``: commands are killed,
    reports written, exit status "interrupted". Once the first has been raised,
    a second signal (an impatient second Ctrl+C) is only acknowledged, so that
    it cannot cut the writing of the reports short with a traceback; a third
    one interrupts the wind-down itself.
    """

    def __init__(self, names: tuple[str, ...] = _NAMES, protect: bool = True) -> None:
        self.names = names
        self.protect = protect
        """Whether a second signal is only acknowledged (off inside the Python API, which holds
        and replays Ctrl+C itself: a replayed signal must raise)."""
        self.previous: dict[int, Any] = {}
        self.stopping = False
        self.ignored = 0
        self.closed = False
        self.first: tuple[int, float] = (0, 0.0)
        self.parent: int | None = None
        """In a local xdist worker, its controller's pid: a signal once it is gone ends the worker at once."""
        self.on_stop: list[Any] = []
        """Called with the signal's number when it first stops the run (the xdist controller passes it on)."""

    def install(self) -> None:
        """Take over the signals whose handler is still Python's default (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.names:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            current = signal.getsignal(sig)
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            if current is default:
                self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        if self.parent is not None:
            if os.getppid() != self.parent:
                # A local xdist worker whose controller died (see .workerstop): nobody
                # reads its reports any more; its guardian kills its commands.
                os._exit(128 + signum)
            if self.closed or (self.first[0] == signum and time.monotonic() - self.first[1] < _ECHO_SECONDS):
                # The same stop twice (the signal to the process group, and the
                # controller passing it on, maybe late) is one stop; and a worker
                # whose session is over (xdist had nothing more for it) only
                # waits to exit: a stop there would raise in its exit handlers.
                return
        if self.closed:
            # The run is over but something put this handler back (a holder of
            # handlers restoring what it saw): behave as the handler before ours.
            previous = self.previous.get(signum)
            if callable(previous):
                previous(signum, frame)
                return
            raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")
        if not self.stopping or not self.protect:
            self.stopping = True
            self.first = (signum, time.monotonic())
            for stop in self.on_stop:
                stop(signum)
            raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")
        self.ignored += 1
        if self.ignored >= 2:
            raise KeyboardInterrupt(f"received {signal.Signals(signum).name} again")
        try:
            os.write(2, b"\npytest-batchrunner: already stopping: killing commands, writing reports "
                        b"(send it again to abandon them)\n")
        except OSError:
            pass

    def pytest_runtest_logstart(self) -> None:
        # Another item starts: the last interrupt was caught by a test itself
        # (pytest.raises(KeyboardInterrupt)), the run is not stopping.
        self.stopping = False
        self.ignored = 0

    def restore(self) -> None:
        """Put the previous handlers back (a cleanup of the config: after every unconfigure hook,
        pytest's own included, so that a late second Ctrl+C cannot land in them)."""
        self.closed = True
        if self.parent is not None:
            # A local xdist worker ends with its session: a stop passed on late by
            # its controller must still land here (see handle), not in Python's
            # handler, which would raise in the worker's exit handlers.
            return
        for sig, handler in self.previous.items():
            if signal.getsignal(sig) == self.handle:
                signal.signal(sig, handler)


def _install_sigterm(config: pytest.Config) -> None:
    """Install :class:`Interrupts` for this run."""
    inner = any(type(plugin).__name__ == "InnerRun" for plugin in config.pluginmanager.get_plugins())
    # The Python API holds and replays Ctrl+C itself; it gets SIGTERM, SIGHUP and SIGQUIT as interrupts.
    interrupts = Interrupts(_NAMES[1:], protect=False) if inner else Interrupts()
    interrupts.install()
    config.stash[_SIGTERM_KEY] = interrupts
    config.pluginmanager.register(interrupts, "batchrunner-interrupts")
    config.add_cleanup(interrupts.restore)
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_batchrunner.plugin.workerstop import LocalWorkers, stop_with_controller

        if is_controller(config):
            if getattr(config.option, "dist", "no") != "no":
                workers = LocalWorkers()
                config.pluginmanager.register(workers, "batchrunner-local-workers")
                interrupts.on_stop.append(workers.stop)
        elif stop_with_controller(config):
            interrupts.parent = os.getppid()


def pytest_collect_file(file_path: Path, parent: pytest.Collector):  # type: ignore[no-untyped-def]
    if discovery(parent.config).wanted(file_path):
        if not _regular_batch_file(file_path, parent.config):
            return None
        from pytest_batchrunner.plugin.items import BatchFile

        return BatchFile.from_parent(parent, path=file_path, nodeid=_file_nodeid(file_path, parent.config))
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport | None:
    """Collect a batch file that failed last time under ``--lf`` even when pytest cannot find it by its ids.

    pytest's ``--lf`` finds the files of the failed ids by cutting them at the
    first ``::``, and skips every other file: a file whose name holds ``::``, or
    whose id escapes a character (``\\x01``), was skipped and its failed
    commands never ran again. Such a file is collected as usual; ``--lf`` still
    deselects its commands that passed.
    """
    from pytest_batchrunner.plugin.items import BatchFile

    if not isinstance(collector, BatchFile) or not collector.config.getoption("lf", False):
        return None
    if collector.config.rootpath / collector.nodeid.split("::")[0] == collector.path:
        return None  # pytest finds it
    cache = collector.config.cache
    failed = cache.get("cache/lastfailed", {}) if cache is not None else {}
    prefix = collector.nodeid + "::"
    if not any(nodeid.startswith(prefix) for nodeid in failed):
        return None
    # The same hook without --lf's file skipping nor this one: pytest's own collection, by public pluggy calls.
    pluginmanager = collector.config.pluginmanager
    skipping = pluginmanager.get_plugin(LF_SKIP_PLUGIN)
    if skipping is None:  # a pytest that skips files otherwise: its own --lf applies
        return None
    collect = pluginmanager.subset_hook_caller("pytest_make_collect_report", remove_plugins=[skipping, sys.modules[__name__]])
    return collect(collector=collector)  # type: ignore[no-any-return]


def _file_nodeid(path: Path, config: pytest.Config) -> str | None:
    """A batch file's node id where pytest's would not do; ``None`` (pytest's own) for most.

    Outside the rootdir, its path relative to the rootdir (``../ext/b.batch``):
    pytest would name it relative to the argument that found it, which is the
    empty string for a file named on the command line, so that its commands' ids
    (``::echo ok``) would no longer say they are a batch file's, and two such
    files' would clash. A name holding ESC or BEL shows them escaped
    (:func:`~pytest_batchrunner.batchfile.printable`), in every ``-v`` line and summary.
    """
    from pytest_batchrunner.batchfile import printable

    try:
        own = path.relative_to(config.rootpath).as_posix()
    except ValueError:
        try:
            return printable(Path(os.path.relpath(path, config.rootpath)).as_posix())
        except ValueError:  # another drive (Windows): no relative path
            return printable(path.as_posix())
    return None if printable(own) == own else printable(own)


def _check_named_batch_files(config: pytest.Config) -> None:
    """A batch file named on the command line that is not a regular file (or, under ``-n``, is missing) is a
    usage error, before anything runs. (pytest itself would only say "not found" for a FIFO or a device.)
    """
    from pytest_batchrunner.batchfile import not_a_regular_file, printable

    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if discovery(config).is_batch_file(path.name):
            kind = not_a_regular_file(path)
            if kind is not None and kind != "a directory":
                raise pytest.UsageError(f"{arg}: not a regular file ({kind}); batch files must be regular files")
            if getattr(config.option, "dist", "no") != "no" and is_controller(config):
                if not path.exists():
                    # In-process pytest says so; under -n its workers would stop in silence ("0 items").
                    raise pytest.UsageError(f"file or directory not found: {printable(arg)}")
                try:
                    arg.encode("utf-8")
                except UnicodeEncodeError:
                    # pytest-xdist sends the arguments to its workers as UTF-8 text:
                    # it would stop with an INTERNALERROR (for any test file).
                    raise pytest.UsageError(
                        f"{printable(arg)}: a file name that is not UTF-8 cannot be sent to pytest-xdist's "
                        "workers; rename the file, or run without -n"
                    ) from None


def _regular_batch_file(path: Path, config: pytest.Config) -> bool:
    """Only regular files are batch files: a FIFO would hang the reader, ``/dev/zero`` never ends.

    One named on the command line is a usage error; one found in a folder is
    skipped with a warning.
    """
    from pytest_batchrunner.batchfile import not_a_regular_file

    kind = not_a_regular_file(path)
    if kind is None:
        return True
    message = f"{path}: not a regular file ({kind}); batch files must be regular files"
    named = {Path(config.invocation_params.dir, arg.split("::", 1)[0]) for arg in config.args}
    if path in named:
        raise pytest.UsageError(message)
    from pytest_batchrunner.plugin.items import BatchFileWarning

    config.issue_config_time_warning(BatchFileWarning(message + ", skipped"), stacklevel=2)
    return False


# An xdist worker sends a report's attempt record as its values alone, in
# RECORD_KEYS order: execnet's serialiser (pure Python, on both ends) then writes
# and reads half as much for each command.
_RECORD_MARK = "batchrunner-record-values"


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report):  # type: ignore[no-untyped-def]
    data = yield
    record = data.get("batch") if isinstance(data, dict) and hasattr(config, "workerinput") else None
    if type(record) is dict:  # a call report of a batch command (setup and teardown reports carry none)
        from pytest_batchrunner.plugin.items import RECORD_KEYS

        if tuple(record) == RECORD_KEYS:
            data["batch"] = [_RECORD_MARK, list(record.values())]
    return data


@pytest.hookimpl(tryfirst=True)
def pytest_report_from_serializable(config: pytest.Config, data: dict[str, Any]) -> None:
    record = data.get("batch")
    if type(record) is list and len(record) == 2 and record[0] == _RECORD_MARK:
        from pytest_batchrunner.plugin.items import RECORD_KEYS

        data["batch"] = dict(zip(RECORD_KEYS, record[1], strict=True))
    # None: pytest's own hook builds the report from *data*.


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if call.when == "call":
        record_of = getattr(item, "attempt_record", None)
        if record_of is not None:
            item.report_command_time(report)  # type: ignore[attr-defined]
            record = record_of()
            if record is not None:
                # A plain dict: pytest-xdist serialises it with the report.
                report.batch = record
    return report
