"""HTML → article text and metadata. Pure: no I/O, no Scrapy, deterministic, never raises.

The metadata cascade lives in ``normalize.metadata``, the body text in ``normalize.text``;
this module decodes and bounds the input, parses it once, runs both, and settles the
language by checking the page's declared language against the text itself.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import fields, replace
from html import unescape
from html.entities import codepoint2name
from itertools import islice
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from trafilatura.utils import repair_faulty_html
from w3lib.encoding import html_body_declared_encoding, read_bom, resolve_encoding, to_unicode

from normalize.metadata import (
    Article,
    PageMetadata,
    complete_with,
    meta_tags,
    read_metadata,
)
from normalize.text import extract_body

logger = logging.getLogger(__name__)


# Real article pages are well under 2 MB of markup; beyond this we parse only the head of
# the document, which bounds time and memory on hostile or broken pages.
MAX_HTML_CHARS = 5_000_000
# Text shorter than this says too little for the language detector to overrule the page.
_MIN_TEXT_FOR_DETECTION = 200
_DETECTION_CONFIDENCE = 0.95

# What a body that is not UTF-8 and declares nothing is read as, like browsers in the West.
_FALLBACK_ENCODING = resolve_encoding("windows-1252")


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
    html = repair_mojibake(html)
    # Control characters, which libxml2 refuses, are removed by trafilatura's loader (its
    # repair_faulty_html): a pass of our own over the page would cost as much again.
    tree = parse_html(html[:MAX_HTML_CHARS])
    if tree is None:
        return Article()
    tags = meta_tags(tree)  # read once, for the metadata and the text alike
    meta, article_body = read_metadata(tree, tags, url)  # before extract_body prunes the tree
    # trafilatura's metadata is the cascade's last resort and a third of the extraction's
    # cost: asked for only when the cascade found no title or author, the fields it may
    # supply (never the date: see complete_with).
    gaps = not (meta.title and meta.authors)
    text, doc = extract_body(tree, url, article_body, tags, with_metadata=gaps,
                             authors=meta.authors)
    meta = complete_with(meta, doc)
    if meta.language is not None:
        meta = replace(meta, sources={**meta.sources, "language": "declared"})
    return Article(text=text, **_fields_of(meta))


def _fields_of(meta: PageMetadata) -> dict[str, Any]:
    """The metadata's fields by name, as they are (no copies, unlike ``asdict``)."""
    return {f.name: getattr(meta, f.name) for f in fields(PageMetadata)}


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


def load_language_detector(cache_dir: Path | None = None) -> None:
    """Load the language detector's model now (75 MB; 0.8 s of CPU, 0.2 s from a
    decompressed copy in ``cache_dir``, which is made if missing: see
    :mod:`normalize.language_model`), rather than when the first text is checked."""
    _identifier(cache_dir)


_identifier_lock = threading.Lock()
_loaded_identifier = None


def _identifier(cache_dir: Path | None = None):
    # Once per process, on first use, by one thread (a crawl's workers all detect).
    global _loaded_identifier
    if _loaded_identifier is None:
        with _identifier_lock:
            if _loaded_identifier is None:
                from normalize.language_model import load_identifier

                _loaded_identifier = load_identifier(cache_dir)
    return _loaded_identifier


def decode_html(body: bytes) -> str:
    """An HTML body as text, read as :func:`decode_body` reads it when nothing but the body
    says what its charset is."""
    return decode_body(body)[1]


