"""``newsarchive browse``: a web UI over an archive (Starlette, Jinja2 templates, uvicorn).

Sites → days → articles, an article page (metadata, cleaned text, versions, aliases and
the original page), search, and per-site charts of articles per day and of extraction
health. Overviews and search come from the Parquet catalog (see :mod:`browse.catalog`);
an article page reads the article's own ``meta.json``, text and raw page.

Everything shown was written by someone else's web site, so:

- every archived string goes through Jinja2 autoescaping, and the UI's own pages carry a
  Content-Security-Policy without any script source: even a string that slipped through
  could not run;
- the original page is served only with ``Content-Security-Policy: sandbox`` (no
  ``allow-scripts``, an opaque origin) and ``default-src 'none'``, so its scripts do not
  run and it fetches nothing, not even images from the live web, and it is shown only in
  an ``<iframe sandbox>``; it is served without its ``<link>`` elements, whose resource
  hints (``preconnect``, ``dns-prefetch``...) no policy stops (see :mod:`browse.original`);
- every response, errors included, carries the security headers;
- the server binds 127.0.0.1 unless told otherwise, and answers only requests whose
  ``Host`` names it (a page elsewhere cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from browse.catalog import (
    MAX_QUERY_CHARS,
    MAX_QUERY_WORDS,
    DayCount,
    QueryTooLong,
    read_articles,
    read_day_counts,
    search,
    words_of,
)
from browse.charts import articles_chart, health_chart
from browse.listing import percent
from browse.original import page_for_display
from storage import Archive, ArchiveError, InvalidKey, ObjectNotFound, Record
from storage.catalog import archive_date
from storage.keys import SITE_NAME_PATTERN

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

UI_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
          "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
"""The UI's own pages: no script of any origin, nothing from elsewhere."""

ORIGINAL_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "frame-ancestors 'self'")
"""An archived page: sandboxed without scripts, forms or popups, in an opaque origin, and
fetching nothing (its inline styles and data: images still show)."""

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # No DNS lookups of the hosts an archived page links to.
    "X-DNS-Prefetch-Control": "off",
}
"""Headers of every response."""

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The host names the UI answers to when it is bound to this machine only."""

_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
"""Addresses that bind every interface, loopback included."""

CATALOG_TTL_SECONDS = 30.0
"""How long the catalog's per-day counts are reused before the catalog is read again."""

SEARCH_LIMIT = 100
"""Most search results shown."""

_CHARSET = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")

_VERSION = re.compile(r"[0-9]+")
"""A version number in a URL."""


class ArchiveView:
    """What the UI reads from one archive, with the catalog's per-day counts cached for a
    little while (every page needs them; reading them is a scan of the catalog's open
    days and a summary per site, see :func:`read_day_counts`)."""

    def __init__(self, archive: Archive, ttl: float = CATALOG_TTL_SECONDS) -> None:
        self.archive = archive
        self.ttl = ttl
        self._lock = threading.Lock()
        self._counts: dict[str | None, tuple[float, list[DayCount]]] = {}

    def counts(self, site: str | None = None) -> list[DayCount]:
        """Articles per site and day (of every site, or of ``site``), with extraction health."""
        with self._lock:
            cached = self._counts.get(site)
            if cached is None or time.monotonic() - cached[0] > self.ttl:
                cached = (time.monotonic(), read_day_counts(self.archive.url, site=site))
                # Only sites that have articles: any name may be asked for.
                if cached[1] or site is None:
                    self._counts[site] = cached
            return cached[1]

    def sites(self) -> dict[str, list[DayCount]]:
        """Per site, its days with articles, oldest first."""
        out: dict[str, list[DayCount]] = {}
        for count in self.counts():
            out.setdefault(count.site, []).append(count)
        return out

    def day(self, site: str, day: date) -> list[dict]:
        """The articles of ``site`` archived under ``day``, newest first."""
        rows = read_articles(self.archive.url, site=site, since=day, until=day).to_pylist()
        rows.sort(key=lambda r: (r["published"] or r["fetched_at"], r["id"]), reverse=True)
        return rows

    def record(self, article_id: str) -> Record | None:
        """The record with this id, or None (also for a string that is no id)."""
        try:
            return self.archive.record_by_id(article_id)
        except InvalidKey:
            return None


