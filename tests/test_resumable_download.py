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
from file_server import FileServer

from poprok.archives.download import DownloadError, download, md5sum, verify_file, zenodo_record_files

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


def send(handler, status, body=b"", headers=(), cut=False, length=True, hold=None, before_last=None):
    """Answer with Content-Length of the whole body; ``cut`` closes after a third of it.

    ``hold()`` runs once the headers are out, ``before_last()`` before the body's last byte (when the
    client cannot have the whole answer yet). A client that hangs up early is no error.
    """
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    payload = body[: len(body) // 3] if cut else body
    try:
        handler.wfile.flush()
        if hold:
            hold()
        handler.wfile.write(payload[:-1])
        if before_last:
            before_last()
        handler.wfile.write(payload[-1:])
    except (BrokenPipeError, ConnectionResetError):
        pass


def asked(headers, size):
    """(start, end) the request's Range asks for, end exclusive (the whole file without one)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("Range") or "bytes=0-")
    return int(match[1]), min(int(match[2]) + 1, size) if match[2] else size


def serve_file(handler, data, *, honour_range=True, cut=False, total=None, **options):
    """Serve ``data`` like a static file server, optionally ignoring Range or (``total="*"``) its size."""
    if not (honour_range and handler.headers.get("Range")):
        return send(handler, 200, data, cut=cut, **options)
    start, end = asked(handler.headers, len(data))
    if start >= len(data):
        return send(handler, 416, headers=[("Content-Range", f"bytes */{len(data)}")])
    content_range = f"bytes {start}-{end - 1}/{len(data) if total is None else total}"
    send(handler, 206, data[start:end], headers=[("Content-Range", content_range)], cut=cut, **options)


def ranges(server):
    return [headers.get("Range") for headers in server.requests]


def spans(server, size=None):
    return [asked(headers, len(DATA) if size is None else size) for headers in server.requests]


def assert_tiles(requested, start, end):
    """The requested spans cover start..end once each, no byte twice."""
    at = start
    for a, b in sorted(requested):
        assert a == at and b > a, sorted(requested)
        at = b
    assert at == end, sorted(requested)


def gaps(done, size):
    """The byte spans a ranges record says are missing."""
    missing, at = [], 0
    for a, b in [*done, (size, size)]:
        if a > at:
            missing.append((at, a))
        at = b
    return missing


def part_size(path):
    """Bytes the client has written so far, as the server sees them when a request arrives.

    Not simply what the server sent before cutting: urllib3 discards the last,
    incomplete chunk_size read when a body is cut short.
    """
    return path.stat().st_size if path.exists() else 0


@pytest.fixture(params=[1, 4], ids=["1-connection", "4-connections"])
def connections(request):
    return request.param


def test_resumes_after_mid_body_disconnects(serve, tmp_path):
    dest = tmp_path / "drums.tar.gz"
    written = []

    def respond(handler, n):
        written.append(part_size(tmp_path / "drums.tar.gz.part"))
        serve_file(handler, DATA, cut=n < 2)

    server = serve(respond)
    result = download(
        server.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5, backoff=0.01, chunk_size=4096, connections=1
    )  # fmt: skip  (progress bar on, to stderr)

    assert result == dest and dest.read_bytes() == DATA
    # Each retry asks for exactly the bytes already written: it resumed, never restarted.
    assert ranges(server) == [None] + [f"bytes={size}-" for size in written[1:]]
    assert 0 < written[1] < written[2] < len(DATA)
    assert not (tmp_path / "drums.tar.gz.part").exists()


def test_retry_budget_resets_while_bytes_keep_arriving(serve, tmp_path):
    """Five cuts with max_retries=2 still finish, because every attempt moved the download on."""
    server = serve(lambda h, n: serve_file(h, DATA, cut=n < 5))

    download(server.url, tmp_path / "f", max_retries=2, chunk_size=1024, connections=1, **FAST)

    assert len(server.requests) == 6 and (tmp_path / "f").read_bytes() == DATA


def test_short_body_without_content_length_is_resumed_when_size_known(serve, tmp_path):
    """An HTTP/1.0 body without Content-Length ends at close; only expected_size reveals a cut."""
    server = serve(lambda h, n: send(h, 200, DATA, cut=n == 0, length=False) if n == 0
                   else serve_file(h, DATA))  # fmt: skip

    download(server.url, tmp_path / "f", expected_size=len(DATA), connections=1, **FAST)

    assert ranges(server) == [None, f"bytes={len(DATA) // 3}-"]
    assert (tmp_path / "f").read_bytes() == DATA


def test_resumes_after_read_timeout(serve, tmp_path):
    """A body that stalls is resumed after the read timeout, however long the machine takes to notice."""
    release = threading.Event()

    def respond(handler, n):
        if n == 0:  # headers and 1000 bytes, then silence until the client has moved on
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(DATA)))
            handler.end_headers()
            handler.wfile.write(DATA[:1000])
            handler.wfile.flush()
            release.wait()
        else:
            written.append(part_size(tmp_path / "f.part"))
            serve_file(handler, DATA)

    written = []
    server = serve(respond)
    try:
        download(server.url, tmp_path / "f", timeout=0.3, chunk_size=500, connections=1, max_retries=100, **FAST)
    finally:
        release.set()
    assert (tmp_path / "f").read_bytes() == DATA
    # Each retry (more than one if a loaded machine stalls a later answer too) resumes at the bytes written.
    assert 0 < written[0] <= 1000
    assert ranges(server) == [None] + [f"bytes={size}-" for size in written]


@pytest.mark.parametrize(
    "retry_after, backoff, max_backoff, waits",
    [("0", 10, 60, [0, 0]), ("3600", 0.01, 0.01, [0.01, 0.01])],
    ids=["honoured-over-backoff", "capped-by-max_backoff"],
)
def test_429_waits_retry_after(serve, tmp_path, connections, retry_after, backoff, max_backoff, waits):
    server = serve(lambda h, n: send(h, 429, headers=[("Retry-After", retry_after)])
                   if n < 2 else serve_file(h, DATA))  # fmt: skip
    waited = []

    download(server.url, tmp_path / "f", backoff=backoff, max_backoff=max_backoff, progress=False,
             connections=connections, sleep=waited.append)  # fmt: skip

    assert waited == waits
    assert (tmp_path / "f").read_bytes() == DATA
    assert ranges(server)[:3] == [ranges(server)[0]] * 3  # the refused request, asked again twice


def test_persistent_503_gives_up_after_max_retries(serve, tmp_path, connections):
    server = serve(lambda h, n: send(h, 503, b"busy"))
    dest = tmp_path / "f"

    with pytest.raises(DownloadError) as info:
        download(server.url, dest, max_retries=3, connections=connections, **FAST)

    assert len(server.requests) == 1 + 3
    assert info.value.url == server.url
    message = str(info.value)
    assert server.url in message and "3 retries" in message and "503" in message
    assert not dest.exists() and not (tmp_path / "f.part").exists()  # nothing was received


def test_part_file_survives_giving_up_and_is_resumed(serve, tmp_path, connections):
    """Documented choice: bytes received before giving up are kept for the next run, with any connections."""
    broken = serve(lambda h, n: serve_file(h, DATA, cut=True) if n == 0 else send(h, 503))
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match=r"stay in .*f\.part and the next run resumes"):
        download(broken.url, dest, max_retries=2, chunk_size=4096, connections=1, **FAST)
    assert not dest.exists()
    kept = (tmp_path / "f.part").read_bytes()
    assert kept and DATA.startswith(kept)

    healthy = serve(lambda h, n: serve_file(h, DATA))
    download(healthy.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5,  # md5 covers the kept bytes too
             connections=connections, **FAST)  # fmt: skip

    if connections == 1:
        assert ranges(healthy) == [f"bytes={len(kept)}-"]
    else:
        assert_tiles(spans(healthy), len(kept), len(DATA))
    assert dest.read_bytes() == DATA and not (tmp_path / "f.part").exists()


@pytest.mark.parametrize(
    "expected, named, connections",
    [
        ({"expected_md5": "md5:" + OTHER_MD5.upper()}, [OTHER_MD5, DATA_MD5], 1),
        ({"expected_size": len(DATA) + 1}, [f"{len(DATA) + 1}", f"is {len(DATA)} bytes"], 1),
        ({"expected_size": len(DATA) + 1}, [f"{len(DATA) + 1}", f"is {len(DATA)} bytes"], 4),
    ],
    ids=["md5", "size", "size-seen-in-the-first-range"],
)
def test_wrong_bytes_raise_and_leave_nothing(serve, tmp_path, expected, named, connections):
    """Over several connections an md5 mismatch costs one restart first: test_md5_mismatch_after_ranges."""
    server = serve(lambda h, n: serve_file(h, DATA))

    with pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "f", connections=connections, **expected, **FAST)

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
    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, chunk_size=4096, connections=1, **FAST)

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

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, connections=1, **FAST)

    assert ranges(server) == expected_ranges
    assert (tmp_path / "f").read_bytes() == DATA and not (tmp_path / "f.part").exists()


def test_206_at_wrong_offset_restarts(serve, tmp_path):
    (tmp_path / "f.part").write_bytes(DATA[:1000])
    whole = [("Content-Range", f"bytes 0-{len(DATA) - 1}/{len(DATA)}")]
    server = serve(lambda h, n: send(h, 206, DATA, whole) if n == 0 else serve_file(h, DATA))

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, connections=1, **FAST)

    assert ranges(server) == ["bytes=1000-", None]
    assert (tmp_path / "f").read_bytes() == DATA


def test_complete_dest_makes_no_request(serve, tmp_path):
    server = serve(lambda h, n: serve_file(h, DATA))
    dest = tmp_path / "f"
    dest.write_bytes(DATA)

    result = download(server.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5, **FAST)

    assert result == dest
    assert server.requests == []


def test_wrong_dest_is_replaced(serve, tmp_path, connections):
    server = serve(lambda h, n: serve_file(h, DATA))
    dest = tmp_path / "f"
    dest.write_bytes(DATA[:10])

    download(server.url, dest, expected_size=len(DATA), connections=connections, **FAST)

    assert dest.read_bytes() == DATA
    assert_tiles(spans(server), 0, len(DATA))


def test_404_fails_at_once(serve, tmp_path, connections):
    server = serve(lambda h, n: send(h, 404, b"not found"))

    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url, tmp_path / "f", max_retries=8, connections=connections, **FAST)

    assert len(server.requests) == 1 and info.value.url == server.url
    assert not (tmp_path / "f").exists()


def test_authorization_is_sent_but_never_logged(serve, tmp_path, caplog, connections):
    server = serve(lambda h, n: send(h, 503))

    with caplog.at_level(logging.DEBUG), pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "f", max_retries=1, connections=connections,
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


# ------------------------------------------------------------------------------------ several connections


def test_ranges_are_fetched_at_once_and_reassembled(serve, tmp_path):
    """Four requests are open at the same time (the server holds them until all four have arrived)."""
    together = threading.Barrier(4)

    def respond(handler, n):
        serve_file(handler, DATA, hold=(lambda: together.wait(timeout=60)) if n < 4 else None)

    server = serve(respond)
    download(server.url, tmp_path / "f", expected_size=len(DATA), expected_md5=DATA_MD5, connections=4, **FAST)

    assert not together.broken, "fewer than four ranges were fetched at once"
    assert (tmp_path / "f").read_bytes() == DATA
    assert len(server.requests) > 4
    assert_tiles(spans(server), 0, len(DATA))  # each byte asked for once
    assert sorted(tmp_path.iterdir()) == [tmp_path / "f"]  # no part file, no ranges record


@pytest.mark.parametrize("connections", [2, 4])
def test_ranges_over_a_keep_alive_file_server(tmp_path, connections):
    """HTTP/1.1 connections are reused from range to range (download.py's keep-alive claim), no byte sent twice."""
    data = DATA * 4  # 1.2 MB: about 20 ranges for the few connections
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "drums.tar.gz").write_bytes(data)
    with FileServer(tmp_path / "served") as server:
        download(f"{server.url}/drums.tar.gz", tmp_path / "f", expected_size=len(data),
                 expected_md5=hashlib.md5(data).hexdigest(), connections=connections, **FAST)  # fmt: skip

    assert (tmp_path / "f").read_bytes() == data
    assert server.bytes_sent["drums.tar.gz"] == len(data)
    assert_tiles([asked(headers, len(data)) for _, _, headers in server.requests], 0, len(data))
    # Several times more requests than connections, yet no more TCP connections than asked for: each was kept alive.
    assert len(server.requests) >= 3 * connections, server.requests
    assert 1 <= server.connections <= connections, f"{server.connections} TCP connections for {len(server.requests)}"
    assert sum(sends.requests for sends in server.sends.values()) == len(server.requests)


@pytest.mark.parametrize("connections", [1, 3])
def test_file_server_caps_each_connection_at_its_rate(tmp_path, connections):
    """The cap the benchmark's download_speedup rests on: no connection is ever sent bytes faster than the rate.

    Bytes and seconds are the server's own (its monotonic clock, from an answer's first body byte to its last),
    so the bound holds whatever the machine's load: load can only make a connection slower.
    """
    rate = 4e6  # bytes/s per connection: 1.2 MB takes at least 0.3 s over one connection, 0.1 s over three
    data = random.Random(1).randbytes(1_200_000)
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "drums.tar.gz").write_bytes(data)
    with FileServer(tmp_path / "served", chunk_size=16 * 1024, rate_per_connection=rate) as server:
        started = time.monotonic()
        download(f"{server.url}/drums.tar.gz", tmp_path / "f", expected_size=len(data),
                 expected_md5=hashlib.md5(data).hexdigest(), connections=connections, **FAST)  # fmt: skip
        elapsed = time.monotonic() - started

    assert (tmp_path / "f").read_bytes() == data
    sends = [sends for sends in server.sends.values() if sends.bytes]
    assert sum(s.bytes for s in sends) == len(data) and 1 <= len(sends) <= connections, server.sends
    for number, connection in server.sends.items():
        if connection.bytes:  # bytes / the seconds they took: at most the rate (1e-9: float rounding)
            assert connection.bytes / connection.seconds <= rate * (1 + 1e-9), (number, connection)
    # The whole download therefore takes at least the bytes over the rate of the connections that carried them.
    assert elapsed >= len(data) / (rate * len(sends)), (elapsed, server.sends)


