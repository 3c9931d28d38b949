"""A real local HTTP news site serving the Fundus corpus, for tests and benchmarks.

Every corpus page is served at the path of its original URL, and the site offers
the discovery surfaces a crawler meets on real publishers: ``/robots.txt`` with a
``Sitemap:`` line, a sitemap index of monthly sitemaps, and an RSS feed whose links
carry tracking parameters. Tests can add extra routes (redirects, hostile bodies)
and inspect which request targets the site received.

Run ``python tests/newssite.py [--port P]`` to serve the corpus by hand.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent / "data" / "fundus"
"""Where the corpus lives when neither an argument nor the environment says otherwise: the
copy of the Fundus test pages kept in the repository (``tests/data/fundus/README.md``)."""

CORPUS_ENV_VAR = "NEWSARCHIVE_CORPUS"
"""Environment variable overriding the corpus directory."""

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
"""XML namespace of sitemaps and sitemap indexes."""

FEED_TRACKING_PARAMS = "utm_source=rss&utm_medium=feed"
"""Query parameters appended to feed links, as real feeds do."""

HTML_TYPE = "text/html; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
RSS_TYPE = "application/rss+xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

HOLD_LIMIT_SECONDS = 300
"""Longest a held page request waits (see :meth:`NewsSite.hold_pages`): a test that forgets
to release its pages must not leave the site's threads waiting forever."""

NOT_FOUND_BODY = (
    b"<!doctype html><html><head><title>404 Not Found</title></head>"
    b"<body><h1>Not Found</h1></body></html>\n"
)


@dataclass(frozen=True)
class CorpusPage:
    """One saved news page of the corpus and what the site needs to serve it."""

    file: Path
    """The gzipped HTML file, exactly as the publisher served it."""

    truth: Path
    """The ground-truth JSON beside it (title, authors, publishing_date, body)."""

    publisher: str
    """Publisher name as the corpus index gives it, e.g. ``DerStandard``."""

    original_url: str
    """The URL the page was crawled from."""

    path: str
    """URL path of the original URL; the site serves the page here."""

    query: str
    """Query string of the original URL without ``?``; may be empty."""

    published: datetime
    """Timezone-aware publication time: the truth's ``publishing_date`` when present,
    else the crawl date taken as UTC."""

    title: str = ""
    """The headline from the ground truth (the RSS feed's item title)."""

    @property
    def html(self) -> bytes:
        """The decompressed page bytes (read from disk on every access)."""
        return gzip.decompress(self.file.read_bytes())


def _aware(value: datetime) -> datetime:
    """Attach UTC to a naive datetime; some truth dates carry no offset."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def resolve_corpus_dir(corpus_dir: Path | None = None) -> Path:
    """The corpus directory: the argument, else ``$NEWSARCHIVE_CORPUS``, else the default."""
    if corpus_dir is not None:
        return Path(corpus_dir)
    env = os.environ.get(CORPUS_ENV_VAR)
    return Path(env) if env else DEFAULT_CORPUS_DIR


def load_corpus(corpus_dir: Path | None = None) -> list[CorpusPage]:
    """Load every page listed in the corpus ``index.json``, in index order."""
    root = resolve_corpus_dir(corpus_dir)
    entries = json.loads((root / "index.json").read_text(encoding="utf-8"))
    pages: list[CorpusPage] = []
    for entry in entries:
        truth_path = root / entry["truth"]
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        if truth.get("publishing_date"):
            published = _aware(datetime.fromisoformat(truth["publishing_date"]))
        else:
            published = _aware(datetime.fromisoformat(entry["crawl_date"]))
        parts = urlsplit(entry["url"])
        pages.append(
            CorpusPage(
                file=root / entry["file"],
                truth=truth_path,
                publisher=entry["publisher"],
                original_url=entry["url"],
                path=parts.path or "/",
                query=parts.query,
                published=published,
                title=truth.get("title") or "",
            )
        )
    return pages


def w3c_datetime(value: datetime) -> str:
    """Format a datetime the way sitemaps want it: ``2024-05-03T18:19:08+02:00``."""
    return _aware(value).isoformat(timespec="seconds")


def month_key(page: CorpusPage) -> str:
    """The ``YYYY-MM`` sitemap a page belongs to, by its date in its own offset."""
    return page.published.strftime("%Y-%m")


def _split_target(target: str) -> tuple[str, str]:
    """Split a request target into path and query; tolerate absolute-form targets."""
    if not target.startswith("/"):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path.partition("#")[0], query


@dataclass(frozen=True)
class LoggedRequest:
    """One request the site received."""

    at: float
    """Arrival time, from :func:`time.monotonic` (compare with other arrivals only)."""

    target: str
    """The request target: path with query."""

    headers: dict[str, str]
    """The request headers (names as sent; a repeated header keeps its last value)."""

    answered_at: float | None = None
    """When the site began answering (before the first byte of its response went out), from
    :func:`time.monotonic`; None while unanswered. A client that waits for a response before
    sending its next request sends that request after this time: comparing an arrival with
    it tells what the client did, however slow the machine."""


@dataclass(frozen=True)
class _Response:
    """What a route answers with."""

    status: int
    body: bytes
    headers: dict[str, str]
    gate: threading.Event | None = None
    """Set: the response waits until the event is set (at most ``HOLD_LIMIT_SECONDS``)."""


def _make_response(status: int, body: bytes, headers: dict[str, str] | None,
                   gate: threading.Event | None = None) -> _Response:
    """A route's response; Content-Type defaults to HTML."""
    merged = {"Content-Type": HTML_TYPE}
    if headers:
        if any(k.lower() == "content-type" for k in headers):
            merged = {}
        merged.update(headers)
    return _Response(status, bytes(body), merged, gate)


