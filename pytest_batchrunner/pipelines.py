"""Sequential groups: ordered steps on one worker, failing fast.

Lines marked ``sequential`` (``# batch: group=deploy sequential``; without
``group=`` the group is the file) are the steps of a pipeline:

* **one worker, file order.** Each step carries pytest-xdist's ``xdist_group``
  marker. Under ``-n`` with the default ``--dist load`` the run switches to
  ``--dist loadgroup`` when the batch files hold a sequential group, so the group
  goes to one worker, which runs its items in collection (file) order. An
  explicit ``--dist`` is respected (``loadgroup`` and ``loadfile`` keep groups
  together; ``load`` and ``worksteal`` get a warning). Steps are never started
  ahead by ``--batch-jobs``.
* **fail fast.** Once a step has finally failed (after its reruns), the group's
  later steps are skipped with "not run: step N (line L) failed".
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from .batchfile import BatchFileError, CommandSpec, parse_batch_file

_WORKER_FLAG = "batchrunner_loadgroup"


def group_key(spec: CommandSpec) -> str | None:
    """The xdist group of a line: its ``group=``, or its file for a ``sequential`` line without one."""
    if spec.settings.group is not None:
        return spec.settings.group
    if spec.settings.sequential:
        return f"sequential:{spec.path}"
    return None


class SequentialGroups:
    """Skips the rest of a sequential group after a step has failed (in every process that runs items)."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.running: dict[str, pytest.Item] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from .items import CommandItem

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


class KeepGroupsTogether:
    """On the xdist controller: hand ``--dist loadgroup`` to the workers."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:  # type: ignore[no-untyped-def]
        node.workerinput[_WORKER_FLAG] = True


def configure_distribution(config: pytest.Config, patterns: list[str]) -> None:
    """Choose how xdist distributes batch items when sequential groups are present."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(_WORKER_FLAG):
            config.option.dist = "loadgroup"
            config.option.loadgroup = True
        return
    dist = getattr(config.option, "dist", "no")
    if dist in ("no", "each", "loadgroup", "loadfile") or not _has_sequential_group(config, patterns):
        return
    explicit = any(a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args)
    if explicit or dist != "load":
        config.issue_config_time_warning(
            pytest.PytestWarning(
                f"pytest-batchrunner: the batch files hold sequential groups, whose order --dist {dist} "
                "does not keep; use --dist loadgroup (or loadfile)"
            ),
            stacklevel=2,
        )
        return
    config.option.dist = "loadgroup"
    config.pluginmanager.register(KeepGroupsTogether(), "batchrunner-loadgroup")


def _has_sequential_group(config: pytest.Config, patterns: list[str]) -> bool:
    for path in _batch_files(config, patterns):
        try:
            if b"sequential" not in path.read_bytes():
                continue
            if any(spec.settings.sequential for spec in parse_batch_file(path)):
                return True
        except (OSError, BatchFileError):
            continue  # collection reports the problem
    return False


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
