"""pytest-timeout integration: batch items take their timeout from pytest-timeout, and enforce it themselves.

pytest-timeout resolves the value (``timeout`` marker > ``--timeout`` >
``PYTEST_TIMEOUT`` > ``timeout`` ini) and calls ``pytest_timeout_set_timer``
once per item, around pytest-rerunfailures' whole rerun loop, so its own timer
would not be armed again for a rerun (pytest-rerunfailures#99). Its signal
method would interrupt Python, not the command, and its thread method calls
``os._exit``, taking an xdist worker down. For batch items we therefore take
over both hooks (``tryfirst``, returning True so the defaults never run) and
only record the value: :func:`~pytest_batchrunner.process.run_command` applies
it to every attempt, killing the command's whole process group.
"""

from __future__ import annotations

import pytest

from .items import CommandItem


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
