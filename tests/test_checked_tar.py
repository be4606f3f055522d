"""checked_tar.CheckedTarGz with each inflater (zlib, isal, rapidgzip): a good archive yields its exact
members, with hashlib's md5 and size; every kind of damage raises ArchiveError naming the archive.

Archives are made here with tarfile and gzip from random and zero-filled members. Damage mirrors
tests/test_reliability.py: truncation, a flipped byte in a stored member that only the gzip CRC can see,
a damaged member header, data after the tar's end, and the wrong published md5 or size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from poprok.archives import checked_tar
from poprok.archives.checked_tar import ArchiveError, CheckedTarGz

NAME = "sample_wav.tar.gz"
ROOT = Path(__file__).resolve().parents[1]  # the checkout, where the poprok package sits


def tar_bytes(members, tar_format=tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of ``members`` ((name, bytes) pairs), with a folder entry first."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        folder = tarfile.TarInfo("loops")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def members() -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    return [
        ("loops/a.wav", rng.randbytes(300_000)),  # incompressible: deflate stores it
        ("loops/empty.txt", b""),
        ("loops/b.wav", bytes(200_000)),
        ("loops/c.wav", rng.randbytes(1_234_567)),
        ("labels.json", b'{"a": [36, 38]}'),
    ]


@pytest.fixture(scope="module")
def tar(members) -> bytes:
    return tar_bytes(members)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def reader(path: Path, inflater, **checks) -> CheckedTarGz:
    return CheckedTarGz(lambda: open(path, "rb"), NAME, inflater=inflater, **checks)


def label(inflater: str) -> str:
    """What ``inflater`` reports for a local file."""
    if inflater == "rapidgzip":
        return f"rapidgzip(parallelization={checked_tar.parallelization()})"
    return inflater


def assert_damage_reported(archive: CheckedTarGz, match: str = "is truncated or corrupt") -> str:
    with pytest.raises(ArchiveError) as raised:
        for _ in archive:
            pass
    message = str(raised.value)
    assert NAME in message and match in message, message
    return message


every_inflater = pytest.mark.parametrize("inflater", checked_tar.INFLATERS)


# ------------------------------------------------------------------------------------------- good archives


@every_inflater
def test_good_archive_yields_every_member_with_md5_and_size(inflater, members, tar, tmp_path):
    archive = gzip.compress(tar, compresslevel=6)
    path = write(tmp_path / NAME, archive)
    checked = reader(path, inflater, md5=True)
    assert list(checked) == members
    assert checked.inflater == label(inflater)
    assert (checked.size, checked.md5) == (len(archive), hashlib.md5(archive).hexdigest())
    assert list(checked) == members  # a second pass opens the archive afresh


@every_inflater
def test_multi_member_gzip_yields_every_member(inflater, members, tar, tmp_path):
    cuts = [0, 1000, len(tar) // 2, len(tar) - 700, len(tar)]  # members that end inside headers and data
    archive = b"".join(gzip.compress(tar[a:b], compresslevel=1) for a, b in zip(cuts, cuts[1:]))
    checked = reader(write(tmp_path / NAME, archive), inflater, expected_md5=hashlib.md5(archive).hexdigest())
    assert list(checked) == members
    assert checked.size == len(archive)


@pytest.mark.parametrize("inflater", ["zlib", "isal"])
def test_zero_padding_between_and_after_gzip_members_is_skipped(inflater, members, tar, tmp_path):
    """As gzip.GzipFile reads them (tape blocking pads gzip output with zeros)."""
    half = len(tar) // 2
    archive = gzip.compress(tar[:half]) + bytes(1000) + gzip.compress(tar[half:]) + bytes(4096)
    checked = reader(write(tmp_path / NAME, archive), inflater, md5=True)
    assert list(checked) == members
    assert (checked.size, checked.md5) == (len(archive), hashlib.md5(archive).hexdigest())


def test_rapidgzip_rejects_zero_padding_rather_than_guess(members, tar, tmp_path):
    """rapidgzip reads no zero padding after a gzip member: an error (the default inflater reads it)."""
    archive = gzip.compress(tar) + bytes(4096)
    assert_damage_reported(reader(write(tmp_path / NAME, archive), "rapidgzip"))


@pytest.fixture(scope="module")
def large_archive(tmp_path_factory) -> tuple[Path, list[tuple[str, bytes]]]:
    """24 MB: rapidgzip inflates its 4 MiB chunks on two threads and reads them out of order."""
    rng = random.Random(3)
    members = [(f"loops/{i:02}.wav", rng.randbytes(2_000_000 + i)) for i in range(12)]
    path = tmp_path_factory.mktemp("large") / NAME
    return write(path, gzip.compress(tar_bytes(members), compresslevel=1)), members


class RecordingBar:
    """Stands in for the tqdm bar: the total it was given and every update."""

    def __init__(self, name, total):
        self.total, self.updates = total, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def update(self, n: int) -> None:
        self.updates.append(n)


@every_inflater
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("pending", [checked_tar._CountingReader.PENDING, 0], ids=["kept", "read-again"])
def test_md5_size_and_progress_count_each_compressed_byte_once(inflater, threads, pending, large_archive, monkeypatch):
    """Whatever order the inflater reads in; with no room to keep bytes read ahead, they are read again."""
    path, members = large_archive
    bars = []
    monkeypatch.setattr(
        checked_tar, "_progress_bar", lambda name, total: bars.append(RecordingBar(name, total)) or bars[-1]
    )
    monkeypatch.setattr(checked_tar._CountingReader, "PENDING", pending)
    data = path.read_bytes()
    checked = reader(
        path,
        inflater,
        expected_md5=hashlib.md5(data).hexdigest(),
        expected_size=len(data),
        total=len(data),
        progress=True,
        threads=threads,
    )
    assert [name for name, _ in checked] == [name for name, _ in members]
    assert checked.size == len(data)
    assert checked.inflater == (f"rapidgzip(parallelization={threads})" if inflater == "rapidgzip" else inflater)
    assert bars[0].total == len(data) and sum(bars[0].updates) == len(data)


# ----------------------------------------------------------------------------------------------------- damage


@every_inflater
@pytest.mark.parametrize("level", [0, 6])
@pytest.mark.parametrize("cut", ["half", "last byte", "gzip trailer and 1", "end of tar zeros"])
def test_truncated_archive_is_an_error(inflater, level, cut, tar, tmp_path):
    archive = gzip.compress(tar, compresslevel=level)
    # 9 bytes: the 8-byte trailer and the last deflate byte; 24: inside the tar's compressed end-of-archive
    # zeros, where rapidgzip alone would stop quietly (rapidgzip issue #71)
    keep = {"half": len(archive) // 2, "last byte": -1, "gzip trailer and 1": -9, "end of tar zeros": -24}[cut]
    path = write(tmp_path / NAME, archive[:keep])
    assert_damage_reported(reader(path, inflater))


@every_inflater
@pytest.mark.parametrize("cut", ["at a member header", "inside a member header", "at the end marker"])
def test_a_tar_cut_short_inside_a_whole_gzip_stream_is_an_error(inflater, cut, members, tar, tmp_path):
    """tarfile takes a missing header for the end of the archive: the end-of-archive marker must be there."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as plain:
        infos = plain.getmembers()
    keep = {
        "at a member header": infos[3].offset,
        "inside a member header": infos[3].offset + 100,
        "at the end marker": infos[-1].offset_data + 512,
    }[cut]
    path = write(tmp_path / NAME, gzip.compress(tar[:keep]))
    message = assert_damage_reported(reader(path, inflater))
    if cut != "inside a member header":  # there, the partial header is data after what tarfile took for the end
        assert "the tar ends without its end-of-archive marker" in message, message


