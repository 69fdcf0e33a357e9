"""Under ``-n``: every worker collects the batch files as the controller read them once, at the start.

xdist sends a worker only the indices of the items to run, in the list of
items it collected itself; a worker started to replace a crashed one collects
again. Were it to read the files then, a file edited meanwhile would give it
other commands at the same places (it would run a line that was never
collected). So the controller reads each batch file once, before any worker
starts, and hands the bytes to every worker of this machine in ``workerinput``:
the workers parse those, never the files, and so all collect the same
commands. A batch file deleted meanwhile cannot be collected again (pytest
refuses a missing argument): the worker stops the run, naming the file. So
does a replacing worker that still collects other items than the run did (a
batch file added to a searched folder, a Python test file edited), rather
than run them by their places.

Remote workers (``--tx ssh=...``, ``popen//chdir=...``) collect their own copies (see :mod:`.remote`).
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_batchrunner.batchfile import read_batch_file

from pytest_batchrunner.plugin.engine import is_remote

if TYPE_CHECKING:
    from pytest_batchrunner.plugin.discovery import BatchDiscovery

__all__ = ["BatchTexts", "WorkerTexts", "configure", "text_of"]

TEXTS_INPUT = "batchrunner_batch_texts"
"""The ``workerinput`` key of ``{absolute path: bytes}``, the batch files as the controller read them."""
IDS_INPUT = "batchrunner_collected_ids"
"""The ``workerinput`` key of the ids the run collected, for a worker that replaces a crashed one."""
TEXTS_KEY = pytest.StashKey[dict[str, bytes]]()


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.abspath(path))


def text_of(config: pytest.Config, path: Path) -> bytes:
    """The bytes of the batch file *path*: under ``-n``, as the controller read it at the start; else the file's."""
    texts = config.stash.get(TEXTS_KEY, None)
    if texts is not None:
        data = texts.get(_key(path))
        if data is not None:
            return data
    return read_batch_file(path)


class BatchTexts:
    """On the xdist controller: gives each local worker the bytes of the batch files, as read at the start."""

    def __init__(self, texts: dict[str, bytes]) -> None:
        self.texts = texts
        self.ids: list[str] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if not is_remote(node.gateway.spec):
            node.workerinput[TEXTS_INPUT] = self.texts
            if self.ids is not None:  # a worker replacing a crashed one
                node.workerinput[IDS_INPUT] = self.ids

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.ids is None:
            self.ids = list(ids)


class WorkerTexts:
    """In an xdist worker: stops the run rather than collect other items than the run did (xdist would run
    them by their places in this worker's list), or once a batch file the controller read is gone."""

    def __init__(self, discovery: BatchDiscovery, texts: dict[str, bytes], ids: list[str] | None) -> None:
        self.discovery = discovery
        self.texts = texts
        self.ids = ids

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        gone = [path for path in self.texts if not os.path.exists(path)]
        if not gone:
            return
        names = ", ".join(self.discovery.relpath(Path(path)) for path in gone)
        message = (
            f"pytest-batchrunner: batch file deleted during the run: {names}; a new xdist worker (one replacing "
            "a crashed worker) cannot collect it, so the run stops: its commands not run yet are not run"
        )
        _stop(session, message)

    @pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.ids is None:
            return
        ids = [item.nodeid for item in session.items]
        if ids == self.ids:
            return
        at = next((i for i, (new, old) in enumerate(zip(ids, self.ids, strict=False)) if new != old), min(len(ids), len(self.ids)))
        other = ids[at] if at < len(ids) else self.ids[at]
        _stop(session, (
            f"pytest-batchrunner: a new xdist worker (one replacing a crashed worker) collected other tests than "
            f"the run did ({len(ids)} instead of {len(self.ids)}, first difference: {other}): files changed during "
            "the run; the run stops: its tests not run yet are not run"
        ))


def _stop(session: pytest.Session, message: str) -> None:
    """Stop this worker's collection; xdist's controller stops the run with *message* (as for ``-x``)."""
    session.shouldstop = message
    raise pytest.UsageError(message)


def configure(config: pytest.Config, discovery: BatchDiscovery, read_files: Callable[[], dict[Path, bytes]]) -> None:
    """Register this process's part: the controller's reading (*read_files*), or the worker's copies."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        texts = workerinput.get(TEXTS_INPUT)
        if texts is not None:
            config.stash[TEXTS_KEY] = texts
            config.pluginmanager.register(WorkerTexts(discovery, texts, workerinput.get(IDS_INPUT)), "batchrunner-worker-texts")
        return
    if getattr(config.option, "dist", "no") == "no" or config.option.collectonly:
        return
    # Those that cannot be read are left to the worker's own reading, which reports them.
    texts = config.stash[TEXTS_KEY] = {_key(path): data for path, data in read_files().items()}
    config.pluginmanager.register(BatchTexts(texts), "batchrunner-batch-texts")
