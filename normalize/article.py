"""HTML → article text and metadata. Pure: no I/O, no Scrapy, deterministic, never raises.

The metadata cascade lives in ``normalize.metadata``, the body text in ``normalize.text``;
this module decodes and bounds the input, parses it once, runs both, and settles the
language by checking the page's declared language against the text itself.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime

import lxml.etree
import lxml.html
import trafilatura
from lxml.html import HtmlElement
from trafilatura.utils import load_html

from normalize.metadata import complete_with, declares_article, meta_tags, read_metadata
from normalize.text import extract_body

logger = logging.getLogger(__name__)

EXTRACTOR_NAME = "newsarchive"
# Bump when extraction logic changes, so records say which code produced them.
EXTRACTOR_REVISION = "3"
EXTRACTOR_VERSION = f"{EXTRACTOR_REVISION}+trafilatura.{trafilatura.__version__}"

# Real article pages are well under 2 MB of markup; beyond this we parse only the head of
# the document, which bounds time and memory on hostile or broken pages.
MAX_HTML_CHARS = 5_000_000
# Text shorter than this says too little for the language detector to overrule the page.
_MIN_TEXT_FOR_DETECTION = 200
_DETECTION_CONFIDENCE = 0.95

# The head of the body where a ``<meta charset>`` is looked for.
_CHARSET_WINDOW = 4096
# A <meta> tag, from its name to its end (or the window's): found one at a time, each byte
# once. One pattern tried from every "<meta" re-read the rest of the head from each of them,
# and backtracked over each run of spaces: 4 KB of them took 11 s.
_META_TAG = re.compile(rb"<meta[^>]*", re.IGNORECASE)
# Inside one tag: the last ``charset=`` that has a value. The possessive quantifiers never
# give back spaces, which nothing else here could take.
_TAG_CHARSET = re.compile(rb"""[^>]+charset\s*+=\s*+["']?+\s*+([a-zA-Z0-9_.:-]+)""",
                          re.IGNORECASE)


@dataclass(frozen=True)
class Article:
    """What extraction found on one page; every field may be empty."""

    text: str = ""
    """The article body, one paragraph per line; no navigation, ads or comments."""
    title: str | None = None
    """The headline, without the site's name."""
    authors: tuple[str, ...] = ()
    """Author names in page order."""
    published: datetime | None = None
    """Publication time with the publisher's offset (UTC when the page gives none)."""
    modified: datetime | None = None
    """Last modification time, timezone-aware."""
    language: str | None = None
    """ISO 639-1 code: the declared language, unless the text clearly says otherwise."""
    canonical_url: str | None = None
    """The URL the page declares as canonical (``rel=canonical``, else ``og:url``), as written."""
    description: str | None = None
    """The page's summary."""
    section: str | None = None
    """Section of the site the article belongs to."""
    tags: tuple[str, ...] = ()
    """Keywords and tags the page declares."""
    image_url: str | None = None
    """The lead image."""
    site_name: str | None = None
    """The publication's name."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each metadata field came from (field name → source, e.g. ``json-ld``)."""


def extract_article(html: str | bytes, url: str | None = None, *,
                    detect_language: bool = True) -> Article:
    """Extract the article of one page. Never raises: bad input gives an empty ``Article``.

    ``detect_language`` false leaves ``language`` as the page declares it, for
    :func:`settle_article_language` to check against the text later, elsewhere: the
    detector's model takes 75 MB in every process that loads it, so a crawl's extraction
    workers leave it to the crawl process."""
    try:
        article = _extract(html, url)
    except Exception:  # the contract: any input, no exception
        logger.warning("extraction failed for %s", url, exc_info=True)
        return Article()
    return settle_article_language(article) if detect_language else article


def settle_article_language(article: Article) -> Article:
    """``article`` with its declared language checked against its text (see
    :func:`settle_language`), for an article extracted with ``detect_language=False``."""
    try:
        language, how = settle_language(article.language, article.text)
    except Exception:  # the contract: never raises; the declaration stands
        logger.warning("language detection failed", exc_info=True)
        return article
    sources = {k: v for k, v in article.sources.items() if k != "language"}
    if language is not None:
        sources["language"] = how
    return replace(article, language=language, sources=sources)