def http_url(value: str | None) -> str | None:
    """``value`` if it is an http(s) URL, the only kind the UI makes into a link."""
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        return None
    return value if scheme in ("http", "https") else None


def make_templates() -> jinja2.Environment:
    """The UI's templates, with autoescaping on for every one of them."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["http_url"] = http_url
    env.globals["percent"] = functools.partial(percent, decimals=0)
    env.globals["max_words"] = MAX_QUERY_WORDS
    env.globals["max_chars"] = MAX_QUERY_CHARS
    return env


def allowed_host_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The names a ``Host`` header may give for a server bound to ``host``: the loopback
    names when it is this machine's (or every address, which includes them), else that
    address; plus the ``extra`` names (a proxy's, say)."""
    if host in ("127.0.0.1", "localhost", "::1", *_WILDCARD_ADDRESSES):
        names = list(LOOPBACK_NAMES)
    else:
        names = [host]
    names += extra
    # A Host header writes an IPv6 address in brackets.
    return list(dict.fromkeys(f"[{n}]" if _is_ipv6(n) else n.lower() for n in names))


def _is_ipv6(name: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(name), ipaddress.IPv6Address)
    except ValueError:
        return False


def create_app(archive: Archive, allowed_hosts: Sequence[str] = LOOPBACK_NAMES) -> Starlette:
    """The web UI over ``archive``, as an ASGI application, answering only requests whose
    ``Host`` is one of ``allowed_hosts`` (see :func:`allowed_host_names`)."""
    view = ArchiveView(archive)
    templates = make_templates()

    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        html = templates.get_template(name).render(archive_url=archive.url, request=request,
                                                   query=context.pop("query", ""), **context)
        return HTMLResponse(html, status_code=status_code,
                            headers={**COMMON_HEADERS, "Content-Security-Policy": UI_CSP,
                                     "X-Frame-Options": "DENY"})

    def site_of(request: Request) -> str:
        site = request.path_params["site"]
        if not SITE_NAME_PATTERN.fullmatch(site):
            raise HTTPException(404, "no such site")
        return site

    def index(request: Request) -> Response:
        sites = view.sites()
        summary = [{
            "site": name,
            "articles": sum(d.articles for d in days),
            "days": len(days),
            "first": days[0].day,
            "last": days[-1].day,
            "with_date": sum(d.with_date for d in days),
            "with_author": sum(d.with_author for d in days),
            "with_title": sum(d.with_title for d in days),
        } for name, days in sorted(sites.items())]
        return page(request, "index.html", sites=summary)

    def site_page(request: Request) -> Response:
        site = site_of(request)
        days = view.counts(site)  # this site's files alone
        if not days:
            raise HTTPException(404, f"no articles of site {site}")
        return page(request, "site.html", site=site, days=list(reversed(days)),
                    articles=articles_chart(days), health=health_chart(days),
                    total=sum(d.articles for d in days))

    def day_page(request: Request) -> Response:
        site = site_of(request)
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            raise HTTPException(404, "not a date") from None
        rows = view.day(site, day)
        if not rows:
            raise HTTPException(404, f"no articles of site {site} on {day}")
        return page(request, "day.html", site=site, day=day, rows=rows)

    def article_version(request: Request) -> tuple[Record, int, Record]:
        """The record, the version asked for (1-based; the latest by default) and the
        record as that version saw it (its text and raw keys)."""
        record = view.record(request.path_params["id"])
        if record is None:
            raise HTTPException(404, "no such article")
        versions = record.all_versions
        wanted = request.query_params.get("version", "")
        if not wanted:
            number = len(versions)
        elif not _VERSION.fullmatch(wanted):
            # ASCII digits: str.isdigit() also takes "²", which int() refuses.
            raise HTTPException(400, "a version is a whole number: 1 for the first")
        else:
            # int() refuses thousands of digits; no record has a billion versions.
            number = int(wanted) if len(wanted) <= 9 else 0
        if not 1 <= number <= len(versions):
            raise HTTPException(404, "no such version")
        version = versions[number - 1]
        return record, number, replace(record, raw_key=version.raw_key, text_key=version.text_key)

    def article_page(request: Request) -> Response:
        record, number, as_of = article_version(request)
        try:
            text = archive.read_text(as_of)
        except ObjectNotFound:
            text = None
        return page(request, "article.html", record=record, number=number,
                    day=archive_date(record, archive.backend), versions=record.all_versions,
                    paragraphs=[p for p in (text or "").split("\n") if p.strip()],
                    text_missing=text is None)

    def original(request: Request) -> Response:
        record, _number, as_of = article_version(request)
        try:
            body = archive.read_raw(as_of)
        except ObjectNotFound:
            raise HTTPException(404, "the raw page is missing") from None
        charset = record.charset if record.charset and _CHARSET.fullmatch(record.charset) else None
        return Response(page_for_display(body, charset),
                        headers={**COMMON_HEADERS, "Content-Security-Policy": ORIGINAL_CSP,
                                 "Content-Type": "text/html; charset=utf-8"})

    def search_page(request: Request) -> Response:
        query = request.query_params.get("q", "")
        site = request.query_params.get("site") or None
        if site is not None and not SITE_NAME_PATTERN.fullmatch(site):
            site = None
        try:
            hits = search(archive.url, query, site=site, limit=SEARCH_LIMIT)
        except QueryTooLong as exc:
            # The form keeps what fits, for the user to shorten.
            return page(request, "search.html", status_code=400, refused=f"Not searched: {exc}.",
                        searched=False, query=query[:MAX_QUERY_CHARS], site=site, hits=[],
                        sites=sorted(view.sites()), limit=SEARCH_LIMIT)
        return page(request, "search.html", query=query, site=site, hits=hits, refused=None,
                    searched=bool(words_of(query)), sites=sorted(view.sites()),
                    limit=SEARCH_LIMIT)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return page(request, "error.html", status_code=exc.status_code, message=exc.detail,
                    title="Not found" if exc.status_code == 404 else "Error")

    async def archive_error(request: Request, exc: ArchiveError) -> Response:
        logger.warning("archive error on %s: %s", request.url.path, exc)
        return page(request, "error.html", status_code=502, title="Error",
                    message=f"The archive could not be read: {exc}")

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises the exception once this is sent, and uvicorn logs it.
        return page(request, "error.html", status_code=500, title="Error",
                    message="Internal error: this page could not be shown")

    routes = [
        Route("/", index),
        Route("/search", search_page),
        Route("/sites/{site}", site_page),
        Route("/sites/{site}/{day}", day_page),
        Route("/articles/{id}", article_page),
        Route("/articles/{id}/original", original),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return _ArchiveUI(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts),
                               www_redirect=False)],
        exception_handlers={HTTPException: not_found, ArchiveError: archive_error,
                            Exception: server_error})


