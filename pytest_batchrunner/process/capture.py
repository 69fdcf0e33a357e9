"""A running shell's output: read from its pipes into bounded buffers, and its exit, through one selector."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable

__all__ = ["DEFAULT_CAPTURE_BYTES", "Echo", "OutputBuffer", "Pipes"]

DEFAULT_CAPTURE_BYTES = 1024 * 1024
HEAD_BYTES = 8 * 1024
_READ_SIZE = 65536
_POLL_MAX = 0.05
# The longest single wait handed to poll(2) (its timeout is an int of
# milliseconds): a longer timeout is waited for in steps, never overflowing.
WAIT_MAX = 2_147_483.0

Echo = Callable[[int, bytes], None]


class OutputBuffer:
    """Keep the first ``head`` bytes and the last ``limit`` bytes of a stream.

    Everything in between is counted, not kept, so a command printing gigabytes
    costs at most ``head + 2 * limit`` bytes.
    """

    __slots__ = ("limit", "head_limit", "head", "tail", "total")

    def __init__(self, limit: int = DEFAULT_CAPTURE_BYTES, head: int = HEAD_BYTES) -> None:
        self.limit = max(0, limit)
        # The head is a bonus for reading how a command started; the tail is what counts.
        self.head_limit = min(head, self.limit // 8)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
            if not data:
                return
        self.tail += data
        keep = self.limit - self.head_limit
        # Trim only when the tail is twice its size: amortised O(1) per byte.
        if len(self.tail) > 2 * keep + _READ_SIZE:
            del self.tail[: len(self.tail) - keep]

    @property
    def dropped(self) -> int:
        """How many bytes were counted but not kept."""
        return self.total - len(self.head) - min(len(self.tail), self.limit - self.head_limit)

    def text(self) -> str:
        """The kept output as text (invalid UTF-8 replaced), with a marker where bytes were dropped."""
        keep = self.limit - self.head_limit
        tail = self.tail[len(self.tail) - keep:] if len(self.tail) > keep else self.tail
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return (bytes(self.head) + bytes(tail)).decode("utf-8", "replace")
        return (
            self.head.decode("utf-8", "replace")
            + f"\n[... {dropped} bytes dropped by pytest-batchrunner ...]\n"
            + tail.decode("utf-8", "replace")
        )



class Pipes:
    """The pipes and exit notification of one running shell."""

    def __init__(self, proc: subprocess.Popen[bytes], capture_bytes: int, echo: Echo | None) -> None:
        self.proc = proc
        self.echo = echo
        self.out = OutputBuffer(capture_bytes)
        self.err = OutputBuffer(capture_bytes)
        assert proc.stdout is not None and proc.stderr is not None
        self.streams = {proc.stdout.fileno(): (self.out, 1), proc.stderr.fileno(): (self.err, 2)}
        # poll(2) needs no kernel object of its own, unlike epoll: cheaper for a
        # selector that lives for one short command.
        self.sel: selectors.BaseSelector = (
            selectors.PollSelector() if hasattr(selectors, "PollSelector") else selectors.SelectSelector()
        )
        for fd in self.streams:
            self.sel.register(fd, selectors.EVENT_READ)
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
                self.sel.register(self.pidfd, selectors.EVENT_READ)
            except OSError:  # kernel older than 5.3: poll for the exit instead
                self.pidfd = None

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(fd)
            _, stream = self.streams.pop(fd)
            if self.echo is not None:
                self.echo(stream, b"")
            return
        buffer, stream = self.streams[fd]
        buffer.add(data)
        if self.echo is not None:
            self.echo(stream, data)

    def _handle(self, fd: int) -> None:
        if fd == self.pidfd:
            self._reap()
        elif fd in self.streams:
            self._read(fd)

    def _reap(self) -> None:
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self.proc.wait()

    def exited(self) -> bool:
        """Whether the shell has ended (it is then reaped)."""
        if self.proc.returncode is not None:
            return True
        if self.pidfd is None:
            return self.proc.poll() is not None
        return False

    def wait_exit(self, deadline: float | None) -> bool:
        """Read output until the shell exits (True) or *deadline* passes (False)."""
        poll = 0.001
        while not self.exited():
            # Without a pidfd (macOS, old kernels) the exit is polled, backing off to 50 ms.
            wait: float | None = None
            if self.pidfd is None:
                wait, poll = poll, min(poll * 2, _POLL_MAX)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(left, WAIT_MAX) if wait is None else min(wait, left)
            for key, _ in self.sel.select(wait):
                self._handle(key.fd)
        return True

    def read_available(self) -> None:
        """Read what the pipes hold right now, without waiting."""
        while self.streams:
            ready = [key.fd for key, _ in self.sel.select(0)]
            if not ready:
                return
            for fd in ready:
                self._handle(fd)

    def drain(self, deadline: float) -> None:
        """Read until both pipes are closed, or until *deadline*."""
        while self.streams:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _ in self.sel.select(left):
                self._handle(key.fd)

    def close(self) -> None:
        self.sel.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
