"""Iterate in a background thread a bounded number of items ahead, so the consumer only receives ready items.

pyarrow reads, numpy slicing and float conversion release the GIL, so a reader thread runs on a second core while
the training loop's thread works: the same overlap a DataLoader worker process gives, without the worker's
shared-memory copy of every batch (on a small VM that copy, not reading, bounds a worker's throughput).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = 0.05  # how often a blocked put or get looks at the other side: bounds every wait, and the stop's latency
JOIN_S = 10.0  # longest wait for the thread to finish the item it is making when the consumer stops
_DONE, _ITEM, _ERROR = "done", "item", "error"


def prefetch(items: Iterable[T], depth: int, name: str = "poprok-prefetch") -> Iterator[T]:
    """``items`` made by thread ``name`` at most ``depth`` ahead; its error is raised here, at the item it stopped.

    The thread stops when the returned generator ends: exhausted, raising, closed, or dropped by its consumer.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        """Queue ``entry`` unless the consumer stops first."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((_ITEM, item)):
                    return
            put((_DONE, None))
        except BaseException as error:  # the consumer's to handle: raised in its thread, at its place in the order
            put((_ERROR, error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    return _consume(ready, stop, thread)


def _consume(ready: queue.Queue, stop: threading.Event, thread: threading.Thread) -> Iterator:
    try:
        while True:
            try:
                kind, value = ready.get(timeout=POLL_S)
            except queue.Empty:
                if thread.is_alive() or not ready.empty():
                    continue
                raise RuntimeError(f"{thread.name} ended without finishing its items") from None
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        thread.join(JOIN_S)
        if thread.is_alive():
            logger.warning("%s is still making an item %.0f s after its consumer stopped", thread.name, JOIN_S)
