"""The article body as plain text, one paragraph per line.

trafilatura does the extraction; around it this module

- prunes boilerplate containers from the tree first (ad slots, share bars, newsletter
  boxes, recommendation widgets, fact boxes, captions and credits, embedded posts, ...),
  recognised by the words in their ``class``/``id`` and kept only when they hold no story;
- removes link-only paragraphs and list items ("READ MORE: ...") and teaser cards;
- after extraction, drops the headline repeated as the first line, a leading byline, and
  lines that are boilerplate wherever they stand ("Story continues below advertisement",
  "Report an error", share prompts, copyright and photo-credit lines);
- cross-checks against the JSON-LD ``articleBody`` when the page has one that agrees;
- puts back the standfirst (the lead paragraph under the headline), which trafilatura
  often skips, when the page shows it and describes itself with it;
- bounds the time: trees are cut after ``MAX_ELEMENTS`` elements, and on trees with many
  blocks trafilatura's fallbacks (jusText, readability), quadratic in the number of
  blocks, are skipped.

Every step is general: no rule names a site. Pure and deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import lxml.etree
import trafilatura
from lxml.html import HtmlElement

from normalize.metadata import meta_tags

# Shortest embedded HTML string worth treating as an article body in the second look, in
# characters, an escape sequence (\") counting as one.
_MIN_EMBEDDED_BODY = 400
# What follows the opening quote of a JSON string, up to its closing quote (see
# _json_strings). Possessive: a string without an end is read once, not backtracked over.
_JSON_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)

# trafilatura's fallbacks (jusText, readability) compare text blocks with each other: an
# article followed by 10,000 short blocks takes seconds, 20,000 close to a minute. Above
# this many blocks we run its main extractor only (``fast``). The corpus' largest page has
# 1,383 blocks (3,319 elements), so real pages keep the fallbacks.
MAX_BLOCKS_FOR_FALLBACKS = 4_000
# Even the main extractor (and htmldate, for the metadata) grows faster than linearly:
# 20,000 elements take about 2 s, 40,000 about 8 s. A tree is cut after this many elements
# in document order; the article comes first on any page we would want to archive.
MAX_ELEMENTS = 20_000
# trafilatura's fallbacks (its comparison with readability and jusText) cost a third of its
# time and, run on every corpus page, change the text of 3 in 132: they run only when the main
# extractor found less than this share of the text in the page's paragraphs
# (``_paragraph_text_length``). On the corpus that is 3 pages, among them the 2 the fallbacks
# rescue (the main extractor finds a quarter and a twentieth of their text) (README).
FALLBACK_BELOW_SHARE = 0.5
# A paragraph counts towards that when it has at least this many characters: shorter ones are
# captions, teasers and labels as often as text.
_PARAGRAPH_MIN_CHARS = 60
_BLOCK_TAGS = frozenset((
    "p", "div", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "dd", "dt", "section", "article", "tr", "ul", "ol", "table", "header", "footer", "aside",
    "nav", "main", "figure", "form",
))

# Words in class/id/data-component naming boilerplate containers, matched as whole
# segments between spaces, hyphens and underscores (so "ad" matches "ad-slot" and
# "is-ad" but not "head" or "download"). "teaser" is not here: German sites call the
# lead paragraph the Teaser.
_BOILERPLATE_WORDS = "|".join((
    # recommendation widgets and "read also" boxes
    r"recommend\w*", r"related", r"outbrain", r"taboola", r"read[-_]*also", r"readmore",
    r"more[-_]*stories", r"plista", r"rail",
    # ad slots
    r"ad", r"ads", r"adslot", r"adunit", r"advert\w*", r"dfp", r"gpt", r"leaderboard",
    r"billboard", r"sponsor\w*", r"commercial",
    # share and follow bars
    r"share\w*", r"sharing", r"social\w*",
    # newsletter and subscription boxes
    r"newsletter\w*", r"subscribe", r"subscription", r"sign[-_]*up", r"opt[-_]*in",
    # "most read" lists
    r"most[-_]*(read|popular|viewed)", r"mostread", r"popular", r"trending", r"top[-_]*stories",
    # comment sections
    r"comments?", r"disqus",
    # author bio boxes
    r"author[-_]*bio", r"bio", r"about[-_]*(the[-_]*)?author", r"author[-_]*box", r"author[-_]*info",
    # captions and credits of pictures and galleries
    r"caption", r"credits?", r"copyright", r"figcaption",
    # consent placeholders standing in for blocked embeds
    r"consent", r"placeholder", r"cmp", r"privacy",
    # fact and info boxes beside the story
    r"fact[-_]*box", r"info[-_]*box",
    # text meant for screen readers only
    r"sr[-_]*only", r"visually[-_]*hidden", r"screen[-_]*reader([-_]*(text|only))?", r"element[-_]*invisible",
    r"offscreen",
    # embedded social posts
    r"twitter[-_]*tweet", r"instagram[-_]*media", r"tiktok[-_]*embed", r"fb[-_]*post", r"embed[-_]*twitter",
    r"tweet",
))
_BOILERPLATE_CLASS = re.compile(r"(?:^|[\s_-])(?:%s)(?=$|[\s_-])" % _BOILERPLATE_WORDS, re.I)
# A matched container is spared when it holds the story: the headline, or this many
# paragraphs of at least _STORY_PARAGRAPH characters (WordPress, for one, puts the post's
# tags into the class of the element that wraps the whole article).
_STORY_PARAGRAPHS = 3
_STORY_PARAGRAPH = 100
# Boilerplate boxes are small; a container with more elements than this is a layout
# wrapper. The bound also keeps the check linear on pathological nesting.
_MAX_BOX_ELEMENTS = 2_000

# A paragraph or list item this short whose text is nearly all link text is a teaser.
_LINK_BLOCK_MAX_CHARS = 300
_LINK_BLOCK_SHARE = 0.8
_LINKING_BLOCKS = lxml.etree.XPath("//p[.//a] | //li[.//a]")
_LINKED_HEADING = lxml.etree.XPath("//a[.//h2 or .//h3 or .//h4 or .//h5 or .//h6]")

# Lines that are boilerplate wherever they stand, compared case-insensitively after
# stripping punctuation at both ends.
_BOILERPLATE_LINE = re.compile(r"^(?:%s)$" % "|".join((
    # ad labels and slugs
    r"advertisements?", r"advert", r"ads?", r"sponsored(?: content)?", r"anzeige", r"werbung",
    r"publicidad", r"publicit[ée]", r"pubblicit[àa]", r"reklame", r"reklama", r"annons",
    r"annonse", r"annonce", r"mainos", r"광고", r"広告",
    r"(?:story|article) continues below(?: this)? advertisement",
    r"(?:story|article) continues below", r"continue reading below",
    r"passer la publicit[ée]", r"skip (?:advertisement|ad)", r"weiter nach der anzeige",
    r"la suite après cette publicité",
    # correction prompts
    r"report an? (?:error|typo|correction)", r"report this (?:article|ad)", r"fehler melden",
    r"signaler une erreur",
    # "read more" links left alone on a line
    r"read more", r"czytaj (?:więcej|też|także)", r"lesen sie auch", r"see also", r"also read",
    r"read also", r"related(?: articles| stories)?", r"mehr zum thema", r"(?:à )?lire aussi",
    r"leer más", r"lee también", r"leggi anche", r"läs också", r"læs også", r"les også",
    r"se også",
    # share and follow prompts
    r"share(?: this(?: article| story)?)?", r"share on (?:facebook|twitter|x|whatsapp|linkedin)",
    r"tweet", r"copy link", r"link copied", r"artikel teilen", r"teilen", r"follow us",
    r"기사 url이 복사되었습니다",
)), re.I)
# Short lines that are boilerplate by their start or their shape.
_SHORT_LINE_MAX = 200
_BOILERPLATE_SHORT_LINE = re.compile("|".join((
    # "READ MORE: <headline>", "Les også: <headline>"
    r"^(?:read more|more|also read|read also|see also|related|les også|lesen sie auch|"
    r"czytaj (?:też|także|więcej)|à lire aussi|lire aussi|leer más|lee también|leggi anche|"
    r"läs också|læs også|se også)\s*[:：]\s*\S",
    # copyright notices
    r"^\W*(?:©|ⓒ|\(c\)\s*\d{4}|copyright\s*(?:©|ⓒ|\(c\)|:|\d{4}))", r"all rights reserved",
    # photo credits: "Photo: ...", "Name/REUTERS", "... via Getty Images"
    r"^(?:foto|photo|bild|image|credit|fotó|zdjęcie|фото|kuva|billede|bilde|picture)s?\s*:",
    r"^[^.!?:]{0,60}/\s*(?:getty images|reuters|afp|ap(?: photo)?|epa(?:-efe)?|dpa|shutterstock|"
    r"istock(?:photo)?|imago(?: images)?|picture[- ]alliance|bloomberg|anadolu|xinhua|"
    r"the canadian press|nurphoto|sipa(?: usa)?|alamy)$",
    r"via getty images$",
    # follow prompts, and a line that announces a newsletter box
    r"^(?:follow|folg\w*|suivez|siga|segui)\s.{0,80}\b(?:twitter|facebook|instagram|google news|"
    r"whatsapp|threads|bluesky|tiktok|linkedin|youtube|telegram)\b",
    r"^newsletters?\s*[:：]",
)), re.I)
# Contact prompts ("Got a story? Email us at ...") stand at the start or the end of a text.
# Tried only where a run of address characters starts, ``(?<!...)``: from each character of
# a long run, the pattern would read the rest of the run again (quadratic).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+")
_EDGE_LINES = 3
# A byline among the first lines ("By Jane Doe", "Von Nina Magoley").
_BYLINE = re.compile(r"^(?:by|von|par|por|di|door|av|af|przez|от)\s+\S", re.I)
_BYLINE_MAX = 60
# How far from the top the headline and the byline are looked for.
_HEADER_LINES = 5

# The JSON-LD articleBody is trusted as a filter only when it is the same text: this share
# of our shingles and of its own must be common to both.
_BODY_AGREEMENT = 0.8
# Lines shorter than this (headings, datelines) are kept: articleBody often omits them.
_BODY_FILTER_MIN_WORDS = 8

_SPACE = re.compile(r"\s+")
_WORDS = re.compile(r"\w+")
# Punctuation at the start and at the end of a line. The trailing run is tried only where a
# run starts, ``(?<![\W_])``: tried from each character of a long run inside the line, it
# read the rest of the run again (a line of 40,000 "!" between two letters took 13 s).
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|(?<![\W_])[\W_]++$")
_DESCRIPTION_META = ("og:description", "description", "twitter:description")
_TITLE_META = ("og:title", "twitter:title")
# How much may stand before the description in the standfirst ("Berlin. ", "PARIS (AP) — ").
_DATELINE_MAX = 40
# Descriptions looked for in the page, each a search of the whole body: a page states one
# (in two or three tags), and one that repeats the tag thousands of times is not a page
# whose standfirst matters.
_MAX_DESCRIPTIONS = 5
# Elements that can carry a standfirst.
_TEXT_BLOCKS = {"p", "div", "h2", "h3", "section", "header", "li", "td"}


def extract_body(tree: HtmlElement, url: str | None, article_body: str | None = None,
                 tags: dict[str, list[str]] | None = None,
                 with_metadata: bool = True) -> tuple[str, Any]:
    """The article text of a parsed page (the tree is pruned in place), and trafilatura's
    document, whose metadata serves as the last resort of the metadata cascade.

    ``article_body`` is the JSON-LD ``articleBody``, if the page has one; ``tags`` the
    page's :func:`normalize.metadata.meta_tags`, when the caller has read them already;
    ``with_metadata`` false leaves trafilatura's metadata out of the document (it costs
    about a third of the extraction: the caller asks for it only when it has gaps to fill)."""
    if tags is None:
        tags = meta_tags(tree)
    # Read what pruning and trafilatura remove first: scripts (for the second look), the
    # headlines and the standfirst.
    scripts = [s.text or "" for s in tree.iter("script")]
    headlines = _headlines(tree, tags)
    lead = _standfirst(tree, tags)
    _flatten_ruby(tree)
    large = _prune_boilerplate_containers(tree) > MAX_BLOCKS_FOR_FALLBACKS
    _prune_link_blocks(tree)
    options = {"url": url, "with_metadata": with_metadata, "include_comments": False,
               "include_tables": True, "deduplicate": False}
    # trafilatura's main extractor alone first (it copies the tree, so ours stays intact); its
    # fallbacks, a third of its cost, only when that misses much of the page's paragraph text.
    doc = trafilatura.bare_extraction(tree, fast=True, **options)
    text = (getattr(doc, "text", None) or "").strip()
    if not large and len(text) < FALLBACK_BELOW_SHARE * _paragraph_text_length(tree):
        doc = trafilatura.bare_extraction(tree, fast=False, **options)
        text = (getattr(doc, "text", None) or "").strip()
    text = _drop_header_lines(text, headlines)
    text = drop_boilerplate_lines(text)
    if text and article_body:
        text = _agree_with_article_body(text, article_body)
    if text and lead and _squash(lead)[:80] not in _squash(text):
        text = f"{lead}\n{text}"
    if not text:
        text = drop_boilerplate_lines(_second_look(scripts, article_body))
    return text.strip(), doc


def drop_boilerplate_lines(text: str) -> str:
    """``text`` without the lines that are boilerplate on any site: ad labels and slugs
    ("Story continues below advertisement"), "Report an error", lone "Read more" and share
    prompts, "READ MORE: <headline>" teasers, copyright notices, photo credits, follow and
    newsletter prompts, and contact prompts with an e-mail address at the start or end."""
    lines = text.split("\n")
    kept = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        core = _SPACE.sub(" ", _EDGE_PUNCTUATION.sub("", stripped))
        if _BOILERPLATE_LINE.match(core):
            continue
        if len(stripped) <= _SHORT_LINE_MAX and (
            _BOILERPLATE_SHORT_LINE.search(stripped)
            or ((i < _EDGE_LINES or i >= len(lines) - _EDGE_LINES) and _EMAIL.search(stripped))
        ):
            continue
        kept.append(line)
    return "\n".join(kept)


# -- before extraction: the tree ----------------------------------------------------------


def _prune_boilerplate_containers(tree: HtmlElement) -> int:
    """Remove containers whose class, id or data-component names boilerplate (see
    ``_BOILERPLATE_WORDS``) unless they hold the story, and cut the tree after
    ``MAX_ELEMENTS`` elements. Returns the number of text blocks the tree had, which this
    walk counts anyway."""
    doomed: list[HtmlElement] = []
    verdicts: dict[str, bool] = {}  # class strings repeat within a page
    skip_until = None
    elements = blocks = 0
    for el in tree.iter():
        elements += 1
        if elements > MAX_ELEMENTS:
            # Before removing the doomed boxes: ``el`` must still be in the tree.
            _cut_from(el)
            break
        if el.tag in _BLOCK_TAGS:
            blocks += 1
        if skip_until is not None:  # inside a box already doomed
            if el is skip_until:
                skip_until = None
            continue
        if el.tag == "head":  # the metadata lives there, and no box does
            skip_until = _last_descendant(el)
            continue
        names = " ".join(filter(None, (el.get("class"), el.get("id"), el.get("data-component"))))
        if not names:
            continue
        verdict = verdicts.get(names)
        if verdict is None:
            verdict = verdicts[names] = _BOILERPLATE_CLASS.search(names) is not None
        if verdict and el.tag not in ("html", "body") and not _holds_story(el):
            doomed.append(el)
            skip_until = _last_descendant(el)
    for el in doomed:
        _remove(el)
    return blocks


def _last_descendant(el: HtmlElement) -> HtmlElement | None:
    """The last node inside ``el`` in document order, or None when it has no children."""
    last = el
    while len(last):
        last = last[-1]
    return last if last is not el else None


def _cut_from(el: HtmlElement) -> None:
    """Remove ``el`` and everything after it in document order."""
    node = el
    while (parent := node.getparent()) is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    el.tail = None
    if el.getparent() is not None:
        el.getparent().remove(el)


def _holds_story(el: HtmlElement) -> bool:
    """Whether a container matched by name is in fact (part of) the article: it holds the
    headline or several real paragraphs, or is too big to be a box."""
    paragraphs = 0
    for seen, child in enumerate(el.iter(), 1):
        if seen > _MAX_BOX_ELEMENTS or child.tag == "h1":
            return True
        if child.tag == "p" and _text_longer_than(child, _STORY_PARAGRAPH):
            paragraphs += 1
            if paragraphs >= _STORY_PARAGRAPHS:
                return True
    return False


def _prune_link_blocks(tree: HtmlElement) -> None:
    """Remove short paragraphs and list items that are (nearly) all link text, lists left
    empty by that, and links wrapping a heading: teasers for other articles."""
    doomed = []
    for el in _LINKING_BLOCKS(tree):
        text = _text_up_to(el, _LINK_BLOCK_MAX_CHARS)
        if text is None or not text:
            continue
        linked = sum(len(_SPACE.sub(" ", "".join(a.itertext())).strip()) for a in el.iter("a"))
        if linked and linked >= _LINK_BLOCK_SHARE * len(text):
            doomed.append(el)
    # A link around a heading is a teaser card ("<a><h3>Other story</h3><p>...</p></a>").
    doomed += _LINKED_HEADING(tree)
    for el in doomed:
        if el.getparent() is not None:
            _remove(el)
    for lst in [el for el in tree.iter("ul", "ol") if len(el) == 0 and not (el.text or "").strip()]:
        _remove(lst)


def _flatten_ruby(tree: HtmlElement) -> None:
    """Replace ``<ruby>`` annotations (Japanese and Chinese readings) by their text as a
    browser without ruby support shows it, "弾劾（だんがい）": trafilatura would otherwise
    break the sentence into three lines around it."""
    for ruby in list(tree.iter("ruby")):
        if ruby.getparent() is not None:
            ruby.tail = "".join(ruby.itertext()) + (ruby.tail or "")
            _remove(ruby)


def _remove(el: HtmlElement) -> None:
    """Remove an element but keep its tail, the text after it, which belongs to the parent."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail and el.tail.strip():
        previous = el.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _paragraph_text_length(tree: HtmlElement) -> int:
    """Characters of text in the tree's paragraphs of at least ``_PARAGRAPH_MIN_CHARS``."""
    total = 0
    for paragraph in tree.iter("p"):
        length = len(_SPACE.sub(" ", "".join(paragraph.itertext())).strip())
        if length >= _PARAGRAPH_MIN_CHARS:
            total += length
    return total


