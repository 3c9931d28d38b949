"""The archive pipeline: a thin adapter from a fetched page to ``normalize`` and ``storage``.

Each page takes two paths at once: its extraction goes to a pool of worker processes
(:mod:`spiders.extraction_pool`, one per core), and its WARC record is written by a storage
thread; once both are done, a storage thread stores the article. Scrapy's reactor only
hands work out and collects results, so it keeps downloading while pages are processed,
and Scrapy's back-pressure (``SCRAPER_SLOT_MAX_ACTIVE_SIZE``: no new request is sent while
the pages being processed exceed it) bounds the pages in flight, so memory stays flat
however long the crawl.

Nothing fetched is lost: a page the archive cannot take is retried, then kept in the run's
workspace (:mod:`spiders.workspace`) and stored when the archive answers again, at the end
of the crawl, or by the next crawl of the site.
"""

from __future__ import annotations

import hashlib
import http
import logging
import resource
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from scrapy.exceptions import DropItem
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from normalize.boilerplate import SiteBoilerplate
from normalize import EXTRACTOR_NAME, EXTRACTOR_VERSION, Article, settle_article_language
from spiders.extraction_pool import (
    SOFT_BLOCK_CHECK_WORDS,
    ExtractionFailed,
    ExtractionPool,
    PageExtraction,
    default_pool_size,
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
    canonicalize_url,
    choose_canonical_url,
)
from storage.catalog import CatalogWriter
from storage.catalog import recover_pending as catalog_recover
from storage.compress import DeflatedBody
from storage.warc import WarcWriter
from storage.warc import recover_pending as warc_recover

logger = logging.getLogger(__name__)

__all__ = ["ArchivePipeline", "BOILERPLATE_STATE", "EXTRACTOR", "SOFT_BLOCK_CHECK_WORDS",
           "article_fields"]

EXTRACTOR = Extractor(name=EXTRACTOR_NAME, version=EXTRACTOR_VERSION)
BOILERPLATE_STATE = "boilerplate"
# Pauses between attempts to store a page while the archive is unreachable (each attempt
# already has boto3's own retries); after the last, the page waits in the spool.
STORE_RETRY_PAUSES = (1.0, 3.0)
# How often, in seconds, the spool is offered to the archive again during a crawl.
FLUSH_INTERVAL = 5.0
# Threads that write to the archive. Storing is mostly waiting (on S3, a page is about ten
# requests), so more threads than cores keep the storage round trips overlapped.
DEFAULT_STORAGE_THREADS = 8


