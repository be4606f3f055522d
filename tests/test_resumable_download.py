"""resumable_download against real loopback HTTP servers that misbehave on purpose."""

import hashlib
import json
import logging
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resumable_download import DownloadError, download, md5sum, verify_file, zenodo_record_files

DATA = random.Random(0).randbytes(300_000)
DATA_MD5 = hashlib.md5(DATA).hexdigest()
OTHER_MD5 = hashlib.md5(b"something else").hexdigest()
FAST = dict(backoff=0.01, progress=False)


class LoopbackServer:
    """HTTP/1.0 server on 127.0.0.1 whose GETs are answered by ``respond(handler, n)``.

    ``n`` is the 0-based number of the request; ``requests`` keeps each request's headers.
    """

    def __init__(self, respond):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                n = len(server.requests)
                server.requests.append(self.headers)
                respond(self, n)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.base + "/files/drums.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        servers.append(LoopbackServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def send(handler, status, body=b"", headers=(), cut=False, length=True):
    """Answer with Content-Length of the whole body; ``cut`` closes after a third of it."""
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 3] if cut else body)


def serve_file(handler, data, *, honour_range=True, cut=False):
    """Serve ``data`` like a static file server, optionally ignoring Range."""
    requested = handler.headers.get("Range")
    if not (honour_range and requested):
        return send(handler, 200, data, cut=cut)
    start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
    if start >= len(data):
        return send(handler, 416, headers=[("Content-Range", f"bytes */{len(data)}")])
    content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
    send(handler, 206, data[start:], headers=[("Content-Range", content_range)], cut=cut)


def ranges(server):
    return [headers.get("Range") for headers in server.requests]


def part_size(path):
    """Bytes the client has written so far, as the server sees them when a request arrives.

    Not simply what the server sent before cutting: urllib3 discards the last,
    incomplete chunk_size read when a body is cut short.
    """
    return path.stat().st_size if path.exists() else 0


def test_resumes_after_mid_body_disconnects(serve, tmp_path):
    dest = tmp_path / "drums.tar.gz"
    written = []

    def respond(handler, n):
        written.append(part_size(tmp_path / "drums.tar.gz.part"))
        serve_file(handler, DATA, cut=n < 2)

    server = serve(respond)
    result = download(server.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5,
                      backoff=0.01, chunk_size=4096)  # fmt: skip  (progress bar on, to stderr)

    assert result == dest and dest.read_bytes() == DATA
    # Each retry asks for exactly the bytes already written: it resumed, never restarted.
    assert ranges(server) == [None] + [f"bytes={size}-" for size in written[1:]]
    assert 0 < written[1] < written[2] < len(DATA)
    assert not (tmp_path / "drums.tar.gz.part").exists()


def test_retry_budget_resets_while_bytes_keep_arriving(serve, tmp_path):
    """Five cuts with max_retries=2 still finish, because every attempt moved the download on."""
    server = serve(lambda h, n: serve_file(h, DATA, cut=n < 5))

    download(server.url, tmp_path / "f", max_retries=2, chunk_size=1024, **FAST)

    assert len(server.requests) == 6 and (tmp_path / "f").read_bytes() == DATA


def test_short_body_without_content_length_is_resumed_when_size_known(serve, tmp_path):
    """An HTTP/1.0 body without Content-Length ends at close; only expected_size reveals a cut."""
    server = serve(lambda h, n: send(h, 200, DATA, cut=n == 0, length=False) if n == 0
                   else serve_file(h, DATA))  # fmt: skip

    download(server.url, tmp_path / "f", expected_size=len(DATA), **FAST)

    assert ranges(server) == [None, f"bytes={len(DATA) // 3}-"]
    assert (tmp_path / "f").read_bytes() == DATA


def test_resumes_after_read_timeout(serve, tmp_path):
    release = threading.Event()

    def respond(handler, n):
        if n == 0:  # headers and 1000 bytes, then silence
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(DATA)))
            handler.end_headers()
            handler.wfile.write(DATA[:1000])
            handler.wfile.flush()
            release.wait(5)
        else:
            written.append(part_size(tmp_path / "f.part"))
            serve_file(handler, DATA)

    written = []
    server = serve(respond)
    try:
        download(server.url, tmp_path / "f", timeout=0.3, chunk_size=500, **FAST)
    finally:
        release.set()
    assert (tmp_path / "f").read_bytes() == DATA
    assert written[0] > 0 and ranges(server) == [None, f"bytes={written[0]}-"]


