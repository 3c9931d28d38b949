"""The archive side of one crawl (a Scrapy extension, one per crawl process): the crawl's
one :class:`storage.Archive`, its workspace, WARC and catalog writers, extraction workers,
page renderer (sites with screenshots) and storage threads, and the work done with them.

The item pipelines (:mod:`spiders.pipelines`) hand each page through it: extraction in a
worker process, compression and the WARC record in a storage thread, then storing (or, while
the archive cannot take it, keeping it in the workspace's spool). On ``spider_opened`` it
finishes what crawls of the site that died left in their workspaces (:meth:`recover`); on
``spider_closed`` it stores the spool, uploads the WARC files and writes the catalog.

Storage threads never touch the crawl's stats (Scrapy's stats collector is not
thread-safe, and the crawl is judged by them): what a thread did comes back as
:class:`Outcome` values, which the reactor thread tallies.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from normalize.boilerplate import SiteBoilerplate
from spiders.discovery_state import STATE_NAME as DISCOVERY_STATE
from spiders.extraction_pool import (
    ExtractionFailed,
    ExtractionPool,
    PageExtraction,
    default_pool_size,
)
from spiders.items import FetchedPage, articles_requested
from spiders.page import BOILERPLATE_STATE, Problem, canonical_seen_urls, page_record, settle
from spiders.rendering import (
    PageRenderer,
    RenderSettings,
    ScreenshotFailed,
    declared_content_type,
)
from spiders.stats import record_error, record_warning
from spiders.workspace import Workspace
from storage import Archive, ArchiveError, ArchiveUnavailable, S3Backend, StoreOutcome
from storage.catalog import CatalogWriter
from storage.compress import DeflatedBody
from storage.warc import WarcWriter

logger = logging.getLogger(__name__)

# How often, in seconds, the spool is offered to the archive again during a crawl.
FLUSH_INTERVAL = 5.0
# Threads that write to the archive. Into S3, storing is mostly waiting (a new article is
# four round trips one after the other), so as many threads as the S3 client has
# connections (storage.backends) keep them overlapped; into a directory, more threads than
# cores only contend: 4 against 8 (same code, same runs, 3 rounds) gave 1.59x against 1.55x
# the naive design on distinct pages and 1.65x against 1.49x on near copies, faster in every
# round, and less of the crawl process's CPU (README, Throughput).
LOCAL_STORAGE_THREADS = 4
S3_STORAGE_THREADS = 32


@dataclass
class Outcome:
    """What was done with one page off the reactor, for the reactor to count."""

    name: str
    """``written``, ``version``, ``duplicate``, ``aliased``, ``in_progress``, ``spooled``,
    ``failed``, ``blocked`` or ``no_text``: counted as ``newsarchive/archive/<name>``; empty
    for errors that are not a page's outcome (a page left in the spool for a person, a WARC
    file not uploaded)."""
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    """Errors to record: (url, kind, reason)."""
    near_duplicate: bool = False
    """A new article flagged as the near duplicate of an archived one."""
    from_spool: bool = False
    """Stored from the spool (a page kept while the archive was unavailable)."""
    screenshot: bool = False
    """A screenshot was stored with the page."""
    retry_url: str = ""
    """The URL a page that failed for a reason that may pass was listed under (a soft
    block, a storage failure): its sitemap or feed is read again next time."""
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    """Warnings to record, (url, kind, reason): what failed without costing the page (its
    screenshot)."""


class ArchiveRun:
    """The archive side of one crawl; see the module. Item pipelines reach it through
    ``crawler.get_extension(ArchiveRun)``."""

    def __init__(self, crawler, *, archive_url: str, run_id: str, data_dir: Path,
                 workspace: Path, extraction_workers: int = 0,
                 storage_threads: int = 0) -> None:
        self.crawler = crawler
        self.archive = Archive.open(archive_url, run_id=run_id)
        """The crawl's one archive: the spider's look-ups and every write go through it,
        so its in-process locks keep this process's threads apart."""
        self.run_id = run_id
        self.data_dir = data_dir
        self._claimed_workspace = workspace
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
        self.renderer: PageRenderer | None = None
        """The page renderer, for a site with screenshots (spiders.rendering)."""
        if not storage_threads:
            storage_threads = (S3_STORAGE_THREADS if isinstance(self.archive.backend, S3Backend)
                               else LOCAL_STORAGE_THREADS)
        self._storage = ThreadPool(minthreads=1, maxthreads=storage_threads,
                                   name="newsarchive-storage")
        # Where the CPU goes, per page (summed): extraction in the workers, storing in the
        # storage threads. Added from several threads, hence the lock.
        self._cpu_lock = threading.Lock()
        self._cpu = {"extract": 0.0, "store": 0.0}
        # Pages between the first pipeline and the last: Scrapy's back-pressure bounds them.
        self._in_flight = 0
        self._in_flight_bytes = 0

    @classmethod
    def from_crawler(cls, crawler) -> ArchiveRun:
        settings = crawler.settings
        if not settings.get("NEWSARCHIVE_WORKSPACE"):
            # A crawl that stores claims its workspace first (spiders.run); a backfill plan,
            # which stores nothing, has none.
            raise NotConfigured("no run workspace: nothing is stored")
        run = cls(
            crawler,
            archive_url=settings.get("NEWSARCHIVE_ARCHIVE_URL"),
            run_id=settings.get("NEWSARCHIVE_RUN_ID", "") or "adhoc",
            data_dir=Path(settings.get("NEWSARCHIVE_DATA_DIR") or ".newsarchive"),
            workspace=Path(settings["NEWSARCHIVE_WORKSPACE"]),
            extraction_workers=settings.getint("NEWSARCHIVE_EXTRACTION_WORKERS", 0),
            storage_threads=settings.getint("NEWSARCHIVE_STORAGE_THREADS", 0),
        )
        crawler.signals.connect(run.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(run.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(run.articles_requested, signal=articles_requested)
        return run

    # -- on the reactor -------------------------------------------------------------------

    def in_storage(self, function, *args) -> defer.Deferred:
        """Run ``function`` in a storage thread."""
        from twisted.internet import reactor

        return deferToThreadPool(reactor, self._storage, function, *args)

    def articles_requested(self) -> None:
        """The spider asked for its first articles: the workers start while they download
        (a page that comes first, from the spool, starts them itself)."""
        if self.pool is not None:
            self.pool.start()

    def extract(self, page: FetchedPage) -> Future:
        """Start the extraction of ``page`` in a worker process."""
        return self.pool.submit(page.body, page.encoding, page.url, page.status)

    def render(self, page: FetchedPage) -> Future | None:
        """Start rendering ``page``'s screenshot in the renderer process; None for a site
        without screenshots."""
        if self.renderer is None:
            return None
        return self.renderer.submit(page.body, page.url,
                                    declared_content_type(page.response_headers))

    def tally(self, outcome: Outcome) -> None:
        """Count what a storage thread did (on the reactor thread only)."""
        stats = self.crawler.stats
        for url, kind, reason in outcome.errors:
            record_error(stats, url, kind, reason)
        for url, kind, reason in outcome.warnings:
            record_warning(stats, url, kind, reason)
        if outcome.name:
            stats.inc_value(f"newsarchive/archive/{outcome.name}")
        if outcome.near_duplicate:
            stats.inc_value("newsarchive/archive/near_duplicate")
        if outcome.from_spool:
            stats.inc_value("newsarchive/spool/flushed")
        if outcome.screenshot:
            stats.inc_value("newsarchive/screenshot/stored")
        if outcome.retry_url and hasattr(self.crawler.spider, "article_failed"):
            self.crawler.spider.article_failed(outcome.retry_url)

    def pages_started(self, page: FetchedPage) -> None:
        """A page entered the pipelines (on the reactor thread)."""
        self._in_flight += 1
        self._in_flight_bytes += len(page.body)
        stats = self.crawler.stats
        stats.max_value("newsarchive/pipeline/max_pages_in_flight", self._in_flight)
        stats.max_value("newsarchive/pipeline/max_bytes_in_flight", self._in_flight_bytes)

    def pages_done(self, page: FetchedPage) -> None:
        """A page left the pipelines (on the reactor thread)."""
        self._in_flight -= 1
        self._in_flight_bytes -= len(page.body)

    def add_extract_cpu(self, seconds: float) -> None:
        with self._cpu_lock:
            self._cpu["extract"] += seconds

    async def spider_opened(self, spider) -> None:
        from twisted.internet import reactor

        site = spider.site
        self.site = site.name
        self._storage.start()
        # Also when the crawl is cut short and spider_closed never comes: no thread or
        # worker process outlives the reactor.
        reactor.addSystemEventTrigger("during", "shutdown", self._shut_down)
        # Its workers start when the spider first asks for articles (articles_requested),
        # in the background: by the time the first page arrives they are ready.
        self.pool = ExtractionPool(self.extraction_workers, site.extract_timeout)
        if site.screenshot:  # Chromium starts in the background too
            self.renderer = PageRenderer(RenderSettings(
                timeout=site.screenshot_timeout, allowed_domains=site.allowed_domains,
                allow_private_hosts=site.allow_private_hosts,
                user_agent=self.crawler.settings.get("USER_AGENT") or ""))
        # Claimed by the crawl's entry point (spiders.run) before Scrapy wrote in it.
        self.workspace = Workspace(self._claimed_workspace)
        self.warc = WarcWriter(self.archive.backend, self.workspace.warc_dir, self.site,
                               self.run_id)
        self.catalog = CatalogWriter(self.archive.backend, self.workspace.catalog_dir,
                                     self.run_id)
        # Near-duplicate index entries wait in memory for a flush, and links are corrected
        # after a record is written: journalled here, a crawl that dies leaves them to the
        # next, as it leaves its WARC files and catalog rows.
        self.archive.keep_journal(self.workspace.near_dir)
        # What earlier crawls learnt about this site's boilerplate applies from the first page.
        try:
            state = await maybe_deferred_to_future(
                self.in_storage(self.archive.read_site_state, self.site, BOILERPLATE_STATE))
        except ArchiveError as exc:
            logger.warning("cannot read the site's boilerplate state: %s", exc)
            state = None
        if state:
            self.boilerplate = SiteBoilerplate.from_json(state)
        # Finish what crawls of this site that died left undone.
        recovered, outcomes = await maybe_deferred_to_future(self.in_storage(self.recover))
        for outcome in outcomes:
            self.tally(outcome)
        if recovered:
            self.crawler.stats.inc_value("newsarchive/recovered_runs", recovered)
        self._flusher = LoopingCall(self._flush_in_background)
        self._flusher.start(FLUSH_INTERVAL, now=False)

    async def spider_closed(self, spider, reason: str) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        stats = self.crawler.stats
        left, outcomes = await maybe_deferred_to_future(self.in_storage(self._finish))
        for outcome in outcomes:
            self.tally(outcome)
        stats.set_value("newsarchive/spool/left", left)
        with self._boilerplate_lock:
            state = self.boilerplate.to_json()
            learned = len(self.boilerplate.learned())
        stats.set_value("newsarchive/boilerplate/learned_lines", learned)
        try:
            await maybe_deferred_to_future(
                self.in_storage(self.archive.write_site_state, self.site, BOILERPLATE_STATE,
                                state))
        except ArchiveError as exc:
            record_error(stats, self.site, "storage", f"boilerplate state: {exc}")
        try:
            await self._remember_discovery(spider, reason if left == 0 else "spool_left")
        except Exception as exc:  # a bug of ours: recorded, and the crawl's end goes on
            logger.exception("cannot store what discovery learnt")
            record_error(stats, self.site, "internal", f"{exc.__class__.__name__}: {exc}")
        # The workers were stopped once the spool was stored (in _finish); now the threads.
        stats.set_value("newsarchive/extract/workers_started", self.pool.started)
        if self.pool.replaced:
            stats.set_value("newsarchive/extract/workers_replaced", self.pool.replaced)
        if self.renderer is not None and self.renderer.replaced:
            stats.set_value("newsarchive/screenshot/renderers_replaced", self.renderer.replaced)
        self._storage.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self._cpu_lock:
            stats.set_value("newsarchive/cpu/extract_seconds", round(self._cpu["extract"], 3))
            stats.set_value("newsarchive/cpu/store_seconds", round(self._cpu["store"], 3))
        stats.set_value("newsarchive/cpu/crawl_process_seconds",
                        round(usage.ru_utime + usage.ru_stime, 3))

    async def _remember_discovery(self, spider, reason: str) -> None:
        """Store what the crawl learnt for the next crawl's discovery: the URLs found
        archived (what the site's URL summary has not been told yet) and, after a crawl that
        ended normally with no page left in its spool, which sitemaps and feeds it read
        completely. Failing costs the next crawl fetches of pages it then finds archived, or
        reads, never an article."""
        if hasattr(spider, "listings_closed"):
            # The spider's own end stores the URLs listed late; they belong in the summary.
            await maybe_deferred_to_future(spider.listings_closed)
        notes = getattr(spider, "summary_notes", None)
        state = spider.discovery_state(reason) if hasattr(spider, "discovery_state") else None
        # First the near-duplicate index (what this crawl added since its last flush):
        # the next crawls of every site compare their pages with it.
        writes = [("near-duplicate index", self.archive.flush, ())]
        if notes is not None and len(notes):
            writes.append(("URL summary", notes.write, ()))
        if state is not None:
            writes.append(("discovery state", self.archive.write_site_state,
                           (self.site, DISCOVERY_STATE, state.to_json())))
        for what, write, args in writes:
            try:
                await maybe_deferred_to_future(self.in_storage(write, *args))
            except ArchiveError as exc:
                record_error(self.crawler.stats, self.site, "storage", f"{what}: {exc}")

    def _shut_down(self) -> None:
        """Last resort at reactor shutdown: stop the workers and the storage threads."""
        if self.pool is not None:
            self.pool.close(wait=False)
        if self.renderer is not None:
            self.renderer.close(wait=False)
        if self._storage.started:
            self._storage.stop()

    def _flush_in_background(self) -> None:
        if self.workspace.spool_size() and not self._flush_lock.locked():
            flushing = self.in_storage(self._flush, self.workspace)
            flushing.addCallback(lambda outcomes: [self.tally(o) for o in outcomes])
            flushing.addErrback(
                lambda failure: logger.error("flushing the spool failed: %s", failure.value))

    def stop_crawl(self, reason: str) -> None:
        """Close the spider with ``reason`` (callable from any thread)."""
        from scrapy.utils.defer import deferred_from_coro
        from twisted.internet import reactor

        engine = self.crawler.engine
        reactor.callFromThread(
            lambda: deferred_from_coro(engine.close_spider_async(reason=reason)))

    # -- in a storage thread ----------------------------------------------------------------

    def compress(self, page: FetchedPage) -> tuple[DeflatedBody, list[tuple[str, str, str]]]:
        """The page's body compressed (once, for both the WARC record and raw.html.gz), and
        its WARC record written unless it was already (a page retried after an outage);
        with the errors to record."""
        started = time.thread_time()
        errors = []
        try:
            deflated = DeflatedBody.of(page.body)
            if page.warc is None:
                try:
                    location = self.warc.write(
                        url=page.url, fetched_at=page.fetched_at, status=page.status,
                        reason="",  # the writer gives the status's standard phrase
                        request_headers=page.request_headers,
                        response_headers=page.response_headers, body=page.body,
                        deflated=deflated)
                    page.warc = (location.key, location.offset, location.length)
                except (ArchiveError, OSError) as exc:
                    errors.append((page.url, "warc", str(exc)))
        finally:
            self._add_store_cpu(time.thread_time() - started)
        return deflated, errors

    def store_or_spool(self, page: FetchedPage, extraction: PageExtraction,
                       deflated: DeflatedBody | None = None,
                       screenshot: bytes | None = None) -> Outcome:
        """Store a page (with its screenshot, if it has one); while the archive cannot take
        it, keep it in the spool. (The S3 client retries what is worth retrying already, by
        its own retry configuration.)"""
        started = time.thread_time()
        try:
            prepared = self._prepare(page, extraction)
            if isinstance(prepared, Outcome):
                return prepared
            try:
                return self._store(page, *prepared, deflated, screenshot)
            except ArchiveUnavailable as exc:
                return self._spool(page, exc)
            except ArchiveError as exc:
                return Outcome("failed", [(page.url, "storage", f"{exc.__class__.__name__}: {exc}")],
                               retry_url=page.request_url)
        except Exception as exc:  # a bug of ours: say so in the manifest, keep crawling
            logger.exception("failed to archive %s", page.url)
            return Outcome("failed", [(page.url, "internal", f"{exc.__class__.__name__}: {exc}")],
                           retry_url=page.request_url)
        finally:
            self._add_store_cpu(time.thread_time() - started)

    def _spool(self, page: FetchedPage, why: ArchiveUnavailable) -> Outcome:
        """Keep a page the archive cannot take in the workspace. If the workspace cannot
        keep it either (its disk is full too), the crawl stops: every page fetched from then
        on would be lost, and a page never fetched is fetched by the next crawl."""
        try:
            self.workspace.spool(page)
        except OSError as exc:
            self.stop_crawl("archive_unavailable")
            return Outcome("failed", [(page.url, "storage",
                                       f"archive unavailable ({why}) and the page cannot be "
                                       f"kept in {self.workspace.spool_dir}: {exc}; the crawl "
                                       f"stops")])
        logger.warning("archive unavailable, %s kept in the spool: %s", page.url, why)
        return Outcome("spooled")

    def _flush(self, workspace: Workspace) -> list[Outcome]:
        """Store spooled pages until the archive fails again."""
        outcomes = []
        with self._flush_lock:
            for path, page in workspace.spooled():
                try:
                    outcome = self._archive_spooled(page)
                except ArchiveUnavailable:
                    break
                except ArchiveError as exc:
                    # Not a page storage will take; kept for a person to look at.
                    outcomes.append(Outcome("", [(page.url, "storage",
                                                  f"{exc.__class__.__name__}: {exc}")]))
                    continue
                workspace.unspool(path)
                outcome.from_spool = True
                outcomes.append(outcome)
        return outcomes

    def _archive_spooled(self, page: FetchedPage) -> Outcome:
        """Extract (in a worker process) and store one spooled page. Raises ArchiveError
        (ArchiveUnavailable while storage cannot be reached)."""
        try:
            extraction = self.pool.extract(page.body, page.encoding, page.url, page.status)
        except ExtractionFailed as exc:
            return Outcome("failed", [(page.url, exc.kind, str(exc))])
        prepared = self._prepare(page, extraction)
        if isinstance(prepared, Outcome):
            return prepared
        # Its screenshot, taken before it was spooled, was not kept: taken again.
        screenshot, warnings = self._render_now(page)
        outcome = self._store(page, *prepared, screenshot=screenshot)
        outcome.warnings += warnings
        return outcome

    def _render_now(self, page: FetchedPage
                    ) -> tuple[bytes | None, list[tuple[str, str, str]]]:
        """``page``'s screenshot (None for a site without, or when it fails), with the
        warnings to record; waits for the renderer (in a storage thread, never the reactor)."""
        future = self.render(page)
        if future is None:
            return None, []
        try:
            return future.result(), []
        except ScreenshotFailed as exc:
            return None, [(page.url, exc.kind, str(exc))]

    def _finish(self) -> tuple[int, list[Outcome]]:
        """End of the crawl: store the spool (which needs the workers), stop the workers,
        then upload WARC files and write the catalog (which needs pyarrow's memory: not at
        the same time as the workers'). Returns the pages left in the spool, and what was
        done."""
        outcomes = self._flush(self.workspace)
        self.pool.close()
        if self.renderer is not None:
            self.renderer.close()
        for what, close in (("warc", self.warc.close), ("catalog", self.catalog.close)):
            try:
                close()
            except ArchiveError as exc:
                outcomes.append(Outcome("", [(self.site, "storage", f"{what}: {exc}")]))
        return self.workspace.spool_size(), outcomes

    def recover(self) -> tuple[int, list[Outcome]]:
        """Finish the work of this site's crawls that died (their workspaces' pages, WARC
        files, catalog rows and manifests); returns how many were finished, and what was
        done. Each abandoned workspace is held (its lock) while it is worked on: a crawl of
        the same site starting meanwhile skips it."""
        recovered, outcomes = 0, []
        for workspace in Workspace.abandoned(self.data_dir, self.site):
            try:
                logger.info("finishing the work of run %s, which ended early", workspace.run_id)
                outcomes += self._flush(workspace)
                try:
                    workspace.upload_leftovers(self.archive)
                except ArchiveError as exc:
                    logger.warning("cannot finish run %s yet: %s", workspace.run_id, exc)
                    continue
                if workspace.spool_size() == 0 and workspace.remove_if_done():
                    recovered += 1
            finally:
                workspace.release()
        return recovered, outcomes

    def _prepare(self, page: FetchedPage, extraction: PageExtraction):
        """The record and cleaned text of an extracted page, or the Outcome when there is
        nothing to store. Done once per page: the boilerplate learner counts it."""
        settled = settle(extraction, self.boilerplate, lock=self._boilerplate_lock)
        if isinstance(settled, Problem):
            if settled.kind.startswith("blocked_"):  # a block passes: try again next time
                return Outcome("blocked", [(page.url, settled.kind, settled.reason)],
                               retry_url=page.request_url)
            return Outcome("no_text", [(page.url, settled.kind, settled.reason)])
        article, text = settled
        return page_record(page, article, text, charset=extraction.charset,
                           paywalled=extraction.paywalled), text

    def _store(self, page: FetchedPage, record, text: str,
               deflated: DeflatedBody | None = None, screenshot: bytes | None = None) -> Outcome:
        """Store a prepared page (``deflated``: its body compressed already, if it was;
        ``screenshot``: its PNG, if one was taken). Raises ArchiveError
        (ArchiveUnavailable when storage cannot be reached)."""
        seen = canonical_seen_urls(page)  # the index's keys, and the summary's entries
        result = self.archive.store(
            record,
            raw_body=page.body if deflated is None else deflated,
            charset=record.charset,
            text=text,
            run_id=self.run_id,
            seen_urls=seen,
            refetch=page.refetch,
            screenshot=screenshot,
        )
        if result.outcome in (StoreOutcome.WRITTEN, StoreOutcome.VERSION):
            self.catalog.add(result.record, text)
        if result.outcome is not StoreOutcome.IN_PROGRESS and \
                hasattr(self.crawler.spider, "note_captured"):
            # Complete now, under every URL that led to it: the site's URL summary settles
            # them for the next crawl without a look-up.
            self.crawler.spider.note_captured(result.record.urls | seen,
                                              result.record.last_seen)
        if result.outcome is not StoreOutcome.WRITTEN:
            logger.debug("%s: %s (article %s)", result.outcome.value, page.url, result.record.id)
        return Outcome(result.outcome.value, near_duplicate=result.outcome is StoreOutcome.WRITTEN
                       and bool(result.record.near_duplicate_of),
                       screenshot=bool(screenshot) and result.outcome in (StoreOutcome.WRITTEN,
                                                                          StoreOutcome.VERSION))

    def _add_store_cpu(self, seconds: float) -> None:
        with self._cpu_lock:
            self._cpu["store"] += seconds


def deferred_from_future(future: Future) -> defer.Deferred:
    """A Deferred that fires, on the reactor thread, with the result of a future that a
    thread completes; whatever the reactor (Scrapy's asyncio one, or another)."""
    from twisted.internet import reactor

    deferred: defer.Deferred = defer.Deferred()

    def settle_on_reactor(done: Future) -> None:
        exc = done.exception()
        if exc is not None:
            reactor.callFromThread(deferred.errback, exc)
        else:
            reactor.callFromThread(deferred.callback, done.result())

    future.add_done_callback(settle_on_reactor)
    return deferred
