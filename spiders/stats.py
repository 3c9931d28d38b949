"""Counting outcomes and recording errors in the crawler's stats, which the crawl's stats
file carries back to the flow."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the flows read stats files without importing Scrapy (50 MB)
    from scrapy.statscollectors import StatsCollector

ERROR_LIST_KEY = "newsarchive/error_list"
# Enough to diagnose a broken site without letting a bad crawl bloat its stats file.
MAX_RECORDED_ERRORS = 1000

logger = logging.getLogger(__name__)


def record_error(stats: StatsCollector, url: str, kind: str, reason: str) -> None:
    """Count an error of ``kind``, keep its URL and reason (up to a bound) and log it in
    one line (the crawl's console shows the first few: spiders.console)."""
    stats.inc_value(f"newsarchive/errors/{kind}")
    logger.warning("error %s: %s: %s", kind, url, reason[:500])
    errors = stats.get_value(ERROR_LIST_KEY) or []
    if len(errors) < MAX_RECORDED_ERRORS:
        errors.append({"url": url, "kind": kind, "reason": reason[:500]})
        stats.set_value(ERROR_LIST_KEY, errors)


WARNING_LIST_KEY = "newsarchive/warning_list"


def record_warning(stats: StatsCollector, url: str, kind: str, reason: str) -> None:
    """Count a warning of ``kind`` and keep its URL and reason (up to a bound): something
    that failed without costing the page (its screenshot, say), so not an error."""
    stats.inc_value(f"newsarchive/warnings/{kind}")
    warnings = stats.get_value(WARNING_LIST_KEY) or []
    if len(warnings) < MAX_RECORDED_ERRORS:
        warnings.append({"url": url, "kind": kind, "reason": reason[:500]})
        stats.set_value(WARNING_LIST_KEY, warnings)


# Counters under newsarchive/discovered/ that count listings left out, not articles found.
_NOT_DISCOVERIES = ("filtered", "fronts_capped", "out_of_range", "undated", "sitemaps_before_range")


def crawl_counts(stats: dict) -> dict[str, int]:
    """What a crawl did, from its stats: the figures of the run manifest and the summary."""
    def total(prefix: str) -> int:
        return sum(v for k, v in stats.items() if k.startswith(prefix) and isinstance(v, int))

    return {
        "discovered": total("newsarchive/discovered/")
        - sum(stats.get(f"newsarchive/discovered/{k}", 0) for k in _NOT_DISCOVERIES),
        "skipped": stats.get("newsarchive/skipped/already_archived", 0),
        "fetched": stats.get("newsarchive/fetched", 0),
        "archived": stats.get("newsarchive/archive/written", 0),
        "versions": stats.get("newsarchive/archive/version", 0),
        "duplicates": stats.get("newsarchive/archive/duplicate", 0)
        + stats.get("newsarchive/archive/aliased", 0)
        + stats.get("newsarchive/archive/in_progress", 0),
        "near_duplicates": stats.get("newsarchive/archive/near_duplicate", 0),
        "spooled": stats.get("newsarchive/archive/spooled", 0),
        "spool_left": stats.get("newsarchive/spool/left", 0),
        "errors": total("newsarchive/errors/"),
    }


def errors_by_kind(stats: dict) -> dict[str, int]:
    """Error counts by kind (``http_404``, ``no_article_text``, ``storage``, ...)."""
    prefix = "newsarchive/errors/"
    return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}


# The counts a backfill batch keeps per day partition (see PartitionTally).
PARTITION_COUNTS = ("fetched", "archived", "versions", "duplicates", "errors")
# Outcomes of storing a page (StorePipeline drops the page with a PageNotStored naming its
# outcome) that mean the article was archived already.
_DUPLICATE_OUTCOMES = frozenset({"duplicate", "aliased", "in_progress"})


