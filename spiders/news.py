"""The discovery spider: sitemaps (via robots.txt or direct), RSS/Atom feeds and section
fronts lead to article pages, which go to the archive pipeline.

URLs whose canonical form is already archived are skipped before they are fetched, unless
their sitemap ``<lastmod>`` or feed date is newer than our last capture (then they are
fetched again, to catch updates). Every URL discovery lists for an article ends up in its
record's ``aliases``. The look-ups talk to the archive and so run in threads, off the reactor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
import scrapy
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.gz import gunzip, gzip_magic_number
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.internet import error as net
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed

from normalize import is_article_page
from spiders.config import SiteConfig, compile_user_pattern
from spiders.discovery import Entry, page_links, parse_feed, parse_sitemap
from spiders.discovery_state import STATE_NAME, DiscoveryLog, DiscoveryState
from spiders.download import HeadersTooLarge
from spiders.hosts import host_allowed
from spiders.items import FetchedPage, articles_requested
from spiders.listings import Listings
from spiders.middlewares import RequestRefused
from spiders.stats import record_error
from storage import Archive, ArchiveError, canonicalize_url
from storage.summary import SummaryNotes, UrlSummary

logger = logging.getLogger(__name__)

# How much of a page is searched for og:type / JSON-LD when deciding it is an article.
_HEAD_CHARS = 200_000
# Links read from one front: a section front has hundreds; a page with a million is not a
# front, and following it would cost the crawl its turn at everything else.
MAX_FRONT_LINKS = 5_000
# Sitemaps and feeds are asked for conditionally (spiders.discovery_state): a 304 is an
# answer for their callback, not an HTTP error.
_NOT_MODIFIED_IS_AN_ANSWER = {"handle_httpstatus_list": [304]}
# Parallel archive look-ups when checking a sitemap's URLs before fetching them: on S3 a
# look-up is a round trip (20 ms and more), and a chunk's look-ups hold up its fetches.
_LOOKUP_THREADS = 16
# Entries of a sitemap looked up in the archive and turned into requests at a time.
_DISCOVERY_CHUNK = 500


@dataclass(frozen=True)
class Window:
    """A backfill's date range: only articles listed as published in it are wanted."""

    since: date
    """First day (UTC), included."""
    until: date
    """Last day (UTC), included."""

    def holds(self, day: date) -> bool:
        """True if ``day`` is in the range."""
        return self.since <= day <= self.until


def entry_day(entry: Entry) -> date | None:
    """The UTC day a listing says its article was published: ``news:publication_date`` or a
    feed's published date, else its ``lastmod``; None when it gives no date."""
    when = entry.published or entry.date_hint
    return when.astimezone(timezone.utc).date() if when else None


