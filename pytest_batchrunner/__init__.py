"""pytest-batchrunner: batches of shell commands as pytest items.

The Python API of the original BatchRunner is re-exported here (and from the
``batchrunner`` package): ``BatchRunner``, ``CommandResult``,
``load_commands_from_file``. They are imported lazily, so that loading the pytest
plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import BatchRunner, load_commands_from_file
    from .results import CommandResult

__all__ = ["BatchRunner", "CommandResult", "load_commands_from_file", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("BatchRunner", "load_commands_from_file"):
        from . import api

        return getattr(api, name)
    if name == "CommandResult":
        from .results import CommandResult

        return CommandResult
    raise AttributeError(f"module 'pytest_batchrunner' has no attribute {name!r}")
