"""The archive: writes an article's objects in a crash-safe order, dedups by canonical URL
and by content, keeps versions, and reads records back.

Write protocol for a new article (any number of writers, on any number of machines), five
requests in all:

1. claim ``_index/urls/<sha256(canonical_url)>.json`` with create-if-absent; the marker
   names the article's keys. The loser of a race reads the marker instead.
2. claim the text's fingerprint in ``_index/content/`` with create-if-absent (below);
3. write ``raw.html.gz`` and ``text.txt`` (in parallel);
4. write ``meta.json`` last: its presence means the article is complete. Index entries
   that name an article without ``meta.json`` are ignored by readers.

Then its text joins the near-duplicate index (:mod:`storage.near_index`), written a few
times a run rather than per article.

A claim whose ``meta.json`` is missing belongs to a writer that is still running or that
died; the next writer completes the article *in the keys the claim names*, so an article
never gets a second place, and a crash between steps loses nothing that a re-run can't redo.

**Copies.** If another complete article of the *same site* has the same text, this page's
URLs are added to that record's ``aliases`` (no second copy). Every site keeps its own
articles: the same text on another site is archived under that site too, with
``duplicate_of`` naming the copy published first (by ``published``, else first fetched);
near-identical text (Jaccard >= 0.9, found in the near-duplicate index) gets
``near_duplicate_of`` by the same rule. When the earlier-published copy is archived after
the later one, the later one's record is corrected to point to it. A page whose canonical
URL is archived with different text becomes a new version under
``<article>/versions/<sha256[:16]>/``. Changing an existing ``meta.json`` (aliases,
versions, a corrected link) is a compare-and-swap (``IfMatch`` on S3, a lock file locally),
retried when another writer got there first.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from storage.backends import Backend, open_backend
from storage.compress import DeflatedBody
from storage.dedup import (
    NEAR_DUPLICATE_JACCARD,
    dedupable,
    hashed_jaccard,
    lsh_bands,
    shingle_hashes,
    text_fingerprint,
)
from storage.errors import ArchiveError, InvalidKey, ObjectNotFound
from storage.index import DedupIndex, KeyLocks, compare_and_swap, is_stale, lease
from storage.keys import (
    URL_INDEX_ROOT,
    ArticleKeys,
    article_keys,
    day_of_meta_key,
    day_of_run_manifest_key,
    is_meta_key,
    keys_of_meta,
    meta_key_prefixes,
    run_manifest_key,
    run_manifest_prefixes,
    site_state_key,
    url_index_key,
    validate_article_id,
    version_keys,
)
from storage.near_index import NearEntry, NearIndex, recover_journal
from storage.record import RECORD_FIELDS, Record, Version, as_utc
from storage.summary import SummaryNotes, UrlSummary
from storage.urls import canonicalize_url

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_MARKER_KEYS = ("raw_key", "text_key", "meta_key")
# A claim older than this without its meta.json belongs to a writer that died. Writing one
# article takes well under a second; storage retries stretch that to tens of seconds.
CLAIM_STALE_AFTER = timedelta(minutes=2)
# Near-duplicate candidates checked per page, most shared LSH buckets first.
_MAX_CANDIDATES = 10
# Run manifests read at once by iter_run_manifests.
_PARALLEL_MANIFEST_READS = 8
# Texts whose shingles are kept in memory: the near copies of a story tend to come
# together, and each is compared with the ones before it, which are then not read again.
# Kept as hashes (dedup.shingle_hashes), 4 KB for a 1,000-word text: 16 MB at most.
_SHINGLES_KEPT = 4096
# How long a record read to follow a near copy's original is trusted. Other writers'
# corrections of an original (when an earlier copy on another site arrives) are seen this
# late at most, as their index entries are (near_index.FLUSH_EVERY_SECONDS).
_ORIGINALS_TRUSTED_SECONDS = 30.0
_ORIGINALS_KEPT = 4096
# URLs under which a writer keeps the records it stored (stored_lately; a record, about
# 2 KB, is shared by its URLs): a crawl's feed lists an article it has just stored under one
# more URL within the crawl, a few hundred articles later at most.
_STORED_KEPT = 1024
# The file of the journal's folder (keep_journal) that holds the links being corrected: one
# JSON line per original, ``{"meta_key": ..., "links": [[copy's meta_key, link, original]]}``.
_LINKS_JOURNAL = "links.jsonl"


class _Kept(Generic[K, V]):
    """What a writer keeps in memory of what it has read or written, thread-safe: at most
    ``size`` entries, the oldest put going first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries.pop(key, None)  # put again: the newest
            self._entries[key] = value
            while len(self._entries) > self._size:
                del self._entries[next(iter(self._entries))]

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)


class StoreOutcome(enum.Enum):
    """What :meth:`Archive.store` did."""

    WRITTEN = "written"
    """A new article: its objects were written."""
    VERSION = "version"
    """The canonical URL was archived with other text: a new version was added."""
    DUPLICATE = "duplicate"
    """The canonical URL was archived with the same text; at most its URLs were recorded."""
    ALIASED = "aliased"
    """Another article has the same text: this page's URLs were added to its aliases."""
    IN_PROGRESS = "in_progress"
    """Another run claimed the article moments ago and is writing it; nothing was written."""


