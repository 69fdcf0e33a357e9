"""Which files are batch files, and which of them a run was asked to execute.

A batch file's lines are shell commands, so one is run only when asked for:

* named on the command line (``pytest cmds.batch``, ``pytest "cmds.batch::make test"``);
* or matching a ``batch_patterns`` glob of the project's ini file (opt-in
  discovery: ``batch_patterns = ci/*.batch``; a pattern with a ``/`` matches the
  path relative to the rootdir, one without matches the file name anywhere);
* or, with ``--lf`` / ``--ff``, holding a command that failed last time.

A ``*.batch`` file found any other way (``pytest``, ``pytest .``, a directory
argument) is not collected; the run ends with one line saying how many were
left out and how to run them. A file is a batch file when its name matches
``*.batch`` or it matches a ``batch_patterns`` pattern.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from pathlib import Path

import pytest

from pytest_batchrunner.batchfile import printable

DEFAULT_PATTERNS = ["*.batch"]

SKIPPED_KEY = "batchrunner_skipped_files"
"""The worker's count of left-out batch files, sent to the controller in ``workeroutput``."""
UNCOLLECTED_KEY = "batchrunner_uncollected_files"
"""The files named on the command line that nothing collected, sent to the controller in ``workeroutput``."""


def matches(relpath: str, patterns: list[str]) -> bool:
    """Whether *relpath* (``/``-separated, relative to the rootdir) matches one of *patterns*.

    A pattern holding a ``/`` is matched against the whole relative path, one
    without against the file name alone (``fnmatch`` rules: ``*`` also crosses ``/``).
    """
    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relpath if "/" in p else name, p) for p in patterns)


