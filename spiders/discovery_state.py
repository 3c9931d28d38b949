"""What discovery remembers of a site between crawls, so that a scheduled crawl reads only
the sitemaps and feeds that changed since the last one.

A news site's sitemap index lists hundreds to thousands of sitemaps (one a day or a month,
back for years); reading them all every 30 minutes costs the publisher a request each for
nothing. For each sitemap and feed read completely, the site's state in the archive
(``_index/sites/<site>/discovery.json``, so any machine's next crawl has it) keeps the
``ETag`` and ``Last-Modified`` it was served with and the ``<lastmod>`` its index gave it.
The next crawl then:

- skips a sitemap whose index ``<lastmod>`` is not newer than the one recorded;
- asks for the others, and for feeds, with ``If-None-Match`` / ``If-Modified-Since``: a
  ``304 Not Modified`` is one small answer instead of the document;
- reads a sitemap index (and robots.txt) every time: it is one request, and it holds the
  ``<lastmod>`` values the rest is decided by.

A document is recorded only when its URLs were all handled: every article it lists was
skipped as archived, fetched, or refused for good (robots.txt, a 404 or 410, off-site), and
the crawl ended normally with no page waiting in its spool. A crawl that died, or an article
that failed for a reason that may pass (a timeout, a 5xx, a soft block), leaves the
document's earlier record in place, so the next crawl reads it again. Some publishers never
update ``<lastmod>``: every ``full_read_every_days`` (and with ``crawl --full``) a crawl reads
every document in full.

Two crawls of a site may write the state at once; the last one wins. Either state only ever
records reads that were complete, so the loser's work is at worst read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from normalize.metadata import parse_datetime

STATE_NAME = "discovery"
"""The site state's name (``_index/sites/<site>/discovery.json``)."""

_VERSION = 1


@dataclass(frozen=True)
class DocumentRead:
    """The last complete read of one sitemap or feed."""

    etag: str | None
    """The ``ETag`` it was served with, for ``If-None-Match``."""
    last_modified: str | None
    """Its ``Last-Modified``, for ``If-Modified-Since``."""
    lastmod: datetime | None
    """The ``<lastmod>`` its sitemap index gave it then (None for feeds, and for sitemaps
    their index gives none)."""
    read_at: datetime
    """When it was read."""

    def to_json(self) -> dict:
        return {"etag": self.etag, "last_modified": self.last_modified,
                "lastmod": self.lastmod.isoformat() if self.lastmod else None,
                "read_at": self.read_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict) -> DocumentRead | None:
        if not isinstance(data, dict):
            return None
        read_at = parse_datetime(data.get("read_at"))
        if read_at is None:
            return None
        return cls(etag=_text(data.get("etag")), last_modified=_text(data.get("last_modified")),
                   lastmod=parse_datetime(data.get("lastmod")), read_at=read_at)

    def conditional_headers(self) -> dict[str, str]:
        """The headers that ask for the document only if it changed since this read."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True)
class DiscoveryState:
    """A site's discovery state, as stored in the archive."""

    documents: dict[str, DocumentRead] = field(default_factory=dict)
    """Sitemap or feed URL -> its last complete read."""
    full_read_at: datetime | None = None
    """When a crawl last read every document in full (None: never)."""

    @classmethod
    def from_json(cls, data: dict | None) -> DiscoveryState:
        """The state read back; an absent or unreadable one is empty (everything is read)."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return cls()
        documents = {}
        for url, read in (data.get("documents") or {}).items():
            parsed = DocumentRead.from_json(read)
            if isinstance(url, str) and parsed is not None:
                documents[url] = parsed
        return cls(documents, parse_datetime(data.get("full_read_at")))

    def to_json(self) -> dict:
        return {"version": _VERSION,
                "full_read_at": self.full_read_at.isoformat() if self.full_read_at else None,
                "documents": {url: read.to_json() for url, read in sorted(self.documents.items())}}

    def full_read_due(self, every_days: int, now: datetime | None = None) -> bool:
        """Whether this crawl should read every document in full: never done, or done
        ``every_days`` ago or more (0: every crawl)."""
        if self.full_read_at is None or every_days <= 0:
            return True
        return (now or datetime.now(timezone.utc)) - self.full_read_at >= timedelta(days=every_days)

    def unchanged(self, url: str, lastmod: datetime | None) -> bool:
        """Whether the index's ``lastmod`` for a sitemap says it has not changed since its
        last complete read (a sitemap listed without ``lastmod`` is not known unchanged)."""
        read = self.documents.get(url)
        return lastmod is not None and read is not None and read.lastmod is not None \
            and lastmod <= read.lastmod


class DiscoveryLog:
    """What one crawl's discovery did with each document, to make the next state from.
    Used from the reactor's thread."""

    def __init__(self, state: DiscoveryState, full: bool) -> None:
        self.state = state
        """The state the crawl started from."""
        self.full = full
        """Whether this crawl reads every document in full."""
        self._seen: set[str] = set()
        self._read: dict[str, DocumentRead] = {}

    def conditional_headers(self, url: str) -> dict[str, str]:
        """Headers for a request of a sitemap or feed: conditional unless reading in full.
        Notes it seen."""
        self._seen.add(url)
        read = None if self.full else self.state.documents.get(url)
        return read.conditional_headers() if read else {}

    def skip_unchanged(self, url: str, lastmod: datetime | None) -> bool:
        """Whether to skip a sitemap its index lists with ``lastmod``; notes it seen."""
        self._seen.add(url)
        return not self.full and self.state.unchanged(url, lastmod)

    def seen(self, url: str) -> None:
        """A sitemap or feed was asked for (read, not modified, or failed)."""
        self._seen.add(url)

    def read(self, url: str, etag: str | None, last_modified: str | None,
             lastmod: datetime | None) -> None:
        """A sitemap or feed was read (its URLs are then handled)."""
        self._seen.add(url)
        earlier = self.state.documents.get(url)
        if earlier is not None and (earlier.etag, earlier.last_modified, earlier.lastmod) \
                == (etag, last_modified, lastmod):
            # Read again, as it was: keep the earlier record, so that a crawl that changed
            # nothing writes nothing.
            self._read[url] = earlier
            return
        self._read[url] = DocumentRead(etag, last_modified, lastmod, datetime.now(timezone.utc))

    def next_state(self, unfinished: set[str]) -> DiscoveryState:
        """The state after a crawl that ended normally: the documents read now whose URLs
        were all handled (not in ``unfinished``), the earlier reads of the others it still
        lists; documents no longer listed are forgotten."""
        documents = {url: read for url, read in self.state.documents.items() if url in self._seen}
        documents.update((url, read) for url, read in self._read.items() if url not in unfinished)
        full_read_at = datetime.now(timezone.utc) if self.full and not unfinished \
            else self.state.full_read_at
        return DiscoveryState(documents, full_read_at)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None
