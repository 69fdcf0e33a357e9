"""``python -m batchrunner``: the ``batchrunner`` command."""

from pytest_batchrunner.cli import run_and_exit

run_and_exit()
