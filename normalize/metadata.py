"""Article metadata from a parsed page: a cascade over the places publishers put it.

Order, first source that has a field wins: schema.org JSON-LD (NewsArticle and its kin,
``@graph``, arrays, nested authors), OpenGraph and ``article:*`` tags, Dublin Core and
other ``<meta>`` conventions, microdata, ``<time datetime>``, byline markup; trafilatura's
own metadata (which uses htmldate for dates) is the last resort. Each field remembers its
source, so a record can say where its date came from.

Hand-written rather than trafilatura's or extruct's metadata alone: trafilatura's fixed
order of sources and its date guessing lost to this cascade on the Fundus pages (exact
titles 0.864 against 0.659, dates within two minutes 0.955 against 0.038: README
"Extraction"), and extruct parses every syntax of the page whatever is asked, where the
cascade stops at the first source that has a field.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from lxml.html import HtmlElement

from normalize import jsonld

ARTICLE_TYPES = frozenset({
    "Article", "NewsArticle", "ReportageNewsArticle", "AnalysisNewsArticle", "BlogPosting",
    "LiveBlogPosting", "OpinionNewsArticle", "ReviewNewsArticle", "BackgroundNewsArticle",
    "AskPublicNewsArticle", "SatiricalArticle", "ScholarlyArticle", "TechArticle", "Report",
})
"""schema.org types of an article: a page whose JSON-LD declares one is an article."""
# Objects that are not articles but carry an article's metadata when a page has no article
# object (a video page's title, date and authors).
_METADATA_TYPES = ARTICLE_TYPES | {"SocialMediaPosting", "VideoObject"}
# Separators between a headline and the site's name in <title> and og:title.
_TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " · ", " :: ", " » ", " / ", ": ", "：", "ㅣ", "|", " -")
_BYLINE_PREFIX = re.compile(r"^\s*(by|von|par|por|di|door|av|af|przez|от)\s+", re.IGNORECASE)
# A byline is at most this long, spaces collapsed: longer text is not one.
_MAX_BYLINE = 200
# Text of a byline element read before it is judged too long: its markup may indent a
# byline of 200 characters with many spaces, not with a hundred times as many.
_MAX_BYLINE_MARKUP = 100 * _MAX_BYLINE
# Applied to bylines only (_split_byline): short, and with their spaces collapsed.
_AUTHOR_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bund\b|\bet\b|\by\b|&|\bog\b|\bi\b)\s*")
_WHITESPACE = re.compile(r"\s+")
# A bracketed part of a name, "(dpa)"; see _drop_bracketed. This pattern and the next start
# only where a run of spaces does, ``(?<!\s)``: tried from each space of a long run, each
# would read the rest of the run again (quadratic).
_BRACKETED = re.compile(r"(?<!\s)\s*+[(\[][^)\]]*+[)\]]")
# Job titles that bylines append to a name ("기자": reporter).
_ROLE_SUFFIX = re.compile(r"(?<!\s)\s+(기자|특파원|記者)$")
# Meta names carrying a publication date, beyond OpenGraph and Dublin Core.
_DATE_META = ("article:published_time", "og:article:published_time", "datepublished",
              "dc.date.issued", "dcterms.issued", "dc.date", "dcterms.created", "dc.date.created",
              "pubdate", "publishdate", "publish-date", "publish_date", "date", "sailthru.date",
              "parsely-pub-date", "article.published", "cxenseparse:recs:publishtime")
_MODIFIED_META = ("article:modified_time", "og:updated_time", "datemodified", "dcterms.modified",
                  "dc.date.modified", "last-modified", "lastmod")
_AUTHOR_META = ("author", "article:author", "dc.creator", "dcterms.creator", "sailthru.author",
                "parsely-author", "byl", "twitter:creator")


@dataclass(frozen=True)
class PageMetadata:
    """What a page says about its article: the one definition of the metadata fields, which
    :class:`normalize.Article` extends with the text. Every field may be empty."""

    title: str | None = None
    """The headline, without the site's name."""
    authors: tuple[str, ...] = ()
    """Author names in page order (people, or the organisation when no person is named)."""
    published: datetime | None = None
    """Publication time with the publisher's offset (UTC when the page gives none)."""
    modified: datetime | None = None
    """Last modification time, timezone-aware."""
    language: str | None = None
    """ISO 639-1 code. As the cascade reads it, the language the page declares (``<html
    lang>``, ``inLanguage``, ``content-language``, ``og:locale``); in an ``Article``, that
    declaration checked against the text (``normalize.settle_article_language``)."""
    canonical_url: str | None = None
    """The URL the page declares as canonical (``rel=canonical``, else ``og:url``), as written."""
    description: str | None = None
    """The page's summary (JSON-LD ``description``, ``og:description``, ``<meta
    name=description>``)."""
    section: str | None = None
    """Section of the site the article belongs to (``articleSection``, ``article:section``)."""
    tags: tuple[str, ...] = ()
    """Keywords and tags the page declares."""
    image_url: str | None = None
    """The lead image."""
    site_name: str | None = None
    """The publication's name."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each field came from: field name → ``json-ld``, ``opengraph``, ``meta``,
    ``microdata``, ``time-element``, ``byline``, ``h1``, ``title-element`` or
    ``trafilatura``. Besides the fields: ``declared_language`` says where the declared
    language was read (``html-lang``, ``json-ld``, ``meta``, ``opengraph``), ``language``
    how an ``Article``'s language was settled (``declared``, ``detected``,
    ``declared+detected``), and ``article_body`` that the page ships a JSON-LD
    ``articleBody``."""