class NewsSpider(scrapy.Spider):
    """Crawls one configured site once.

    Three modes: a normal crawl (discovery, then the articles it finds); a backfill plan
    (``window`` and ``plan``: discovery only, the in-range articles collected in ``plan``
    and nothing fetched or written); a backfill partition (``entries``: exactly these
    articles, no discovery).
    """

    name = "news"

    def __init__(self, site: SiteConfig, archive_url: str, window: Window | None = None,
                 plan: dict[str, dict] | None = None, entries: list[Entry] | None = None,
                 listings_file: str | None = None, full: bool = False, **kwargs: Any) -> None:
        super().__init__(name=f"news-{site.name}", **kwargs)
        self.site = site
        self.window = window
        # canonical URL -> {"url", "day", "published", "date_hint", "listed_as"}; filled in
        # plan mode, where nothing is fetched beyond robots.txt, sitemaps and feeds.
        self.plan = plan
        self.entries = entries
        self.allowed_domains = list(site.allowed_domains)
        self._archive_url = archive_url
        self._archive: Archive | None = None
        self._article_pattern = compile_user_pattern(site.article_pattern) \
            if site.article_pattern else None
        self._seen_sitemaps: set[str] = set()
        self._fronts_seen: set[str] = {canonicalize_url(u) for u in site.start_urls}
        self._fronts_left = site.max_link_pages
        # Per article: every URL discovery listed it under, whether it is queued, and how
        # many of its URLs the archive has been told about (in the fetched page, or as
        # aliases of a skipped one); on disk, in the run's workspace.
        self._listings = Listings(Path(listings_file) if listings_file else None)
        self._discovery_slot = DeferredSemaphore(1)
        self._asked_for_articles = False  # articles_requested sent
        self._full = full
        # Read at the start (see start()): the site's discovery state, for a scheduled crawl
        # (spiders.discovery_state), and its URL summary (storage.summary).
        self._discovery: DiscoveryLog | None = None
        # The sitemaps and feeds with an article that failed, once the listings are closed
        # (None before); "all" when an article failed after that.
        self._unfinished: set[str] | None = None
        self._failed_after_close = False
        self.listings_closed = Deferred()
        """Fires when the crawl's listings are closed and their late aliases stored (with
        what they add to :attr:`summary_notes`)."""
        self._summary = UrlSummary()
        self._notes_lock = threading.Lock()
        self._notes: SummaryNotes | None = None

    @property
    def archive(self) -> Archive:
        """The crawl's one archive (the ArchiveRun extension's, which the pipelines store
        through), for the look-ups before fetching."""
        if self._archive is None:
            from spiders.archiving import ArchiveRun

            run = self.crawler.get_extension(ArchiveRun)
            self._archive = run.archive if run is not None else Archive.open(self._archive_url)
        return self._archive

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any) -> NewsSpider:
        kwargs.setdefault("archive_url", crawler.settings.get("NEWSARCHIVE_ARCHIVE_URL"))
        kwargs.setdefault("listings_file", crawler.settings.get("NEWSARCHIVE_LISTINGS_FILE"))
        return super().from_crawler(crawler, *args, **kwargs)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.plan is None:
            # A plan fetches no article (it needs no summary) and reads every sitemap in its
            # range whatever their state; a scheduled crawl reads what changed.
            await maybe_deferred_to_future(deferToThread(self._read_state))
            self.crawler.stats.set_value("newsarchive/discovery/summary_urls", len(self._summary))
            if self._discovery is not None:
                self.crawler.stats.set_value("newsarchive/discovery/full_read",
                                             self._discovery.full)
        if self.entries is not None:
            async for request in self._discovered(self.entries, "backfill"):
                yield request
            return
        for url in self.site.sitemaps:
            self._seen_sitemaps.add(url)
            yield scrapy.Request(url, callback=self.parse_sitemap, errback=self.on_error,
                                 dont_filter=True, meta=self._sitemap_meta(0),
                                 headers=self._conditional(url))
        for url in self.site.feeds:
            yield scrapy.Request(url, callback=self.parse_feed, errback=self.on_error,
                                 dont_filter=True, meta=_NOT_MODIFIED_IS_AN_ANSWER,
                                 headers=self._conditional(url))
        if self.window is not None and self.site.start_urls:
            # Links on a front carry no dates: a backfill cannot tell which are in range.
            logger.info("backfill: start_urls are not followed (links carry no dates)")
            return
        for url in self.site.start_urls:
            yield scrapy.Request(url, callback=self.parse_front, errback=self.on_error,
                                 dont_filter=True)

    def _read_state(self) -> None:
        """Read the site's URL summary and, for a scheduled crawl, its discovery state (in a
        thread: a few requests to the archive). An archive that cannot answer costs
        look-ups and full reads, never an article."""
        try:
            self._summary = self.archive.url_summary(self.site.name)
        except ArchiveError as exc:
            logger.warning("cannot read the site's URL summary, looking each URL up: %s", exc)
        if self.entries is not None or self.window is not None:
            return
        try:
            state = DiscoveryState.from_json(
                self.archive.read_site_state(self.site.name, STATE_NAME))
        except ArchiveError as exc:
            logger.warning("cannot read the site's discovery state, reading all: %s", exc)
            state = DiscoveryState()
        full = self._full or state.full_read_due(self.site.full_read_every_days)
        self._discovery = DiscoveryLog(state, full)

    def _conditional(self, url: str) -> dict[str, str]:
        return self._discovery.conditional_headers(url) if self._discovery else {}

    def _not_modified(self, response: Response) -> bool:
        """Whether a sitemap or feed answered 304: unchanged since its last complete read."""
        if response.status != 304:
            return False
        self.crawler.stats.inc_value("newsarchive/discovery/not_modified")
        if self._discovery is not None:
            self._discovery.seen(_asked_url(response))
        return True

    def _document_read(self, response: Response) -> None:
        """A sitemap or feed was read: remembered, if all it lists is handled."""
        if self._discovery is not None:
            self._discovery.read(
                _asked_url(response), _header(response, b"ETag"), _header(response, b"Last-Modified"),
                response.meta.get("index_lastmod"))

    def discovery_state(self, reason: str) -> DiscoveryState | None:
        """The site's discovery state to store after a crawl that ended for ``reason``
        with nothing left in its spool; None when there is none to store (a crawl cut
        short, a backfill, a state that did not change)."""
        if self._discovery is None or reason != "finished" or self._failed_after_close:
            return None
        if self._unfinished is None:
            self._unfinished = self._listings.unfinished_sources()
        state = self._discovery.next_state(self._unfinished)
        return None if state == self._discovery.state else state

    @property
    def summary_notes(self) -> SummaryNotes:
        """What this crawl adds to the site's URL summary: the URLs it archived, and those
        its look-ups found archived; written as it goes, and the rest at its end."""
        with self._notes_lock:
            if self._notes is None:
                run_id = self.crawler.settings.get("NEWSARCHIVE_RUN_ID", "") or "adhoc"
                self._notes = self.archive.summary_notes(self.site.name, run_id)
            return self._notes

    def note_captured(self, urls: Iterable[str], when: datetime) -> None:
        """Remember URLs that lead to a complete record captured at ``when`` (from any
        thread), for the site's URL summary."""
        self.summary_notes.note(urls, when)

    def article_failed(self, listed_url: str) -> None:
        """An article could not be had this time, for a reason that may pass: the sitemap
        or feed that listed it is read again next time (on the reactor's thread)."""
        if self._unfinished is not None:
            # Its listing is closed (a page stored from the spool at the very end): which
            # document listed it is no longer known, so none is recorded.
            self._failed_after_close = True
            return
        self._listings.failed(canonicalize_url(listed_url))

    # -- discovery ---------------------------------------------------------------------

    async def parse_sitemap(self, response: Response) -> AsyncIterator[scrapy.Request]:
        """A robots.txt, a sitemap index or a urlset."""
        depth = response.meta.get("sitemap_depth", 0)
        if self._not_modified(response):
            return
        if response.url.endswith("/robots.txt"):
            for url in sitemap_urls_from_robots(response.body, base_url=response.url):
                for request in self._sitemap_request(url, depth + 1):
                    yield request
            return
        # Decompressed and parsed in a thread: a sitemap may be 50 MB (max_sitemap_bytes),
        # seconds of work the reactor must not wait for.
        body = await maybe_deferred_to_future(deferToThread(self._sitemap_body, response))
        if body is None:
            return
        try:
            kind, entries = await maybe_deferred_to_future(
                deferToThread(parse_sitemap, body, response.url))
        except (lxml.etree.XMLSyntaxError, ValueError) as exc:
            record_error(self.crawler.stats, response.url, "bad_sitemap", str(exc) or "empty")
            return
        if kind == "sitemapindex":
            for entry in entries:
                if self.window is not None and entry.date_hint is not None \
                        and entry.date_hint.astimezone(timezone.utc).date() < self.window.since:
                    # Unchanged since before the range: it cannot list an article of it.
                    self.crawler.stats.inc_value("newsarchive/discovered/sitemaps_before_range")
                    continue
                if self._discovery is not None and \
                        self._discovery.skip_unchanged(entry.url, entry.date_hint):
                    # Its lastmod is that of its last complete read: nothing new in it.
                    self.crawler.stats.inc_value("newsarchive/discovery/sitemaps_unchanged")
                    self._seen_sitemaps.add(entry.url)
                    continue
                for request in self._sitemap_request(entry.url, depth + 1, entry.date_hint):
                    yield request
            return
        self._document_read(response)
        async for request in self._discovered(entries, "sitemap", source=_asked_url(response)):
            yield request

    def _sitemap_request(self, url: str, depth: int,
                         lastmod: datetime | None = None) -> Iterable[scrapy.Request]:
        """A request for a sitemap an index (with ``lastmod``) or robots.txt lists, ``depth``
        levels below a configured URL, unless it was read already or lies too deep."""
        # Sitemap indexes may list each other or themselves; fetch each sitemap once.
        if url in self._seen_sitemaps:
            record_error(self.crawler.stats, url, "sitemap_loop",
                         "listed again by a sitemap index; read once")
            return ()
        # A site can also nest fresh indexes without end; each level costs a request.
        if depth > self.site.max_sitemap_depth:
            record_error(self.crawler.stats, url, "sitemap_too_deep",
                         f"{depth} levels of sitemap indexes below a configured URL; "
                         f"max_sitemap_depth is {self.site.max_sitemap_depth}")
            return ()
        self._seen_sitemaps.add(url)
        return (scrapy.Request(url, callback=self.parse_sitemap, errback=self.on_error,
                               meta={**self._sitemap_meta(depth), "index_lastmod": lastmod},
                               headers=self._conditional(url)),)

    def _sitemap_meta(self, depth: int) -> dict:
        # download_maxsize bounds the body as sent and after Content-Encoding alike.
        return {"sitemap_depth": depth, "download_maxsize": self.site.max_sitemap_bytes,
                **_NOT_MODIFIED_IS_AN_ANSWER}

    def _sitemap_body(self, response: Response) -> bytes | None:
        body = response.body
        if gzip_magic_number(response):
            try:
                body = gunzip(body, max_size=self.site.max_sitemap_bytes)
            except Exception as exc:  # gunzip raises IOError, DecompressionMaxSizeExceeded, ...
                kind = "too_large" if hasattr(exc, "max_size") else "bad_sitemap"
                record_error(self.crawler.stats, response.url, kind, f"gzip: {exc}")
                return None
        if not body.strip():
            record_error(self.crawler.stats, response.url, "bad_sitemap", "empty sitemap")
            return None
        return body

    async def parse_feed(self, response: Response) -> AsyncIterator[scrapy.Request]:
        """An RSS 2.0, Atom or JSON Feed."""
        if self._not_modified(response):
            return
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1")
        try:
            entries = await maybe_deferred_to_future(
                deferToThread(parse_feed, response.body, response.url, content_type))
        except (lxml.etree.XMLSyntaxError, ValueError) as exc:
            record_error(self.crawler.stats, response.url, "bad_feed", str(exc) or "empty")
            return
        self._document_read(response)
        async for request in self._discovered(entries, "feed", source=_asked_url(response)):
            yield request

    async def parse_front(self, response: Response, depth: int = 0) -> AsyncIterator[scrapy.Request]:
        """A section front: its links that look like articles are fetched as articles, and
        its other links within the site are followed as fronts, to ``follow_depth``. A page
        reached that way which says it is an article (og:type, JSON-LD) is one."""
        if not isinstance(response, scrapy.http.TextResponse):
            return
        # Parsed in a thread: however large or hostile the page, the reactor goes on.
        is_article, links, capped = await maybe_deferred_to_future(
            deferToThread(_read_front, response, depth > 0))
        if capped:
            record_error(self.crawler.stats, response.url, "too_many_links",
                         f"a front with more than {MAX_FRONT_LINKS} links: the first "
                         f"{MAX_FRONT_LINKS} were read")
        if is_article:
            self.crawler.stats.inc_value("newsarchive/discovered/link")
            for item in self.parse_article(response, via="link", date_hint=None,
                                           canonical=canonicalize_url(response.url)):
                yield item
            return
        entries = [Entry(url) for url, _ in links if self._looks_like_article(url)]
        async for request in self._discovered(entries, "link"):
            yield request
        # Fronts go follow_depth - 1 levels below the start URLs; their article links are
        # one more.
        if depth + 2 > self.site.follow_depth:
            return
        for url, canonical in links:
            if self._fronts_left <= 0:
                self.crawler.stats.inc_value("newsarchive/discovered/fronts_capped")
                return
            if canonical in self._fronts_seen or self._listings.is_queued(canonical) \
                    or not self._wanted(url, article=False):
                continue
            self._fronts_seen.add(canonical)
            self._fronts_left -= 1
            yield scrapy.Request(url, callback=self.parse_front, errback=self.on_error,
                                 cb_kwargs={"depth": depth + 1})

    def _looks_like_article(self, url: str) -> bool:
        if self._article_pattern:
            return True  # the pattern decides in _wanted
        # Without a pattern: a slug-shaped last path segment, as news URLs have.
        segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        return segment.count("-") >= 2

    def _wanted(self, url: str, article: bool = True) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return False
        if not host_allowed(parts.hostname or "", self.allowed_domains):
            return False
        return not article or not self._article_pattern or bool(self._article_pattern.search(url))

    async def _discovered(self, entries: list[Entry], via: str,
                          source: str | None = None) -> AsyncIterator[scrapy.Request]:
        """Requests for the wanted, new, not yet archived entries, made and handed to the
        scheduler a chunk at a time, one sitemap (or feed, or front) at a time: a sitemap
        lists thousands of articles, and twenty of them arriving together would otherwise
        hold all their requests in memory at once, before the scheduler stores them."""
        await maybe_deferred_to_future(self._discovery_slot.acquire())
        try:
            for first in range(0, len(entries), _DISCOVERY_CHUNK):
                for request in await self._article_requests(
                        entries[first:first + _DISCOVERY_CHUNK], via, source):
                    yield request
        finally:
            self._discovery_slot.release()

    async def _article_requests(self, entries: list[Entry], via: str,
                                source: str | None) -> list[scrapy.Request]:
        """Requests for the entries that are wanted, new in this crawl and not yet archived
        (``source``: the sitemap or feed that lists them)."""
        stats = self.crawler.stats
        fresh: dict[str, tuple[str, datetime | None]] = {}
        # In a thread, a chunk at a time: a sitemap's hundred thousand URLs take seconds to
        # canonicalise, and the reactor gets a turn between chunks.
        canonicals = await maybe_deferred_to_future(
            deferToThread(lambda: [canonicalize_url(e.url) for e in entries]))
        for entry, canonical in zip(entries, canonicals):
            url, hint = entry.url, entry.date_hint
            stats.inc_value(f"newsarchive/discovered/{via}")
            if not self._wanted(url):
                stats.inc_value("newsarchive/discovered/filtered")
                continue
            if self.window is not None:
                day = entry_day(entry)
                if day is None or not self.window.holds(day):
                    stats.inc_value("newsarchive/discovered/" + (
                        "undated" if day is None else "out_of_range"))
                    continue
            self._listings.add(canonical, url)
            if self.plan is not None:
                self._plan_entry(canonical, entry)
                continue
            # Reserve before the look-up below yields to the reactor: another sitemap or
            # feed callback may list the same article meanwhile.
            if not self._listings.queue(canonical, source):
                continue
            fresh[canonical] = (url, hint)
        if not fresh:
            return []
        entries_now = [(c, hint, self._listings.urls(c)) for c, (_, hint) in fresh.items()]
        for canonical, _hint, urls in entries_now:
            self._listings.reported(canonical, urls)
        try:
            decisions, settled, new = await maybe_deferred_to_future(
                deferToThread(self._triage, entries_now))
        except ArchiveError as exc:
            # The archive will say again at write time; fetching is never the wrong choice.
            logger.warning("archive look-up failed, fetching all: %s", exc)
            decisions, settled, new = {canonical: "fetch" for canonical in fresh}, 0, 0
        stats.inc_value("newsarchive/skipped/settled_by_summary", settled)
        if new:
            stats.inc_value("newsarchive/discovery/new_by_summary", new)
        requests = []
        for canonical, decision in decisions.items():
            if decision == "skip":
                stats.inc_value("newsarchive/skipped/already_archived")
                continue
            if decision == "refetch":
                stats.inc_value("newsarchive/refetched/newer_date")
            url, hint = fresh[canonical]
            # dont_filter: duplicates are weeded out by canonical URL above, and a redirect
            # to an article fetched already must still arrive, to record where it came from.
            requests.append(scrapy.Request(
                url, callback=self.parse_article, errback=self.on_error, dont_filter=True,
                cb_kwargs={"via": via, "date_hint": hint, "canonical": canonical,
                           "refetch": decision == "refetch"},
            ))
        if requests and not self._asked_for_articles:
            self._asked_for_articles = True
            self.crawler.signals.send_catch_log(signal=articles_requested)
        return requests

    def _plan_entry(self, canonical: str, entry: Entry) -> None:
        planned = self.plan.setdefault(canonical, {
            "url": entry.url, "day": entry_day(entry).isoformat(),
            "published": entry.published.isoformat() if entry.published else None,
            "date_hint": entry.date_hint.isoformat() if entry.date_hint else None,
        })
        planned["listed_as"] = sorted(self._listings.urls(canonical))

    def _triage(self, entries: list[tuple[str, datetime | None, frozenset[str]]]
                ) -> tuple[dict[str, str], int, int]:
        """``fetch``, ``refetch`` (archived, but listed with a newer date) or ``skip`` for
        each canonical URL, how many the summary settled as archived, and how many as new;
        a skipped article learns the URLs it was listed under.

        The site's URL summary settles most of them without a request: an article it knows,
        under every URL listed now, captured no earlier than the listing's date, is skipped;
        when the summary is complete (every segment read), an article it knows under none of
        the URLs is new, and fetched. The others are looked up in the archive's index, the
        truth, and join the summary if archived."""
        decisions: dict[str, str] = {}
        unsettled = []
        new = 0
        known = self._summary.captured_at(
            [url for canonical, _, urls in entries for url in (canonical, *urls)])
        at = 0
        for entry in entries:
            canonical, hint, urls = entry
            captured, listed = known[at], known[at + 1:at + 1 + len(urls)]
            at += 1 + len(urls)
            if captured is not None and all(listed) and (hint is None or hint <= captured):
                decisions[canonical] = "skip"
            elif self._summary.complete and captured is None and not any(listed):
                # New: no run that wrote the summary archived it under any of these URLs.
                # A look-up would only precede the URL claim that storing makes anyway.
                decisions[canonical] = "fetch"
                new += 1
            else:
                unsettled.append(entry)
        settled = len(decisions) - new

        def decide(entry) -> str:
            canonical, hint, urls = entry
            record = self.archive.lookup(canonical)
            if record is None:
                return "fetch"
            if hint is not None and hint > record.last_seen:
                return "refetch"
            record = self.archive.add_aliases(record, urls)
            self.note_captured({canonical, *record.urls}, record.last_seen)
            return "skip"
        if unsettled:
            with ThreadPoolExecutor(min(_LOOKUP_THREADS, len(unsettled))) as pool:
                decisions.update(zip((e[0] for e in unsettled), pool.map(decide, unsettled)))
        return decisions, settled, new

    async def closed(self, reason: str) -> None:
        """Record URLs that discovery listed for an article after it had been handled."""
        try:
            late = {} if self.plan is not None else dict(self._listings.late())  # a plan writes nothing
            if self._unfinished is None:
                self._unfinished = self._listings.unfinished_sources()
            self._listings.close()
            if late:
                await maybe_deferred_to_future(deferToThread(self._add_late_aliases, late))
        finally:
            self.listings_closed.callback(None)

    def _add_late_aliases(self, late: dict[str, frozenset[str]]) -> None:
        for canonical, urls in late.items():
            if all(self._summary.captured_at(urls)):
                continue  # the article knows every one of them already
            try:
                # Stored by this crawl, most likely (listed again after it was fetched): its
                # record, as written, saves the look-up's two reads.
                record = self.archive.stored_lately(canonical) or self.archive.lookup(canonical)
                if record is not None:
                    record = self.archive.add_aliases(record, urls)
                    self.note_captured({canonical, *record.urls}, record.last_seen)
            except ArchiveError as exc:
                record_error(self.crawler.stats, canonical, "storage", f"aliases: {exc}")

    # -- articles ----------------------------------------------------------------------

    def parse_article(self, response: Response, via: str, date_hint: datetime | None,
                      canonical: str = "", refetch: bool = False):
        """An article page: hand it to the pipeline as received."""
        self.crawler.stats.inc_value("newsarchive/fetched")
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        if not isinstance(response, scrapy.http.TextResponse) or (
            content_type and "html" not in content_type
        ):
            record_error(self.crawler.stats, response.url, "not_html",
                         f"content type {content_type or 'unknown'}")
            return
        if looks_binary(response.body):
            record_error(self.crawler.stats, response.url, "not_html",
                         f"binary content labelled {content_type or 'as nothing'}")
            return
        listed = self._listings.urls(canonical)
        self._listings.reported(canonical, listed)
        yield FetchedPage(
            site=self.site.name,
            url=response.url,
            request_url=response.request.meta.get("redirect_urls", [response.url])[0],
            status=response.status,
            body=response.body,
            encoding=response.encoding,
            fetched_at=datetime.now(timezone.utc),
            discovered_via=via,
            date_hint=date_hint,
            discovered_urls=tuple(sorted(listed)),
            refetch=refetch,
            request_headers=[(name, value)
                             for name, value in _header_pairs(response.request.headers)
                             if name.lower() not in _CREDENTIAL_HEADERS],
            response_headers=_header_pairs(response.headers),
        )

    def on_error(self, failure: Failure) -> None:
        """Record a failed request; the crawl goes on."""
        request = failure.request if hasattr(failure, "request") else None
        # Named by the URL discovery listed, not where redirects led.
        url = request.meta.get("redirect_urls", [request.url])[0] if request is not None else "?"
        if failure.check(RequestRefused):
            return  # recorded by the middleware that refused it
        if failure.check(IgnoreRequest) and "robots.txt" in str(failure.value):
            # The site asked us not to: not an error; Scrapy counts it (robotstxt/forbidden).
            self.crawler.stats.inc_value("newsarchive/skipped/robots_txt")
            return
        if failure.check(HttpError):
            status = failure.value.response.status
            kind, reason = f"http_{status}", f"HTTP {status}"
        else:
            kind, reason = fetch_error_kind(failure.value)
        record_error(self.crawler.stats, url, kind, reason)
        if request is not None and request.callback == self.parse_article \
                and kind in _ERRORS_THAT_MAY_PASS:
            self.article_failed(url)