@dataclass(frozen=True)
class StoreResult:
    """The outcome of storing one article."""

    outcome: StoreOutcome
    """What was done."""
    record: Record
    """The record as it now stands in the archive (for IN_PROGRESS: the one we would have
    written)."""
    completed_claim: bool = False
    """True when this writer finished an article whose earlier writer had claimed it and stopped."""


class Archive:
    """An archive over one backend. Thread-safe as far as its backend is (both of ours are)."""

    def __init__(self, backend: Backend, claim_stale_after: timedelta = CLAIM_STALE_AFTER,
                 run_id: str = "") -> None:
        self.backend = backend
        self.claim_stale_after = claim_stale_after
        self.index = DedupIndex(backend)
        self.near = NearIndex(backend, run_id)
        """The near-duplicate index as this writer sees it: :meth:`flush` writes what it
        added."""
        self._locks = KeyLocks()
        # (article id, version) -> the text's shingle hashes.
        self._shingles: _Kept[tuple[str, str], np.ndarray] = _Kept(_SHINGLES_KEPT)
        # Original's id -> (when read, the article it now points to, or ""): see
        # _ORIGINALS_TRUSTED_SECONDS.
        self._originals: _Kept[str, tuple[float, str]] = _Kept(_ORIGINALS_KEPT)
        # Canonical URL -> the record this writer stored under it (stored_lately).
        self._stored: _Kept[str, Record] = _Kept(_STORED_KEPT)
        # An article's two objects are written at once: on S3 that is one round trip
        # instead of two.
        self._writers = ThreadPoolExecutor(8, thread_name_prefix="archive-put")
        # The journal of the links this writer corrects (keep_journal): its file, and
        # whether a correction failed (the file then stays for the next crawl).
        self._links_journal: Path | None = None
        self._links_lock = threading.Lock()
        self._links_failed = False

    @classmethod
    def open(cls, url: str, run_id: str = "") -> Archive:
        """Open the archive at ``url`` (a directory or ``s3://bucket/prefix``); ``run_id``
        names what this writer adds to the near-duplicate index."""
        return cls(open_backend(url), run_id=run_id)

    def flush(self) -> None:
        """Write what this writer added to the near-duplicate index since the last flush
        (done every so often while storing): call it once storing is over."""
        self.near.flush(last=True)
        with self._links_lock:
            if self._links_journal is not None and not self._links_failed:
                self._links_journal.unlink(missing_ok=True)

    def keep_journal(self, directory: Path) -> None:
        """Journal in ``directory`` (local) what a writer that dies would leave undone: its
        near-duplicate index entries (:meth:`NearIndex.keep_journal`), and the links it
        corrects in the records of copies archived before their original, written down
        before the original's ``meta.json``; :meth:`recover_journal` finishes both."""
        self.near.keep_journal(directory)
        self._links_journal = directory / _LINKS_JOURNAL

    def recover_journal(self, directory: Path, run_id: str) -> None:
        """Finish what a writer that died journalled in ``directory`` (:meth:`keep_journal`):
        write its near-duplicate index entries, and correct the links its stored originals
        were to correct (those whose ``meta.json`` exists: the others are stored again, and
        their links found again, when their pages are). Raises the backend's error; a
        correction that fails leaves the journal for the next try."""
        recover_journal(self.backend, directory, run_id)
        path = directory / _LINKS_JOURNAL
        if not path.is_file():
            return
        done = True
        for line in path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
                meta_key, links = entry["meta_key"], entry["links"]
                when = datetime.fromisoformat(entry["when"]) if "when" in entry else None
            except (ValueError, KeyError, TypeError):
                logger.warning("link journal %s ends with a record cut short", path)
                break
            if self.backend.exists(meta_key):
                for copy_key, link, original in links:
                    done = self._point_to(copy_key, link, original, when) and done
        if done:
            path.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        """The archive URL."""
        return self.backend.url

    # -- writing -----------------------------------------------------------------------

    def keys_for(self, site: str, day: date, article_id: str) -> ArticleKeys:
        """Archive-relative keys of an article (see :func:`storage.keys.article_keys`)."""
        return article_keys(site, day, article_id)

    def locate(self, key: str) -> str:
        """The key as recorded in ``meta.json`` (from the bucket's root)."""
        return self.backend.locate(key)

    def place(self, record: Record) -> Record:
        """``record`` with the keys of its place in the archive: under its site and the UTC
        day of its publication (of its fetch when it has no date), named by its id."""
        when = record.published or record.fetched_at
        keys = article_keys(record.site, as_utc(when).date(), record.id)
        placed = (self.locate(keys.raw), self.locate(keys.text), self.locate(keys.meta))
        given = (record.raw_key, record.text_key, record.meta_key)
        if any(given) and given != placed:
            # Only the archive names places: a record that names others is a bug upstream,
            # or an attempt to write somewhere else.
            raise InvalidKey(f"record {record.id} names keys that are not its place: {given}")
        return replace(record, raw_key=placed[0], text_key=placed[1], meta_key=placed[2])

    def lookup(self, url: str) -> Record | None:
        """The complete record that ``url`` (a canonical URL or a marked alias) leads to."""
        marker = self.index.read_marker(url)
        return self._complete_record(marker["meta_key"]) if marker else None

    def is_archived(self, canonical_url: str) -> bool:
        """Whether an article with this canonical URL is completely archived."""
        return self.lookup(canonical_url) is not None

    def store(
        self,
        record: Record,
        *,
        raw_body: bytes | DeflatedBody,
        charset: str,
        text: str,
        run_id: str = "",
        seen_urls: Iterable[str] = (),
        refetch: bool = False,
        screenshot: bytes | None = None,
    ) -> StoreResult:
        """Archive one fetched article: new, a new version, or a duplicate of one we have.

        ``record`` carries the URLs the page was seen at in ``aliases``; its keys are chosen
        here (:meth:`place`), whatever it says; ``raw_body`` is the response body exactly as received,
        stored gzip-compressed (or the body compressed already, when the caller compressed
        it for its WARC record too). ``seen_urls`` are other (canonicalised) URLs that led to this
        page: each gets an index marker pointing at the article, so a later crawl that finds
        it under one of them skips it before fetching. ``refetch`` says the page was fetched
        again to look for an update; finding none is then recorded in ``checked_at``.
        ``screenshot``: a PNG of the page as it looked, written beside the raw page of a new
        article or version (``screenshot_key``); a duplicate keeps the one it has.
        """
        seen_urls = set(seen_urls)
        result = self._store(record, raw_body=raw_body, charset=charset, text=text,
                             run_id=run_id, seen_urls=seen_urls, refetch=refetch,
                             screenshot=screenshot)
        if result.outcome is not StoreOutcome.IN_PROGRESS:
            for url in seen_urls | {result.record.canonical_url}:
                self._stored.put(url, result.record)
        return result

    def stored_lately(self, url: str) -> Record | None:
        """The record of an article this archive stored lately (in this process, under one of
        the last :data:`_STORED_KEPT` canonical URLs), found by ``url``, as it wrote it: no
        request. The stored record may know more since (its URLs and versions only grow);
        :meth:`add_aliases` given this one reads it before writing, as it always does."""
        return self._stored.get(url)

    def _store(self, record: Record, *, raw_body: bytes | DeflatedBody, charset: str,
               text: str, run_id: str, seen_urls: set[str], refetch: bool,
               screenshot: bytes | None) -> StoreResult:
        fingerprint = text_fingerprint(text)
        # Only the archive names places, the screenshot's too (set where it is written).
        record = replace(self.place(record), text_fingerprint=fingerprint,
                         charset=record.charset or charset, screenshot_key=None)
        seen_urls = seen_urls | {record.canonical_url}
        with self._locks.hold(f"text:{fingerprint}", f"url:{record.canonical_url}"):
            if refetch:  # archived, most likely: look before claiming
                existing = self.lookup(record.canonical_url)
                if existing is not None:
                    return self._store_again(existing, record, raw_body, charset, text,
                                             seen_urls, refetch, run_id, screenshot)
            # A new article, most likely: claim its URL first, a request that a look-up
            # first would only precede.
            marker = _marker(record, run_id)
            completed_claim = False
            if not self.index.claim_url(marker):
                existing = self.index.read_marker(record.canonical_url) or marker
                complete = self._complete_record(existing["meta_key"])
                if complete is not None:  # archived (by another machine, maybe, since we looked)
                    return self._store_again(complete, record, raw_body, charset, text,
                                             seen_urls, refetch, run_id, screenshot)
                if existing.get("run_id") != run_id and not is_stale(existing,
                                                                     self.claim_stale_after):
                    # Another writer is between its claim and its meta.json: leave it the
                    # work. Should it die, its article has no meta.json, so a later crawl
                    # fetches it again and, the claim then being stale, completes it.
                    return StoreResult(StoreOutcome.IN_PROGRESS, record)
                # Claimed but never completed (a crash, or our own run's earlier attempt):
                # finish it where the claim says, not in our own date folder, so it keeps
                # one place.
                logger.info("completing unfinished article %s claimed by run %r",
                            record.id, existing.get("run_id"))
                record = replace(record, **{k: existing[k] for k in _MARKER_KEYS})
                marker = _marker(record, run_id)
                completed_claim = True
            owner = self._claim_text(record, text)
            if owner is not None:
                twin = owner if owner.site == record.site else self._same_site_twin(record, text)
                if twin is not None:
                    logger.debug("same text as %s: %s", twin.id, record.url)
                    updated = self._add_urls(twin, record.urls | {record.url})
                    # The URL claimed above now leads to the article that has the text.
                    self.backend.put(url_index_key(record.canonical_url),
                                     json.dumps({**_marker(updated, run_id),
                                                 "alias": record.canonical_url}).encode(),
                                     content_type="application/json")
                    # (The claimed URL is marked just above: not claimed a second time.)
                    self.index.mark_urls(_marker(updated, run_id),
                                         seen_urls - {record.canonical_url})
                    return StoreResult(StoreOutcome.ALIASED, updated)
            return self._store_new(record, marker, owner, raw_body, charset, text, seen_urls,
                                   completed_claim, screenshot)

    def add_extraction(self, record: Record, updated: Record, text: str) -> StoreResult:
        """Store a new extraction of an archived capture (reprocessing): ``updated`` is
        ``record`` with the new extractor's fields, ``text`` its new text. The raw page is
        not rewritten; a changed text goes to ``versions/<sha256[:16]>/text.txt``. The new
        extraction becomes a version naming its extractor. Returns VERSION, or DUPLICATE
        when the record already holds exactly this extraction."""
        content_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        updated = replace(updated, content_sha256=content_sha256,
                          text_fingerprint=text_fingerprint(text))
        with self._locks.hold(f"text:{updated.text_fingerprint}", f"url:{record.canonical_url}"):
            text_key = record.text_key
            if content_sha256 != record.content_sha256:
                keys = version_keys(keys_of_meta(self.backend.relative(record.meta_key)),
                                    content_sha256)
                self.backend.put(keys.text, text.encode("utf-8"),
                                 content_type="text/plain; charset=utf-8")
                text_key = self.locate(keys.text)
                self._claim_text(replace(updated, text_key=text_key), text)
            version = replace(Version.of(record), content_sha256=content_sha256,
                              text_key=text_key, extractor=Version.of(updated).extractor)

            def reextracted(current: Record) -> Record | None:
                fresh = replace(updated, aliases=current.aliases, checked_at=current.checked_at,
                                raw_key=current.raw_key, text_key=text_key,
                                meta_key=current.meta_key, versions=current.versions)
                if _same_extraction(current, fresh):
                    return None
                return replace(fresh, versions=(*current.all_versions, version))
            stored = self._update(record, reextracted)
        changed = stored.all_versions[-1] == version and stored != record
        if changed and content_sha256 != record.content_sha256:
            self._index_text(stored, text, version=content_sha256[:16])
        return StoreResult(StoreOutcome.VERSION if changed else StoreOutcome.DUPLICATE, stored)

    def add_aliases(self, record: Record, urls: Iterable[str]) -> Record:
        """Record more URLs the article was seen at; writes nothing if it knows them all."""
        with self._locks.hold(f"url:{record.canonical_url}"):
            return self._add_urls(record, set(urls))

    def _store_new(self, record: Record, marker: dict, same_text: Record | None,
                   raw_body: bytes | DeflatedBody, charset: str, text: str,
                   seen_urls: set[str], completed_claim: bool,
                   screenshot: bytes | None = None) -> StoreResult:
        """Write a new article whose URL this writer holds. ``same_text``: an article of
        another site with the same text (this one is then its copy, or its original)."""
        record = replace(record, versions=(Version.of(record),))
        shot = self._screenshot_object(keys_of_meta(self.backend.relative(record.meta_key)),
                                       screenshot)
        if shot is not None:
            record = replace(record, screenshot_key=self.locate(shot[0]))
        # The search for its original and its entry as being stored are one step for the
        # texts it shares an LSH band with: two near copies of one story stored at once
        # (they share a band with probability 0.996 at the threshold) would otherwise both
        # search before either is entered, and both be taken for originals. Texts that
        # share no band, which cannot find each other anyway, are not held up; the writes
        # below are not held.
        bands = sorted(f"near:{band}:{bucket}" for band, bucket in lsh_bands(text)) \
            if dedupable(text) else []
        with self._locks.hold(*bands):
            if same_text is not None:
                record, corrections = self._link_exact_copy(record, same_text)
            else:
                record, corrections = self._link_near_copy(record, text)
            entry = self._near_entry(record, text)
            if entry is not None:
                # Its shingles kept first: a near copy found meanwhile compares with them,
                # its text not being written yet.
                self._shingles.put((record.id, ""), shingle_hashes(text))
                self.near.storing(entry, lsh_bands(text))
        # What its corrections of copies (rare) compare with.
        first_seen = _first_seen(record) if corrections else None
        try:
            rel = self.backend.relative
            self._put_objects(rel(record.raw_key), rel(record.text_key), raw_body, charset, text,
                              shot)
            self.index.mark_urls(marker, seen_urls)
            if corrections:  # made once the record is written: journalled before it
                self._journal_links(rel(record.meta_key), corrections, first_seen)
            self.backend.put(rel(record.meta_key), record.to_json(),
                             content_type="application/json; charset=utf-8")
        except BaseException:
            if entry is not None:
                self.near.stored(entry)
            raise
        for meta_key, link, original in corrections:
            if not self._point_to(meta_key, link, original, first_seen):
                with self._links_lock:
                    self._links_failed = True
        self._index_text(record, text)
        return StoreResult(StoreOutcome.WRITTEN, record, completed_claim)

    def _journal_links(self, meta_key: str, corrections: list[tuple[str, str, str]],
                       when: datetime) -> None:
        """Write down the links an original (its record at ``meta_key``, archive-relative,
        published or first fetched at ``when``) is to correct, when a journal is kept.
        Unbuffered, as the near-duplicate journal."""
        if self._links_journal is None:
            return
        line = json.dumps({"meta_key": meta_key, "links": corrections,
                           "when": when.isoformat()}).encode() + b"\n"
        with self._links_lock:
            try:
                with open(self._links_journal, "ab", buffering=0) as journal:
                    journal.write(line)
            except OSError as exc:  # the links are corrected all the same, only not safe
                logger.warning("cannot journal the links of %s: %s", meta_key, exc)

    def _store_again(self, existing: Record, record: Record, raw_body: bytes | DeflatedBody,
                     charset: str, text: str, seen_urls: set[str], refetch: bool,
                     run_id: str, screenshot: bytes | None = None) -> StoreResult:
        """The article is archived: the same text is a duplicate, other text a new version
        (with its own screenshot, if given: a duplicate keeps the one it has)."""
        self.index.mark_urls(_marker(existing, run_id), seen_urls)
        if _same_text(existing, record):
            def seen(current: Record) -> Record | None:
                urls = _new_urls(current, record)
                if not urls and not refetch:
                    return None
                return replace(current, aliases=_merge(current, urls),
                               checked_at=record.fetched_at if refetch else current.checked_at)
            return StoreResult(StoreOutcome.DUPLICATE, self._update(existing, seen))

        keys = version_keys(keys_of_meta(self.backend.relative(existing.meta_key)),
                            record.content_sha256)
        version = replace(Version.of(record), raw_key=self.locate(keys.raw),
                          text_key=self.locate(keys.text))
        shot = self._screenshot_object(keys, screenshot)
        # The record's screenshot is its latest version's: none rather than an older look.
        record = replace(record, screenshot_key=self.locate(shot[0]) if shot else None)
        self._put_objects(keys.raw, keys.text, raw_body, charset, text, shot)
        indexed = replace(existing, text_key=version.text_key, text_fingerprint=record.text_fingerprint)
        self._claim_text(indexed, text)

        def add_version(current: Record) -> Record | None:
            if current.all_versions[-1].content_sha256 == version.content_sha256:
                return None  # another writer added this very version meanwhile
            return replace(
                record,
                id=current.id, site=current.site, canonical_url=current.canonical_url,
                raw_key=version.raw_key, text_key=version.text_key, meta_key=current.meta_key,
                aliases=_merge(current, _new_urls(current, record)),
                near_duplicate_of=current.near_duplicate_of,
                versions=(*current.all_versions, version), checked_at=None,
            )
        updated = self._update(existing, add_version)
        added = updated.all_versions[-1] == version and len(updated.all_versions) > len(existing.all_versions)
        if added:
            self._index_text(updated, text, version=record.content_sha256[:16])
        logger.info("new version %d of %s from %s", len(updated.all_versions), existing.id, record.url)
        return StoreResult(StoreOutcome.VERSION if added else StoreOutcome.DUPLICATE, updated)

    def _put_objects(self, raw_key: str, text_key: str, raw_body: bytes | DeflatedBody,
                     charset: str, text: str, screenshot: tuple[str, bytes] | None = None) -> None:
        if not isinstance(raw_body, DeflatedBody):
            raw_body = DeflatedBody.of(raw_body)
        raw = self._writers.submit(self.backend.put, raw_key, raw_body.gzip(),
                                   content_type=f"text/html; charset={charset}",
                                   content_encoding="gzip")
        shot = None
        if screenshot is not None:
            shot = self._writers.submit(self.backend.put, screenshot[0], screenshot[1],
                                        content_type="image/png")
        try:
            self.backend.put(text_key, text.encode("utf-8"),
                             content_type="text/plain; charset=utf-8")
        finally:
            raw.result()
            if shot is not None:
                shot.result()

    @staticmethod
    def _screenshot_object(keys: ArticleKeys, screenshot: bytes | None
                           ) -> tuple[str, bytes] | None:
        """(archive-relative key, PNG) of the screenshot beside ``keys``' raw page, if any."""
        return (keys.screenshot, screenshot) if screenshot else None

    def _add_urls(self, record: Record, urls: set[str]) -> Record:
        def add(current: Record) -> Record | None:
            new = urls - current.urls
            return replace(current, aliases=_merge(current, new)) if new else None
        return self._update(record, add)

    def _update(self, record: Record, change: Callable[[Record], Record | None]) -> Record:
        """Apply ``change`` to the stored record with compare-and-swap; ``change`` returns
        None when nothing needs writing. Returns the record as it then stands."""
        # What the caller read needs nothing: the stored record can only know more (URLs,
        # versions are only ever added), so skip the read-and-compare round trip.
        if change(record) is None:
            return record
        return compare_and_swap(self.backend, self.backend.relative(record.meta_key), change,
                                decode=Record.from_json, encode=Record.to_json,
                                content_type="application/json; charset=utf-8")

    # -- the content index ---------------------------------------------------------------

    def _claim_text(self, record: Record, text: str) -> Record | None:
        """Enter ``record`` as the owner of its text fingerprint, unless another complete
        article owns it already: then return that article."""
        if not dedupable(text):
            return None
        return self.index.claim_text(record.text_fingerprint, _member(record),
                                     lambda owner: self._complete_record(owner["meta_key"]),
                                     self.claim_stale_after)

    def _same_site_twin(self, record: Record, text: str) -> Record | None:
        """A complete article of ``record``'s site with the same text, found in the
        near-duplicate index (the content claim names the first article of any site)."""
        if not dedupable(text):
            return None
        for entry, _ in self.near.candidates(_day(record), lsh_bands(text), exclude=record.id):
            if entry.site == record.site and record.text_fingerprint.startswith(entry.fingerprint):
                twin = self._complete_record(self.locate(entry.meta_key))
                if twin is not None and twin.text_fingerprint == record.text_fingerprint:
                    return twin
        return None

    def _link_exact_copy(self, record: Record, owner: Record
                         ) -> tuple[Record, list[tuple[str, str, str]]]:
        """``record`` has the text of ``owner``, an article of another site: point it to
        the copy published first, or (when it is that copy) note the corrections to make
        to the others: ``(meta_key, field, original id)``."""
        original_id = owner.duplicate_of or owner.id
        if original_id == owner.id:
            original = NearEntryLike(owner.id, owner.site, _first_seen(owner),
                                     self.backend.relative(owner.meta_key))
        else:
            entry = self.near.entry_of(original_id, _day(record))
            original = entry and NearEntryLike(entry.id, entry.site, entry.when, entry.meta_key)
        if original is None or not _earlier(record, original):
            return replace(record, duplicate_of=original_id), []
        corrections = [(original.meta_key, "duplicate_of", record.id)]
        if original.id != owner.id:
            corrections.append((self.backend.relative(owner.meta_key), "duplicate_of", record.id))
        logger.info("%s was published before its copy %s: the copy now points to it",
                    record.id, original.id)
        return record, corrections

    def _link_near_copy(self, record: Record, text: str
                        ) -> tuple[Record, list[tuple[str, str, str]]]:
        """Find the archived texts near-identical to ``record``'s (Jaccard >=
        NEAR_DUPLICATE_JACCARD) and point ``record`` to the original they stand for, the
        one published first (ties: the smaller id); an article that is itself a near copy
        hands on its original. When ``record`` was published before an original of
        another site, it is the original: the corrections to make are returned
        (``(meta_key, field, original id)``)."""
        if not dedupable(text):
            return record, []
        mine = shingle_hashes(text)
        originals: dict[str, NearEntryLike | None] = {}
        day = _day(record)
        for entry, _ in self.near.candidates(day, lsh_bands(text), exclude=record.id)[
                :_MAX_CANDIDATES]:
            theirs = self._shingles_of(entry)
            if theirs is None or hashed_jaccard(mine, theirs) < NEAR_DUPLICATE_JACCARD:
                continue
            if entry.near_duplicate_of:
                found = self.near.entry_of(entry.near_duplicate_of, day)
                originals.setdefault(entry.near_duplicate_of, found and NearEntryLike(
                    found.id, found.site, found.when, found.meta_key))
            else:
                originals[entry.id] = NearEntryLike(entry.id, entry.site, entry.when,
                                                    entry.meta_key)
        if not originals:
            return record, []
        # An original outside the window (not found) is older than anything in it.
        first = min(originals, key=lambda i: (originals[i].when.timestamp()
                                              if originals[i] else float("-inf"), i))
        original = originals[first]
        if original is not None:
            hop = self._now_points_to(original)
            if hop:
                found = self.near.entry_of(hop, day)
                first, original = hop, found and NearEntryLike(found.id, found.site, found.when,
                                                               found.meta_key)
        if original is None or not _earlier(record, original):
            return replace(record, near_duplicate_of=first), []
        later = [o for o in originals.values()
                 if o is not None and o.site != record.site and _earlier(record, o)]
        logger.info("%s was published before its near copies %s: they now point to it",
                    record.id, ", ".join(o.id for o in later))
        return record, [(o.meta_key, "near_duplicate_of", record.id) for o in later]

    def _now_points_to(self, original: NearEntryLike) -> str:
        """The article that ``original``'s record points to now (``near_duplicate_of`` or
        ``duplicate_of``), or "". Its index entry says what it was when indexed: a copy
        archived before its original has been corrected since in its record only. The
        record is read, then trusted for _ORIGINALS_TRUSTED_SECONDS: the near copies of one
        story, which come together, cost one read, not one each."""
        now = time.monotonic()
        kept = self._originals.get(original.id)
        if kept is not None and now - kept[0] < _ORIGINALS_TRUSTED_SECONDS:
            return kept[1]
        current = self._complete_record(self.locate(original.meta_key))
        hop = (current.near_duplicate_of or current.duplicate_of or "") if current else ""
        self._originals.put(original.id, (now, hop))
        return hop

    def _point_to(self, meta_key: str, link: str, original: str,
                  when: datetime | None) -> bool:
        """Set ``link`` (``duplicate_of`` or ``near_duplicate_of``) of the record at
        ``meta_key`` to ``original``, published (else first fetched) at ``when``: the
        correction of a copy archived before its original. A link to an article known to
        be earlier still is kept: a correction made late (from the journal, after a crash)
        must not undo a later crawl's. A failure is logged, not raised (the new article is
        stored, and the link is what was known before; the journal keeps it for the next
        crawl): returns False then."""
        corrected: list[str] = []

        def point(current: Record | None) -> Record | None:
            if current is None or getattr(current, link) == original or current.id == original:
                return None
            if when is not None and self._links_earlier(current, link, original, when):
                return None
            corrected.append(current.id)
            return replace(current, **{link: original})
        try:
            compare_and_swap(self.backend, meta_key, point, decode=Record.from_json,
                             encode=Record.to_json,
                             content_type="application/json; charset=utf-8")
            for article in corrected:  # what this writer knew of it is out of date
                self._originals.pop(article)
        except (ArchiveError, ValueError) as exc:
            logger.warning("cannot point %s to its original %s: %s", meta_key, original, exc)
            return False
        return True

    def _links_earlier(self, copy: Record, link: str, original: str, when: datetime) -> bool:
        """Whether ``copy``'s ``link`` already names an article published before
        ``original`` (at ``when``; ties: the smaller id), as its index entry says."""
        linked = getattr(copy, link)
        entry = self.near.entry_of(linked, _day(copy)) if linked else None
        return entry is not None and (as_utc(entry.when), entry.id) < (as_utc(when), original)

    def _near_entry(self, record: Record, text: str, version: str = "") -> NearEntry | None:
        """What the near-duplicate index says of a text (None: too short to compare)."""
        if not dedupable(text):
            return None
        return NearEntry(id=record.id, site=record.site, day=_day(record),
                         when=_first_seen(record), version=version,
                         fingerprint=text_fingerprint(text)[:16],
                         near_duplicate_of=record.near_duplicate_of or record.duplicate_of or "")

    def _index_text(self, record: Record, text: str, version: str = "") -> None:
        """Enter a complete article's text into the near-duplicate index."""
        entry = self._near_entry(record, text, version)
        if entry is None:
            return
        self._shingles.put((record.id, version), shingle_hashes(text))
        self.near.add(entry, lsh_bands(text))

    def _shingles_of(self, entry: NearEntry) -> np.ndarray | None:
        """The shingle hashes of an indexed text: from memory, else read (None: unreadable)."""
        kept = self._shingles.get((entry.id, entry.version))
        if kept is not None:
            return kept
        try:
            theirs = shingle_hashes(self.backend.get(entry.text_key).decode("utf-8"))
        except (ObjectNotFound, InvalidKey, ValueError):
            return None  # removed or damaged: not evidence
        self._shingles.put((entry.id, entry.version), theirs)
        return theirs


    def _complete_record(self, meta_key: str) -> Record | None:
        try:
            return Record.from_json(self.backend.get(self.backend.relative(meta_key)))
        except ObjectNotFound:
            return None

    def read_site_state(self, site: str, name: str) -> dict | None:
        """A site's learned state (see :meth:`write_site_state`), or None."""
        try:
            return json.loads(self.backend.get(site_state_key(site, name)))
        except ObjectNotFound:
            return None

    def url_summary(self, site: str) -> UrlSummary:
        """Which URLs of ``site`` lead to an archived article, and when it was last captured
        (see :mod:`storage.summary`): a few requests, however long the site's history."""
        return UrlSummary.load(self.backend, site)

    def summary_notes(self, site: str, run_id: str) -> SummaryNotes:
        """What the run ``run_id`` adds to the URL summary of ``site``, written as it goes
        (see :class:`storage.summary.SummaryNotes`). Only URLs whose record is complete
        belong in it."""
        return SummaryNotes(self.backend, site, run_id)

    def put_run_manifest(self, manifest: dict) -> str:
        """Store a run's manifest (``site``, ``run_id``, ``started_at`` required); returns
        its located key. The same manifest stored twice is one object."""
        started = as_utc(datetime.fromisoformat(manifest["started_at"]))
        key = run_manifest_key(manifest["site"], started.date(), manifest["run_id"])
        self.backend.put(key, json.dumps(manifest, ensure_ascii=False, sort_keys=True,
                                         indent=1).encode("utf-8"),
                         content_type="application/json; charset=utf-8")
        return self.locate(key)

    def run_manifest_keys(self, site: str | None = None, since: date | None = None,
                          until: date | None = None) -> Iterator[str]:
        """Keys of the run manifests (of ``site``) of runs started within [since, until]
        (UTC days, both included)."""
        # As for records: one site and a closed range list only the date folders covering it.
        for prefix in run_manifest_prefixes(site, since, until):
            for key in self.backend.iter_keys(prefix):
                day = day_of_run_manifest_key(key)
                if day is None or (since and day < since) or (until and day > until):
                    continue
                yield key

    def iter_run_manifests(self, site: str | None = None, since: date | None = None,
                           until: date | None = None) -> Iterator[dict]:
        """Every stored run manifest (of ``site``, of runs started within [since, until]),
        oldest first within a site. A manifest removed since it was listed, or that
        is not a JSON object, is skipped (the latter with a warning)."""
        keys = list(self.run_manifest_keys(site, since, until))
        if not keys:
            return
        # One GET per run: read a few at a time, or a long history costs a round trip each.
        pool = ThreadPoolExecutor(min(_PARALLEL_MANIFEST_READS, len(keys)),
                                  thread_name_prefix="archive-runs")
        try:
            for manifest in pool.map(self.read_run_manifest, keys):
                if manifest is not None:
                    yield manifest
        finally:
            pool.shutdown(cancel_futures=True)

    def read_run_manifest(self, key: str) -> dict | None:
        """The run manifest at ``key`` (from :meth:`run_manifest_keys`), or None when it is
        gone or is no JSON object (said in the log)."""
        try:
            manifest = json.loads(self.backend.get(key))
        except ObjectNotFound:
            return None
        except ValueError as exc:
            logger.warning("run manifest %s is not JSON: %s", key, exc)
            return None
        if not isinstance(manifest, dict):
            logger.warning("run manifest %s is not a JSON object", key)
            return None
        return manifest

    def write_site_state(self, site: str, name: str, state: dict) -> bool:
        """Store a site's learned state unless it is unchanged; True if written.

        Last writer wins: state is advisory (boilerplate lines), and a later crawl relearns
        whatever a concurrent one overwrote.
        """
        data = json.dumps(state, ensure_ascii=False, sort_keys=True).encode("utf-8")
        key = site_state_key(site, name)
        try:
            if self.backend.get(key) == data:
                return False
        except ObjectNotFound:
            pass
        self.backend.put(key, data, content_type="application/json; charset=utf-8")
        return True

    # -- reading -----------------------------------------------------------------------

    def iter_meta_keys(
        self, site: str | None = None, since: date | None = None, until: date | None = None
    ) -> Iterator[str]:
        """Keys of every ``meta.json`` (of ``site``, dated within [since, until])."""
        # For one site and a closed range, only the year, month and day folders that
        # cover it are listed, so one day of a large archive costs one day's listing.
        for prefix in meta_key_prefixes(site, since, until):
            for key in self.backend.iter_keys(prefix):
                if not is_meta_key(key):
                    continue
                day = day_of_meta_key(key)
                if (since and day < since) or (until and day > until):
                    continue
                yield key

    def iter_records(
        self, site: str | None = None, since: date | None = None, until: date | None = None
    ) -> Iterator[Record]:
        """Every complete record (of ``site``, dated within [since, until])."""
        for key in self.iter_meta_keys(site, since, until):
            try:
                yield Record.from_json(self.backend.get(key))
            except ObjectNotFound:
                continue  # deleted between listing and reading

    def record_by_id(self, article_id: str) -> Record | None:
        """The record with this id, found through the URL index with one listing."""
        validate_article_id(article_id)
        fanout = f"{URL_INDEX_ROOT}/{article_id[:2]}/{article_id}"
        for key in self.backend.iter_keys(fanout):
            marker = json.loads(self.backend.get(key))
            try:
                return Record.from_json(self.backend.get(self.backend.relative(marker["meta_key"])))
            except ObjectNotFound:
                return None
        return None

    def record_by_url(self, url: str) -> Record | None:
        """The record whose canonical URL, fetched URL or alias is ``url``: one look-up in the
        URL index (every URL an article was archived under is marked there), never a scan."""
        for candidate in dict.fromkeys((url, canonicalize_url(url))):
            marker = self.index.read_marker(candidate)
            if marker is not None:
                return self._complete_record(marker["meta_key"])
        return None

    def find(self, id_or_url: str) -> Record | None:
        """A record by id or by URL."""
        try:
            return self.record_by_id(id_or_url)
        except InvalidKey:
            return self.record_by_url(id_or_url)

    def read_text(self, record: Record) -> str:
        """The cleaned text of a record."""
        return self.backend.get(self.backend.relative(record.text_key)).decode("utf-8")

    def read_raw(self, record: Record) -> bytes:
        """The raw response body of a record, decompressed."""
        return gzip.decompress(self.backend.get(self.backend.relative(record.raw_key)))

    def read_screenshot(self, record: Record) -> bytes | None:
        """The PNG screenshot of the page as it looked (of the record's latest version), or
        None when it has none or it is missing."""
        if not record.screenshot_key:
            return None
        try:
            return self.backend.get(self.backend.relative(record.screenshot_key))
        except ObjectNotFound:
            return None


