"""Entry point of one crawl subprocess: ``python -m spiders.run --site-json ... --archive ...``.

Each crawl gets its own process because Twisted's reactor cannot be restarted. The outcome
is reported through a JSON stats file, not the exit code, so the caller can tell a crawl
that finished with page errors from one that crashed.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import logging
import multiprocessing.util
import os
import signal
import sys
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from spiders import redact

# multiprocessing re-runs the main module in each extraction worker it starts (see
# spiders.extraction_pool), and the workers need none of the crawl's machinery: so this
# module imports Scrapy, the spider and storage where it uses them, not here.
if TYPE_CHECKING:
    from spiders.config import SiteConfig
    from spiders.discovery import Entry
    from spiders.news import Window
    from spiders.workspace import Workspace

logger = logging.getLogger(__name__)


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


def run_crawl(site: SiteConfig, *, archive_url: str, run_id: str, stats_file: Path,
              user_agent: str, log_level: str = "INFO", data_dir: Path = Path(".newsarchive"),
              entries: list[Entry] | None = None, partition: str | None = None,
              partitions: dict[str, str] | None = None, full: bool = False) -> dict:
    """Crawl ``site`` once (blocking; once per process), store its run manifest in the
    archive and write its stats file. With ``entries`` (a backfill batch, its days named by
    ``partition``), fetch exactly those articles instead of discovering; ``partitions``
    (URL -> day partition) then has the outcomes counted per day, in the stats file's and
    the manifest's ``partitions``, and each recorded error names its day. ``full``: read
    every sitemap and feed in full (see spiders.discovery_state)."""
    from scrapy.crawler import CrawlerProcess

    from spiders.console import attach_console, finish_console, log_to_file
    from spiders.interface import crawl_log_file
    from spiders.news import NewsSpider
    from spiders.settings import crawl_settings
    from spiders.stats import ERROR_LIST_KEY, PartitionTally, crawl_counts, errors_by_kind
    from spiders.workspace import Workspace

    # The run's workspace is claimed before anything is written in it (Scrapy's job
    # directory, discovery's listings): from now until this process ends, no other crawl
    # takes it for a dead one's.
    workspace = Workspace.create(data_dir, site.name, run_id)
    # trafilatura warns about every page it discards; our stats record those outcomes.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    settings = crawl_settings(site, archive_url=archive_url, run_id=run_id,
                              user_agent=user_agent, log_level=log_level, data_dir=str(data_dir))
    settings.set("NEWSARCHIVE_WORKSPACE", str(workspace.root), priority="cmdline")
    # Requests waiting to be sent grow with the crawl (a sitemap lists thousands at once,
    # about 1 KB each in memory): with a job directory, Scrapy's scheduler keeps them on
    # disk, in the run's workspace (removed with it when the run is done).
    settings.set("JOBDIR", str(workspace.root / "scheduler"), priority="cmdline")
    # Likewise what discovery listed (spiders.listings), beside it.
    settings.set("NEWSARCHIVE_LISTINGS_FILE", str(workspace.root / "listings.sqlite"),
                 priority="cmdline")
    if partitions:
        _count_per_partition(settings, partitions)
    log_file = crawl_log_file(stats_file)
    log_to_file(settings, log_file, log_level)
    started = datetime.now(timezone.utc)
    process = CrawlerProcess(settings)
    console = attach_console(site.name, log_level, log_file, settings)
    crawler = process.create_crawler(NewsSpider)
    process.crawl(crawler, site=site, archive_url=archive_url, entries=entries, full=full)
    _stop_when_orphaned()
    _stop_if_asked_early(crawler)
    process.start()
    stats = dict(crawler.stats.get_stats())
    if stats.get("finish_reason") is None and _STOP_ASKED_EARLY.is_set():
        stats["finish_reason"] = "shutdown"  # stopped before its engine even opened
    errors = stats.pop(ERROR_LIST_KEY, [])
    try:
        tally = crawler.get_extension(PartitionTally) if partitions else None
    except RuntimeError:  # stopped before Scrapy even made its extensions
        tally = None
    # Once the crawl is over: errors are recorded until its very end (its WARC uploads).
    partition_counts = tally.finish(errors) if tally is not None else None
    finished = datetime.now(timezone.utc)
    report = {
        "site": site.name,
        "run_id": run_id,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "finish_reason": stats.get("finish_reason"),
        "workspace": str(workspace.root),
        "stats": stats,
        "errors": errors,
        "partitions": partition_counts,
    }
    report["manifest_key"] = _store_manifest(archive_url, workspace, {
        "run_id": run_id,
        "site": site.name,
        "parameters": site.model_dump(mode="json"),
        "backfill_partition": partition,
        "partitions": partition_counts,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "finish_reason": stats.get("finish_reason"),
        "counts": crawl_counts(stats),
        "errors_by_kind": errors_by_kind(stats),
        "errors": errors,
        "errors_truncated": sum(errors_by_kind(stats).values()) > len(errors),
    })
    workspace.remove_if_done()
    _write_stats_file(stats_file, report)
    finish_console(console)
    return report


def _count_per_partition(settings, partitions: dict[str, str]) -> None:
    """Have the crawl count its outcomes per backfill day (spiders.stats.PartitionTally)."""
    settings.set("NEWSARCHIVE_PARTITIONS", partitions, priority="cmdline")
    settings.set("EXTENSIONS", {**settings.getdict("EXTENSIONS"),
                                "spiders.stats.PartitionTally": 500}, priority="cmdline")
    # Last before the spider's callback: after Scrapy's HttpErrorMiddleware (50) has turned
    # the error statuses away, as the spider's own count of fetched pages does.
    settings.set("SPIDER_MIDDLEWARES", {**settings.getdict("SPIDER_MIDDLEWARES"),
                                        "spiders.stats.PartitionTallyMiddleware": 1000},
                 priority="cmdline")


class StatsFileUnwritable(RuntimeError):
    """The crawl's stats file cannot be written (its disk is full): the caller, which judges
    the crawl by that file, will see a crash; this says why."""


def _write_stats_file(stats_file: Path, report: dict) -> None:
    from storage.localfiles import write_atomic

    try:
        stats_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(stats_file, json.dumps(report, default=_jsonable, indent=1).encode("utf-8"))
    except OSError as exc:
        raise StatsFileUnwritable(f"cannot write the crawl's stats file {stats_file}: "
                                  f"{exc.strerror or exc}") from None


# The signals that stop a crawl gracefully (Scrapy's shutdown signals; a Ctrl-C reaches the
# crawl with its whole process group).
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# A stop signal that came while the crawl was starting, before its engine ran.
_STOP_ASKED_EARLY = threading.Event()


def _note_early_stop(signum, frame) -> None:
    _STOP_ASKED_EARLY.set()


def _stop_if_asked_early(crawler) -> None:
    """Until ``crawler``'s engine runs, a stop signal is only noted (``_note_early_stop``);
    once it runs, Scrapy's own handler takes over, and a stop noted before is passed on to
    it: the crawl then stops gracefully and writes its stats file like any stopped crawl.

    Why not leave the window to Scrapy: its handler, installed as the reactor starts, stops
    only a running engine. One that comes while the spider is opening (a few milliseconds:
    the pipelines open the archive and start the extraction workers) stops the reactor with
    the spider never closed, and the crawl ends with no finish reason and nothing it opened
    closed (seen in CI)."""
    from scrapy import signals
    from twisted.internet import reactor

    scrapys: dict[int, object] = {}
    engine_started = False

    def keep_noting() -> None:
        if not engine_started:
            for signum in _STOP_SIGNALS:
                scrapys[signum] = signal.getsignal(signum)
                signal.signal(signum, _note_early_stop)

    def hand_over() -> None:
        nonlocal engine_started
        engine_started = True
        for signum, handler in scrapys.items():
            signal.signal(signum, handler)
        if _STOP_ASKED_EARLY.is_set():
            logger.warning("asked to stop while starting: stopping")
            os.kill(os.getpid(), signal.SIGTERM)

    # Scrapy installs its handlers in a startup trigger that CrawlerProcess.start adds, after
    # the ones callWhenRunning adds now: hence one more turn of the loop before ours go back.
    reactor.callWhenRunning(reactor.callLater, 0, keep_noting)
    crawler.signals.connect(hand_over, signal=signals.engine_started, weak=False)


def _stop_when_orphaned() -> None:
    """Stop the crawl gracefully (what it fetched is stored, or kept in its workspace) if
    the process that started it dies: a flow run killed with its worker, say. Otherwise the
    crawl would go on for nobody, its run already recorded as crashed."""
    from spiders.processes import when_gone

    def stop() -> None:
        logger.warning("the process that started this crawl is gone: stopping")
        # As a SIGTERM: Scrapy's own graceful shutdown, the path a stopped crawl takes.
        os.kill(os.getpid(), signal.SIGTERM)

    when_gone(os.getppid(), stop, name="newsarchive-parent-watch")


def plan_backfill(site: SiteConfig, *, archive_url: str, window: Window, plan_file: Path,
                  user_agent: str, log_level: str = "INFO",
                  data_dir: Path = Path(".newsarchive")) -> dict:
    """Discover the articles ``site`` lists as published in ``window`` and write them to
    ``plan_file`` (JSON); fetch nothing else, write nothing to the archive. Its log goes to
    ``data_dir``'s ``crawls/`` (see spiders.console)."""
    from scrapy.crawler import CrawlerProcess

    from spiders.console import attach_console, finish_console, log_to_file
    from spiders.news import NewsSpider
    from spiders.settings import crawl_settings
    from spiders.stats import ERROR_LIST_KEY

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    settings = crawl_settings(site, archive_url=archive_url, run_id="plan",
                              user_agent=user_agent, log_level=log_level, data_dir="")
    settings.set("ITEM_PIPELINES", {}, priority="cmdline")  # nothing fetched to store
    # The plan file is the caller's, and goes with its temporary directory: the log stays.
    log_file = (data_dir / "crawls" /
                f"plan-{site.name}-{window.since}..{window.until}-"
                f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}.log").resolve()
    log_to_file(settings, log_file, log_level)
    process = CrawlerProcess(settings)
    console = attach_console(site.name, log_level, log_file, settings)
    crawler = process.create_crawler(NewsSpider)
    plan: dict[str, dict] = {}
    process.crawl(crawler, site=site, archive_url=archive_url, window=window, plan=plan)
    _stop_if_asked_early(crawler)
    process.start()
    stats = dict(crawler.stats.get_stats())
    report = {
        "site": site.name,
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "finish_reason": stats.get("finish_reason"),
        "articles": plan,
        # Article URLs the sitemaps and feeds listed, in range or not: 0 with errors means
        # discovery failed, not that the range is empty.
        "listed": sum(stats.get(f"newsarchive/discovered/{via}", 0) for via in ("sitemap", "feed"))
                  + stats.get("newsarchive/discovered/sitemaps_before_range", 0),
        "out_of_range": stats.get("newsarchive/discovered/out_of_range", 0),
        "undated": stats.get("newsarchive/discovered/undated", 0),
        "sitemaps_before_range": stats.get("newsarchive/discovered/sitemaps_before_range", 0),
        "errors": stats.get(ERROR_LIST_KEY, []),
    }
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    from storage.localfiles import write_atomic

    write_atomic(plan_file, json.dumps(report, default=_jsonable, indent=1).encode("utf-8"))
    finish_console(console)
    return report