def decode_body(body: bytes, declared: str | None = None) -> tuple[str, str]:
    """``(encoding, text)``: an HTML body decoded, and the codec it was read with.

    ``declared`` is the charset the fetch determined (the HTTP header's, else the page's
    ``<meta>``, else a guess), if any. The order: the byte order mark; else UTF-8 when the
    bytes are valid UTF-8 and not plain ASCII, whatever is declared (templates declare GB2312
    or ISO-8859-15 over UTF-8 text, which the declaration would garble, while text in a
    legacy charset that is not plain ASCII is almost never valid UTF-8); else ``declared``;
    else the ``<meta>`` or XML declaration in the first 4 KB; else UTF-8 for plain ASCII
    and windows-1252 for the rest, which maps every byte, so decoding always succeeds.
    Plain ASCII keeps its declaration: it reads alike in UTF-8 and in any charset that
    writes ASCII as ASCII, and 7-bit charsets (ISO-2022-JP) are written in ASCII bytes.
    Labels are read as browsers read them (latin-1 is windows-1252, GB2312 is GB18030); an
    unknown one counts as none. Bytes the encoding cannot read become U+FFFD."""
    encoding, bom = read_bom(body)
    if encoding is not None and bom is not None:
        return encoding, to_unicode(body[len(bom):], encoding)
    ascii_only = body.isascii()
    if not ascii_only:
        try:
            return "utf-8", body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    encoding = resolve_encoding(declared) if declared else None
    if encoding is None:
        # w3lib's scan reads a bounded head, each byte once. A <meta> read in ASCII bytes is
        # not in UTF-16 or UTF-32, whatever it says: browsers read it as UTF-8.
        encoding = html_body_declared_encoding(body)
        if encoding is not None and encoding.startswith(("utf-16", "utf-32")):
            encoding = "utf-8"
    elif encoding.startswith(("utf-16", "utf-32")) and b"\x00" not in body:
        # Markup in UTF-16 or UTF-32 has NUL bytes in every tag: this is a <meta> talking.
        encoding = "utf-8"
    if encoding is None:
        encoding = "utf-8" if ascii_only else _FALLBACK_ENCODING
    return encoding, to_unicode(body, encoding)


# Mojibake: UTF-8 text that was read as windows-1252 (or latin-1) and written out again as
# UTF-8, by the page's own software, so that the page's bytes themselves hold "Ã©" for "é"
# and "â€™" for "’": no charset reads them right. A run of such characters is the bytes of
# one character in UTF-8, each byte shown as its windows-1252 character (latin-1's for the
# five bytes windows-1252 leaves undefined): a lead, then 1 to 3 continuation bytes (0x80
# to 0xBF). Only the leads of what the mistake turns up in pages written in Latin scripts
# are looked for: Latin letters and signs (lead bytes 0xC2 to 0xC9), punctuation and
# symbols (0xE2), the replacement character and variation selectors (0xEF), emoji (0xF0).
# windows-1252's characters for the continuation bytes 0x80 to 0x9F that it defines.
_CP1252_CONTINUATIONS = "\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039" \
    "\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178"
_CONTINUATION = "\x80-\xbf" + _CP1252_CONTINUATIONS  # as a regular expression's class
_CONTINUATION_CHARS = frozenset(map(chr, range(0x80, 0xC0))) | frozenset(_CP1252_CONTINUATIONS)
_MOJIBAKE = re.compile(
    f"[\xc2-\xc9][{_CONTINUATION}]|[\xe2\xef][{_CONTINUATION}]{{2}}|\xf0[{_CONTINUATION}]{{3}}")
_MOJIBAKE_LEADS = "\xc2\xc3\xc4\xc5\xc6\xc7\xc8\xc9\xe2\xef\xf0"
# What a repaired run may stand for (first and last code point, inclusive): a real word that
# happens to be followed by such characters ("groß“", "NESCAFÉ®", "é\xa0–") reads as a letter
# of another script (NKo, IPA, CJK), which is no repair.
_REPAIRED_RANGES = (
    (0x00A0, 0x024F),  # Latin-1 supplement, Latin extended-A and -B
    (0x2000, 0x2BFF),  # punctuation, currency and letterlike signs, arrows, symbols, dingbats
    (0xFE0F, 0xFE0F),  # the emoji variation selector
    (0xFFFD, 0xFFFD),  # the replacement character
    (0x1F000, 0x1FAFF),  # emoji
)
# A page repaired holds at least this many runs: one or two are as likely a real word's.
_MIN_MOJIBAKE_RUNS = 3
# The same mojibake escaped: software that wrote the misread text out with every non-ASCII
# character as an entity ("&acirc;&euro;&trade;"), named or numbered. Sequences of entities
# are read one entity a character, and runs of mojibake looked for among those characters;
# ``_ENTITY_LEAD`` finds the leads so written, each followed by the next entity's "&".
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,30}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_ENTITIES = re.compile(f"(?:{_ENTITY.pattern}){{2,}}")
_ENTITY_LEAD = re.compile("|".join(
    re.escape(form) for lead in _MOJIBAKE_LEADS
    for form in (f"&{codepoint2name[ord(lead)]};&", f"&#{ord(lead)};&")))


