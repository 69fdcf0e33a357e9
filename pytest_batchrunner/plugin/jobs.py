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
marker, items for which a ``conftest.py`` or another plugin implements
``pytest_runtest_setup`` (or ``_protocol``, ``_call``: it may skip the item or
prepare what the command needs), steps of a ``sequential`` group (they must wait for the step before),
anything after a Python test that has not finished (it may prepare what the
command needs), and anything once the session is stopping (``-x``,
``--maxfail``). With ``--maxfail`` (``-x``), a failed attempt holds every
start until its item has been reported: pytest decides then whether the run
stops (a rerun may still pass, an ``xfail`` does not count), and if it stops,
nothing has started in between, whatever the timing. An item running its own
command (a rerun outside a slot, a sequential step) holds starts while it
runs, so that a failure there cannot race a start from a finishing job
either. With the default ``--batch-jobs 1``, the next command starts when the
previous one has passed, while pytest still reports it: commands never
overlap, pytest's bookkeeping does. When the run
loop ends for any reason (end, ``-x``, Ctrl+C), commands still in flight are
terminated: SIGTERM to their groups, the kill grace, then SIGKILL; every
command started ahead of an item pytest never ran is then recorded as it
ended (interrupted, if the stop killed it).

Under xdist each worker looks ahead into the items it has been given (its
queue); with ``--dist worksteal`` queued items may be taken by another worker,
so only the already-assigned next item is started ahead.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from pytest_batchrunner.plugin.engine import ATTEMPT_ENDED_KEY, ATTEMPT_STARTED_KEY, ENGINE_KEY, PRESTART_KEY
from pytest_batchrunner.plugin.items import CommandFailed, CommandItem
from pytest_batchrunner.process.prestart import Prestart, PrestartKey, prestart_key
from pytest_batchrunner.process.command import Attempt, RunningCommand, stop_group, terminate_in_flight
from pytest_batchrunner.plugin.timeouts import resolve_timeout


HELD_COUNT = 10_000
"""At most this many commands started ahead and not yet taken by their items."""
HELD_BYTES = 64 * 1024 * 1024
"""No more starts while attempts that ended ahead hold this much output (each is bounded by the capture limit)."""


