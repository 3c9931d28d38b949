"""What discovery listed during one crawl, kept on disk.

A crawl remembers, for every article its sitemaps and feeds list, each URL it was listed
under (they end up in the record's ``aliases``), whether it has been queued (an article
listed by two sitemaps is fetched once) and how many of its URLs the archive has been told
about (the others are added as aliases when the crawl ends). In Python sets and dicts that
is about 650 bytes an article: a crawl's memory would grow with the length of its sitemaps,
650 MB for a million articles. :class:`Listings` keeps it in an SQLite file in the run's
workspace instead, beside Scrapy's job directory (where the requests not yet sent wait), so
the crawl's memory stays flat. It is scratch state: no journal, no fsync; a crawl that dies
loses it with its queue, and the next crawl discovers again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS listing (
    canonical TEXT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (canonical, url)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS article (
    canonical TEXT PRIMARY KEY,
    queued INTEGER NOT NULL DEFAULT 0,
    reported INTEGER,
    source TEXT,
    failed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
# SQLite's page cache, in KiB (a negative cache_size is KiB): what the store may hold in memory.
_CACHE_KIB = 2048


class Listings:
    """One crawl's listings; ``path`` None keeps them in memory (a backfill plan, which
    holds its articles in memory anyway). Used from the reactor's thread."""

    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a crawl's listings start empty
        self._db = sqlite3.connect(":memory:" if path is None else str(path),
                                   isolation_level=None, check_same_thread=False)
        self._db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                               f"PRAGMA cache_size=-{_CACHE_KIB};" + _SCHEMA)

    def add(self, canonical: str, url: str) -> None:
        """Record that discovery listed the article ``canonical`` under ``url``."""
        self._db.execute("INSERT OR IGNORE INTO listing VALUES (?, ?)", (canonical, url))

    def urls(self, canonical: str) -> frozenset[str]:
        """Every URL the article was listed under so far."""
        return frozenset(url for (url,) in self._db.execute(
            "SELECT url FROM listing WHERE canonical = ?", (canonical,)))

    def queue(self, canonical: str, source: str | None = None) -> bool:
        """Mark the article queued for fetching, by the sitemap or feed ``source``; False if
        it was already."""
        # One statement per listed URL (this runs in the reactor's thread): it changes a row
        # only when the article was not queued yet.
        return self._db.execute(
            "INSERT INTO article (canonical, queued, source) VALUES (?, 1, ?) "
            "ON CONFLICT (canonical) DO UPDATE SET queued = 1, source = excluded.source "
            "WHERE queued = 0", (canonical, source)).rowcount == 1

    def failed(self, canonical: str) -> None:
        """The article could not be had this time, for a reason that may pass."""
        self._db.execute("UPDATE article SET failed = 1 WHERE canonical = ?", (canonical,))

    def unfinished_sources(self) -> set[str]:
        """The sitemaps and feeds that queued an article which then failed."""
        return {source for (source,) in self._db.execute(
            "SELECT DISTINCT source FROM article WHERE failed = 1 AND source IS NOT NULL")}

    def is_queued(self, canonical: str) -> bool:
        row = self._db.execute("SELECT queued FROM article WHERE canonical = ?",
                               (canonical,)).fetchone()
        return bool(row and row[0])

    def reported(self, canonical: str, urls: Collection[str]) -> None:
        """The archive has been told about the article's ``urls``."""
        self._db.execute("INSERT INTO article (canonical, reported) VALUES (?, ?) "
                         "ON CONFLICT (canonical) DO UPDATE SET reported = excluded.reported",
                         (canonical, len(set(urls) - {canonical})))

    def late(self) -> Iterator[tuple[str, frozenset[str]]]:
        """Articles listed under more URLs than the archive was told about, with all their
        URLs (articles never reported are not late: they were not handled).

        The canonical URL itself is never late: the archive's URL index holds every article
        under the canonical form of the URL it was fetched at, which is that very URL (an
        article fetched at its feed link, with tracking parameters, and listed afterwards by
        a sitemap under the plain URL taught the archive nothing new)."""
        rows = self._db.execute(
            "SELECT a.canonical FROM article a WHERE a.reported IS NOT NULL AND "
            "(SELECT count(*) FROM listing l WHERE l.canonical = a.canonical "
            "AND l.url != a.canonical) > a.reported"
        ).fetchall()
        for (canonical,) in rows:
            yield canonical, self.urls(canonical)

    def close(self) -> None:
        self._db.close()
