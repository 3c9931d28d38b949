"""The archive pipeline: a thin adapter from a fetched page to ``normalize`` and ``storage``.

Extraction and the blocking storage calls run in reactor threads (a bounded pool, and
Scrapy bounds the items in flight), so Scrapy's event loop keeps downloading while a page is
processed. Nothing fetched is lost: a page the archive cannot take is retried, then kept in
the run's workspace (:mod:`spiders.workspace`) and stored when the archive answers again,
at the end of the crawl, or by the next crawl of the site.
"""

from __future__ import annotations

import hashlib
import http
import logging
import threading
import time
from datetime import timezone
from pathlib import Path

from scrapy.exceptions import DropItem
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from normalize.boilerplate import SiteBoilerplate
from normalize import (
    EXTRACTOR_NAME,
    Article,
    EXTRACTOR_VERSION,
    PageKind,
    canonicalize_url,
    choose_canonical_url,
    classify_page,
    extract_article,
)
from spiders.items import FetchedPage
from spiders.stats import record_error
from spiders.workspace import Workspace
from storage import (
    Archive,
    ArchiveError,
    ArchiveUnavailable,
    Extractor,
    Record,
    StoreOutcome,
    article_id,
)
from storage.catalog import CatalogWriter
from storage.catalog import recover_pending as catalog_recover
from storage.warc import WarcWriter
from storage.warc import recover_pending as warc_recover

logger = logging.getLogger(__name__)

EXTRACTOR = Extractor(name=EXTRACTOR_NAME, version=EXTRACTOR_VERSION)
BOILERPLATE_STATE = "boilerplate"
# Pauses between attempts to store a page while the archive is unreachable (each attempt
# already has boto3's own retries); after the last, the page waits in the spool.
STORE_RETRY_PAUSES = (1.0, 3.0)
# Pages with fewer words than this are checked for CAPTCHAs, consent walls and paywalls.
SOFT_BLOCK_CHECK_WORDS = 300
# How often, in seconds, the spool is offered to the archive again during a crawl.
FLUSH_INTERVAL = 5.0


