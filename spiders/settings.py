"""Scrapy settings of the newsarchive crawler; per-site politeness is merged in by
:func:`crawl_settings`."""

from __future__ import annotations

from scrapy.settings import Settings as ScrapySettings
from scrapy.settings import default_settings

from spiders.config import SiteConfig

BOT_NAME = "newsarchive"
SPIDER_MODULES = ["spiders.news"]
ROBOTSTXT_OBEY = True
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# Scrapy >= 2.19 serves a remote-control endpoint (code execution in the crawl, behind a
# token written to disk) in every crawl: a crawl of untrusted sites needs no such door.
REMOTE_CONTROL_ENABLED = False
DOWNLOAD_TIMEOUT = 30
# Articles are far smaller; a larger body is junk or hostile and is not worth the memory.
DOWNLOAD_MAXSIZE = 20 * 1024 * 1024
DOWNLOAD_WARNSIZE = 5 * 1024 * 1024
REDIRECT_MAX_TIMES = 5
RETRY_TIMES = 2
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
# A 429 or 503 with Retry-After is retried after that long, at most this many seconds.
NEWSARCHIVE_MAX_RETRY_AFTER = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
# The site's download_delay is the time between its requests, not a mean: Scrapy's default
# jitter (+-50%) would halve it now and then.
DOWNLOAD_DELAY_JITTER = 0.0
# process_request runs from the lowest number up, process_response from the highest down.
DOWNLOADER_MIDDLEWARES = {
    # Before OffsiteMiddleware (50) and RobotsTxtMiddleware (100): a meta-refresh redirect
    # off the site is dropped before anything, robots.txt included, is fetched there.
    "spiders.middlewares.OffsiteRedirectGuardMiddleware": 40,
    # Sees 429/503 before RetryMiddleware (550), to wait as Retry-After asks.
    "spiders.middlewares.RetryAfterMiddleware": 560,
    # Sees 3xx before RedirectMiddleware (600), to refuse redirects off the site.
    "spiders.middlewares.OffsiteRedirectMiddleware": 610,
    # After OffsiteMiddleware (50), before RobotsTxtMiddleware (100): no request, robots.txt
    # included, goes to a loopback, private or link-local address the site does not allow.
    "spiders.reach.PrivateAddressMiddleware": 60,
    # In place of Scrapy's MetaRefreshMiddleware, at its place: the same, without decoding
    # every page whole to find out that it has no meta refresh.
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "spiders.middlewares.HeadMetaRefreshMiddleware": 580,
    # After HttpProxyMiddleware (750): a request through a proxy is checked and sent to the
    # address that was checked, never to whatever the proxy resolves (spiders.download).
    "spiders.download.ProxyTargetMiddleware": 760,
}
# Scrapy's HTTP cache keeps robots.txt, and only it, for the crawl: its robots.txt
# middleware and discovery then ask the site once (spiders.middlewares.RobotsTxtOncePolicy).
HTTPCACHE_ENABLED = True
HTTPCACHE_POLICY = "spiders.middlewares.RobotsTxtOncePolicy"
HTTPCACHE_STORAGE = "spiders.middlewares.CrawlMemoryCacheStorage"
# Every connection resolves its host here, and is refused the same addresses.
TWISTED_DNS_RESOLVER = "spiders.reach.GuardedResolver"
# http(s) only: nothing a page links to or redirects to can read a local file (file://) or
# reach another store (s3://, ftp://); data: URLs are not fetched either.
DOWNLOAD_HANDLERS = {"file": None, "data": None, "s3": None, "ftp": None,
                     # Scrapy's own, with response headers bounded and proxied requests
                     # pinned to their checked address.
                     "http": "spiders.download.GuardedHTTP11DownloadHandler",
                     "https": "spiders.download.GuardedHTTP11DownloadHandler"}
# Scrapy's own extensions but those the crawl turns off or never uses: Scrapy imports every
# extension it lists, even one set to None in EXTENSIONS, and remote control's aiohttp alone
# is 0.25 s of each crawl's start-up. Derived from Scrapy's list, so that a new one is kept.
EXTENSIONS_BASE = {path: order for path, order in default_settings.EXTENSIONS_BASE.items()
                   if path not in ("scrapy.extensions.remote_control.RemoteControl",
                                   "scrapy.extensions.telnet.TelnetConsole",
                                   "scrapy.extensions.feedexport.FeedExporter",
                                   "scrapy.extensions.memdebug.MemoryDebugger")}
