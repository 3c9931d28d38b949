"""The throughput bench's latency proxy (bench/throughput.py, the ``moto-latency`` design):
what passes through it arrives whole and in order, an ending connection ends on the other
side, and every round trip takes at least the latency it adds. Only a lower bound on time is
checked: a slow machine makes a round trip longer, never shorter."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.throughput import start_latency_proxy

LATENCY_MS = 40.0
BODY = bytes(range(256)) * 1024  # 256 KiB: many chunks each way


class _Echo(BaseHTTPRequestHandler):
    """Answers a PUT with its body reversed, a GET with BODY."""

    protocol_version = "HTTP/1.1"  # kept alive: several requests on one connection

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))[::-1]
        self._answer(body)

    def do_GET(self) -> None:
        self._answer(BODY)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxied():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy, url = start_latency_proxy(f"http://127.0.0.1:{server.server_port}", LATENCY_MS)
    try:
        yield url
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        server.shutdown()
        server.server_close()


def test_the_proxy_passes_requests_whole_in_order_and_late(proxied):
    host, port = proxied.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        for n in range(3):
            payload = bytes([n]) * 1000 + BODY
            started = time.monotonic()
            connection.request("PUT", f"/{n}", body=payload)
            answer = connection.getresponse().read()
            elapsed_ms = (time.monotonic() - started) * 1000
            assert answer == payload[::-1]
            assert elapsed_ms >= LATENCY_MS  # half of it each way, at the least
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.read() == BODY
    finally:
        connection.close()


def test_a_connection_the_server_ends_ends_for_the_client(proxied):
    host, port = proxied.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        received = bytearray()
        # Read to the end: the server closes after answering, and the proxy passes that on
        # (a proxy that did not would leave this read to time out).
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
