"""The environment commands get: pytest's, as a snapshot taken in the main thread."""

from __future__ import annotations

import pytest

from pytest_batchrunner.plugin.engine import ENVIRONMENT_KEY
from pytest_batchrunner.process.environment import snapshot



class EnvironmentSnapshot:
    """Keep the snapshot: taken at configure, and again after any other kind of item.

    Commands may start in ``--batch-jobs`` threads while pytest sets and removes
    ``PYTEST_CURRENT_TEST`` in the main thread, so they never read ``os.environ``
    themselves (a dict that changes size while being copied raises). A Python
    test that changes ``os.environ`` is seen by the commands after it, as if
    they read it.
    """

    def __init__(self, config: pytest.Config) -> None:
        config.stash[ENVIRONMENT_KEY] = snapshot()

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        from pytest_batchrunner.plugin.items import CommandItem

        if not isinstance(item, CommandItem):
            item.config.stash[ENVIRONMENT_KEY] = snapshot()