# Scrapy reads the source of each callback, the first time it runs, to warn if it is a
# generator that returns a value (a programming slip): tokenizing and parsing our modules cost
# each crawl 0.2 s of CPU (py-spy), for callbacks whose code is tested, not written per site.
WARN_ON_GENERATOR_RETURN_VALUE = False
# Credentials in the environment are scrubbed from every log record of the crawl.
EXTENSIONS = {"spiders.redact.RedactSecretsExtension": 0,
              # The crawl's archive side: its Archive, workspace, workers and threads.
              "spiders.archiving.ArchiveRun": 100,
              # The crawl's progress line on its console (spiders.console).
              "spiders.console.ProgressLog": 200}
# A page's path: extraction starts, the WARC record is written meanwhile, then it is stored.
ITEM_PIPELINES = {"spiders.pipelines.ExtractPipeline": 100,
                  "spiders.pipelines.WarcPipeline": 200,
                  "spiders.pipelines.StorePipeline": 300}
LOG_LEVEL = "INFO"
# Scrapy's own "Crawled N pages" line, in the crawl's log file only.
LOGSTATS_INTERVAL = 30.0
# The shortest time between two progress lines on the crawl's console (spiders.console).
NEWSARCHIVE_PROGRESS_INTERVAL = 5.0
# Scrapy logs a dropped or failed item with its repr (a page's whole record, over many
# lines) as a WARNING: a duplicate is an outcome, counted, and a URL names the page.
LOG_FORMATTER = "spiders.console.OneLineLogFormatter"
# The reactor's own threads: DNS look-ups and the spider's archive look-ups. Extraction runs
# in worker processes and archive writes in threads of the pipeline's own (see below).
REACTOR_THREADPOOL_MAXSIZE = 10
# Extraction worker processes; 0: one per core the crawl may run on. On two cores, two
# workers beat one by a fifth, and three lose what they gain to contention with the crawl
# process (README, Throughput).
NEWSARCHIVE_EXTRACTION_WORKERS = 0
# Threads writing to the archive (0: 4 into a directory, 32 into S3; the S3 client's
# connection pool has room for them and the crawl's other threads): a new article on S3 is
# four round trips one after the other, so many threads keep them overlapped; locally a
# write takes no waiting.
NEWSARCHIVE_STORAGE_THREADS = 0
# Back-pressure: while the responses whose pages are being extracted and stored hold more
# than this many bytes, Scrapy sends no new request. Some 15 news pages: enough to keep every
# worker busy, few enough that memory stays flat however many pages a crawl fetches.
SCRAPER_SLOT_MAX_ACTIVE_SIZE = 5_000_000
# Items a response's output is processed with in parallel. An article response yields one
# item, and Scrapy starts this many tasks for every response: its default (100) costs the
# reactor more than the page's own bookkeeping.
CONCURRENT_ITEMS = 1


def crawl_settings(
    site: SiteConfig, *, archive_url: str, run_id: str, user_agent: str, log_level: str = "INFO",
    data_dir: str = ".newsarchive",
) -> ScrapySettings:
    """Settings for one crawl of ``site`` into ``archive_url``."""
    settings = ScrapySettings()
    settings.setmodule("spiders.settings", priority="project")
    settings.setdict(
        {
            "USER_AGENT": user_agent,
            "LOG_LEVEL": log_level,
            "DOWNLOAD_DELAY": site.download_delay,
            "CONCURRENT_REQUESTS": max(16, site.concurrent_requests),
            "CONCURRENT_REQUESTS_PER_DOMAIN": site.concurrent_requests,
            "AUTOTHROTTLE_ENABLED": site.autothrottle,
            "NEWSARCHIVE_ARCHIVE_URL": archive_url,
            "NEWSARCHIVE_RUN_ID": run_id,
            "NEWSARCHIVE_DATA_DIR": str(data_dir),
            "DOWNLOAD_TIMEOUT": site.download_timeout,
            "DOWNLOAD_MAXSIZE": site.max_page_bytes,
            "DOWNLOAD_WARNSIZE": min(site.max_page_bytes, DOWNLOAD_WARNSIZE),
            "REDIRECT_MAX_TIMES": site.max_redirects,
            "NEWSARCHIVE_ALLOW_PRIVATE_HOSTS": list(site.allow_private_hosts),
        },
        priority="cmdline",
    )
    return settings
