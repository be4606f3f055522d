"""Reading an iterable in a thread, a few items ahead of its consumer, so reading overlaps processing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

READ_AHEAD = 4  # members (about 10 MB of WAV) read ahead of the rows being written


def read_ahead(items: Iterable, depth: int = READ_AHEAD) -> Iterator:
    """The items of ``items``, produced by a thread at most ``depth`` ahead of the caller.

    zlib, crc32, md5 and file reads release the GIL, so the archive is read on one core while the rows
    are written on the other. What the thread raises is raised here, after the items before it.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False  # the caller stopped early

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # noqa: BLE001  (re-raised in the caller's thread)
            put(err)
            return
        put(end)

    thread = threading.Thread(target=work, name="pop-rok-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
