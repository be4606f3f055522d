"""Read a .tar.gz sequentially, as ``datasets``' ``iter_archive`` does, but checked from end to end.

``iter_archive`` hands the raw stream to ``tarfile`` in stream mode, which never checks the gzip CRC-32 or
length, and takes a damaged member header for the end of the archive: a flipped byte then yields altered
audio, or silently fewer files. Here every gzip member's CRC-32 and length are checked as it is inflated,
anything but zero padding after the tar's end marker is an error, and the compressed bytes are counted (and
hashed, when there is an md5 to check) on the way, so one pass also checks a published size and md5.

Three inflaters; ``inflater=`` or ``$POP_ROK_INFLATER`` picks one, and by default ISA-L does it:

* ``isal`` (ISA-L) inflates in a thread of its own, on one core, the GIL released: the fastest build on two
  cores, where the rows are written on the other (``benchmarks/bench.py`` times each);
* ``rapidgzip`` inflates one gzip stream on every core: for a regular local file only (it seeks), on a
  machine with cores to spare; it rejects zero padding after a gzip member, which the others skip;
* ``zlib``, the standard library's, when neither package can be imported.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import io
import os
import stat
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import BinaryIO

READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)  # what a truncated or corrupt .tar.gz raises

READ_SIZE = 1 << 18  # tarfile's stream reads (default 10 KiB): fewer, larger decompress and crc32 calls
CHUNK = 1 << 20  # compressed bytes per read
STREAM_CHUNK = 1 << 18  # from a stream arriving over HTTP: less read ahead of the rows

INFLATERS = ("rapidgzip", "isal", "zlib")
AUTO = ("isal", "zlib")  # the default, in order of preference
INFLATER_VARIABLE = "POP_ROK_INFLATER"  # the default of CheckedTarGz(inflater=...): a name of INFLATERS, or "auto"


class ArchiveError(Exception):
    """The archive is truncated, corrupt, or not the published file."""


class _Gunzip:
    """The decompressed bytes of a gzip stream, inflated 1 MiB of input at a time by the standard library.

    zlib's gzip mode (wbits 16 + 15) parses each member's header and checks its CRC-32 and length as it
    inflates (zlib.error on a mismatch); input that ends inside a member raises EOFError. As gzip.GzipFile
    does, members that follow are read on and zero padding between or after them is skipped.
    """

    def __init__(self, raw: BinaryIO):
        self.raw, self.inflate = raw, zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buffer, self.offset, self.ended = b"", 0, False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(1 << 24), b""))
        while len(self.buffer) - self.offset < n and not self.ended:
            self.buffer = self.buffer[self.offset :] + self._inflate()
            self.offset = 0
        data = self.buffer[self.offset : self.offset + n]
        self.offset += len(data)
        return data

    def _inflate(self) -> bytes:
        data = self.raw.read(CHUNK)
        if not data:
            if not self.inflate.eof:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            self.ended = True
            return b""
        out = []
        while data:
            if self.inflate.eof:  # a member ended: zero padding, or the next member
                data = data.lstrip(b"\0")
                if not data:
                    break
                self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(self.inflate.decompress(data))
            data = self.inflate.unused_data if self.inflate.eof else b""
        return b"".join(out)


class _CountingReader(io.RawIOBase):
    """The compressed bytes, counted (and hashed) in file order whatever order the inflater reads them in.

    Sequential inflaters never seek: for them this is a pass-through. rapidgzip seeks, and reads ahead on
    several threads: a byte counts once, when every byte before it has; bytes read ahead wait (up to
    PENDING of them), and ``count_rest`` reads again what was not kept.
    """

    PENDING = 32 << 20

    def __init__(self, raw: BinaryIO, progress, md5: bool):
        super().__init__()
        self.raw, self.progress, self.md5 = raw, progress, hashlib.md5() if md5 else None
        self.size = 0  # bytes counted: a prefix of the file
        self.position = 0  # where the next read starts
        self.pending: list[tuple[int, bytes]] = []  # a heap of (offset, bytes) read beyond the counted prefix
        self.pending_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = self.raw.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        start, self.position = self.position, self.position + len(data)
        if start > self.size:
            if self.pending_bytes + len(data) <= self.PENDING:
                heapq.heappush(self.pending, (start, data))
                self.pending_bytes += len(data)
            return data
        self._count_from(start, data)
        while self.pending and self.pending[0][0] <= self.size:
            start, piece = heapq.heappop(self.pending)
            self.pending_bytes -= len(piece)
            self._count_from(start, piece)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _count_from(self, start: int, data: bytes) -> None:
        """Counts what ``data``, read at ``start`` (at or before the counted prefix's end), adds to the prefix."""
        if start + len(data) > self.size:
            self._count(memoryview(data)[self.size - start :] if start < self.size else data)

    def _count(self, data) -> None:
        self.size += len(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.progress is not None:
            self.progress.update(len(data))

    def count_rest(self) -> int:
        """Reads to the end of the file what has not counted yet; how many bytes that was."""
        before = self.size
        if self.position != self.size:
            self.seek(self.size)
        while self.read(CHUNK):
            pass
        return self.size - before


class _HandedOut:
    """The inflated stream as tarfile reads it, keeping the last bytes handed out: tarfile reads ahead (up to
    READ_SIZE), and what it read past its end-of-archive marker must be checked too."""

    KEEP = READ_SIZE + tarfile.BLOCKSIZE

    def __init__(self, stream):
        self.stream, self.position = stream, 0
        self.kept: collections.deque[bytes] = collections.deque()
        self.kept_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.position += len(data)
        self.kept.append(data)
        self.kept_bytes += len(data)
        while self.kept_bytes - len(self.kept[0]) >= self.KEEP:
            self.kept_bytes -= len(self.kept.popleft())
        return data

    def since(self, offset: int) -> bytes:
        """What was handed out from ``offset`` on, which is at most KEEP bytes before the end of it."""
        held = b"".join(self.kept)
        return held[len(held) - (self.position - offset) :]


def local_file(raw) -> bool:
    """Whether ``raw`` is a regular file on this machine, which rapidgzip may read from several threads."""
    try:
        return stat.S_ISREG(os.fstat(raw.fileno()).st_mode) and raw.seekable()
    except (AttributeError, OSError, ValueError):  # no fileno: an HTTP stream, a BytesIO, a wrapper
        return False


def available(name: str) -> bool:
    """Whether inflater ``name``'s package can be imported (zlib always can)."""
    try:
        __import__({"isal": "isal.igzip_threaded"}.get(name, name))
    except ImportError:
        return False
    return True


def requested_inflater(inflater: str | None) -> str:
    """``inflater``, or else $POP_ROK_INFLATER, or else "auto"; ValueError for a name not in INFLATERS."""
    name = inflater or os.environ.get(INFLATER_VARIABLE) or "auto"
    if name not in (*INFLATERS, "auto"):
        source = "inflater" if inflater else f"${INFLATER_VARIABLE}"
        raise ValueError(f"{source} is {name!r}: use one of {', '.join(INFLATERS)} or auto")
    return name


def parallelization() -> int:
    """The cores this process may run on: rapidgzip's threads unless told otherwise."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_inflater(requested: str, local: bool) -> str:
    """``requested`` when it can be imported and, for rapidgzip, the input is a local file (a stream stays
    sequential); else the first importable of AUTO."""
    for name in AUTO if requested == "auto" else (requested, *AUTO):
        if (name != "rapidgzip" or local) and available(name):
            return name
    return "zlib"


@contextmanager
def _inflated(name: str, threads: int, counted: _CountingReader, chunk: int):
    """The decompressed stream of ``counted`` through inflater ``name``, reading ``chunk`` bytes at a time."""
    if name == "rapidgzip":
        import rapidgzip

        with rapidgzip.open(counted, parallelization=threads) as stream:
            yield stream
            inflated = stream.tell_compressed() // 8  # in bits
        counted.count_rest()  # after rapidgzip's threads are gone: the bytes it read out of order
        if inflated != counted.size:  # it stops quietly where a truncated deflate stream ends (its issue #71)
            raise EOFError(f"compressed file ended before the end-of-stream marker was reached (at byte {inflated:,})")
    elif name == "isal":
        from isal import igzip_threaded

        # Its thread reads 8 blocks of compressed input ahead: a stream keeps that small, so the first rows
        # arrive after a few MB, not tens.
        with igzip_threaded.open(counted, "rb", threads=1, block_size=chunk) as stream:
            yield stream
    else:
        yield _Gunzip(counted)


def inflater_errors(name: str) -> tuple:
    """What inflater ``name`` raises on damage, besides READ_ERRORS."""
    if name == "rapidgzip":
        return (ValueError, RuntimeError)
    if name == "isal":
        from isal import isal_zlib

        return (isal_zlib.error,)
    return ()


class CheckedTarGz:
    """Re-iterable ``(path, bytes)`` of the regular files of a .tar.gz, opened afresh for each pass.

    ``opener`` returns a context manager giving the compressed byte stream (a local file, or a URL through
    fsspec for streaming). After a complete pass, ``size`` and ``md5`` describe the bytes read; a pass
    that meets damage, or bytes other than ``expected_size``/``expected_md5``, raises ArchiveError naming
    ``name``, after deleting ``discard_path`` (a cached download) so that the next run fetches it again.
    ``inflater`` ("rapidgzip", "isal", "zlib" or "auto"; default $POP_ROK_INFLATER, else "auto") is a
    preference: rapidgzip reads a regular local file only, and a package that cannot be imported gives way
    to isal, then zlib; ``threads`` are rapidgzip's (default: every core). ``inflater`` then says which
    inflated the current or last pass, e.g. "isal" or "rapidgzip(parallelization=2)".
    """

    def __init__(
        self,
        opener: Callable[[], AbstractContextManager[BinaryIO]],
        name: str,
        *,
        expected_size: int | None = None,
        expected_md5: str | None = None,
        discard_path: str | None = None,
        total: int | None = None,
        progress: bool = False,
        md5: bool | None = None,
        inflater: str | None = None,
        threads: int | None = None,
    ):
        self.opener, self.name = opener, name
        self.expected_size, self.expected_md5, self.discard_path = expected_size, expected_md5, discard_path
        self.total, self.progress = total, progress
        # Hashing costs a quarter of the decompression: only when there is an md5 to compare or to report.
        self.want_md5 = expected_md5 is not None if md5 is None else md5
        self.requested, self.threads = requested_inflater(inflater), threads
        self.inflater: str | None = None
        self.size: int | None = None
        self.md5: str | None = None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        with ExitStack() as stack:
            try:
                raw = stack.enter_context(self.opener())
            except OSError as err:
                raise ArchiveError(f"{self.name} cannot be opened ({type(err).__name__}: {err})") from err
            bar = stack.enter_context(_progress_bar(self.name, self.total)) if self.progress else None
            counted = _CountingReader(raw, bar, self.want_md5)
            local = local_file(raw)
            name = choose_inflater(self.requested, local)
            threads = (self.threads or parallelization()) if name == "rapidgzip" else 1
            self.inflater = f"rapidgzip(parallelization={threads})" if name == "rapidgzip" else name
            try:
                with _inflated(name, threads, counted, CHUNK if local else STREAM_CHUNK) as stream:
                    yield from self._members(stream)
            except READ_ERRORS + inflater_errors(name) as err:
                self._fail(f"is truncated or corrupt ({type(err).__name__}: {err})")
        self.size, self.md5 = counted.size, counted.md5.hexdigest() if counted.md5 is not None else None
        expected = (self.expected_size or self.size, self.expected_md5 or self.md5)
        if (self.size, self.md5) != expected:
            self._fail(
                f"is {self.size:,} bytes with md5 {self.md5}, the record publishes {expected[0]:,} bytes with md5 "
                f"{expected[1]}"
            )

    @staticmethod
    def _members(stream) -> Iterator[tuple[str, bytes]]:
        handed = _HandedOut(stream)
        with tarfile.open(fileobj=handed, mode="r|", bufsize=READ_SIZE) as tar:
            for info in tar:
                if info.isreg():  # read here, so that damage met while reading is the archive's
                    yield info.name, tar.extractfile(info).read()
                tar.members = []  # stream mode: keep memory flat
            end = tar.offset  # the block tarfile took for the end-of-archive marker
        # That block, what tarfile read past it, and the rest (reading to the end makes gzip check CRC and length)
        chunk, after = handed.since(end), 0
        while chunk:
            if chunk.strip(b"\0"):
                raise tarfile.ReadError("data after the tar's end marker: a damaged member header ended it early")
            after += len(chunk)
            chunk = stream.read(CHUNK)
        if after < tarfile.BLOCKSIZE:
            raise tarfile.ReadError("the tar ends without its end-of-archive marker")

    def _fail(self, what: str):
        advice = "delete it and download it again"
        if self.discard_path and os.path.exists(self.discard_path):
            os.remove(self.discard_path)
            advice = f"the downloaded copy {self.discard_path} was deleted: run again to download it afresh"
        raise ArchiveError(f"{self.name} {what}: {advice}")


def _progress_bar(name: str, total: int | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"Reading {name}", file=sys.stderr)