class BatchDiscovery:
    """Decides, for each file pytest offers, whether it is a batch file to collect (one per process)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.configured: list[str] = [p for p in config.getini("batch_patterns") if p]
        self.patterns = DEFAULT_PATTERNS + [p for p in self.configured if p not in DEFAULT_PATTERNS]
        self._command_files: dict[str, bool] = {}
        self.named = _named_paths(config)
        self.named_dirs = {os.path.dirname(key) for key in self.named if self.is_batch_file(self.relpath(Path(key)))}
        """The folders of the batch files named on the command line (see :class:`CollectedOnce`)."""
        self.searched = _searched_directories(config)
        self.failed_last = _last_failed_files(config)
        self.skipped: set[str] = set()
        """Batch files found but not asked for (relative paths), in this process."""
        self.skipped_elsewhere = 0
        """The largest count reported by an xdist worker (each worker collects the same files)."""
        self.unused: dict[str, None] = {}
        """Files named on the command line that nothing collected a test from (relative to the rootdir); xdist workers' too."""
        self.watched: dict[str, str] = {}
        """The node ids of other plugins' collectors of those files (pytest's doctest plugin takes any ``.txt``)."""
        self.used: set[str] = set()

    def relpath(self, path: Path) -> str:
        try:
            return path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return path.as_posix()

    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        """A folder holding named batch files is collected once (:class:`CollectedOnce`); warn of FIFOs and devices."""
        if self.configured:
            self._warn_irregular(path)
        if _key(path) in self.named_dirs and not (path / "__init__.py").is_file():  # a package is pytest's
            return CollectedOnce.from_parent(parent, path=path)
        return None

    def _warn_irregular(self, path: Path) -> None:
        """Warn of what pytest's folder walk passes over in silence: a FIFO or a device that would be a batch file.

        pytest offers only regular files to ``pytest_collect_file``, so a
        ``jobs.batch`` FIFO in a folder is never read (it would hang the
        reader); the user is told it was skipped. Only with ``batch_patterns``
        set: without it no file found in a folder runs anyway.
        """
        from pytest_batchrunner.batchfile import not_a_regular_file
        from pytest_batchrunner.plugin.items import BatchFileWarning

        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_dir() or entry.is_file():
                    continue
            except OSError:
                continue
            rel = self.relpath(Path(entry.path))
            kind = not_a_regular_file(entry.path)
            if kind is not None and matches(rel, self.configured):
                warnings.warn(BatchFileWarning(f"{rel}: not a regular file ({kind}); batch files must be regular files, skipped"),
                              stacklevel=1)

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):  # type: ignore[no-untyped-def]
        """Watch a file named on the command line that is not a batch file nor Python (``pytest cmds.txt``)."""
        collected = yield
        if file_path.suffix != ".py" and _key(file_path) in self.named:
            rel = self.relpath(file_path)
            if not self.is_batch_file(rel):
                self.unused[rel] = None
                self.watched.update((node.nodeid, rel) for node in collected)
        return collected

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        name = self.watched.get(report.nodeid)
        if name is not None and (report.result or not report.passed):
            self.used.add(name)

    def uncollected(self) -> list[str]:
        """The watched files that gave no test (or error): nothing ran them."""
        return [name for name in self.unused if name not in self.used]

    def is_batch_file(self, relpath: str) -> bool:
        """Whether the file at *relpath* holds commands (``*.batch`` or a configured pattern)."""
        return matches(relpath, self.patterns)

    def is_command_id(self, nodeid: str) -> bool:
        """Whether *nodeid* names a command of a batch file: its file (up to the last ``::``) is one.

        A Python test's id may hold ``x.batch::`` in its parameters: a file part that
        holds ``::`` is a batch file's only when the id does not start with a ``.py`` file.
        """
        path, sep, _ = nodeid.rpartition("::")
        if not sep:
            return False
        known = self._command_files.get(path)
        if known is None:  # once per file: asked for every report
            known = self._command_files[path] = self.is_batch_file(path) and (
                "::" not in path or not path.partition("::")[0].endswith(".py"))
        return known

    def wanted(self, path: Path, count: bool = True) -> bool:
        """Whether *path* is a batch file this run was asked to execute; with *count*, counts one that was not."""
        rel = self.relpath(path)
        if not self.is_batch_file(rel):
            return False
        if matches(rel, self.configured) or _key(path) in self.named or _key(path) in self.failed_last:
            return True
        # pytest also offers the files beside a named file; only a file found by
        # searching a directory argument (or testpaths, or ".") counts as left out.
        if count and any(d == path.parent or d in path.parents for d in self.searched):
            self.skipped.add(rel)
        return False

    def count_skipped(self) -> int:
        return max(len(self.skipped), self.skipped_elsewhere)

    # -- hooks --------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[SKIPPED_KEY] = len(self.skipped)
            workeroutput[UNCOLLECTED_KEY] = self.uncollected()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:  # type: ignore[no-untyped-def]
        count = getattr(node, "workeroutput", {}).get(SKIPPED_KEY, 0)
        self.skipped_elsewhere = max(self.skipped_elsewhere, int(count or 0))
        self.unused.update(dict.fromkeys(getattr(node, "workeroutput", {}).get(UNCOLLECTED_KEY, ())))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        self.noted = True
        if hasattr(self.config, "workerinput"):
            return
        for name in self.uncollected():
            terminalreporter.write_line(
                f"pytest-batchrunner: {printable(name)} was named but pytest collected no test from it; to run its "
                "lines as commands, rename it to *.batch, add it to batch_patterns in the ini file, or run "
                f"batchrunner -f {printable(name)}",
                yellow=True,
            )
        count = self.count_skipped()
        if count:
            files = "file was" if count == 1 else "files were"
            terminalreporter.write_line(
                f"pytest-batchrunner: {count} batch {files} found but not run (batch files run only when asked for): "
                "name them (pytest path/to/cmds.batch) or set batch_patterns in the ini file",
                yellow=True,
            )

    noted = False

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # Without pytest's terminal reporter (pytest-rich's --rich), no summary hook runs.
        if not self.noted and config.pluginmanager.hasplugin("rich-terminal-reporter"):
            from pytest_batchrunner.plugin.recording import PlainTerminal

            self.pytest_terminal_summary(PlainTerminal())


class CollectedOnce(pytest.Dir):  # type: ignore[misc]  # pytest.Dir is final for typing only
    """pytest's folder collector, whose children are found once.

    pytest collects a file's folder again for each file named on the command
    line (``pytest b/*.batch``): every file of the folder offered again, a
    collector built again for each batch file, N times N for N files.
    """

    children: list[pytest.Item | pytest.Collector] | None = None

    def collect(self):  # type: ignore[no-untyped-def]
        if self.children is None:
            self.children = list(super().collect())
        return self.children


def _key(path: Path | str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _named_paths(config: pytest.Config) -> set[str]:
    """The files given as arguments (``file`` or ``file::id``), not found through a directory or ``testpaths``."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return set()
    named = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        named.add(_key(path))
        try:
            named.add(_key(path.resolve()))
        except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
            pass
    return named


def _searched_directories(config: pytest.Config) -> list[Path]:
    """The directories pytest searches: its directory arguments (or ``testpaths``, or the current directory)."""
    found = []
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if path.is_dir():
            found.append(Path(os.path.abspath(path)))
    return found


def _last_failed_files(config: pytest.Config) -> set[str]:
    """With ``--lf`` / ``--ff``: the files of last run's failures (their batch files count as named)."""
    if not (config.getoption("lf", False) or config.getoption("failedfirst", False)):
        return set()
    cache = getattr(config, "cache", None)
    if cache is None:
        return set()
    lastfailed = cache.get("cache/lastfailed", {}) or {}
    return {_key(config.rootpath / nodeid.split("::", 1)[0]) for nodeid in lastfailed}