def test_size_is_learnt_from_the_first_range(serve, tmp_path):
    """Without expected_size the first request asks for everything; its answer gives the size to split."""
    server = serve(lambda h, n: serve_file(h, DATA))

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, connections=4, **FAST)

    assert ranges(server)[0] == "bytes=0-"
    rest = spans(server)[1:]
    assert rest
    assert_tiles([(0, min(start for start, _ in rest)), *rest], 0, len(DATA))
    assert (tmp_path / "f").read_bytes() == DATA


def test_a_cut_range_resumes_alone(serve, tmp_path):
    cut = []

    def respond(handler, n):
        if n == 2:
            cut.append(asked(handler.headers, len(DATA)))
        serve_file(handler, DATA, cut=n == 2)

    server = serve(respond)
    download(server.url, tmp_path / "f", expected_size=len(DATA), expected_md5=DATA_MD5, chunk_size=4096,
             connections=4, **FAST)  # fmt: skip

    assert (tmp_path / "f").read_bytes() == DATA
    [(start, end)] = cut
    requested = spans(server)
    [resumed] = [span for span in requested if span[1] == end and span != (start, end)]
    assert start < resumed[0] <= start + (end - start) // 3  # from the bytes it had, to the range's end
    requested.remove(resumed)
    assert_tiles(requested, 0, len(DATA))  # every other range asked for once


