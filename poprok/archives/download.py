"""Resumable, verified HTTP downloads of large files, over several connections.

`datasets` restarts an interrupted download from zero, fetches over one
connection and, for a builder used directly, checks no checksum; busy public
servers (Zenodo) cap each connection's speed.  For multi-gigabyte archives this
module instead:

* fetches ``connections`` byte ranges at once (default 4; about four ranges of
  at most 64 MiB per connection) into one preallocated ``<dest>.part``; a range
  cut short resumes on its own, from its last byte, while the others go on;
* keeps which bytes of the part file are done in ``<dest>.part.ranges`` (JSON,
  replaced atomically, written before the file grows), so the next run fetches
  only the holes.  A ``.part`` without it (a one-connection run's) holds the
  file's first bytes and is resumed from its end;
* falls back to one connection (``Range: bytes=N-`` to resume) when the server
  ignores ``Range`` or does not say how long the file is, and when
  ``connections=1``;
* retries connection errors, timeouts, mid-body disconnects and HTTP
  429/500/502/503/504 with exponential backoff.  On 429 and 503 it waits the
  server's ``Retry-After`` (capped by ``max_backoff``) before any new request,
  and closes one connection for the rest of the download instead of hammering;
* takes a range answered with other bytes than asked (another offset, total or
  length) as a failure of that range: it is asked again once, then
  DownloadError.  Such bytes are never written;
* checks size and md5 over the whole file (the md5 read back from the part
  file as its done prefix grows) before it appears at its final path via an
  atomic ``os.replace``, so ``dest`` is always complete.  An md5 mismatch after
  a multi-range download costs one clean restart, then DownloadError;
  after a one-connection download, DownloadError at once.

It knows nothing about any particular dataset; ``zenodo_record_files`` only
turns a Zenodo record JSON into the names, sizes, md5s and URLs to pass here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from tqdm import tqdm

__all__ = ["DownloadError", "download", "md5sum", "verify_file", "zenodo_record_files"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})  # the server asks for less: one connection fewer
# About this many ranges per connection: a slow connection delays the end by
# little, and the md5 of the done prefix keeps up with the download.
PIECES_PER_CONNECTION = 4
MIN_PIECE = 64 << 10
MAX_PIECE = 64 << 20

_T = TypeVar("_T")


class DownloadError(Exception):
    """A download that cannot succeed without intervention; ``url`` names what failed."""

    def __init__(self, url: str, message: str):
        super().__init__(message)
        self.url = url


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested delay, if any."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


class _NoRanges(Exception):
    """The server ignores ``Range`` or does not say the file's size: fetch it over one connection."""


class _GiveWay(Exception):
    """This connection closes after a 429/503; its range went back to the others."""


class _Stopped(Exception):
    """Another connection failed: this one stops where it is."""


# What requests raises for refused/reset connections, timeouts (ReadTimeout while
# streaming arrives as ConnectionError) and bodies cut short (ChunkedEncodingError).
_TRANSIENT_ERRORS = (
    _Transient,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class _Retries:
    """How often and how long to retry; ``sleep`` waits (a test passes one that records the delays)."""

    max_retries: int = 8
    backoff: float = 1.0
    max_backoff: float = 60
    sleep: Callable[[float], None] = time.sleep


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks so multi-GB files need no memory."""
    return _hash_file(path, chunk_size)[0].hexdigest()


def _hash_file(
    path: str | os.PathLike, chunk_size: int = 1 << 20, digest=None, start: int = 0, end: int | None = None
):
    """(md5 object, number of bytes hashed) after hashing bytes ``start:end`` into ``digest`` (default: a new one)."""
    digest, size = digest or hashlib.md5(), 0
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(chunk_size if end is None else min(chunk_size, end - start - size)):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def verify_file(
    path: str | os.PathLike, expected_size: int | None = None, expected_md5: str | None = None
) -> list[str]:
    """Every way ``path`` differs from what is expected (empty list = ok).

    Returns problems instead of raising so a validator can report them all.
    The md5 is only computed when one is expected.
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path}: missing"]
    expected_md5 = _md5_hex(expected_md5)
    actual_md5 = md5sum(path) if expected_md5 is not None else None
    problems = _compare(path.stat().st_size, actual_md5, expected_size, expected_md5)
    return [f"{path}: {problem}" for problem in problems]