@every_inflater
def test_corruption_only_the_gzip_crc_can_see_is_reported(inflater, members, tar, tmp_path):
    """A flipped byte inside a stored member: the tar headers stay valid, only the CRC-32 differs."""
    archive = bytearray(gzip.compress(tar, compresslevel=0))
    archive[len(archive) // 2] ^= 0xFF  # inside loops/c.wav's samples
    path = write(tmp_path / NAME, bytes(archive))
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as stream:  # the stdlib read sees nothing
        read = [(info.name, stream.extractfile(info).read()) for info in stream if info.isreg()]
    assert [name for name, _ in read] == [name for name, _ in members] and read != members
    message = assert_damage_reported(reader(path, inflater))
    assert re.search("crc|data check", message, re.IGNORECASE), message  # zlib says "incorrect data check"


@every_inflater
def test_damaged_member_header_is_reported(inflater, members, tmp_path):
    """tarfile takes an unreadable header for the end of the archive: the data after it says otherwise."""
    raw = bytearray(tar_bytes(members))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as plain:
        third = [info for info in plain.getmembers() if info.isreg()][2]
    raw[third.offset : third.offset + 100] = b"\xff" * 100
    path = write(tmp_path / NAME, gzip.compress(bytes(raw), compresslevel=1))
    assert_damage_reported(reader(path, inflater), "data after the tar's end marker")


@every_inflater
@pytest.mark.parametrize("where", ["inside the gzip stream", "after the gzip stream"])
def test_data_after_the_tar_end_is_an_error(inflater, where, tar, tmp_path):
    extra = b"more bytes after the archive"
    archive = gzip.compress(tar + extra) if where == "inside the gzip stream" else gzip.compress(tar) + extra
    message = assert_damage_reported(reader(write(tmp_path / NAME, archive), inflater))
    if where == "inside the gzip stream":
        assert "data after the tar's end marker" in message, message


@every_inflater
@pytest.mark.parametrize("wrong", ["md5", "size"])
def test_wrong_published_md5_or_size_is_an_error_and_discards_the_download(inflater, wrong, tar, tmp_path):
    archive = gzip.compress(tar)
    path = write(tmp_path / NAME, archive)
    published = {"expected_md5": hashlib.md5(archive).hexdigest(), "expected_size": len(archive)}
    published["expected_md5" if wrong == "md5" else "expected_size"] = "0" * 32 if wrong == "md5" else len(archive) + 1
    message = assert_damage_reported(
        reader(path, inflater, discard_path=str(path), **published), "the record publishes"
    )
    assert not path.exists() and "was deleted" in message


# ---------------------------------------------------------------------------------------------- inflater choice


class ReadOnly:
    """A stream with nothing but read, as an HTTP body is."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def pipe_of(data: bytes):
    """The read end of a pipe that a thread fills with ``data``."""
    read_fd, write_fd = os.pipe()

    def fill():
        with open(write_fd, "wb") as end:
            end.write(data)

    threading.Thread(target=fill, daemon=True).start()
    return open(read_fd, "rb")


@pytest.mark.parametrize("requested", ["rapidgzip", "auto"])
@pytest.mark.parametrize("source", ["pipe", "read only", "BytesIO"])
def test_streams_that_are_not_local_files_are_inflated_sequentially(requested, source, members, tar):
    archive = gzip.compress(tar)
    opener = {
        "pipe": lambda: pipe_of(archive),
        "read only": lambda: ReadOnly(archive),
        "BytesIO": lambda: io.BytesIO(archive),
    }[source]
    checked = CheckedTarGz(opener, NAME, inflater=requested, md5=True)
    assert list(checked) == members
    assert checked.inflater == "isal"
    assert (checked.size, checked.md5) == (len(archive), hashlib.md5(archive).hexdigest())


def test_a_truncated_stream_is_an_error(tar):
    archive = gzip.compress(tar)
    assert_damage_reported(CheckedTarGz(lambda: ReadOnly(archive[:-24]), NAME))


def test_isal_pass_carried_on_after_its_thread_ended_fails_rather_than_ends_short(tmp_path):
    """ISA-L's reading thread stops with the thread that opened the pass: the rest must not look like the end.

    Members of 1 MiB with their header (ustar) put every 1 MiB block of inflated output on a header, so
    that tarfile alone would take the early stop for the archive's end.
    """
    rng = random.Random(5)
    members = [(f"loops/{i:02}.wav", rng.randbytes((1 << 20) - 512)) for i in range(16)]
    path = write(tmp_path / NAME, gzip.compress(tar_bytes(members, tarfile.USTAR_FORMAT), compresslevel=1))
    passes = iter(reader(path, "isal"))
    opened = threading.Thread(target=lambda: next(passes))
    opened.start()
    opened.join()
    with pytest.raises(ArchiveError, match="is truncated or corrupt"):
        for _ in passes:
            pass


def test_by_default_isal_inflates_local_files_and_streams(tar, tmp_path, monkeypatch):
    monkeypatch.delenv(checked_tar.INFLATER_VARIABLE, raising=False)
    path = write(tmp_path / NAME, gzip.compress(tar))
    for opener in (lambda: open(path, "rb"), lambda: ReadOnly(path.read_bytes())):
        checked = CheckedTarGz(opener, NAME)
        list(checked)
        assert checked.inflater == "isal"


@pytest.mark.parametrize("inflater", checked_tar.INFLATERS)
def test_the_environment_variable_sets_the_default_inflater(inflater, tar, tmp_path, monkeypatch):
    monkeypatch.setenv(checked_tar.INFLATER_VARIABLE, inflater)
    checked = CheckedTarGz(lambda: open(write(tmp_path / NAME, gzip.compress(tar)), "rb"), NAME)
    list(checked)
    assert checked.inflater == label(inflater)
    checked = CheckedTarGz(lambda: open(tmp_path / NAME, "rb"), NAME, inflater="zlib")  # the keyword wins
    list(checked)
    assert checked.inflater == "zlib"


def test_an_unknown_inflater_name_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="inflater is 'gzip': use one of rapidgzip, isal, zlib or auto"):
        CheckedTarGz(io.BytesIO, NAME, inflater="gzip")
    monkeypatch.setenv(checked_tar.INFLATER_VARIABLE, "igzip")
    with pytest.raises(ValueError, match=r"\$POP_ROK_INFLATER is 'igzip'"):
        CheckedTarGz(io.BytesIO, NAME)


def test_without_isal_and_rapidgzip_the_zlib_inflater_reads_and_checks(members, tar, tmp_path):
    """Neither package importable (sys.modules entries set to None): every request falls back to zlib."""
    archive = gzip.compress(tar)
    good, truncated = write(tmp_path / NAME, archive), write(tmp_path / "truncated.tar.gz", archive[:-24])
    script = """
import hashlib, json, sys
sys.modules["isal"] = sys.modules["rapidgzip"] = None
sys.path.insert(0, sys.argv[1])
from poprok.archives.checked_tar import ArchiveError, CheckedTarGz
good, truncated = sys.argv[2:4]
result = {}
for requested in ("auto", "isal", "rapidgzip", "zlib"):
    checked = CheckedTarGz(lambda: open(good, "rb"), "good", inflater=requested, md5=True)
    digests = [[name, hashlib.md5(data).hexdigest()] for name, data in checked]
    result[requested] = digests + [checked.inflater, checked.md5]
try:
    list(CheckedTarGz(lambda: open(truncated, "rb"), "truncated"))
except ArchiveError as err:
    result["truncated"] = str(err)
print(json.dumps(result))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), str(good), str(truncated)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    expected = [[name, hashlib.md5(data).hexdigest()] for name, data in members]
    for requested in ("auto", "isal", "rapidgzip", "zlib"):
        assert result[requested] == expected + ["zlib", hashlib.md5(archive).hexdigest()], requested
    assert "truncated is truncated or corrupt" in result["truncated"]
