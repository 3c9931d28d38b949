"""Questions to the archive's Parquet catalog, read in place with pyarrow: articles per
site and day, extraction health, full-text search.

The catalog is append-only: an article archived again (a new version, a reprocessing) has
one more row, in the same ``site=/date=`` partition since the date comes from the article's
folder. Every answer here is about each article's latest row: the one with the most
``versions`` (they are only ever added), then the latest ``fetched_at``.

Only the columns a question needs are read, and ``site``/``date`` filters skip whole
partitions; search pushes a filter on its longest word into the scan, so only rows that
have that word (and the small id columns that tell which rows are latest) are kept in
memory.

A search query is bounded (:data:`MAX_QUERY_WORDS` words, :data:`MAX_QUERY_CHARS`
characters) and its words are matched in one pass over each text, with one pattern for all
of them: a query's cost grows with the text searched, not with the text times its words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from storage.catalog import read_catalog

LATEST_KEY_COLUMNS = ("id", "fetched_at", "versions")
"""Columns that tell an article's latest row."""

LISTING_COLUMNS = ("id", "site", "date", "title", "authors", "published", "language", "url",
                   *LATEST_KEY_COLUMNS[1:])
"""Columns of an article listing and of the per-day counts."""

SNIPPET_CHARS = 160
"""Length of a search result's snippet."""

MAX_QUERY_WORDS = 32
"""Most words in a search query: each one is a branch of the pattern matched at every
word of every text searched."""

MAX_QUERY_CHARS = 500
"""Longest search query, in characters (white space included)."""


class QueryTooLong(ValueError):
    """A search query with more than :data:`MAX_QUERY_WORDS` words or
    :data:`MAX_QUERY_CHARS` characters: refused, never cut (fewer words would find other
    articles than the ones asked for)."""


@dataclass(frozen=True)
class DayCount:
    """Articles of one site archived under one date, and how well their metadata came out."""

    site: str
    """The site."""
    day: date
    """The archive date (publication date in UTC, else fetch date)."""
    articles: int
    """Articles (latest rows) of that site and date."""
    with_date: int
    """Of those, articles with a publication date."""
    with_author: int
    """Of those, articles with at least one author."""
    with_title: int
    """Of those, articles with a title."""


@dataclass(frozen=True)
class SearchHit:
    """An article whose title or text has every word searched for."""

    id: str
    """The article id."""
    site: str
    """Its site."""
    day: date
    """Its archive date."""
    title: str | None
    """Its title, or null."""
    url: str
    """The URL it was fetched from."""
    published: datetime | None
    """Its publication time, or null."""
    snippet: str
    """A stretch of its text around the first word found (one line)."""


def catalog_filter(site: str | None = None, since: date | None = None,
                   until: date | None = None) -> ds.Expression | None:
    """A partition filter for ``site`` and the archive dates [since, until]."""
    parts = []
    if site is not None:
        parts.append(ds.field("site") == site)
    if since is not None:
        parts.append(ds.field("date") >= since)
    if until is not None:
        parts.append(ds.field("date") <= until)
    return _all(parts)


def latest_rows(table: pa.Table) -> pa.Table:
    """One row per ``id``: its latest (most versions, then latest ``fetched_at``)."""
    if table.num_rows <= 1:
        return table
    versions = pc.fill_null(pc.list_value_length(table["versions"]), 0)
    keyed = table.append_column("_versions", versions)
    order = pc.sort_indices(keyed, sort_keys=[("id", "ascending"), ("_versions", "descending"),
                                              ("fetched_at", "descending")])
    keyed = keyed.take(order)
    ids = keyed["id"].combine_chunks()
    first = pa.concat_arrays([pa.array([True]),
                              pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))])
    return keyed.filter(first).drop_columns(["_versions"])


def read_articles(archive_url: str, *, site: str | None = None, since: date | None = None,
                  until: date | None = None, columns: Sequence[str] = LISTING_COLUMNS) -> pa.Table:
    """The latest row of every article of ``site`` dated within [since, until]."""
    wanted = list(dict.fromkeys([*columns, *LATEST_KEY_COLUMNS]))
    table = read_catalog(archive_url, filter=catalog_filter(site, since, until), columns=wanted)
    return latest_rows(table)


def day_counts(articles: pa.Table) -> list[DayCount]:
    """Articles per site and date, with their metadata health, sorted by site and date;
    ``articles`` is a table of :data:`LISTING_COLUMNS` (latest rows)."""
    if articles.num_rows == 0:
        return []
    flags = pa.table({
        "site": articles["site"],
        "date": articles["date"],
        "has_date": pc.cast(pc.is_valid(articles["published"]), pa.int64()),
        "has_author": pc.cast(pc.greater(pc.fill_null(pc.list_value_length(articles["authors"]),
                                                      0), 0), pa.int64()),
        "has_title": pc.cast(pc.greater(pc.fill_null(pc.utf8_length(articles["title"]), 0), 0),
                             pa.int64()),
    })
    grouped = flags.group_by(["site", "date"]).aggregate([
        ("has_date", "count"), ("has_date", "sum"), ("has_author", "sum"), ("has_title", "sum")])
    out = [DayCount(site=row["site"], day=row["date"], articles=row["has_date_count"],
                    with_date=row["has_date_sum"], with_author=row["has_author_sum"],
                    with_title=row["has_title_sum"])
           for row in grouped.to_pylist()]
    return sorted(out, key=lambda c: (c.site, c.day))


