"""Sequential groups: ordered steps on one worker, failing fast.

Lines marked ``sequential`` (``# batch: group=deploy sequential``; without
``group=`` the group is the file) are the steps of a pipeline:

* **one worker, file order.** Each step carries pytest-xdist's ``xdist_group``
  marker, and under ``-n`` (``--dist load``, the default, or ``loadgroup``) the
  plugin's scheduler hands each group as one unit of work to one worker, which
  runs it in collection (file) order (:func:`configure_distribution`). Under
  ``--dist loadfile`` its units are whole files (under ``loadscope``, xdist's scopes); an explicit ``--dist load`` or
  ``worksteal`` gets a warning. Steps are never started ahead by ``--batch-jobs``.
* **fail fast.** Once a step has finally failed (after its reruns), the group's
  later steps are skipped with "not run: step N (line L) failed".
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from difflib import unified_diff
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.batchfile import BatchFileError, group_key, item_names, parse_batch_text, printable, read_batch_file
from pytest_batchrunner.plugin.discovery import BatchDiscovery
from pytest_batchrunner.plugin.engine import REMOTE_KEY


class SequentialGroups:
    """Keeps each sequential group in file order and fail-fast (in every process that collects or runs items).

    * **Order.** After every other plugin has reordered or filtered the items
      (pytest-randomly, pytest-random-order, ``--ff``, any
      ``pytest_collection_modifyitems``), the steps of each group are put back
      in file order, in the places the group's steps hold: other items keep
      the order those plugins gave them. The rule is a pure function of the
      item list, so every xdist worker (which collects the same list) gets the
      same result.
    * **Never out of order.** A step runs only once every earlier step of its
      group has run in this process; otherwise it is reported as not run,
      naming the missing step ("was not selected" when ``-k``, ``--lf``, a
      shard... left it out; "did not run before it" when something still
      changed the order or sent it to another worker).
    * **Fail fast.** After a step has finally failed, the later steps are not run.
    """

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.running: dict[str, pytest.Item] = {}
        self.finished: set[tuple[str, str, int]] = set()
        """Steps ``(file, group, step)`` whose protocol ended in this process."""
        self.selected: set[tuple[str, str, int]] = set()
        """Steps in the session's final list of items."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items):  # type: ignore[no-untyped-def]
        # The outermost wrapper (registered after every installed plugin): its
        # code after the yield runs once every other implementation has run.
        result = yield
        keep_group_order(items)
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Again, for what edits the list later (cheap; changes nothing if in order).
        keep_group_order(session.items)
        self.selected = {step_id(item) for item in session.items if _is_step(item)}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not _is_step(item):
            return
        key = group_key(item.spec)  # type: ignore[attr-defined]
        assert key is not None
        reason = self.failed.get(key)
        if reason is not None:
            reason = f"{reason} failed"
        else:
            reason = self._missing_step(item)
        if reason is not None:
            # A skip marker (not pytest.skip()) so the skip is reported at the
            # batch line, as for a "skip" setting: pytest's skipping plugin
            # evaluates markers in its own (later) setup hook.
            item.add_marker(pytest.mark.skip(reason=f"not run: {reason}"))
        self.running[item.nodeid] = item

    def _missing_step(self, item: pytest.Item) -> str | None:
        """The first earlier step of *item*'s group that has not run here, described; None if all have."""
        file, key, step = step_id(item)
        for earlier in range(1, step):
            if (file, key, earlier) in self.finished:
                continue
            lines = getattr(item.parent, "group_lines", {}).get(key, [])
            where = f"step {earlier} (line {lines[earlier - 1]})" if earlier <= len(lines) else f"step {earlier}"
            if (file, key, earlier) not in self.selected:
                return f"{where} was not selected"
            return f"{where} did not run before it"
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        item = self.running.get(report.nodeid)
        if item is None:
            return
        # Only a final failure counts: a failure that will be retried is a "rerun".
        if report.outcome == "failed":
            key = group_key(item.spec)  # type: ignore[attr-defined]
            if key is not None:
                self.failed.setdefault(key, f"step {item.step} (line {item.spec.line})")  # type: ignore[attr-defined]
        if report.when == "teardown":
            self.running.pop(report.nodeid, None)
            self.finished.add(step_id(item))


def _is_step(item: pytest.Item) -> bool:
    from pytest_batchrunner.plugin.items import CommandItem

    return isinstance(item, CommandItem) and item.spec.settings.sequential and item.step > 0


