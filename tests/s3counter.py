"""An HTTP proxy on 127.0.0.1 in front of moto's S3 server that counts the requests passing
through it by method and archive key prefix: what a crawl asks of its archive, counted
where a bill would count it, whatever the client does inside."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

# The prefixes requests are counted under (the archive's top-level parts; README, "Archive
# layout"); anything else counts under its first segment.
PREFIXES = ("_index/urls/", "_index/content/", "_index/near/", "_index/sites/", "articles/",
            "warc/", "catalog/", "runs/")


class S3Counter:
    """Forwards every request on ``127.0.0.1:port`` to the S3 server at ``target`` (host,
    port) and counts it as ``(method, prefix)``, the prefix taken after ``bucket/archive
    prefix/`` (see :meth:`expect`)."""

    def __init__(self, target: tuple[str, int], bucket: str, prefix: str) -> None:
        self.target = target
        self.bucket = bucket
        self.root = f"/{bucket}/{prefix.strip('/')}/" if prefix.strip("/") else f"/{bucket}/"
        self._archive_prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.counts: Counter[tuple[str, str]] = Counter()
        self.keys: list[tuple[str, str]] = []
        """Every request as (method, archive key), in order."""
        self.expect_continue = 0
        """Requests that asked for a go-ahead before their body (``Expect: 100-continue``):
        each costs a round trip more."""
        self.checksummed = 0
        """Requests that carried a checksum of their body besides the signature's
        (``x-amz-checksum-*``, ``x-amz-sdk-checksum-algorithm``): CPU for nothing."""
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                if self.headers.get("Expect"):
                    with counter._lock:
                        counter.expect_continue += 1
                if any(name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))
                       for name in self.headers.keys()):
                    with counter._lock:
                        counter.checksummed += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                counter._count(self.command, self.path)
                upstream = http.client.HTTPConnection(*counter.target, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                # A HEAD's body is empty; its Content-Length is the object's.
                self.send_header("Content-Length", answer.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> S3Counter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _count(self, method: str, target: str) -> None:
        path = unquote(urlsplit(target).path)
        key = path[len(self.root):] if path.startswith(self.root) else path
        # A listing names its prefix in the query, not in the path.
        query = urlsplit(target).query
        if path.strip("/") == self.bucket and "prefix=" in query and method == "GET":
            listed = unquote(query.split("prefix=", 1)[1].split("&", 1)[0])
            key = listed.removeprefix(self._archive_prefix)
            method = "LIST"
        prefix = next((p for p in PREFIXES if key.startswith(p)), key.split("/", 1)[0] + "/")
        with self._lock:
            self.counts[(method, prefix)] += 1
            self.keys.append((method, key))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.keys.clear()

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def count(self, method: str | None = None, prefix: str | None = None) -> int:
        """Requests counted with ``method`` (GET, PUT, LIST, ...) under ``prefix``."""
        with self._lock:
            return sum(n for (m, p), n in self.counts.items()
                       if (method is None or m == method) and (prefix is None or p == prefix))
