"""Longest first: with history, commands that may run in any order start longest-expected first.

With several commands at once (``--batch-jobs N``, or ``-n N``), a batch whose
slowest commands sit at the end of the file finishes late: they start last.
When the history (:mod:`.history`) knows how long commands take (and one of
them takes :data:`WORTHWHILE` or more), they are started longest-expected first
(the longest-processing-time rule), a command without history counting as the
mean of those with it:

* in-process with ``--batch-jobs N`` (N > 1), the items are reordered at the end
  of collection, and the job runner looks further ahead (:data:`LOOKAHEAD` x N
  items) so that short commands fill the other slots while a long one runs;
* under xdist (``--dist load``, the default, ``loadgroup`` or ``loadfile``), the
  plugin's scheduler (:mod:`.pipelines`) hands workers the longest units first.

What is never reordered: a sequential group is one unit, counted by its total,
its steps kept together and in file order; a Python test stays where it is, and
so does every command relative to it (commands after a test may need what it
does). ``--batch-order file`` keeps file order, and so do pytest's ``--ff`` and
``--nf``, which ask for an order of their own. Reports stay in file order
whatever the run order: the JSON, JUnit and summary sort by file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_batchrunner.batchfile import group_key
from pytest_batchrunner.plugin.engine import JOBS_KEY
from pytest_batchrunner.plugin.history import history

__all__ = [
    "LOOKAHEAD", "ORDER_HELP", "WORTHWHILE", "Ordering", "longest_first", "order_option", "scope_estimates",
    "unit_key", "worthwhile",
]

ORDER_HELP = (
    "Order in which commands that may run in any order are started: 'duration' (default), "
    "longest expected first when pytest's cache holds their earlier durations (with "
    "--batch-jobs N > 1 or -n); 'file': file order."
)
LOOKAHEAD = 16
"""With longest-first order, the job runner starts up to this many times N items ahead of the one being reported."""
WORTHWHILE = 0.1
"""Seconds: when no command in the history takes this long, the order is left alone.

Longest first gains at most the longest command's duration over file order,
while it costs a little per item: the job runner's longer look-ahead and, under
xdist, one unit per message instead of xdist's chunks of items (not measured
apart from the noise on this machine: 2,000 ``true`` under ``-n 2`` gave
4.4-6.3 s either way)."""


def unit_key(item: pytest.Item) -> str | None:
    """The sequential group *item* belongs to (kept whole and in order), or None."""
    spec = getattr(item, "spec", None)
    if spec is None or not spec.settings.sequential:
        return None
    return group_key(spec)


def longest_first(items: list[pytest.Item], estimates: dict[str, float]) -> list[pytest.Item]:
    """*items* reordered longest-expected first, between Python tests, sequential groups kept whole.

    *estimates* maps a command's node id to its expected seconds. The sort is
    stable: equal estimates keep file order.
    """
    from pytest_batchrunner.plugin.items import CommandItem

    ordered: list[pytest.Item] = []
    segment: list[pytest.Item] = []

    def flush() -> None:
        units: dict[Any, list[pytest.Item]] = {}
        for item in segment:
            key = unit_key(item)
            units.setdefault(("group", key) if key is not None else ("item", id(item)), []).append(item)
        blocks = list(units.values())
        blocks.sort(key=lambda block: -sum(estimates.get(i.nodeid, 0.0) for i in block))
        for block in blocks:
            ordered.extend(block)
        segment.clear()

    for item in items:
        if isinstance(item, CommandItem):
            segment.append(item)
        else:
            flush()
            ordered.append(item)
    flush()
    return ordered


def worthwhile(past: Any) -> bool:
    """Whether the history *past* holds a command long enough for the order to matter (see :data:`WORTHWHILE`)."""
    if not past:
        return False
    return any((past.expected(nodeid) or 0.0) >= WORTHWHILE for nodeid in past.commands)


def order_option(config: pytest.Config) -> str:
    """``duration`` or ``file``; ``file`` also when ``--ff`` / ``--nf`` asked for an order of their own."""
    if config.getoption("failedfirst", False) or config.getoption("newfirst", False):
        return "file"
    return config.getoption("batch_order", None) or "duration"


class Ordering:
    """In-process runs with ``--batch-jobs N > 1``: reorder the items longest first (registered only then)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        past = history(config)
        if past is None or not worthwhile(past) or order_option(config) == "file":
            return
        estimates = past.estimates(i.nodeid for i in items if isinstance(i, CommandItem))
        if estimates is None:
            return
        items[:] = longest_first(items, estimates)
        runner = config.stash.get(JOBS_KEY, None)
        if runner is not None:
            # Short commands fill the other slots while a long one, started first, runs.
            runner.window = max(runner.window, runner.jobs * LOOKAHEAD)


def scope_estimates(config: pytest.Config, is_batch: Callable[[str], bool]) -> Any:
    """For the xdist scheduler: ``order(units) -> scopes``, longest first between Python tests, or None without history.

    *units* maps each unit of work to its node ids, in collection order; a unit
    holding a Python test (not *is_batch*) stays in its place, and no other unit
    moves across it.
    """
    if order_option(config) == "file":
        return None
    past = history(config)
    if past is None or not worthwhile(past):
        return None

    def order(units: dict[Any, list[str]]) -> list[Any]:
        estimates = past.estimates(n for nodeids in units.values() for n in nodeids if is_batch(n)) or {}

        def longest(segment: list[Any]) -> list[Any]:
            return sorted(segment, key=lambda scope: -sum(estimates.get(n, 0.0) for n in units[scope]))

        ordered: list[Any] = []
        segment: list[Any] = []
        for scope, nodeids in units.items():
            if all(map(is_batch, nodeids)):
                segment.append(scope)
            else:
                ordered += [*longest(segment), scope]
                segment = []
        return ordered + longest(segment)

    return order