def test_retry_after_closes_connections_instead_of_hammering(serve, tmp_path, caplog):
    """Three 429s take four connections down to one: from the third on, one request at a time."""
    data = random.Random(1).randbytes(4 << 20)  # 16 ranges, most of them fetched after the 429s
    lock = threading.Lock()
    state = {"open": 0, "throttled": 0}
    open_at_arrival = []

    def answered():
        with lock:
            state["open"] -= 1

    def respond(handler, n):
        with lock:
            state["open"] += 1
            if state["throttled"] == 3:
                open_at_arrival.append(state["open"])
            if 1 <= n <= 3:
                state["open"] -= 1  # before the answer: the client cannot have it yet
                state["throttled"] += 1
        if 1 <= n <= 3:
            return send(handler, 429, headers=[("Retry-After", "7")])
        serve_file(handler, data, before_last=answered)

    server = serve(respond)
    waited = []
    download(server.url, tmp_path / "f", expected_size=len(data), expected_md5=hashlib.md5(data).hexdigest(),
             connections=4, progress=False, sleep=waited.append)  # fmt: skip

    assert (tmp_path / "f").read_bytes() == data
    assert waited == [7, 7, 7]
    assert len(open_at_arrival) > 4 and set(open_at_arrival) == {1}, open_at_arrival
    assert "at most 1 connection(s) from now on" in caplog.text