def _asked_url(response: Response) -> str:
    """The URL a response was asked for, before any redirect."""
    return response.meta.get("redirect_urls", [response.url])[0]


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None


def _read_front(response: scrapy.http.TextResponse,
                reached_by_link: bool) -> tuple[bool, list[tuple[str, str]], bool]:
    """Whether a page reached by following links says it is an article; else the links of
    the front (at most MAX_FRONT_LINKS), each with its canonical form, and whether there
    were more. Runs in a thread."""
    if reached_by_link and is_article_page(response.text[:_HEAD_CHARS]):
        return True, [], False
    links, more = page_links(response, MAX_FRONT_LINKS)
    return False, [(url, canonicalize_url(url)) for url in links], more


def looks_binary(body: bytes) -> bool:
    """Whether a body is binary data rather than markup: in its first 64 KB, more than
    5% control bytes (other than whitespace), or invalid as UTF-8 and as any 8-bit text
    (many C1 bytes). NUL padding around markup is junk, not text, and counts too."""
    sample = body[:65536]
    if not sample:
        return False
    # Runs on the reactor for every page: count with bytes.translate, in C.
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls / len(sample) > 0.05


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def fetch_error_kind(error: BaseException) -> tuple[str, str]:
    """A failed download as an error kind and a one-line reason a person can act on, judged
    by the error's type: Scrapy's own (since 2.19 its download handlers wrap Twisted's, the
    original kept as ``__cause__``) or Twisted's (those Scrapy lets through)."""
    message = str(error) or error.__class__.__name__
    headers_too_large = _cause(error, HeadersTooLarge)
    if headers_too_large is not None:
        return "too_large", str(headers_too_large)
    if isinstance(error, _TIMEOUTS):
        return "timeout", f"no complete answer within the download timeout: {message}"
    if isinstance(error, (CannotResolveHostError, net.DNSLookupError)):
        return "dns", f"host not found: {message}"
    if isinstance(error, (DownloadConnectionRefusedError, net.ConnectError)):
        return "connection", message
    if isinstance(error, (DownloadCancelledError, CancelledError)):
        # Scrapy cancels a download for its size: announced over DOWNLOAD_MAXSIZE (its
        # message says so), or past it as it arrives (no message). One cancelled for taking
        # too long is raised as a DownloadTimeoutError, above.
        return "too_large", str(error) or "download cancelled (over the size limit)"
    if isinstance(error, IgnoreRequest):
        # Scrapy refuses these with a bare IgnoreRequest: a body that decompresses past the
        # size limit is raised from its decompression error (which has ``max_size``); a
        # redirect loop is told by the message alone.
        if any(hasattr(cause, "max_size") for cause in _causes(error)):
            return "too_large", message
        if "redirect" in message.lower():
            return "too_many_redirects", message
    if isinstance(error, ResponseDataLossError):
        return "connection", "the connection closed before the whole body came (data loss)"
    if isinstance(error, (DownloadFailedError, ResponseFailed)):
        failed = _cause(error, ResponseFailed)
        reasons = "; ".join(str(r.value) for r in getattr(failed, "reasons", None) or ())
        return "connection", reasons or message
    return "fetch", repr(error)