def _marker(record: Record, run_id: str) -> dict:
    """The URL index marker that names ``record``'s objects."""
    return {
        "id": record.id,
        "canonical_url": record.canonical_url,
        "raw_key": record.raw_key,
        "text_key": record.text_key,
        "meta_key": record.meta_key,
        "run_id": run_id,
        **lease(),
    }


@dataclass(frozen=True)
class NearEntryLike:
    """An article a copy may point to: enough to say which came first and to correct it."""

    id: str
    """Its id."""
    site: str
    """Its site."""
    when: datetime
    """Published, else first fetched (UTC)."""
    meta_key: str
    """Its record's archive-relative key."""


def _first_seen(record: Record) -> datetime:
    """When an article was published, else first fetched (UTC): which copy came first."""
    return as_utc(record.published or record.all_versions[0].fetched_at or record.fetched_at)


def _earlier(record: Record, other: NearEntryLike) -> bool:
    """Whether ``record`` is the original of ``other``, a copy on another site: published
    (else first fetched) first. Within one site the article archived first stays the
    original."""
    if other.site == record.site:
        return False
    return (_first_seen(record), record.id) < (as_utc(other.when), other.id)


def _day(record: Record) -> date:
    """The article's folder day: publication date, else fetch date (UTC)."""
    return as_utc(record.published or record.fetched_at).date()


def _member(record: Record) -> dict:
    """What the content index says of an article: enough to find its record and text."""
    return {"id": record.id, "meta_key": record.meta_key, "text_key": record.text_key}


def _same_extraction(current: Record, fresh: Record) -> bool:
    """Whether a re-extraction would change nothing the record says."""
    ignore = {"versions", "extra"}
    return all(getattr(current, f) == getattr(fresh, f) for f in RECORD_FIELDS if f not in ignore)


def _same_text(existing: Record, incoming: Record) -> bool:
    if existing.text_fingerprint:
        return existing.text_fingerprint == incoming.text_fingerprint
    return existing.content_sha256 == incoming.content_sha256  # written before fingerprints


def _new_urls(current: Record, incoming: Record) -> set[str]:
    """URLs ``incoming`` was seen at that ``current`` does not list yet."""
    return set(incoming.urls | {incoming.url}) - current.urls


def _merge(current: Record, urls: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted((set(current.aliases) | set(urls)) - {current.canonical_url}))