@pytest.mark.parametrize("how", ["ignores-range", "size-unknown"])
def test_server_without_ranges_gets_one_connection(serve, tmp_path, how):
    server = serve(lambda h, n: serve_file(h, DATA, honour_range=how != "ignores-range",
                                           total="*" if how == "size-unknown" else None))  # fmt: skip

    download(server.url, tmp_path / "f", expected_md5=DATA_MD5, connections=4, **FAST)

    assert ranges(server) == ["bytes=0-", None]  # the first answer shows it; then one plain GET
    assert (tmp_path / "f").read_bytes() == DATA


def wrong_answer(handler, how):
    """206 for other bytes than asked: from the next byte on, or one byte short."""
    start, end = asked(handler.headers, len(DATA))
    first = start + 1 if how == "offset" else start
    body = DATA[first:end] if how == "offset" else DATA[start : end - 1]
    send(handler, 206, body, [("Content-Range", f"bytes {first}-{end - 1}/{len(DATA)}")])


@pytest.mark.parametrize("how", ["offset", "length"])
def test_wrong_bytes_for_a_range_are_asked_again_once(serve, tmp_path, how):
    victim = []

    def respond(handler, n):
        if n == 2 and not victim:
            victim.append(asked(handler.headers, len(DATA)))
            return wrong_answer(handler, how)
        serve_file(handler, DATA)

    server = serve(respond)
    download(server.url, tmp_path / "f", expected_size=len(DATA), expected_md5=DATA_MD5, connections=4, **FAST)

    assert (tmp_path / "f").read_bytes() == DATA
    requested = spans(server)
    assert requested.count(victim[0]) == 2
    requested.remove(victim[0])
    assert_tiles(requested, 0, len(DATA))


