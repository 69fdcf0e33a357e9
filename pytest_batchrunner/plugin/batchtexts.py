"""Under ``-n``: every worker collects the batch files as the controller read them once, at the start.

xdist sends a worker only the indices of the items to run, in the list of
items it collected itself; a worker started to replace a crashed one collects
again. Were it to read the files then, a file edited meanwhile would give it
other commands at the same places (it would run a line that was never
collected). So the controller reads each batch file once, before any worker
starts, and hands the bytes to every worker of this machine in ``workerinput``:
the workers parse those, never the files, and so all collect the same
commands. A batch file deleted meanwhile cannot be collected again (pytest
refuses a missing argument): the worker stops the run, naming the file.

Remote workers (``--tx ssh=...``, ``popen//chdir=...``) collect their own copies (see :mod:`.remote`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.batchfile import BatchFileError, read_batch_file
from pytest_batchrunner.plugin.discovery import BatchDiscovery

__all__ = ["BatchTexts", "WorkerTexts", "configure", "text_of"]

TEXTS_INPUT = "batchrunner_batch_texts"
"""The ``workerinput`` key of ``{absolute path: bytes}``, the batch files as the controller read them."""
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

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        from pytest_batchrunner.plugin.remote import is_remote

        if not is_remote(node.gateway.spec):
            node.workerinput[TEXTS_INPUT] = self.texts


class WorkerTexts:
    """In an xdist worker: refuses to collect once a batch file the controller read is gone."""

    def __init__(self, config: pytest.Config, texts: dict[str, bytes]) -> None:
        self.config = config
        self.texts = texts

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        gone = [path for path in self.texts if not os.path.exists(path)]
        if not gone:
            return
        names = ", ".join(self.shown(path) for path in gone)
        message = (
            f"pytest-batchrunner: batch file deleted during the run: {names}; a new xdist worker (one replacing "
            "a crashed worker) cannot collect it, so the run stops: its commands not run yet are not run"
        )
        # xdist's controller stops the run with this message (as for -x), instead of giving work to this worker.
        session.shouldstop = message
        raise pytest.UsageError(message)

    def shown(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return path


def configure(config: pytest.Config, discovery: BatchDiscovery) -> None:
    """Register this process's part: the controller's reading, or the worker's copies."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        texts = workerinput.get(TEXTS_INPUT)
        if texts is not None:
            config.stash[TEXTS_KEY] = texts
            config.pluginmanager.register(WorkerTexts(config, texts), "batchrunner-worker-texts")
        return
    if getattr(config.option, "dist", "no") == "no" or config.option.collectonly:
        return
    from pytest_batchrunner.plugin.pipelines import _batch_files

    texts = config.stash[TEXTS_KEY] = {}
    for path in _batch_files(config, discovery):
        try:
            texts[_key(path)] = read_batch_file(path)
        except (OSError, BatchFileError):
            continue  # the worker's own reading reports it
    config.pluginmanager.register(BatchTexts(texts), "batchrunner-batch-texts")
