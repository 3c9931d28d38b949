"""The web UI's search page: one page of results, with the words found marked, the site
facets and the links to the other pages.

A search reads the catalog's newest days first and stops once it has found what it was
asked for (:func:`browse.catalog.search`), so a page costs what its results cost, never a
read of the whole archive: page ``n`` asks for ``n`` pages of results (and one more to
know whether there is a next page), and the facets for the newest :data:`FACET_BOUND`
matches. When there are more, the counts say so (``≥``): they are counts of those.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlencode

from browse.catalog import SearchHit, WordMatcher, search, words_of
from storage.urls import canonicalize_url

PAGE_SIZE = 20
"""Results on a page."""

MAX_PAGE = 50
"""The last page that may be asked for (1,000 results): a search beyond that needs dates
or a site."""

FACET_BOUND = 200
"""Matches the site facets are counted over, the newest first."""


class BadSearch(ValueError):
    """A search parameter that is not one (a date that is no date, a page beyond
    :data:`MAX_PAGE`...): the message says which, for the user."""


@dataclass(frozen=True)
class Segment:
    """A stretch of a shown string: text, and whether it is a word the search found."""

    text: str
    """The text (escaped when it is shown, like every archived string)."""
    found: bool
    """Whether it is a found word (shown in ``<mark>``)."""


@dataclass(frozen=True)
class Result:
    """A search result as the page shows it."""

    id: str
    """The article id."""
    site: str
    """Its site."""
    day: date
    """Its archive date."""
    published: datetime | None
    """Its publication time, or None."""
    title: tuple[Segment, ...]
    """Its title, the words found marked; empty when it has none."""
    snippet: tuple[Segment, ...]
    """A stretch of its text around the first word found, the words found marked."""
    url: str
    """Its canonical URL: no tracking parameters."""


@dataclass(frozen=True)
class Facet:
    """A site among the matches."""

    site: str
    """The site."""
    count: int
    """Its matches among those counted."""
    href: str
    """The search, of this site alone."""
    selected: bool
    """Whether the search is of this site alone."""


@dataclass(frozen=True)
class PageLink:
    """A link to a page of the results."""

    number: int
    """The page number (1 for the first)."""
    href: str
    """Its URL."""
    current: bool
    """Whether it is the page shown."""


@dataclass(frozen=True)
class SearchPage:
    """One page of a search's results."""

    results: tuple[Result, ...]
    """The results of the page, newest first."""
    page: int
    """The page number (1 for the first)."""
    first_number: int
    """The number of the page's first result, counted from 1."""
    total: int
    """Matches found: all of them when :attr:`complete`, else how many were read."""
    complete: bool
    """Whether :attr:`total` is every match (else there are more)."""
    facets: tuple[Facet, ...]
    """The sites among the matches, most matches first."""
    facets_complete: bool
    """Whether the facets count every match (else the newest :data:`FACET_BOUND`)."""
    facet_bound: int
    """How many matches the facets count at most."""
    all_sites_href: str
    """The search of every site."""
    pages: tuple[PageLink, ...]
    """Links to the pages known to have results."""
    previous_href: str | None
    """The page before, or None."""
    next_href: str | None
    """The page after, or None."""


def parse_day(value: str, name: str) -> date | None:
    """A date parameter (``YYYY-MM-DD``), or None when empty."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadSearch(f"{name} is not a date (YYYY-MM-DD): {value[:40]!r}") from None


def parse_page(value: str) -> int:
    """The page parameter: 1 when empty."""
    if not value:
        return 1
    # ASCII digits, and few: int() refuses thousands of them.
    if not (value.isascii() and value.isdigit() and len(value) <= 4) \
            or not 1 <= int(value) <= MAX_PAGE:
        raise BadSearch(f"a page is a whole number from 1 to {MAX_PAGE}; for older results, "
                        "search a range of dates or a site")
    return int(value)


def search_href(query: str, *, site: str | None, since: date | None, until: date | None,
                page: int = 1) -> str:
    """The URL of a search page."""
    params = {"q": query, "site": site or "", "since": since.isoformat() if since else "",
              "until": until.isoformat() if until else ""}
    params = {k: v for k, v in params.items() if v}
    if page > 1:
        params["page"] = str(page)
    return "/search?" + urlencode(params)


def marked(text: str, matcher: WordMatcher) -> tuple[Segment, ...]:
    """``text`` cut into segments, the words ``matcher`` finds in it marked."""
    segments, at = [], 0
    for start, end in matcher.spans(text):
        if start > at:
            segments.append(Segment(text[at:start], False))
        segments.append(Segment(text[start:end], True))
        at = end
    if at < len(text):
        segments.append(Segment(text[at:], False))
    return tuple(segments)


def search_page(archive_url: str, query: str, *, site: str | None = None,
                since: date | None = None, until: date | None = None,
                page: int = 1) -> SearchPage:
    """Page ``page`` of the search for ``query`` (of ``site``, of the archive dates within
    [since, until]), with the facets of every site's matches. Raises
    :class:`browse.catalog.QueryTooLong` for a query beyond the bounds."""
    matcher = WordMatcher(words_of(query))
    wanted = page * PAGE_SIZE + 1  # one more: is there a next page?
    bound = max(FACET_BOUND, wanted) if site is None else FACET_BOUND
    everywhere = search(archive_url, query, since=since, until=until, limit=bound)
    facets_complete = len(everywhere) < bound
    if site is None:
        hits, complete = everywhere, facets_complete
    elif facets_complete:
        hits, complete = [h for h in everywhere if h.site == site], True
    else:
        hits = search(archive_url, query, site=site, since=since, until=until, limit=wanted)
        complete = len(hits) < wanted
    counts = Counter(h.site for h in everywhere)
    facets = tuple(Facet(site=name, count=count, selected=name == site,
                         href=search_href(query, site=name, since=since, until=until))
                   for name, count in sorted(counts.items(), key=lambda sc: (-sc[1], sc[0])))
    start = (page - 1) * PAGE_SIZE
    shown = hits[start:start + PAGE_SIZE]
    known_pages = min(MAX_PAGE, max(1, -(-len(hits) // PAGE_SIZE)))

    def href(number: int) -> str:
        return search_href(query, site=site, since=since, until=until, page=number)

    return SearchPage(
        results=tuple(_result(hit, matcher) for hit in shown),
        page=page, first_number=start + 1, total=len(hits), complete=complete,
        facets=facets, facets_complete=facets_complete, facet_bound=bound,
        all_sites_href=search_href(query, site=None, since=since, until=until),
        pages=tuple(PageLink(number=n, href=href(n), current=n == page)
                    for n in range(1, known_pages + 1)) if known_pages > 1 else (),
        previous_href=href(page - 1) if page > 1 else None,
        next_href=href(page + 1) if len(hits) > start + PAGE_SIZE and page < MAX_PAGE
        else None)


def _result(hit: SearchHit, matcher: WordMatcher) -> Result:
    return Result(id=hit.id, site=hit.site, day=hit.day, published=hit.published,
                  title=marked(hit.title, matcher) if hit.title else (),
                  snippet=marked(hit.snippet, matcher),
                  url=hit.canonical_url or canonicalize_url(hit.url))
