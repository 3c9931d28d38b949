"""The archive pipeline: a thin adapter from a fetched page to ``normalize`` and ``storage``.

Extraction and the blocking storage calls run in a reactor thread, so Scrapy's event loop
keeps downloading while a page is processed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import timezone

from scrapy.exceptions import DropItem
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from normalize.boilerplate import SiteBoilerplate
from normalize import (
    EXTRACTOR_NAME,
    EXTRACTOR_VERSION,
    canonicalize_url,
    choose_canonical_url,
    extract_article,
)
from spiders.items import FetchedPage
from spiders.stats import record_error
from storage import Archive, ArchiveError, Extractor, Record, StoreOutcome, article_id

logger = logging.getLogger(__name__)

EXTRACTOR = Extractor(name=EXTRACTOR_NAME, version=EXTRACTOR_VERSION)
BOILERPLATE_STATE = "boilerplate"


class ArchivePipeline:
    """Extracts each page and archives raw body, cleaned text and record."""

    def __init__(self, crawler, archive_url: str, run_id: str) -> None:
        self.crawler = crawler
        self.archive = Archive.open(archive_url)
        self.run_id = run_id
        self.site = ""
        self.boilerplate = SiteBoilerplate()
        # Pages are processed in reactor threads; the learner is shared by all of them.
        self._boilerplate_lock = threading.Lock()

    @classmethod
    def from_crawler(cls, crawler) -> ArchivePipeline:
        return cls(
            crawler,
            archive_url=crawler.settings.get("NEWSARCHIVE_ARCHIVE_URL"),
            run_id=crawler.settings.get("NEWSARCHIVE_RUN_ID", ""),
        )

    async def open_spider(self) -> None:
        # What earlier crawls learnt about this site's boilerplate applies from the first page.
        self.site = self.crawler.spider.site.name
        state = await maybe_deferred_to_future(
            deferToThread(self.archive.read_site_state, self.site, BOILERPLATE_STATE))
        if state:
            self.boilerplate = SiteBoilerplate.from_json(state)

    async def close_spider(self) -> None:
        with self._boilerplate_lock:
            state = self.boilerplate.to_json()
            learned = len(self.boilerplate.learned())
        self.crawler.stats.set_value("newsarchive/boilerplate/learned_lines", learned)
        try:
            await maybe_deferred_to_future(
                deferToThread(self.archive.write_site_state, self.site, BOILERPLATE_STATE, state))
        except ArchiveError as exc:
            record_error(self.crawler.stats, self.site, "storage", f"boilerplate state: {exc}")

    async def process_item(self, item: FetchedPage) -> FetchedPage:
        stats = self.crawler.stats
        try:
            outcome = await maybe_deferred_to_future(deferToThread(self.archive_page, item))
        except ArchiveError as exc:
            record_error(stats, item.url, "storage", f"{exc.__class__.__name__}: {exc}")
            raise DropItem(f"not archived: {exc}") from exc
        stats.inc_value(f"newsarchive/archive/{outcome}")
        if outcome not in ("written", "version"):
            raise DropItem(f"{outcome}: {item.url}")
        return item

    def archive_page(self, page: FetchedPage) -> str:
        """Extract and store one page (runs in a thread). Returns the outcome's name."""
        article = extract_article(page.body.decode(page.encoding, errors="replace"), page.url)
        with self._boilerplate_lock:
            self.boilerplate.observe(article.text)
            text = self.boilerplate.strip(article.text)
        if not text:
            record_error(self.crawler.stats, page.url, "no_article_text",
                         "extraction found no article text")
            return "no_text"
        canonical = choose_canonical_url(page.url, article.canonical_url)
        aid = article_id(canonical)
        when = article.published or page.fetched_at
        keys = self.archive.keys_for(page.site, when.astimezone(timezone.utc).date(), aid)
        seen_at = {page.request_url, page.url, *page.discovered_urls}
        record = Record(
            id=aid,
            site=page.site,
            url=page.url,
            canonical_url=canonical,
            aliases=tuple(sorted(seen_at - {canonical})),
            title=article.title,
            authors=article.authors,
            published=article.published,
            modified=article.modified,
            language=article.language,
            fetched_at=page.fetched_at,
            http_status=page.status,
            content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            extractor=EXTRACTOR,
            raw_key=self.archive.locate(keys.raw),
            text_key=self.archive.locate(keys.text),
            meta_key=self.archive.locate(keys.meta),
            description=article.description,
            section=article.section,
            tags=article.tags,
            image_url=article.image_url,
            metadata_sources=dict(article.sources),
        )
        result = self.archive.store(
            record,
            raw_body=page.body,
            charset=page.encoding,
            text=text,
            run_id=self.run_id,
            seen_urls={canonicalize_url(url) for url in seen_at},
            refetch=page.refetch,
        )
        if result.outcome is StoreOutcome.WRITTEN and result.record.near_duplicate_of:
            self.crawler.stats.inc_value("newsarchive/archive/near_duplicate")
        if result.outcome is not StoreOutcome.WRITTEN:
            logger.debug("%s: %s (article %s)", result.outcome.value, page.url, result.record.id)
        return result.outcome.value
