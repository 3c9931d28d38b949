"""Records read from the archive's own folders (``articles/<site>/<YYYY>/<MM>/<DD>/``),
listing only the folders a site and date range need.

The archive lists only the folders a site and closed date range need
(``Archive.iter_meta_keys``), so ``ls --site s --since d --until d`` lists one day's keys.
Each listing is paginated by the backend, and each ``meta.json`` is read here as its key
comes out of the listing, a few at a time: nothing else of the archive is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from storage import Archive, ObjectNotFound, Record

# meta.json files read at once: S3 answers each GET in tens of milliseconds, and a listing
# of a busy day holds hundreds of articles.
_PARALLEL_READS = 8
_BATCH = 64


def iter_meta_keys(archive: Archive, site: str | None = None, since: date | None = None,
                   until: date | None = None) -> Iterator[str]:
    """Keys of the ``meta.json`` of every article of ``site`` dated within [since, until]."""
    return archive.iter_meta_keys(site, since, until)


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
