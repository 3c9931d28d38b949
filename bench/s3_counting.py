"""moto's S3 server, in a process of its own, behind a middleware that counts the requests it
answers by method, archive key prefix and status: what a crawl asks of its archive, counted
where a bill would count it, whatever the client does inside. The tests run the same server
(:func:`make_s3_server`), uncounted, in a thread.

    python bench/s3_counting.py PORT_FILE [ARCHIVE_PREFIX]

Counted in moto's process rather than in a proxy in front of it: a proxy is one more hop,
and more CPU, on the cores the design being timed runs on (the ``moto`` design would no
longer be moto alone), and a middleware sees each request once, decoded, with its answer's
status (a compare-and-swap lost is a 412).

A key is counted under its first path component below the archive prefix (``articles/``,
``catalog/``, ``warc/``, ``runs/``), or its first two under a folder whose name starts with
an underscore (``_index/urls/``, ``_index/lsh/``): a prefix that a new layout adds shows up
by itself. A bucket listing counts as ``LIST`` under its ``prefix=`` parameter's prefix.
``PUT`` and ``GET`` with ``If-None-Match`` / ``If-Match`` (conditional writes and reads)
are told apart from plain ones, a ``PUT`` with ``x-amz-copy-source`` is a ``COPY``.

Control route, not counted: ``GET /_bench/s3-counts`` answers the counts as JSON
(``?reset=1`` also sets them to zero). Nothing here imports newsarchive: the bench measures
whatever layout the archive's code has.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

COUNTS_ROUTE = "/_bench/s3-counts"


def key_prefix(key: str) -> str:
    """The prefix ``key`` (archive-relative) is counted under: ``articles/``,
    ``_index/lsh/``; a key with no folder at that depth is its own prefix; ``(root)`` for
    the archive's root itself (a listing of everything)."""
    if not key:
        return "(root)"
    parts = key.split("/")
    depth = 2 if parts[0].startswith("_") else 1
    if len(parts) <= depth:
        return key
    return "/".join(parts[:depth]) + "/"


def request_label(method: str, key: str, query: dict[str, list[str]], environ) -> str:
    """The kind of request, as a bill lists it, refined where the protocol's cost differs."""
    if not key:
        if method == "GET" and ("list-type" in query or "prefix" in query or not query):
            return "LIST"
        if method == "POST" and "delete" in query:
            return "DELETE-OBJECTS"
        return method
    if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
        return "COPY"
    if method in ("PUT", "GET", "HEAD"):
        if environ.get("HTTP_IF_NONE_MATCH"):
            return f"{method} if-none-match"
        if environ.get("HTTP_IF_MATCH"):
            return f"{method} if-match"
    return method


