"""The archive: writes an article's objects in a crash-safe order, dedups by canonical URL,
and reads records back.

Write protocol for one article (any number of writers, on any number of machines):

1. claim ``_index/urls/<sha256(canonical_url)>.json`` with create-if-absent; the marker
   names the article's keys. The loser of a race reads the marker instead.
2. write ``raw.html.gz`` and ``text.txt``;
3. write ``meta.json`` last: its presence means the article is complete.

A claim whose ``meta.json`` is missing belongs to a writer that is still running or that
died; the next writer completes the article *in the keys the claim names*, so an article
never gets a second place, and a crash between steps loses nothing that a re-run can't redo.
"""

from __future__ import annotations

import enum
import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

from storage.backends import Backend, open_backend
from storage.errors import InvalidKey, ObjectNotFound
from storage.keys import (
    ARTICLES_ROOT,
    URL_INDEX_ROOT,
    ArticleKeys,
    article_keys,
    day_of_meta_key,
    is_meta_key,
    site_state_key,
    url_index_key,
    validate_article_id,
    validate_site_name,
)
from storage.record import Record

logger = logging.getLogger(__name__)

_MARKER_KEYS = ("raw_key", "text_key", "meta_key")
# A claim older than this without its meta.json belongs to a writer that died. Writing one
# article takes well under a second; storage retries stretch that to tens of seconds.
CLAIM_STALE_AFTER = timedelta(minutes=2)


class StoreOutcome(enum.Enum):
    """What :meth:`Archive.store` did."""

    WRITTEN = "written"
    """The article's objects were written."""
    DUPLICATE = "duplicate"
    """The canonical URL was already archived; nothing was written."""
    IN_PROGRESS = "in_progress"
    """Another run claimed the article moments ago and is writing it; nothing was written."""


@dataclass(frozen=True)
class StoreResult:
    """The outcome of storing one article."""

    outcome: StoreOutcome
    """Written, or skipped as a duplicate."""
    record: Record
    """The record as stored (for a duplicate: the record we would have written)."""
    completed_claim: bool = False
    """True when this writer finished an article whose earlier writer had claimed it and stopped."""