@pytest.mark.parametrize(
    "retry_after, backoff, max_backoff",
    [("0", 10, 60), ("3600", 0.01, 0.01)],
    ids=["honoured-over-backoff", "capped-by-max_backoff"],
)
def test_429_waits_retry_after(serve, tmp_path, retry_after, backoff, max_backoff):
    server = serve(lambda h, n: send(h, 429, headers=[("Retry-After", retry_after)])
                   if n < 2 else serve_file(h, DATA))  # fmt: skip
    started = time.monotonic()

    download(server.url, tmp_path / "f", backoff=backoff, max_backoff=max_backoff, progress=False)

    assert time.monotonic() - started < 5
    assert (tmp_path / "f").read_bytes() == DATA
    assert len(server.requests) == 3


def test_persistent_503_gives_up_after_max_retries(serve, tmp_path):
    server = serve(lambda h, n: send(h, 503, b"busy"))
    dest = tmp_path / "f"

    with pytest.raises(DownloadError) as info:
        download(server.url, dest, max_retries=3, **FAST)

    assert len(server.requests) == 1 + 3
    assert info.value.url == server.url
    message = str(info.value)
    assert server.url in message and "3 retries" in message and "503" in message
    assert not dest.exists() and not (tmp_path / "f.part").exists()  # nothing was received


def test_part_file_survives_giving_up_and_is_resumed(serve, tmp_path):
    """Documented choice: bytes received before giving up are kept for the next run."""
    broken = serve(lambda h, n: serve_file(h, DATA, cut=True) if n == 0 else send(h, 503))
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match=r"stay in .*f\.part and the next run resumes"):
        download(broken.url, dest, max_retries=2, chunk_size=4096, **FAST)
    assert not dest.exists()
    kept = (tmp_path / "f.part").read_bytes()
    assert kept and DATA.startswith(kept)

    healthy = serve(lambda h, n: serve_file(h, DATA))
    download(healthy.url, dest, expected_md5=DATA_MD5, **FAST)  # md5 covers the kept bytes too

    assert ranges(healthy) == [f"bytes={len(kept)}-"]
    assert dest.read_bytes() == DATA and not (tmp_path / "f.part").exists()


@pytest.mark.parametrize(
    "expected, named",
    [
        ({"expected_md5": "md5:" + OTHER_MD5.upper()}, [OTHER_MD5, DATA_MD5]),
        ({"expected_size": len(DATA) + 1}, [f"{len(DATA) + 1}", f"is {len(DATA)} bytes"]),
    ],
    ids=["md5", "size"],
)
def test_wrong_bytes_raise_and_leave_nothing(serve, tmp_path, expected, named):
    server = serve(lambda h, n: serve_file(h, DATA))

    with pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "f", **expected, **FAST)

    message = str(info.value)
    assert all(value in message for value in named), message
    assert server.url in message and "re-run" in message and "report it upstream" in message
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_server_ignoring_range_restarts_cleanly(serve, tmp_path):
    written = []

    def respond(handler, n):
        written.append(part_size(tmp_path / "f.part"))
        serve_file(handler, DATA, honour_range=False, cut=n == 0)

    server = serve(respond)
    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, chunk_size=4096, **FAST)

    assert written[1] > 0 and ranges(server) == [None, f"bytes={written[1]}-"]  # got a 200 anyway
    assert (tmp_path / "f").read_bytes() == DATA


@pytest.mark.parametrize(
    "part, expected_ranges",
    [(DATA, ["bytes=300000-"]), (DATA + b"stale", ["bytes=300005-", None])],
    ids=["part-already-complete", "part-longer-than-file"],
)
def test_416_completes_or_restarts(serve, tmp_path, part, expected_ranges):
    (tmp_path / "f.part").write_bytes(part)
    server = serve(lambda h, n: serve_file(h, DATA))

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, **FAST)

    assert ranges(server) == expected_ranges
    assert (tmp_path / "f").read_bytes() == DATA and not (tmp_path / "f.part").exists()


def test_206_at_wrong_offset_restarts(serve, tmp_path):
    (tmp_path / "f.part").write_bytes(DATA[:1000])
    whole = [("Content-Range", f"bytes 0-{len(DATA) - 1}/{len(DATA)}")]
    server = serve(lambda h, n: send(h, 206, DATA, whole) if n == 0 else serve_file(h, DATA))

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, **FAST)

    assert ranges(server) == ["bytes=1000-", None]
    assert (tmp_path / "f").read_bytes() == DATA


