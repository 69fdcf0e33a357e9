"""``python -m pytest_batchrunner``: the ``batchrunner`` command."""

from .cli import run_and_exit

run_and_exit()
