"""``--batch-jobs N``: up to N commands in flight inside one pytest process.

pytest runs one item's protocol at a time, and its hooks (reporting, capture,
rerunfailures) are not thread-safe, so the items themselves stay sequential.
What runs ahead is the *first attempt's command* of the next items: when an
item's protocol starts, the commands of the following items are started in a
thread pool until N are in flight; each item's ``runtest`` then takes its own
command's :class:`~pytest_batchrunner.process.command.Attempt`. Reports therefore come
in item order, and everything else is unchanged: a rerun runs inside its
item's protocol with its own timeout, a failed command is reported by its own
item, and capture stays bounded.

Not started ahead: items with a ``skip``/``skipif``/``xfail(run=False)``
marker, steps of a ``sequential`` group (they must wait for the step before),
anything after a Python test that has not finished (it may prepare what the
command needs), and anything once the session is stopping (``-x``,
``--maxfail``). With the default ``--batch-jobs 1``, the next command starts
when the previous one has passed, while pytest still reports it: commands
never overlap, pytest's bookkeeping does. When the run
loop ends for any reason (end, ``-x``, Ctrl+C), commands still in flight are
terminated: SIGTERM to their groups, the kill grace, then SIGKILL.

Under xdist each worker looks ahead into the items it has been given (its
queue); with ``--dist worksteal`` queued items may be taken by another worker,
so only the already-assigned next item is started ahead.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from pytest_batchrunner.plugin.engine import ATTEMPT_STARTED_KEY, ENGINE_KEY, PRESTART_KEY
from pytest_batchrunner.plugin.items import CommandItem
from pytest_batchrunner.process.prestart import Prestart, PrestartKey, prestart_key
from pytest_batchrunner.process.command import Attempt, RunningCommand, kill_group, terminate_in_flight
from pytest_batchrunner.plugin.timeouts import resolve_timeout


class JobRunner:
    """Starts the first attempt of upcoming command items ahead of their turn."""

    def __init__(self, config: pytest.Config, jobs: int) -> None:
        self.config = config
        self.jobs = jobs
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="batchrunner-job")
        self.lock = threading.Lock()
        self.pending: dict[CommandItem, Future[Attempt]] = {}
        """Started ahead, not yet taken by their item."""
        self.claimed: set[pytest.Item] = set()
        """Items whose first attempt has started (ahead or in their own protocol)."""
        self.startable: dict[CommandItem, bool] = {}
        """Whether an item may start ahead of its turn (see _may_start), once looked up."""
        self.running = 0
        """Commands started ahead and not yet finished: at most ``jobs``."""
        self.upcoming: list[pytest.Item] = []
        self.live: set[int] = set()
        self.index: dict[int, int] = {}
        self.stopping = False
        self.worksteal = getattr(config.option, "dist", "no") == "worksteal"
        self.queue: Any = _xdist_queue(config) if hasattr(config, "workerinput") else None
        self.prestart: Prestart | None = config.stash.get(PRESTART_KEY, None)
        self.handed_off = False
        self.adopted: dict[PrestartKey, Future[Attempt]] = {}
        """Started by the Python API before pytest was ready (see :mod:`~pytest_batchrunner.process.prestart`), not yet taken."""

    # -- hooks ------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        try:
            return (yield)
        finally:
            self.shutdown()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        session = item.session
        if session.shouldstop or session.shouldfail:
            return
        if self.prestart is not None and not self.handed_off:
            self._adopt(self.prestart, session)
        upcoming = self._upcoming(item, nextitem)
        with self.lock:
            self.upcoming = upcoming
        self._fill()

    # -- the work -----------------------------------------------------------------------------

    def take(self, item: CommandItem) -> Future[Attempt] | None:
        """The command started ahead for *item*'s first attempt, if any (called by the item).

        Without one, the item is claimed, so that it is not started ahead while it
        runs its command itself.
        """
        with self.lock:
            self.claimed.add(item)
            return self._started_ahead(item, remove=True)

    def ahead(self, item: pytest.Item) -> Future[Attempt] | None:
        """*item*'s first attempt if it was started ahead of its turn (and not taken yet)."""
        if not isinstance(item, CommandItem):
            return None
        with self.lock:
            return self._started_ahead(item, remove=False)

    def _started_ahead(self, item: CommandItem, remove: bool) -> Future[Attempt] | None:
        # Started by this runner (pending), or by the API before pytest was ready (adopted). Under the lock.
        future = self.pending.pop(item, None) if remove else self.pending.get(item)
        if future is None and self.adopted:
            key = prestart_key(str(item.path), item.spec)
            future = self.adopted.pop(key, None) if remove else self.adopted.get(key)
        return future

    def _adopt(self, prestart: Prestart, session: pytest.Session) -> None:
        """Take over the commands *prestart* started: they count as running until they end."""
        self.handed_off = True
        started = prestart.handoff()
        with self.lock:
            self.adopted.update(started)
            self.running += len(started)
        announce = self.config.stash.get(ATTEMPT_STARTED_KEY, None)
        if announce is not None and started:
            # The logs announce them now, stamped with when they started.
            with prestart.lock:
                left = dict(prestart.start_times)
            for item in session.items:
                if not left:
                    break
                if isinstance(item, CommandItem):
                    when = left.pop(prestart_key(str(item.path), item.spec), None)
                    if when is not None:
                        announce(item.nodeid, 1, item.rerun_policy().reruns + 1, when)
        for future in started.values():
            # Called at once for a command that has already ended.
            future.add_done_callback(self._adopted_done)

    def _adopted_done(self, future: Future[Attempt]) -> None:
        with self.lock:
            self.running -= 1
        if not future.cancelled() and future.exception() is None and future.result().success:
            self._fill()

    def _fill(self, spawn_here: bool = False) -> None:
        """Start upcoming commands until ``jobs`` are running (from the main thread or a finishing job).

        With *spawn_here* (a finishing job), the commands are spawned in this
        thread before it returns: its return hands its own result to pytest's
        main thread, which then holds the GIL while it reports, and a spawn in
        another thread would wait for it (measured: Popen 0.33 ms instead of
        0.15 ms, per command).
        """
        chosen: list[tuple[CommandItem, Future[Attempt]]] = []
        with self.lock:
            if self.stopping:
                return
            for item in self.upcoming:
                if self.running >= self.jobs:
                    break
                if not isinstance(item, CommandItem):
                    # A Python test is a barrier: commands after it may depend
                    # on what it does, so none starts before it has finished.
                    break
                if item in self.claimed or not self._may_start(item):
                    continue
                if self.adopted and prestart_key(str(item.path), item.spec) in self.adopted:
                    continue
                self.claimed.add(item)
                self.running += 1
                if spawn_here:
                    self.pending[item] = future = Future()
                    chosen.append((item, future))
                else:
                    self.pending[item] = self.pool.submit(self._run, item)  # type: ignore[index]
        for item, future in chosen:
            try:
                running = item.start_attempt(1, resolve_timeout(item), started=self._started)
            except BaseException as exc:  # noqa: BLE001 - the item reports it when it takes its attempt
                future.set_exception(exc)
                with self.lock:
                    self.running -= 1
                continue
            try:
                self.pool.submit(self._wait, running, future)
            except RuntimeError as exc:  # the pool is shutting down: the run is over
                running.abandon()
                future.set_exception(exc)
                with self.lock:
                    self.running -= 1

    def _run(self, item: CommandItem) -> Attempt:
        """Start and wait for *item*'s first attempt (its result is the pool's future)."""
        try:
            running = item.start_attempt(1, resolve_timeout(item), started=self._started)
        except BaseException:
            with self.lock:
                self.running -= 1
            raise
        return self._wait(running)

    def _wait(self, running: RunningCommand, future: Future[Attempt] | None = None) -> Attempt:
        """Wait for a started attempt; publish it (in *future*, or as the return value) after refilling."""
        try:
            attempt = running.wait()
        except BaseException as exc:
            if future is None:
                raise
            future.set_exception(exc)
            return None  # type: ignore[return-value]
        finally:
            with self.lock:
                self.running -= 1
        self.finished(attempt.pid)
        try:
            # Refill as soon as a command ends, while pytest still reports the
            # items before it: its bookkeeping overlaps the next command. Only
            # after a success, so that -x / --maxfail never see an extra start.
            if attempt.success:
                # With several jobs the pool's other threads may all be waiting on
                # commands; the next spawn then goes to the pool, not this thread.
                self._fill(spawn_here=self.jobs == 1)
        finally:
            if future is not None:
                future.set_result(attempt)
        return attempt

    def _started(self, pgid: int) -> None:
        with self.lock:
            self.live.add(pgid)
            stopping = self.stopping
        if stopping:
            kill_group(pgid, signal.SIGKILL)

    def finished(self, pgid: int) -> None:
        with self.lock:
            self.live.discard(pgid)

    def _may_start(self, item: CommandItem) -> bool:
        # Looked up once per item: the window of upcoming items is scanned at
        # every start and end of a command, and marker lookups walk the tree.
        # Collection is over, so the markers no longer change.
        allowed = self.startable.get(item)
        if allowed is None:
            allowed = self.startable[item] = self._allowed_ahead(item)
        return allowed

    @staticmethod
    def _allowed_ahead(item: CommandItem) -> bool:
        if item.spec.settings.sequential:
            return False
        for name in ("skip", "skipif"):
            if item.get_closest_marker(name) is not None:
                return False
        xfail = item.get_closest_marker("xfail")
        return xfail is None or xfail.kwargs.get("run", True)

    def _upcoming(self, item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.Item]:
        items = item.session.items
        if hasattr(self.config, "workerinput"):
            return [item, *self._worker_queue(items, nextitem)]
        if not self.index:
            self.index = {id(it): i for i, it in enumerate(items)}
        start = self.index.get(id(item))
        if start is None:
            return [item] + ([nextitem] if nextitem is not None else [])
        return items[start : start + self.jobs * 2]

    def _worker_queue(self, items: list[pytest.Item], nextitem: pytest.Item | None) -> list[pytest.Item]:
        ahead = [nextitem] if nextitem is not None else []
        if self.worksteal or nextitem is None:
            return ahead
        queue = self.queue
        if queue is None:
            return ahead
        with queue.lock() as pending:
            indices = [i for i in list(pending)[: self.jobs * 2] if isinstance(i, int)]
        return ahead + [items[i] for i in indices]

    def shutdown(self) -> None:
        """Terminate commands still in flight (TERM, grace, KILL) and drop their results."""
        with self.lock:
            self.stopping = True
            pending = list(self.pending.values())
        terminate_in_flight(self.lock, self.live, pending, self.config.stash[ENGINE_KEY].kill_grace)
        self.pending.clear()
        self.pool.shutdown(wait=True)
        if self.prestart is not None:
            self.prestart.close()


def _xdist_queue(config: pytest.Config) -> Any:
    """The worker's queue of assigned item indices (pytest-xdist's ``WorkerInteractor.torun``), if reachable."""
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor":
            queue = getattr(plugin, "torun", None)
            if queue is not None and hasattr(queue, "lock"):
                return queue
    return None