@pytest.mark.parametrize("how", ["offset", "length"])
def test_wrong_bytes_for_a_range_twice_is_an_error(serve, tmp_path, how):
    victim = []

    def respond(handler, n):
        if n == 2:
            victim.append(asked(handler.headers, len(DATA)))
        if victim and asked(handler.headers, len(DATA)) == victim[0]:
            return wrong_answer(handler, how)
        serve_file(handler, DATA)

    server = serve(respond)
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match="with other bytes twice") as info:
        download(server.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5, connections=4, **FAST)

    start, end = victim[0]
    assert f"bytes={start}-{end - 1}" in str(info.value) and server.url in str(info.value)
    assert spans(server).count(victim[0]) == 2 and not dest.exists()
    # Nothing of the wrong answers was written: a healthy server completes the kept part file.
    healthy = serve(lambda h, n: serve_file(h, DATA))
    download(healthy.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5, connections=4, **FAST)
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("persistent", [False, True], ids=["bad-once", "bad-always"])
def test_md5_mismatch_after_ranges_restarts_once(serve, tmp_path, persistent):
    """Bytes only the md5 can catch: one clean restart, then DownloadError with nothing left behind."""
    flipped = bytes([DATA[0] ^ 1]) + DATA[1:]
    expected_md5 = OTHER_MD5 if persistent else DATA_MD5
    server = serve(lambda h, n: serve_file(h, flipped if n == 0 else DATA))
    dest = tmp_path / "f"

    if persistent:
        with pytest.raises(DownloadError, match="report it upstream") as info:
            download(server.url, dest, expected_size=len(DATA), expected_md5=expected_md5, connections=4, **FAST)
        assert OTHER_MD5 in str(info.value) and DATA_MD5 in str(info.value)
        assert list(tmp_path.iterdir()) == []
    else:
        download(server.url, dest, expected_size=len(DATA), expected_md5=expected_md5, connections=4, **FAST)
        assert dest.read_bytes() == DATA
    requested = spans(server)  # every range twice: the first pass, then the restart from zero
    half = len(requested) // 2
    assert_tiles(requested[:half], 0, len(DATA))
    assert_tiles(requested[half:], 0, len(DATA))