def _text_up_to(el: HtmlElement, limit: int) -> str | None:
    """The whitespace-collapsed text of ``el``, or None when it is longer than ``limit``
    (found without reading all of a large element)."""
    parts, size = [], 0
    for piece in el.itertext():
        parts.append(piece)
        size += len(piece)
        if size > 4 * limit:  # whitespace collapses, so read a little past the limit
            return None
    text = _SPACE.sub(" ", "".join(parts)).strip()
    return text if len(text) <= limit else None


def _text_longer_than(el: HtmlElement, length: int) -> bool:
    """Whether ``el`` has at least ``length`` characters of text (read only that far)."""
    size = 0
    for piece in el.itertext():
        size += len(piece.strip())
        if size >= length:
            return True
    return False


# -- the headline and the standfirst --------------------------------------------------------


def _squash(text: str) -> str:
    """``text`` without whitespace, casefolded: how lines are compared with headlines."""
    return _SPACE.sub("", text).casefold()


def _headlines(tree: HtmlElement, tags: dict[str, list[str]]) -> set[str]:
    """The page's headlines as it states them (``<h1>``, ``og:title``, ``twitter:title``),
    squashed."""
    found = ["".join(h.itertext()) for _, h in zip(range(3), tree.iter("h1"))]
    found += [value for name in _TITLE_META for value in tags.get(name, ())]
    return {s for s in map(_squash, found) if s}


