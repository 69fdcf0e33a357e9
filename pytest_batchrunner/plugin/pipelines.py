"""Sequential groups: ordered steps on one worker, failing fast.

Lines marked ``sequential`` (``# batch: group=deploy sequential``; without
``group=`` the group is the file) are the steps of a pipeline:

* **one worker, file order.** Each step carries pytest-xdist's ``xdist_group``
  marker, and under ``-n`` (``--dist load``, the default, or ``loadgroup``) the
  controller schedules each group as one unit of work, which one worker runs in
  collection (file) order (:func:`configure_distribution`). ``--dist loadfile``
  keeps whole files together anyway; an explicit ``--dist load`` or
  ``worksteal`` gets a warning. Steps are never started ahead by ``--batch-jobs``.
* **fail fast.** Once a step has finally failed (after its reruns), the group's
  later steps are skipped with "not run: step N (line L) failed".
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

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


def configure_distribution(config: pytest.Config, discovery: BatchDiscovery) -> None:
    """Keep groups on one xdist worker: a scheduler of our own when the batch files have groups.

    pytest-xdist's ``--dist loadgroup`` finds groups through an ``@group`` suffix
    that it writes into node ids on the workers, which pytest 9.2 no longer lets
    it do. The controller reads the batch files instead (cheap) and hands xdist,
    through its ``pytest_xdist_make_scheduler`` hook, a load-scope scheduler whose
    scope for a grouped command is its group: the same result, on any pytest.
    """
    if hasattr(config, "workerinput"):
        return
    dist = getattr(config.option, "dist", "no")
    if dist in ("no", "each", "loadfile"):
        return
    remote = config.stash.get(REMOTE_KEY, None)
    if remote is not None:
        # Remote workers collect copies the controller may not have: the groups
        # are the ones they send (see .remote), known before anything is scheduled.
        if dist in ("load", "loadgroup"):
            config.pluginmanager.register(GroupScheduling(remote.groups, always=True), "batchrunner-groups")
        return
    groups = _groups(config, discovery)
    if not any(sequential for _, sequential in groups.values()):
        if dist in ("load", "loadgroup"):
            # Also without groups: longest first when the history knows the commands (see .ordering).
            config.pluginmanager.register(GroupScheduling(groups), "batchrunner-groups")
        return
    explicit = any(a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args)
    if dist == "worksteal" or (dist == "load" and explicit):
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
    config.pluginmanager.register(GroupScheduling(groups), "batchrunner-groups")


class GroupScheduling:
    """On the xdist controller: schedule by batch-file group, longest-expected unit first with history."""

    def __init__(self, groups: dict[str, tuple[str, bool]], always: bool = False) -> None:
        self.groups = groups
        self.always = always
        """Schedule by group even if *groups* is empty now (a remote run's fill in before scheduling)."""

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):  # type: ignore[no-untyped-def]
        from xdist.scheduler import LoadScopeScheduling

        from pytest_batchrunner.plugin.ordering import scope_estimates

        groups = self.groups
        # ``order(units) -> scopes``, or None: file order. Asked here, once pytest's cache is configured.
        order = scope_estimates(config)
        if not groups and order is None and not self.always:
            return None  # xdist's own scheduler

        class BatchGroupScheduling(LoadScopeScheduling):
            """Load scheduling where each batch-file group is one unit of work, run in file order."""

            ordered = False

            def _assign_work_unit(self, node) -> None:  # type: ignore[no-untyped-def]
                # The work queue is complete before the first unit is assigned.
                if order is not None and not self.ordered:
                    self.ordered = True
                    units = self.workqueue
                    self.workqueue = type(units)((scope, units[scope]) for scope in order(units))
                super()._assign_work_unit(node)

            def _split_scope(self, nodeid: str) -> str:
                group = groups.get(nodeid)
                if group is None and "@" in nodeid:
                    # Under an explicit --dist loadgroup, pytest < 9.2 lets xdist add "@group".
                    group = groups.get(nodeid[: nodeid.rfind("@")])
                return nodeid if group is None else f"batch-group:{group[0]}"

        return BatchGroupScheduling(config, log)


def _groups(config: pytest.Config, discovery: BatchDiscovery) -> dict[str, tuple[str, bool]]:
    """``nodeid -> (group, sequential)`` for every grouped line of the batch files pytest will collect."""
    groups: dict[str, tuple[str, bool]] = {}
    for path in _batch_files(config, discovery):
        try:
            data = read_batch_file(path)  # a FIFO or a device is refused, not read
            if b"group=" not in data and b"sequential" not in data:
                continue
            try:
                rel = path.resolve().relative_to(config.rootpath).as_posix()
            except ValueError:
                rel = str(path)
            specs = parse_batch_text(data, rel)
        except (OSError, BatchFileError):
            continue  # collection reports the problem
        for spec, name in zip(specs, item_names(specs), strict=True):
            key = group_key(spec)
            if key is not None:
                groups[f"{printable(rel)}::{name}"] = (key, spec.settings.sequential)
    return groups


def _batch_files(config: pytest.Config, discovery: BatchDiscovery):  # type: ignore[no-untyped-def]
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