def repair_mojibake(html: str) -> str:
    """``html`` with its runs of mojibake (see ``_MOJIBAKE``) read back as the characters
    they stand for, when the page holds at least ``_MIN_MOJIBAKE_RUNS`` of them; else as it
    is. A run is repaired only when its bytes are valid UTF-8 and stand for a character of
    ``_REPAIRED_RANGES``. Pages without any of the leads are left after a scan in C. Runs
    written as entities (``_ENTITIES``) are repaired the same way."""
    html = _repair_escaped_mojibake(html)
    if html.isascii() or not _has_leads(html, _MIN_MOJIBAKE_RUNS):
        return html
    repairs: dict[str, str] = {}
    runs = 0
    for match in _MOJIBAKE.finditer(html):
        run = match.group()
        if run not in repairs:
            repairs[run] = _repaired(run)
        if repairs[run] != run:
            runs += 1
    if runs < _MIN_MOJIBAKE_RUNS:
        return html
    return _MOJIBAKE.sub(lambda m: repairs[m.group()], html)


def _repair_escaped_mojibake(html: str) -> str:
    """``html`` with its runs of mojibake written as entities (``&acirc;&euro;&trade;`` for
    "’") replaced by the characters they stand for, when it holds at least
    ``_MIN_MOJIBAKE_RUNS`` of them, as ``repair_mojibake`` does for runs of characters.
    Pages without a lead's entity followed by another entity are left after one search."""
    if next(islice(_ENTITY_LEAD.finditer(html), _MIN_MOJIBAKE_RUNS - 1, None), None) is None:
        return html
    runs = 0
    repairs: dict[str, tuple[str, int]] = {}

    def repaired(match: re.Match[str]) -> str:
        nonlocal runs
        entities = match.group()
        if entities not in repairs:
            repairs[entities] = _repaired_entities(entities)
        text, repaired_runs = repairs[entities]
        runs += repaired_runs
        return text

    out = _ENTITIES.sub(repaired, html)
    return out if runs >= _MIN_MOJIBAKE_RUNS else html


def _repaired_entities(entities: str) -> tuple[str, int]:
    """A sequence of entities with each run of mojibake in it replaced by the character it
    stands for, and every other entity as it was; and how many runs were replaced."""
    tokens = _ENTITY.findall(entities)
    chars = [unescape(token) for token in tokens]
    if any(len(char) != 1 for char in chars):  # an entity for two code points, or none
        return entities, 0
    out, at, runs = [], 0, 0
    for match in _MOJIBAKE.finditer("".join(chars)):
        char = _repaired(match.group())
        if char != match.group():
            out += tokens[at:match.start()]
            out.append(char)
            at = match.end()
            runs += 1
    return "".join(out + tokens[at:]), runs


def _has_leads(html: str, count: int) -> bool:
    """Whether ``html`` holds at least ``count`` leads of a run followed by a continuation:
    what every run starts with. Each lead is looked for with ``str.find`` (a scan in C); a
    regular expression would step through the page in Python's regex engine, several
    milliseconds on a large page, which nearly every page would pay for nothing."""
    found = 0
    for lead in _MOJIBAKE_LEADS:
        at = html.find(lead)
        while at >= 0:
            if html[at + 1:at + 2] in _CONTINUATION_CHARS:
                found += 1
                if found >= count:
                    return True
            at = html.find(lead, at + 1)
    return False


