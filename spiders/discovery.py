"""Reading discovery documents: sitemaps (with Google News extensions), RSS and Atom feeds
(feedparser), JSON Feed, and the links of a section front (Scrapy's ``LinkExtractor``). Pure
functions over a document, so they are tested without a crawler.

Every XML document is parsed by lxml first, with entities, DTD loading and the network off
and lxml's limits on tree size: a sitemap or a feed is untrusted input (an entity bomb must
stay a string).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin

import lxml.etree
from scrapy.http import TextResponse
from scrapy.linkextractors import LinkExtractor

from normalize.metadata import parse_datetime


@dataclass(frozen=True)
class Entry:
    """An article URL a sitemap or feed lists."""

    url: str
    """Absolute URL."""
    date_hint: datetime | None = None
    """When the listing says the page last changed (``<lastmod>``, a feed's updated or
    published date); None if it says nothing."""
    published: datetime | None = None
    """When the listing says the article was published (``news:publication_date``, a
    feed's published date), or None."""
    title: str | None = None
    """The title the listing gives (``news:title``, a feed item's title), or None."""


def safe_xml_parser() -> lxml.etree.XMLParser:
    """An XML parser for untrusted documents: no entities, no DTD, no network."""
    return lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True,
                                load_dtd=False, huge_tree=False, remove_comments=True)


def parse_xml(body: bytes) -> lxml.etree._Element:
    """Parse an untrusted XML document; ValueError if it is empty or declares entities
    (no sitemap or feed needs them, and an entity bomb is made of them)."""
    root = lxml.etree.fromstring(body, parser=safe_xml_parser())
    if root is None:
        raise ValueError("empty document")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise ValueError("the document declares XML entities; refused (a possible entity bomb)")
    return root


def parse_sitemap(body: bytes, base_url: str) -> tuple[str, list[Entry]]:
    """``("sitemapindex", [sitemaps])`` or ``("urlset", [articles])``; raises ValueError
    for a document that is neither."""
    root = parse_xml(body)
    if not isinstance(root.tag, str):
        raise ValueError("not an XML sitemap")
    kind = lxml.etree.QName(root).localname
    if kind not in ("sitemapindex", "urlset"):
        raise ValueError(f"not a sitemap: root element <{kind}>")
    entries = []
    for item in root:
        if not isinstance(item.tag, str):
            continue
        fields: dict[str, str] = {}
        for child in item.iter():
            if isinstance(child.tag, str) and child is not item:
                name = lxml.etree.QName(child).localname
                fields.setdefault(name, (child.text or "").strip())
        loc = fields.get("loc")
        if not loc:
            continue
        published = parse_datetime(fields.get("publication_date"))
        entries.append(Entry(
            url=urljoin(base_url, loc),
            date_hint=parse_datetime(fields.get("lastmod")) or published,
            published=published,
            title=fields.get("title") or None,
        ))
    return kind, entries


# The elements of an RSS (0.9x, 1.0, 2.0) or Atom (0.3, 1.0) document that an Entry is made
# of, and those that hold them; feedparser is given nothing else (see _feed_document).
_FEED_ELEMENTS = frozenset({
    "rss", "RDF", "channel", "feed", "item", "entry",
    "link", "guid", "id", "title", "pubDate", "published", "updated", "date", "issued",
    "modified",
})


def parse_feed(body: bytes, base_url: str, content_type: str = "") -> list[Entry]:
    """The items of an RSS, Atom or JSON Feed document; raises ValueError if it is none.

    RSS and Atom are read by feedparser: it resolves links against ``xml:base``, takes a
    permalink ``<guid>`` for an item without ``<link>``, and reads the date formats feeds
    use, written to the standards or not."""
    if "json" in content_type.lower() or body.lstrip()[:1] == b"{":
        return _json_feed(body, base_url)
    import feedparser  # a tenth of a second to import: only crawls that read a feed pay it

    parsed = feedparser.parse(
        io.BytesIO(_feed_document(parse_xml(body))),  # bytes in a stream: never a URL or a path
        response_headers={"content-location": base_url,
                          "content-type": "application/xml; charset=utf-8"},
        resolve_relative_uris=False, sanitize_html=False)  # item contents are not read
    entries = []
    for item in parsed.entries:
        link = (item.get("link") or "").strip()
        if not link:
            continue
        published, updated = _utc(item, "published_parsed"), _utc(item, "updated_parsed")
        entries.append(Entry(link, updated or published, published,
                             (item.get("title") or "").strip() or None))
    return entries