class ArchivePipeline:
    """Extracts each page and archives raw body, cleaned text and record; writes the run's
    WARC files and catalog; keeps pages in the run's workspace while the archive is
    unreachable and stores them when it comes back (or on the next crawl)."""

    def __init__(self, crawler, archive_url: str, run_id: str, data_dir: Path) -> None:
        self.crawler = crawler
        self.archive = Archive.open(archive_url)
        self.run_id = run_id
        self.data_dir = data_dir
        self.site = ""
        self.boilerplate = SiteBoilerplate()
        # Pages are processed in reactor threads; the learner is shared by all of them.
        self._boilerplate_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: LoopingCall | None = None
        self.workspace: Workspace | None = None
        self.warc: WarcWriter | None = None
        self.catalog: CatalogWriter | None = None

    @classmethod
    def from_crawler(cls, crawler) -> ArchivePipeline:
        return cls(
            crawler,
            archive_url=crawler.settings.get("NEWSARCHIVE_ARCHIVE_URL"),
            run_id=crawler.settings.get("NEWSARCHIVE_RUN_ID", "") or "adhoc",
            data_dir=Path(crawler.settings.get("NEWSARCHIVE_DATA_DIR") or ".newsarchive"),
        )

    async def open_spider(self) -> None:
        self.site = self.crawler.spider.site.name
        self.workspace = Workspace.create(self.data_dir, self.site, self.run_id)
        self.warc = WarcWriter(self.archive.backend, self.workspace.warc_dir, self.site,
                               self.run_id)
        self.catalog = CatalogWriter(self.archive.backend, self.workspace.catalog_dir,
                                     self.run_id)
        # What earlier crawls learnt about this site's boilerplate applies from the first page.
        try:
            state = await maybe_deferred_to_future(
                deferToThread(self.archive.read_site_state, self.site, BOILERPLATE_STATE))
        except ArchiveError as exc:
            logger.warning("cannot read the site's boilerplate state: %s", exc)
            state = None
        if state:
            self.boilerplate = SiteBoilerplate.from_json(state)
        # Finish what crawls of this site that died on this machine left undone.
        await maybe_deferred_to_future(deferToThread(self._recover_abandoned))
        self._flusher = LoopingCall(self._flush_in_background)
        self._flusher.start(FLUSH_INTERVAL, now=False)

    async def close_spider(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        stats = self.crawler.stats
        left = await maybe_deferred_to_future(deferToThread(self._finish))
        stats.set_value("newsarchive/spool/left", left)
        with self._boilerplate_lock:
            state = self.boilerplate.to_json()
            learned = len(self.boilerplate.learned())
        stats.set_value("newsarchive/boilerplate/learned_lines", learned)
        try:
            await maybe_deferred_to_future(
                deferToThread(self.archive.write_site_state, self.site, BOILERPLATE_STATE, state))
        except ArchiveError as exc:
            record_error(stats, self.site, "storage", f"boilerplate state: {exc}")

    async def process_item(self, item: FetchedPage) -> FetchedPage:
        stats = self.crawler.stats
        outcome = await maybe_deferred_to_future(deferToThread(self._archive_or_spool, item))
        stats.inc_value(f"newsarchive/archive/{outcome}")
        if outcome not in ("written", "version"):
            raise DropItem(f"{outcome}: {item.url}")
        return item

    def _archive_or_spool(self, page: FetchedPage) -> str:
        """Store a page, retrying while the archive is unreachable; then keep it in the spool."""
        if page.warc is None:
            page.warc = self._write_warc(page)
        for attempt, pause in enumerate((*STORE_RETRY_PAUSES, None)):
            try:
                return self.archive_page(page)
            except ArchiveUnavailable as exc:
                if pause is None:
                    self.workspace.spool(page)
                    logger.warning("archive unreachable, %s kept in the spool: %s", page.url, exc)
                    return "spooled"
                logger.info("archive unreachable (attempt %d), retrying in %ss: %s",
                            attempt + 1, pause, exc)
                time.sleep(pause)
            except ArchiveError as exc:
                record_error(self.crawler.stats, page.url, "storage",
                             f"{exc.__class__.__name__}: {exc}")
                return "failed"
            except Exception as exc:  # a bug of ours: say so in the manifest, keep crawling
                logger.exception("failed to archive %s", page.url)
                record_error(self.crawler.stats, page.url, "internal",
                             f"{exc.__class__.__name__}: {exc}")
                return "failed"
        raise AssertionError("unreachable")

    def _write_warc(self, page: FetchedPage) -> tuple[str, int, int] | None:
        try:
            location = self.warc.write(
                url=page.url, fetched_at=page.fetched_at, status=page.status,
                reason=_reason(page.status), request_headers=page.request_headers,
                response_headers=page.response_headers, body=page.body)
        except (ArchiveError, OSError) as exc:
            record_error(self.crawler.stats, page.url, "warc", str(exc))
            return None
        return (location.key, location.offset, location.length)

    # -- the spool -----------------------------------------------------------------------

    def _flush_in_background(self) -> None:
        if self.workspace.spool_size() and not self._flush_lock.locked():
            deferToThread(self._flush, self.workspace).addErrback(
                lambda failure: logger.error("flushing the spool failed: %s", failure.value))

    def _flush(self, workspace: Workspace) -> int:
        """Store spooled pages until the archive fails again; returns how many are left."""
        with self._flush_lock:
            stats = self.crawler.stats
            for path, page in workspace.spooled():
                try:
                    outcome = self.archive_page(page)
                except ArchiveUnavailable:
                    break
                except ArchiveError as exc:
                    record_error(stats, page.url, "storage", f"{exc.__class__.__name__}: {exc}")
                    continue  # not a page storage will take; kept for a person to look at
                workspace.unspool(path)
                stats.inc_value("newsarchive/spool/flushed")
                stats.inc_value(f"newsarchive/archive/{outcome}")
            return workspace.spool_size()

    def _finish(self) -> int:
        """End of the crawl: store the spool, upload WARC files and the catalog."""
        left = self._flush(self.workspace)
        for what, close in (("warc", self.warc.close), ("catalog", self.catalog.close)):
            try:
                close()
            except ArchiveError as exc:
                record_error(self.crawler.stats, self.site, "storage", f"{what}: {exc}")
        return left

    def _recover_abandoned(self) -> None:
        stats = self.crawler.stats
        for workspace in Workspace.abandoned(self.data_dir, self.site):
            if workspace.root == self.workspace.root:
                continue
            logger.info("finishing the work of run %s, which ended early", workspace.run_id)
            left = self._flush(workspace)
            try:
                warc_recover(self.archive.backend, workspace.warc_dir, is_alive=_never_alive)
                catalog_recover(self.archive.backend, workspace.catalog_dir, is_alive=_never_alive)
                manifest = workspace.kept_manifest()
                if manifest is not None:
                    self.archive.put_run_manifest(manifest)
                    workspace.forget_manifest()
            except ArchiveError as exc:
                logger.warning("cannot finish run %s yet: %s", workspace.run_id, exc)
                continue
            if left == 0 and workspace.remove_if_done():
                stats.inc_value("newsarchive/recovered_runs")

    def archive_page(self, page: FetchedPage) -> str:
        """Extract and store one page (runs in a thread). Returns the outcome's name.

        Raises ArchiveError (ArchiveUnavailable when storage cannot be reached)."""
        html = page.body.decode(page.encoding, errors="replace")
        article = extract_article(html, page.url)
        paywalled = False
        # CAPTCHAs, consent walls and teasers all come with little text; classifying means
        # a second parse, so long articles (nearly every page) skip it.
        if page.status != 200 or len(article.text.split()) < SOFT_BLOCK_CHECK_WORDS:
            block = classify_page(html, article.text, status=page.status)
            if block.blocked:
                record_error(self.crawler.stats, page.url, f"blocked_{block.kind.value}",
                             block.reason)
                return "blocked"
            paywalled = block.kind is PageKind.PAYWALLED
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
            **article_fields(article),
            fetched_at=page.fetched_at,
            http_status=page.status,
            content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            extractor=EXTRACTOR,
            raw_key=self.archive.locate(keys.raw),
            text_key=self.archive.locate(keys.text),
            meta_key=self.archive.locate(keys.meta),
            charset=page.encoding,
            paywalled=paywalled,
            warc_key=page.warc[0] if page.warc else None,
            warc_offset=page.warc[1] if page.warc else None,
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
        if result.outcome in (StoreOutcome.WRITTEN, StoreOutcome.VERSION):
            self.catalog.add(result.record, text)
        if result.outcome is not StoreOutcome.WRITTEN:
            logger.debug("%s: %s (article %s)", result.outcome.value, page.url, result.record.id)
        return result.outcome.value


def article_fields(article: Article) -> dict:
    """The record fields an extraction fills (the rest come from the fetch)."""
    return {
        "title": article.title,
        "authors": article.authors,
        "published": article.published,
        "modified": article.modified,
        "language": article.language,
        "description": article.description,
        "section": article.section,
        "tags": article.tags,
        "image_url": article.image_url,
        "metadata_sources": dict(article.sources),
    }


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _never_alive(_run_id: str) -> bool:
    # Only abandoned workspaces are recovered: every run in them is over.
    return False
