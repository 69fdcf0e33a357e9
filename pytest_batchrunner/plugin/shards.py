"""``--batch-shard K/N``: run the K-th of N shards of the batch commands, one shard per CI job.

The shards are deterministic: the same batch files, selection and history give
the same shards on every machine. Units are the commands, except that a group
(``group=NAME``, or a ``sequential`` file) is one unit, never split. Units are
balanced over the shards by their expected durations from the history
(:mod:`.history`; a command without history counts as the mean), or by their
number of commands when there is no history: longest first, each to the
lightest shard so far (ties: the lowest shard number). Python tests are not
sharded: every shard runs them.

The other shards' commands are deselected through pytest's
``pytest_deselected`` hook, so that each shard's reports count its own commands
only. The JSON results (``--batch-json``) also record the shard and the full list
of commands of all shards, so that ``batchrunner merge`` can tell a command that
ran in no shard ("not run") from one that ran in two (an error).

``--batch-shard auto`` reads GitLab's ``CI_NODE_INDEX`` (1-based) and
``CI_NODE_TOTAL`` (``parallel: N``); without them, the run is the whole batch (1/1).
"""

from __future__ import annotations

import argparse
import heapq
import os
from typing import Any

import pytest

from pytest_batchrunner.batchfile import group_key
from pytest_batchrunner.plugin.history import history

__all__ = ["SHARD_HELP", "ShardSelection", "parse_shard", "partition", "shard_from_environment"]

SHARD_HELP = (
    "Run the K-th of N shards of the batch commands (K from 1): deterministic, groups never split, "
    "balanced by durations in pytest's cache (else by count). 'auto': GitLab's CI_NODE_INDEX/CI_NODE_TOTAL. "
    "Merge the shards' --batch-json files with 'batchrunner merge'."
)


def parse_shard(value: str) -> tuple[int, int] | str:
    """``"K/N"`` as ``(K, N)``, or ``"auto"``; an argparse type."""
    text = value.strip()
    if text == "auto":
        return "auto"
    k, slash, n = text.partition("/")
    if not slash or not k.strip().isdigit() or not n.strip().isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not K/N (e.g. 2/4) or 'auto'")
    index, total = int(k), int(n)
    if total < 1 or not 1 <= index <= total:
        raise argparse.ArgumentTypeError(f"'{value}': K must be between 1 and N, and N 1 or more")
    return index, total


def shard_from_environment(environ: Any = None) -> tuple[int, int]:
    """``--batch-shard auto``: ``(CI_NODE_INDEX, CI_NODE_TOTAL)`` (GitLab's ``parallel:``), else ``(1, 1)``."""
    environ = os.environ if environ is None else environ
    index, total = environ.get("CI_NODE_INDEX"), environ.get("CI_NODE_TOTAL")
    if not index and not total:
        return 1, 1
    try:
        parsed = parse_shard(f"{index}/{total}")
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"--batch-shard auto: CI_NODE_INDEX/CI_NODE_TOTAL: {exc}") from None
    assert isinstance(parsed, tuple)
    return parsed


def partition(units: list[tuple[str, float]], total: int) -> list[int]:
    """The shard (0-based) of each unit ``(first node id, weight)``: heaviest first, to the lightest shard."""
    # A heap of (load, shard): the lightest shard, the lowest index on a tie.
    # Only as many shards as units can ever get one: a huge N (--batch-shard
    # 1/1000000000) costs no more than the units.
    loads = [(0.0, s) for s in range(min(total, len(units)))]
    shard_of = [0] * len(units)
    order = sorted(range(len(units)), key=lambda i: (-units[i][1], i))
    for i in order:
        load, shard = loads[0]
        shard_of[i] = shard
        heapq.heapreplace(loads, (load + units[i][1], shard))
    return shard_of


class ShardSelection:
    """Deselects the other shards' commands at the end of collection (in every process that collects)."""

    def __init__(self, config: pytest.Config, index: int, total: int) -> None:
        self.config = config
        self.index = index
        self.total = total
        self.commands: list[dict[str, Any]] | None = None
        """Every command of every shard, in collection order (what ``batchrunner merge`` needs)."""
        self.deselected = 0

    def info(self) -> dict[str, Any]:
        """The shard as the JSON results record it."""
        return {"index": self.index, "total": self.total, "commands": self.commands}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        commands = [i for i in items if isinstance(i, CommandItem)]
        self.commands = [
            {"nodeid": i.nodeid, "command": i.spec.reported, "file": i.spec.path, "line": i.spec.line}
            for i in commands
        ]
        try:
            self._select(config, items, commands)
        finally:
            if hasattr(config, "workeroutput"):
                # The controller collects nothing: it learns the full list from a worker.
                config.workeroutput["batchrunner_shard"] = {**self.info(), "deselected": self.deselected}

    def _select(self, config: pytest.Config, items: list[pytest.Item], commands: list[Any]) -> None:
        if self.total == 1 or not commands:
            return
        units: dict[Any, list[Any]] = {}
        for item in commands:
            key = group_key(item.spec)
            units.setdefault(("group", key) if key is not None else ("item", item.nodeid), []).append(item)
        blocks = list(units.values())
        past = history(config)
        estimates = past.estimates(i.nodeid for i in commands) if past else None
        if estimates is not None:
            weights = [sum(estimates[i.nodeid] for i in block) for block in blocks]
        else:
            weights = [float(len(block)) for block in blocks]
        shard_of = partition([(block[0].nodeid, w) for block, w in zip(blocks, weights, strict=True)], self.total)
        other = {id(i) for block, s in zip(blocks, shard_of, strict=True) if s != self.index - 1 for i in block}
        if not other:
            return
        deselected = [i for i in items if id(i) in other]
        items[:] = [i for i in items if id(i) not in other]
        self.deselected = len(deselected)
        config.hook.pytest_deselected(items=deselected)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # On the xdist controller: every worker computed the same list.
        info = getattr(node, "workeroutput", {}).get("batchrunner_shard")
        if info is not None and self.commands is None:
            self.commands = info.get("commands")
            self.deselected = info.get("deselected", 0)

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"batchrunner: shard {self.index}/{self.total}"

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):  # type: ignore[no-untyped-def]
        # A shard that got no command (more shards than units) ran what it was asked: not an error.
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.deselected:
            session.exitstatus = pytest.ExitCode.OK
        return (yield)
