"""pytest-batchrunner: batches of shell commands as pytest items.

The Python API of the original BatchRunner is re-exported here (and from the
``batchrunner`` package): ``BatchRunner``, ``CommandResult``,
``load_commands_from_file``. They are imported lazily, so that loading the pytest
plugin stays cheap.

The package, in pipeline order (parse, item, run, report):

* :mod:`.batchfile` and :mod:`.values`: the ``.batch`` format and option values;
  no pytest import.
* :mod:`.plugin`: the pytest plugin; every module that speaks pytest's hooks.
* :mod:`.process`: spawn, capture, timeout, kill; no pytest import.
* :mod:`.reports`: records to files and text; never runs a command.

The original BatchRunner's API and command line are the ``batchrunner``
package, on top of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_batchrunner._version import __version__

if TYPE_CHECKING:
    from batchrunner.api import BatchRunner, load_commands_from_file
    from pytest_batchrunner.reports.results import CommandResult

__all__ = ["BatchRunner", "CommandResult", "load_commands_from_file", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("BatchRunner", "CommandResult", "load_commands_from_file"):
        import batchrunner

        return getattr(batchrunner, name)
    raise AttributeError(f"module 'pytest_batchrunner' has no attribute {name!r}")
