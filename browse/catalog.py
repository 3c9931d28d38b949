"""Questions to the archive's Parquet catalog, read in place with pyarrow: articles per
site and day, extraction health, full-text search.

The catalog is append-only: an article archived again (a new version, a reprocessing) has
one more row, in the same ``site=/date=`` partition since the date comes from the article's
folder. Every answer here is about each article's latest row (see :mod:`storage.catalog`:
the one with the most ``versions``, then the latest ``fetched_at``...), which
:func:`storage.catalog.read_catalog` picks.

Only the columns a question needs are read, and ``site``/``date`` filters skip whole
partitions. Search reads each catalog file at most once: its scan keeps every row's small
columns (enough to tell which rows are latest) and the title and text only of the rows
that have the query's longest word; it reads the newest days first and stops at the day
where it has found enough results.

A search query is bounded (:data:`MAX_QUERY_WORDS` words, :data:`MAX_QUERY_CHARS`
characters) and its words are matched in one pass over each text, with one pattern for all
of them, after a substring test that rejects most texts without it: a query's cost grows
with the text searched, not with the text times its words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from storage.catalog import FIGURE_COLUMNS, Catalog, DayFigures, day_figures
from storage.word_filter import query_key

LISTING_COLUMNS = ("id", "site", "date", "title", "authors", "published", "language", "url",
                   "fetched_at")
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
    """The URL it was fetched from (with whatever tracking parameters the link had)."""
    published: datetime | None
    """Its publication time, or null."""
    snippet: str
    """A stretch of its text around the first word found (one line), cut between words."""
    canonical_url: str | None = None
    """Its canonical URL (no tracking parameters: see :mod:`storage.urls`), or null."""


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


def read_articles(archive_url: str, *, site: str | None = None, since: date | None = None,
                  until: date | None = None, columns: Sequence[str] = LISTING_COLUMNS) -> pa.Table:
    """The latest row of every article of ``site`` dated within [since, until]."""
    return Catalog(archive_url, site=site).read(filter=catalog_filter(site, since, until),
                                                columns=list(columns))


LIST_COLUMNS = ("id", "site", "date", "title", "url")
"""The columns ``ls`` prints."""

LISTING_CHUNK = 64
"""(site, date) partitions read at once by :func:`iter_listing`: a listing of the whole
archive holds a few of them in memory, not the archive."""


def iter_listing(catalog: Catalog, *, since: date | None = None, until: date | None = None,
                 language: str | None = None,
                 columns: Sequence[str] = LIST_COLUMNS) -> Iterator[pa.Table]:
    """The latest row of every article of ``catalog`` (an archive's, or a site's) dated
    within [since, until] (in ``language``, an ISO 639-1 code, when given), as tables of
    ``columns``, in the order of their ``meta.json`` keys, as a listing of the archive's
    ``articles/`` gives them."""
    # Listing order: keys compare site names followed by "/" ("a-b/" before "a/").
    partitions = sorted((p for p in catalog.partitions()
                         if (since is None or p[1] >= since) and (until is None or p[1] <= until)),
                        key=lambda p: (f"{p[0]}/", p[1]))
    wanted = list(dict.fromkeys([*columns, "meta_key", "language"]))
    for first in range(0, len(partitions), LISTING_CHUNK):
        table = catalog.read(columns=wanted, partitions=partitions[first:first + LISTING_CHUNK])
        if language:
            table = table.filter(pc.equal(pc.utf8_lower(pc.fill_null(table["language"], "")),
                                          language.lower()))
        # The partitions come in listing order; within them, a meta.json key is the order.
        order = pc.sort_indices(table, sort_keys=[("meta_key", "ascending")])
        yield table.take(order).select(list(columns))


def day_counts(articles: pa.Table) -> list[DayCount]:
    """Articles per site and date, with their metadata health, sorted by site and date;
    ``articles`` is a table of latest rows with (at least) :data:`FIGURE_COLUMNS`."""
    return _as_day_counts(day_figures(articles))


def read_day_counts(archive_url: str, *, site: str | None = None, since: date | None = None,
                    until: date | None = None) -> list[DayCount]:
    """Articles per site and date (of ``site``, dated within [since, until]), with their
    metadata health, sorted by site and date.

    A closed day that is one compacted file is not read: its figures come from its site's
    summary (:meth:`storage.catalog.Catalog.summarized`). So a year of history costs a
    listing and a small read per site more than the open days' files, whatever its
    length."""
    catalog = Catalog(archive_url, site=site)
    partitions = [p for p in catalog.partitions(site)
                  if (since is None or p[1] >= since) and (until is None or p[1] <= until)]
    known = catalog.summarized(site)
    figures = {p: known[p] for p in partitions if p in known}
    figures |= day_figures(catalog.read(columns=list(FIGURE_COLUMNS),
                                        partitions=[p for p in partitions if p not in known]))
    return _as_day_counts(figures)


def _as_day_counts(figures: dict[tuple[str, date], DayFigures]) -> list[DayCount]:
    return [DayCount(site=site, day=day, articles=f.articles, with_date=f.with_published,
                     with_author=f.with_authors, with_title=f.with_title)
            for (site, day), f in sorted(figures.items())]


def words_of(query: str) -> list[str]:
    """The words of a search query: split on white space, each kept once (case does not
    matter), in their order. Raises :class:`QueryTooLong` beyond the bounds."""
    words = query.split()
    if len(words) > MAX_QUERY_WORDS or len(query) > MAX_QUERY_CHARS:
        raise QueryTooLong(f"a search takes at most {MAX_QUERY_WORDS} words and "
                           f"{MAX_QUERY_CHARS} characters; this one has {len(words)} words "
                           f"and {len(query)} characters")
    return list({_folded(w): w for w in words}.values())


SAME_MARKS = ("'\u2019\u2018\u02bc", "-\u2010\u2011")
"""Marks inside words that a reader takes for one another and a keyboard types as one: the
apostrophe and its typographic forms ("don't", "don’t": news text sets the curly one, and a
search for "Trump's" found none of it), the hyphen and its Unicode forms ("covid-19",
"covid‑19"). Each mark of a query matches any of its kind."""

_ONE_MARK = str.maketrans({mark: marks[0] for marks in SAME_MARKS for mark in marks[1:]})
_MARK_CLASS = {mark: f"[{marks}]" for marks in SAME_MARKS for mark in marks}
_MARKS = re.compile("|".join(map(re.escape, "".join(SAME_MARKS))))


def _folded(word: str) -> str:
    """``word`` as the search compares words: case folded, each mark of :data:`SAME_MARKS`
    as the first of its kind."""
    return word.translate(_ONE_MARK).casefold()


def _pattern_of(word: str, escape: Callable[[str], str]) -> str:
    """``word`` as a pattern: each character escaped by ``escape``, each mark of
    :data:`SAME_MARKS` a class of its kind (a hyphen first in it: a literal for ``re`` and
    RE2 alike)."""
    return "".join(_MARK_CLASS.get(c) or escape(c) for c in word)


FOLDABLE_RANGES = "\x00-\u036f\u0400-\u052f\u1e00-\u1eff\u2000-\u206f\u20a0-\u20cf"
"""Latin (with its accented letters, Vietnamese's too), Cyrillic, general punctuation and
currency signs: the characters the substring pre-check of :class:`WordMatcher` lower-cases
(Greek, with its several sigmas, and other scripts go straight to the pattern)..."""

FOLD_EXCEPTIONS = "\u00b5\u0130\u0131\u017f\u0345\u1e60\u1e61\u1e9b"
"""...but these: characters that ``re.IGNORECASE`` takes for others than
``str.lower`` says (``ı`` for ``i``, ``ſ`` for ``s``, ``ẛ`` for ``ṡ``...), or that lower-case
to two (``İ``). ``tests/test_browse_cli.py`` checks every pair of the ranges against ``re``."""

_NOT_FOLDABLE = re.compile(f"[^{FOLDABLE_RANGES}]|[{FOLD_EXCEPTIONS}]")


def foldable(text: str) -> bool:
    """Whether ``text.lower()`` matches as ``re.IGNORECASE`` does: two of its characters
    are equal for the pattern exactly when they are equal lower-cased, one for one."""
    return text.isascii() or _NOT_FOLDABLE.search(text) is None


class WordMatcher:
    """Which words of a query a text has, found in one pass over the text with one
    pattern for all the words.

    A word matches at the start of a word of the text (after a character that is neither
    a letter nor a digit), case-insensitively: ``elect`` finds ``election``, not
    ``select``.

    The pattern (Python's ``re``, Unicode-aware) costs far more per character than a
    substring test, so a text is first checked to hold every word anywhere, lower-cased
    (a necessary condition, when :func:`foldable` says lower-casing agrees with the
    pattern's case rule); most texts without every word never reach the pattern."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = tuple(words)
        # Longest first: where several words match at one place, the longest one is the
        # branch taken, and the others are its prefixes: _found_with[branch] lists them all.
        order = sorted(range(len(self.words)), key=lambda n: -len(self.words[n]))
        branches = "|".join(f"({_pattern_of(self.words[n], re.escape)})" for n in order)
        # Zero-width (a lookahead), so that matches may overlap: in "new-york", the query
        # "new-york york" finds "york" too.
        self.pattern = re.compile(rf"(?<![^\W_])(?=(?:{branches}))", re.IGNORECASE)
        self._found_with = [frozenset(
            other for other, word in enumerate(self.words)
            if _folded(self.words[n]).startswith(_folded(word))) for n in order]
        # Each word's parts between its marks, lower-cased: the text holds each of them
        # literally wherever it has the word, whichever of its kind each mark is.
        self._lowered = (tuple(part for word in self.words
                               for part in _MARKS.split(word.lower()) if part)
                         if all(foldable(word) for word in self.words) else None)

    def may_have_every_word(self, text: str) -> bool:
        """False when ``text`` certainly lacks a word (it does not hold it anywhere, in
        any case); True when it may have them all."""
        if self._lowered is None or not foldable(text):
            return True
        lowered = text.lower()
        return all(word in lowered for word in self._lowered)

    def has_every_word(self, text: str) -> bool:
        """Whether ``text`` has every word (stops at the first place they all are found)."""
        if not self.may_have_every_word(text):
            return False
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

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the words are found in ``text``: the ``[start, end)`` of each word of the
        text that starts with one of them (the whole word, ``election`` for ``elect``),
        in order, overlapping ones merged."""
        spans: list[tuple[int, int]] = []
        for match in self.pattern.finditer(text):
            start = match.start()
            end = _WORD_REST.match(text, start + len(match.group(match.lastindex))).end()
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return spans


_WORD_REST = re.compile(r"[^\W_]*")
"""The rest of a word (letters and digits) from where a query word ended."""


def _word_pattern(word: str) -> str:
    # The same rule as WordMatcher, for RE2 (pyarrow's regex engine), which takes a
    # backslash before any ASCII punctuation.
    escaped = _pattern_of(word, lambda c: f"\\{c}" if c.isascii() and not c.isalnum() else c)
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


_FOUND = "__found"
"""Column of a search's scan: the row's title and text where the scan's filter matched,
else null."""

_FOUND_TYPE = pa.struct([("title", pa.string()), ("text", pa.string())])

_HIT_COLUMNS = ("id", "site", "date", "url", "canonical_url", "published", "fetched_at")
"""The columns a search reads of every row, besides the title and text of the rows that
match: what a hit shows and how hits are ordered."""

FIRST_DAYS = 1
"""Days a search reads first (the newest); each later read takes twice as many, so that a
search over a long history is a few reads, and one that finds its results in the newest
days reads nothing else."""

_MATCH_CHUNK = 64
"""Rows of a read handed to the matcher at a time, newest first."""


def search(archive_url: str, query: str, *, site: str | None = None,
           since: date | None = None, until: date | None = None,
           limit: int | None = 20) -> list[SearchHit]:
    """Articles (of ``site``, archived under a date within [since, until], when given) whose
    latest title or text holds every word of ``query`` (case-insensitive, each word at the
    start of a word), newest first (by date, then publication time, else fetch time); at
    most ``limit`` (None: all). Raises :class:`QueryTooLong` for a query beyond
    :data:`MAX_QUERY_WORDS` words or :data:`MAX_QUERY_CHARS` characters.

    One pass over the catalog: each file is read at most once. Results are newest first
    and an article's rows all share one date partition, so the days are read newest first
    (:data:`FIRST_DAYS`, then twice as many each time), each read keeping each article's
    latest row; once ``limit`` hits are found, older days cannot hold a better one and are
    not read.
    """
    words = words_of(query)
    if not words:
        return []
    matcher = WordMatcher(words)
    catalog = Catalog(archive_url, site=site)
    # The date range skips whole partitions, as the site does: they are never read.
    partitions = [p for p in catalog.partitions(site)
                  if (since is None or p[1] >= since) and (until is None or p[1] <= until)]
    # Compacted days whose word filter says they lack a word are not read (a search for a
    # word no article has then reads a small file a site and month, not every text); the
    # filters are read as the days are reached.
    keys = [query_key(word) for word in words]
    days = sorted({day for _site, day in partitions}, reverse=True)
    projection = {name: ds.field(name) for name in _HIT_COLUMNS} | {
        # The title and text of the rows whose title or text has the longest word, the
        # others' left behind in the scan: an article's latest row is then chosen among
        # all of its rows, and tested only if it matched.
        _FOUND: pc.if_else(scan_filter(words),
                           pc.make_struct(ds.field("title"), ds.field("text"),
                                          field_names=["title", "text"]),
                           pa.scalar(None, _FOUND_TYPE))}
    hits: list[SearchHit] = []
    size = FIRST_DAYS if limit is not None else len(days)
    while days and (limit is None or len(hits) < limit):
        batch, days = set(days[:size]), days[size:]
        size *= 2
        latest = catalog.read(columns=projection, partitions=[
            p for p in partitions if p[1] in batch
            and not (all(keys) and catalog.cannot_hold(p, keys))])
        found = latest.filter(pc.is_valid(latest[_FOUND]))
        hits += _matching(found, matcher, None if limit is None else limit - len(hits))
    return hits


def _matching(found: pa.Table, matcher: WordMatcher, limit: int | None) -> list[SearchHit]:
    """The rows of ``found`` (a read of latest rows whose title or text has the longest
    word) that have every word, newest first, at most ``limit``."""
    when = pc.coalesce(found["published"], found["fetched_at"])
    order = pc.sort_indices(
        pa.table({"date": found["date"], "when": when, "id": found["id"]}),
        sort_keys=[("date", "descending"), ("when", "descending"), ("id", "descending")])
    hits: list[SearchHit] = []
    for start in range(0, len(order), _MATCH_CHUNK):
        for row in found.take(order[start:start + _MATCH_CHUNK]).to_pylist():
            title, text = row[_FOUND]["title"], row[_FOUND]["text"]
            # Title and text in one string, so that each row is one pass of the matcher.
            if not matcher.has_every_word(f"{title or ''}\n{text or ''}"):
                continue
            hits.append(SearchHit(id=row["id"], site=row["site"], day=row["date"],
                                  title=title, url=row["url"], published=row["published"],
                                  snippet=snippet(text or "", matcher),
                                  canonical_url=row["canonical_url"]))
            if limit is not None and len(hits) == limit:
                return hits
    return hits


SNIPPET_WORD_SLACK = 30
"""Most characters a snippet's ends move to fall between words: beyond that (a script
written without spaces, a very long token), the snippet is cut where it was."""


def snippet(text: str, matcher: WordMatcher, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first word of ``matcher`` found
    in it, on one line, cut between words (no word is cut in two), with ``…`` where it
    was cut."""
    flat = " ".join(text.split())
    at = matcher.first(flat) or 0
    start = max(0, at - width // 3)
    end = min(len(flat), start + width)
    start = max(0, min(start, end - width))
    start, end = _between_words(flat, start, end, at)
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def _between_words(flat: str, start: int, end: int, at: int) -> tuple[int, int]:
    """[start, end) of ``flat`` (words separated by single spaces) moved to word boundaries,
    keeping the word at ``at``: the word cut at the start is left out (or, if it is the
    word found, taken whole), and so is the word cut at the end."""
    if 0 < start and flat[start - 1] != " ":
        after = flat.find(" ", start)
        before = flat.rfind(" ", 0, start) + 1
        if 0 <= after < at and after + 1 - start <= SNIPPET_WORD_SLACK:
            start = after + 1
        elif start - before <= SNIPPET_WORD_SLACK:
            start = before
    if end < len(flat) and flat[end] != " ":
        cut = flat.rfind(" ", start, end)
        following = flat.find(" ", end)
        following = len(flat) if following < 0 else following
        if cut > at and end - cut <= SNIPPET_WORD_SLACK:
            end = cut
        elif following - end <= SNIPPET_WORD_SLACK:
            end = following
    return start, end


def _all(parts: Sequence[ds.Expression | None]) -> ds.Expression | None:
    """The conjunction of the expressions that are not None (None for none)."""
    out = None
    for part in parts:
        if part is not None:
            out = part if out is None else out & part
    return out