def words_of(query: str) -> list[str]:
    """The words of a search query: split on white space, each kept once (case does not
    matter), in their order. Raises :class:`QueryTooLong` beyond the bounds."""
    words = query.split()
    if len(words) > MAX_QUERY_WORDS or len(query) > MAX_QUERY_CHARS:
        raise QueryTooLong(f"a search takes at most {MAX_QUERY_WORDS} words and "
                           f"{MAX_QUERY_CHARS} characters; this one has {len(words)} words "
                           f"and {len(query)} characters")
    return list({w.casefold(): w for w in words}.values())


class WordMatcher:
    """Which words of a query a text has, found in one pass over the text with one
    pattern for all the words.

    A word matches at the start of a word of the text (after a character that is neither
    a letter nor a digit), case-insensitively: ``elect`` finds ``election``, not
    ``select``."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = tuple(words)
        # Longest first: where several words match at one place, the longest one is the
        # branch taken, and the others are its prefixes: _found_with[branch] lists them all.
        order = sorted(range(len(self.words)), key=lambda n: -len(self.words[n]))
        branches = "|".join(f"({re.escape(self.words[n])})" for n in order)
        # Zero-width (a lookahead), so that matches may overlap: in "new-york", the query
        # "new-york york" finds "york" too.
        self.pattern = re.compile(rf"(?<![^\W_])(?=(?:{branches}))", re.IGNORECASE)
        self._found_with = [frozenset(
            other for other, word in enumerate(self.words)
            if self.words[n].casefold().startswith(word.casefold())) for n in order]

    def has_every_word(self, text: str) -> bool:
        """Whether ``text`` has every word (stops at the first place they all are found)."""
        missing = set(range(len(self.words)))
        for match in self.pattern.finditer(text):
            missing -= self._found_with[match.lastindex - 1]
            if not missing:
                return True
        return not missing

    def first(self, text: str) -> int | None:
        """Where the first word found in ``text`` starts, or None."""
        match = self.pattern.search(text)
        return match.start() if match else None


def _word_pattern(word: str) -> str:
    # The same rule as WordMatcher, for RE2 (pyarrow's regex engine), which takes a
    # backslash before any ASCII punctuation.
    escaped = "".join(f"\\{c}" if c.isascii() and not c.isalnum() else c for c in word)
    return rf"(?:^|[^\pL\pN]){escaped}"


def scan_filter(words: Sequence[str]) -> ds.Expression:
    """The filter search pushes into the catalog's scan: title or text has the longest of
    ``words`` (an article with every word has that one). One pattern, whatever the number
    of words; :class:`WordMatcher` then checks every word in the rows it lets through."""
    longest = max(words, key=len)
    return (pc.match_substring_regex(ds.field("title"), pattern=_word_pattern(longest),
                                     ignore_case=True)
            | pc.match_substring_regex(ds.field("text"), pattern=_word_pattern(longest),
                                       ignore_case=True))


def search(archive_url: str, query: str, *, site: str | None = None,
           limit: int | None = 20) -> list[SearchHit]:
    """Articles whose latest title or text holds every word of ``query`` (case-insensitive,
    each word at the start of a word), newest first; at most ``limit`` (None: all).
    Raises :class:`QueryTooLong` for a query beyond :data:`MAX_QUERY_WORDS` words or
    :data:`MAX_QUERY_CHARS` characters."""
    words = words_of(query)
    if not words:
        return []
    matcher = WordMatcher(words)
    site_filter = catalog_filter(site)
    columns = ["id", "site", "date", "title", "url", "published", "text", *LATEST_KEY_COLUMNS[1:]]
    candidates = read_catalog(archive_url, filter=_all([site_filter, scan_filter(words)]),
                              columns=columns)
    # Title and text in one string, so that each row is one pass of the matcher.
    keep = [matcher.has_every_word(f"{title or ''}\n{text or ''}")
            for title, text in zip(candidates["title"].to_pylist(),
                                   candidates["text"].to_pylist())]
    hits = latest_rows(candidates.filter(pa.array(keep, pa.bool_())))
    if hits.num_rows == 0:
        return []
    # A row that matches may have been superseded by a later one that does not: keep the
    # hits that are their article's latest row.
    current = latest_rows(read_catalog(
        archive_url, filter=_all([site_filter, ds.field("id").isin(hits["id"].combine_chunks())]),
        columns=list(LATEST_KEY_COLUMNS)))
    latest = {(r["id"], len(r["versions"] or ()), r["fetched_at"]) for r in current.to_pylist()}
    rows = [r for r in hits.to_pylist()
            if (r["id"], len(r["versions"] or ()), r["fetched_at"]) in latest]
    rows.sort(key=lambda r: (r["date"], r["published"] or r["fetched_at"], r["id"]), reverse=True)
    if limit is not None:
        rows = rows[:limit]
    return [SearchHit(id=r["id"], site=r["site"], day=r["date"], title=r["title"], url=r["url"],
                      published=r["published"], snippet=snippet(r["text"] or "", matcher))
            for r in rows]


def snippet(text: str, matcher: WordMatcher, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first word of ``matcher`` found
    in it, on one line, with ``…`` where it was cut."""
    flat = " ".join(text.split())
    at = matcher.first(flat) or 0
    start = max(0, at - width // 3)
    end = min(len(flat), start + width)
    start = max(0, min(start, end - width))
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def _all(parts: Sequence[ds.Expression | None]) -> ds.Expression | None:
    """The conjunction of the expressions that are not None (None for none)."""
    out = None
    for part in parts:
        if part is not None:
            out = part if out is None else out & part
    return out
