"""Read a .tar.gz sequentially, as ``datasets``' ``iter_archive`` does, but checked from end to end.

``iter_archive`` hands the raw stream to ``tarfile`` in stream mode, which never checks the gzip CRC-32 or
length, and takes a damaged member header for the end of the archive: a flipped byte then yields altered
audio, or silently fewer files. Here the stream is inflated by zlib in gzip mode (which checks CRC and
length at the end of each member), anything but zero padding after the tar's end marker is an error, and
the compressed bytes are counted (and hashed, when there is an md5 to check) on the way, so one pass also
checks a published size and md5.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import zlib
from contextlib import ExitStack
from typing import BinaryIO, Callable, ContextManager, Iterator, Optional

READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)  # what a truncated or corrupt .tar.gz raises


READ_SIZE = 1 << 18  # tarfile's stream reads (default 10 KiB): fewer, larger decompress and crc32 calls


class _Gunzip:
    """The decompressed bytes of a gzip stream, inflated 1 MiB of input at a time.

    zlib's gzip mode (wbits 16 + 15) parses each member's header and checks its CRC-32 and length as it
    inflates (zlib.error on a mismatch); input that ends inside a member raises EOFError. As gzip.GzipFile
    does, members that follow are read on and zero padding between or after them is skipped.
    """

    CHUNK = 1 << 20

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
        data = self.raw.read(self.CHUNK)
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


class ArchiveError(Exception):
    """The archive is truncated, corrupt, or not the published file."""


class _CountingReader:
    """Passes the compressed stream through, counting and hashing it."""

    def __init__(self, raw: BinaryIO, progress, md5: bool = True):
        self.raw, self.progress, self.size, self.md5 = raw, progress, 0, hashlib.md5() if md5 else None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.size += len(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.progress is not None:
            self.progress.update(len(data))
        return data


class CheckedTarGz:
    """Re-iterable ``(path, bytes)`` of the regular files of a .tar.gz, opened afresh for each pass.

    ``opener`` returns a context manager giving the compressed byte stream (a local file, or a URL through
    fsspec for streaming). After a complete pass, ``size`` and ``md5`` describe the bytes read; a pass
    that meets damage, or bytes other than ``expected_size``/``expected_md5``, raises ArchiveError naming
    ``name``, after deleting ``discard_path`` (a cached download) so that the next run fetches it again.
    """

    def __init__(
        self,
        opener: Callable[[], ContextManager[BinaryIO]],
        name: str,
        *,
        expected_size: Optional[int] = None,
        expected_md5: Optional[str] = None,
        discard_path: Optional[str] = None,
        total: Optional[int] = None,
        progress: bool = False,
        md5: Optional[bool] = None,
    ):
        self.opener, self.name = opener, name
        self.expected_size, self.expected_md5, self.discard_path = expected_size, expected_md5, discard_path
        self.total, self.progress = total, progress
        # Hashing costs a quarter of the decompression: only when there is an md5 to compare or to report.
        self.want_md5 = expected_md5 is not None if md5 is None else md5
        self.size: Optional[int] = None
        self.md5: Optional[str] = None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        with ExitStack() as stack:
            try:
                raw = stack.enter_context(self.opener())
            except OSError as err:
                raise ArchiveError(f"{self.name} cannot be opened ({type(err).__name__}: {err})") from err
            bar = stack.enter_context(_progress_bar(self.name, self.total)) if self.progress else None
            counted = _CountingReader(raw, bar, self.want_md5)
            try:
                yield from self._members(_Gunzip(counted))
            except READ_ERRORS as err:
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
        with tarfile.open(fileobj=stream, mode="r|", bufsize=READ_SIZE) as tar:
            for info in tar:
                if info.isreg():  # read here, so that damage met while reading is the archive's
                    yield info.name, tar.extractfile(info).read()
                tar.members = []  # stream mode: keep memory flat
        while chunk := stream.read(1 << 20):  # reading to the end makes gzip check CRC and length
            if chunk.strip(b"\0"):
                raise tarfile.ReadError("data after the tar's end marker: a damaged member header ended it early")

    def _fail(self, what: str):
        advice = "delete it and download it again"
        if self.discard_path and os.path.exists(self.discard_path):
            os.remove(self.discard_path)
            advice = f"the downloaded copy {self.discard_path} was deleted: run again to download it afresh"
        raise ArchiveError(f"{self.name} {what}: {advice}")


def _progress_bar(name: str, total: Optional[int]):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"Reading {name}", file=sys.stderr)
