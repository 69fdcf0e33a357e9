"""Remote xdist workers: ``--tx ssh=...``, ``socket=...``, ``popen//chdir=...`` (with ``--rsyncdir``).

Such a worker collects the *copies* of the batch files, under ids relative to
its own folder (``proj/cmds.batch::...`` where the controller would say
``cmds.batch::...``), and on another machine the controller may not even have
the files. So the controller does not re-read batch files for them: each
remote worker sends what it collected (id, command, file, line, group), once
its collection is final, over a channel of its own. Execnet delivers one
gateway's messages in order, and the worker sends before pytest-xdist's own
"collection finished" event, so the controller knows every command and group
before it schedules anything: groups stay whole and in order on one worker,
and an interrupted run counts every command.

Where a remote worker runs commands (a line's ``cwd=`` still counts from its
batch file's copy):

1. the copy of the folder pytest was started in, when that folder is inside
   an ``--rsyncdir`` root (``ROOT/sub`` runs in ``<chdir>/ROOT-name/sub``);
2. else that folder itself, when it exists on the worker's machine (the same
   path on a shared filesystem);
3. else the worker's own folder (its ``chdir``).

Where commands ran is reported as the host: ``:`` for this machine (GNU
parallel's name for it, used for ``popen`` gateways, with or without
``chdir``), the ``ssh=`` login, the ``socket=`` address; it is the job log's
Host column and each attempt's ``host`` in the JSON results.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_batchrunner.batchfile import group_key
from pytest_batchrunner.plugin.engine import HOST_KEY, REMOTE_KEY, WORKDIR_KEY, is_remote
from pytest_batchrunner.plugin.items import CommandItem

__all__ = ["Collected", "RemoteCollection", "RemoteWorkers", "configure", "host_name", "worker_specs"]

CHANNEL_INPUT = "batchrunner_collected"
"""The ``workerinput`` key of the channel a remote worker sends its collection on."""
HOME_INPUT = "batchrunner_home"
"""The ``workerinput`` key of where commands run (relative: under the worker's folder; absolute: that path)."""
HOST_INPUT = "batchrunner_host"
"""The ``workerinput`` key of the host name the reports give the worker."""


@dataclass(frozen=True)
class Collected:
    """One command a remote worker collected, as the controller learns it."""

    command: str
    path: str
    line: int
    group: str | None
    sequential: bool


def worker_specs(config: pytest.Config) -> list[str]:
    """The xdist gateway specs of this run (``-n 2`` gives two ``popen``), or ``[]`` without distribution."""
    if getattr(config.option, "dist", "no") == "no" or getattr(config.option, "collectonly", False):
        return []
    specs: list[str] = []
    for value in getattr(config.option, "tx", None) or ():
        count, star, rest = str(value).partition("*")
        if star and count.isdigit():
            specs.extend([rest] * int(count))
        else:
            specs.append(str(value))
    return specs


def _xspec(spec: str) -> Any:
    import execnet

    return execnet.XSpec(spec)


def host_name(spec: Any) -> str:
    """The name the reports give the machine of a gateway: ``:`` (this machine), the ssh login, the socket."""
    if spec.ssh:
        return str(spec.ssh)
    if spec.socket:
        return str(spec.socket)
    vagrant = getattr(spec, "vagrant_ssh", None)
    if vagrant:
        return str(vagrant)
    return ":"


class RemoteWorkers:
    """On the xdist controller: what the remote workers collected, and where they run commands."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collected: dict[str, Collected] = {}
        self.groups: dict[str, tuple[str, bool]] = {}
        """``nodeid -> (group, sequential)`` of every grouped command a remote worker collected."""
        self.roots: list[Path] = []
        """The ``--rsyncdir`` roots, as xdist sends them (each gateway gets all; xdist skips the same target twice)."""
        self.lock = threading.Lock()

    def knows(self, nodeid: str) -> bool:
        return nodeid in self.collected

    # -- pytest-xdist hooks --------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[Any]) -> None:
        _check_rsync_arguments(config, specs)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_rsyncstart(self, source: Any) -> None:
        root = Path(source).resolve()
        if root not in self.roots:
            self.roots.append(root)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        spec = node.gateway.spec
        node.workerinput[HOST_INPUT] = host_name(spec)
        if not is_remote(spec):
            return
        channel = node.gateway.newchannel()
        channel.setcallback(self._receive)
        node.workerinput[CHANNEL_INPUT] = channel
        node.workerinput[HOME_INPUT] = self._home()

    def _home(self) -> str:
        start = Path(self.config.invocation_params.dir).resolve()
        for root in self.roots:
            if start == root or root in start.parents:
                return Path(root.name, start.relative_to(root)).as_posix()
        return str(start)

    def _receive(self, message: Any) -> None:
        # Execnet's receiver thread, before xdist hears that this worker's collection is done.
        with self.lock:
            for nodeid, command, path, line, group, sequential in message:
                self.collected[nodeid] = Collected(command, path, line, group, sequential)
                if group is not None:
                    self.groups[nodeid] = (group, sequential)


class RemoteCollection:
    """On a remote worker: sends the final collection to the controller."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    @pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reports its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.channel.send([
            (item.nodeid, item.spec.reported, item.spec.path, item.spec.line, group_key(item.spec),
             item.spec.settings.sequential)
            for item in session.items if isinstance(item, CommandItem)
        ])