class _ArchiveUI(Starlette):
    """Starlette, with the security headers added outside its whole middleware stack:
    its own error responses (an invalid Host, a 500) get them too."""

    def build_middleware_stack(self):
        return _DefaultHeaders(super().build_middleware_stack())


class _DefaultHeaders:
    """Adds the common headers and the UI's CSP to responses that lack them (static
    files, Starlette's own error responses); answers 500 itself, with them, if the
    application fails before it has answered."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message,
                           "headers": _with_default_headers(message.get("headers", []))}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                await send_with_headers({
                    "type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise


def _with_default_headers(headers) -> list[tuple[bytes, bytes]]:
    """ASGI ``headers`` plus each of :data:`COMMON_HEADERS` and the UI's CSP they lack."""
    headers = list(headers)
    present = {name.lower() for name, _ in headers}
    for name, value in {**COMMON_HEADERS, "Content-Security-Policy": UI_CSP}.items():
        if name.lower().encode() not in present:
            headers.append((name.lower().encode(), value.encode()))
    return headers


def serve(archive: Archive, host: str = "127.0.0.1", port: int = 8080,
          allowed_hosts: Sequence[str] = ()) -> int:
    """Serve the UI over ``archive`` on ``host:port`` (port 0: any free one) until
    interrupted, answering requests for ``host`` and ``allowed_hosts`` (see
    :func:`allowed_host_names`); prints the URL first. Returns the exit code."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before the URL is printed: a client that reads it may connect at once,
        # and waits in the backlog while uvicorn starts.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        print(f"newsarchive: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"newsarchive: browsing {archive.url} at http://{shown}:{bound}/ (Ctrl-C stops)",
          flush=True)
    app = create_app(archive, allowed_hosts=allowed_host_names(host, allowed_hosts))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0
