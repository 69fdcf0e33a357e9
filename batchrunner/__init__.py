"""The original BatchRunner's import path, kept working.

``from batchrunner import BatchRunner, CommandResult, load_commands_from_file``
gives the classes of :mod:`pytest_batchrunner`; this package holds nothing else.
"""

from pytest_batchrunner import __version__
from pytest_batchrunner.api import BatchRunner, load_commands_from_file
from pytest_batchrunner.results import CommandResult

__all__ = ["BatchRunner", "CommandResult", "load_commands_from_file", "__version__"]
