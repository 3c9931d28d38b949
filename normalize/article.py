"""HTML → article text and metadata. Pure: no I/O, no Scrapy, deterministic, never raises.

trafilatura does the heavy lifting for now; around it we add what news archiving needs:
publication times with their time of day and offset, the page's canonical URL and language,
and a second look for pages that ship their article inside a script (Next.js and similar),
where trafilatura finds no text.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import lxml.etree
import trafilatura
from trafilatura.utils import load_html
from lxml.html import HtmlElement

logger = logging.getLogger(__name__)

EXTRACTOR_NAME = "newsarchive"
# Bump when extraction logic changes, so records say which code produced them.
EXTRACTOR_REVISION = "1"
EXTRACTOR_VERSION = f"{EXTRACTOR_REVISION}+trafilatura.{trafilatura.__version__}"

# Real article pages are well under 2 MB of markup; beyond this we parse only the head of
# the document, which bounds time and memory on hostile or broken pages.
MAX_HTML_CHARS = 5_000_000
# Shortest embedded HTML string worth treating as an article body in the second look.
_MIN_EMBEDDED_BODY = 400

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.){%d,})"' % _MIN_EMBEDDED_BODY, re.S)
# Containers named for recommendations; matched on class, id and data-component. "teaser"
# alone is not here: German sites call the lead paragraph the Teaser.
_RECOMMENDATION_PATTERN = (
    "recommend|related-?(articles|content|stories)|outbrain|taboola|read-?also|more-?stories"
)
_RECOMMENDATION_XPATH = lxml.etree.XPath(
    "//body//*[re:test(concat(@class, ' ', @id, ' ', @data-component), $pattern, 'i')]",
    namespaces={"re": "http://exslt.org/regular-expressions"},
).__call__
_ARTICLE_TYPES = {
    "Article", "NewsArticle", "ReportageNewsArticle", "AnalysisNewsArticle", "BlogPosting",
    "LiveBlogPosting", "OpinionNewsArticle", "ReviewNewsArticle", "BackgroundNewsArticle",
    "WebPage", "Report",
}


@dataclass(frozen=True)
class Article:
    """What extraction found on one page; every field may be empty."""

    text: str = ""
    """The article body, one paragraph per line; no navigation, ads or comments."""
    title: str | None = None
    """The headline."""
    authors: tuple[str, ...] = ()
    """Author names in page order."""
    published: datetime | None = None
    """Publication time, timezone-aware (UTC when the page gives no offset)."""
    modified: datetime | None = None
    """Last modification time, timezone-aware."""
    language: str | None = None
    """ISO 639-1 code of the page's language."""
    canonical_url: str | None = None
    """The URL the page declares as canonical (``rel=canonical``, else ``og:url``), as written."""
    description: str | None = None
    """The page's summary (meta description or ``og:description``)."""
    image_url: str | None = None
    """The lead image (``og:image``)."""
    tags: tuple[str, ...] = ()
    """Keywords and tags the page declares."""


def extract_article(html: str | bytes, url: str | None = None) -> Article:
    """Extract the article of one page. Never raises: bad input gives an empty ``Article``."""
    try:
        return _extract(html, url)
    except Exception:  # the contract: any input, no exception
        logger.warning("extraction failed for %s", url, exc_info=True)
        return Article()


def _extract(html: str | bytes, url: str | None) -> Article:
    if isinstance(html, bytes):
        html = decode_html(html)
    if not isinstance(html, str) or not html.strip():
        return Article()
    html = _CONTROL_CHARS.sub("", html[:MAX_HTML_CHARS])
    tree = _parse(html)
    if tree is None:
        return Article()
    head = _page_metadata(tree)
    _drop_recommendations(tree)
    # The metadata is read, so trafilatura may prune this tree: no second parse.
    doc = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=True,
        deduplicate=False,
    )
    text = (getattr(doc, "text", None) or "").strip()
    if not text:
        text = _second_look(tree, head)
    published = head.get("published") or _parse_datetime(getattr(doc, "date", None))
    authors = head.get("authors") or _split_authors(getattr(doc, "author", None))
    return Article(
        text=text,
        title=(getattr(doc, "title", None) or head.get("title") or None),
        authors=tuple(authors),
        published=published,
        modified=head.get("modified"),
        language=head.get("language"),
        canonical_url=head.get("canonical_url"),
        description=getattr(doc, "description", None) or head.get("description"),
        image_url=getattr(doc, "image", None) or head.get("image_url"),
        tags=tuple(t for t in (getattr(doc, "tags", None) or []) if t),
    )