# Errors of an article's fetch that may not happen again: its sitemap or feed is read
# again next time (see spiders.discovery_state). The others (a 404, a page too large, ...)
# would fail the same way.
_ERRORS_THAT_MAY_PASS = frozenset({"timeout", "dns", "connection", "fetch", "http_408",
                                   "http_429", *(f"http_{status}" for status in range(500, 600))})

# Download timeouts: Scrapy's, Twisted's (the connection's, a Deferred's) and the OS's.
_TIMEOUTS = (DownloadTimeoutError, net.TimeoutError, DeferTimeoutError, TimeoutError)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then the errors behind it: causes and contexts, and the reasons Twisted
    collects in ``ResponseFailed`` (Scrapy wraps those in its own errors)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        pending.extend(getattr(r, "value", r) for r in getattr(current, "reasons", None) or ())


def _cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The ``kind`` error behind ``error`` (or ``error`` itself), or None."""
    return next((e for e in _causes(error) if isinstance(e, kind)), None)


# Request headers never archived: credentials (Scrapy adds Proxy-Authorization for a
# proxy URL with a password in it), which the WARC request record would otherwise keep.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _header_pairs(headers) -> list[tuple[str, str]]:
    """Scrapy's headers as ``(name, value)`` pairs, every value of a repeated header kept."""
    return [(name.decode("latin-1"), value.decode("latin-1"))
            for name, values in headers.items() for value in values]
