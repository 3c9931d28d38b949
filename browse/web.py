"""``newsarchive browse``: a web UI over an archive (Starlette, Jinja2 templates, uvicorn).

Sites → days → articles, an article page (metadata, cleaned text, versions, aliases and
the original page), search, and per-site overviews: articles, latest crawls with their
error and duplicate rates (:mod:`browse.runs`), extraction health, and charts of articles
per day and of extraction health (:mod:`browse.charts`). Overviews and search come from
the Parquet catalog (see :mod:`browse.catalog`) and the run manifests; an article page
reads the article's own ``meta.json``, text and raw page.

Times are shown in this machine's time zone (the UI is served to it, on 127.0.0.1, unless
told otherwise), ``6 Dec 2026, 14:03``, each in a ``<time>`` whose ``datetime`` and
``title`` give the exact instant in UTC (ISO 8601).

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
from datetime import date, datetime, timezone
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
    LISTING_COLUMNS,
    MAX_QUERY_CHARS,
    MAX_QUERY_WORDS,
    DayCount,
    QueryTooLong,
    read_articles,
    read_day_counts,
    words_of,
)
from browse.charts import HEALTH_SERIES, articles_chart, day_label, health_chart
from browse.listing import percent
from browse.original import READING_STYLE, page_for_display
from browse.overview import site_overview
from browse.runs import RECENT_DAYS, RECENT_RUNS, RecentRuns, recent_runs
from browse.search_page import PAGE_SIZE, BadSearch, parse_day, parse_page, search_page
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

SCREENSHOT_CSP = "sandbox; default-src 'none'; frame-ancestors 'self'"
"""A page's screenshot: an image, in which nothing may run or load, opened on its own too."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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

DAY_COLUMNS = (*LISTING_COLUMNS, "canonical_url")
"""The catalog columns of a day's listing."""

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
        self._runs: dict[str, tuple[float, RecentRuns]] = {}

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

    def runs(self, site: str) -> RecentRuns:
        """The site's latest runs (see :func:`browse.runs.recent_runs`), reused for as long
        as the counts are."""
        with self._lock:
            cached = self._runs.get(site)
        if cached is None or time.monotonic() - cached[0] > self.ttl:
            # Read outside the lock: a page of many sites reads their runs one by one.
            cached = (time.monotonic(), recent_runs(self.archive, site))
            with self._lock:
                self._runs[site] = cached
        return cached[1]

    def sites(self) -> dict[str, list[DayCount]]:
        """Per site, its days with articles, oldest first."""
        out: dict[str, list[DayCount]] = {}
        for count in self.counts():
            out.setdefault(count.site, []).append(count)
        return out

    def day(self, site: str, day: date) -> list[dict]:
        """The articles of ``site`` archived under ``day``, newest first."""
        rows = read_articles(self.archive.url, site=site, since=day, until=day,
                             columns=DAY_COLUMNS).to_pylist()
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


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


def _aware(value: datetime) -> datetime:
    # The archive's times are UTC-aware; a naive one (an old manifest) is taken as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def local_time(value: datetime) -> str:
    """``value`` in this machine's time zone, to the minute: ``6 Dec 2026, 14:03``."""
    local = _aware(value).astimezone()
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"


def utc_iso(value: datetime) -> str:
    """``value`` exactly, in UTC, as ISO 8601: ``2026-12-06T13:03:05.123456+00:00``."""
    return _aware(value).astimezone(timezone.utc).isoformat()


def local_zone() -> str:
    """The name of this machine's time zone now (``CET``, ``UTC``...)."""
    return datetime.now().astimezone().tzname() or "local time"