def _repaired(run: str) -> str:
    """The character a run of mojibake stands for, or the run itself when it stands for none
    (see ``repair_mojibake``)."""
    data = bytearray()
    for char in run:
        try:
            data += char.encode("cp1252")
        except UnicodeEncodeError:  # the five bytes windows-1252 leaves undefined
            data += char.encode("latin-1")
    try:
        char = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return run
    code = ord(char)
    return char if any(low <= code <= high for low, high in _REPAIRED_RANGES) else run


# trafilatura's own parser settings (its extraction is tuned to the trees they make), with
# one difference: every element is a plain ``HtmlElement``, chosen in C. lxml.html's parser
# picks a class per tag (``FormElement``, ``InputElement``, ...) by a Python call for each
# element object made, in every walk of the tree, ours and trafilatura's alike: a tenth of
# the extraction's time, for methods (form fields, values) that nothing here uses.
_PARSER = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8",
                               remove_comments=True, remove_pis=True)
_PARSER.set_element_class_lookup(lxml.etree.ElementDefaultClassLookup(
    element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity))


def parse_html(html: str) -> HtmlElement | None:
    """The page's tree as ``trafilatura.utils.load_html`` makes it from a string (its repairs
    and its fallbacks), with ``_PARSER``; None when it is no HTML."""
    beginning = html[:50].lower()
    html = repair_faulty_html(html, beginning)
    tree, by_bytes = None, False
    try:
        tree = lxml.html.fromstring(html, parser=_PARSER)
    except ValueError:  # "Unicode strings with encoding declaration are not supported."
        tree, by_bytes = _parse_bytes(html), True
    except lxml.etree.LxmlError:
        logger.debug("lxml could not parse the page", exc_info=True)
    if (tree is None or len(tree) < 1) and not by_bytes:
        tree = _parse_bytes(html)
    # A string without "html" in its first characters that parses to fewer than two elements
    # is no page (trafilatura's test).
    if tree is not None and "html" not in beginning and len(tree) < 2:
        return None
    if not isinstance(tree, HtmlElement):
        return None
    _adopt_stray_content(tree)
    return tree


def _adopt_stray_content(root: HtmlElement) -> None:
    """Move what follows a premature ``</html>`` into the body, where browsers show it (the
    HTML standard reopens the body for it): libxml2 puts it in a second root element, beside
    the tree, where no walk of the tree (ours, trafilatura's) finds it. Pages close their
    ``<html>`` early and carry on, with their scripts or with the whole article."""
    strays = [el for el in root.itersiblings() if isinstance(el.tag, str)]
    if not strays:
        return
    body = root.find("body")
    target = body if body is not None else root
    for stray in strays:
        _append_text(target, stray.text)
        for child in list(stray):
            if child.tag in ("head", "body"):  # the second root's own, implied ones
                _append_text(target, child.text)
                target.extend(list(child))
                _append_text(target, child.tail)
            else:
                target.append(child)
        stray.text = None


def _append_text(el: HtmlElement, text: str | None) -> None:
    """Add ``text`` at the end of ``el``'s content."""
    if not text:
        return
    if len(el):
        el[-1].tail = (el[-1].tail or "") + text
    else:
        el.text = (el.text or "") + text


def _parse_bytes(html: str) -> HtmlElement | None:
    """The page's tree from its UTF-8 bytes, for a string lxml refuses (it declares an
    encoding), as trafilatura's loader does; None when lxml cannot read those either."""
    try:
        return lxml.html.fromstring(html.encode("utf-8", "surrogatepass"), parser=_PARSER)
    except (lxml.etree.LxmlError, ValueError):
        logger.debug("lxml could not parse the page's bytes", exc_info=True)
        return None
