"""What the spider hands to the pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

articles_requested = object()
"""Scrapy signal the spider sends once, when it first asks for article pages: the pipeline
then starts its extraction workers, which a crawl that fetches no article never needs."""


@dataclass
class FetchedPage:
    """One fetched article page, before extraction."""

    site: str
    """Configured site name."""
    url: str
    """URL of the response (after redirects)."""
    request_url: str
    """URL as discovered (sitemap, feed or link), before redirects."""
    status: int
    """HTTP status."""
    body: bytes = field(repr=False)
    """Response body exactly as received (after transfer decoding); left out of the item's
    repr, which Scrapy logs for every dropped item."""
    encoding: str
    """Character encoding Scrapy determined for the body."""
    fetched_at: datetime
    """When the response arrived (UTC)."""
    discovered_via: str
    """``sitemap``, ``feed`` or ``link``."""
    date_hint: datetime | None = None
    """Sitemap ``<lastmod>`` or feed date of the entry, if any."""
    discovered_urls: tuple[str, ...] = ()
    """Every URL discovery listed this page under (sitemap, feed and link URLs whose
    canonical form is the requested one), as listed."""
    refetch: bool = False
    """True when the page was archived already and is fetched again because its sitemap or
    feed date is newer than our last capture."""
    request_headers: list[tuple[str, str]] = field(default_factory=list, repr=False)
    """Headers of the request as sent, for the WARC request record."""
    response_headers: list[tuple[str, str]] = field(default_factory=list, repr=False)
    """Headers of the response as received, for the WARC response record."""
    warc: tuple[str, int, int] | None = None
    """Where the response was written in the run's WARC files: key, offset, length; set by
    the pipeline before the page is stored (and kept if the page waits in the spool)."""
