"""A loopback HTTP server for a folder of files, counting the bytes it sends per file.

Tests and benchmarks serve generated archives with it, to stand in for Zenodo or a mirror, and read
``bytes_sent`` to prove that streaming reads only a small part of an archive. It honours ``Range``
(``bytes=N-`` and ``bytes=N-M``) and can cap each connection's speed the way busy public servers do.

Observations, for tests: ``connections`` counts the TCP connections accepted (against ``requests``, it shows
keep-alive reuse), ``sends`` gives each connection's requests, body bytes and send seconds (the server's own
monotonic clock, from an answer's first body byte to its last, pacing included: bytes / seconds is the speed
the connection was given, whatever the machine's load), and ``last_byte_sent(name)`` is an event set once an
answer has sent a file's last byte.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass


@dataclass
class ConnectionSends:
    """What one connection was sent: its answers with a body, their bytes, and the seconds they took."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, sent: int, seconds: float) -> None:
        self.requests, self.bytes, self.seconds = self.requests + 1, self.bytes + sent, self.seconds + seconds


class FileServer:
    def __init__(
        self,
        folder: str,
        chunk_size: int = 64 * 1024,
        send_buffer: int | None = None,
        rate_per_connection: float | None = None,
    ):
        """``send_buffer`` caps the kernel's socket buffer, so ``bytes_sent`` tracks what the client read.

        ``rate_per_connection`` (bytes/s) paces each answer, so one connection gets at most that speed and
        several connections get that speed each (the benchmark emulates Zenodo at 20 MB/s per connection).
        """
        if rate_per_connection is not None and rate_per_connection <= 0:
            raise ValueError(f"rate_per_connection must be positive bytes/s, got {rate_per_connection!r}")
        self.folder = os.fspath(folder)
        self.chunk_size = chunk_size
        self.send_buffer = send_buffer
        self.rate_per_connection = rate_per_connection
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.requests: list[tuple[str, str, dict]] = []
        self.connections = 0
        self.sends: dict[int, ConnectionSends] = {}  # connection number (1, 2, ...) -> what it was sent
        self._last_byte: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def last_byte_sent(self, name: str) -> threading.Event:
        """Set once an answer has sent the last byte of ``name`` (never, while a reader holds back the rest)."""
        with self._lock:
            return self._last_byte.setdefault(name, threading.Event())

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def setup(self):
                with server._lock:
                    server.connections += 1
                    self.sends = server.sends[server.connections] = ConnectionSends()
                if server.send_buffer:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server.send_buffer)
                super().setup()

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                name = self.path.split("?")[0].lstrip("/")
                with server._lock:
                    server.requests.append((self.command, name, dict(self.headers)))
                path = os.path.join(server.folder, name)
                if not name or not os.path.isfile(path):
                    self.send_error(404)
                    return
                size = os.path.getsize(path)
                start, end = 0, size - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if match:
                    start = int(match[1])
                    end = min(int(match[2]), size - 1) if match[2] else size - 1
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(206 if match else 200)
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not body:
                    return
                started, sent = time.monotonic(), 0
                try:
                    with open(path, "rb") as f:
                        f.seek(start)
                        remaining = end - start + 1
                        while remaining > 0:
                            chunk = f.read(min(server.chunk_size, remaining))
                            try:
                                self.wfile.write(chunk)
                            except (BrokenPipeError, ConnectionResetError):
                                return  # the client stopped reading: a streaming reader may do that
                            remaining -= len(chunk)
                            sent += len(chunk)
                            with server._lock:
                                server.bytes_sent[name] += len(chunk)
                            if server.rate_per_connection:  # sleep until this answer is back down to the rate
                                ahead = sent / server.rate_per_connection - (time.monotonic() - started)
                                if ahead > 0:
                                    time.sleep(ahead)
                finally:
                    self.sends.add(sent, time.monotonic() - started)
                if end == size - 1:
                    server.last_byte_sent(name).set()

        return Handler