def configure(config: pytest.Config, is_controller: bool) -> RemoteWorkers | None:
    """Set up this process's part; on the controller of a run with remote gateways, its :class:`RemoteWorkers`."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[HOST_KEY] = workerinput.get(HOST_INPUT, ":")
        home = workerinput.get(HOME_INPUT)
        if home is not None:
            config.stash[WORKDIR_KEY] = _worker_home(home)
        channel = workerinput.get(CHANNEL_INPUT)
        if channel is not None:
            config.pluginmanager.register(RemoteCollection(channel), "batchrunner-remote-collection")
        return None
    if not is_controller or not any(is_remote(_xspec(spec)) for spec in worker_specs(config)):
        return None  # plain popen workers (-n N): this machine's files, host ":" (the default)
    remote = config.stash[REMOTE_KEY] = RemoteWorkers(config)
    config.pluginmanager.register(remote, "batchrunner-remote")
    return remote


def _worker_home(home: str) -> Path:
    if os.path.isabs(home):
        path = Path(home)
        return path if path.is_dir() else Path.cwd()
    path = Path.cwd() / home
    return path if path.is_dir() else Path.cwd()


def _check_rsync_arguments(config: pytest.Config, specs: list[Any]) -> None:
    """Name the argument pytest-xdist will refuse for remote workers, instead of its INTERNALERROR.

    For a remote gateway, xdist rewrites every command-line argument that names
    an existing path relative to an rsync root (``--rsyncdir``, the ini's
    ``rsyncdirs``, and pytest's own folders), and raises inside the session
    when one is not under any; a relative path never is (xdist compares it
    with absolute roots).
    """
    if not any(is_remote(spec) for spec in specs):
        return
    import _pytest

    own = [Path(pytest.__file__).parent, Path(_pytest.__file__).parent]
    given = [*(getattr(config.option, "rsyncdir", None) or ()), *(config.getini("rsyncdirs") or ())]
    roots = [Path(r).resolve() for r in [*own, *given]]
    for arg in config.invocation_params.args:
        path = Path(str(arg).split("::", 1)[0])
        try:
            exists = path.exists()
        except (OSError, ValueError):
            exists = False
        if not exists or (path.is_absolute() and any(path == r or r in path.parents for r in roots)):
            continue
        where = ", ".join(str(Path(r).resolve()) for r in given)
        raise pytest.UsageError(
            f"argument {arg}: remote xdist workers (popen//chdir=, ssh=, socket=) get each argument that names "
            "an existing path relative to an --rsyncdir root, and this one is not inside one as an absolute path; "
            + (f"give it as an absolute path inside {where}" if given else "add --rsyncdir DIR for the folder "
               "that holds it and give it as an absolute path")
            + " (an option's value that names a file: --option=VALUE)"
        )
