"""The item pipelines: thin Scrapy components that hand a fetched page through the crawl's
archive side (:class:`spiders.archiving.ArchiveRun`), in three steps that overlap:

1. :class:`ExtractPipeline` starts the page's extraction in a worker process (and, for a
   site with screenshots, its rendering in the renderer process);
2. :class:`WarcPipeline`, meanwhile, compresses the body once and writes the WARC record, in
   a storage thread;
3. :class:`StorePipeline` waits for the extraction (and the screenshot) and stores the page
   (or keeps it in the spool while the archive cannot take it), in a storage thread.

Scrapy's reactor only hands work out and collects results, so it keeps downloading while
pages are processed, and Scrapy's back-pressure (``SCRAPER_SLOT_MAX_ACTIVE_SIZE``: no new
request is sent while the pages being processed exceed it) bounds the pages in flight, so
memory stays flat however long the crawl. Stats are changed here, on the reactor thread.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from scrapy.exceptions import DropItem, NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future

from spiders.archiving import ArchiveRun, Outcome, deferred_from_future
from spiders.extraction_pool import ExtractionFailed
from spiders.items import FetchedPage
from spiders.rendering import ScreenshotFailed
from storage.compress import DeflatedBody

__all__ = ["ExtractPipeline", "PageInWork", "PageNotStored", "StorePipeline", "WarcPipeline"]


class PageNotStored(DropItem):
    """A page the pipelines did not store as a new article or version: its ``outcome``
    (``duplicate``, ``aliased``, ``spooled``, ``no_text``, ...) says why."""

    def __init__(self, outcome: str, url: str) -> None:
        super().__init__(f"{outcome}: {url}")
        self.outcome = outcome


@dataclass
class PageInWork:
    """A fetched page on its way through the pipelines."""

    page: FetchedPage
    """The page as fetched."""
    extraction: Future = field(repr=False)
    """Its extraction, under way in a worker process."""
    deflated: DeflatedBody | None = field(default=None, repr=False)
    """Its body compressed, once the WARC step is done."""
    screenshot: Future | None = field(default=None, repr=False)
    """Its screenshot, under way in the renderer process; None for a site without."""


def _archive_run(crawler) -> ArchiveRun:
    run = crawler.get_extension(ArchiveRun)
    if run is None:
        raise NotConfigured("the archive pipelines need the ArchiveRun extension "
                            "(spiders.archiving.ArchiveRun in EXTENSIONS)")
    return run


class ExtractPipeline:
    """Starts the extraction of each page in a worker process, and its screenshot."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.run = _archive_run(crawler)

    @classmethod
    def from_crawler(cls, crawler) -> ExtractPipeline:
        return cls(crawler)

    def process_item(self, item: FetchedPage) -> PageInWork:
        self.run.pages_started(item)
        return PageInWork(item, self.run.extract(item), screenshot=self.run.render(item))


class WarcPipeline:
    """Compresses each page's body (once, for the WARC record and ``raw.html.gz``) and
    writes its WARC record, in a storage thread, while the page is being extracted."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.run = _archive_run(crawler)

    @classmethod
    def from_crawler(cls, crawler) -> WarcPipeline:
        return cls(crawler)

    async def process_item(self, item: PageInWork) -> PageInWork:
        item.deflated, errors = await maybe_deferred_to_future(
            self.run.in_storage(self.run.compress, item.page))
        self.run.tally(Outcome("", errors))
        return item


class StorePipeline:
    """Stores each extracted page in the archive, or keeps it in the spool."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.run = _archive_run(crawler)

    @classmethod
    def from_crawler(cls, crawler) -> StorePipeline:
        return cls(crawler)

    async def process_item(self, item: PageInWork) -> FetchedPage:
        page = item.page
        try:
            outcome = await self._store(item)
        finally:
            self.run.pages_done(page)
        self.run.tally(outcome)
        if outcome.name not in ("written", "version"):
            raise PageNotStored(outcome.name, page.url)
        return page

    async def _store(self, item: PageInWork) -> Outcome:
        page = item.page
        try:
            extraction = await maybe_deferred_to_future(deferred_from_future(item.extraction))
        except ExtractionFailed as exc:
            if item.screenshot is not None:
                item.screenshot.cancel()  # if not begun: nothing to store it with
            return Outcome("failed", [(page.url, exc.kind, str(exc))])
        self.run.add_extract_cpu(extraction.cpu_seconds)
        screenshot = await self._screenshot(item)
        return await maybe_deferred_to_future(
            self.run.in_storage(self.run.store_or_spool, page, extraction, item.deflated,
                                screenshot))

    async def _screenshot(self, item: PageInWork) -> bytes | None:
        """The page's screenshot, or None (a site without; a failure, recorded as a
        warning: the page is stored all the same)."""
        if item.screenshot is None:
            return None
        try:
            return await maybe_deferred_to_future(deferred_from_future(item.screenshot))
        except ScreenshotFailed as exc:
            self.run.tally(Outcome("", warnings=[(item.page.url, exc.kind, str(exc))]))
            return None