class CountingS3:
    """WSGI middleware in front of moto's app: counts ``(label, prefix, status)``."""

    def __init__(self, app, archive_prefix: str) -> None:
        self.app = app
        self.archive_prefix = archive_prefix.strip("/") + "/" if archive_prefix.strip("/") else ""
        self.counts: Counter[tuple[str, str, int]] = Counter()
        self.expect_continue = 0
        """Requests that asked for a go-ahead before their body: a round trip more each."""
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = unquote(environ.get("PATH_INFO", ""))
        if path == COUNTS_ROUTE:
            return self._counts(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        bucket, _, key = path.lstrip("/").partition("/")
        label = request_label(method, key, query, environ)
        if label == "LIST":
            key = query.get("prefix", [""])[0]
        if bucket and (key or label == "LIST"):
            prefix = key_prefix(key.removeprefix(self.archive_prefix)
                                if key.startswith(self.archive_prefix) else key)
        else:
            prefix = "(bucket)"
        if environ.get("HTTP_EXPECT"):
            with self.lock:
                self.expect_continue += 1

        def counting_start_response(status, headers, exc_info=None):
            code = int(status.split(" ", 1)[0])
            with self.lock:
                self.counts[(label, prefix, code)] += 1
            return start_response(status, headers, exc_info) if exc_info else \
                start_response(status, headers)

        return self.app(environ, counting_start_response)

    def _counts(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        with self.lock:
            rows = [{"method": label, "prefix": prefix, "status": status, "count": count}
                    for (label, prefix, status), count in sorted(self.counts.items())]
            body = json.dumps({"requests": rows, "expect_continue": self.expect_continue}).encode()
            if query.get("reset"):
                self.counts.clear()
                self.expect_continue = 0
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


@dataclass(frozen=True)
class S3Counts:
    """The requests moto answered between two readings of the counts."""

    rows: tuple[tuple[str, str, int, int], ...]
    """(method label, prefix, status, requests), as counted."""
    expect_continue: int
    """Requests sent with ``Expect: 100-continue`` (each a round trip more)."""

    @property
    def total(self) -> int:
        return sum(row[3] for row in self.rows)

    def by_request(self) -> Counter[tuple[str, str]]:
        """Requests per (method label, prefix), whatever their status."""
        out: Counter[tuple[str, str]] = Counter()
        for method, prefix, _, count in self.rows:
            out[(method, prefix)] += count
        return out

    def by_method(self) -> Counter[str]:
        """Requests per method (``PUT if-match`` counted as ``PUT``)."""
        out: Counter[str] = Counter()
        for method, _, _, count in self.rows:
            out[method.split(" ", 1)[0]] += count
        return out

    def by_prefix(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for _, prefix, _, count in self.rows:
            out[prefix] += count
        return out

    def refused(self) -> Counter[tuple[str, str, int]]:
        """Requests answered 3xx/4xx/5xx (412: a conditional write lost; 404: not there)."""
        return Counter({(m, p, s): c for m, p, s, c in self.rows if s >= 300})

    def to_json(self) -> dict:
        return {"rows": [list(row) for row in self.rows], "expect_continue": self.expect_continue}


def read_counts(endpoint: str, reset: bool = True) -> S3Counts:
    """The counts of the server at ``endpoint`` (``http://host:port``), and reset them."""
    url = f"{endpoint}{COUNTS_ROUTE}" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=60) as answer:
        data = json.loads(answer.read())
    rows = tuple((r["method"], r["prefix"], r["status"], r["count"]) for r in data["requests"])
    return S3Counts(rows, data.get("expect_continue", 0))


def make_moto_puts_atomic() -> None:
    """Make moto's object PUTs atomic, as S3's are. moto checks a PUT's ``If-Match`` or
    ``If-None-Match`` and then writes, and replaces an object while another request still
    reads the one it replaces: two PUTs of one key at once (its server is threaded) can both
    win a compare-and-swap that S3 lets only one win, or fail with a 500. The archive's
    claims and record updates rely on S3's guarantee, so the tests' and the benchmarks'
    server must give it; under a loaded machine's thread switching, a test lost an alias
    without this."""
    from moto.s3.responses import S3Response

    if getattr(S3Response.put_object, "atomic", False):
        return
    put_object = S3Response.put_object
    lock = threading.Lock()

    def atomic_put_object(self):
        with lock:
            return put_object(self)

    atomic_put_object.atomic = True
    S3Response.put_object = atomic_put_object


class S3Server:
    """moto's S3 app served by cheroot (see :func:`make_s3_server`): ``serve_forever`` until
    ``shutdown``, on ``server_port``."""

    def __init__(self, server) -> None:
        self._server = server
        self.server_port: int = server.bind_addr[1]
        """The port it listens on (bound already: the port asked for, or one the system gave)."""

    def serve_forever(self) -> None:
        self._server.serve()

    def shutdown(self) -> None:
        self._server.stop()


def make_s3_server(host: str = "127.0.0.1", port: int = 0, wrap: Callable | None = None):
    """moto's S3 server as the tests and the benchmarks run it, listening but not yet
    serving (call its ``serve_forever``): HTTP/1.1 keep-alive, atomic PUTs, every request
    straight to moto's S3 app (through ``wrap(app)`` if given), but for ``/moto-api/``
    (``/moto-api/reset`` empties every bucket), which goes to moto's own dispatcher.

    Served by cheroot (CherryPy's WSGI server), not by werkzeug's development server, which
    moto's own ``moto_server`` uses: werkzeug closes every connection after one answer
    (whatever HTTP version it speaks, "Connection: close"), so each S3 request of a crawl
    paid for a new connection in boto3, in the latency proxy and in moto (a thread each), on
    the cores the crawl runs on, which no S3 endpoint makes a client do. cheroot keeps
    connections alive and answers from a pool of threads: 3,200 requests from 8 threads took
    moto 1.7-2.1 ms of CPU each against 2.2-3.0 with werkzeug, and the client 1.9-2.4 against
    2.0-2.8 (README, Throughput)."""
    from cheroot.wsgi import Server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    # moto's S3 app itself, not behind moto's dispatcher: the dispatcher finds which of the
    # AWS services a request is for (its headers, its body, a list of moto's modules read
    # from disk, some 200 patterns tried) under one lock for all requests, a quarter of
    # moto's CPU in the bench's runs and in the tests' (profiled); every request here is for
    # S3.
    make_moto_puts_atomic()
    s3 = create_backend_app("s3")
    s3 = wrap(s3) if wrap is not None else s3
    control = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api/"):
            return control(environ, start_response)
        return s3(environ, start_response)

    # Threads answer requests; connections waiting between requests are kept by cheroot's
    # selector, not by a thread, up to keep_alive_conn_limit of them (10 by default): a
    # crawl's connection pool holds 64 (storage.backends), and several crawls share the tests'
    # server. The listen backlog likewise (5 by default): a crawl opens its connections at once.
    server = Server((host, port), app, numthreads=_SERVER_THREADS, timeout=60,
                    request_queue_size=_KEPT_ALIVE)
    server.keep_alive_conn_limit = _KEPT_ALIVE
    server.prepare()  # binds: the port is known before serving
    return S3Server(server)


# Requests answered at once (moto's work is Python under the GIL: more would only wait), and
# idle connections kept open between requests.
_SERVER_THREADS = 8
_KEPT_ALIVE = 512


def serve(port_file: Path, archive_prefix: str) -> None:
    """moto's server, counting, until killed; writes its port to ``port_file`` once
    listening."""
    server = make_s3_server(wrap=lambda app: CountingS3(app, archive_prefix))
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.server_port))
    temporary.rename(port_file)  # whole, or not there: the bench polls for it
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "archive")