def test_complete_dest_makes_no_request(serve, tmp_path):
    server = serve(lambda h, n: serve_file(h, DATA))
    dest = tmp_path / "f"
    dest.write_bytes(DATA)

    result = download(server.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5, **FAST)

    assert result == dest
    assert server.requests == []


def test_wrong_dest_is_replaced(serve, tmp_path):
    server = serve(lambda h, n: serve_file(h, DATA))
    dest = tmp_path / "f"
    dest.write_bytes(DATA[:10])

    download(server.url, dest, expected_size=len(DATA), **FAST)

    assert dest.read_bytes() == DATA and len(server.requests) == 1


def test_404_fails_at_once(serve, tmp_path):
    server = serve(lambda h, n: send(h, 404, b"not found"))

    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url, tmp_path / "f", max_retries=8, **FAST)

    assert len(server.requests) == 1 and info.value.url == server.url
    assert not (tmp_path / "f").exists()


def test_authorization_is_sent_but_never_logged(serve, tmp_path, caplog):
    server = serve(lambda h, n: send(h, 503))

    with caplog.at_level(logging.DEBUG), pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "f", max_retries=1,
                 headers={"Authorization": "Bearer s3cret"}, **FAST)  # fmt: skip

    assert server.requests[0]["Authorization"] == "Bearer s3cret"
    assert "retry 1/1" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in str(info.value)


def test_zenodo_record_files_then_download(serve, tmp_path):
    def respond(handler, n):
        if n == 0:
            return send(handler, 502)  # retried like a download
        if handler.path != "/api/records/42":
            return serve_file(handler, DATA)
        record = {
            "id": 42,
            "files": [
                {"key": "drums.tar.gz", "size": len(DATA), "checksum": f"md5:{DATA_MD5}",
                 "links": {"self": f"{server.base}/api/records/42/files/drums.tar.gz/content"}},
                {"filename": "legacy.zip", "filesize": "7", "checksum": OTHER_MD5.upper(),
                 "links": {"download": f"{server.base}/legacy.zip"}},
            ],
        }  # fmt: skip
        send(handler, 200, json.dumps(record).encode(), [("Content-Type", "application/json")])

    server = serve(respond)
    files = zenodo_record_files(server.base + "/api/records/42", backoff=0.01)

    assert files == {
        "drums.tar.gz": {"size": len(DATA), "md5": DATA_MD5,
                         "url": f"{server.base}/api/records/42/files/drums.tar.gz/content"},
        "legacy.zip": {"size": 7, "md5": OTHER_MD5, "url": f"{server.base}/legacy.zip"},
    }  # fmt: skip
    meta = files["drums.tar.gz"]
    dest = download(meta["url"], tmp_path / "drums.tar.gz", expected_size=meta["size"],
                    expected_md5=meta["md5"], **FAST)  # fmt: skip
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("record", [{"files": []}, {"metadata": {}}, [1, 2]])
def test_zenodo_record_without_files_is_a_clear_error(serve, record):
    server = serve(lambda h, n: send(h, 200, json.dumps(record).encode()))

    with pytest.raises(DownloadError, match="lists no files"):
        zenodo_record_files(server.url)


@pytest.mark.parametrize(
    "body, error",
    [
        (b"<html>maintenance</html>", "did not return JSON"),
        (json.dumps({"files": [{"key": "a", "size": 1, "links": {}}]}).encode(), "lacks"),
    ],
)
def test_zenodo_unusable_answer_is_a_clear_error(serve, body, error):
    server = serve(lambda h, n: send(h, 200, body))

    with pytest.raises(DownloadError, match=error):
        zenodo_record_files(server.url)


def test_non_md5_checksum_is_refused_before_any_request(serve, tmp_path):
    server = serve(lambda h, n: serve_file(h, DATA))

    with pytest.raises(ValueError, match="only md5"):
        download(server.url, tmp_path / "f", expected_md5="sha256:" + "0" * 64, **FAST)
    assert server.requests == []


def test_verify_file_reports_every_problem(tmp_path):
    path = tmp_path / "f"
    assert verify_file(path) == [f"{path}: missing"]

    path.write_bytes(DATA)
    assert md5sum(path, chunk_size=4096) == DATA_MD5
    assert verify_file(path, len(DATA), "md5:" + DATA_MD5.upper()) == []
    assert verify_file(path, 1, OTHER_MD5) == [
        f"{path}: size is {len(DATA)} bytes, expected 1",
        f"{path}: md5 is {DATA_MD5}, expected {OTHER_MD5}",
    ]
