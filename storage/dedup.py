"""Content dedup: text fingerprints for exact duplicates, MinHash/LSH for near duplicates.

MinHash is the textbook construction (as in datasketch) in a few lines of numpy: a
signature must be identical on every machine and in every release, which is easier to
promise for code we hold than for a library's defaults (datasketch changed its permutation
scheme in 2.0), and it spares every process the import of SciPy.

Both are pure functions of the text, so every writer on every machine computes the same
fingerprint and the same LSH bands for the same page; the index of bands lives in the
archive (``_index/near/``), see :mod:`storage.near_index`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Set as AbstractSet
from functools import cache, lru_cache

from storage.lazy import LazyModule

# Imported on first use (storage.lazy): processes that only read the archive, such as the
# newsarchive command while its crawls run, are spared its 16 MB.
np = LazyModule("numpy")

NEAR_DUPLICATE_JACCARD = 0.9
"""Texts whose word-shingle sets overlap at least this much are near duplicates."""

MIN_DEDUP_WORDS = 50
"""Texts shorter than this are never deduplicated by content: a caption, a teaser or an
error page says too little to prove two articles are one."""

SHINGLE_WORDS = 3
"""Words per shingle."""

LSH_BANDS = 10
LSH_ROWS = 8
# 10 bands of 8 rows: a pair at Jaccard 0.9 shares a bucket with probability 0.996 (0.9998
# at 0.95), a pair at 0.5 with 0.04; candidates are then checked exactly, so a stray one
# costs a read only. Each band is 4 bytes per article in the near-duplicate index, which
# every crawl reads for its window of days: more bands buy recall right at the threshold
# with bytes read by every crawl.
_NUM_PERM = LSH_BANDS * LSH_ROWS

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=16)
def normalize_text(text: str) -> str:
    """The text as compared: Unicode NFKC, case-folded, whitespace collapsed.

    Cached: storing one page asks for it several times (fingerprint, dedup, shingles)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_fingerprint(text: str) -> str:
    """SHA-256 (hex) of :func:`normalize_text`: equal for texts that differ only in case,
    whitespace or Unicode form."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


@lru_cache(maxsize=16)
def words(text: str) -> tuple[str, ...]:
    """The words of the normalised text (cached, as :func:`normalize_text`)."""
    return tuple(_WORD.findall(normalize_text(text)))


@lru_cache(maxsize=16)
def shingles(text: str) -> frozenset[str]:
    """Overlapping runs of :data:`SHINGLE_WORDS` words.

    Cached, as :func:`words`: storing a new article asks for them to compare it with its
    candidates, to keep them for the next ones, and to enter it in the index."""
    w = words(text)
    if len(w) < SHINGLE_WORDS:
        return frozenset({" ".join(w)} if w else ())
    return frozenset(" ".join(w[i:i + SHINGLE_WORDS]) for i in range(len(w) - SHINGLE_WORDS + 1))


def jaccard(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def dedupable(text: str) -> bool:
    """Whether the text is long enough for content dedup (see :data:`MIN_DEDUP_WORDS`)."""
    return len(words(text)) >= MIN_DEDUP_WORDS


@lru_cache(maxsize=16)
def lsh_bands(text: str) -> tuple[tuple[int, str], ...]:
    """``(band, bucket hash)`` for each LSH band of the text's MinHash signature.

    Cached: a new article's buckets are searched, then joined, by one writer in a row."""
    return tuple(
        (band, hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest())
        for band, row in enumerate(minhash(shingle_hashes(text)).reshape(LSH_BANDS, LSH_ROWS))
    )


@lru_cache(maxsize=16)
def shingle_hashes(text: str) -> np.ndarray:
    """The text's :func:`shingles` as their 32-bit hashes (the MinHash item hashes), sorted,
    each once: what the archive keeps of a text to compare it with later ones. An array of
    4 bytes a shingle, where the set of strings takes some 100 bytes a shingle, and
    compared in C (:func:`hashed_jaccard`). Two shingles of two texts share a hash by chance
    once in 2**32 pairs: a few in a thousand comparisons of two 1,000-word texts move the
    Jaccard by a thousandth, nowhere near the threshold's margin."""
    return np.unique(_item_hashes(shingles(text)))


def hashed_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`jaccard` of two texts' :func:`shingle_hashes`."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0


def _item_hashes(items: AbstractSet[str]) -> np.ndarray:
    """Each item's 4-byte blake2b digest, read as a little-endian 32-bit number (the
    digests are joined and read by numpy at once: a Python int per item cost as much as
    hashing it)."""
    digests = b"".join([hashlib.blake2b(item.encode("utf-8"), digest_size=4).digest()
                        for item in items])
    return np.frombuffer(digests, dtype="<u4")


def minhash(item_hashes: np.ndarray) -> np.ndarray:
    """The MinHash signature of a set, given its items' 32-bit hashes (:func:`shingle_hashes`):
    for each of the :data:`_NUM_PERM` hash functions ``(a * h + b) mod p``, the smallest
    value.

    Everything here (the item hash, the functions' parameters) is derived from fixed
    constants with hashlib, so signatures never change with a library's version.
    """
    a, b, prime, max_hash = _parameters()
    if not len(item_hashes):
        return np.full(_NUM_PERM, max_hash, dtype=np.uint64)
    hashes = item_hashes.astype(np.uint64)
    # a, b and h are below 2**32, so a * h + b stays below 2**64: no overflow.
    values = (hashes[:, None] * a[None, :] + b[None, :]) % prime
    return (values & max_hash).min(axis=0)


@cache
def _parameters() -> tuple[np.ndarray, np.ndarray, np.uint64, np.uint64]:
    """The hash functions' parameters ``a`` and ``b``, the prime ``p`` and the largest 32-bit
    value (made on first use, with numpy)."""
    def draw(name: str, i: int, low: int) -> int:
        digest = hashlib.blake2b(f"newsarchive-minhash/{name}/{i}".encode(), digest_size=4).digest()
        return max(low, int.from_bytes(digest, "little"))
    a = np.array([draw("a", i, 1) for i in range(_NUM_PERM)], dtype=np.uint64)
    b = np.array([draw("b", i, 0) for i in range(_NUM_PERM)], dtype=np.uint64)
    return a, b, np.uint64((1 << 61) - 1), np.uint64((1 << 32) - 1)
