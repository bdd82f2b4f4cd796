"""SIGTERM handled like Ctrl-C: a batch scheduler's stop, `kill`, `docker stop` or systemd end a training run,
a video or the web UI the way Ctrl-C does (their `except KeyboardInterrupt` clean-up runs)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM inside `sigterm_as_interrupt()`: a KeyboardInterrupt, so every
    Ctrl-C path (checkpoint saved, temp files removed, workspace deleted) runs for it too."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration of the block, then restore the previous handler.
    Only in the main thread (signal handlers can only be set there); elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
