"""Counting outcomes and recording errors in the crawler's stats, which the crawl's stats
file carries back to the flow."""

from __future__ import annotations

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
