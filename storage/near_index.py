"""The near-duplicate index: the MinHash/LSH band hashes of archived texts, written per run
in segments and searched in memory, so that finding a near copy costs no request per
article.

The index answers one question for a new text: which archived texts share an LSH band with
it (:func:`storage.dedup.lsh_bands`); the archive then compares those candidates' shingles
exactly. Until this module it was a bucket object per band, joined with a compare-and-swap
per band and article (ten PUTs an article, and hot buckets that every near copy contended
on). Now:

- a writer adds each article it completes to its in-memory index (found by its own next
  pages at once) and to a pending list that :meth:`NearIndex.flush` writes as one segment
  per month (``_index/near/<YYYY-MM>/<run>-<random>.near``), a few times a run;
- a writer loads the months it needs when it first needs them (a few requests, in parallel)
  and, at each flush, the segments other writers added since to the months it writes in
  (one listing per month);
- a month of more than :data:`FOLD_OVER` segments is folded into one by the writer that
  flushes into it: the folded segment is written before the ones it holds are deleted, so
  every entry is always in some segment, and readers drop the repeats.

Segments are written once and never changed: writers on any number of machines need no
lock. An entry is written only after its article's ``meta.json``, so every entry names a
complete article and needs no check before its text is read.

**A window, not the whole history.** A text is compared with the texts dated (publication
date, else fetch date, UTC, as the article's folder) within :data:`WINDOW_DAYS` of its own:
wire copies appear within days of each other, and a crawl's cost must not grow with the
archive's age. A crawl reads the months its articles' windows cover: for a live crawl two
or three months of the archive's entries (72 bytes an article), for a backfill the months
it backfills.

**Concurrent crawls** see each other's entries at their next flush (every
:data:`FLUSH_EVERY_SECONDS` or :data:`FLUSH_EVERY_ENTRIES`): a near copy stored by two crawls
within that interval of each other is not flagged (the exact copy is: content claims are
per article).

**Nothing added is lost.** A writer given a journal (:meth:`NearIndex.keep_journal`, a folder
of the crawl's local workspace) appends each entry there as it adds it, and deletes the
journal's files once a flush has written every entry they hold. A crawl killed before its
flush, or whose last flush failed (the storage unreachable), leaves them to the next crawl
of its site, which writes them (:func:`recover_journal`) as it finishes the dead crawl's other
work; a repeat (an entry written before the crash and again from the journal) is dropped by
readers and folds. An article being stored is journalled too, before its ``meta.json`` is
written (:meth:`NearIndex.storing`), apart from the complete ones: a crawl killed between
its ``meta.json`` and its entry would otherwise leave an archived article that no near copy
finds. Recovery writes such an entry only if its ``meta.json`` exists (a request for each,
and there are at most as many as the crawl's storing threads).

A segment is :data:`MAGIC`, a JSON line (``{"sites": [...], "count": n}``), then ``count``
entries of :data:`ENTRY` (little-endian, packed).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from storage.backends import Backend
from storage.dedup import LSH_BANDS
from storage.errors import ObjectNotFound
from storage.keys import NEAR_INDEX_ROOT, article_keys, validate_run_id
from storage.lazy import LazyModule

np = LazyModule("numpy")

logger = logging.getLogger(__name__)

MAGIC = b"NANEAR1\n"
"""The first bytes of a segment (the format's name and version)."""

WINDOW_DAYS = 31
"""Texts are compared with those dated at most this many days before or after them."""

FOLD_OVER = 32
"""Segments a month holds before the next writer folds them into one."""

FLUSH_EVERY_SECONDS = 30.0
"""A writer's entries wait at most this long to be written (checked as it adds more)."""

FLUSH_EVERY_ENTRIES = 500
"""... or as soon as this many are pending."""

_PARALLEL_READS = 8


def entry_dtype():
    """One entry: the article, where its text is, when it was published (else fetched),
    what it was found a near copy of, and its band hashes."""
    return np.dtype([
        ("id", "S12"),        # the article id's 24 hex digits as bytes
        ("site", "<u2"),      # index into the segment's site names
        ("day", "<i4"),       # the article's folder day (proleptic ordinal)
        ("when", "<i8"),      # published, else first fetched: seconds since the epoch
        ("version", "S8"),    # the text's version hash (16 hex digits), zeros: the first text
        ("fingerprint", "S8"),  # the first 8 bytes of the text fingerprint
        ("of", "S12"),        # the article it was a near copy of when written, zeros: none
        ("bands", "<u4", (LSH_BANDS,)),  # the first 4 bytes of each band's hash
    ])


@dataclass(frozen=True)
class NearEntry:
    """An archived text, as the index knows it."""

    id: str
    """The article's id."""
    site: str
    """Its site."""
    day: date
    """Its folder day (publication date, else fetch date, UTC)."""
    when: datetime
    """When it was published, else first fetched (UTC): which of two copies came first."""
    version: str
    """The 16-hex-digit name of the version whose text this is, or "" for the first."""
    fingerprint: str
    """The first 16 hex digits of the text's fingerprint."""
    near_duplicate_of: str
    """The article it was found a near copy of when it was written, or ""."""

    @property
    def meta_key(self) -> str:
        """Its record's archive-relative key."""
        return article_keys(self.site, self.day, self.id).meta

    @property
    def text_key(self) -> str:
        """The archive-relative key of this text."""
        keys = article_keys(self.site, self.day, self.id)
        return f"{keys.prefix}versions/{self.version}/text.txt" if self.version else keys.text

    @property
    def original(self) -> str:
        """The article this one stands for: its original if it is a near copy, else itself."""
        return self.near_duplicate_of or self.id


def month_prefix(month: date) -> str:
    """Where the segments of a month's entries are: ``_index/near/<YYYY-MM>/``."""
    return f"{NEAR_INDEX_ROOT}/{month:%Y-%m}/"


def months_around(day: date, window_days: int = WINDOW_DAYS) -> list[date]:
    """The first days of the months that hold entries dated within the window of ``day``."""
    first = (day - timedelta(days=window_days)).replace(day=1)
    last = day + timedelta(days=window_days)
    months = []
    while first <= last:
        months.append(first)
        first = (first + timedelta(days=32)).replace(day=1)
    return months


def _band_keys(bands: Iterable[tuple[int, str]]) -> list[int]:
    """A text's band hashes as the index keeps them: band number in the high 32 bits, the
    first 4 bytes of the band's hash in the low ones (a chance match among a million
    entries is a candidate in 4,000, then rejected by the exact comparison)."""
    return [(band << 32) | int(bucket[:8], 16) for band, bucket in bands]


class _Chunk:
    """A month's entries read from segments, with their band keys sorted for look-up."""

    def __init__(self, parts: list) -> None:
        # One site table for the month: each part's site numbers mapped into it.
        numbers: dict[str, int] = {}
        renumbered = []
        for part_entries, part_sites in parts:
            table = np.array([numbers.setdefault(s, len(numbers)) for s in part_sites] or [0],
                             dtype="<u2")
            renumbered.append(table[part_entries["site"]])
        self.entries = np.concatenate([p[0] for p in parts])
        self.entries["site"] = np.concatenate(renumbered)
        self.sites = list(numbers)
        shifted = np.arange(LSH_BANDS, dtype=np.uint64) << np.uint64(32)
        keys = (self.entries["bands"].astype(np.uint64) | shifted[None, :]).ravel()
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def rows_sharing(self, band_keys: list[int]) -> dict[int, int]:
        """Row -> number of bands it shares with ``band_keys``."""
        wanted = np.asarray(band_keys, dtype=np.uint64)
        left = np.searchsorted(self.keys, wanted, side="left")
        right = np.searchsorted(self.keys, wanted, side="right")
        shared: dict[int, int] = {}
        for lo, hi in zip(left.tolist(), right.tolist()):
            for position in self.order[lo:hi].tolist():
                row = position // LSH_BANDS
                shared[row] = shared.get(row, 0) + 1
        return shared

    def entry(self, row: int) -> NearEntry:
        return _entry_of(self.entries[row], self.sites)


# The journal's files: the complete entries', and the entries of articles being stored.
_JOURNAL_SUFFIX = ".journal"
_STORING_SUFFIX = ".storing"


class NearIndex:
    """The near-duplicate index of one archive, as one writer (a crawl) sees it.
    Thread-safe: the storage threads of a crawl share one.

    No request is made under the lock that searches take: on S3 each request is a round
    trip (20 ms and more), and a crawl's 32 storing threads would queue behind one thread's
    listing or writing. A month is read by the first thread that needs it, while threads
    that need other months go on; a flush writes outside the lock, and its entries stay
    findable throughout (pending until written, then in memory as a read segment)."""

    def __init__(self, backend: Backend, run_id: str = "adhoc") -> None:
        self.backend = backend
        self.run_id = validate_run_id(run_id or "adhoc")
        self._lock = threading.RLock()  # the state below; held for memory work only
        self._loaded: set[date] = set()  # months listed and read at least once
        self._read_keys: dict[date, set[str]] = {}  # month -> the segments in _parts
        self._parts: dict[date, list] = {}  # month -> (entries, sites) of each segment read
        self._chunks: dict[date, _Chunk] = {}  # month -> its parts, ready for look-up
        # One thread reads a month; the others that need it wait for that read, not for
        # the index.
        self._month_locks: dict[date, threading.Lock] = {}
        self._flush_lock = threading.Lock()  # one flush at a time
        # This writer's entries not written yet, found by its next pages at once.
        self._pending: list[tuple[NearEntry, list[int]]] = []
        # Articles this writer is storing (between their near-duplicate search and their
        # meta.json): its other threads' near copies of them find them, not only once they
        # are complete. Never written: only complete articles go to segments.
        # Each with its band keys and its journal record (None: no journal kept).
        self._storing: dict[tuple[str, str], tuple[NearEntry, list[int], bytes | None]] = {}
        self._pending_since = 0.0  # when the oldest entry pending was added
        # The journal (keep_journal): the folder, the files appended to now (by suffix: the
        # complete entries', the entries being stored'; opened at the first entry after a
        # flush), and the files closed since the last flush that wrote everything, deleted by
        # the next one that does.
        self._journal_dir: Path | None = None
        self._journal: dict[str, BinaryIO] = {}
        self._journal_files: list[Path] = []
        self._journal_number = 0

    # -- searching ---------------------------------------------------------------------

    def candidates(self, day: date, bands: Iterable[tuple[int, str]],
                   exclude: str = "") -> list[tuple[NearEntry, int]]:
        """Entries dated within the window of ``day`` that share a band with ``bands``,
        with the number of bands shared, most first (each article once: its entry sharing
        most). ``exclude``: an article id to leave out (the text's own)."""
        keys = _band_keys(bands)
        low, high = day - timedelta(days=WINDOW_DAYS), day + timedelta(days=WINDOW_DAYS)
        found: dict[str, tuple[NearEntry, int]] = {}

        def offer(entry: NearEntry, shared: int) -> None:
            if entry.id == exclude or not (low <= entry.day <= high):
                return
            if entry.id not in found or found[entry.id][1] < shared:
                found[entry.id] = (entry, shared)

        months = months_around(day)
        self._ensure_loaded(months)
        with self._lock:
            for month in months:
                chunk = self._chunk(month)
                if chunk is not None:
                    for row, shared in chunk.rows_sharing(keys).items():
                        offer(chunk.entry(row), shared)
            wanted = set(keys)
            being_stored = [(entry, entry_keys) for entry, entry_keys, _ in self._storing.values()]
            for entry, entry_keys in [*self._pending, *being_stored]:
                shared = len(wanted.intersection(entry_keys))
                if shared:
                    offer(entry, shared)
        return sorted(found.values(), key=lambda hit: (-hit[1], hit[0].id))

    def entry_of(self, article_id: str, day: date) -> NearEntry | None:
        """The entry of an article's first text, if dated within the window of ``day``."""
        months = months_around(day)
        self._ensure_loaded(months)
        with self._lock:
            for entry, _ in self._pending:
                if entry.id == article_id and not entry.version:
                    return entry
            wanted = bytes.fromhex(article_id)
            for month in months:
                chunk = self._chunk(month)
                if chunk is None:
                    continue
                rows = np.nonzero((chunk.entries["id"] == wanted)
                                  & (chunk.entries["version"] == b""))[0]
                if len(rows):
                    return chunk.entry(int(rows[0]))
        return None

    # -- adding ------------------------------------------------------------------------

    def storing(self, entry: NearEntry, bands: Iterable[tuple[int, str]]) -> None:
        """Say this writer is storing ``entry``'s article: its other threads find it from
        now on, and the journal holds it until it is written (should the writer die once the
        article is complete, before :meth:`add`); :meth:`add` once it is complete, or
        :meth:`stored` if it was not."""
        keys = _band_keys(bands)
        journalled = _journal_record(entry, keys) if self._journal_dir is not None else None
        with self._lock:
            self._storing[(entry.id, entry.version)] = (entry, keys, journalled)
            if journalled is not None:
                self._append_to_journal(journalled, _STORING_SUFFIX)

    def stored(self, entry: NearEntry) -> None:
        """The article of :meth:`storing` is not stored after all (an error)."""
        with self._lock:
            self._storing.pop((entry.id, entry.version), None)

    def keep_journal(self, directory: Path) -> None:
        """Journal each entry added from now on in ``directory`` (local) until a flush has
        written it: what a writer that dies leaves there, :func:`recover_journal` writes."""
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._journal_dir = directory

    def add(self, entry: NearEntry, bands: Iterable[tuple[int, str]]) -> None:
        """Enter a complete article's text: found by this writer at once, by others once
        written (:meth:`flush`, called here when it is due, unless another thread is
        flushing already)."""
        keys = _band_keys(bands)
        # Encoded before the lock that every search takes (only the append waits for it),
        # once: an article journalled as being stored has its record already. (Read without
        # the lock: only the thread storing an article adds it.)
        journalled = None
        if self._journal_dir is not None:
            stored, _, record = self._storing.get((entry.id, entry.version), (None, None, None))
            journalled = record if stored == entry and record else _journal_record(entry, keys)
        with self._lock:
            self._storing.pop((entry.id, entry.version), None)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((entry, keys))
            if journalled is not None:
                self._append_to_journal(journalled)
            due = (len(self._pending) >= FLUSH_EVERY_ENTRIES
                   or time.monotonic() - self._pending_since >= FLUSH_EVERY_SECONDS)
        if due and self._flush_lock.acquire(blocking=False):
            try:
                self._flush()
            finally:
                self._flush_lock.release()

    def flush(self, *, last: bool = False) -> int:
        """Write the pending entries (a segment per month), read what other writers added
        to the months loaded (unless ``last``: the writer stores no more), and fold a month
        of too many segments; returns the entries written. On a storage error the entries
        not written stay pending."""
        with self._flush_lock:
            return self._flush(last=last)

    def _flush(self, *, last: bool = False) -> int:
        with self._lock:
            by_month: dict[date, list[tuple[NearEntry, list[int]]]] = {}
            for entry, keys in self._pending:
                by_month.setdefault(entry.day.replace(day=1), []).append((entry, keys))
            # Every entry pending now is in these files; those added from now on go to a
            # new one, and so do the articles being stored (a few, one a storing thread),
            # whose records in these files go with them.
            journalled = self._close_journal()
            if self._journal_dir is not None:
                for entry, keys, record in self._storing.values():
                    self._append_to_journal(record or _journal_record(entry, keys),
                                            _STORING_SUFFIX)
        written = 0
        if by_month:
            # The months at once: a crawl writes into one or two, a backfill into dozens,
            # and on S3 each is a few round trips.
            with ThreadPoolExecutor(min(_PARALLEL_READS, len(by_month)),
                                    thread_name_prefix="archive-near") as pool:
                written = sum(pool.map(lambda item: self._flush_month(*item, last=last),
                                       sorted(by_month.items())))
        # Everything that was pending is written (a failed month raised above, and its
        # entries, still pending, keep their files for the next flush).
        with self._lock:
            self._journal_files = [p for p in self._journal_files if p not in journalled]
        for path in journalled:
            path.unlink(missing_ok=True)
        return written

    # -- the journal -------------------------------------------------------------------

    def _append_to_journal(self, record: bytes, suffix: str = _JOURNAL_SUFFIX) -> None:
        """Append an entry's record (:func:`_journal_record`) to the journal's file of
        ``suffix``, under the lock: a flush then knows which files hold the entries it takes.
        Unbuffered: what a killed process wrote is the kernel's, and stays (a machine that
        loses power may lose the last writes: the journal is not synced, which would cost a
        disk flush an article)."""
        try:
            journal = self._journal.get(suffix)
            if journal is None:
                self._journal_number += 1
                path = self._journal_dir / f"{self._journal_number:06d}{suffix}"
                journal = self._journal[suffix] = open(path, "ab", buffering=0)  # noqa: SIM115
                self._journal_files.append(path)
            journal.write(record)
        except OSError as exc:  # the entry stays pending, only not safe from a crash
            logger.warning("cannot journal a near-duplicate index entry: %s", exc)

    def _close_journal(self) -> list[Path]:
        """Close the journal's current files (under the lock); the files that hold every
        entry pending now."""
        for journal in self._journal.values():
            journal.close()
        self._journal.clear()
        return list(self._journal_files)

    def _flush_month(self, month: date, entries: list[tuple[NearEntry, list[int]]], *,
                     last: bool) -> int:
        """Write a month's pending ``entries`` as a segment, read what others added to the
        month (if loaded), and fold it when it has too many segments."""
        key = f"{month_prefix(month)}{self.run_id}-{secrets.token_hex(6)}.near"
        segment = _segment(entries)
        self.backend.put(key, segment, content_type="application/octet-stream")
        done = {id(e) for e, _ in entries}
        with self._lock:
            # Found from now on as a segment read, never missing in between.
            self._add_parts(month, [(key, _parse_segment(segment))])
            self._pending = [p for p in self._pending if id(p[0]) not in done]
            loaded = month in self._loaded
        # What others wrote since to the months this writer writes in: one listing a month
        # (a concurrent crawl's copies of today's stories are dated today).
        keys = self._refresh(month) if loaded and not last else self._segment_keys(month)
        if len(keys) > FOLD_OVER:
            self._fold(month, keys)
        return len(entries)

    # -- reading segments --------------------------------------------------------------

    def _chunk(self, month: date) -> _Chunk | None:
        """The month's entries ready for look-up (under the lock; the month loaded)."""
        if month not in self._chunks and self._parts.get(month):
            self._chunks[month] = _Chunk(self._parts[month])
        return self._chunks.get(month)

    def _ensure_loaded(self, months: list[date]) -> None:
        """Read the months not read yet, each by one thread (not under the lock)."""
        for month in months:
            with self._lock:
                if month in self._loaded:
                    continue
                month_lock = self._month_locks.setdefault(month, threading.Lock())
            with month_lock:
                with self._lock:
                    if month in self._loaded:
                        continue  # read by the thread this one waited for
                self._refresh(month)
                with self._lock:
                    self._loaded.add(month)

    def _segment_keys(self, month: date) -> list[str]:
        return sorted(k for k in self.backend.iter_keys(month_prefix(month)) if k.endswith(".near"))

    def _refresh(self, month: date) -> list[str]:
        """Read the month's segments not read yet (not under the lock); returns the keys of
        all its segments, as listed now."""
        listed = self._segment_keys(month)
        with self._lock:
            seen = self._read_keys.get(month, set())
            keys = [k for k in listed if k not in seen]
        if not keys:
            return listed
        with ThreadPoolExecutor(min(_PARALLEL_READS, len(keys)),
                                thread_name_prefix="archive-near") as pool:
            parts = list(zip(keys, pool.map(self._read, keys)))
        with self._lock:
            self._add_parts(month, parts)
        return listed

    def _add_parts(self, month: date, parts: list) -> None:
        """Take the segments read, ``(key, (entries, sites) or None)``, into the month's
        entries, each segment once (under the lock)."""
        seen = self._read_keys.setdefault(month, set())
        new = [part for key, part in parts if key not in seen and part is not None
               and len(part[0])]
        seen.update(key for key, _ in parts)
        if new:
            self._parts.setdefault(month, []).extend(new)
            self._chunks.pop(month, None)

    def _read(self, key: str):
        try:
            return _parse_segment(self.backend.get(key))
        except ObjectNotFound:
            return None  # folded by another writer since it was listed: in the folded one
        except ValueError as exc:
            logger.warning("skipping near-duplicate index segment %s: %s", key, exc)
            return None

    def _fold(self, month: date, keys: list[str]) -> None:
        """Fold the month's segments ``keys`` into one. The folded segment is written
        before the segments it holds are deleted."""
        rows, sites = [], []
        for part in map(self._read, keys):
            if part is not None and len(part[0]):
                rows.append(part[0])
                sites.append(part[1])
        if not rows:
            return
        chunk = _Chunk(list(zip(rows, sites)))
        # Each article's text once (the same entry can be in two segments after a fold
        # raced another).
        seen: set[tuple[bytes, bytes]] = set()
        keep = []
        for row, (article, version) in enumerate(zip(chunk.entries["id"].tolist(),
                                                     chunk.entries["version"].tolist())):
            if (article, version) not in seen:
                seen.add((article, version))
                keep.append(row)
        entries = chunk.entries[keep]
        folded = f"{month_prefix(month)}folded-{secrets.token_hex(6)}.near"
        header = json.dumps({"sites": chunk.sites, "count": len(entries)}).encode() + b"\n"
        self.backend.put(folded, MAGIC + header + entries.tobytes(),
                         content_type="application/octet-stream")
        for key in keys:
            self.backend.delete(key)
        logger.info("near-duplicate index %s: %d segments folded into one (%d entries)",
                    f"{month:%Y-%m}", len(keys), len(entries))


def recover_journal(backend: Backend, directory: Path, run_id: str) -> int:
    """Write the entries a writer journalled in ``directory`` and did not flush (a crawl that
    died, or whose last flush failed) as that run's segments, then delete the journal;
    returns the entries written. An article the writer was storing counts when its
    ``meta.json`` exists: the writer died after completing it. Raises the backend's error
    (the journal then stays)."""
    files = sorted([*directory.glob(f"*{_JOURNAL_SUFFIX}"), *directory.glob(f"*{_STORING_SUFFIX}")])
    entries = [pair for path in files if path.suffix == _JOURNAL_SUFFIX
               for pair in _read_journal(path)]
    known = {(entry.id, entry.version) for entry, _ in entries}
    for path in files:
        if path.suffix != _STORING_SUFFIX:
            continue
        for entry, keys in _read_journal(path):
            if (entry.id, entry.version) not in known and backend.exists(entry.meta_key):
                known.add((entry.id, entry.version))
                entries.append((entry, keys))
    if entries:
        index = NearIndex(backend, run_id)
        index._pending = entries
        index.flush(last=True)
    for path in files:
        path.unlink(missing_ok=True)
    return len(entries)


def _journal_record(entry: NearEntry, keys: list[int]) -> bytes:
    """An entry as the journal holds it: a one-entry segment after its length."""
    segment = _segment([(entry, keys)])
    return len(segment).to_bytes(4, "little") + segment


def _read_journal(path: Path) -> list[tuple[NearEntry, list[int]]]:
    """The entries of a journal file (each a one-entry segment after its length), with
    their band keys; a record cut short by a crash ends it."""
    data = path.read_bytes()
    entries, at = [], 0
    shifted = [band << 32 for band in range(LSH_BANDS)]
    while at + 4 <= len(data):
        size = int.from_bytes(data[at:at + 4], "little")
        record = data[at + 4:at + 4 + size]
        at += 4 + size
        try:
            rows, sites = _parse_segment(record)
        except ValueError:
            logger.warning("near-duplicate journal %s ends with a record cut short", path)
            break
        for row in rows:
            entries.append((_entry_of(row, sites),
                            [high | int(low) for high, low in zip(shifted, row["bands"].tolist())]))
    return entries


def _entry_of(row, sites: list[str]) -> NearEntry:
    # numpy's fixed-width bytes drop trailing zero bytes when read: pad them back.
    version = bytes(row["version"])
    of = bytes(row["of"])
    return NearEntry(
        id=bytes(row["id"]).ljust(12, b"\0").hex(), site=sites[int(row["site"])],
        day=date.fromordinal(int(row["day"])),
        when=datetime.fromtimestamp(int(row["when"]), timezone.utc),
        version=version.ljust(8, b"\0").hex() if version else "",
        fingerprint=bytes(row["fingerprint"]).ljust(8, b"\0").hex(),
        near_duplicate_of=of.ljust(12, b"\0").hex() if of else "")


def _segment(entries: list[tuple[NearEntry, list[int]]]) -> bytes:
    """A segment of ``entries`` (each with its band keys, see :func:`_band_keys`)."""
    sites = sorted({e.site for e, _ in entries})
    number = {s: n for n, s in enumerate(sites)}
    rows = np.zeros(len(entries), dtype=entry_dtype())
    for n, (entry, keys) in enumerate(entries):
        rows[n]["id"] = bytes.fromhex(entry.id)
        rows[n]["site"] = number[entry.site]
        rows[n]["day"] = entry.day.toordinal()
        rows[n]["when"] = int(entry.when.timestamp())
        rows[n]["version"] = bytes.fromhex(entry.version) if entry.version else b""
        rows[n]["fingerprint"] = bytes.fromhex(entry.fingerprint)
        rows[n]["of"] = bytes.fromhex(entry.near_duplicate_of) if entry.near_duplicate_of else b""
        rows[n]["bands"] = [key & 0xFFFFFFFF for key in keys]
    header = json.dumps({"sites": sites, "count": len(entries)}).encode() + b"\n"
    return MAGIC + header + rows.tobytes()


def _parse_segment(data: bytes):
    """(entries, site names) of a segment; ValueError if it is not one."""
    if not data.startswith(MAGIC):
        raise ValueError("not a near-duplicate index segment")
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):end])
    dtype = entry_dtype()
    body = data[end + 1:]
    if len(body) != header["count"] * dtype.itemsize:
        raise ValueError("truncated near-duplicate index segment")
    entries = np.frombuffer(body, dtype=dtype)
    if len(entries) and int(entries["site"].max()) >= len(header["sites"]):
        raise ValueError("near-duplicate index segment names an unknown site")
    return entries, list(header["sites"])