def _drop_header_lines(text: str, headlines: set[str]) -> str:
    """Drop the headline (alone or with its kicker) and a byline from the first lines: the
    headline is the article's title, not a paragraph of its body."""
    lines = text.split("\n")
    head = []
    for line in lines[:_HEADER_LINES]:
        squashed = _squash(line)
        # The lengths first: a page may state thousands of headlines (og:title), and a line
        # may be long; searching each line for each would take their product.
        if squashed in headlines or any(
            len(h) >= 20 and len(squashed) <= len(h) + 80 and h in squashed for h in headlines
        ):
            continue
        if len(line.strip()) <= _BYLINE_MAX and _BYLINE.match(line.strip()):
            continue
        head.append(line)
    return "\n".join(head + lines[_HEADER_LINES:]).strip()


def _standfirst(tree: HtmlElement, tags: dict[str, list[str]]) -> str | None:
    """The lead paragraph under the headline, found as the visible element whose text is the
    page's description (or starts with it, when the description is cut short)."""
    descriptions: list[str] = []
    for value in (value for name in _DESCRIPTION_META for value in tags.get(name, ())):
        description = _SPACE.sub(" ", value).strip()
        if len(description) >= 40 and description not in descriptions:
            descriptions.append(description)
            if len(descriptions) == _MAX_DESCRIPTIONS:
                break
    body = tree.find("body")
    if body is None:
        return None
    for description in descriptions:
        stem = description.rstrip(".… ")
        # Probe with a word, not a phrase: the markup may put other whitespace between words.
        probe = max(description.split()[:10], key=len)
        for node in body.xpath(".//text()[contains(., $probe)]", probe=probe)[:50]:
            el = node.getparent()
            while el is not None and el.tag not in _TEXT_BLOCKS:
                el = el.getparent()
            if el is None:
                continue
            shown = _text_up_to(el, 2 * len(description))
            # The description may be cut short, or lack the dateline ("Berlin. ") before it.
            if shown and 0 <= shown.find(stem) <= _DATELINE_MAX:
                return shown
    return None


