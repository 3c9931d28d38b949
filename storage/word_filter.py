"""Which words the compacted catalog days of a site and month may hold: a Bloom filter of
their words' prefixes, so that a search skips the days that cannot have a word instead of
reading their titles and texts.

A search word matches at the start of a word of a title or text, case-insensitively
(``browse.catalog.WordMatcher``: ``elect`` finds ``election``). So the filter holds, for
every word of every title and text (a run of letters and digits: what the matcher takes as
a word's start), its prefixes up to :data:`PREFIX` characters, case-folded as the matcher
compares them (:func:`fold`); a search word is looked up by its first :data:`PREFIX`
letters and digits (:func:`query_key`). A Bloom filter answers "certainly not" or "maybe":
a day it says "certainly not" for cannot hold the word; "maybe" means read the day.

One file per site and month, ``catalog/site=<site>/_words-<YYYY-MM>.bin`` (beside the
site's ``_days.json``; like it, no reader of Parquet files takes it for one), written by
compaction as it compacts days (:func:`storage.catalog.compact_catalog`): a JSON line naming
the compacted file of each day it covers, then :data:`BITS` bits. A day counts as covered
only while its partition is that one file: a run file written to it since (a late article)
makes a search read the day. Days are added with a compare-and-swap, so two compactions at
once never drop one. A search then reads a dozen small files a site for a year of days,
where it read every title and text of the year.

Hand-written, not a library's: a Bloom filter is a few lines over numpy here, and the
words and their folding must be exactly the matcher's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import date

from storage.lazy import LazyModule

# Imported when a filter is first used: the processes that import storage.catalog without
# searching or compacting (the `newsarchive` command, crawls) need no numpy.
np = LazyModule("numpy")

PREFIX = 6
"""Characters of a word's prefixes kept: a search word of more is looked up by its first
six (then every day holding a word that starts alike is read)."""
BITS = 1 << 20
"""Bits of a month's filter (128 KiB): at the 100,000 distinct prefixes of a large site's
month, 1% of the days without a word still read; more prefixes only read more days."""
HASHES = 7
"""Bits set per prefix."""

_WORD = re.compile(r"[^\W_]+")


def _fold_table() -> dict[int, int]:
    # Python's case-insensitive matching takes two characters as equal when their simple
    # lower cases are, or are one of the pairs of re's own table (ı and i, ſ and s, σ and ς,
    # ϐ and β...): each such class is mapped to one of its members. str.lower() is the simple
    # lower case but for İ, which it makes two characters (and re matches as i).
    from re._casefix import _EXTRA_CASES  # the table re compiles patterns with

    table = {0x130: ord("i")}
    for lower, extras in _EXTRA_CASES.items():
        members = (lower, *extras)
        for member in members:
            if member != min(members):
                table[member] = min(members)
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """``text`` as the filter compares it: lower case, each character that Python's
    case-insensitive matching takes for another (``ı`` for ``i``, ``ſ`` for ``s``, ``ς`` for
    ``σ``...) replaced by one of its class."""
    return text.translate(_FOLD).lower().translate(_FOLD)


def text_keys(texts: Iterable[str | None]) -> set[str]:
    """The keys of titles and texts: each word's prefixes up to :data:`PREFIX`."""
    keys: set[str] = set()
    for text in texts:
        if not text:
            continue
        for word in set(_WORD.findall(fold(text))):
            keys.update(word[:n] for n in range(1, min(len(word), PREFIX) + 1))
    return keys


def query_key(word: str) -> str | None:
    """The key a search word is looked up by: its leading letters and digits, folded, at
    most :data:`PREFIX`; None when it starts with anything else (no day can be ruled out)."""
    match = _WORD.match(fold(word))
    return match.group()[:PREFIX] if match else None


def _positions(keys: Iterable[str]) -> np.ndarray:
    digests = np.array([int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8)
                                       .digest(), "little") for key in keys], dtype=np.uint64)
    first, second = digests & 0xFFFFFFFF, (digests >> np.uint64(32)) | np.uint64(1)
    steps = np.arange(HASHES, dtype=np.uint64)
    return ((first[:, None] + steps[None, :] * second[:, None]) % np.uint64(BITS)).ravel()


class WordFilter:
    """One site-month's filter: the days it covers (day -> compacted file name) and its bits."""

    def __init__(self, days: dict[date, str] | None = None, bits: np.ndarray | None = None):
        self.days: dict[date, str] = dict(days or {})
        self.bits = bits if bits is not None else np.zeros(BITS // 8, dtype=np.uint8)

    def add(self, day: date, file_name: str, keys: Iterable[str]) -> None:
        """Cover ``day``, whose compacted file ``file_name`` holds words of ``keys``."""
        positions = _positions(keys)
        if positions.size:
            np.bitwise_or.at(self.bits, (positions >> np.uint64(3)).astype(np.int64),
                             (1 << (positions & np.uint64(7))).astype(np.uint8))
        self.days[day] = file_name

    def may_hold(self, key: str) -> bool:
        """False when no covered day has a word starting with ``key``."""
        positions = _positions([key])
        found = self.bits[(positions >> np.uint64(3)).astype(np.int64)] \
            & (1 << (positions & np.uint64(7))).astype(np.uint8)
        return bool(np.all(found))

    def to_bytes(self) -> bytes:
        """The file: a JSON line, then the bits."""
        head = {"prefix": PREFIX, "bits": BITS, "hashes": HASHES,
                "days": {day.isoformat(): name for day, name in sorted(self.days.items())}}
        return json.dumps(head, sort_keys=True).encode() + b"\n" + self.bits.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> WordFilter | None:
        """The filter of a file, or None when it is damaged or made with other parameters
        (it is then not used, and compaction writes it anew)."""
        head, _, bits = data.partition(b"\n")
        try:
            meta = json.loads(head)
            days = {date.fromisoformat(day): name for day, name in meta["days"].items()}
        except (ValueError, KeyError, AttributeError, TypeError):
            return None
        if (meta.get("prefix"), meta.get("bits"), meta.get("hashes")) != (PREFIX, BITS, HASHES) \
                or len(bits) != BITS // 8:
            return None
        return cls(days, np.frombuffer(bits, dtype=np.uint8).copy())


def word_filter_key(catalog_root: str, site: str, month: date) -> str:
    """The key of a site-month's filter: ``<catalog_root>/site=<site>/_words-<YYYY-MM>.bin``."""
    return f"{catalog_root}/site={site}/_words-{month:%Y-%m}.bin"
