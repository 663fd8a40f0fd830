"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption) finish the current
step, a checkpoint is written where the run stands, and the run stops; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """``with StopSignals() as stop:`` installs the handlers (main thread only) and restores the old
    ones at the end; ``bool(stop)`` says whether a stop was asked for."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.received)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received.append(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
