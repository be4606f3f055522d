"""Resumable, verified HTTP downloads of large files.

`datasets` restarts an interrupted download from zero and, for a builder used
directly, checks no checksum.  For multi-gigabyte archives this module instead:

* resumes from a ``<dest>.part`` file with an HTTP ``Range`` request;
* retries connection errors, timeouts, mid-body disconnects and HTTP
  429/500/502/503/504 with exponential backoff (honouring ``Retry-After``);
* checks size and md5 (hashed while writing) before the file appears at its
  final path via an atomic ``os.replace``, so ``dest`` is always complete.

It knows nothing about any particular dataset; ``zenodo_record_files`` only
turns a Zenodo record JSON into the names, sizes, md5s and URLs to pass here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import requests
from tqdm import tqdm

__all__ = ["DownloadError", "download", "md5sum", "verify_file", "zenodo_record_files"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_T = TypeVar("_T")


class DownloadError(Exception):
    """A download that cannot succeed without intervention; ``url`` names what failed."""

    def __init__(self, url: str, message: str):
        super().__init__(message)
        self.url = url


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested delay, if any."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


# What requests raises for refused/reset connections, timeouts (ReadTimeout while
# streaming arrives as ConnectionError) and bodies cut short (ChunkedEncodingError).
_TRANSIENT_ERRORS = (
    _Transient,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks so multi-GB files need no memory."""
    return _hash_file(path, chunk_size)[0].hexdigest()


def _hash_file(path: str | os.PathLike, chunk_size: int = 1 << 20):
    """(md5 object, number of bytes hashed) for the file's current contents."""
    digest, size = hashlib.md5(), 0
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
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
    max_retries: int = 8,
    backoff: float = 1.0,
    max_backoff: float = 60,
    timeout: float = 60,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
) -> Path:
    """Download ``url`` to ``dest_path``, resuming and retrying; return the path.

    An existing ``dest_path`` that matches the expected size/md5 is returned
    without any request.  Otherwise bytes go to ``dest_path + ".part"``, which
    survives failures so the next call resumes from it, except when the
    finished body does not match the expected size/md5: then the part file is
    deleted (resuming would only reproduce the wrong bytes) and DownloadError
    is raised.  ``max_retries`` counts consecutive failed attempts; an attempt
    that added bytes to the part file resets the count, so a long download over
    a flaky link is not abandoned while it is still making headway.
    """
    dest = Path(dest_path)
    expected_md5 = _md5_hex(expected_md5)  # fail on a bad checksum before, not after, 12 GB
    if dest.is_file():
        problems = verify_file(dest, expected_size, expected_md5)
        if not problems:
            return dest
        log.warning("re-downloading %s: %s", url, "; ".join(problems))
    dest.parent.mkdir(parents=True, exist_ok=True)

    request_headers = {**(headers or {}), "Accept-Encoding": "identity"}  # Range needs raw bytes
    with _PartFile(dest, expected_size, progress) as part, _session(session) as http:

        def attempt() -> None:
            _fetch_into(http, url, part, request_headers, timeout, chunk_size, expected_size)

        _with_retries(
            url, attempt, max_retries, backoff, max_backoff, made_progress=part.grew,
            note=f" Bytes received so far stay in {part.path} and the next run resumes from them.",
        )  # fmt: skip

    problems = _compare(part.size, part.md5.hexdigest(), expected_size, expected_md5)
    if problems:
        part.path.unlink()
        raise DownloadError(
            url,
            f"{url}: {'; '.join(problems)}. The server served different bytes than the record "
            f"publishes: re-run to download again, or report it upstream.",
        )
    part.commit()
    return dest


class _PartFile:
    """``<dest>.part`` plus a running md5 of it, kept in step with a progress bar.

    The md5 of bytes already on disk is computed once, when resuming, so retries
    within one call never re-read what was already hashed.
    """

    def __init__(self, dest: Path, total: int | None, progress: bool):
        self.dest = dest
        self.path = dest.with_name(dest.name + ".part")
        self.md5, self.size = _hash_file(self.path) if self.path.is_file() else (hashlib.md5(), 0)
        self._high_water = self.size
        self.bar = tqdm(
            total=total, initial=self.size, unit="B", unit_scale=True, unit_divisor=1024,
            desc=dest.name, file=sys.stderr, disable=not progress,
        )  # fmt: skip

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

    def commit(self) -> None:
        """Make the bytes durable, then atomically move them to ``dest``."""
        with open(self.path, "ab") as f:
            os.fsync(f.fileno())
        os.replace(self.path, self.dest)


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
            total = content_range[1] if content_range else expected_size
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


def _parse_content_range(value: str | None) -> tuple[int | None, int | None] | None:
    """(start, total): ``"bytes 10-99/100"`` -> (10, 100), ``"bytes */100"`` -> (None, 100)."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None
    start, total = match.groups()
    return (int(start) if start else None, None if total == "*" else int(total))


def _check_status(url: str, resp: requests.Response, ok: tuple[int, ...]) -> None:
    """Accept ``ok`` codes, mark 429/5xx as transient, fail at once on anything else."""
    if resp.status_code in ok:
        return
    if resp.status_code in RETRY_STATUSES:
        raise _Transient(f"HTTP {resp.status_code} {resp.reason}", _retry_after(resp))
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
    max_retries: int,
    backoff: float,
    max_backoff: float,
    made_progress: Callable[[], bool] = lambda: False,
    note: str = "",
) -> _T:
    """Call ``attempt()`` until it returns, sleeping between transient failures.

    The delay is ``backoff * 2**n`` (or the server's Retry-After), capped by
    ``max_backoff``.  ``made_progress()`` resets the count of consecutive failures;
    ``note`` is appended to the error raised on giving up.
    """
    failures = 0
    while True:
        try:
            return attempt()
        except _TRANSIENT_ERRORS as exc:
            error = exc
        failures = 1 if made_progress() else failures + 1
        if failures > max_retries:
            raise DownloadError(
                url,
                f"giving up on {url} after {max_retries} retries; last error: {error}. "
                f"Re-run later.{note}",
            ) from error
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            retry_after = backoff * 2 ** (failures - 1)
        delay = min(max_backoff, retry_after)
        log.warning("%s: %s; retry %d/%d in %.1fs", url, error, failures, max_retries, delay)
        time.sleep(delay)


@contextlib.contextmanager
def _session(session: requests.Session | None):
    """Use the caller's session, or a private one that is closed afterwards."""
    if session is not None:
        yield session
    else:
        with requests.Session() as own:
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

        record = _with_retries(api_url, fetch, max_retries, backoff, max_backoff)

    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not files:
        raise DownloadError(
            api_url,
            f"{api_url} lists no files (is it a /api/records/<id> URL, and is the record "
            f"public and not embargoed?)",
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