def read_metadata(tree: HtmlElement, tags: dict[str, list[str]] | None = None
                  ) -> tuple[PageMetadata, str | None]:
    """Read the cascade's sources from an unpruned tree (before text extraction): the
    page's metadata, and the JSON-LD ``articleBody`` when the page ships one (for the text
    extraction to compare with). ``tags`` are the page's :func:`meta_tags`, when the caller
    has them already."""
    props = meta_tags(tree) if tags is None else tags
    ld = _json_ld_article(tree)
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(name: str, source: str, value: Any) -> None:
        """The field from this source, unless an earlier one had it; ``value`` may be a
        function, called only then (the sources that search the whole tree)."""
        if name in found:
            return
        if callable(value):
            value = value()
        if value not in (None, "", (), []):
            found[name] = value
            sources[name] = source

    h1 = _text(_first_text(tree, "//h1"))
    title_element = _text(_first_text(tree, "//title"))
    site_names = [n for n in (_text(_first(props.get("og:site_name"))), _publisher_name(ld),
                              _text(_first(props.get("application-name"))),
                              _site_name_from_title(title_element, h1)) if n]

    # Title: the JSON-LD headline is the one publishers write for the article itself; the
    # OpenGraph and <title> variants are often rewritten for sharing and search.
    take("title", "json-ld", _clean_title(_text(ld.get("headline") or ld.get("name")), site_names))
    take("title", "opengraph", _clean_title(_text(_first(props.get("og:title"))), site_names))
    take("title", "meta", _clean_title(_text(_first(props.get("twitter:title"))), site_names))
    take("title", "h1", _clean_title(h1, site_names))
    take("title", "title-element", _clean_title(title_element, site_names))

    take("authors", "json-ld", _clean_authors(_ld_authors(ld.get("author") or ld.get("creator")), site_names))
    take("authors", "meta", _clean_authors(_meta_authors(props), site_names))
    take("authors", "microdata", lambda: _clean_authors(_microdata_authors(tree), site_names))
    take("authors", "byline", lambda: _clean_authors(_byline_authors(tree), site_names))

    take("published", "json-ld", parse_datetime(ld.get("datePublished") or ld.get("dateCreated")
                                                or ld.get("uploadDate")))
    for name in _DATE_META:
        take("published", "opengraph" if name.startswith(("article:", "og:")) else "meta",
             parse_datetime(_first(props.get(name))))
    take("published", "microdata", lambda: parse_datetime(_first(
        tree.xpath("//*[@itemprop='datePublished']/@content | //*[@itemprop='datePublished']/@datetime"))))
    take("published", "time-element", lambda: parse_datetime(_first(tree.xpath(
        "(//article//time[@datetime] | //main//time[@datetime] | //time[@pubdate][@datetime])/@datetime"))))

    take("modified", "json-ld", parse_datetime(ld.get("dateModified")))
    for name in _MODIFIED_META:
        take("modified", "opengraph" if name.startswith(("article:", "og:")) else "meta",
             parse_datetime(_first(props.get(name))))
    take("modified", "microdata",
         lambda: parse_datetime(_first(tree.xpath("//*[@itemprop='dateModified']/@content"))))

    take("declared_language", "html-lang", iso639_1(tree.get("lang") or tree.get("xml:lang")))
    take("declared_language", "json-ld", iso639_1(_text(ld.get("inLanguage"))))
    take("declared_language", "meta", iso639_1(_first(props.get("content-language"))
                                               or _first(props.get("dc.language"))))
    take("declared_language", "opengraph", iso639_1(_first(props.get("og:locale"))))

    canonical = tree.xpath("//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href")
    take("canonical_url", "link", _text(_first(canonical)))
    take("canonical_url", "opengraph", _text(_first(props.get("og:url"))))

    take("description", "json-ld", _text(ld.get("description")))
    take("description", "opengraph", _text(_first(props.get("og:description"))))
    take("description", "meta", _text(_first(props.get("description"))))

    take("section", "json-ld", _text(_first(_as_list(ld.get("articleSection")))))
    take("section", "opengraph", _text(_first(props.get("article:section"))))

    take("tags", "json-ld", tuple(_keywords(ld.get("keywords"))))
    take("tags", "opengraph", tuple(_dedupe(_text(t) for t in props.get("article:tag", []))))
    take("tags", "meta", tuple(_keywords(_first(props.get("news_keywords"))
                                         or _first(props.get("keywords")))))

    take("image_url", "json-ld", _ld_image(ld.get("image") or ld.get("thumbnailUrl")))
    take("image_url", "opengraph", _text(_first(props.get("og:image"))))
    take("image_url", "meta", _text(_first(props.get("twitter:image"))))

    take("site_name", "opengraph", _first(site_names))
    body = ld.get("articleBody")
    take("article_body", "json-ld", body.strip() if isinstance(body, str) else None)
    # Taken under their own names, so that ``sources`` says where each was found; the
    # declared language is the metadata's ``language``, the body is not metadata.
    article_body = found.pop("article_body", None)
    found["language"] = found.pop("declared_language", None)
    return PageMetadata(**found, sources=sources), article_body