class PartitionTally:
    """A Scrapy extension counting a backfill batch's outcomes per day partition, so one
    crawl of many days still tells each day what it did. It knows each article's partition
    by the URLs the entries list for it (``NEWSARCHIVE_PARTITIONS``: URL -> partition),
    which are the URLs its requests are made for, and learns the URLs redirects lead to.

    Counts per partition: ``fetched`` (pages handed to the spider, counted by
    :class:`PartitionTallyMiddleware`), ``archived`` and ``versions`` (pages stored: a page
    fetched again for a newer date counts as a version), ``duplicates`` (pages the archive
    had already) and ``errors`` (the recorded errors naming one of its URLs, attributed
    once the crawl is over: :meth:`finish`)."""

    def __init__(self, partitions: dict[str, str]) -> None:
        from storage import canonicalize_url

        self._canonical = canonicalize_url
        # Every URL an article is requested under, as listed and canonical: Scrapy escapes
        # a listed URL, and the errors name it as requested.
        self._partition_of: dict[str, str] = {}
        for url, partition in partitions.items():
            self._partition_of[url] = partition
            self._partition_of[canonicalize_url(url)] = partition
        self.counts = {p: dict.fromkeys(PARTITION_COUNTS, 0)
                       for p in sorted(set(partitions.values()))}

    @classmethod
    def from_crawler(cls, crawler) -> PartitionTally:
        from scrapy import signals
        from scrapy.exceptions import NotConfigured

        partitions = crawler.settings.getdict("NEWSARCHIVE_PARTITIONS")
        if not partitions:
            raise NotConfigured("not a backfill batch: no partitions to count")
        tally = cls(partitions)
        crawler.signals.connect(tally.request_scheduled, signal=signals.request_scheduled)
        crawler.signals.connect(tally.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(tally.item_dropped, signal=signals.item_dropped)
        return tally

    def partition_of(self, url: str) -> str | None:
        """The partition of the article ``url`` was listed, requested or redirected as."""
        return self._partition_of.get(url) or self._partition_of.get(self._canonical(url))

    def _partition_of_request(self, request) -> str | None:
        return self.partition_of(request.meta.get("redirect_urls", [request.url])[0])

    def request_scheduled(self, request, spider=None) -> None:
        """A redirect's next request (or a meta refresh's) is an article's too: errors and
        the stored page name its URL."""
        if request.meta.get("redirect_urls") and request.url not in self._partition_of:
            partition = self._partition_of_request(request)
            if partition is not None:
                self._partition_of[request.url] = partition

    def fetched(self, response) -> None:
        """A page reached the spider."""
        self._count(self._partition_of_request(response.request), "fetched")

    def item_scraped(self, item, response, spider=None) -> None:
        self._count(self.partition_of(item.request_url),
                    "versions" if item.refetch else "archived")

    def item_dropped(self, item, response, exception, spider=None) -> None:
        page = getattr(item, "page", item)  # StorePipeline drops what it was handed
        if getattr(exception, "outcome", None) in _DUPLICATE_OUTCOMES:  # PageNotStored
            self._count(self.partition_of(page.request_url), "duplicates")

    def _count(self, partition: str | None, name: str) -> None:
        if partition in self.counts:
            self.counts[partition][name] += 1

    def finish(self, errors: list[dict]) -> dict[str, dict[str, int]]:
        """Attribute the crawl's recorded ``errors`` to partitions (each gets a
        ``partition`` key when one of its articles' URLs names it) and return the counts
        per partition."""
        for error in errors:
            partition = self.partition_of(error.get("url", ""))
            if partition is not None:
                error["partition"] = partition
                self._count(partition, "errors")
        return self.counts


class PartitionTallyMiddleware:
    """The spider middleware half of :class:`PartitionTally`: counts the pages that reach
    the spider's callback (after Scrapy's HttpErrorMiddleware has turned away the error
    statuses), as the spider's own ``newsarchive/fetched`` does."""

    def __init__(self, tally: PartitionTally) -> None:
        self.tally = tally

    @classmethod
    def from_crawler(cls, crawler) -> PartitionTallyMiddleware:
        from scrapy.exceptions import NotConfigured

        tally = crawler.get_extension(PartitionTally)
        if tally is None:
            raise NotConfigured("no PartitionTally extension")
        return cls(tally)

    def process_spider_input(self, response) -> None:
        self.tally.fetched(response)
