"""Stages of the video pipeline overlapped in threads: decoding (PyAV), the model (torch), the flow blend
(OpenCV) and encoding each release the GIL, so while the model computes a batch the next frames are decoded
and the previous ones blended and encoded.

`background(items, depth)` runs an iterator in its own thread, at most `depth` items ahead of its consumer;
chained, each stage runs in its thread. Order is kept; an exception in a stage is raised in the consumer; a
consumer that stops (an error, Ctrl-C, SIGTERM, `close()`) stops every stage upstream and waits for each to
finish its current item before returning, so nothing is left running on a file that is about to be closed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["background"]

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1  # how often a blocked stage checks whether its consumer stopped (s)


def background(items: Iterable[T], depth: int, name: str = "mambast-stage") -> Iterator[T]:
    """Iterate `items` in a daemon thread, buffering up to `depth` (>= 1) items; yields them in order."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # an upstream `background` stops its own thread

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                ok, item = q.get(timeout=_POLL_S)  # a timeout, so signals reach the main thread
            except queue.Empty:
                continue
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