class Archive:
    """An archive over one backend. Thread-safe as far as its backend is (both of ours are)."""

    def __init__(self, backend: Backend, claim_stale_after: timedelta = CLAIM_STALE_AFTER) -> None:
        self.backend = backend
        self.claim_stale_after = claim_stale_after

    @classmethod
    def open(cls, url: str) -> Archive:
        """Open the archive at ``url`` (a directory or ``s3://bucket/prefix``)."""
        return cls(open_backend(url))

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

    def is_archived(self, canonical_url: str) -> bool:
        """Whether an article with this canonical URL is completely archived."""
        marker = self._read_marker(canonical_url)
        if marker is None:
            return False
        return self.backend.exists(self.backend.relative(marker["meta_key"]))

    def store(
        self,
        record: Record,
        *,
        raw_body: bytes,
        charset: str,
        text: str,
        run_id: str = "",
        seen_urls: Iterable[str] = (),
    ) -> StoreResult:
        """Archive one article unless its canonical URL is already archived.

        ``record`` carries located keys (see :meth:`locate`); ``raw_body`` is the response
        body exactly as received, stored gzip-compressed. ``seen_urls`` are other
        (canonicalised) URLs that led to this page: each gets an index marker pointing at
        the record, so a later crawl that finds the article under one of them skips it
        before fetching.
        """
        marker = {
            "id": record.id,
            "canonical_url": record.canonical_url,
            "raw_key": record.raw_key,
            "text_key": record.text_key,
            "meta_key": record.meta_key,
            "run_id": run_id,
            "claimed_at": datetime.now(timezone.utc).isoformat(),
        }
        index_key = url_index_key(record.canonical_url)
        claimed = self.backend.put_if_absent(
            index_key, json.dumps(marker).encode(), content_type="application/json"
        )
        completed_claim = False
        if not claimed:
            existing = self._read_marker(record.canonical_url) or marker
            if self.backend.exists(self.backend.relative(existing["meta_key"])):
                self._claim_aliases(existing, seen_urls)
                return StoreResult(StoreOutcome.DUPLICATE, record)
            if existing.get("run_id") != run_id and not _is_stale(existing, self.claim_stale_after):
                # Another writer is between its claim and its meta.json: leave it the work.
                # Should it die, its article has no meta.json, so a later crawl fetches it
                # again and, the claim then being stale, completes it.
                return StoreResult(StoreOutcome.IN_PROGRESS, record)
            # Claimed but never completed (a crash, or our own run's earlier attempt): finish
            # it where the claim says, not in our own date folder, so it keeps one place.
            logger.info("completing unfinished article %s claimed by run %r",
                        record.id, existing.get("run_id"))
            record = replace(
                record,
                raw_key=existing["raw_key"],
                text_key=existing["text_key"],
                meta_key=existing["meta_key"],
            )
            completed_claim = True

        rel = self.backend.relative
        self.backend.put(
            rel(record.raw_key),
            gzip.compress(raw_body, compresslevel=6, mtime=0),
            content_type=f"text/html; charset={charset}",
            content_encoding="gzip",
        )
        self.backend.put(
            rel(record.text_key), text.encode("utf-8"), content_type="text/plain; charset=utf-8"
        )
        self.backend.put(
            rel(record.meta_key), record.to_json(), content_type="application/json; charset=utf-8"
        )
        self._claim_aliases({**marker, **{k: getattr(record, k) for k in _MARKER_KEYS}}, seen_urls)
        return StoreResult(StoreOutcome.WRITTEN, record, completed_claim)

    def _claim_aliases(self, marker: dict, seen_urls: Iterable[str]) -> None:
        # Create-if-absent: an alias already pointing somewhere keeps its first owner, and
        # a re-run that finds every alias in place writes nothing.
        for url in sorted(set(seen_urls) - {marker["canonical_url"]}):
            alias = {**marker, "alias": url}
            self.backend.put_if_absent(
                url_index_key(url), json.dumps(alias).encode(), content_type="application/json"
            )

    def read_site_state(self, site: str, name: str) -> dict | None:
        """A site's learned state (see :meth:`write_site_state`), or None."""
        try:
            return json.loads(self.backend.get(site_state_key(site, name)))
        except ObjectNotFound:
            return None

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

    def _read_marker(self, canonical_url: str) -> dict | None:
        try:
            return json.loads(self.backend.get(url_index_key(canonical_url)))
        except ObjectNotFound:
            return None

    # -- reading -----------------------------------------------------------------------

    def iter_meta_keys(
        self, site: str | None = None, since: date | None = None, until: date | None = None
    ) -> Iterator[str]:
        """Keys of every ``meta.json`` (of ``site``, dated within [since, until])."""
        prefix = f"{ARTICLES_ROOT}/{validate_site_name(site)}/" if site else f"{ARTICLES_ROOT}/"
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
        """The record whose canonical URL, fetched URL or alias is ``url``."""
        marker = self._read_marker(url)
        if marker is not None:
            try:
                return Record.from_json(self.backend.get(self.backend.relative(marker["meta_key"])))
            except ObjectNotFound:
                return None
        for record in self.iter_records():
            if url in (record.url, record.canonical_url) or url in record.aliases:
                return record
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


def _is_stale(marker: dict, after: timedelta) -> bool:
    """Whether a claim is older than ``after`` (an unreadable time counts as stale)."""
    try:
        claimed_at = datetime.fromisoformat(marker.get("claimed_at", ""))
    except (TypeError, ValueError):
        return True
    if claimed_at.tzinfo is None:
        claimed_at = claimed_at.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - claimed_at >= after