class JobRunner:
    """Starts the first attempt of upcoming command items ahead of their turn."""

    def __init__(self, config: pytest.Config, jobs: int) -> None:
        self.config = config
        self.jobs = jobs
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="batchrunner-job")
        self.lock = threading.Lock()
        self.pending: dict[CommandItem, Future[Attempt]] = {}
        """Started ahead, not yet taken by their item."""
        self.retries: dict[tuple[CommandItem, int], Future[Attempt]] = {}
        """Reruns a job slot will start after their delay (see :meth:`_chain`), by item and attempt number."""
        self.stop = threading.Event()
        """Set when the run loop ends: a rerun waiting for its delay starts nothing."""
        self.claimed: set[pytest.Item] = set()
        """Items whose first attempt has started (ahead or in their own protocol)."""
        self.startable: dict[CommandItem, bool] = {}
        """Whether an item may start ahead of its turn (see _may_start), once looked up."""
        self.foreign: dict[int, list[str]] = {}
        """Per hook relay (by id: relays live as long as the session): the conftests and plugins that set items up."""
        self.held_by: set[str] = set()
        """Those that kept a command from starting ahead (named in the notice, see pytest_terminal_summary)."""
        self.running = 0
        """Commands started ahead and not yet finished: at most ``jobs``."""
        self.upcoming: list[pytest.Item] = []
        self.window = jobs * 2
        """Items looked at ahead of the one pytest runs (more with longest-first order, see :mod:`.ordering`)."""
        self.items: list[pytest.Item] | None = None
        """In-process with several jobs: the session's items, scanned from :attr:`cursor` on (see :meth:`_scan`)."""
        self.start = 0
        """The index of the item pytest runs."""
        self.cursor = 0
        """The first item a refill looks at: those before it have started, or may not start ahead."""
        self.held_bytes = 0
        self.sizes: dict[CommandItem, int] = {}
        """Output held by attempts that ended ahead of their turn, not yet taken (bounds how far ahead commands start)."""
        self.live: set[int] = set()
        self.index: dict[int, int] = {}
        self.stopping = False
        self.worksteal = getattr(config.option, "dist", "no") == "worksteal"
        self.queue: Any = _xdist_queue(config) if hasattr(config, "workerinput") else None
        self.prestart: Prestart | None = config.stash.get(PRESTART_KEY, None)
        self.handed_off = False
        self.adopted: dict[PrestartKey, Future[Attempt]] = {}
        """Started by the Python API before pytest was ready (see :mod:`~pytest_batchrunner.process.prestart`), not yet taken."""
        self.adopted_items: dict[PrestartKey, CommandItem] = {}
        self.maxfail = int(getattr(config.option, "maxfail", 0) or 0)
        self.holds: set[object] = set()
        """With --maxfail: items (or prestart keys) whose attempt failed or that run their own command, not
        yet reported; while any is held, nothing starts (see the module's docstring)."""

    # -- hooks ------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        try:
            return (yield)
        finally:
            self.shutdown()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
        session = item.session
        if not (session.shouldstop or session.shouldfail):
            if self.prestart is not None and not self.handed_off:
                self._adopt(self.prestart, session)
            upcoming = self._upcoming(item, nextitem)
            with self.lock:
                self.upcoming = upcoming
            self._fill()
        try:
            return (yield)
        except BaseException as exc:
            if not isinstance(exc, Exception) and isinstance(item, CommandItem):
                self._interrupted(item)
            raise
        finally:
            self._reported(item)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line naming what made ``--batch-jobs N`` run commands one at a time."""
        recording = self.config.pluginmanager.get_plugin("batchrunner-recording")
        if self.jobs < 2 or recording is None or not recording.recorder.active:
            return
        # Under xdist the workers ran the commands: the plugins and root conftests are the controller's too.
        names = sorted({_shown(name, self.config.rootpath) for name in self.held_by | set(_foreign_setup(self.config.hook))})
        if names:
            terminalreporter.write_line(
                f"pytest-batchrunner: --batch-jobs {self.jobs} ran commands one at a time beside {', '.join(names)}: "
                "it implements pytest_runtest_setup (or _call, _protocol), which may skip a command or prepare what it needs"
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):  # type: ignore[no-untyped-def]
        # An item about to run its own command (not started ahead, or a rerun
        # no slot runs): hold starts until it has passed, or until it is reported.
        own = self.maxfail > 0 and isinstance(item, CommandItem) and self._runs_itself(item)
        if own:
            with self.lock:
                self.holds.add(item)
        outcome = yield
        if own and isinstance(item, CommandItem) and item.last_attempt is not None and item.last_attempt.success:
            with self.lock:
                self.holds.discard(item)
            self._fill()
        return outcome

    def _runs_itself(self, item: CommandItem) -> bool:
        """Whether *item*'s next attempt will run in its own protocol (nothing started it ahead)."""
        number = item.attempt_number + 1
        with self.lock:
            if number == 1:
                return self._started_ahead(item, remove=False) is None
            future = self.retries.get((item, number))
        return future is None or (future.done() and isinstance(future.exception(), _NotStarted))

    def _interrupted(self, item: CommandItem) -> None:
        """The run stopped (Ctrl+C, SIGTERM...) in *item*'s protocol: if its attempt still runs in a job
        slot, kill every command in flight now and record that attempt, with its run time up to the kill.

        The attempt is the one the item was waiting for, or, when the stop came
        before the item took it (the Python API lets a held Ctrl+C through as
        the item starts), its first attempt started ahead. One that had ended
        before the stop is left as it was (reported as interrupted, without it).
        """
        future = item.__dict__.pop("interrupted_ahead", None)
        if future is None and item.attempt_number == 0:
            with self.lock:
                future = self._started_ahead(item, remove=True)
        if future is None or future.done():
            return
        self.stop.set()
        with self.lock:
            self.stopping = True
        grace = self.config.stash[ENGINE_KEY].kill_grace
        owners: list[tuple[threading.Lock, set[int]]] = [(self.lock, self.live)]
        if self.prestart is not None:
            owners.append((self.prestart.lock, self.prestart.live))

        def kill_all(signum: int) -> None:
            for lock, live in owners:
                with lock:
                    groups = list(live)
                for pgid in groups:
                    stop_group(pgid, signum)

        kill_all(signal.SIGTERM)
        # Exceptions only: a third Ctrl+C (see plugin.Interrupts) abandons this, as the rest of the wind-down.
        try:
            attempt = future.result(timeout=grace)
        except Exception:  # noqa: BLE001 - still running after the grace (or it failed to start)
            attempt = None
        if attempt is None:
            kill_all(signal.SIGKILL)
            try:
                # The slot sees its shell die at once, then reads what is left of its output.
                attempt = future.result(timeout=5.0)
            except Exception:  # noqa: BLE001 - nothing to record
                return
        if item.attempt_number == 0:
            item.attempt_number = 1
        item.record_interrupted(attempt)

    def _reported(self, item: pytest.Item) -> None:
        """*item*'s protocol is over (all its reports sent): release its hold, or stop for good."""
        session = item.session
        with self.lock:
            if session.shouldstop or session.shouldfail:
                self.stopping = True
            if not self.holds:
                return
            self.holds.discard(item)
            if self.holds and isinstance(item, CommandItem):
                # Its command may have been started by the Python API (held by its key).
                self.holds.discard(prestart_key(str(item.path), item.spec))

    # -- the work -----------------------------------------------------------------------------

    def take(self, item: CommandItem, number: int = 1) -> Future[Attempt] | None:
        """The command started ahead for *item*'s attempt *number*, if any (called by the item).

        Without a first attempt started ahead, the item is claimed, so that it is
        not started ahead while it runs its command itself. A rerun is there when
        the item's job slot has started it (see :meth:`_chain`).
        """
        with self.lock:
            if number > 1:
                future = self.retries.pop((item, number), None)
                if future is not None and future.done() and isinstance(future.exception(), _NotStarted):
                    return None
                return future
            self.claimed.add(item)
            self.held_bytes -= self.sizes.pop(item, 0)
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

    def _failed_ahead(self, item: pytest.Item) -> bool:
        """Whether *item*'s first attempt, started ahead and not taken yet, has ended failed. Under the lock."""
        if not isinstance(item, CommandItem):
            return False
        future = self._started_ahead(item, remove=False)
        if future is None or not future.done():
            return False
        return future.cancelled() or future.exception() is not None or not future.result().success

    def _adopt(self, prestart: Prestart, session: pytest.Session) -> None:
        """Take over the commands *prestart* started: they count as running until they end."""
        self.handed_off = True
        started = prestart.handoff()
        with self.lock:
            self.adopted.update(started)
            self.running += len(started)
        if not started:
            return
        announce = self.config.stash.get(ATTEMPT_STARTED_KEY, None)
        with prestart.lock:
            times = dict(prestart.start_times)
        left = dict(started)
        for item in session.items:
            if not left:
                break
            if not isinstance(item, CommandItem):
                continue
            key = prestart_key(str(item.path), item.spec)
            future = left.pop(key, None)
            if future is None:
                continue
            self.adopted_items[key] = item
            if announce is not None and key in times:
                # The logs announce it now, stamped with when it started.
                announce(item.nodeid, 1, item.rerun_policy().reruns + 1, times[key])
            # Its item takes this future, published once the logs have the attempt's end (a callback
            # runs after the waiters wake: the item's report could come first) and, in a slot, once
            # the slot knows about a rerun (see _chain).
            proxy: Future[Attempt] = Future()
            with self.lock:
                in_slot = self._may_start(item) and self._retries_in_slot(item)
                self.adopted[key] = proxy
            if in_slot:
                future.add_done_callback(lambda done, item=item, proxy=proxy: self._adopted_chain(item, done, proxy))
            else:
                # Called at once for a command that has already ended.
                future.add_done_callback(lambda done, key=key, item=item, proxy=proxy: self._adopted_done(done, key, item, proxy))
        for key, future in left.items():  # not collected (cannot happen: the specs are the items')
            future.add_done_callback(lambda done, key=key: self._adopted_done(done, key))

    def _adopted_chain(self, item: CommandItem, done: Future[Attempt], proxy: Future[Attempt]) -> None:
        """An adopted first attempt of an item whose reruns run in its slot has ended: go on in the slot."""
        if done.cancelled() or done.exception() is not None:
            self._adopted_done(done, prestart_key(str(item.path), item.spec), proxy=proxy)
            return
        try:
            self.pool.submit(self._chain, item, proxy, 1, done.result())
        except RuntimeError as exc:  # the pool is shutting down: the run is over
            proxy.set_exception(exc)
            with self.lock:
                self.running -= 1

    def _adopted_done(
        self, future: Future[Attempt], key: PrestartKey | None = None, item: CommandItem | None = None,
        proxy: Future[Attempt] | None = None,
    ) -> None:
        success = not future.cancelled() and future.exception() is None and future.result().success
        try:
            if item is not None and not future.cancelled() and future.exception() is None:
                self._announce_end(item, 1, future.result(), False)
            with self.lock:
                self.running -= 1
                if not success and self.maxfail > 0 and key is not None:
                    self.holds.add(key)
        finally:
            if proxy is not None:
                _publish(future, proxy)
        if success:
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
            if self.stopping or self.holds:
                return
            for item in self._scan():
                if self.running >= self.jobs:
                    break
                if not isinstance(item, CommandItem):
                    # A Python test is a barrier: commands after it may depend
                    # on what it does, so none starts before it has finished.
                    break
                if self.jobs == 1 and self._failed_ahead(item):
                    # One at a time: only a success starts the next command, also
                    # when the failure ended before its item's protocol began
                    # (its rerun, in that protocol, comes first).
                    break
                if item in self.claimed or not self._may_start(item):
                    continue
                if self.adopted and prestart_key(str(item.path), item.spec) in self.adopted:
                    continue
                self.claimed.add(item)
                self.running += 1
                if self._retries_in_slot(item):
                    # Its reruns run in this slot too, each after its delay (see _chain).
                    self.pending[item] = future = Future()
                    self.pool.submit(self._chain, item, future)
                elif spawn_here:
                    self.pending[item] = future = Future()
                    chosen.append((item, future))
                else:
                    self.pending[item] = self.pool.submit(self._run, item)  # type: ignore[index]
        for item, future in chosen:
            try:
                running = self._start(item, 1)
            except BaseException as exc:  # noqa: BLE001 - the item reports it when it takes its attempt
                future.set_exception(exc)
                with self.lock:
                    self.running -= 1
                continue
            try:
                self.pool.submit(self._wait, item, running, future)
            except RuntimeError as exc:  # the pool is shutting down: the run is over
                running.abandon()
                future.set_exception(exc)
                with self.lock:
                    self.running -= 1

    def _start(self, item: CommandItem, number: int) -> RunningCommand:
        """Start attempt *number* of *item* in a slot, ahead of its item's turn."""
        return item.start_attempt(number, resolve_timeout(item), started=self._started, ahead=True)

    def _run(self, item: CommandItem) -> Attempt:
        """Start and wait for *item*'s first attempt (its result is the pool's future)."""
        try:
            running = self._start(item, 1)
        except BaseException:
            with self.lock:
                self.running -= 1
            raise
        return self._wait(item, running)

    def _wait(self, item: CommandItem, running: RunningCommand, future: Future[Attempt] | None = None) -> Attempt:
        """Wait for a started attempt; publish it (in *future*, or as the return value) after refilling."""
        try:
            attempt = running.wait()
        except BaseException as exc:
            self._ended(item, failed=True)
            if future is None:
                raise
            future.set_exception(exc)
            return None  # type: ignore[return-value]
        self._ended(item, failed=not attempt.success, held=len(attempt.stdout) + len(attempt.stderr))
        self.finished(attempt.pid)
        self._announce_end(item, 1, attempt, False)
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

    # -- reruns in the job slots ---------------------------------------------------------------

    def _retries_in_slot(self, item: CommandItem) -> bool:
        """Whether *item*'s reruns run in its job slot, each after its delay, while other commands go on.

        Only with several jobs (one job runs one command at a time anyway), when
        pytest-rerunfailures will rerun it, and when its rules can be read ahead:
        not with a ``condition=``, ``--max-suite-reruns`` or an ``xfail`` marker.
        pytest-rerunfailures still decides every rerun, in the item's protocol;
        the slot only starts the rerun it will ask for (see :func:`_would_rerun`),
        and the item's delay is then waited in the slot, not again by its protocol.
        Called under the lock, once per item.
        """
        if self.jobs <= 1:
            return False
        policy = item.rerun_policy()  # read before the delay is handed over, below
        if not policy.reruns or not _predictable(item):
            return False
        _hand_over_delay(item, policy.reruns)
        return True

    def _chain(self, item: CommandItem, first: Future[Attempt], number: int = 1, attempt: Attempt | None = None) -> None:
        """Run *item*'s attempt *number* (or take its *attempt*, already run) and each rerun
        pytest-rerunfailures will ask for, in this slot.

        Each attempt has its own timeout and is published in its own future, which
        the item's protocol takes (:meth:`take`); the next one's future exists
        before this one is published, so the item never runs a rerun the slot runs.
        """
        policy = item.rerun_policy()
        future = first
        success = False
        try:
            while True:
                if attempt is None:
                    try:
                        running = self._start(item, number)
                        attempt = running.wait()
                    except BaseException as exc:  # noqa: BLE001 - the item reports it when it takes its attempt
                        self._hold_failed(item)
                        future.set_exception(exc)
                        return
                    self.finished(attempt.pid)
                success = attempt.success
                if not success:
                    self._hold_failed(item)
                rerun: Future[Attempt] | None = None
                try:
                    again = not success and number <= policy.reruns and _would_rerun(item, attempt)
                except Exception:  # noqa: BLE001 - rerunfailures still decides, in the item's protocol
                    again = False
                if again:
                    rerun = Future()
                    with self.lock:
                        self.retries[(item, number + 1)] = rerun
                self._announce_end(item, number, attempt, again)
                future.set_result(attempt)
                if rerun is None:
                    return
                # The original's thread slept here too: this slot waits, the others go on.
                delay = policy.delay(number)
                # A huge delay (1e300, inf) is a wait until the run ends, not an OverflowError.
                delay = min(delay, threading.TIMEOUT_MAX) if delay >= 0 else 0.0
                if self.stop.wait(delay) or item.session.shouldstop or item.session.shouldfail:
                    rerun.set_exception(_NotStarted("the run is stopping"))
                    return
                number, future, attempt = number + 1, rerun, None
        finally:
            with self.lock:
                self.running -= 1
            if success:
                self._fill()

    def _announce_end(self, item: CommandItem, number: int, attempt: Attempt, rerun: bool) -> None:
        """Tell the recording that attempt *number* of *item* ended here, ahead of its report (see ATTEMPT_ENDED_KEY)."""
        ended = self.config.stash.get(ATTEMPT_ENDED_KEY, None)
        if ended is not None:
            ended(item, number, attempt, rerun)

    def _ended(self, item: CommandItem, failed: bool, held: int = 0) -> None:
        # One step under the lock: no other job can see the free slot before
        # the failure holds every start.
        with self.lock:
            self.running -= 1
            if item in self.pending:  # not taken yet: its output waits for its item's turn
                self.sizes[item] = held
                self.held_bytes += held
            if failed and self.maxfail > 0:
                self.holds.add(item)

    def _hold_failed(self, item: CommandItem) -> None:
        # In a slot (see _chain) the slot stays taken until the chain ends, so
        # holding now is before any other job could refill.
        if self.maxfail > 0:
            with self.lock:
                self.holds.add(item)

    def _started(self, pgid: int) -> None:
        with self.lock:
            self.live.add(pgid)
            stopping = self.stopping
        if stopping:
            stop_group(pgid, signal.SIGKILL)

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

    def _allowed_ahead(self, item: CommandItem) -> bool:
        if item.spec.settings.sequential:
            return False
        for name in ("skip", "skipif"):
            if item.get_closest_marker(name) is not None:
                return False
        xfail = item.get_closest_marker("xfail")
        if xfail is not None and not xfail.kwargs.get("run", True):
            return False
        # One answer per hook relay: items of the same folder share it.
        hooks = item.ihook
        foreign = self.foreign.get(id(hooks))
        if foreign is None:
            foreign = self.foreign[id(hooks)] = _foreign_setup(hooks)
        self.held_by.update(foreign)
        return not foreign

    def _upcoming(self, item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.Item]:
        items = item.session.items
        if hasattr(self.config, "workerinput"):
            return [item, *self._worker_queue(items, nextitem)]
        if not self.index:
            self.index = {id(it): i for i, it in enumerate(items)}
        start = self.index.get(id(item))
        if start is None:
            self.items = None
            return [item] + ([nextitem] if nextitem is not None else [])
        if self.jobs > 1:
            self.items, self.start = items, start
        return items[start : start + self.window]

    def _scan(self) -> Iterator[pytest.Item]:
        """The items a refill looks at, in order (under the lock).

        With several jobs in-process, every item from the one pytest runs on, so
        that a long command being reported never leaves a slot idle (no
        head-of-line wait); the scan resumes where the last one stopped, and stops
        while the attempts that ended ahead hold more than :data:`HELD_BYTES` of
        output or :data:`HELD_COUNT` commands. Else the fixed window of :meth:`_upcoming`.
        """
        items = self.items
        if items is None:
            yield from self.upcoming
            return
        index = max(self.cursor, self.start)
        while index < len(items) and len(self.pending) < HELD_COUNT and self.held_bytes < HELD_BYTES:
            self.cursor = index  # a refill that stops at this item looks at it again next time
            yield items[index]
            index += 1
        self.cursor = index

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
        """Terminate commands still in flight (TERM, grace, KILL), then record what ran ahead of items pytest never ran."""
        self.stop.set()
        with self.lock:
            self.stopping = True
            pending = [*self.pending.values(), *self.retries.values()]
        terminate_in_flight(self.lock, self.live, pending, self.config.stash[ENGINE_KEY].kill_grace)
        self.pool.shutdown(wait=True)
        if self.prestart is not None:
            self.prestart.close()
        with self.lock:
            untaken = [*self.pending.items(), *((self.adopted_items[key], f) for key, f in self.adopted.items())]
            self.pending.clear()
            self.adopted.clear()
        for item, first in untaken:
            item.record_ahead(self._ran(item, first))
        self.retries.clear()

    def _ran(self, item: CommandItem, first: Future[Attempt]) -> list[Attempt]:
        """The attempts of *item* that ran in its slot, first one *first*, its reruns after it (in :attr:`retries`)."""
        attempts: list[Attempt] = []
        future: Future[Attempt] | None = first
        while future is not None and future.done() and not future.cancelled() and future.exception() is None:
            attempts.append(future.result())
            future = self.retries.pop((item, len(attempts) + 1), None)
        return attempts