def _extract(html: str | bytes, url: str | None) -> Article:
    if isinstance(html, bytes):
        html = decode_html(html)
    if not isinstance(html, str) or not html.strip():
        return Article()
    # Control characters, which libxml2 refuses, are removed by trafilatura's loader (its
    # repair_faulty_html): a pass of our own over the page would cost as much again.
    tree = _parse(html[:MAX_HTML_CHARS])
    if tree is None:
        return Article()
    tags = meta_tags(tree)  # read once, for the metadata and the text alike
    meta = read_metadata(tree, tags)  # before extract_body prunes the tree
    # trafilatura's metadata is the cascade's last resort and a third of the extraction's
    # cost: asked for only when the cascade found no title, date or author (3 corpus pages
    # in 132), the fields it has been seen to supply.
    gaps = not (meta.title and meta.published and meta.authors)
    text, doc = extract_body(tree, url, meta.article_body, tags, with_metadata=gaps)
    meta = complete_with(meta, doc)
    sources = dict(meta.sources)
    if meta.declared_language is not None:
        sources["language"] = "declared"
    return Article(
        text=text,
        title=meta.title,
        authors=meta.authors,
        published=meta.published,
        modified=meta.modified,
        language=meta.declared_language,
        canonical_url=meta.canonical_url,
        description=meta.description,
        section=meta.section,
        tags=meta.tags,
        image_url=meta.image_url,
        site_name=meta.site_name,
        sources=sources,
    )


def settle_language(declared: str | None, text: str) -> tuple[str | None, str]:
    """The page's language and how it was decided: the declaration, unless the detector is
    confident on enough text that it is wrong (templates often declare a default)."""
    if len(text) < _MIN_TEXT_FOR_DETECTION:
        return declared, "declared"
    # 1,500 characters decide as well as 3,000 on every corpus page, at 60% of the cost.
    detected, confidence = _identifier().classify(text[:1500])
    if declared == detected:
        return declared, "declared+detected"
    if declared is None or confidence >= _DETECTION_CONFIDENCE:
        return detected, "detected"
    return declared, "declared"


_identifier_lock = threading.Lock()


@functools.cache
def _identifier():
    # Loading the bundled model takes about a second and 75 MB: once per process, on first
    # use, by one thread (a crawl's storage threads all detect).
    with _identifier_lock:
        return _load_identifier()


@functools.cache
def _load_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def decode_html(body: bytes) -> str:
    """Decode an HTML body: BOM, then the declared ``<meta charset>``, then UTF-8, then
    windows-1252 (which maps every byte, so decoding always succeeds)."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(codec, errors="replace")
    declared = _declared_charset(body[:_CHARSET_WINDOW])
    if declared:
        try:
            return body.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("windows-1252", errors="replace")


def _declared_charset(head: bytes) -> re.Match | None:
    """The first ``<meta>`` tag of ``head`` that declares a charset (its group 1), or None."""
    for tag in _META_TAG.finditer(head):
        # After "<meta": the tag's attributes need at least one byte before "charset".
        declared = _TAG_CHARSET.match(head, tag.start() + len(b"<meta"), tag.end())
        if declared:
            return declared
    return None


def is_article_page(html: str) -> bool:
    """Whether the page says it is an article (``og:type`` article, or a JSON-LD article
    object); safe and linear on any input."""
    try:
        # lxml's own parser, not trafilatura's loader, which turns short documents away.
        tree = lxml.html.document_fromstring(html) if html.strip() else None
    except (lxml.etree.ParserError, ValueError):
        return False
    return tree is not None and declares_article(tree)


def _parse(html: str) -> HtmlElement | None:
    # trafilatura's own parser settings: its extraction is tuned to the trees they make.
    tree = load_html(html)
    return tree if isinstance(tree, HtmlElement) else None