def step_id(item: pytest.Item) -> tuple[str, str, int]:
    """``(file, group, step)`` of a sequential step: steps are numbered per file and group."""
    return str(item.path), group_key(item.spec) or "", item.step  # type: ignore[attr-defined]


def keep_group_order(items: list[pytest.Item]) -> None:
    """Put the steps of each sequential group back in file order, in the places they hold in *items* (in place).

    Items outside groups keep their places. Steps of one group from several
    files (``group=NAME`` in each) keep the order of their files in *items*.
    """
    places: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if _is_step(item):
            places.setdefault(group_key(item.spec), []).append(index)  # type: ignore[attr-defined,arg-type]
    for indices in places.values():
        if len(indices) < 2:
            continue
        steps = [items[i] for i in indices]
        first_seen: dict[str, int] = {}
        for position, step in enumerate(steps):
            first_seen.setdefault(str(step.path), position)
        steps.sort(key=lambda it: (first_seen[str(it.path)], it.step))  # type: ignore[attr-defined]
        for i, step in zip(indices, steps, strict=True):
            items[i] = step


def configure_distribution(config: pytest.Config, discovery: BatchDiscovery, is_batch: Callable[[str], bool]) -> None:
    """Under ``--dist load``, ``loadgroup``, ``loadfile`` or ``loadscope``: the plugin's own scheduler (:class:`BatchScheduling`).

    Under ``load`` only when the batch files have groups or the history can order them
    (else xdist's own, which sends short items in chunks); under the others whenever
    batch files are collected. ``worksteal`` and ``each`` keep xdist's schedulers
    (``each`` behind :class:`EachGuard`).
    """
    if hasattr(config, "workerinput"):
        return
    dist = getattr(config.option, "dist", "no")
    if dist == "each":
        config.pluginmanager.register(EachGuard(), "batchrunner-each")
        return
    if dist not in ("load", "loadgroup", "loadfile", "loadscope", "worksteal"):
        return
    remote = config.stash.get(REMOTE_KEY, None)
    if remote is not None:
        # Remote workers collect copies the controller may not have: the groups
        # are the ones they send (see .remote), known before anything is scheduled.
        if dist != "worksteal":
            config.pluginmanager.register(GroupScheduling(remote.groups, dist, is_batch, always=True), "batchrunner-groups")
        return
    texts = read_batch_files(config, discovery)
    groups = _groups(config, texts)
    explicit = any(a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args)
    if any(sequential for _, sequential in groups.values()) and (dist == "worksteal" or (dist == "load" and explicit)):
        try:
            config.issue_config_time_warning(
                pytest.PytestWarning(
                    f"pytest-batchrunner: the batch files hold sequential groups, whose order --dist {dist} "
                    "does not keep (a step that did not run before its successor on the same worker makes it "
                    "'not run'); use --dist loadgroup (or loadfile)"
                ),
                stacklevel=2,
            )
        except pytest.PytestWarning as exc:  # -W error: a usage error, not an INTERNALERROR
            raise pytest.UsageError(str(exc)) from None
        return
    if dist == "worksteal":
        return
    always = dist != "load" and bool(texts)
    config.pluginmanager.register(GroupScheduling(groups, dist, is_batch, always=always), "batchrunner-groups")


