"""The original BatchRunner's face: its Python API and its command line, over the plugin's engine.

``from batchrunner import BatchRunner, CommandResult, load_commands_from_file``
works as with the original. Owns :mod:`.api` (``BatchRunner``, no pytest
import), :mod:`.cli` (the ``batchrunner`` command, no pytest import) and
:mod:`.inprocess` (the one in-process pytest run they drive). It sits on top:
it may import anything of :mod:`pytest_batchrunner`, and nothing there imports it
(but the lazy re-export of the same names in ``pytest_batchrunner/__init__.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_batchrunner._version import __version__

if TYPE_CHECKING:
    from batchrunner.api import BatchRunner, load_commands_from_file
    from pytest_batchrunner.reports.results import CommandResult

__all__ = ["BatchRunner", "CommandResult", "load_commands_from_file", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the command line (``batchrunner.cli``) sets up its signal
    # handling before the engine is imported.
    if name in ("BatchRunner", "load_commands_from_file"):
        from batchrunner import api

        return getattr(api, name)
    if name == "CommandResult":
        from pytest_batchrunner.reports.results import CommandResult

        return CommandResult
    raise AttributeError(f"module 'batchrunner' has no attribute {name!r}")