# -- after extraction: the JSON-LD articleBody ------------------------------------------------


def _shingles(text: str) -> set[tuple[str, ...]]:
    """Word 4-grams of ``text``; a shorter text is one shingle."""
    words = _WORDS.findall(text.casefold())
    if len(words) < 4:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + 4]) for i in range(len(words) - 3)}


def _agree_with_article_body(text: str, article_body: str) -> str:
    """When the JSON-LD ``articleBody`` is the same article as ``text``, drop our lines that
    it does not have (boxes and teasers inside the body's markup). The first line is kept,
    as are short lines: the articleBody often leaves out the standfirst and headings."""
    body = _shingles(article_body)
    ours = _shingles(text)
    common = len(body & ours)
    if not common or common < _BODY_AGREEMENT * len(ours) or common < _BODY_AGREEMENT * len(body):
        return text
    squashed_body = _squash(article_body)
    lines = text.split("\n")
    kept = lines[:1]
    for line in lines[1:]:
        shingles = _shingles(line)
        if (len(_WORDS.findall(line)) < _BODY_FILTER_MIN_WORDS or _squash(line) in squashed_body
                or len(shingles & body) >= 0.5 * len(shingles)):
            kept.append(line)
    return "\n".join(kept)


# -- the second look: pages without the body in their markup --------------------------------