class EachGuard:
    """``--dist each``: xdist's own scheduler, asked to schedule only once every worker it was given has collected.

    xdist's ``EachScheduling.schedule`` fails (an INTERNALERROR, ``KeyError``) when a
    replacement worker has collected while another replacement has not yet: two
    workers that crashed at once. Through xdist's scheduler protocol alone, this
    holds such a call back until the other has collected, or is gone.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.collecting: set[Any] = set()
        self.deferred = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):  # type: ignore[no-untyped-def]
        from xdist.scheduler import EachScheduling

        return EachGuard(EachScheduling(config, log))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_node(self, node: Any) -> None:
        self.collecting.add(node)
        self.inner.add_node(node)

    def add_node_collection(self, node: Any, collection: Any) -> None:
        self.collecting.discard(node)
        self.inner.add_node_collection(node, collection)

    def remove_node(self, node: Any) -> str | None:
        self.collecting.discard(node)
        crashed = self.inner.remove_node(node)
        if self.deferred and not self.collecting:
            self.schedule()
        return crashed

    def schedule(self) -> None:
        self.deferred = bool(self.collecting)
        if not self.deferred:
            self.inner.schedule()


class GroupScheduling:
    """On the xdist controller: hands xdist a :class:`BatchScheduling` (see :func:`configure_distribution`)."""

    def __init__(self, groups: dict[str, tuple[str, bool]], dist: str, is_batch: Callable[[str], bool], always: bool = False) -> None:
        self.groups = groups
        self.dist = dist
        self.is_batch = is_batch
        self.always = always
        """Schedule by group even if *groups* is empty now (a remote run's fill in before scheduling)."""
        self.numnodes = 0
        """How many workers the run starts: xdist names their specs (public hook) before it asks for a scheduler."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list) -> None:  # type: ignore[type-arg]
        self.numnodes = len(specs)

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):  # type: ignore[no-untyped-def]
        from pytest_batchrunner.plugin.ordering import scope_estimates

        # ``order(units) -> scopes``, or None: file order. Asked here, once pytest's cache is configured.
        order = scope_estimates(config, self.is_batch)
        if not self.groups and order is None and not self.always:
            return None  # xdist's own scheduler
        return BatchScheduling(config, self.groups, order, self.dist, self.numnodes)


class BatchScheduling:
    """pytest-xdist's scheduler protocol: units of work (a group, a file under ``loadfile``, else an item) handed out whole.

    A worker that dies loses only the item it was running (xdist reports it as
    crashed); the rest of its work goes to the others, in order.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self, config: pytest.Config, groups: dict[str, tuple[str, bool]], order, dist: str, numnodes: int
    ) -> None:
        self.config = config
        self.groups = groups
        self.order = order
        self.dist = dist
        self.numnodes = numnodes
        self.collection: list[str] | None = None
        self.collections: dict = {}  # type: ignore[type-arg]  # node -> the ids it collected
        self.pending: dict = {}  # type: ignore[type-arg]  # node -> indices sent to it and not done, in order
        self.queue: list[list[int]] = []
        """Units of work not handed out yet: indices into the collection, in run order."""
        self.crashed: dict[str, int] = {}
        """The items that crashed a worker, for a rerun (:meth:`mark_test_pending`)."""

    def group(self, nodeid: str) -> tuple[str, bool] | None:
        """``(group, sequential)`` of a grouped command, else None."""
        group = self.groups.get(nodeid)
        if group is None and "@" in nodeid:
            # Under an explicit --dist loadgroup, pytest < 9.2 lets xdist add "@group".
            group = self.groups.get(nodeid[: nodeid.rfind("@")])
        return group

    def scope(self, index: int) -> str | int:
        """The unit of work of the item at *index* of the collection: its file, its group, or itself."""
        nodeid = self.collection[index]  # type: ignore[index]
        if self.dist == "loadfile":
            return nodeid.split("::", 1)[0]
        group = self.group(nodeid)
        if group is not None:
            return f"batch-group:{group[0]}"
        if self.dist == "loadscope":
            return nodeid.rsplit("::", 1)[0]  # xdist's loadscope: a module or a class (a batch file)
        if self.dist == "loadgroup" and "@" in nodeid:
            return f"xdist-group:{nodeid.rsplit('@', 1)[1]}"  # a Python test's xdist_group, as xdist's loadgroup does
        return index

    @property
    def nodes(self) -> list:  # type: ignore[type-arg]
        return list(self.pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.collections) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        # A worker runs its last item once told to shut down: one pending item is its last.
        return self.collection_is_completed and not self.queue and all(len(p) < 2 for p in self.pending.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.queue) or any(self.pending.values())

    def add_node(self, node) -> None:  # type: ignore[no-untyped-def]
        self.pending[node] = []

    def add_node_collection(self, node, collection) -> None:  # type: ignore[no-untyped-def]
        if self.collection is not None and list(collection) != self.collection:
            node.shutdown()  # a replacement worker that collected something else gets no work
            return
        self.collections[node] = list(collection)

    def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:  # type: ignore[no-untyped-def]
        self.pending[node].remove(item_index)
        self._reschedule(node)

    def mark_test_pending(self, item: str) -> None:
        """pytest-rerunfailures' rerun of an item that crashed its worker: next in line (a sequential step: never)."""
        group = self.group(item)
        if group is not None and group[1]:
            # Its earlier steps ran in the dead worker: a step rerun elsewhere would not run.
            raise NotImplementedError("a sequential step is not rerun after it crashed its worker")
        self.queue.insert(0, [self.crashed[item]])
        self._hand_out()

    def remove_pending_tests_from_node(self, node, indices) -> None:  # type: ignore[no-untyped-def]
        raise NotImplementedError  # asked only by worksteal

    def remove_node(self, node) -> str | None:  # type: ignore[no-untyped-def]
        """*node* is gone: its first pending item is the one it crashed on, the others go back to the queue's front."""
        pending = self.pending.pop(node)
        if not pending or self.collection is None:
            return None
        crashed, rest = pending[0], pending[1:]
        units: dict[str | int, list[int]] = {}
        for index in rest:
            units.setdefault(self.scope(index), []).append(index)
        self.queue[:0] = list(units.values())
        self._hand_out()
        nodeid = self.collection[crashed]
        self.crashed[nodeid] = crashed
        return nodeid

    def schedule(self) -> None:
        if self.collection is None:
            collections = list(self.collections.values())
            if any(c != collections[0] for c in collections[1:]):
                self._report_different_collections()
                return
            self.collection = collections[0]
            units: dict[str | int, list[int]] = {}
            # An id collected twice (--keep-duplicates) runs once, as under xdist's load-scope schedulers.
            first: dict[str, int] = {}
            for index, nodeid in enumerate(self.collection):
                first.setdefault(nodeid, index)
            for index in first.values():
                units.setdefault(self.scope(index), []).append(index)
            scopes = list(units) if self.order is None else self.order(
                {scope: [self.collection[i] for i in indices] for scope, indices in units.items()}
            )
            self.queue = [units[scope] for scope in scopes]
        self._hand_out()

    def _hand_out(self) -> None:
        """A unit at a time to each worker in turn (the longest go to different workers), see :meth:`_reschedule`."""
        while any([self._reschedule(node, 1) for node in self.nodes]):
            pass

    def _reschedule(self, node, units: int | None = None) -> bool:  # type: ignore[no-untyped-def]
        """Send *node* units (up to *units*) while it has fewer than two items to go; shut it down once none is left."""
        if node.shutting_down or node not in self.collections or self.collection is None:
            return False
        pending = self.pending[node]
        sent = 0
        while self.queue and len(pending) < 2 and (units is None or sent < units):
            unit = self.queue.pop(0)
            pending.extend(unit)
            node.send_runtest_some(unit)
            sent += 1
        if not self.queue:
            # The worker runs its last item once told there is no next one.
            node.shutdown()
        return sent > 0

    def _report_different_collections(self) -> None:
        (first, collection), *others = self.collections.items()
        for node, other in others:
            if other != collection:
                # Worded as xdist's own schedulers word it.
                diff = "\n".join(line.rstrip() for line in unified_diff(collection, other, first.gateway.id, node.gateway.id))
                message = (f"Different tests were collected between {first.gateway.id} and {node.gateway.id}. "
                           f"The difference is:\n{diff}")
                report = pytest.CollectReport(nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[])
                self.config.hook.pytest_collectreport(report=report)


