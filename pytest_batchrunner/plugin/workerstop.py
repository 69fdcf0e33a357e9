"""Stopping this machine's xdist workers with their controller.

A CI runner, ``kill PID`` or ``timeout(1)`` may signal the controller alone
(SIGTERM, SIGHUP, SIGQUIT). The controller stops, but pytest-xdist tells its
workers only between two items, and kills them only once its own wait for
them has run out: their commands went on for seconds. And a controller that is
killed outright (SIGKILL, the OOM killer) cannot tell them at all: they went on
until execnet noticed the broken link.

So the controller passes such a signal on to its workers on this machine
(popen gateways; each says its process id as it starts), and each local worker
asks the kernel (Linux) for a SIGTERM should its controller die. A worker takes
SIGTERM as an interrupt (see :class:`~pytest_batchrunner.plugin.Interrupts`):
its commands are killed, as on Ctrl+C; once its controller is gone, it exits at
once and its guardian (:mod:`~pytest_batchrunner.process.guardian`) kills them.
A signal that reached the workers as well (Ctrl+C reaches the terminal's whole
process group) counts once in each: the same signal twice within a second is one stop.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from pytest_batchrunner.process.tree import signal_when_parent_dies

__all__ = ["LocalWorkers", "stop_with_controller"]

LOCAL_INPUT = "batchrunner_local"
"""workerinput key: the worker is a child of the controller (a popen gateway)."""
PID_TIMEOUT = 30.0
"""Seconds a new gateway has to say its process id."""
_PID_SOURCE = "import os; channel.send(os.getpid())"


def _local(spec: Any) -> bool:
    return bool(spec.popen) and not spec.via


class LocalWorkers:
    """The controller's record of its local workers' process ids; :meth:`stop` passes a signal on."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[LOCAL_INPUT] = _local(node.gateway.spec)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        if not _local(gateway.spec):
            return
        try:
            # The worker's process asked through execnet's public remote_exec (one round trip, before xdist starts it).
            pid = gateway.remote_exec(_PID_SOURCE).receive(timeout=PID_TIMEOUT)
        except Exception:  # noqa: BLE001 - without it the worker stops as xdist stops it
            return
        if isinstance(pid, int) and pid != os.getpid():
            self.pids.append(pid)

    def stop(self, signum: int) -> None:
        """Pass *signum* on to the workers (one that reached them too, as Ctrl+C does, counts once there)."""
        for pid in self.pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass  # gone already


def stop_with_controller(config: pytest.Config) -> bool:
    """In a local xdist worker: be sent SIGTERM when the controller dies; whether that is arranged."""
    return bool(config.workerinput.get(LOCAL_INPUT)) and signal_when_parent_dies(signal.SIGTERM)  # type: ignore[attr-defined]
