"""Counting outcomes and recording errors in the crawler's stats, which the crawl's stats
file carries back to the flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the flows read stats files without importing Scrapy (50 MB)
    from scrapy.statscollectors import StatsCollector

ERROR_LIST_KEY = "newsarchive/error_list"
# Enough to diagnose a broken site without letting a bad crawl bloat its stats file.
MAX_RECORDED_ERRORS = 1000


def record_error(stats: StatsCollector, url: str, kind: str, reason: str) -> None:
    """Count an error of ``kind`` and keep its URL and reason (up to a bound)."""
    stats.inc_value(f"newsarchive/errors/{kind}")
    errors = stats.get_value(ERROR_LIST_KEY) or []
    if len(errors) < MAX_RECORDED_ERRORS:
        errors.append({"url": url, "kind": kind, "reason": reason[:500]})
        stats.set_value(ERROR_LIST_KEY, errors)


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
