"""``python -m batchrunner``: the ``batchrunner`` command."""

from batchrunner.cli import run_and_exit

run_and_exit()