def _drop_recommendations(tree: HtmlElement) -> None:
    """Remove "read also" boxes and recommendation widgets: lists of links to other
    articles that sit inside the article body, where trafilatura keeps them."""
    for el in _RECOMMENDATION_XPATH(tree, pattern=_RECOMMENDATION_PATTERN):
        parent = el.getparent()
        if parent is not None and el.tag not in ("html", "body"):
            parent.remove(el)


def decode_html(body: bytes) -> str:
    """Decode an HTML body: BOM, then the declared ``<meta charset>``, then UTF-8, then
    windows-1252 (which maps every byte, so decoding always succeeds)."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(codec, errors="replace")
    declared = _META_CHARSET.search(body[:4096])
    if declared:
        try:
            return body.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("windows-1252", errors="replace")


def _parse(html: str) -> HtmlElement | None:
    # trafilatura's own parser settings: its extraction is tuned to the trees they make.
    tree = load_html(html)
    return tree if isinstance(tree, HtmlElement) else None


def _page_metadata(tree: HtmlElement) -> dict[str, Any]:
    """Canonical URL, language and dates from the page's head and JSON-LD."""
    meta: dict[str, Any] = {}
    props: dict[str, str] = {}
    for el in tree.iter("meta"):
        key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
        content = el.get("content")
        if key and content and key not in props:
            props[key] = content.strip()
    canonical = tree.xpath("//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href")
    meta["canonical_url"] = (canonical[0].strip() if canonical else None) or props.get("og:url")
    meta["language"] = _iso639_1(tree.get("lang") or tree.get("xml:lang")
                                 or props.get("content-language") or props.get("og:locale"))
    meta["title"] = props.get("og:title")
    meta["description"] = props.get("description") or props.get("og:description")
    meta["image_url"] = props.get("og:image")

    ld = _json_ld_article(tree)
    meta["published"] = _parse_datetime(
        ld.get("datePublished") or props.get("article:published_time")
        or props.get("og:article:published_time") or props.get("datepublished")
    )
    meta["modified"] = _parse_datetime(
        ld.get("dateModified") or props.get("article:modified_time") or props.get("datemodified")
    )
    meta["authors"] = _ld_authors(ld.get("author"))
    meta["article_body"] = ld.get("articleBody") if isinstance(ld.get("articleBody"), str) else None
    return meta


def _json_ld_article(tree: HtmlElement) -> dict[str, Any]:
    """The first schema.org article object in the page's JSON-LD, or {}."""
    for script in tree.xpath("//script[@type='application/ld+json']"):
        try:
            data = json.loads(script.text_content() or "")
        except ValueError:
            continue
        for node in _walk_ld(data):
            types = node.get("@type")
            types = set(types) if isinstance(types, list) else {types}
            if types & _ARTICLE_TYPES and (node.get("datePublished") or node.get("headline")):
                return node
    return {}


def _walk_ld(data: Any, depth: int = 0):
    if depth > 4:
        return
    if isinstance(data, list):
        for item in data:
            yield from _walk_ld(item, depth + 1)
    elif isinstance(data, dict):
        yield data
        if "@graph" in data:
            yield from _walk_ld(data["@graph"], depth + 1)


def _ld_authors(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    names: list[str] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip() and name.strip() not in names:
            names.append(name.strip())
    return names


def _split_authors(value: str | None) -> list[str]:
    return [a.strip() for a in (value or "").split(";") if a.strip()]


def _iso639_1(value: str | None) -> str | None:
    if not value:
        return None
    code = re.split(r"[-_]", value.strip())[0].lower()
    return code if re.fullmatch(r"[a-z]{2}", code) else None


def _parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 → aware datetime; a date alone is midnight UTC; no offset means UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _second_look(tree: HtmlElement, head: dict[str, Any]) -> str:
    """Text for pages whose body is not in the markup: the JSON-LD ``articleBody``, else the
    longest HTML fragment embedded as a JSON string in a script (client-rendered pages)."""
    body = head.get("article_body")
    if body and len(body) >= _MIN_EMBEDDED_BODY:
        return body.strip()
    best = ""
    for script in tree.iter("script"):
        source = script.text or ""
        if "\\u003cp" not in source and "<p" not in source:
            continue
        for match in _JSON_STRING.finditer(source):
            try:
                fragment = json.loads(f'"{match.group(1)}"')
            except ValueError:
                continue
            if "<p" in fragment and len(fragment) > len(best):
                best = fragment
    if not best:
        return ""
    doc = trafilatura.bare_extraction(
        f"<html><body><article>{best}</article></body></html>",
        include_comments=False, include_tables=True, deduplicate=False,
    )
    return (getattr(doc, "text", None) or "").strip()
