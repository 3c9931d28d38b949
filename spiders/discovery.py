"""Reading discovery documents: sitemaps (with Google News extensions), RSS 2.0, Atom and
JSON Feed. Pure functions over bytes, so they are tested without a crawler.

Every XML parser here refuses entities, DTD loading and the network, and keeps lxml's
limits on tree size: a sitemap is untrusted input (an entity bomb must stay a string).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import lxml.etree


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
        entries.append(Entry(
            url=urljoin(base_url, loc),
            date_hint=parse_date(fields.get("lastmod")) or parse_date(fields.get("publication_date")),
            published=parse_date(fields.get("publication_date")),
            title=fields.get("title") or None,
        ))
    return kind, entries


def parse_feed(body: bytes, base_url: str, content_type: str = "") -> list[Entry]:
    """The items of an RSS 2.0, Atom or JSON Feed document; raises ValueError if it is none."""
    if "json" in content_type.lower() or body.lstrip()[:1] == b"{":
        return _json_feed(body, base_url)
    root = parse_xml(body)
    entries = []
    for item in root.iter("{*}item", "{*}entry"):
        link = title = None
        updated = published = None
        for child in item:
            if not isinstance(child.tag, str):
                continue
            tag = lxml.etree.QName(child).localname
            if tag == "link":
                rel = child.get("rel", "alternate")
                href = child.get("href") or (child.text or "").strip()
                if href and rel == "alternate" and link is None:
                    link = href
            elif tag == "title" and title is None:
                title = (child.text or "").strip() or None
            elif tag in ("pubDate", "published", "date", "issued") and published is None:
                published = parse_date(child.text)
            elif tag in ("updated", "modified") and updated is None:
                updated = parse_date(child.text)
        if link:
            entries.append(Entry(urljoin(base_url, link), updated or published, published, title))
    return entries


def _json_feed(body: bytes, base_url: str) -> list[Entry]:
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
        published = parse_date(_str(item.get("date_published")))
        updated = parse_date(_str(item.get("date_modified")))
        entries.append(Entry(urljoin(base_url, url.strip()), updated or published, published,
                             _str(item.get("title"))))
    return entries


def parse_date(value: str | None) -> datetime | None:
    """A sitemap (W3C), feed (RFC 822 or ISO 8601) date, timezone-aware (UTC when the
    value has no offset); None if unparseable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _str(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def iter_links(html_links: list[str], base_url: str) -> Iterator[str]:
    """Absolute http(s) links without fragments, each once, in page order."""
    seen = set()
    for href in html_links:
        href = (href or "").strip()
        if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
            continue
        url = urljoin(base_url, href).split("#", 1)[0]
        if url.startswith(("http://", "https://")) and url not in seen:
            seen.add(url)
            yield url
