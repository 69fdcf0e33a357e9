"""``python -m pytest_batchrunner``: the ``batchrunner`` command."""

from batchrunner.cli import run_and_exit

run_and_exit()