def read_entries(path: Path) -> tuple[list[Entry], dict[str, str]]:
    """The articles of a backfill batch, from a JSON list of {url, published, date_hint,
    partition}: the entries, and each URL's day partition (URL -> partition)."""
    from spiders.discovery import Entry

    def when(value):
        return datetime.fromisoformat(value) if value else None
    listed = json.loads(path.read_text(encoding="utf-8"))
    entries = [Entry(url=e["url"], published=when(e.get("published")),
                     date_hint=when(e.get("date_hint"))) for e in listed]
    return entries, {e["url"]: e["partition"] for e in listed if e.get("partition")}


def _store_manifest(archive_url: str, workspace: Workspace, manifest: dict) -> str | None:
    """Put the run manifest in the archive; if it is unreachable, keep it in the workspace
    for the next crawl. Returns the manifest's key, or None when kept."""
    from storage import Archive, ArchiveError

    try:
        return Archive.open(archive_url).put_run_manifest(manifest)
    except ArchiveError as exc:
        logger.warning("archive unreachable, run manifest kept in %s: %s", workspace.root, exc)
    try:
        workspace.keep_manifest(manifest)
    except OSError as exc:  # the data directory's disk is full too
        logger.error("the run manifest is lost: neither the archive nor %s can take it: %s",
                     workspace.root, exc)
    return None


