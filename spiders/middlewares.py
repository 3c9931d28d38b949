"""Downloader middlewares for politeness: no redirects off the site, and retries that wait
as long as the site asks (``Retry-After``).

Scrapy already obeys robots.txt (``ROBOTSTXT_OBEY``), throttles (``DOWNLOAD_DELAY``,
``CONCURRENT_REQUESTS_PER_DOMAIN``, AutoThrottle) and retries 5xx (``RetryMiddleware``);
these fill the gaps:

- :class:`OffsiteRedirectMiddleware` sees 3xx responses before Scrapy's
  ``RedirectMiddleware`` and refuses a redirect whose target is outside the spider's
  ``allowed_domains`` or not http(s). Article requests carry ``dont_filter`` (see
  ``spiders.news``), which Scrapy's ``OffsiteMiddleware`` honours by letting them, and the
  redirects built from them, go anywhere.
- :class:`OffsiteRedirectGuardMiddleware` is the backstop for every other way a redirect
  is followed (``<meta http-equiv=refresh>``): a request that came from a redirect and
  points off the site is dropped before robots.txt or the page is fetched from that host.
- :class:`HeadMetaRefreshMiddleware` is Scrapy's ``MetaRefreshMiddleware`` without the cost
  on pages that have no refresh: Scrapy decodes a whole page to look for one in its first
  4,096 characters.
- :class:`RetryAfterMiddleware` answers a 429 or 503 that carries ``Retry-After`` by
  retrying after that long (capped at ``NEWSARCHIVE_MAX_RETRY_AFTER`` seconds), without
  blocking the reactor. Everything else, and the giving up, stays with ``RetryMiddleware``.

Refused redirects are recorded as ``offsite_redirect`` errors in the crawl's stats, and the
request fails with :class:`RedirectRefused` (a :class:`RequestRefused`, an ``IgnoreRequest``),
which an errback should not record again. Requests to non-public addresses are refused the
same way, by ``spiders.reach``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.extensions.httpcache import DummyPolicy
from scrapy.utils.response import response_status_message
from w3lib.url import safe_url_string

from normalize.metadata import parse_datetime
from spiders.hosts import host_allowed
from spiders.stats import record_error

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
DEFAULT_MAX_RETRY_AFTER = 60.0


class RequestRefused(IgnoreRequest):
    """A request one of our middlewares refused and recorded as an error already; an
    errback must not record it again."""


class RedirectRefused(RequestRefused):
    """A redirect off the site was refused; it is recorded already (``offsite_redirect``)."""


def redirect_refusal(url: str, allowed_domains: Iterable[str]) -> str | None:
    """Why a redirect to ``url`` must not be followed, or None if it may be."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "no host"
    if not host_allowed(parts.hostname, allowed_domains):
        return f"host {parts.hostname!r} outside allowed_domains"
    return None


def redirect_target(request: Request, response: Response) -> str:
    """The absolute URL a 3xx response's ``Location`` leads to, resolved as Scrapy's
    ``RedirectMiddleware`` resolves it."""
    raw = response.headers[b"Location"]
    location = safe_url_string(raw)
    if raw.startswith(b"//"):
        location = urlsplit(request.url).scheme + "://" + location.lstrip("/")
    return urljoin(request.url, location)


def _follows_redirects(request: Request, response: Response, spider: Spider | None) -> bool:
    """Whether Scrapy's ``RedirectMiddleware`` would act on this response at all."""
    meta = request.meta
    return not (
        meta.get("dont_redirect", False)
        or response.status in getattr(spider, "handle_httpstatus_list", ())
        or response.status in meta.get("handle_httpstatus_list", ())
        or meta.get("handle_httpstatus_all", False)
    )


class _OffsiteRedirectBase:
    crawler: Crawler

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler):
        return cls(crawler)

    def _allowed_domains(self) -> list[str]:
        return list(getattr(self.crawler.spider, "allowed_domains", None) or [])

    def _refuse(self, url: str, target: str, why: str) -> None:
        """Record the refusal of ``url``'s redirect to ``target`` as an ``offsite_redirect``
        error and drop the request."""
        record_error(self.crawler.stats, url, "offsite_redirect", f"redirect to {target} refused")
        logger.warning("refused redirect from %s to %s: %s", url, target, why)
        raise RedirectRefused(f"redirect to {target} refused ({why})")


class OffsiteRedirectMiddleware(_OffsiteRedirectBase):
    """Refuse 301/302/303/307/308 redirects off the spider's ``allowed_domains`` or to a
    scheme other than http(s). Its priority must be above ``RedirectMiddleware``'s (600):
    ``process_response`` runs from the highest number down."""

    def process_response(self, request: Request, response: Response,
                         spider: Spider | None = None) -> Response:
        if response.status not in REDIRECT_STATUSES or b"Location" not in response.headers:
            return response
        if not _follows_redirects(request, response, self.crawler.spider):
            return response
        target = redirect_target(request, response)
        why = redirect_refusal(target, self._allowed_domains())
        if why is not None:
            self._refuse(request.url, target, why)
        return response


class OffsiteRedirectGuardMiddleware(_OffsiteRedirectBase):
    """Drop a request produced by a redirect (it has ``redirect_urls``) that leads off the
    site, whatever followed it (a meta refresh, say). Its priority must be below
    ``RobotsTxtMiddleware``'s (100), so that not even robots.txt is fetched there."""

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if not request.meta.get("redirect_urls"):
            return
        why = redirect_refusal(request.url, self._allowed_domains())
        if why is not None:
            self._refuse(request.meta["redirect_urls"][-1], request.url, why)