def _document(text: str, content_type: str) -> _Response:
    """A sitemap or feed, with a strong ETag (its body's hash): a client that sends it back
    in ``If-None-Match`` gets a 304 while the document is unchanged."""
    body = text.encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return _Response(200, body, {"Content-Type": content_type, "ETag": etag})


class _Handler(BaseHTTPRequestHandler):
    """Routes every request to the ``NewsSite`` that owns the server."""

    protocol_version = "HTTP/1.1"
    server: _Server
    # Keep-alive connections otherwise hold a thread forever after the client leaves.
    timeout = 30

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        site = self.server.site
        logged = site._record(self.path, dict(self.headers.items()))
        response = site._route(self.path)
        if response.gate is not None:
            response.gate.wait(HOLD_LIMIT_SECONDS)
        etag = next((v for k, v in response.headers.items() if k.lower() == "etag"), None)
        if response.status == 200 and etag is not None \
                and self.headers.get("If-None-Match") == etag:
            # A conditional request for a document that has not changed (RFC 9110 13.1.2).
            response = _Response(304, b"", {"ETag": etag})
        site._answered(logged)
        self.send_response(response.status)
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        headers.pop("content-length", None)
        for name, value in headers.values():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # Default logging writes every request to stderr, drowning test output.
        pass


