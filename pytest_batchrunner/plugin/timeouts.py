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
"""

from __future__ import annotations

import os

import pytest

from pytest_batchrunner.plugin.engine import has_timeout_plugin
from pytest_batchrunner.plugin.items import CommandItem


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
    same public sources: the ``timeout`` marker, then ``--timeout``, then
    ``PYTEST_TIMEOUT``, then the ``timeout`` ini value. Without pytest-timeout,
    the line's own ``timeout=`` setting.
    """
    config = item.config
    if not has_timeout_plugin(config):
        return item.spec.settings.timeout
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    else:
        value = config.getoption("timeout", None)
        if value is None:
            value = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout") or None
    if value is None:
        return None
    seconds = float(value)
    return seconds if seconds > 0 else None