# glibc's malloc, tuned for a crawl (the names are glibc's own; mallopt(3)). The storage
# threads and the extraction slots each get an arena of their own by default, and the bodies
# they handle (300 KB and more) stay in those arenas once the dynamic mmap threshold has
# risen past them: on 8,000 pages the crawl grew twice as much, and started 120 MB higher,
# than with two arenas and bodies always in mmap'd memory, which goes back at free (README,
# Throughput). Same speed either way.
# Environment variable: (mallopt option, value): M_ARENA_MAX is -8, M_MMAP_THRESHOLD -3.
_MALLOC_TUNING = {"MALLOC_ARENA_MAX": (-8, 2), "MALLOC_MMAP_THRESHOLD_": (-3, 128 * 1024)}


def tune_malloc() -> None:
    """Apply ``_MALLOC_TUNING`` to this process (before it starts threads) and, through the
    environment, to the processes it starts (the extraction forkserver and its workers);
    values already in the environment are the operator's and are kept."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    for variable, (option, default) in _MALLOC_TUNING.items():
        value = os.environ.setdefault(variable, str(default))
        if value.isdigit():
            mallopt(option, int(value))


def main(argv: list[str] | None = None) -> int:
    # First of all: a stop signal from now on is noted, not fatal (see _stop_if_asked_early).
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _note_early_stop)
    tune_malloc()
    parser = argparse.ArgumentParser(prog="python -m spiders.run", description=__doc__)
    parser.add_argument("--site-json", required=True, help="the site's config as JSON")
    parser.add_argument("--archive", required=True, help="archive URL")
    parser.add_argument("--run-id", help="required unless --plan-file")
    parser.add_argument("--stats-file", type=Path, help="required unless --plan-file")
    parser.add_argument("--user-agent", required=True)
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        help="INFO (default): the console shows progress lines, warnings and "
                             "errors, and the log file Scrapy's full log; DEBUG: both show "
                             "everything; WARNING, ERROR: the console shows only those")
    # The default is the newsarchive command's (NEWSARCHIVE_DATA_DIR): a plan, to which the
    # command passes no --data-dir, writes its log there too.
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("NEWSARCHIVE_DATA_DIR") or ".newsarchive"),
                        help="where the run keeps what the archive has not taken yet, and "
                             "its log")
    parser.add_argument("--entries-file", type=Path,
                        help="backfill batch: fetch exactly these articles (JSON), no discovery")
    parser.add_argument("--partition",
                        help="the backfill batch's days (DAY or FIRST..LAST), for the run manifest")
    parser.add_argument("--full", action="store_true",
                        help="read every sitemap and feed in full, whatever their state")
    parser.add_argument("--plan-file", type=Path,
                        help="backfill plan: discover only, write the in-range articles here")
    parser.add_argument("--since", type=date.fromisoformat, help="with --plan-file: first day")
    parser.add_argument("--until", type=date.fromisoformat, help="with --plan-file: last day")
    args = parser.parse_args(argv)
    if not isinstance(logging.getLevelName(args.log_level), int):
        parser.error(f"--log-level {args.log_level}: not a log level (DEBUG, INFO, WARNING, "
                     f"ERROR)")
    # Before anything logs: no credential reaches the console or the log file.
    redact.install()
    from spiders.config import SiteConfig
    from spiders.news import Window

    site = SiteConfig.model_validate_json(args.site_json)
    if args.plan_file:
        if not (args.since and args.until):
            parser.error("--plan-file needs --since and --until")
        plan_backfill(site, archive_url=args.archive, window=Window(args.since, args.until),
                      plan_file=args.plan_file, user_agent=args.user_agent,
                      log_level=args.log_level, data_dir=args.data_dir)
        return 0
    if not (args.run_id and args.stats_file):
        parser.error("a crawl needs --run-id and --stats-file")
    entries, partitions = read_entries(args.entries_file) if args.entries_file else (None, None)
    try:
        run_crawl(site, archive_url=args.archive, run_id=args.run_id,
                  stats_file=args.stats_file, user_agent=args.user_agent,
                  log_level=args.log_level, data_dir=args.data_dir, entries=entries,
                  partition=args.partition, partitions=partitions, full=args.full)
    except StatsFileUnwritable as exc:
        print(f"newsarchive crawl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # A native crash (one was seen once: "double free or corruption") then leaves a Python
    # traceback on stderr for the flow's log.
    faulthandler.enable()
    from storage.catalog import keep_pandas_out

    keep_pandas_out()
    code = main()
    # Everything the crawl did is on disk or in the archive by now. Leave without the
    # interpreter's teardown, where Twisted's threads and the destructors of several native
    # libraries (lxml, numpy, pyarrow, OpenSSL) meet for nothing but risk.
    # multiprocessing's own exit handler does run, though: it removes the temporary directory
    # the extraction forkserver's socket lived in, which would otherwise stay in /tmp, one a
    # crawl.
    exit_function = getattr(multiprocessing.util, "_exit_function", None)
    if exit_function is not None:
        exit_function()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