def parse_retry_after(value: bytes | str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date), or None
    if it is missing or malformed. A date in the past means 0."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)  # not RFC 9110, but servers send "1.5"
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    when = parse_datetime(value)  # an HTTP-date is an RFC 822 date
    if when is None:
        return None
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


async def _sleep(seconds: float) -> None:
    """Wait without blocking the reactor (asyncio or not)."""
    try:
        from scrapy.utils.asyncio import sleep  # Scrapy >= 2.18
    except ImportError:
        from scrapy.utils.defer import maybe_deferred_to_future
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await maybe_deferred_to_future(deferLater(reactor, seconds, lambda: None))
    else:
        await sleep(seconds)


# Scrapy looks for a meta refresh in the first 4,096 characters of a page: at most this many
# bytes in an encoding that writes ASCII as ASCII (UTF-8 takes up to 4 bytes a character).
_REFRESH_WINDOW_BYTES = 4 * 4096


@functools.cache
def _ascii_compatible(encoding: str) -> bool:
    try:
        return "refresh".encode(encoding) == b"refresh"
    except (LookupError, UnicodeError):
        return False


class HeadMetaRefreshMiddleware(MetaRefreshMiddleware):
    """Scrapy's ``MetaRefreshMiddleware`` (it replaces it in the settings), which first looks
    for the word "refresh" in the bytes where a meta refresh could be. Scrapy's own decodes
    the whole page for that look, in the reactor's thread, and the decoded copy stays with
    the response while the page is archived: a megabyte or more for each page in flight."""

    def process_response(self, request: Request, response: Response,
                         spider: Spider | None = None) -> Request | Response:
        encoding = getattr(response, "encoding", None)
        if encoding and _ascii_compatible(encoding) and \
                b"refresh" not in response.body[:_REFRESH_WINDOW_BYTES].lower():
            return response
        return super().process_response(request, response)


class RetryAfterMiddleware:
    """Retry a 429 or 503 that carries ``Retry-After`` after the time it asks for, capped at
    ``NEWSARCHIVE_MAX_RETRY_AFTER`` seconds; ``RETRY_TIMES`` (or the request's
    ``max_retry_times``) bounds the retries. When they are used up the response goes on,
    so ``RetryMiddleware`` logs the give-up and the spider's errback records the status.

    Its priority must be above ``RetryMiddleware``'s (550), which would otherwise retry
    at once. Only the request waits; the rest of the crawl goes on meanwhile.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        if not settings.getbool("RETRY_ENABLED"):
            raise NotConfigured
        self.crawler = crawler
        retry_codes = {int(x) for x in settings.getlist("RETRY_HTTP_CODES")}
        self.statuses = RETRY_AFTER_STATUSES & retry_codes
        self.max_retry_times = settings.getint("RETRY_TIMES")
        self.priority_adjust = settings.getint("RETRY_PRIORITY_ADJUST")
        self.max_delay = settings.getfloat("NEWSARCHIVE_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryAfterMiddleware:
        return cls(crawler)

    async def process_response(self, request: Request, response: Response,
                               spider: Spider | None = None) -> Request | Response:
        if response.status not in self.statuses or request.meta.get("dont_retry", False):
            return response
        delay = parse_retry_after(response.headers.get(b"Retry-After"))
        if delay is None:
            return response  # RetryMiddleware's, as any other 5xx
        max_retry_times = request.meta.get("max_retry_times", self.max_retry_times)
        if request.meta.get("retry_times", 0) + 1 > max_retry_times:
            return response  # RetryMiddleware gives up and says so
        delay = min(delay, self.max_delay)
        stats = self.crawler.stats
        stats.inc_value("newsarchive/retry_after/count")
        stats.inc_value("newsarchive/retry_after/seconds", delay)
        logger.info("%s: HTTP %d, retrying in %.1f s as Retry-After asks",
                    request.url, response.status, delay)
        if delay > 0:
            await _sleep(delay)
        retry = get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=response_status_message(response.status),
            max_retry_times=max_retry_times,
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
        )
        return retry or response


class RobotsTxtOncePolicy(DummyPolicy):
    """Scrapy's HTTP cache, for robots.txt only. Scrapy's RobotsTxtMiddleware reads a site's
    robots.txt before the first request to it, and discovery reads it again for its
    ``Sitemap:`` lines: with this policy (and :class:`CrawlMemoryCacheStorage`) the site is
    asked once per crawl, as the politeness of a crawl every 30 minutes wants."""

    def should_cache_request(self, request: Request) -> bool:
        return urlsplit(request.url).path == "/robots.txt" and super().should_cache_request(request)


class CrawlMemoryCacheStorage:
    """Scrapy HTTP cache storage in the crawl's memory: what it keeps (robots.txt files, a
    few kilobytes each) lasts the crawl, never the next one."""

    def __init__(self, settings) -> None:
        self._responses: dict[bytes, Response] = {}
        self._fingerprint = None

    def open_spider(self, spider) -> None:
        self._fingerprint = spider.crawler.request_fingerprinter.fingerprint

    def close_spider(self, spider) -> None:
        self._responses.clear()

    def retrieve_response(self, spider, request: Request) -> Response | None:
        response = self._responses.get(self._fingerprint(request))
        # A copy, answering this request (the one stored answered another, whose callback
        # is not this one's); the cache middleware flags what it hands out as cached.
        return response.replace(request=request, flags=list(response.flags)) \
            if response is not None else None

    def store_response(self, spider, request: Request, response: Response) -> None:
        self._responses[self._fingerprint(request)] = response