def share(value: float | None) -> str:
    """A share (0-1) as a percentage: whole ones, a decimal below 1% (``0.4%``, not a
    ``0%`` that hides errors); ``—`` for none."""
    if value is None:
        return "—"
    if 0 < value < 0.01:
        return f"{value * 100:.1f}%"
    return f"{value * 100:.0f}%"


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
    env.filters["local_time"] = local_time
    env.filters["utc_iso"] = utc_iso
    env.filters["share"] = share
    env.filters["day_label"] = functools.partial(day_label, year=True)
    env.globals["percent"] = functools.partial(percent, decimals=0)
    env.globals["local_zone"] = local_zone
    env.globals["health_series"] = HEALTH_SERIES
    env.globals["recent_runs"] = RECENT_RUNS
    env.globals["recent_days"] = RECENT_DAYS
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
        # Every sparkline ends on the same day, the archive's last: they line up.
        last = max((days[-1].day for days in sites.values()), default=None)
        overviews = [site_overview(name, days, view.runs(name), last)
                     for name, days in sorted(sites.items())]
        return page(request, "index.html", sites=overviews)

    def site_page(request: Request) -> Response:
        site = site_of(request)
        days = view.counts(site)  # this site's files alone
        if not days:
            raise HTTPException(404, f"no articles of site {site}")
        overview = site_overview(site, days, view.runs(site), days[-1].day)
        return page(request, "site.html", site=site, days=list(reversed(days)),
                    overview=overview, articles=articles_chart(days),
                    health=health_chart(days))

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
        return Response(page_for_display(body, charset, style=READING_STYLE),
                        headers={**COMMON_HEADERS, "Content-Security-Policy": ORIGINAL_CSP,
                                 "Content-Type": "text/html; charset=utf-8"})

    def original_view(request: Request) -> Response:
        """The original page in the UI: a note on what was archived, and the page in a
        sandboxed frame as tall as the window."""
        record, number, _as_of = article_version(request)
        return page(request, "original.html", record=record, number=number,
                    day=archive_date(record, archive.backend), versions=record.all_versions)

    def screenshot(request: Request) -> Response:
        """The PNG of the page as it looked (``screenshot_key``), taken when it was archived."""
        record = view.record(request.path_params["id"])
        if record is None:
            raise HTTPException(404, "no such article")
        png = archive.read_screenshot(record)
        # Served only if it is a PNG, as one: with nosniff, nothing else can be read into it.
        if png is None or not png.startswith(_PNG_SIGNATURE):
            raise HTTPException(404, "this article has no screenshot")
        return Response(png, headers={**COMMON_HEADERS, "Content-Security-Policy": SCREENSHOT_CSP,
                                      "Content-Type": "image/png",
                                      "Content-Disposition": f'inline; filename="{record.id}.png"'})

    def searched(request: Request) -> Response:
        params = request.query_params
        query = params.get("q", "")
        site = params.get("site") or None
        if site is not None and not SITE_NAME_PATTERN.fullmatch(site):
            site = None
        form = {"query": query[:MAX_QUERY_CHARS], "site": site, "since": params.get("since", ""),
                "until": params.get("until", ""), "sites": sorted(view.sites()),
                "page_size": PAGE_SIZE}
        try:
            since = parse_day(form["since"], "the first date")
            until = parse_day(form["until"], "the last date")
            if since and until and since > until:
                raise BadSearch("the first date is after the last one")
            number = parse_page(params.get("page", ""))
            if not words_of(query):
                return page(request, "search.html", refused=None, results=None, **form)
            results = search_page(archive.url, query, site=site, since=since, until=until,
                                  page=number)
        except (QueryTooLong, BadSearch) as exc:
            # The form keeps what fits, for the user to shorten.
            form["since"], form["until"] = form["since"][:10], form["until"][:10]
            return page(request, "search.html", status_code=400, refused=f"Not searched: {exc}.",
                        results=None, **form)
        return page(request, "search.html", refused=None, results=results, **form)

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
        Route("/search", searched),
        Route("/sites/{site}", site_page),
        Route("/sites/{site}/{day}", day_page),
        Route("/articles/{id}", article_page),
        Route("/articles/{id}/original", original),
        Route("/articles/{id}/screenshot", screenshot),
        Route("/articles/{id}/page", original_view),
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