def _groups(config: pytest.Config, texts: dict[Path, bytes]) -> dict[str, tuple[str, bool]]:
    """``nodeid -> (group, sequential)`` for every grouped line of *texts* (:func:`read_batch_files`)."""
    groups: dict[str, tuple[str, bool]] = {}
    for path, data in texts.items():
        if b"group=" not in data and b"sequential" not in data:
            continue
        try:
            rel = path.resolve().relative_to(config.rootpath).as_posix()
        except ValueError:
            rel = str(path)
        try:
            specs = parse_batch_text(data, rel)
        except BatchFileError:
            continue  # collection reports the problem
        for spec, name in zip(specs, item_names(specs), strict=True):
            key = group_key(spec)
            if key is not None:
                groups[f"{printable(rel)}::{name}"] = (key, spec.settings.sequential)
    return groups


_TEXTS_KEY = pytest.StashKey[dict[Path, bytes]]()


def read_batch_files(config: pytest.Config, discovery: BatchDiscovery) -> dict[Path, bytes]:
    """The bytes of :func:`batch_files`, read once on the controller before collection (unreadable ones are left to it)."""
    texts = config.stash.get(_TEXTS_KEY, None)
    if texts is None:
        texts = config.stash[_TEXTS_KEY] = {}
        for path in batch_files(config, discovery):
            try:
                texts[path] = read_batch_file(path)  # a FIFO or a device is refused, not read
            except (OSError, BatchFileError):
                continue
    return texts


def batch_files(config: pytest.Config, discovery: BatchDiscovery):  # type: ignore[no-untyped-def]
    """The batch files pytest is going to collect from its arguments (without running collection)."""
    norecurse = config.getini("norecursedirs")
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if path.is_file():
            if discovery.wanted(path, count=False):
                yield path
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in norecurse)]
                for name in files:
                    if discovery.wanted(Path(root, name), count=False):
                        yield Path(root, name)