class ArchivePipeline:
    """Extracts each page and archives raw body, cleaned text and record; writes the run's
    WARC files and catalog; keeps pages in the run's workspace while the archive is
    unreachable and stores them when it comes back (or on the next crawl)."""

    def __init__(self, crawler, archive_url: str, run_id: str, data_dir: Path,
                 extraction_workers: int = 0,
                 storage_threads: int = DEFAULT_STORAGE_THREADS) -> None:
        self.crawler = crawler
        self.archive = Archive.open(archive_url)
        self.run_id = run_id
        self.data_dir = data_dir
        self.extraction_workers = extraction_workers or default_pool_size()
        self.site = ""
        self.boilerplate = SiteBoilerplate()
        # Pages are stored in several threads; the learner is shared by all of them.
        self._boilerplate_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: LoopingCall | None = None
        self.workspace: Workspace | None = None
        self.warc: WarcWriter | None = None
        self.catalog: CatalogWriter | None = None
        self.pool: ExtractionPool | None = None
        self._storage = ThreadPool(minthreads=1, maxthreads=storage_threads,
                                   name="newsarchive-storage")
        # Where the CPU goes, per page (summed): extraction in the workers, storing in the
        # storage threads. Added from several threads, hence the lock.
        self._cpu_lock = threading.Lock()
        self._cpu = {"extract": 0.0, "store": 0.0}
        # Pages between process_item's start and end: Scrapy's back-pressure bounds them.
        self._in_flight = 0
        self._in_flight_bytes = 0

    @classmethod
    def from_crawler(cls, crawler) -> ArchivePipeline:
        settings = crawler.settings
        return cls(
            crawler,
            archive_url=settings.get("NEWSARCHIVE_ARCHIVE_URL"),
            run_id=settings.get("NEWSARCHIVE_RUN_ID", "") or "adhoc",
            data_dir=Path(settings.get("NEWSARCHIVE_DATA_DIR") or ".newsarchive"),
            extraction_workers=settings.getint("NEWSARCHIVE_EXTRACTION_WORKERS", 0),
            storage_threads=settings.getint("NEWSARCHIVE_STORAGE_THREADS",
                                            DEFAULT_STORAGE_THREADS),
        )

    def _in_storage(self, function, *args) -> defer.Deferred:
        """Run ``function`` in a storage thread."""
        from twisted.internet import reactor

        return deferToThreadPool(reactor, self._storage, function, *args)

    async def open_spider(self) -> None:
        from twisted.internet import reactor

        site = self.crawler.spider.site
        self.site = site.name
        self._storage.start()
        # Also when the crawl is cut short and close_spider never runs: no thread or worker
        # process outlives the reactor.
        reactor.addSystemEventTrigger("during", "shutdown", self._shut_down)
        # Workers start in the background: the first pages arrive after robots.txt and the
        # sitemaps, by which time they are ready.
        self.pool = ExtractionPool(self.extraction_workers, site.extract_timeout)
        # Claimed by the crawl's entry point (spiders.run) before Scrapy wrote in it; a
        # crawl started another way claims its own.
        claimed = self.crawler.settings.get("NEWSARCHIVE_WORKSPACE")
        self.workspace = Workspace(Path(claimed)) if claimed else \
            Workspace.create(self.data_dir, self.site, self.run_id)
        self.warc = WarcWriter(self.archive.backend, self.workspace.warc_dir, self.site,
                               self.run_id)
        self.catalog = CatalogWriter(self.archive.backend, self.workspace.catalog_dir,
                                     self.run_id)
        # What earlier crawls learnt about this site's boilerplate applies from the first page.
        try:
            state = await maybe_deferred_to_future(
                self._in_storage(self.archive.read_site_state, self.site, BOILERPLATE_STATE))
        except ArchiveError as exc:
            logger.warning("cannot read the site's boilerplate state: %s", exc)
            state = None
        if state:
            self.boilerplate = SiteBoilerplate.from_json(state)
        # Finish what crawls of this site that died on this machine left undone.
        await maybe_deferred_to_future(self._in_storage(self._recover_abandoned))
        self._flusher = LoopingCall(self._flush_in_background)
        self._flusher.start(FLUSH_INTERVAL, now=False)

    async def close_spider(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        stats = self.crawler.stats
        left = await maybe_deferred_to_future(self._in_storage(self._finish))
        stats.set_value("newsarchive/spool/left", left)
        with self._boilerplate_lock:
            state = self.boilerplate.to_json()
            learned = len(self.boilerplate.learned())
        stats.set_value("newsarchive/boilerplate/learned_lines", learned)
        try:
            await maybe_deferred_to_future(
                self._in_storage(self.archive.write_site_state, self.site, BOILERPLATE_STATE,
                                 state))
        except ArchiveError as exc:
            record_error(stats, self.site, "storage", f"boilerplate state: {exc}")
        # The workers were stopped once the spool was stored (in _finish); now the threads.
        if self.pool.replaced:
            stats.set_value("newsarchive/extract/workers_replaced", self.pool.replaced)
        self._storage.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self._cpu_lock:
            stats.set_value("newsarchive/cpu/extract_seconds", round(self._cpu["extract"], 3))
            stats.set_value("newsarchive/cpu/store_seconds", round(self._cpu["store"], 3))
        stats.set_value("newsarchive/cpu/crawl_process_seconds",
                        round(usage.ru_utime + usage.ru_stime, 3))

    def _shut_down(self) -> None:
        """Last resort at reactor shutdown: stop the workers and the storage threads."""
        if self.pool is not None:
            self.pool.close(wait=False)
        if self._storage.started:
            self._storage.stop()

    async def process_item(self, item: FetchedPage) -> FetchedPage:
        stats = self.crawler.stats
        self._in_flight += 1
        self._in_flight_bytes += len(item.body)
        stats.max_value("newsarchive/pipeline/max_pages_in_flight", self._in_flight)
        stats.max_value("newsarchive/pipeline/max_bytes_in_flight", self._in_flight_bytes)
        try:
            outcome = await self._process(item)
        finally:
            self._in_flight -= 1
            self._in_flight_bytes -= len(item.body)
        stats.inc_value(f"newsarchive/archive/{outcome}")
        if outcome not in ("written", "version"):
            raise DropItem(f"{outcome}: {item.url}")
        return item

    async def _process(self, page: FetchedPage) -> str:
        # Both at once: the extraction in a worker process; in a thread, the body is
        # compressed (once, for the WARC record and raw.html.gz) and the WARC record written.
        extraction = self.pool.submit(page.body, page.encoding, page.url, page.status)
        deflated = await maybe_deferred_to_future(self._in_storage(self._compress, page))
        try:
            result = await maybe_deferred_to_future(_deferred_from_future(extraction))
        except ExtractionFailed as exc:
            record_error(self.crawler.stats, page.url, exc.kind, str(exc))
            return "failed"
        with self._cpu_lock:
            self._cpu["extract"] += result.cpu_seconds
        return await maybe_deferred_to_future(
            self._in_storage(self._store_or_spool, page, result, deflated))

    def _compress(self, page: FetchedPage) -> DeflatedBody:
        """The page's body compressed, and its WARC record written unless it was already
        (a page retried after an outage)."""
        started = time.thread_time()
        try:
            deflated = DeflatedBody.of(page.body)
        finally:
            self._add_cpu("store", time.thread_time() - started)
        if page.warc is None:
            page.warc = self._write_warc(page, deflated)
        return deflated

    def _store_or_spool(self, page: FetchedPage, extraction: PageExtraction,
                        deflated: DeflatedBody | None = None) -> str:
        """Store a page, retrying while the archive is unreachable; then keep it in the spool."""
        started = time.thread_time()
        try:
            prepared = self._prepare(page, extraction)
            if isinstance(prepared, str):
                return prepared
            for attempt, pause in enumerate((*STORE_RETRY_PAUSES, None)):
                try:
                    return self._store(page, *prepared, deflated)
                except ArchiveUnavailable as exc:
                    if pause is None:
                        return self._spool(page, exc)
                    logger.info("archive unreachable (attempt %d), retrying in %ss: %s",
                                attempt + 1, pause, exc)
                    time.sleep(pause)
                except ArchiveError as exc:
                    record_error(self.crawler.stats, page.url, "storage",
                                 f"{exc.__class__.__name__}: {exc}")
                    return "failed"
            raise AssertionError("unreachable")
        except Exception as exc:  # a bug of ours: say so in the manifest, keep crawling
            logger.exception("failed to archive %s", page.url)
            record_error(self.crawler.stats, page.url, "internal",
                         f"{exc.__class__.__name__}: {exc}")
            return "failed"
        finally:
            self._add_cpu("store", time.thread_time() - started)

    def _spool(self, page: FetchedPage, why: ArchiveUnavailable) -> str:
        """Keep a page the archive cannot take in the workspace. If the workspace cannot
        keep it either (its disk is full too), the crawl stops: every page fetched from then
        on would be lost, and a page never fetched is fetched by the next crawl."""
        try:
            self.workspace.spool(page)
        except OSError as exc:
            record_error(self.crawler.stats, page.url, "storage",
                         f"archive unavailable ({why}) and the page cannot be kept in "
                         f"{self.workspace.spool_dir}: {exc}; the crawl stops")
            self._stop_crawl("archive_unavailable")
            return "failed"
        logger.warning("archive unavailable, %s kept in the spool: %s", page.url, why)
        return "spooled"

    def _stop_crawl(self, reason: str) -> None:
        """Ask the engine, from a storage thread, to close the spider with ``reason``."""
        from scrapy.utils.defer import deferred_from_coro
        from twisted.internet import reactor

        engine = self.crawler.engine
        reactor.callFromThread(
            lambda: deferred_from_coro(engine.close_spider_async(reason=reason)))

    def _write_warc(self, page: FetchedPage,
                    deflated: DeflatedBody) -> tuple[str, int, int] | None:
        started = time.thread_time()
        try:
            location = self.warc.write(
                url=page.url, fetched_at=page.fetched_at, status=page.status,
                reason=_reason(page.status), request_headers=page.request_headers,
                response_headers=page.response_headers, body=page.body, deflated=deflated)
        except (ArchiveError, OSError) as exc:
            record_error(self.crawler.stats, page.url, "warc", str(exc))
            return None
        finally:
            self._add_cpu("store", time.thread_time() - started)
        return (location.key, location.offset, location.length)

    def _add_cpu(self, what: str, seconds: float) -> None:
        with self._cpu_lock:
            self._cpu[what] += seconds

    # -- the spool -----------------------------------------------------------------------

    def _flush_in_background(self) -> None:
        if self.workspace.spool_size() and not self._flush_lock.locked():
            self._in_storage(self._flush, self.workspace).addErrback(
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
        """End of the crawl: store the spool (which needs the workers), stop the workers,
        then upload WARC files and write the catalog (which needs pyarrow's memory: not at
        the same time as the workers')."""
        left = self._flush(self.workspace)
        self.pool.close()
        for what, close in (("warc", self.warc.close), ("catalog", self.catalog.close)):
            try:
                close()
            except ArchiveError as exc:
                record_error(self.crawler.stats, self.site, "storage", f"{what}: {exc}")
        return left

    def _recover_abandoned(self) -> None:
        stats = self.crawler.stats
        # Each abandoned workspace is held (its lock) while it is worked on: a crawl of the
        # same site starting meanwhile skips it.
        for workspace in Workspace.abandoned(self.data_dir, self.site):
            try:
                logger.info("finishing the work of run %s, which ended early", workspace.run_id)
                left = self._flush(workspace)
                try:
                    warc_recover(self.archive.backend, workspace.warc_dir, is_alive=_never_alive)
                    catalog_recover(self.archive.backend, workspace.catalog_dir,
                                    is_alive=_never_alive)
                    manifest = workspace.kept_manifest()
                    if manifest is not None:
                        self.archive.put_run_manifest(manifest)
                        workspace.forget_manifest()
                except ArchiveError as exc:
                    logger.warning("cannot finish run %s yet: %s", workspace.run_id, exc)
                    continue
                if left == 0 and workspace.remove_if_done():
                    stats.inc_value("newsarchive/recovered_runs")
            finally:
                workspace.release()

    # -- one page --------------------------------------------------------------------------

    def archive_page(self, page: FetchedPage) -> str:
        """Extract (in a worker process) and store one page; runs in a storage thread.
        Returns the outcome's name.

        Raises ArchiveError (ArchiveUnavailable when storage cannot be reached)."""
        try:
            extraction = self.pool.extract(page.body, page.encoding, page.url, page.status)
        except ExtractionFailed as exc:
            record_error(self.crawler.stats, page.url, exc.kind, str(exc))
            return "failed"
        prepared = self._prepare(page, extraction)
        if isinstance(prepared, str):
            return prepared
        return self._store(page, *prepared)

    def _prepare(self, page: FetchedPage, extraction: PageExtraction) -> str | tuple[Record, str]:
        """The record and cleaned text of an extracted page, or the outcome's name when
        there is nothing to store. Done once per page: the boilerplate learner counts it."""
        if extraction.blocked:
            block = extraction.block
            record_error(self.crawler.stats, page.url, f"blocked_{block.kind.value}",
                         block.reason)
            return "blocked"
        # The language is checked here, not in the workers: the detector's model is loaded
        # once, in this process, instead of in each worker.
        article = settle_article_language(extraction.article)
        with self._boilerplate_lock:
            text = self.boilerplate.observe_and_strip(article.text)
        if not text:
            record_error(self.crawler.stats, page.url, "no_article_text",
                         "extraction found no article text")
            return "no_text"
        canonical = choose_canonical_url(page.url, article.canonical_url)
        aid = article_id(canonical)
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
            raw_key="", text_key="", meta_key="",  # the archive places it (Archive.store)
            charset=page.encoding,
            paywalled=extraction.paywalled,
            warc_key=page.warc[0] if page.warc else None,
            warc_offset=page.warc[1] if page.warc else None,
        )
        return record, text

    def _store(self, page: FetchedPage, record: Record, text: str,
               deflated: DeflatedBody | None = None) -> str:
        """Store a prepared page (``deflated``: its body compressed already, if it was).
        Raises ArchiveError (ArchiveUnavailable when storage cannot be reached)."""
        seen_at = {page.request_url, page.url, *page.discovered_urls}
        result = self.archive.store(
            record,
            raw_body=page.body if deflated is None else deflated,
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


def _deferred_from_future(future: Future) -> defer.Deferred:
    """A Deferred that fires, on the reactor thread, with the result of a future that a
    thread completes; whatever the reactor (Scrapy's asyncio one, or another)."""
    from twisted.internet import reactor

    deferred: defer.Deferred = defer.Deferred()

    def settle(done: Future) -> None:
        exc = done.exception()
        if exc is not None:
            reactor.callFromThread(deferred.errback, exc)
        else:
            reactor.callFromThread(deferred.callback, done.result())

    future.add_done_callback(settle)
    return deferred


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