def _publish(done: Future[Attempt], proxy: Future[Attempt]) -> None:
    """Give *proxy* the outcome of *done*."""
    if done.cancelled():
        proxy.set_exception(_NotStarted("cancelled"))
    elif done.exception() is not None:
        proxy.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        proxy.set_result(done.result())


# Hooks that run in an item's protocol before its command: an implementation of
# one of them may skip the item or prepare what its command needs.
_BEFORE_THE_COMMAND = ("pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call")
# Whose implementations of them are known not to do either for a batch item:
# pytest's own, the plugin's and the Python API's (which holds Ctrl+C around a
# protocol), and its foundation's (pytest-timeout arms its timer, rerunfailures
# reads its settings, both read ahead here too); pytest-randomly, which
# reseeds Python's random generators, which a shell command never reads; and
# pytest-benchmark, whose setup acts only on items with its benchmark marker; and
# Hypothesis, whose call hook acts only on Python test functions (items with an ``obj``).
_KNOWN_PACKAGES = frozenset(
    {"_pytest", "pytest_batchrunner", "batchrunner", "xdist", "pytest_timeout", "pytest_rerunfailures", "pytest_randomly",
     "pytest_benchmark", "_hypothesis_pytestplugin"}
)


def _foreign_setup(hooks: Any) -> list[str]:
    """The ``conftest.py`` files and other plugins implementing a hook (of an item's relay *hooks*) that runs before its command.

    Such an item is not started ahead: ``pytest_runtest_setup`` may skip it, or
    create a file its command reads, and both must happen before the command
    starts, as they do with ``--batch-jobs 0``.
    """
    names = []
    for name in _BEFORE_THE_COMMAND:
        for impl in getattr(hooks, name).get_hookimpls():
            module = getattr(impl.function, "__module__", None) or ""
            if module.partition(".")[0] not in _KNOWN_PACKAGES and impl.plugin_name not in names:
                names.append(impl.plugin_name)
    return names


