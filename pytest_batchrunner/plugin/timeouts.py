"""pytest-timeout integration: batch items take their timeout from pytest-timeout, and enforce it themselves.

pytest-timeout resolves the value (``timeout`` marker > ``--timeout`` >
``PYTEST_TIMEOUT`` > ``timeout`` ini) and calls ``pytest_timeout_set_timer``
once per item, around pytest-rerunfailures' whole rerun loop, so its own timer
would not be armed again for a rerun (pytest-rerunfailures#99). Its signal
method would interrupt Python, not the command, and its thread method calls
``os._exit``, taking an xdist worker down. For batch items we therefore take
over both hooks (``tryfirst``, returning True so the defaults never run) and
only record the value: :func:`~pytest_batchrunner.process.command.run_command` applies
it to every attempt, killing the command's whole process group.

**Relative timeouts.** ``# batch: timeout=300%`` (or ``--batch-timeout 300%`` for
every line without a ``timeout=`` of its own) bounds each attempt at that share
of the command's usual duration: the median of its successful runs in the
history (:mod:`.history`), never below :data:`MIN_RELATIVE_TIMEOUT`. Without
history (a new command, ``-p no:cacheprovider``), the absolute timeout applies
(pytest-timeout's, or none). A timeout says which bound applied: "timed out
after 3.09 s (300% of its usual 1.03 s)". The bound is computed once per item,
at the end of collection, in every process that runs items.
"""

from __future__ import annotations

import pytest

from pytest_batchrunner.plugin.engine import MIN_RELATIVE_TIMEOUT, default_timeout, has_timeout_plugin
from pytest_batchrunner.plugin.history import history
from pytest_batchrunner.plugin.items import CommandItem

def relative_timeout(item: CommandItem) -> tuple[float, str] | None:
    """*item*'s relative timeout and how it was reached, or None (no share set, or no history)."""
    settings = item.spec.settings
    share = settings.timeout_share
    if share is None and settings.timeout is None:
        share = item.config.getoption("batch_timeout", None)
    if share is None:
        return None
    past = history(item.config)
    usual = past.usual(item.nodeid) if past else None
    if usual is None:
        return None
    seconds = share * usual
    note = f"{share * 100:g}% of its usual {usual:.2f} s"
    if seconds < MIN_RELATIVE_TIMEOUT:
        return MIN_RELATIVE_TIMEOUT, f"the floor of relative timeouts; {note} is {seconds:.2f} s"
    return round(seconds, 3), note


class RelativeTimeouts:
    """Computes each command's relative timeout at the end of collection (registered in every process)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if config.getoption("batch_timeout", None) is None:
            # Only lines with their own timeout=N%: the common case costs one attribute test per item.
            items = [i for i in items if isinstance(i, CommandItem) and i.spec.settings.timeout_share is not None]
        for item in items:
            if isinstance(item, CommandItem):
                item.relative_timeout = relative_timeout(item)


class TimeoutIntegration:
    """Registered only when pytest-timeout is active."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings) -> bool | None:  # type: ignore[no-untyped-def]
        if isinstance(item, CommandItem):
            item.timeout = settings.timeout
            return True
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        if isinstance(item, CommandItem):
            return True
        return None


def resolve_timeout(item: CommandItem) -> float | None:
    """The timeout pytest-timeout will give *item*, resolved ahead of its protocol.

    ``--batch-jobs`` starts commands before pytest-timeout's hook runs for their
    item, so it applies pytest-timeout's documented precedence itself, from the
    same public sources: the ``timeout`` marker, then :func:`default_timeout`.
    Without pytest-timeout, the line's own ``timeout=`` setting. A relative
    timeout comes first.
    """
    if item.relative_timeout is not None:
        return item.relative_timeout[0]
    config = item.config
    if not has_timeout_plugin(config):
        return item.spec.settings.timeout
    marker = item.get_closest_marker("timeout")
    value = None
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    seconds = default_timeout(config) if value is None else float(value)
    return seconds if seconds is not None and seconds > 0 else None
