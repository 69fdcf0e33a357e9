"""Signal names and numbers, and holding the run's stop signals while a command is spawned."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["DeferredSignals", "signal_name", "signal_number"]


def signal_name(signum: int) -> str:
    """``11`` -> ``"SIGSEGV"``, ``37`` -> ``"SIGRTMIN+3"`` (a realtime signal); an unknown number gives ``"signal 99"``."""
    rtmin, rtmax = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    if rtmin < signum < rtmax:
        return f"SIGRTMIN+{signum - rtmin}"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signal_number(name: str | None) -> int | None:
    """The number :func:`signal_name` gave *name* (``None`` for none, or a name it never gives)."""
    if name and name.startswith("SIGRTMIN+") and name[9:].isdigit():
        return int(signal.SIGRTMIN) + int(name[9:])
    if name and name.startswith("signal ") and name[7:].isdigit():
        return int(name[7:])
    try:
        return int(signal.Signals[name]) if name else None
    except KeyError:
        return None


class DeferredSignals:
    """Hold Python-level SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers for a moment; :meth:`replay` runs them.

    Only in the main thread (the only one Python delivers signals to); elsewhere
    a no-op. Handlers that are not Python callables (SIG_DFL, SIG_IGN) are left
    alone. As a context manager: held inside the block, restored at its end, and
    replayed there if the block raised; else :meth:`restore` and :meth:`replay`.
    """

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.caught: list[int] = []

    def _defer(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)

    def __enter__(self) -> DeferredSignals:
        return self.hold()

    def hold(self) -> DeferredSignals:
        """Start holding the signals (what entering the context does)."""
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self.previous[sig] = handler
                    signal.signal(sig, self._defer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        if exc[0] is not None:
            self.replay()

    def restore(self) -> None:
        """Put the held handlers back (signals caught so far wait for :meth:`replay`)."""
        for sig, handler in self.previous.items():
            if signal.getsignal(sig) == self._defer:  # else replaced meanwhile (or restored): theirs stays
                signal.signal(sig, handler)

    def replay(self) -> None:
        """Run the held handlers for the signals caught (``KeyboardInterrupt`` for a Ctrl+C)."""
        caught, self.caught = self.caught, []
        for signum in caught:
            self.previous[signum](signum, None)
