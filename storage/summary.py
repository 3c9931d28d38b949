"""A site's URL summary: which URLs lead to an archived article, and when it was last
captured, for every URL of the site at once, in a few requests.

Before fetching what its sitemaps and feeds list, a crawl must know which of those URLs are
archived. Asking the dedup index costs a request or two per URL (its marker, then the
record), which grows with what the site ever published: a million listed URLs would be
two million requests every run. The summary answers from memory instead.

It is made of segments under ``_index/sites/<site>/urls/``: each run (a crawl, a CC-NEWS
backfill) writes one at its end, and one every :data:`WRITE_EVERY` URLs before
(``<run_id>-<n>.bin``: the URLs it found archived or archived itself, with their capture
times), and a crawl that finds more than :data:`COMPACT_OVER` segments merges them into one and
deletes those it merged. Segments are written once and never changed, so writers on any
number of machines need no lock: two merges at once each write a segment holding all they
read, and delete only what they read, so every entry stays in some segment.

The summary *settles* a URL as archived: it is written after the records it names are
complete, and records are never removed. A run writes what it adds as it goes
(:class:`SummaryNotes`: a segment every :data:`WRITE_EVERY` URLs, and the rest at its end),
so a run killed on the way leaves at most that many URLs out. When every segment was read,
or the site has neither segment nor article yet (:attr:`UrlSummary.complete`), a crawl takes
a URL the summary does not know for a new one and fetches it without a look-up; otherwise
(articles but no segment, a segment that cannot be read) it looks such URLs up in the dedup
index. Either way the index stays the truth for claims and races: a summary behind the
index (a URL of a run killed between two writes) costs a fetch of a page that then turns out
archived, never a missed or a duplicated article.

A segment is ``MAGIC`` followed by the entries' 16-byte URL digests (the first half of the
URL's SHA-256, sorted) and then their capture times (int64 seconds since the epoch, UTC),
little-endian. 24 bytes a URL: a site of a million URLs reads 24 MB once per crawl.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from storage.backends import Backend
from storage.errors import InvalidKey, ObjectNotFound
from storage.keys import ARTICLES_ROOT, SITE_STATE_ROOT, validate_site_name
from storage.lazy import LazyModule

np = LazyModule("numpy")  # a crawl imports it anyway (MinHash); `browse` never needs it

logger = logging.getLogger(__name__)

MAGIC = b"NAURLS1\n"
"""The first bytes of a segment (the format's name and version)."""

COMPACT_OVER = 16
"""Segments a crawl tolerates before it merges them: reading costs a request per segment."""

WRITE_EVERY = 500
"""URLs a run notes before it writes them as a segment: a run killed on the way leaves at
most this many out of the summary (the next crawl fetches those pages again, and finds them
archived). A scheduled run of a few dozen new articles writes one segment, at its end."""

_DIGEST = "S16"  # numpy's fixed-width bytes: sorts and compares as the digests' bytes do
_DIGEST_BYTES = 16
_TIME_BYTES = 8
_PARALLEL_READS = 8
_SEGMENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,96}$")


def url_digest(url: str) -> bytes:
    """The 16 bytes a URL is known by in the summary. 128 bits: the chance that a new URL
    passes for an archived one among a billion is about 10^-21."""
    return hashlib.sha256(url.encode("utf-8")).digest()[:_DIGEST_BYTES]


def summary_prefix(site: str) -> str:
    """Where a site's summary segments are: ``_index/sites/<site>/urls/``."""
    return f"{SITE_STATE_ROOT}/{validate_site_name(site)}/urls/"


def segment_key(site: str, name: str) -> str:
    """Key of one segment of the site's summary."""
    if not _SEGMENT_NAME.fullmatch(name):
        raise InvalidKey(f"invalid summary segment name {name!r}")
    return f"{summary_prefix(site)}{name}.bin"


