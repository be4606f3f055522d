"""An ordered map over threads, a bounded number of items ahead: work that releases the GIL runs on every core."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, function(item))`` in the order of ``items``, computed by ``workers`` threads at most
    ``2 * workers`` items ahead of the caller. What ``function`` raises is raised here, at its item."""
    with ThreadPoolExecutor(workers, thread_name_prefix="pop-rok-map") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(function, item)))
                if len(pending) > 2 * workers:
                    item, done = pending.popleft()
                    yield item, done.result()
            while pending:
                item, done = pending.popleft()
                yield item, done.result()
        finally:  # the caller stopped early, or something raised: drop what is queued
            for _, future in pending:
                future.cancel()