class _Server(ThreadingHTTPServer):
    """A threading server that knows its site."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], site: NewsSite) -> None:
        self.site = site
        super().__init__(address, _Handler)


class NewsSite:
    """A local news site serving corpus pages, robots.txt, sitemaps and an RSS feed.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        pages: list[CorpusPage] | None = None,
        feed_size: int = 20,
        feed_tracking: bool = True,
    ) -> None:
        self._pages = list(pages) if pages is not None else load_corpus()
        self.feed_size = feed_size
        self.feed_tracking = feed_tracking
        self._by_path = {page.path: page for page in self._pages}
        if len(self._by_path) != len(self._pages):
            raise ValueError("two pages share a URL path; the site could serve only one")
        self._index_pages()
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._log: list[LoggedRequest] = []
        self._routes: dict[str, _Response] = {}
        self._sequences: dict[str, list[_Response]] = {}
        # Decompressing per request would cost the server CPU a benchmark should get.
        self._html_cache: dict[str, bytes] = {}
        # Set while corpus pages are served at once; cleared by hold_pages().
        self._pages_open = threading.Event()
        self._pages_open.set()
        # Held page requests still answered (hold_pages' ``after``).
        self._pages_let_through = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _index_pages(self) -> None:
        # Newest first; ties broken by URL so feeds are deterministic.
        self._newest_first = sorted(
            self._pages, key=lambda p: (p.published, p.original_url), reverse=True
        )
        months: dict[str, list[CorpusPage]] = {}
        for page in self._newest_first:
            months.setdefault(month_key(page), []).append(page)
        self._months = months

    def publish(self, pages: list[CorpusPage]) -> None:
        """Add ``pages`` to the site, as a publisher does: they appear in their month's
        sitemap (whose ``<lastmod>`` in the index moves if they are its newest) and, if they
        are among the newest, in the feed."""
        with self._lock:
            self._pages += [page for page in pages if page.path not in self._by_path]
            self._by_path = {page.path: page for page in self._pages}
            self._index_pages()

    # -- lifecycle ---------------------------------------------------------------

    def start(self, port: int = 0) -> NewsSite:
        """Bind 127.0.0.1 (port 0 picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("NewsSite already started")
        self._server = _Server(("127.0.0.1", port), self)
        # A short poll interval keeps stop() quick; fixtures stop sites often.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="newssite",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> NewsSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the site listens on."""
        if self._server is None:
            raise RuntimeError("NewsSite not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    # -- pages -------------------------------------------------------------------

    @property
    def pages(self) -> list[CorpusPage]:
        """The pages this site serves (a copy)."""
        return list(self._pages)

    def page_for_path(self, path: str) -> CorpusPage | None:
        """The page served at ``path`` (query ignored), or None."""
        path = _split_target(path)[0]
        page = self._by_path.get(path)
        if page is None and "%" in path:
            page = self._by_path.get(unquote(path))
        return page

    def url_for(self, page: CorpusPage) -> str:
        """The page's URL on this site: original path, and original query if any."""
        url = self.base_url + page.path
        return f"{url}?{page.query}" if page.query else url

    def feed_link(self, page: CorpusPage) -> str:
        """The link the RSS feed gives for ``page``, with tracking parameters if enabled."""
        url = self.url_for(page)
        if not self.feed_tracking:
            return url
        return url + ("&" if page.query else "?") + FEED_TRACKING_PARAMS

    @property
    def feed_pages(self) -> list[CorpusPage]:
        """The pages in the RSS feed: the ``feed_size`` newest, newest first."""
        return self._newest_first[: self.feed_size]

    @property
    def months(self) -> list[str]:
        """The ``YYYY-MM`` keys of the monthly sitemaps, newest first."""
        return sorted(self._months, reverse=True)

    # -- extra routes and the request log --------------------------------------------

    def add_route(
        self,
        path: str,
        body: bytes,
        status: int = 200,
        headers: dict[str, str] | None = None,
        wait_for: threading.Event | None = None,
    ) -> None:
        """Serve ``body`` at ``path``, ahead of the built-in routes.

        ``path`` matches the request path with the query ignored, unless ``path``
        itself has a query, in which case it matches that exact target.
        Content-Type defaults to HTML; Content-Length is always computed.
        With ``wait_for``, each request waits until the event is set (at most
        ``HOLD_LIMIT_SECONDS``): a page that is late for as long as the test wants.
        """
        with self._lock:
            self._routes[path] = _make_response(status, body, headers, wait_for)

    def add_responses(
        self,
        path: str,
        responses: list[tuple[int, bytes, dict[str, str] | None]],
    ) -> None:
        """Answer requests for ``path`` with ``responses`` (``(status, body, headers)``),
        one per request in order, the last one for every request after; ahead of the
        routes of :meth:`add_route`, and matched the same way."""
        if not responses:
            raise ValueError("give at least one response")
        with self._lock:
            self._sequences[path] = [_make_response(*r) for r in responses]

    def remove_route(self, path: str) -> None:
        """Drop an extra route added with :meth:`add_route` or :meth:`add_responses`."""
        with self._lock:
            self._routes.pop(path, None)
            self._sequences.pop(path, None)

    @property
    def requests(self) -> list[str]:
        """Request targets received (path with query), in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_log(self) -> list[LoggedRequest]:
        """The requests received, with arrival times and headers, in arrival order (a copy)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()
            self._log.clear()

    def hold_pages(self, after: int = 0) -> None:
        """Make requests for corpus pages wait (up to ``HOLD_LIMIT_SECONDS``) until
        :meth:`release_pages`: a crawl is then certainly in progress while the test acts.
        The next ``after`` requests for corpus pages are answered first (requests already
        waiting stay held): a crawl then stops after that many pages, however fast."""
        with self._lock:
            self._pages_let_through = after
        self._pages_open.clear()

    def release_pages(self) -> None:
        """Answer the held requests for corpus pages, and serve the next ones at once."""
        self._pages_open.set()

    def article_requests(self) -> list[str]:
        """The received targets whose path is a corpus page path."""
        return [t for t in self.requests if self.page_for_path(t) is not None]

    def _record(self, target: str, headers: dict[str, str] | None = None) -> LoggedRequest:
        with self._lock:  # stamped under the lock: the log is in arrival order
            logged = LoggedRequest(time.monotonic(), target, dict(headers or {}))
            self._requests.append(target)
            self._log.append(logged)
        return logged

    def _answered(self, logged: LoggedRequest) -> None:
        """Stamp ``logged`` with the time its answer begins (see ``answered_at``)."""
        answered = replace(logged, answered_at=time.monotonic())
        with self._lock:
            # Searched from the end: the request is among the latest ones.
            for index in range(len(self._log) - 1, -1, -1):
                if self._log[index] is logged:
                    self._log[index] = answered
                    return

    # -- routing -------------------------------------------------------------------

    def _route(self, target: str) -> _Response:
        path, _query = _split_target(target)
        with self._lock:
            sequence = self._sequences.get(target) or self._sequences.get(path)
            if sequence:
                extra = sequence.pop(0) if len(sequence) > 1 else sequence[0]
            else:
                extra = self._routes.get(target) or self._routes.get(path)
        if extra is not None:
            return extra
        if path == "/robots.txt":
            return _Response(200, self.robots_txt().encode(), {"Content-Type": TEXT_TYPE})
        if path == "/sitemap.xml":
            return _document(self.sitemap_index(), XML_TYPE)
        if path.startswith("/sitemaps/") and path.endswith(".xml"):
            month = path[len("/sitemaps/") : -len(".xml")]
            if month in self._months:
                return _document(self.month_sitemap(month), XML_TYPE)
        if path == "/rss.xml":
            return _document(self.rss(), RSS_TYPE)
        page = self.page_for_path(path)
        if page is not None:
            if not self._pages_open.is_set():
                with self._lock:
                    let_through = self._pages_let_through > 0
                    if let_through:
                        self._pages_let_through -= 1
                if not let_through:
                    self._pages_open.wait(HOLD_LIMIT_SECONDS)
            headers = {
                "Content-Type": HTML_TYPE,
                "Last-Modified": format_datetime(
                    page.published.astimezone(timezone.utc), usegmt=True
                ),
            }
            return _Response(200, self._html(page), headers)
        return _Response(404, NOT_FOUND_BODY, {"Content-Type": HTML_TYPE})

    def _html(self, page: CorpusPage) -> bytes:
        with self._lock:
            cached = self._html_cache.get(page.path)
        if cached is None:
            cached = page.html
            with self._lock:
                self._html_cache[page.path] = cached
        return cached

    # -- documents -----------------------------------------------------------------

    def robots_txt(self) -> str:
        """The robots.txt text: allow everything, point at the sitemap index."""
        return f"User-agent: *\nAllow: /\n\nSitemap: {self.base_url}/sitemap.xml\n"

    def sitemap_index(self) -> str:
        """The sitemap index: one monthly sitemap per month with articles."""
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<sitemapindex xmlns="{SITEMAP_NS}">',
        ]
        for month in self.months:
            newest = max(p.published for p in self._months[month])
            lines += [
                "  <sitemap>",
                f"    <loc>{escape(f'{self.base_url}/sitemaps/{month}.xml')}</loc>",
                f"    <lastmod>{w3c_datetime(newest)}</lastmod>",
                "  </sitemap>",
            ]
        lines.append("</sitemapindex>")
        return "\n".join(lines) + "\n"

    def month_sitemap(self, month: str) -> str:
        """The ``<urlset>`` of the pages published in ``month`` (``YYYY-MM``)."""
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<urlset xmlns="{SITEMAP_NS}">',
        ]
        for page in self._months.get(month, []):
            lines += [
                "  <url>",
                f"    <loc>{escape(self.url_for(page))}</loc>",
                f"    <lastmod>{w3c_datetime(page.published)}</lastmod>",
                "  </url>",
            ]
        lines.append("</urlset>")
        return "\n".join(lines) + "\n"

    def rss(self) -> str:
        """The RSS 2.0 feed of the ``feed_size`` newest pages, newest first."""
        items = self.feed_pages
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0">',
            "<channel>",
            "  <title>newsarchive test site</title>",
            f"  <link>{escape(self.base_url + '/')}</link>",
            "  <description>Corpus pages served locally for tests</description>",
        ]
        if items:
            lines.append(f"  <lastBuildDate>{format_datetime(items[0].published)}</lastBuildDate>")
        for page in items:
            lines += [
                "  <item>",
                f"    <title>{escape(page.title)}</title>",
                f"    <link>{escape(self.feed_link(page))}</link>",
                f'    <guid isPermaLink="false">{escape(self.url_for(page))}</guid>',
                f"    <pubDate>{format_datetime(page.published)}</pubDate>",
                "  </item>",
            ]
        lines += ["</channel>", "</rss>"]
        return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Serve the corpus until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus directory")
    parser.add_argument("--feed-size", type=int, default=20, help="items in /rss.xml")
    args = parser.parse_args(argv)
    site = NewsSite(load_corpus(args.corpus), feed_size=args.feed_size)
    site.start(args.port)
    print(f"{site.base_url}  ({len(site.pages)} pages; Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()


if __name__ == "__main__":
    main()