class UrlSummary:
    """A site's archived URLs with their capture times, held in memory (sorted arrays)."""

    def __init__(self, digests=None, times=None, *, complete: bool = False) -> None:
        self._digests = digests if digests is not None else np.empty(0, dtype=_DIGEST)
        self._times = times if times is not None else np.empty(0, dtype="<i8")
        self.complete = complete
        """Whether this is every segment of the site, each read: then a URL the summary does
        not know was archived by no run that wrote one (see the module's docstring). Also
        true for a site without a segment and without an article; false for one with
        articles but no segment (archived before summaries were kept), and when a segment
        could not be read."""

    def __len__(self) -> int:
        return len(self._digests)

    def captured_at(self, urls: Iterable[str]) -> list[datetime | None]:
        """For each URL, when the article it leads to was last captured, or None when the
        summary does not know it."""
        wanted = np.array([url_digest(url) for url in urls], dtype=_DIGEST)
        if not len(self._digests) or not len(wanted):
            return [None] * len(wanted)
        at = np.searchsorted(self._digests, wanted)
        inside = np.minimum(at, len(self._digests) - 1)
        found = self._digests[inside] == wanted
        return [datetime.fromtimestamp(int(self._times[i]), timezone.utc) if hit else None
                for i, hit in zip(inside.tolist(), found.tolist())]

    @classmethod
    def load(cls, backend: Backend, site: str, *, compact_over: int = COMPACT_OVER) -> UrlSummary:
        """The site's summary: every segment read (in parallel) and merged. With more than
        ``compact_over`` segments, the merge is written as one segment and the segments it
        was made of are deleted. A segment that cannot be read is left out (with a warning):
        its URLs are then looked up one by one."""
        keys = list(backend.iter_keys(summary_prefix(site)))
        if not keys:
            # No segment: a site never archived (its first crawl, which then needs no
            # look-ups: one listing says so), or one archived before summaries were kept or
            # by a run killed before its first write, whose URLs only look-ups find.
            return cls(complete=next(iter(backend.iter_keys(f"{ARTICLES_ROOT}/{site}/")),
                                     None) is None)
        with ThreadPoolExecutor(min(_PARALLEL_READS, len(keys)),
                                thread_name_prefix="archive-summary") as pool:
            read = list(pool.map(lambda key: _read_segment(backend, key), keys))
        parts = [(key, part) for key, part in zip(keys, read) if part is not None]
        summary = _merge([part for _, part in parts])
        # A segment merged away by another crawl since it was listed is in a segment this
        # listing may not have: complete only when every segment listed was read.
        summary.complete = len(parts) == len(keys)
        if len(parts) > compact_over:
            name = f"merged-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
            backend.put(segment_key(site, name), summary.to_bytes(),
                        content_type="application/octet-stream")
            for key, _ in parts:
                backend.delete(key)
        return summary

    def to_bytes(self) -> bytes:
        """The summary as one segment."""
        return MAGIC + self._digests.tobytes() + self._times.astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> UrlSummary:
        """A segment read back; ValueError if it is not one."""
        if not data.startswith(MAGIC) or (len(data) - len(MAGIC)) % (_DIGEST_BYTES + _TIME_BYTES):
            raise ValueError("not a URL summary segment")
        count = (len(data) - len(MAGIC)) // (_DIGEST_BYTES + _TIME_BYTES)
        digests = np.frombuffer(data, dtype=_DIGEST, count=count, offset=len(MAGIC))
        times = np.frombuffer(data, dtype="<i8", count=count,
                              offset=len(MAGIC) + count * _DIGEST_BYTES)
        if count > 1 and not bool((digests[1:] > digests[:-1]).all()):
            raise ValueError("URL summary segment not sorted")
        return cls(digests, times)

    @classmethod
    def of(cls, captured: Mapping[str, datetime]) -> UrlSummary:
        """A summary of ``captured`` (URL -> capture time)."""
        digests = np.array([url_digest(url) for url in captured], dtype=_DIGEST)
        times = np.array([int(when.timestamp()) for when in captured.values()], dtype="<i8")
        return _merge([cls(digests, times)])


class SummaryNotes:
    """What one run adds to a site's URL summary, written as it goes: a segment
    (``<run_id>-<n>``) every ``every`` URLs, and what is left by :meth:`write` at the run's
    end. Thread-safe: storing threads note what they archived."""

    def __init__(self, backend: Backend, site: str, run_id: str, *,
                 every: int = WRITE_EVERY) -> None:
        self.backend = backend
        self.site = validate_site_name(site)
        self.run_id = run_id
        self.every = every
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}
        self._segments = 0

    def __len__(self) -> int:
        """URLs noted and not written yet."""
        with self._lock:
            return len(self._pending)

    def note(self, urls: Iterable[str], when: datetime) -> None:
        """URLs that lead to a complete record captured at ``when``; a segment is written
        (in the calling thread) once ``every`` URLs wait. A write that fails keeps them for
        the next (with a warning): a failure costs the next crawl fetches, never an article."""
        with self._lock:
            _keep_latest(self._pending, dict.fromkeys(urls, when))
            due = len(self._pending) >= self.every
        if due:
            try:
                self.write()
            except Exception as exc:  # noqa: BLE001 - the run goes on; its end writes again
                logger.warning("cannot write the URL summary yet, keeping it for later: %s", exc)

    def write(self) -> str | None:
        """Write the URLs noted since the last write as a segment; returns its key, or None
        when there was nothing to write. Raises the backend's error (the URLs stay noted)."""
        with self._lock:
            taken, self._pending = self._pending, {}
            name = f"{self.run_id}-{self._segments}"
            self._segments += 1
        try:
            return write_segment(self.backend, self.site, name, taken)
        except BaseException:
            with self._lock:
                _keep_latest(self._pending, taken)
            raise


def _keep_latest(into: dict[str, datetime], more: Mapping[str, datetime]) -> None:
    for url, when in more.items():
        if into.get(url, when) <= when:
            into[url] = when


def write_segment(backend: Backend, site: str, run_id: str,
                  captured: Mapping[str, datetime]) -> str | None:
    """Write a crawl's segment (URL -> when the article it leads to was captured); returns
    its key, or None when there was nothing to write."""
    if not captured:
        return None
    key = segment_key(site, run_id)
    backend.put(key, UrlSummary.of(captured).to_bytes(), content_type="application/octet-stream")
    return key


def _read_segment(backend: Backend, key: str) -> UrlSummary | None:
    try:
        return UrlSummary.from_bytes(backend.get(key))
    except ObjectNotFound:
        return None  # merged and deleted by another crawl since it was listed
    except ValueError as exc:
        logger.warning("skipping URL summary segment %s: %s", key, exc)
        return None


def _merge(parts: list[UrlSummary]) -> UrlSummary:
    """One summary of several: sorted by digest, each URL once with its latest capture."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return UrlSummary()
    digests = np.concatenate([p._digests for p in parts])
    times = np.concatenate([p._times for p in parts])
    # By digest, latest time last within a digest: the last of each run of equal digests wins.
    order = np.lexsort((times, digests))
    digests, times = digests[order], times[order]
    last = np.ones(len(digests), dtype=bool)
    last[:-1] = digests[1:] != digests[:-1]
    return UrlSummary(np.ascontiguousarray(digests[last]), np.ascontiguousarray(times[last]))
