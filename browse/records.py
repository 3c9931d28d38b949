"""Records read from the archive's own folders (``articles/<site>/<YYYY>/<MM>/<DD>/``),
listing only the folders a site and date range need.

``Archive.iter_records`` lists a whole site (or the whole archive) and filters by date; for
one site and a closed date range, this lists the fewest year, month and day folders that
cover the range instead, so ``ls --site s --since d --until d`` lists one day's keys. Each
listing is paginated by the backend, and each ``meta.json`` is read as its key comes out of
the listing, a few at a time: nothing else of the archive is downloaded.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from storage import Archive, ObjectNotFound, Record, validate_site_name
from storage.keys import ARTICLES_ROOT, day_of_meta_key, is_meta_key

# meta.json files read at once: S3 answers each GET in tens of milliseconds, and a listing
# of a busy day holds hundreds of articles.
_PARALLEL_READS = 8
_BATCH = 64


def date_prefixes(since: date, until: date) -> list[str]:
    """The fewest ``YYYY/``, ``YYYY/MM/`` and ``YYYY/MM/DD/`` folders that hold exactly the
    days from ``since`` to ``until`` (inclusive)."""
    out: list[str] = []
    day = since
    while day <= until:
        if day.month == 1 and day.day == 1 and date(day.year, 12, 31) <= until:
            out.append(f"{day:%Y}/")
            day = date(day.year + 1, 1, 1)
            continue
        month_end = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
        if day.day == 1 and month_end <= until:
            out.append(f"{day:%Y/%m}/")
            day = month_end + timedelta(days=1)
            continue
        out.append(f"{day:%Y/%m/%d}/")
        day += timedelta(days=1)
    return out


def meta_key_prefixes(site: str | None, since: date | None, until: date | None) -> list[str]:
    """The key prefixes to list for the records of ``site`` dated within [since, until]."""
    if site is None:
        return [f"{ARTICLES_ROOT}/"]
    root = f"{ARTICLES_ROOT}/{validate_site_name(site)}/"
    if since is None or until is None:
        # An open range has no last folder we could name without listing the site.
        return [root]
    if since > until:
        return []
    return [root + prefix for prefix in date_prefixes(since, until)]


def iter_meta_keys(archive: Archive, site: str | None = None, since: date | None = None,
                   until: date | None = None) -> Iterator[str]:
    """Keys of the ``meta.json`` of every article of ``site`` dated within [since, until]."""
    for prefix in meta_key_prefixes(site, since, until):
        for key in archive.backend.iter_keys(prefix):
            if not is_meta_key(key):
                continue
            day = day_of_meta_key(key)
            if (since and day < since) or (until and day > until):
                continue
            yield key


def iter_records(archive: Archive, site: str | None = None, since: date | None = None,
                 until: date | None = None, language: str | None = None) -> Iterator[Record]:
    """Every complete record of ``site`` dated within [since, until] (in ``language``, an
    ISO 639-1 code, when given), in listing order."""
    wanted = language.lower() if language else None
    for record in read_records(archive, iter_meta_keys(archive, site, since, until)):
        if wanted is None or (record.language or "").lower() == wanted:
            yield record


def read_records(archive: Archive, keys: Iterable[str]) -> Iterator[Record]:
    """The records at ``keys`` (``meta.json`` keys), in order, read a few at a time; a key
    deleted since it was listed is skipped."""
    def read(key: str) -> Record | None:
        try:
            return Record.from_json(archive.backend.get(key))
        except ObjectNotFound:
            return None

    with ThreadPoolExecutor(_PARALLEL_READS, thread_name_prefix="browse-read") as pool:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == _BATCH:
                yield from filter(None, pool.map(read, batch))
                batch = []
        yield from filter(None, pool.map(read, batch))
