"""History: how long each command took in earlier runs, kept in pytest's cache.

Every run records, on the controller, each command's duration (its last
attempt's) and outcome in pytest's cache: the file :data:`HISTORY_FILE` of the
cache's ``batchrunner`` directory (``.pytest_cache/d/batchrunner/``, from
``config.cache.mkdir``; compact JSON, written atomically under a lock, so that
runs at once in one directory lose nothing), keyed by the
command's node id (the batch file relative to the rootdir, ``::``, the item's
name), which stays the same from run to run and machine to machine. The last
:data:`KEEP_RUNS` runs of a command are kept; a command not seen for
:data:`FORGET_AFTER` runs is forgotten. ``-p no:cacheprovider`` turns history
off: nothing is read or written. The Python API and the ``batchrunner``
command block the cache provider, so they keep no history. A cache that cannot
be used (a read-only folder, a file in the way, a damaged history) turns history
off for the run with one warning: history only guides, it never fails a run.

What reads it: longest-first ordering (:mod:`.ordering`), shards
(:mod:`.shards`) and relative timeouts (:mod:`.timeouts`). Each process (the
controller and every xdist worker) loads the history once, at configure; the
controller writes it back once, at the end of the session.

Shards (``--batch-shard K/N``) read the history but never write it: every shard
must split the batch from the same history, also when the shards run one after
another in one directory. ``batchrunner merge --cache-dir .pytest_cache``
records the merged run instead, as one run.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.batchfile import read_batch_file

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CACHE_DIR", "FORGET_AFTER", "HISTORY_FILE", "KEEP_RUNS", "History", "HistoryEta", "HistoryWriter", "add_run", "history",
    "history_path", "read_history", "run_of", "write_cache_file", "write_history",
]

CACHE_DIR = "batchrunner"
"""The cache directory of the history (``config.cache.mkdir(CACHE_DIR)``: ``<cache_dir>/d/batchrunner``)."""
HISTORY_FILE = "history.json"
KEEP_RUNS = 10
"""Runs kept per command."""
FORGET_AFTER = 50
"""Runs after which a command that no run has seen is dropped from the cache."""

_HISTORY_KEY = pytest.StashKey["History"]()
_DIR_KEY = pytest.StashKey["Path | None"]()


class History:
    """Past runs of commands: ``{nodeid: [[seconds, outcome], ...]}``, oldest first."""

    def __init__(self, data: Any = None) -> None:
        self.run = 0
        self.commands: dict[str, dict[str, Any]] = {}
        if isinstance(data, dict):
            run = data.get("run")
            self.run = run if isinstance(run, int) else 0
            commands = data.get("commands")
            if isinstance(commands, dict):
                # A damaged or foreign entry is ignored, not an error: history only guides.
                self.commands = {k: v for k, v in commands.items() if _valid(v)}

    def __bool__(self) -> bool:
        return bool(self.commands)

    def durations(self, nodeid: str, outcome: str | None = None) -> list[float]:
        """The recorded durations of *nodeid* (seconds, oldest first), of runs with *outcome* if given."""
        entry = self.commands.get(nodeid)
        if entry is None:
            return []
        return [float(s) for s, o in entry["runs"] if outcome is None or o == outcome]

    def expected(self, nodeid: str) -> float | None:
        """How long *nodeid* is expected to take: the median of its recorded runs, or None."""
        runs = self.durations(nodeid)
        return statistics.median(runs) if runs else None

    def usual(self, nodeid: str) -> float | None:
        """The median duration of *nodeid*'s successful runs, or None (what relative timeouts scale)."""
        runs = self.durations(nodeid, "passed")
        return statistics.median(runs) if runs else None

    def estimates(self, nodeids: Iterable[str]) -> dict[str, float] | None:
        """Expected seconds for each of *nodeids*; one without history counts as the mean of the others.

        None when none of them has history (then nothing should be reordered).
        """
        nodeids = list(nodeids)
        known = {n: e for n in nodeids if (e := self.expected(n)) is not None}
        if not known:
            return None
        mean = sum(known.values()) / len(known)
        return {n: known.get(n, mean) for n in nodeids}

    def record(self, outcomes: Iterable[tuple[str, float, str]]) -> None:
        """Add one run: ``(nodeid, seconds, outcome)`` for each command that ran."""
        self.run += 1
        for nodeid, seconds, outcome in outcomes:
            entry = self.commands.setdefault(nodeid, {"seen": self.run, "runs": []})
            entry["seen"] = self.run
            entry["runs"] = [*entry["runs"], [round(seconds, 4), outcome]][-KEEP_RUNS:]
        self.commands = {k: v for k, v in self.commands.items() if v["seen"] > self.run - FORGET_AFTER}

    def data(self) -> dict[str, Any]:
        """The cache value."""
        return {"run": self.run, "commands": self.commands}