@pytest.mark.parametrize("second_connections", [4, 1])
def test_resume_across_two_runs(serve, tmp_path, second_connections):
    """A run that gives up leaves the part file and its ranges record; the next fetches only the holes."""
    broken = serve(lambda h, n: serve_file(h, DATA, cut=n == 2))
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match="stay in"):
        download(broken.url, dest, expected_size=len(DATA), max_retries=0, chunk_size=4096, connections=4, **FAST)
    record = json.loads((tmp_path / "f.part.ranges").read_text())
    assert record["size"] == len(DATA)
    missing = gaps(record["done"], len(DATA))
    assert missing and sum(end - start for start, end in missing) < len(DATA)

    healthy = serve(lambda h, n: serve_file(h, DATA))
    download(healthy.url, dest, expected_size=len(DATA), expected_md5=DATA_MD5,
             connections=second_connections, **FAST)  # fmt: skip

    assert dest.read_bytes() == DATA
    assert sorted(tmp_path.iterdir()) == [dest]
    if second_connections == 1:  # one connection resumes after the first bytes that are done
        done = record["done"]
        prefix = done[0][1] if done and done[0][0] == 0 else 0
        assert ranges(healthy) == [f"bytes={prefix}-" if prefix else None]
    else:
        requested = sorted(spans(healthy))
        for start, end in missing:  # each hole is asked for in ranges that tile it, and nothing else
            assert_tiles([span for span in requested if start <= span[0] < end], start, end)
        assert sum(end - start for start, end in requested) == sum(end - start for start, end in missing)


def test_unreadable_ranges_record_starts_from_zero(serve, tmp_path):
    (tmp_path / "f.part").write_bytes(b"\0" * 1000)
    (tmp_path / "f.part.ranges").write_text("{not json")
    server = serve(lambda h, n: serve_file(h, DATA))

    download(server.url, tmp_path / "f", expected_size=len(DATA), expected_md5=DATA_MD5, connections=4, **FAST)

    assert (tmp_path / "f").read_bytes() == DATA
    assert_tiles(spans(server), 0, len(DATA))


@pytest.mark.parametrize("connections", [0, -2, 1.5, True])
def test_connections_must_be_a_whole_number(serve, tmp_path, connections):
    server = serve(lambda h, n: serve_file(h, DATA))
    with pytest.raises(ValueError, match="connections"):
        download(server.url, tmp_path / "f", connections=connections, **FAST)
    assert server.requests == []