def _feed_document(root: lxml.etree._Element) -> bytes:
    """The feed lxml parsed, as a document for feedparser: well-formed UTF-8 with no DTD,
    and only the elements in ``_FEED_ELEMENTS`` (attributes, ``xml:base`` included, kept).

    feedparser runs regular expressions that take time quadratic in their input over parts
    of a document an Entry never uses: its search for an e-mail address in every author
    element (a 80 KB ``<author>`` took 15 s, a megabyte would take hours) and its reading of
    the prolog before the root (40,000 blank lines took 5 s); and a document its XML parser
    refuses goes to its regex-based fallback parser. lxml's tree, pruned and serialised, gives
    it none of those."""
    def prune(element: lxml.etree._Element) -> None:
        for child in list(element):
            if isinstance(child.tag, str) and lxml.etree.QName(child).localname in _FEED_ELEMENTS:
                prune(child)
            else:
                element.remove(child)  # and its subtree: author, content, category, ...

    prune(root)
    return lxml.etree.tostring(root, encoding="utf-8", xml_declaration=True)


def _utc(item, key: str) -> datetime | None:
    """A date feedparser read for an item (a UTC ``struct_time``) as an aware datetime, or
    None. Asked with ``in`` first: ``get("updated_parsed")`` answers with the published date
    when there is no updated one, a fallback feedparser says it will drop."""
    parsed = item[key] if key in item else None  # noqa: SIM401 (see above)
    if parsed is None:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=timezone.utc)
    except (TypeError, ValueError):  # a year datetime cannot hold
        return None


def _json_feed(body: bytes, base_url: str) -> list[Entry]:
    """JSON Feed, which feedparser does not read."""
    try:
        feed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a JSON feed: {exc}") from None
    items = feed.get("items") if isinstance(feed, dict) else None
    if not isinstance(items, list):
        raise ValueError("not a JSON feed: no items list")
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        url = item.get("url") or item.get("external_url")
        if not isinstance(url, str) or not url.strip():
            continue
        published = parse_datetime(item.get("date_published"))
        updated = parse_datetime(item.get("date_modified"))
        entries.append(Entry(urljoin(base_url, url.strip()), updated or published, published,
                             _str(item.get("title"))))
    return entries


def _str(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


# Anchors read from one page, at most, per link it may give: a front repeats links (a story
# in the lead and in its section), but a page with more anchors than this is no front, and
# reading each of them costs the crawl's process time (LinkExtractor: 60 µs an anchor).
_ANCHORS_PER_LINK = 4


def page_links(response: TextResponse, limit: int) -> tuple[list[str], bool]:
    """The page's ``<a href>`` links, resolved against its ``<base href>`` as a browser
    does, as absolute http(s) URLs without fragments, each once, in page order: at most
    ``limit`` of them, and whether the page has more."""
    anchors = limit * _ANCHORS_PER_LINK
    # Links within the page itself ("#top") and empty ones lead nowhere new.
    wanted = "//a[normalize-space(@href) != '' and not(starts-with(normalize-space(@href), '#'))]"
    extractor = LinkExtractor(tags="a", attrs="href", deny_extensions=(),
                              restrict_xpaths=f"({wanted})[position() <= {anchors}]")
    links: dict[str, None] = {}
    for link in extractor.extract_links(response):
        url = link.url.split("#", 1)[0]
        if url.startswith(("http://", "https://")):
            links.setdefault(url)
    more = len(links) > limit or bool(response.xpath(f"({wanted})[{anchors + 1}]"))
    return list(links)[:limit], more