def _shown(name: str, root: Any) -> str:
    """A plugin's name, or a ``conftest.py``'s path relative to the rootdir."""
    if os.sep in name:
        try:
            return os.path.relpath(name, root)
        except ValueError:
            return name
    return name


class _NotStarted(Exception):
    """A rerun the slot did not start: the run stopped during its delay."""


def _predictable(item: CommandItem) -> bool:
    """Whether pytest-rerunfailures' decision to rerun *item* can be read ahead of its protocol."""
    option = item.config.option
    if getattr(option, "max_suite_reruns", None) is not None or item.get_closest_marker("xfail") is not None:
        return False
    marker = item.get_closest_marker("flaky")
    return marker is None or "condition" not in marker.kwargs


def _hand_over_delay(item: CommandItem, reruns: int) -> None:
    """Give *item* a ``flaky`` marker like its own but with no delay: its job slot waits the delay instead.

    pytest-rerunfailures reads the delay when the item's protocol starts and
    sleeps it in pytest's main thread before each rerun; the slot has already
    waited it when the rerun's attempt is taken, and a second wait would hold
    every other item's report. Everything else (the number of reruns,
    ``only_rerun``, ``rerun_except``) stays as rerunfailures resolves it.
    """
    import pytest_rerunfailures as rr

    marker = item.get_closest_marker("flaky")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None:
        for name, value in zip(("reruns", "reruns_delay", "reruns_delay_backoff_factor"), marker.args, strict=False):
            kwargs.setdefault(name, value)
        kwargs.setdefault("reruns", 1)
    else:
        # A marker's count replaces the global one, or is added to it with --reruns-mode append.
        extra = 0
        if getattr(item.config.option, "reruns_mode", None) == "append":
            extra = rr._get_global_reruns(item.config) or 0
        kwargs["reruns"] = reruns - extra
    kwargs["reruns_delay"] = 0
    item.add_marker(pytest.mark.flaky(**kwargs), append=False)


def _would_rerun(item: CommandItem, attempt: Attempt) -> bool:
    """Whether pytest-rerunfailures' ``--only-rerun`` / ``--rerun-except`` (or the marker's) let *attempt*'s failure rerun.

    Asked through rerunfailures' own matching, on the failure the item will raise.
    """
    import pytest_rerunfailures as rr

    hard_fail = getattr(rr, "_should_hard_fail_on_error", None)
    if hard_fail is None:
        return False
    try:
        raise CommandFailed(attempt, item.spec)  # raised, as the item raises it: with a traceback
    except CommandFailed as exc:
        excinfo = pytest.ExceptionInfo.from_exception(exc)
    return not hard_fail(item, _FailedCall(), excinfo)


class _FailedCall:
    """What rerunfailures reads of a report to decide: a failed call."""

    outcome = "failed"
    when = "call"
    failed = True


def _xdist_queue(config: pytest.Config) -> Any:
    """The worker's queue of assigned item indices (pytest-xdist's ``WorkerInteractor.torun``), if reachable."""
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor":
            queue = getattr(plugin, "torun", None)
            if queue is not None and hasattr(queue, "lock"):
                return queue
    return None