def complete_with(meta: PageMetadata, doc: Any) -> PageMetadata:
    """Fill fields the cascade left empty from trafilatura's document, the last resort."""
    if doc is None:
        return meta
    fallback = {
        "title": _clean_title(_text(getattr(doc, "title", None)), [meta.site_name or ""]),
        "authors": tuple(a.strip() for a in (getattr(doc, "author", None) or "").split(";") if a.strip()),
        "published": parse_datetime(getattr(doc, "date", None)),
        "description": _text(getattr(doc, "description", None)),
        "image_url": _text(getattr(doc, "image", None)),
        "tags": tuple(t for t in (getattr(doc, "tags", None) or []) if t),
        "section": _text(_first(getattr(doc, "categories", None) or [])),
        "site_name": _text(getattr(doc, "sitename", None)),
    }
    updates: dict[str, Any] = {}
    sources = dict(meta.sources)
    for name, value in fallback.items():
        if getattr(meta, name) in (None, "", ()) and value not in (None, "", ()):
            updates[name] = value
            sources[name] = "trafilatura"
    if not updates:
        return meta
    return replace(meta, **updates, sources=sources)


# The zones an RFC 822 date may end in: an offset, or a name the RFC defines.
_RFC822_ZONE = re.compile(r"(?:[+-]\d{4}|\b(?:GMT|UTC?|Z|[ECMP][SD]T))$", re.IGNORECASE)


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 and W3C datetimes (and common near-misses), or RFC 822 dates as feeds and
    HTTP write them → aware datetime; a date alone is midnight UTC, and a time without
    offset is taken as UTC. None when unparseable, or outside 1990-2100. The one date
    parser: page metadata, sitemaps and JSON feeds all go through it."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = re.sub(r"Z$", "+00:00", text)
    text = re.sub(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([+-]\d{2})(\d{2})$", r"\1\2:\3", text)
    text = text.replace(" ", "T", 1) if re.match(r"\d{4}-\d{2}-\d{2} \d", text) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # "Fri, 03 May 2024 16:19:08 +0200", ending in a zone RFC 822 defines: Python's
        # parser reads any other ("CEST", or asctime's year in that place) as UTC, a
        # guess that is worse than the next source's date.
        if not _RFC822_ZONE.search(value.strip()):
            return None
        try:  # it insists on a time, so prose stays out
            parsed = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
    if not 1990 <= parsed.year <= 2100:  # epoch zeros and typos are not publication dates
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def iso639_1(value: str | None) -> str | None:
    """``de-AT``, ``de_DE``, ``DE`` → ``de``; None for anything else."""
    if not value or not isinstance(value, str):
        return None
    code = re.split(r"[-_]", value.strip())[0].lower()
    return code if re.fullmatch(r"[a-z]{2}", code) else None


# -- sources -----------------------------------------------------------------------------


def meta_tags(tree: HtmlElement) -> dict[str, list[str]]:
    """Every ``<meta>`` value by lower-cased property, name, itemprop or http-equiv."""
    props: dict[str, list[str]] = {}
    for el in tree.iter("meta"):
        key = (el.get("property") or el.get("name") or el.get("itemprop")
               or el.get("http-equiv") or "").strip().lower()
        content = el.get("content")
        if key and content and content.strip():
            props.setdefault(key, []).append(content.strip())
    return props


def declares_article(tree: HtmlElement) -> bool:
    """Whether a page says it is an article: ``og:type`` article, or a JSON-LD object of
    one of :data:`ARTICLE_TYPES`. Linear in the page's size, whatever its markup (it reads
    a parsed tree, never the markup with a regular expression)."""
    if any(t.lower().startswith("article") for t in meta_tags(tree).get("og:type", ())):
        return True
    return any(ARTICLE_TYPES.intersection(t for t in _as_list(node.get("@type"))
                                          if isinstance(t, str))
               for node in _json_ld_nodes(tree))


def _json_ld_nodes(tree: HtmlElement) -> Iterator[dict[str, Any]]:
    """Every object of the page's JSON-LD scripts (``@graph`` and lists walked)."""
    for script in jsonld.scripts(tree):
        yield from jsonld.objects(jsonld.parse(script))


def _json_ld_article(tree: HtmlElement) -> dict[str, Any]:
    """The page's schema.org article object (the one with the longest body or a headline)."""
    best: dict[str, Any] = {}
    for node in _json_ld_nodes(tree):
        types = node.get("@type")
        types = set(types) if isinstance(types, list) else {types}
        if types & _METADATA_TYPES and (node.get("headline") or node.get("datePublished")):
            if not best or (node.get("articleBody") and not best.get("articleBody")):
                best = node
    return best


def _ld_authors(value: Any) -> list[str]:
    people: list[str] = []
    organisations: list[str] = []
    for item in _as_list(value):
        if isinstance(item, dict):
            name = _text(item.get("name"))
            if not name and (item.get("givenName") or item.get("familyName")):
                name = _text(f"{item.get('givenName', '')} {item.get('familyName', '')}")
            kind = item.get("@type")
            if kind == "Organization":
                organisations.append(name or "")
            else:
                # One "Person" often names several: "A und B, dpa".
                people.extend(_split_byline(name))
        elif isinstance(item, str):
            people.extend(_split_byline(item))
    return _dedupe(people) or _dedupe(organisations)


def _meta_authors(props: dict[str, list[str]]) -> list[str]:
    for name in _AUTHOR_META:
        values = [v for v in props.get(name, []) if not v.startswith(("http://", "https://", "@"))]
        if values:
            names: list[str] = []
            for value in values:
                names.extend(_split_byline(value))
            return _dedupe(names)
    return []


def _microdata_authors(tree: HtmlElement) -> list[str]:
    names = []
    for el in tree.xpath("//*[@itemprop='author']"):
        inner = el.xpath(".//*[@itemprop='name']")
        value = (inner[0].get("content") or _byline_text(inner[0])) if inner else (
            el.get("content") or _byline_text(el))
        names.extend(_split_byline(value))
    return _dedupe(names)


def _byline_authors(tree: HtmlElement) -> list[str]:
    links = [_text(a.text_content()) for a in tree.xpath("//a[@rel='author']")]
    if any(links):
        return _dedupe(links)
    for el in tree.xpath("//*[contains(concat(' ', @class, ' '), ' byline ') or "
                         "contains(@class, 'author-name') or contains(@class, 'byline__name')]"):
        names = _split_byline(_byline_text(el))
        if names:
            return names
    return []


def _byline_text(el: HtmlElement) -> str | None:
    """The text of an element that may hold a byline, or None when it is too long to be one
    (read only that far): byline elements may be nested, and reading and cleaning all the
    text of each of 250 nested ones took about 30 s on a page of 4 MB."""
    parts, size = [], 0
    for piece in el.itertext():
        size += len(piece)
        if size > _MAX_BYLINE_MARKUP:
            return None
        parts.append(piece)
    return "".join(parts)


def _split_byline(value: str | None) -> list[str]:
    text = _text(value)
    if not text or len(text) > _MAX_BYLINE:
        return []
    text = _BYLINE_PREFIX.sub("", text)
    return _dedupe(part for part in _AUTHOR_SPLIT.split(text) if part and len(part) < 80)


def _clean_authors(names: list[str], site_names: list[str]) -> tuple[str, ...]:
    """Names without role suffixes and initials in brackets; the publication's own name is
    dropped when people are named beside it."""
    site = {n.casefold() for n in site_names if len(n) > 3}
    cleaned = [_ROLE_SUFFIX.sub("", _drop_bracketed(name)).strip(" ,;") for name in names]
    cleaned = [name for name in cleaned if name]
    people = [n for n in cleaned if not any(n.casefold() in s or s in n.casefold() for s in site)]
    # The publication stays the author when no person is named beside it.
    return tuple(_dedupe(people or cleaned))


def _drop_bracketed(name: str) -> str:
    """``name`` without its bracketed parts ("Jane Doe (dpa)" → "Jane Doe")."""
    # Only up to the last closing bracket: an opening one after it closes nowhere, and each
    # such would be read to the end of the name (40,000 "(" took 7 s; a million, hours).
    end = max(name.rfind(")"), name.rfind("]")) + 1
    return _BRACKETED.sub("", name[:end]) + name[end:]


def _publisher_name(ld: dict[str, Any]) -> str | None:
    publisher = ld.get("publisher")
    if isinstance(publisher, list):
        publisher = _first(publisher)
    return _text(publisher.get("name")) if isinstance(publisher, dict) else None


def _keywords(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return _dedupe(_text(v) for v in _as_list(value) if isinstance(v, str))


def _ld_image(value: Any) -> str | None:
    item = _first(_as_list(value))
    if isinstance(item, dict):
        item = item.get("url") or item.get("contentUrl")
    return _text(item) if isinstance(item, str) else None


def _site_name_from_title(title: str | None, h1: str | None) -> str | None:
    """``<title>`` is often the headline, a separator and the site's name: when it starts
    with the ``<h1>``, what follows the separator names the site."""
    if not title or not h1 or not title.startswith(h1):
        return None
    rest = title[len(h1):]
    for sep in _TITLE_SEPARATORS:
        if rest.startswith(sep) and len(rest) > len(sep):
            return rest[len(sep):].strip() or None
    return None


def _clean_title(title: str | None, site_names: list[str]) -> str | None:
    """The headline without the site's name before or after it."""
    if not title:
        return None
    for name in filter(None, site_names):
        for sep in _TITLE_SEPARATORS:
            if title.endswith(sep + name) and len(title) > len(sep + name):
                title = title[: -len(sep + name)].strip()
            elif title.startswith(name + sep) and len(title) > len(name + sep):
                title = title[len(name + sep):].strip()
    return title or None


# -- small helpers ------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """Whitespace-collapsed, entity-decoded text (JSON-LD often double-escapes), or None."""
    if not isinstance(value, str):
        return None
    # Soft hyphens are invisible hyphenation hints, not part of the words.
    value = _WHITESPACE.sub(" ", html.unescape(html.unescape(value))).replace("\xad", "").strip()
    return value or None


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _first_text(tree: HtmlElement, xpath: str) -> str | None:
    found = tree.xpath(xpath)
    return found[0].text_content() if found else None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dedupe(values) -> list[str]:
    """The values as :func:`_text` makes them, each once, in order; empty ones dropped."""
    # A dict, not a list, to look up what was seen: a page may declare 100,000 tags.
    return list(dict.fromkeys(value for value in map(_text, values) if value))
