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
    ``2 * workers`` items ahead of the caller. What ``function`` raises is raised at its item; what ``items``
    raises is raised once every item read before it was yielded."""
    source, failure = iter(items), None
    with ThreadPoolExecutor(workers, thread_name_prefix="pop-rok-map") as pool:
        pending: deque = deque()
        try:
            while failure is None:
                try:
                    item = next(source)
                except StopIteration:
                    break
                except Exception as err:  # noqa: BLE001  (raised below, after the items read before it)
                    failure = err
                    break
                pending.append((item, pool.submit(function, item)))
                if len(pending) > 2 * workers:
                    item, done = pending.popleft()
                    yield item, done.result()
            while pending:
                item, done = pending.popleft()
                yield item, done.result()
        finally:  # the caller stopped early: drop what is queued
            for _, future in pending:
                future.cancel()
    if failure is not None:
        raise failure