def _compare(
    actual_size: int, actual_md5: str | None, expected_size: int | None, expected_md5: str | None
) -> list[str]:
    """Size/md5 mismatches as sentences naming both the expected and the actual value."""
    problems = []
    if expected_size is not None and actual_size != expected_size:
        problems.append(f"size is {actual_size} bytes, expected {expected_size}")
    if expected_md5 is not None and actual_md5 != expected_md5:
        problems.append(f"md5 is {actual_md5}, expected {expected_md5}")
    return problems


def _mismatch_error(url: str, problems: list[str]) -> DownloadError:
    return DownloadError(
        url,
        f"{url}: {'; '.join(problems)}. The server served different bytes than the record "
        f"publishes: re-run to download again, or report it upstream.",
    )


def _md5_hex(checksum: str | None) -> str | None:
    """Normalise ``"md5:ABC..."`` / ``"abc..."`` to bare lowercase hex; reject other algorithms."""
    if checksum is None:
        return None
    algorithm, _, digest = checksum.rpartition(":")
    if algorithm not in ("", "md5"):
        raise ValueError(f"unsupported checksum {checksum!r}: only md5 is supported")
    return digest.lower()


def download(
    url: str,
    dest_path: str | os.PathLike,
    *,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    connections: int = 4,
    max_retries: int = 8,
    backoff: float = 1.0,
    max_backoff: float = 60,
    timeout: float = 60,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` to ``dest_path`` over up to ``connections`` connections, resuming and retrying.

    An existing ``dest_path`` that matches the expected size/md5 is returned
    without any request.  Otherwise bytes go to ``dest_path + ".part"``, which
    survives failures so the next call resumes from it, except when the
    finished file does not match the expected size/md5: then the part file is
    deleted (resuming would only reproduce the wrong bytes) and DownloadError
    is raised.  ``max_retries`` counts consecutive failed attempts of one range;
    an attempt that added bytes resets the count, so a long download over a
    flaky link is not abandoned while it is still making headway.  ``sleep``
    waits between retries.  A caller's ``session`` is shared by the connections.
    """
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ValueError(f"connections must be a whole number of at least 1, got {connections!r}")
    dest = Path(dest_path)
    expected_md5 = _md5_hex(expected_md5)  # fail on a bad checksum before, not after, 12 GB
    if dest.is_file():
        problems = verify_file(dest, expected_size, expected_md5)
        if not problems:
            return dest
        log.warning("re-downloading %s: %s", url, "; ".join(problems))
    dest.parent.mkdir(parents=True, exist_ok=True)

    request_headers = {**(headers or {}), "Accept-Encoding": "identity"}  # Range needs raw bytes
    retries = _Retries(max_retries, backoff, max_backoff, sleep)
    with _session(session, connections) as http:
        job = dict(url=url, dest=dest, http=http, headers=request_headers, expected_size=expected_size,
                   expected_md5=expected_md5, retries=retries, timeout=timeout, chunk_size=chunk_size,
                   progress=progress)  # fmt: skip
        if connections == 1 or not _download_ranges(connections=connections, **job):
            _download_sequential(**job)
    return dest


def _part_paths(dest: Path) -> tuple[Path, Path]:
    """The part file and the record of its done byte ranges."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.ranges")


def _progress_bar(dest: Path, total: int | None, initial: int, progress: bool) -> tqdm:
    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=dest.name, file=sys.stderr, disable=not progress,
    )  # fmt: skip


def _commit(part: Path, ranges: Path, dest: Path) -> None:
    """Make the bytes durable, then atomically move them to ``dest``.

    The ranges record goes first: a complete part file without it reads as a
    complete first-bytes part, so a crash in between loses nothing.
    """
    with open(part, "ab") as f:
        os.fsync(f.fileno())
    ranges.unlink(missing_ok=True)
    os.replace(part, dest)


# ------------------------------------------------------------------------------------ one connection


def _download_sequential(
    url, dest, http, headers, expected_size, expected_md5, retries, timeout, chunk_size, progress
):
    """Fetch over one connection, resuming the part file from its end."""
    with _PartFile(dest, expected_size, progress) as part:

        def attempt() -> None:
            _fetch_into(http, url, part, headers, timeout, chunk_size, expected_size)

        _with_retries(
            url, attempt, retries, made_progress=part.grew,
            note=f" Bytes received so far stay in {part.path} and the next run resumes from them.",
        )  # fmt: skip

    problems = _compare(part.size, part.md5.hexdigest(), expected_size, expected_md5)
    if problems:
        part.path.unlink()
        raise _mismatch_error(url, problems)
    _commit(part.path, part.ranges, dest)


class _PartFile:
    """``<dest>.part`` plus a running md5 of it, kept in step with a progress bar.

    The md5 of bytes already on disk is computed once, when resuming, so retries
    within one call never re-read what was already hashed.  A multi-range part
    file is first cut to its done first bytes.
    """

    def __init__(self, dest: Path, total: int | None, progress: bool):
        self.path, self.ranges = _part_paths(dest)
        _keep_done_prefix(self.path, self.ranges)
        self.md5, self.size = _hash_file(self.path) if self.path.is_file() else (hashlib.md5(), 0)
        self._high_water = self.size
        self.bar = _progress_bar(dest, total, self.size, progress)

    def __enter__(self) -> _PartFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def restart(self) -> None:
        """Forget the bytes so far (the server will send the file from its start)."""
        self.path.unlink(missing_ok=True)
        self.md5 = hashlib.md5()
        self.size = 0
        self.bar.reset()

    def append(self, chunks) -> None:
        with open(self.path, "ab") as f:
            for chunk in chunks:
                f.write(chunk)
                self.md5.update(chunk)
                self.size += len(chunk)
                self.bar.update(len(chunk))

    def grew(self) -> bool:
        """True if the file is longer than ever before in this call: retries made headway."""
        grew = self.size > self._high_water
        self._high_water = max(self._high_water, self.size)
        return grew


def _fetch_into(
    http: requests.Session,
    url: str,
    part: _PartFile,
    headers: dict[str, str],
    timeout: float,
    chunk_size: int,
    expected_size: int | None,
) -> None:
    """One GET that resumes (206), restarts (200) or finds ``part`` already complete (416)."""
    if part.size:
        headers = {**headers, "Range": f"bytes={part.size}-"}
    with http.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        _check_status(url, resp, ok=(200, 206, 416))
        content_range = _parse_content_range(resp.headers.get("Content-Range"))

        if resp.status_code == 416:
            total = content_range[2] if content_range else expected_size
            if total is not None and total == part.size:
                return
            refused_at = part.size
            part.restart()
            raise _Transient(f"server refused to resume at byte {refused_at}; restarting from zero")
        if resp.status_code == 206 and (not content_range or content_range[0] != part.size):
            part.restart()
            wrong = resp.headers.get("Content-Range")
            raise _Transient(f"server resumed at the wrong offset ({wrong}); restarting from zero")
        if resp.status_code == 200 and part.size:
            log.info("%s ignored the Range request; restarting from zero", url)
            part.restart()

        # Without Content-Length an early close looks like a normal end of body,
        # so fall back on the expected size to recognise a short read.
        length = resp.headers.get("Content-Length")
        total = part.size + int(length) if length is not None else expected_size
        if part.bar.total is None:
            part.bar.total = total
        part.append(resp.iter_content(chunk_size))
        if total is not None and part.size < total:
            raise _Transient(f"connection closed at byte {part.size} of {total}")


# ------------------------------------------------------------------------------- several connections


class _Spans:
    """Sorted, merged ``(start, end)`` byte intervals: the parts of the part file that hold the server's bytes."""

    def __init__(self, spans=()):
        self.spans: list[tuple[int, int]] = []
        for start, end in spans:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.spans, (start, end)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            elif a < b:
                merged.append((a, b))
        self.spans = merged

    def prefix(self) -> int:
        """How many of the file's first bytes are done."""
        return self.spans[0][1] if self.spans and self.spans[0][0] == 0 else 0

    def size(self) -> int:
        return sum(end - start for start, end in self.spans)

    def gaps(self, total: int) -> list[tuple[int, int]]:
        gaps, at = [], 0
        for start, end in [*self.spans, (total, total)]:
            if start > at:
                gaps.append((at, start))
            at = end
        return gaps


def _load_ranges(path: Path) -> tuple[int, _Spans] | None:
    """(file size, done spans) from a ranges record; None when it is unreadable or inconsistent."""
    try:
        record = json.loads(path.read_text())
        total, spans = record["size"], [(start, end) for start, end in record["done"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(total, int) or not all(
        isinstance(a, int) and isinstance(b, int) and 0 <= a < b <= total for a, b in spans
    ):
        return None
    return total, _Spans(spans)


def _save_ranges(path: Path, total: int, spans: list[tuple[int, int]]) -> None:
    """Write the ranges record atomically: a reader sees the old one or the new one, never half."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps({"size": total, "done": spans}))
    os.replace(scratch, path)


def _keep_done_prefix(part: Path, ranges: Path) -> None:
    """Turn a multi-range part file into a one-connection one: its done first bytes, nothing after."""
    if not ranges.exists():
        return
    loaded = _load_ranges(ranges) if part.exists() else None
    if loaded is None:
        part.unlink(missing_ok=True)  # holes that nothing describes: nothing in it can be trusted
    else:
        total, done = loaded
        prefix = done.prefix()
        _save_ranges(ranges, total, [(0, prefix)] if prefix else [])  # true before, during and after the cut
        os.truncate(part, prefix)
    ranges.unlink()


def _piece_size(total: int, connections: int) -> int:
    return min(MAX_PIECE, max(MIN_PIECE, -(-total // (connections * PIECES_PER_CONNECTION))))


def _split(gaps: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    return [(at, min(at + size, end)) for start, end in gaps for at in range(start, end, size)]


def _download_ranges(connections: int, url, dest, expected_md5, restarts: int = 1, **job) -> bool:
    """Download over up to ``connections`` ranges; False when the server cannot serve ranges.

    An md5 mismatch discards the file and starts again from zero ``restarts`` times, then raises.
    """
    ranged = _RangedDownload(connections=connections, url=url, dest=dest, hashing=expected_md5 is not None, **job)
    try:
        problems = ranged.run(expected_md5)
    except _NoRanges as reason:
        log.info("%s: %s; fetching it over one connection", url, reason)
        return False
    if not problems:
        return True
    ranged.discard()
    if not restarts:
        raise _mismatch_error(url, problems)
    log.warning("%s: %s; downloading it again from the start", url, "; ".join(problems))
    return _download_ranges(connections, url, dest, expected_md5, restarts - 1, **job)


class _Schedule:
    """The ranges left to fetch and how many connections may fetch them.

    One lock covers both, so a connection that gives way after a 429/503 hands
    its range to one that is still running, never to one that has just left.
    ``pause`` holds back every new request while a Retry-After is waited out.
    """

    def __init__(self, connections: int):
        self.allowed = connections
        self.running = 1  # the first request, made alone
        self._pieces: deque[tuple[int, int]] = deque()
        self._pausing = 0
        self._cond = threading.Condition()

    def start(self, pieces: list[tuple[int, int]]) -> int:
        """Queue ``pieces``; how many connections to run."""
        with self._cond:
            self._pieces.extend(pieces)
            self.running = self.allowed
            return self.allowed

    def take(self, stop: threading.Event) -> tuple[int, int] | None:
        """The next range to fetch, or None: this connection is done."""
        with self._cond:
            if self._pieces and not stop.is_set():
                return self._pieces.popleft()
            self.running -= 1
            return None

    def lower(self) -> int:
        with self._cond:
            self.allowed = max(1, self.allowed - 1)
            return self.allowed

    def give_way(self, remaining: tuple[int, int]) -> bool:
        """True if this connection is one too many: ``remaining`` is queued for the others."""
        with self._cond:
            if self.running <= self.allowed:
                return False
            self._pieces.appendleft(remaining)
            self.running -= 1
            return True

    def pause(self, sleep: Callable[[float], None], delay: float) -> None:
        with self._cond:
            self._pausing += 1
        try:
            sleep(delay)
        finally:
            with self._cond:
                self._pausing -= 1
                self._cond.notify_all()

    def wait_open(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._pausing)


class _RangedDownload:
    """One pass of a multi-range download into a preallocated part file; see the module docstring."""

    def __init__(
        self, url, dest, http, headers, expected_size, connections, retries, timeout, chunk_size, progress, hashing
    ):
        self.url, self.dest, self.http, self.headers = url, dest, http, headers
        self.expected_size, self.connections, self.retries = expected_size, connections, retries
        self.timeout, self.chunk_size, self.progress, self.hashing = timeout, chunk_size, progress, hashing
        self.part, self.ranges = _part_paths(dest)
        self.note = f" Bytes received so far stay in {self.part} and the next run resumes from them."
        self.schedule = _Schedule(connections)
        self.stop = threading.Event()
        self.bar = None
        self.md5, self.hashed = hashlib.md5(), 0
        self._lock = threading.Lock()  # done, bar
        self._save_lock = threading.Lock()
        self._hash_lock = threading.Lock()
        self.total, self.done = self._resume_state()

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.ranges.unlink(missing_ok=True)

    def _resume_state(self) -> tuple[int | None, _Spans]:
        """(file size if known, done spans) from an earlier run's part file, or a fresh start."""
        if self.ranges.exists():
            loaded = _load_ranges(self.ranges) if self.part.exists() else None
            if (
                loaded is not None
                and self.expected_size in (None, loaded[0])
                and all(end <= self.part.stat().st_size for _, end in loaded[1].spans)
            ):
                return loaded
            log.warning("%s: %s does not describe %s; starting from zero", self.url, self.ranges, self.part)
            self.discard()
            return self.expected_size, _Spans()
        size = self.part.stat().st_size if self.part.exists() else 0
        if self.expected_size is not None and size > self.expected_size:
            self.discard()
            size = 0
        return self.expected_size, _Spans([(0, size)])

    def run(self, expected_md5: str | None) -> list[str]:
        """Fetch what is missing and check the file: the problems found (none: it is at ``dest``)."""
        first = self._probe()
        pieces = _split(self.done.gaps(self.total), _piece_size(self.total, self.connections))
        self._save()  # before the file grows: holes are never undescribed
        if not self.part.exists() or self.part.stat().st_size < self.total:
            with open(self.part, "ab") as f:
                f.truncate(self.total)
        if pieces:
            with _progress_bar(self.dest, self.total, self.done.size(), self.progress) as self.bar:
                self._fetch_all(pieces, first)
        if self.hashing:
            self._hash_ahead(block=True)
        problems = _compare(
            self.hashed if self.hashing else self.total, self.md5.hexdigest(), self.total, expected_md5
        )
        if not problems:
            _commit(self.part, self.ranges, self.dest)
        return problems

    def _probe(self) -> requests.Response | None:
        """The response for the first missing range (None: nothing is missing); sets the file's size."""
        if self.total is None:
            start, end = self.done.prefix(), None
        else:
            pieces = _split(self.done.gaps(self.total), _piece_size(self.total, self.connections))
            if not pieces:
                return None
            start, end = pieces[0]
        wrong = [0]
        resp = _with_retries(
            self.url, lambda: self._open(start, end, wrong, probe=True), self.retries, note=self.note, wait=self._wait
        )
        total = _parse_content_range(resp.headers["Content-Range"])[2]
        if self.total is not None and total != self.total:
            resp.close()
            if self.expected_size is not None:
                self.discard()
                raise _mismatch_error(self.url, _compare(total, None, self.expected_size, None))
            log.warning("%s is now %d bytes, not %d: starting from zero", self.url, total, self.total)
            self.discard()
            self.total, self.done = None, _Spans()
            return self._probe()
        self.total = total
        return resp

    def _open(self, start: int, end: int | None, wrong: list[int], probe: bool = False) -> requests.Response:
        """GET bytes ``start`` to ``end - 1`` (to the file's end when ``end`` is None), checked to be those."""
        self.schedule.wait_open()
        if self.stop.is_set():  # another connection failed: no retry of this one outlives it
            raise _Stopped
        asked = f"bytes={start}-{'' if end is None else end - 1}"
        resp = self.http.get(self.url, headers={**self.headers, "Range": asked}, stream=True, timeout=self.timeout)
        try:
            problem = self._check(resp, start, probe)
        except BaseException:
            resp.close()
            raise
        if problem is None:
            return resp
        resp.close()
        wrong[0] += 1
        if wrong[0] > 1:
            raise DownloadError(
                self.url,
                f"{self.url} answered {asked} with other bytes twice ({problem}); nothing was written from "
                f"those answers. Re-run later, or report it upstream.{self.note}",
            )
        raise _Transient(f"answered {asked} with other bytes ({problem}); asking again")

    def _check(self, resp: requests.Response, start: int, probe: bool) -> str | None:
        """Why ``resp`` is not the file's bytes from ``start`` on (None: it is them)."""
        _check_status(self.url, resp, ok=(200, 206, 416))
        raw = resp.headers.get("Content-Range")
        content_range = _parse_content_range(raw)
        if resp.status_code != 206 or content_range is None or None in content_range:
            if probe:
                raise _NoRanges(f"HTTP {resp.status_code} with Content-Range {raw!r} to a Range request")
            return f"HTTP {resp.status_code} with Content-Range {raw!r}"
        first, last, total = content_range
        length = resp.headers.get("Content-Length")
        if first != start:
            return f"Content-Range {raw} starts elsewhere"
        if not probe and total != self.total:
            return f"Content-Range {raw}: the file was {self.total} bytes"
        if last >= total or (length is not None and length != str(last - first + 1)):
            return f"Content-Length {length} for Content-Range {raw}"
        return None

    def _fetch_all(self, pieces: list[tuple[int, int]], first: requests.Response | None) -> None:
        """Run the connections until every piece is done or one of them fails."""
        count = self.schedule.start(pieces[1:])
        try:
            with ThreadPoolExecutor(count, thread_name_prefix="download") as pool:
                futures = [pool.submit(self._worker, pieces[0], first)]
                futures += [pool.submit(self._worker) for _ in range(count - 1)]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                finally:
                    self.stop.set()  # on an error or Ctrl-C, the others stop after their current chunk
        finally:
            self._save()
        for future in futures:
            if future.exception() is not None:
                raise future.exception()

    def _worker(self, piece: tuple[int, int] | None = None, response: requests.Response | None = None) -> None:
        """One connection: fetch ranges until none is left, this one gives way, or another failed."""
        try:
            piece = piece or self.schedule.take(self.stop)
            while piece is not None:
                if not self._fetch(piece, response):
                    return
                response = None
                self._save()
                if self.hashing:
                    self._hash_ahead(block=False)
                piece = self.schedule.take(self.stop)
        except _Stopped:
            return
        except BaseException:
            self.stop.set()
            raise
        finally:
            if response is not None:
                response.close()

    def _fetch(self, piece: tuple[int, int], response: requests.Response | None) -> bool:
        """Fetch one range, resuming it where it stopped; False if this connection gave way."""
        start, end = piece
        pos = high_water = start
        wrong = [0]

        def attempt() -> None:
            nonlocal pos, response
            resp, response = response or self._open(pos, end, wrong), None
            with resp, open(self.part, "r+b") as f:
                f.seek(pos)
                for chunk in resp.iter_content(self.chunk_size):
                    if self.stop.is_set():
                        raise _Stopped
                    kept = chunk[: end - pos]
                    f.write(kept)
                    f.flush()  # in the file before the ranges record may say so
                    with self._lock:
                        self.done.add(pos, pos + len(kept))
                        self.bar.update(len(kept))
                    pos += len(kept)
                    if len(kept) < len(chunk):
                        break  # the server sends on past the range (the open-ended first request)
            if pos < end:
                raise _Transient(f"connection closed at byte {pos}, in the range {start}-{end - 1}")

        def grew() -> bool:
            nonlocal high_water
            grew, high_water = pos > high_water, max(pos, high_water)
            return grew

        try:
            _with_retries(
                self.url, attempt, self.retries, made_progress=grew, note=self.note,
                wait=lambda delay, error: self._wait(delay, error, (pos, end)),
            )  # fmt: skip
        except _GiveWay:
            return False
        return True

    def _wait(self, delay: float, error: Exception, remaining: tuple[int, int] | None = None) -> None:
        """Sleep before a retry; on 429/503 one connection fewer, and no new request until the delay is over."""
        if getattr(error, "status", None) not in THROTTLE_STATUSES:
            self.retries.sleep(delay)
            return
        allowed = self.schedule.lower()
        log.warning("%s: HTTP %s: at most %d connection(s) from now on", self.url, error.status, allowed)
        self.schedule.pause(self.retries.sleep, delay)
        if remaining is not None and self.schedule.give_way(remaining):
            raise _GiveWay

    def _save(self) -> None:
        with self._save_lock:
            with self._lock:
                spans = list(self.done.spans)
            _save_ranges(self.ranges, self.total, spans)

    def _hash_ahead(self, block: bool) -> None:
        """md5 the done first bytes not hashed yet, read back from the part file (one thread at a time)."""
        if not self._hash_lock.acquire(blocking=block):
            return
        try:
            with self._lock:
                end = self.done.prefix()
            if end > self.hashed:
                self.hashed += _hash_file(self.part, digest=self.md5, start=self.hashed, end=end)[1]
        finally:
            self._hash_lock.release()


# ----------------------------------------------------------------------------------------------- HTTP


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """(start, end, total): ``"bytes 10-99/100"`` -> (10, 99, 100), ``"bytes */100"`` -> (None, None, 100)."""
    match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None
    start, end, total = match.groups()
    return (int(start) if start else None, int(end) if end else None, None if total == "*" else int(total))


def _check_status(url: str, resp: requests.Response, ok: tuple[int, ...]) -> None:
    """Accept ``ok`` codes, mark 429/5xx as transient, fail at once on anything else."""
    if resp.status_code in ok:
        return
    if resp.status_code in RETRY_STATUSES:
        raise _Transient(f"HTTP {resp.status_code} {resp.reason}", _retry_after(resp), resp.status_code)
    raise DownloadError(
        url,
        f"HTTP {resp.status_code} {resp.reason} from {url}: not retried (only 429 and 5xx "
        f"are); check the URL and access rights.",
    )


def _retry_after(resp: requests.Response) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is ignored (exponential backoff applies)."""
    value = resp.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _with_retries(
    url: str,
    attempt: Callable[[], _T],
    retries: _Retries,
    made_progress: Callable[[], bool] = lambda: False,
    note: str = "",
    wait: Callable[[float, Exception], None] | None = None,
) -> _T:
    """Call ``attempt()`` until it returns, waiting between transient failures.

    The delay is ``backoff * 2**n`` (or the server's Retry-After), capped by
    ``max_backoff``; ``wait(delay, error)`` waits it (default: ``retries.sleep``).
    ``made_progress()`` resets the count of consecutive failures; ``note`` is
    appended to the error raised on giving up.
    """
    failures = 0
    while True:
        try:
            return attempt()
        except _TRANSIENT_ERRORS as exc:
            error = exc
        failures = 1 if made_progress() else failures + 1
        if failures > retries.max_retries:
            raise DownloadError(
                url,
                f"giving up on {url} after {retries.max_retries} retries; last error: {error}. Re-run later.{note}",
            ) from error
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            retry_after = retries.backoff * 2 ** (failures - 1)
        delay = min(retries.max_backoff, retry_after)
        log.warning("%s: %s; retry %d/%d in %.1fs", url, error, failures, retries.max_retries, delay)
        if wait is None:
            retries.sleep(delay)
        else:
            wait(delay, error)


@contextlib.contextmanager
def _session(session: requests.Session | None, connections: int = 1):
    """Use the caller's session, or a private one, pooling ``connections``, that is closed afterwards."""
    if session is not None:
        yield session
        return
    with requests.Session() as own:
        adapter = HTTPAdapter(pool_maxsize=max(connections, DEFAULT_POOLSIZE))
        own.mount("https://", adapter)
        own.mount("http://", adapter)
        yield own


def zenodo_record_files(
    api_url: str,
    session: requests.Session | None = None,
    *,
    max_retries: int = 8,
    backoff: float = 1.0,
    max_backoff: float = 60,
    timeout: float = 60,
) -> dict[str, dict]:
    """``{filename: {"size", "md5", "url"}}`` for a Zenodo record API URL.

    E.g. ``https://zenodo.org/api/records/14038284``.  Accepts both the current
    (``key``/``size``/``checksum: "md5:..."``/``links.self``) and the legacy
    (``filename``/``filesize``/bare md5/``links.download``) file entries.
    """

    with _session(session) as http:

        def fetch() -> dict:
            with http.get(api_url, headers={"Accept": "application/json"}, timeout=timeout) as resp:
                _check_status(api_url, resp, ok=(200,))
                try:
                    return resp.json()
                except ValueError as exc:
                    raise DownloadError(api_url, f"{api_url} did not return JSON: {exc}") from exc

        record = _with_retries(api_url, fetch, _Retries(max_retries, backoff, max_backoff))

    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not files:
        raise DownloadError(
            api_url,
            f"{api_url} lists no files (is it a /api/records/<id> URL, and is the record public and not embargoed?)",
        )
    result = {}
    for entry in files:
        name = entry.get("key") or entry.get("filename")
        size = entry.get("size", entry.get("filesize"))
        links = entry.get("links") or {}
        url = links.get("content") or links.get("download") or links.get("self")
        checksum = entry.get("checksum")
        if not (name and size is not None and url and checksum):
            raise DownloadError(api_url, f"{api_url}: file entry lacks name/size/md5/link: {entry}")
        result[name] = {"size": int(size), "md5": _md5_hex(checksum), "url": url}
    return result
