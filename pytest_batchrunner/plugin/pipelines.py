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

from pytest_batchrunner.batchfile import BatchFileError, group_key, item_names, parse_batch_text




class SequentialGroups:
    """Skips the rest of a sequential group after a step has failed (in every process that runs items)."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.running: dict[str, pytest.Item] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        if not isinstance(item, CommandItem) or not item.spec.settings.sequential:
            return
        key = group_key(item.spec)
        assert key is not None
        failure = self.failed.get(key)
        if failure is not None:
            # A skip marker (not pytest.skip()) so the skip is reported at the
            # batch line, as for a "skip" setting: pytest's skipping plugin
            # evaluates markers in its own (later) setup hook.
            item.add_marker(pytest.mark.skip(reason=f"not run: {failure} failed"))
        self.running[item.nodeid] = item

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


def configure_distribution(config: pytest.Config, patterns: list[str]) -> None:
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
    groups = _groups(config, patterns)
    if not any(sequential for _, sequential in groups.values()):
        if dist in ("load", "loadgroup"):
            # Also without groups: longest first when the history knows the commands (see .ordering).
            config.pluginmanager.register(GroupScheduling(groups), "batchrunner-groups")
        return
    explicit = any(a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args)
    if dist == "worksteal" or (dist == "load" and explicit):
        config.issue_config_time_warning(
            pytest.PytestWarning(
                f"pytest-batchrunner: the batch files hold sequential groups, whose order --dist {dist} "
                "does not keep; use --dist loadgroup (or loadfile)"
            ),
            stacklevel=2,
        )
        return
    config.pluginmanager.register(GroupScheduling(groups), "batchrunner-groups")


class GroupScheduling:
    """On the xdist controller: schedule by batch-file group, longest-expected unit first with history."""

    def __init__(self, groups: dict[str, tuple[str, bool]]) -> None:
        self.groups = groups

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):  # type: ignore[no-untyped-def]
        from xdist.scheduler import LoadScopeScheduling

        from pytest_batchrunner.plugin.ordering import scope_estimates

        groups = self.groups
        # ``order(units) -> scopes``, or None: file order. Asked here, once pytest's cache is configured.
        order = scope_estimates(config)
        if not groups and order is None:
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


def _groups(config: pytest.Config, patterns: list[str]) -> dict[str, tuple[str, bool]]:
    """``nodeid -> (group, sequential)`` for every grouped line of the batch files pytest will collect."""
    groups: dict[str, tuple[str, bool]] = {}
    for path in _batch_files(config, patterns):
        try:
            data = path.read_bytes()
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
                groups[f"{rel}::{name}"] = (key, spec.settings.sequential)
    return groups


def _batch_files(config: pytest.Config, patterns: list[str]):  # type: ignore[no-untyped-def]
    """The batch files pytest is going to collect from its arguments (without running collection)."""
    norecurse = config.getini("norecursedirs")
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if path.is_file():
            if any(fnmatch.fnmatch(path.name, p) for p in patterns):
                yield path
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in norecurse)]
                for name in files:
                    if any(fnmatch.fnmatch(name, p) for p in patterns):
                        yield Path(root, name)