class HistoryEta:
    """The live status's ETA from the history: the expected time of what is left, over the run's slots.

    *estimates* maps each command of the run to its expected seconds (see
    :meth:`History.estimates`); *slots* is how many commands run at once
    (workers x jobs). A running command counts for what it has left, never
    less than nothing; the ETA is never shorter than the longest of those.
    """

    def __init__(self, estimates: dict[str, float], slots: int) -> None:
        self.left = dict(estimates)
        self.slots = max(1, slots)

    def finished(self, nodeid: str) -> None:
        """*nodeid* has its final outcome."""
        self.left.pop(nodeid, None)

    def seconds(self, running: dict[str, float]) -> float:
        """Seconds left, given how long each running command (by node id) has run."""
        ahead = {n: max(0.0, self.left.get(n, 0.0) - elapsed) for n, elapsed in running.items()}
        work = sum(s for n, s in self.left.items() if n not in ahead) + sum(ahead.values())
        return max(work / self.slots, max(ahead.values(), default=0.0))


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("seen"), int):
        return False
    runs = entry.get("runs")
    return isinstance(runs, list) and all(
        isinstance(r, list) and len(r) == 2 and isinstance(r[0], (int, float)) and _seconds(r[0]) and isinstance(r[1], str)
        for r in runs
    )


def _seconds(value: float) -> bool:
    try:
        return 0 <= float(value) < math.inf
    except OverflowError:  # an integer too large for a float
        return False


def history(config: pytest.Config) -> History | None:
    """The history this process loaded (None with ``-p no:cacheprovider``); empty when there is none yet."""
    found = config.stash.get(_HISTORY_KEY, None)
    if found is None:
        # Not remembered while there is no cache: pytest's cache provider sets it in
        # its own pytest_configure, which may run after a caller's.
        if getattr(config, "cache", None) is None:
            return None
        folder = _history_dir(config)
        found = config.stash[_HISTORY_KEY] = read_history(folder / HISTORY_FILE) if folder else History()
    return found


def _history_dir(config: pytest.Config) -> Path | None:
    """The history's folder in pytest's cache, made once; None, with one warning, when it cannot be made."""
    if _DIR_KEY not in config.stash:
        try:
            config.stash[_DIR_KEY] = config.cache.mkdir(CACHE_DIR)  # type: ignore[union-attr]
        except OSError as exc:
            config.stash[_DIR_KEY] = None
            if not hasattr(config, "workerinput"):  # the controller says it, once, in the warnings summary
                config.issue_config_time_warning(
                    pytest.PytestCacheWarning(f"batch history off: cannot use pytest's cache ({exc})"), stacklevel=2
                )
    return config.stash[_DIR_KEY]


def history_path(cache_dir: str | os.PathLike[str]) -> Path:
    """The history file in the pytest cache directory *cache_dir* (what ``config.cache.mkdir`` gives)."""
    return Path(cache_dir, "d", CACHE_DIR, HISTORY_FILE)


def read_history(path: Path) -> History:
    """The history in *path*; empty if there is none or it cannot be read (history only guides)."""
    try:
        # A FIFO or a device in its place is refused (BatchFileError, a ValueError), never read.
        return History(json.loads(read_batch_file(path)))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return History()


def write_history(path: Path, history: History) -> None:
    """Write *history* to *path* atomically, as compact JSON (it can hold many commands)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(history.data(), separators=(",", ":")), "utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def add_run(path: Path, ran: list[tuple[str, float, str]]) -> None:
    """Add the run *ran* (see :func:`run_of`) to the history in *path*, read and written under a lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "ab") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        else:  # Windows: a lock on the first byte, retried for 10 s (then OSError, a warning)
            import msvcrt

            msvcrt.locking(lock.fileno(), msvcrt.LK_LOCK, 1)
        past = read_history(path)
        past.record(ran)
        write_history(path, past)


class HistoryWriter:
    """On the controller: adds this run's commands to the history at the end of the session."""

    def __init__(self, config: pytest.Config, recorder: Any) -> None:
        self.config = config
        self.recorder = recorder

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is None or not len(self.recorder):
            return
        shard = getattr(self.recorder, "shard", None)
        if shard is not None and shard.total > 1:
            # Every shard must split the batch from the same history: a shard writes none
            # (the shards after it, on this machine, would split differently); the merge does.
            return
        ran = run_of(self.recorder.results(output=False))  # streamed from the spool; no output needed
        if not ran:
            return
        folder = _history_dir(self.config)
        if folder is None:
            return  # said when it was first asked
        path = folder / HISTORY_FILE
        try:
            add_run(path, ran)  # read again, under the lock: another run in this directory may have written since
        except OSError as exc:  # as pytest's cache does: a warning, never a failed run
            warnings.warn(pytest.PytestCacheWarning(f"could not write the batch history {path}: {exc}"), stacklevel=1)


def run_of(results: Iterable[Any]) -> list[tuple[str, float, str]]:
    """``(nodeid, seconds, outcome)`` of each command of *results* (:class:`CommandResult`) that ran."""
    ran = []
    for result in results:
        if result.status in ("passed", "failed", "xpassed", "xfailed") and result.attempt_log and result.nodeid:
            last = result.attempt_log[-1]
            outcome = "passed" if last["success"] else "timed out" if last["timed_out"] else "failed"
            ran.append((result.nodeid, last["duration_ms"] / 1000, outcome))
    return ran


def write_cache_file(cache_dir: str | os.PathLike[str], results: Iterable[Any]) -> int:
    """Add a run of *results* to the history in pytest's cache directory *cache_dir* (``batchrunner merge``).

    Returns how many commands were recorded.
    """
    ran = run_of(results)
    add_run(history_path(cache_dir), ran)
    return len(ran)