def _second_look(scripts: list[str], article_body: str | None) -> str:
    """Text for pages whose body is not in the markup: the JSON-LD ``articleBody``, else the
    longest HTML fragment embedded as a JSON string in a script (client-rendered pages)."""
    if article_body and len(article_body) >= _MIN_EMBEDDED_BODY:
        return article_body.strip()
    best = ""
    for source in scripts:
        if "\\u003cp" not in source and "<p" not in source:
            continue
        for content in _json_strings(source):
            try:
                fragment = json.loads(f'"{content}"')
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


def _json_strings(source: str) -> Iterator[str]:
    """The contents of the double-quoted strings of a script (escapes not decoded) that hold
    at least ``_MIN_EMBEDDED_BODY`` characters, an escape sequence counting as one: the
    strings a pattern searched for them finds. Linear: a string is read from its own opening
    quote only, where that pattern, tried at every quote, read it again to its end from each
    escaped quote inside it (quadratic)."""
    start = source.find('"')
    while start >= 0:
        rest = _JSON_STRING_REST.match(source, start + 1)
        if rest is None:
            return  # no closing quote: every quote after this one is escaped, inside it
        end = rest.end() - 1
        content = source[start + 1:end]
        if len(content) >= _MIN_EMBEDDED_BODY and len(content) - sum(
                1 for _ in _JSON_ESCAPE.finditer(content)) >= _MIN_EMBEDDED_BODY:
            yield content
            start = source.find('"', end + 1)
        else:
            # The quotes inside a string that is too short start nothing longer; its closing
            # quote may open the next one.
            start = end
